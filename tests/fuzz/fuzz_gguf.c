/* GGUF reading (core/formats/gguf.c): the header, metadata and tensor infos, then every typed getter on every
 * key (so each value is read through the accessors the loaders use) and a raw copy of it (the bytes
 * gguf_writer_copy_kv takes must lie in the map), the tokenizer built from the
 * metadata (datasets/tok_load.c), and the first row of every tensor dequantized. */
#include <stdlib.h>
#include <string.h>

#include "core/formats/gguf.h"
#include "core/formats/gguf_write.h"
#include "core/formats/quant.h"
#include "datasets/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

static void read_every_key(const GgufFile *g) {
    GgufWriter *w = gguf_writer_new(); /* every key copied as a saved model copies its base's */
    for (int64_t i = 0; i < g->n_kv; i++) {
        const GgufKV *kv = &g->kv[i];
        if (w) (void)gguf_writer_copy_kv(w, kv);
        char key[256];
        if (kv->key.len >= sizeof key || memchr(kv->key.ptr, 0, (size_t)kv->key.len)) continue;
        memcpy(key, kv->key.ptr, (size_t)kv->key.len);
        key[kv->key.len] = 0;
        uint32_t u;
        float f;
        int b;
        GgufStr s;
        (void)gguf_get_u32(g, key, &u);
        (void)gguf_get_f32(g, key, &f);
        (void)gguf_get_bool(g, key, &b);
        (void)gguf_get_str(g, key, &s);
        GgufStr *strs;
        int32_t *ints;
        uint64_t n;
        if (gguf_get_str_array(g, key, &strs, &n) == PEFTC_OK) free(strs);
        if (gguf_get_i32_array(g, key, &ints, &n) == PEFTC_OK) free(ints);
    }
    gguf_writer_free(w);
}

/* The first row of each tensor of a type the loaders dequantize, bounded so one input stays fast. */
static void dequantize_rows(const GgufFile *g) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        if (!ggml_type_supported(t->type) || t->ne[0] < 1 || t->ne[0] > 4096) continue;
        if (ggml_row_bytes(t->type, t->ne[0]) > t->nbytes) continue;
        real_t *row = malloc((size_t)t->ne[0] * sizeof *row);
        if (!row) continue;
        ggml_dequantize(t->type, t->data, row, t->ne[0]);
        free(row);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.gguf", data, size);
    GgufFile g;
    if (fuzz_note(gguf_open(&g, path), "gguf_open") != PEFTC_OK) return 0;
    read_every_key(&g);
    (void)gguf_tensor(&g, "token_embd.weight");
    dequantize_rows(&g);
    Tokenizer *tok = NULL;
    if (fuzz_note(tok_load_gguf(&tok, &g), "tok_load_gguf") == PEFTC_OK) {
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        static const char text[] = "Hello, world! 123 <|im_start|>";
        if (tok_encode(tok, text, sizeof text - 1, 1, &ids, &n, &cap) == PEFTC_OK) {
            char *out = NULL;
            size_t len;
            if (tok_decode(tok, ids, n, 0, &out, &len) == PEFTC_OK) free(out);
        }
        free(ids);
        tok_free(tok);
    }
    gguf_close(&g);
    return 0;
}
