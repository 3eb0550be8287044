/* Reading the reference fixtures of tests/fixtures: NAME.json (metadata, and a "tensors" index of
 * {shape, offset} in elements) beside NAME.bin (little-endian float64, or float32 when the JSON says
 * "bin_dtype": "float32"). Header-only so each suite stays one file. */
#ifndef PEFTC_TEST_FIXTURE_H
#define PEFTC_TEST_FIXTURE_H

#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/tensor.h"

typedef struct {
    cJSON *meta;
    double *data; /* every value of the .bin, widened to double */
    size_t n;
} Fixture;

static inline char *fx_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open fixture %s (tests/fixtures/README.md says how to regenerate it)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static inline Fixture fixture_load(const char *name) {
    char path[512];
    size_t len;
    Fixture fx;
    snprintf(path, sizeof path, "%s/%s.json", PEFTC_FIXTURE_DIR, name);
    char *json = fx_slurp(path, &len);
    fx.meta = cJSON_Parse(json);
    free(json);
    ck_assert_msg(fx.meta != NULL, "%s is not valid JSON", path);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(fx.meta, "bin_dtype");
    int f32 = cJSON_IsString(dt) && strcmp(dt->valuestring, "float32") == 0;
    snprintf(path, sizeof path, "%s/%s.bin", PEFTC_FIXTURE_DIR, name);
    char *raw = fx_slurp(path, &len);
    if (f32) {
        fx.n = len / sizeof(float);
        fx.data = malloc(fx.n * sizeof(double) + 1);
        for (size_t i = 0; i < fx.n; i++) {
            float v;
            memcpy(&v, raw + i * sizeof v, sizeof v);
            fx.data[i] = v;
        }
        free(raw);
    } else {
        fx.data = (double *)raw;
        fx.n = len / sizeof(double);
    }
    return fx;
}

static inline void fixture_free(Fixture *fx) {
    cJSON_Delete(fx->meta);
    free(fx->data);
}

/* The fixture tensor `name`, which must have shape `want`, or fails the test. */
static inline const double *fixture_tensor(const Fixture *fx, const char *name, Shape want) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fx->meta, "tensors"), name);
    ck_assert_msg(t != NULL, "fixture has no tensor %s", name);
    size_t off = (size_t)cJSON_GetObjectItemCaseSensitive(t, "offset")->valuedouble;
    Shape got = {0, {0}};
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(t, "shape")) {
        ck_assert_int_lt(got.ndim, TENSOR_MAX_DIMS);
        got.dim[got.ndim++] = (int64_t)d->valuedouble;
    }
    char a[64], b[64];
    ck_assert_msg(shape_equal(&got, &want), "fixture tensor %s is %s, model expects %s", name, shape_str(&got, a, 64),
                  shape_str(&want, b, 64));
    ck_assert_uint_le(off + (size_t)shape_numel(&got), fx->n);
    return fx->data + off;
}

static inline double fixture_num(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    ck_assert_msg(cJSON_IsNumber(v), "fixture lacks the number '%s'", key);
    return v->valuedouble;
}

/* Copies an integer array of exactly n entries. */
static inline void fixture_ints(const cJSON *arr, int32_t *out, int n) {
    ck_assert_int_eq(cJSON_GetArraySize(arr), n);
    const cJSON *v;
    int i = 0;
    cJSON_ArrayForEach(v, arr) out[i++] = (int32_t)v->valuedouble;
}

/* max |a - b| / max |b| over n values */
static inline double fixture_rel_err(const real_t *a, const double *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return d / fmax(s, 1e-300);
}

#endif
