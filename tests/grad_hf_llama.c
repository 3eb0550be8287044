/* The model against Hugging Face's own LLaMA (transformers' Flax implementation, run by
 * tests/fixtures/gen_hf_llama.py): logits, the summed loss with ignored targets, and the gradient of
 * every weight, for a tied and an untied model with grouped-query attention. Finite differences
 * prove the backward matches our forward; this proves the forward means what HF's does (RoPE
 * rotate-half, GQA head mapping, RMSNorm, SwiGLU, head tying). Built in double precision; the
 * tolerance allows for the two float32 steps HF keeps (RoPE angles, RMSNorm variance). */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/method.h"
#include "tests/testutil.h"

#ifndef PEFTC_REAL_DOUBLE
#error "grad_hf_llama must be built against the double-precision library"
#endif

#define TOL 1e-5

typedef struct {
    cJSON *meta;
    double *data; /* every tensor of the .bin, float64 */
    size_t n;
} Fixture;

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open fixture %s (regenerate with tests/fixtures/gen_hf_llama.py)", path);
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

static Fixture fixture_load(const char *name) {
    char path[512];
    size_t len;
    Fixture fx;
    snprintf(path, sizeof path, "%s/%s.json", PEFTC_FIXTURE_DIR, name);
    char *json = slurp(path, &len);
    fx.meta = cJSON_Parse(json);
    free(json);
    ck_assert_msg(fx.meta != NULL, "%s is not valid JSON", path);
    snprintf(path, sizeof path, "%s/%s.bin", PEFTC_FIXTURE_DIR, name);
    fx.data = (double *)slurp(path, &len);
    fx.n = len / sizeof(double);
    return fx;
}

/* The fixture tensor `name`, which must have shape `want`, or fails the test. */
static const double *tensor(const Fixture *fx, const char *name, Shape want) {
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

static double num(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key)->valuedouble; }

static void ints(const cJSON *arr, int32_t *out, int n) {
    ck_assert_int_eq(cJSON_GetArraySize(arr), n);
    const cJSON *v;
    int i = 0;
    cJSON_ArrayForEach(v, arr) out[i++] = (int32_t)v->valuedouble;
}

/* max |a - b| / max |b| over n values */
static double rel_err(const real_t *a, const double *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return d / fmax(s, 1e-300);
}

static void check_case(const char *name) {
    Fixture fx = fixture_load(name);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(fx.meta, "config");
    LlamaConfig cfg = {.vocab = (int)num(c, "vocab"), .hidden = (int)num(c, "hidden"),
                       .intermediate = (int)num(c, "intermediate"), .layers = (int)num(c, "layers"),
                       .heads = (int)num(c, "heads"), .kv_heads = (int)num(c, "kv_heads"),
                       .rope_theta = num(c, "rope_theta"), .rms_eps = num(c, "rms_eps"),
                       .tie_embeddings = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_embeddings"))};
    int B = (int)num(fx.meta, "B"), T = (int)num(fx.meta, "T"), BT = B * T;
    LlamaModel m;
    Arena a;
    MethodConfig mc = {.kind = METHOD_FULL, .lr = 1e-3};
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 1, 0.02), PEFTC_OK);
    arena_init(&a, backend_cpu());
    ck_assert_int_eq(method_attach(&m, &a, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_int_eq(method_init(&m, &a, &mc, 1), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(&m, B, T), PEFTC_OK);
    /* Every base tensor comes from the fixture, by its HF name. */
    for (int i = 0; i < m.n_refs; i++) {
        const LlamaParamRef *r = &m.refs[i];
        size_t n = (size_t)shape_numel(&r->shape);
        const double *src = tensor(&fx, r->name, r->shape);
        for (size_t j = 0; j < n; j++) (*r->data)[j] = (real_t)src[j];
    }
    int32_t *tok = malloc((size_t)BT * sizeof *tok), *tgt = malloc((size_t)BT * sizeof *tgt);
    ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "tokens"), tok, BT);
    ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "targets"), tgt, BT);

    ck_assert_int_eq(llama_forward(&m, tok, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    Shape logits = {3, {B, T, cfg.vocab}};
    double e = rel_err(m.acts.logits, tensor(&fx, "logits", logits), (size_t)BT * cfg.vocab);
    printf("  %s: logits %.2e", name, e);
    ck_assert_msg(e < TOL, "%s: logits differ from HF by %.3g relative", name, e);

    double loss;
    int64_t nv;
    a.be->zero(a.grads, a.numel);
    ck_assert_int_eq(llama_forward(&m, tok, tgt, NULL, 0, B, T, &loss, &nv), PEFTC_OK);
    llama_backward(&m, tok, tgt, NULL, 1);
    ck_assert_int_eq(nv, (int64_t)num(fx.meta, "n_valid"));
    e = fabs(loss - num(fx.meta, "loss_sum")) / fabs(num(fx.meta, "loss_sum"));
    printf(", loss %.2e", e);
    ck_assert_msg(e < TOL, "%s: summed loss %.12g, HF %.12g", name, loss, num(fx.meta, "loss_sum"));

    double worst = 0;
    for (int i = 0; i < a.n_entries; i++) {
        const ArenaEntry *en = &a.entries[i];
        char gname[ARENA_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", en->name);
        e = rel_err(arena_grad(&a, i), tensor(&fx, gname, en->shape), en->numel);
        ck_assert_msg(e < TOL, "%s: gradient of %s differs from HF by %.3g relative", name, en->name, e);
        worst = fmax(worst, e);
    }
    printf(", %d gradients, worst %.2e\n", a.n_entries, worst);
    free(tok);
    free(tgt);
    llama_free(&m);
    arena_free(&a);
    cJSON_Delete(fx.meta);
    free(fx.data);
}

START_TEST(tied_gqa_model_matches_hf) { check_case("hf_llama_tied"); }
END_TEST

START_TEST(untied_gqa_model_matches_hf) { check_case("hf_llama_untied"); }
END_TEST

int main(void) {
    Suite *s = suite_create("grad_hf_llama");
    TCase *tc = tcase_create("hf_reference");
    tcase_add_test(tc, tied_gqa_model_matches_hf);
    tcase_add_test(tc, untied_gqa_model_matches_hf);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
