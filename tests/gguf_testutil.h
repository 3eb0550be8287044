/* Shared by the GGUF suites (test_gguf, test_quant, test_model_gguf, test_gguf_save): the
 * Python-written fixture, per-test temporary files, a relative comparison, and llama.cpp's tensor names
 * and Q/K row order written out independently of the loader's. */
#ifndef PEFTC_GGUF_TESTUTIL_H
#define PEFTC_GGUF_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE PEFTC_FIXTURE_DIR "/gguf_fixture.gguf"

/* ---- temporary files: one folder per test (Check runs each test in its own process) ---- */

static char tmp_dir[64];
static char tmp_files[64][128];
static int n_tmp_files;

static inline const char *tmp_path(const char *name) {
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_gguf_XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    }
    ck_assert_int_lt(n_tmp_files, 64);
    char *p = tmp_files[n_tmp_files++];
    snprintf(p, sizeof tmp_files[0], "%s/%s", tmp_dir, name);
    return p;
}

static inline void tmp_cleanup(void) {
    for (int i = 0; i < n_tmp_files; i++) unlink(tmp_files[i]);
    if (tmp_dir[0]) rmdir(tmp_dir);
    tmp_dir[0] = 0;
    n_tmp_files = 0;
}

/* |a - b| within rel of |b| (b is the reference value). */
static inline int close_rel(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-30; }

/* ---- a LLaMA base as llama.cpp's converter writes it (test_model_gguf, test_gguf_save) ---- */

/* llama.cpp's names, written out independently of the loader's table. */
static inline void gguf_name(const char *hf, char *out, size_t n) {
    static const char *const map[][2] = {
        {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},       {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},       {"self_attn.o_proj.bias", "attn_output.bias"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},        {"mlp.down_proj.weight", "ffn_down.weight"}};
    if (!strcmp(hf, "model.embed_tokens.weight")) snprintf(out, n, "token_embd.weight");
    else if (!strcmp(hf, "model.norm.weight")) snprintf(out, n, "output_norm.weight");
    else if (!strcmp(hf, "lm_head.weight")) snprintf(out, n, "output.weight");
    else {
        int layer;
        ck_assert_int_eq(sscanf(hf, "model.layers.%d.", &layer), 1);
        const char *rest = strchr(hf + strlen("model.layers."), '.') + 1;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(rest, map[i][0])) {
                snprintf(out, n, "blk.%d.%s", layer, map[i][1]);
                return;
            }
        ck_abort_msg("no GGUF name for %s", hf);
    }
}

/* convert_hf_to_gguf.py: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols) */
static inline void llama_cpp_permute(float *dst, const float *src, int n_head, int hd, int cols) {
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + ((size_t)h * hd + i * 2 + j) * cols, src + ((size_t)h * hd + j * (hd / 2) + i) * cols,
                       (size_t)cols * sizeof *dst);
}

#endif
