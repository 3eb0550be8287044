/* Checkpoint reading (core/train/checkpoint.c, core/formats/h5util.c), structured: each input is a recipe for a
 * checkpoint written with the HDF5 library itself, so the fuzzer explores what the reader does with
 * attribute and dataset VALUES, types and counts (step, cursor, seed, strings, the arena registry's
 * names/offsets/numel/rank/dims, the buffers' lengths, types and CRCs, /state blobs) rather than the
 * HDF5 library's own parsing of corrupt bytes. The file is then read back with ckpt_read_meta,
 * ckpt_verify, ckpt_read_arena (into a fixed two-tensor arena) and ckpt_read_blob. */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/arena.h"
#include "core/backend/backend.h"
#include "core/train/checkpoint.h"
#include "core/formats/h5util.h"
#include "tests/fuzz/fuzz_util.h"

/* ---- the recipe: bytes consumed front to back, zeros once they run out ---- */

typedef struct {
    const uint8_t *p;
    size_t n;
} Recipe;

static uint8_t take(Recipe *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static int64_t take_i64(Recipe *r) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | take(r);
    return (int64_t)v;
}

/* A small integer near `base`: mostly base itself, else a nearby or arbitrary value. */
static int64_t near(Recipe *r, int64_t base) {
    uint8_t k = take(r);
    if (k < 160) return base;
    if (k < 230) return base + (int8_t)take(r);
    return take_i64(r);
}

/* A string of up to 63 bytes, or `usual` most of the time. */
static void take_str(Recipe *r, char *out, const char *usual) {
    if (take(r) < 128) {
        strcpy(out, usual);
        return;
    }
    size_t len = take(r) % 64;
    for (size_t i = 0; i < len; i++) out[i] = (char)take(r);
    out[len] = 0;
}

/* ---- writing ---- */

static void attr(hid_t obj, const char *name, hid_t type, hid_t space, const void *data) {
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (data) H5Awrite(a, type, data);
        H5Aclose(a);
    }
    H5Sclose(space);
}

static hid_t space_of(size_t n) {
    hsize_t d = n;
    return n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
}

/* An integer attribute: usually n int64 values from vals, else another shape or type for the same name. */
static void int_attr(Recipe *r, hid_t obj, const char *name, const int64_t *vals, size_t n) {
    uint8_t how = take(r) % 8;
    if (how == 1) return; /* missing */
    size_t have = n < 64 ? n : 64;
    if (how == 2) n = take(r) % 4; /* another count (0 = an empty array) */
    int64_t buf[64] = {0};
    for (size_t i = 0; i < have; i++) buf[i] = vals[i];
    if (n > 64) n = 64;
    if (how == 3) {
        attr(obj, name, H5T_NATIVE_DOUBLE, space_of(1), &(double){(double)buf[0]});
    } else if (how == 4) {
        h5_attr_str(obj, "fuzz", name, "12");
    } else if (how == 5) {
        uint64_t u[64];
        for (size_t i = 0; i < n; i++) u[i] = (uint64_t)buf[i] | (uint64_t)take(r) << 63;
        attr(obj, name, H5T_NATIVE_UINT64, space_of(n ? n : 1), u);
    } else if (how == 6) {
        int32_t s[64];
        for (size_t i = 0; i < n; i++) s[i] = (int32_t)buf[i];
        attr(obj, name, H5T_NATIVE_INT32, space_of(n ? n : 1), s);
    } else if (n == 0) {
        hsize_t zero = 0;
        attr(obj, name, H5T_NATIVE_INT64, H5Screate_simple(1, &zero, NULL), NULL);
    } else {
        attr(obj, name, H5T_NATIVE_INT64, space_of(n), buf);
    }
}

/* A string attribute: usually a fixed-length string, else variable-length, padded, an array, or an int. */
static void str_attr(Recipe *r, hid_t obj, const char *name, const char *value) {
    uint8_t how = take(r) % 8;
    if (how == 1) return;
    if (how == 2) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        attr(obj, name, t, space_of(1), &value);
        H5Tclose(t);
    } else if (how == 3 || how == 4) {
        /* space- or null-padded, no terminator: the width is the value's length exactly */
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(value) ? strlen(value) : 1);
        H5Tset_strpad(t, how == 3 ? H5T_STR_SPACEPAD : H5T_STR_NULLPAD);
        attr(obj, name, t, space_of(1), value);
        H5Tclose(t);
    } else if (how == 5) {
        char two[2][64] = {{0}};
        strncpy(two[0], value, 63);
        h5_attr_strs(obj, "fuzz", name, two[0], 2, 64);
    } else if (how == 6) {
        int64_t v = 7;
        h5_attr_i64(obj, "fuzz", name, &v, 1);
    } else {
        h5_attr_str(obj, "fuzz", name, value);
    }
}

/* A 1-D dataset: usually n elements of type with a correct crc32, else a wrong CRC, none, another
 * length, declared larger than what is written, two-dimensional, or of a variable-length type. */
static void dataset(Recipe *r, hid_t f, const char *path, hid_t type, size_t elem, size_t n) {
    uint8_t how = take(r) % 10;
    if (how == 1) return;
    if (how == 2) n = (size_t)take(r);
    uint8_t data[8 * 256] = {0};
    if (n > 256) n = 256;
    for (size_t i = 0; i < n * elem; i += 8) data[i] = take(r);
    hsize_t dims[2] = {n, 2};
    if (how == 3) dims[0] = (hsize_t)take_i64(r) & ((1ull << 40) - 1); /* declared, never written */
    hid_t space = H5Screate_simple(how == 4 ? 2 : 1, dims, NULL);
    hid_t t = type;
    if (how == 5) {
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
    }
    char parent[256];
    snprintf(parent, sizeof parent, "%s", path);
    *strrchr(parent, '/') = 0;
    if (parent[0]) h5_make_groups(f, "fuzz", parent, strlen(parent));
    hid_t ds = space < 0 ? -1 : H5Dcreate2(f, path, t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds >= 0) {
        if (how == 5) {
            const char *strs[256];
            for (size_t i = 0; i < n; i++) strs[i] = "s";
            if (n) H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, strs);
        } else if (how != 3 && how != 4 && n) {
            H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
        }
        int64_t crc = h5_crc32(data, n * elem);
        if (how == 6) crc ^= 1 + take(r);
        if (how != 7) attr(ds, "crc32", H5T_NATIVE_INT64, space_of(1), &crc);
        H5Dclose(ds);
    }
    if (t != type) H5Tclose(t);
    if (space >= 0) H5Sclose(space);
}

static Arena arena; /* "a" (2, 3) and "b" (4): what ckpt_read_arena compares the registry with */

static void write_registry(Recipe *r, hid_t f) {
    if (take(r) % 8 == 1) return; /* no /arena */
    hid_t g = H5Gcreate2(f, "arena", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return;
    size_t n = (size_t)arena.n_entries;
    int64_t total = (int64_t)arena.numel, off[2], numel[2], rank[2], dims[2 * TENSOR_MAX_DIMS] = {0};
    char names[2][ARENA_NAME_MAX] = {{0}};
    for (size_t i = 0; i < n; i++) {
        const ArenaEntry *e = &arena.entries[i];
        take_str(r, names[i], e->name);
        off[i] = near(r, (int64_t)e->offset);
        numel[i] = near(r, (int64_t)e->numel);
        rank[i] = near(r, e->shape.ndim);
        for (int d = 0; d < e->shape.ndim; d++) dims[i * TENSOR_MAX_DIMS + d] = near(r, e->shape.dim[d]);
    }
    total = near(r, total);
    int_attr(r, g, "total", &total, 1);
    char prec[64];
    take_str(r, prec, sizeof(real_t) == 8 ? "float64" : "float32");
    str_attr(r, g, "precision", prec);
    if (take(r) % 8 != 1) {
        size_t count = take(r) % 8 == 2 ? take(r) % 4 : n, width = take(r) % 8 == 3 ? 1 + take(r) % 200 : ARENA_NAME_MAX;
        char buf[4 * 256] = {0};
        for (size_t i = 0; i < count && i < 2; i++) strncpy(buf + i * width, names[i], width < 64 ? width : 64);
        if (count) h5_attr_strs(g, "fuzz", "names", buf, count, width);
    }
    int_attr(r, g, "offsets", off, n);
    int_attr(r, g, "numel", numel, n);
    int_attr(r, g, "rank", rank, n);
    int_attr(r, g, "dims", dims, n * TENSOR_MAX_DIMS);
    H5Gclose(g);
    hid_t rt = sizeof(real_t) == 8 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT;
    static const char *const bufs[] = {"/arena/params", "/arena/m", "/arena/v"};
    for (int b = 0; b < 3; b++) dataset(r, f, bufs[b], rt, sizeof(real_t), arena.numel);
}

static int write_checkpoint(Recipe *r, const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return 0;
    char s[64];
    take_str(r, s, "peftc-checkpoint");
    str_attr(r, f, "format", s);
    static const char *const ints[] = {"version", "step", "cursor", "seed", "global_batch", "world"};
    for (int i = 0; i < 6; i++) {
        int64_t v = near(r, i == 0 ? 1 : 8);
        int_attr(r, f, ints[i], &v, 1);
    }
    static const char *const strs[][2] = {
        {"method", "lora"}, {"base_model", "models/x.gguf"}, {"base_hash", "crc32:00000000 size:1"}, {"config", "a: 1"}};
    for (int i = 0; i < 4; i++) {
        take_str(r, s, strs[i][1]);
        str_attr(r, f, strs[i][0], s);
    }
    write_registry(r, f);
    dataset(r, f, "/state/x", H5T_NATIVE_INT32, 4, (size_t)(take(r) % 16));
    H5Fclose(f);
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    h5_quiet();
    arena_init(&arena, backend_cpu());
    int g, h;
    if (arena_group(&arena, "g", 1e-3, 0, &g) != PEFTC_OK ||
        arena_register(&arena, "a", (Shape){2, {2, 3}}, g, 1, &h) != PEFTC_OK ||
        arena_register(&arena, "b", (Shape){1, {4}}, g, 0, &h) != PEFTC_OK || arena_finalize(&arena) != PEFTC_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("ckpt.h5", NULL, 0);
    Recipe r = {data, size};
    if (!write_checkpoint(&r, path)) return 0;
    CkptMeta meta;
    if (fuzz_note(ckpt_read_meta(path, &meta), "ckpt_read_meta") == PEFTC_OK) ckpt_meta_free(&meta);
    (void)fuzz_note(ckpt_verify(path), "ckpt_verify");
    (void)fuzz_note(ckpt_read_arena(path, &arena), "ckpt_read_arena");
    void *blob = NULL;
    size_t n;
    if (fuzz_note(ckpt_read_blob(path, "x", CKPT_I32, &blob, &n), "ckpt_read_blob") == PEFTC_OK) free(blob);
    return 0;
}
