/* LLaMA as GGUF: synthetic models written the way llama.cpp's converter does (Q/K permuted) load
 * back to the same weights; broken files are rejected; the real SmolLM2 file matches gguf-py. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/formats/gguf.h"
#include "core/models/llama/llama.h"
#include "core/formats/gguf_write.h"
#include "core/models/llama/model_formats.h"
#include "core/formats/quant.h"
#include "tests/gguf_testutil.h"
#include "tests/testutil.h"

/* ======================= synthetic LLaMA ======================= */

typedef struct {
    const char *arch;      /* general.architecture, "llama" when NULL */
    const char *skip;      /* GGUF tensor left out */
    const char *swap;      /* GGUF tensor written with its two dimensions swapped */
    const char *iq4;       /* GGUF tensor written as IQ4_NL (a type that cannot be dequantized) */
    const char *skip_key;  /* metadata key left out */
    int vocab_from_tokens; /* no llama.vocab_size: the vocabulary is the token list's length */
    int rope_freqs;        /* add rope_freqs.weight: 1 = 8 ones; 2 = the model's llama3 scaling as factors */
    int f16_mlp;           /* gate/up/down stored as F16 */
    int rope_dim;          /* llama.rope.dimension_count, head_dim when 0 */
    int no_permute;        /* store Q/K in HF order (what a naive converter would do) */
    const char *u32_key;   /* metadata key whose value is replaced by u32_val */
    uint32_t u32_val;
    const char *f32_key;   /* metadata key whose value is replaced by f32_val */
    float f32_val;
} LlamaGgufOpts;



static void write_meta(GgufWriter *w, const LlamaConfig *c, const LlamaGgufOpts *o) {
    struct { const char *key; uint32_t v; } u[] = {
        {"llama.block_count", (uint32_t)c->layers}, {"llama.embedding_length", (uint32_t)c->hidden},
        {"llama.feed_forward_length", (uint32_t)c->intermediate}, {"llama.attention.head_count", (uint32_t)c->heads},
        {"llama.attention.head_count_kv", (uint32_t)c->kv_heads}, {"llama.context_length", 4096},
        {"llama.attention.key_length", (uint32_t)c->head_dim},
        {"llama.rope.dimension_count", (uint32_t)(o->rope_dim ? o->rope_dim : c->head_dim)},
        {"llama.vocab_size", (uint32_t)c->vocab}};
    ck_assert_int_eq(gguf_writer_str(w, "general.architecture", o->arch ? o->arch : "llama"), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_str(w, "general.name", "tiny test llama"), PEFTC_OK);
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        if (o->skip_key && !strcmp(o->skip_key, u[i].key)) continue;
        if (o->vocab_from_tokens && !strcmp(u[i].key, "llama.vocab_size")) continue;
        ck_assert_int_eq(gguf_writer_u32(w, u[i].key, u[i].v), PEFTC_OK);
    }
    ck_assert_int_eq(gguf_writer_f32(w, "llama.rope.freq_base", (float)c->rope_theta), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_eps), PEFTC_OK);
    if (o->u32_key) ck_assert_int_eq(gguf_writer_u32(w, o->u32_key, o->u32_val), PEFTC_OK);
    if (o->f32_key) ck_assert_int_eq(gguf_writer_f32(w, o->f32_key, o->f32_val), PEFTC_OK);
    const RopeScaling *rs = &c->rope_scaling;
    if (rs->type == ROPE_LINEAR || rs->type == ROPE_YARN) { /* llama.cpp's keys; yarn's attn_factor left at 1 */
        ck_assert_int_eq(gguf_writer_str(w, "llama.rope.scaling.type", rope_type_name(rs->type)), PEFTC_OK);
        ck_assert_int_eq(gguf_writer_f32(w, "llama.rope.scaling.factor", (float)rs->factor), PEFTC_OK);
        if (rs->type == ROPE_YARN)
            ck_assert_int_eq(gguf_writer_u32(w, "llama.rope.scaling.original_context_length", (uint32_t)rs->original_ctx),
                             PEFTC_OK);
    }
    if (o->vocab_from_tokens) {
        const char **toks = malloc((size_t)c->vocab * sizeof *toks);
        for (int i = 0; i < c->vocab; i++) toks[i] = "t";
        ck_assert_int_eq(gguf_writer_str_array(w, "tokenizer.ggml.tokens", toks, (uint64_t)c->vocab), PEFTC_OK);
        free(toks);
    }
}

static void add_ref_tensor(GgufWriter *w, const LlamaModel *m, const ParamRef *r, const LlamaGgufOpts *o) {
    char name[96];
    gguf_name(r->name, name, sizeof name);
    if (o->skip && !strcmp(o->skip, name)) return;
    int nd = r->shape.ndim;
    int64_t rows = nd == 2 ? r->shape.dim[0] : 1, cols = r->shape.dim[nd - 1];
    int64_t ne[2] = {cols, rows};
    if (o->swap && !strcmp(o->swap, name)) {
        ne[0] = rows;
        ne[1] = cols;
    }
    size_t n = (size_t)(rows * cols);
    float *v = malloc(n * sizeof *v), *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++) v[i] = (float)(*r->data)[i];
    int heads = strstr(name, "attn_q.") ? m->cfg.heads : strstr(name, "attn_k.") ? m->cfg.kv_heads : 0;
    if (heads && !o->no_permute) {
        /* a bias is a column of one-element rows */
        llama_cpp_permute(perm, v, heads, m->cfg.head_dim, nd == 2 ? (int)cols : 1);
        ck_assert_msg(memcmp(perm, v, n * sizeof *v) != 0, "permutation of %s is the identity", name);
        memcpy(v, perm, n * sizeof *v);
    }
    if (o->iq4 && !strcmp(o->iq4, name)) {
        uint8_t *q = calloc((size_t)(rows * (cols / 32) * 18), 1);
        ck_assert_int_eq(gguf_writer_add_raw(w, name, (GgmlType)20, nd, ne, q, (size_t)(rows * (cols / 32) * 18)),
                         PEFTC_OK);
        free(q);
    } else if (o->f16_mlp && strstr(name, "ffn_") && nd == 2) {
        real_t *rv = malloc(n * sizeof *rv);
        for (size_t i = 0; i < n; i++) rv[i] = (real_t)v[i];
        ck_assert_int_eq(gguf_writer_add_real(w, name, GGML_F16, nd, ne, rv), PEFTC_OK);
        free(rv);
    } else {
        ck_assert_int_eq(gguf_writer_add_f32(w, name, nd, ne, v), PEFTC_OK);
    }
    free(v);
    free(perm);
}

static void write_llama_gguf(const LlamaModel *m, const char *path, const LlamaGgufOpts *o) {
    GgufWriter *w = gguf_writer_new();
    write_meta(w, &m->cfg, o);
    for (int i = 0; i < m->base.n_refs; i++) add_ref_tensor(w, m, &m->base.refs[i], o);
    if (o->rope_freqs == 1) {
        float f[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        ck_assert_int_eq(gguf_writer_add_f32(w, "rope_freqs.weight", 1, (int64_t[]){8}, f), PEFTC_OK);
    }
    if (o->rope_freqs == 2) { /* what llama.cpp's converter stores for rope_type llama3: plain / scaled */
        int half = m->cfg.head_dim / 2;
        double plain[half], scaled[half];
        float f[half];
        RopeScaling none = {.type = ROPE_DEFAULT};
        rope_inv_freq(&none, m->cfg.rope_theta, m->cfg.head_dim, plain);
        rope_inv_freq(&m->cfg.rope_scaling, m->cfg.rope_theta, m->cfg.head_dim, scaled);
        for (int i = 0; i < half; i++) f[i] = (float)(plain[i] / scaled[i]);
        ck_assert_int_eq(gguf_writer_add_f32(w, "rope_freqs.weight", 1, (int64_t[]){half}, f), PEFTC_OK);
    }
    float extra[4] = {0};
    ck_assert_int_eq(gguf_writer_add_f32(w, "some.unknown.tensor", 1, (int64_t[]){4}, extra), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_write(w, path), PEFTC_OK);
    gguf_writer_free(w);
}

static LlamaConfig tiny_cfg(int tie, int bias) {
    /* head_dim 12 with hidden 32: key_length must be honoured, and rows of Q (48) differ from C */
    return (LlamaConfig){.hidden = 32, .intermediate = 40, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 12,
                         .vocab = 50, .rope_theta = 500000, .rms_eps = 1e-6, .tie_embeddings = tie, .qkv_bias = bias};
}

/* Every base tensor of b equals a's (rounded through f16 for the MLP when f16_mlp). */
static void expect_same_weights(const LlamaModel *a, const LlamaModel *b, int f16_mlp) {
    ck_assert_int_eq(a->base.n_refs, b->base.n_refs);
    for (int i = 0; i < a->base.n_refs; i++) {
        const ParamRef *ra = &a->base.refs[i], *rb = &b->base.refs[i];
        ck_assert_str_eq(ra->name, rb->name);
        ck_assert(shape_equal(&ra->shape, &rb->shape));
        int f16 = f16_mlp && strstr(ra->name, ".mlp.");
        for (int64_t k = 0; k < shape_numel(&ra->shape); k++) {
            real_t want = (*ra->data)[k];
            if (f16) want = (real_t)f16_to_f32(f32_to_f16((float)want));
            else want = (real_t)(float)want;
            if ((*rb->data)[k] != want)
                ck_abort_msg("%s[%lld]: loaded %.9g, expected %.9g", ra->name, (long long)k, (double)(*rb->data)[k],
                             (double)want);
        }
    }
}

static void check_roundtrip(int tie, int bias, const LlamaGgufOpts *o) {
    LlamaConfig cfg = tiny_cfg(tie, bias);
    LlamaModel src, got;
    ck_assert_int_eq(llama_create(&src, backend_cpu(), &cfg, 11, 0.5), PEFTC_OK);
    if (bias) /* llama_create zeroes biases; give them values so their permutation is checked */
        for (int i = 0; i < src.base.n_refs; i++)
            if (strstr(src.base.refs[i].name, ".bias"))
                tu_fill_uniform(*src.base.refs[i].data, (size_t)shape_numel(&src.base.refs[i].shape), (uint64_t)i, -1, 1);
    const char *path = tmp_path("tiny.gguf");
    write_llama_gguf(&src, path, o);

    GgufFile g;
    LlamaConfig rc;
    ModelInfo info;
    ck_assert_int_eq(gguf_open(&g, path), PEFTC_OK);
    ck_assert_msg(model_gguf_config(&g, &rc, &info) == PEFTC_OK, "%s", peftc_err_msg());
    gguf_close(&g);
    ck_assert(rc.hidden == 32 && rc.intermediate == 40 && rc.layers == 2 && rc.heads == 4 && rc.kv_heads == 2);
    ck_assert(rc.head_dim == 12 && rc.vocab == 50 && rc.tie_embeddings == tie && rc.qkv_bias == bias);
    ck_assert(rc.rope_theta == 500000 && rc.rms_eps == (double)1e-6f);
    ck_assert_str_eq(info.name, "tiny test llama");
    ck_assert_str_eq(info.arch, "llama");
    ck_assert_str_eq(info.path, path);
    ck_assert(info.is_gguf == 1 && info.context_length == 4096);

    ModelInfo li;
    ck_assert_msg(model_gguf_load(&got, backend_cpu(), path, &li) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert(li.content_hash == info.content_hash);
    ck_assert(got.cfg.tie_embeddings == tie && (tie || (got.lm_head && got.lm_head != got.wte)));
    expect_same_weights(&src, &got, o->f16_mlp);
    llama_free(&got);
    llama_free(&src);
    tmp_cleanup();
}

START_TEST(tiny_llama_tied) {
    LlamaGgufOpts o = {0};
    check_roundtrip(1, 0, &o);
}
END_TEST

START_TEST(tiny_llama_untied_bias_f16) {
    LlamaGgufOpts o = {.f16_mlp = 1, .vocab_from_tokens = 1};
    check_roundtrip(0, 1, &o);
}
END_TEST

/* Not undoing the permutation would give other weights: the round trip above is not vacuous, and a
 * file whose Q/K were not permuted loads as something else. */
START_TEST(permutation_matters) {
    LlamaConfig cfg = tiny_cfg(1, 0);
    LlamaModel src, got;
    ck_assert_int_eq(llama_create(&src, backend_cpu(), &cfg, 3, 0.5), PEFTC_OK);
    const char *path = tmp_path("plain.gguf");
    LlamaGgufOpts o = {.no_permute = 1};
    write_llama_gguf(&src, path, &o);
    ck_assert_int_eq(model_gguf_load(&got, backend_cpu(), path, NULL), PEFTC_OK);
    size_t nq = (size_t)cfg.heads * cfg.head_dim * cfg.hidden;
    ck_assert(memcmp(got.layers[0].q.W, src.layers[0].q.W, nq * sizeof(real_t)) != 0);
    ck_assert(memcmp(got.layers[0].v.W, src.layers[0].v.W, (nq / 2) * sizeof(real_t)) == 0);
    /* row 1 of the file (head 0, pair 0, second element) is HF row hd/2 */
    ck_assert(memcmp(got.layers[0].q.W + (size_t)(cfg.head_dim / 2) * cfg.hidden, src.layers[0].q.W + cfg.hidden,
                     (size_t)cfg.hidden * sizeof(real_t)) == 0);
    llama_free(&got);
    llama_free(&src);
    tmp_cleanup();
}
END_TEST

START_TEST(content_hash_follows_the_weights) {
    LlamaConfig cfg = tiny_cfg(1, 0);
    LlamaModel a, b;
    ck_assert_int_eq(llama_create(&a, backend_cpu(), &cfg, 1, 0.5), PEFTC_OK);
    ck_assert_int_eq(llama_create(&b, backend_cpu(), &cfg, 1, 0.5), PEFTC_OK);
    b.layers[1].down.W[7] += 1; /* one weight differs */
    LlamaGgufOpts o = {0};
    const char *pa = tmp_path("a.gguf"), *pa2 = tmp_path("a_copy.gguf"), *pb = tmp_path("b.gguf");
    write_llama_gguf(&a, pa, &o);
    write_llama_gguf(&a, pa2, &o);
    write_llama_gguf(&b, pb, &o);
    uint64_t h[3];
    const char *paths[3] = {pa, pa2, pb};
    for (int i = 0; i < 3; i++) {
        GgufFile g;
        LlamaConfig c;
        ModelInfo info;
        ck_assert_int_eq(gguf_open(&g, paths[i]), PEFTC_OK);
        ck_assert_int_eq(model_gguf_config(&g, &c, &info), PEFTC_OK);
        h[i] = info.content_hash;
        gguf_close(&g);
    }
    ck_assert(h[0] == h[1] && h[0] != h[2]);
    llama_free(&a);
    llama_free(&b);
    tmp_cleanup();
}
END_TEST

/* Logits (1, T, V) of m on a fixed sequence. */
static real_t *tiny_logits(LlamaModel *m, int T) {
    int32_t tok[64];
    for (int t = 0; t < T; t++) tok[t] = (t * 7 + 3) % m->cfg.vocab;
    ck_assert_int_eq(llama_reserve(m, 1, T), PEFTC_OK);
    ck_assert_int_eq(llama_forward(m, tok, NULL, NULL, NULL, NULL, 0, 1, T, NULL, NULL), PEFTC_OK);
    size_t n = (size_t)T * m->cfg.vocab;
    real_t *out = malloc(n * sizeof *out);
    memcpy(out, m->acts.logits, n * sizeof *out);
    return out;
}

/* A model with RoPE scaling and an o_proj bias, written as llama.cpp writes it (llama3 as a rope_freqs
 * tensor, linear and yarn as rope.scaling keys), loads as the same model: same logits over 40
 * positions, where every scaling changes them. */
static void check_scaled(RopeScaling rs, RopeType loaded_as) {
    LlamaConfig cfg = tiny_cfg(1, 1);
    cfg.o_bias = 1;
    cfg.rope_theta = 10000;
    cfg.rope_scaling = rs;
    LlamaModel src, got;
    ck_assert_int_eq(llama_create(&src, backend_cpu(), &cfg, 7, 0.5), PEFTC_OK);
    for (int i = 0; i < src.base.n_refs; i++)
        if (strstr(src.base.refs[i].name, ".bias"))
            tu_fill_uniform(*src.base.refs[i].data, (size_t)shape_numel(&src.base.refs[i].shape), (uint64_t)i, -1, 1);
    const char *path = tmp_path("scaled.gguf");
    write_llama_gguf(&src, path, &(LlamaGgufOpts){.rope_freqs = rs.type == ROPE_LLAMA3 ? 2 : 0});
    ck_assert_msg(model_gguf_load(&got, backend_cpu(), path, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(got.cfg.rope_scaling.type, loaded_as);
    ck_assert(got.cfg.o_bias && got.cfg.qkv_bias);
    expect_same_weights(&src, &got, 0);
    const int T = 40;
    real_t *a = tiny_logits(&src, T), *b = tiny_logits(&got, T);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < (size_t)T * cfg.vocab; i++) {
        worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
        scale = fmax(scale, fabs((double)a[i]));
    }
    ck_assert_msg(worst <= 1e-5 * scale, "%s: logits differ by %.3g (max %.3g)", rope_type_name(rs.type), worst, scale);
    free(a);
    free(b);
    llama_free(&got);
    llama_free(&src);
    tmp_cleanup();
}

START_TEST(llama_gguf_rope_scaling_and_o_bias) {
    check_scaled((RopeScaling){.type = ROPE_LLAMA3, .factor = 8, .low_freq_factor = 1, .high_freq_factor = 4,
                               .original_ctx = 16}, ROPE_FACTORS);
    check_scaled((RopeScaling){.type = ROPE_LINEAR, .factor = 2}, ROPE_LINEAR);
    check_scaled((RopeScaling){.type = ROPE_YARN, .factor = 4, .original_ctx = 16, .beta_fast = 32, .beta_slow = 1,
                               .truncate = 1, .attn_factor = rope_yarn_mscale(4, 1)}, ROPE_YARN);
}
END_TEST

/* Loading fails with EFORMAT, leaves m empty, and the message names the file and `what`. */
static void expect_load_error(const LlamaGgufOpts *o, int tie, const char *what) {
    LlamaConfig cfg = tiny_cfg(tie, 0);
    LlamaModel src, got;
    ck_assert_int_eq(llama_create(&src, backend_cpu(), &cfg, 5, 0.5), PEFTC_OK);
    const char *path = tmp_path("broken.gguf");
    write_llama_gguf(&src, path, o);
    peftc_err_clear();
    PeftcStatus st = model_gguf_load(&got, backend_cpu(), path, NULL);
    ck_assert_msg(st == PEFTC_EFORMAT, "%s: status %d (%s)", what, st, peftc_err_msg());
    ck_assert_msg(strstr(peftc_err_msg(), path), "no path in: %s", peftc_err_msg());
    ck_assert_msg(strstr(peftc_err_msg(), what), "no '%s' in: %s", what, peftc_err_msg());
    ck_assert_ptr_null(got.base_own);
    llama_free(&src);
    unlink(path);
    n_tmp_files--;
}

START_TEST(llama_gguf_errors) {
    expect_load_error(&(LlamaGgufOpts){.arch = "gpt2"}, 1, "general.architecture is 'gpt2'");
    expect_load_error(&(LlamaGgufOpts){.skip = "blk.1.ffn_up.weight"}, 1, "blk.1.ffn_up.weight");
    expect_load_error(&(LlamaGgufOpts){.skip = "output_norm.weight"}, 0, "output_norm.weight");
    expect_load_error(&(LlamaGgufOpts){.swap = "blk.0.attn_k.weight"}, 1, "[24, 32]");
    expect_load_error(&(LlamaGgufOpts){.iq4 = "blk.0.ffn_gate.weight"}, 1, "IQ4_NL");
    expect_load_error(&(LlamaGgufOpts){.rope_freqs = 1}, 1, "'rope_freqs.weight' must be F32 with 6 values");
    expect_load_error(&(LlamaGgufOpts){.rope_dim = 8}, 1, "llama.rope.dimension_count");
    expect_load_error(&(LlamaGgufOpts){.skip_key = "llama.block_count"}, 1, "llama.block_count");
    /* without key_length the head size is hidden / heads = 8, which the RoPE dimension (12) contradicts */
    expect_load_error(&(LlamaGgufOpts){.skip_key = "llama.attention.key_length"}, 1, "is 12, expected the head size 8");
    /* an untied file whose output.weight is missing is simply tied: not an error */
    tmp_cleanup();
}
END_TEST

/* Non-finite or non-positive float hyperparameters are the file's fault, named with their key. */
START_TEST(llama_gguf_bad_floats) {
    const char *theta = "llama.rope.freq_base", *eps = "llama.attention.layer_norm_rms_epsilon";
    expect_load_error(&(LlamaGgufOpts){.f32_key = theta, .f32_val = INFINITY}, 1, theta);
    expect_load_error(&(LlamaGgufOpts){.f32_key = theta, .f32_val = NAN}, 1, theta);
    expect_load_error(&(LlamaGgufOpts){.f32_key = theta, .f32_val = -10000}, 1, theta);
    expect_load_error(&(LlamaGgufOpts){.f32_key = eps, .f32_val = INFINITY}, 1, eps);
    expect_load_error(&(LlamaGgufOpts){.f32_key = eps, .f32_val = NAN}, 1, eps);
    expect_load_error(&(LlamaGgufOpts){.f32_key = eps, .f32_val = 0}, 1, eps);
    tmp_cleanup();
}
END_TEST

/* Sizes the file's tensors cannot back are refused from the tensor infos, before the model is
 * allocated: 2^24 layers or a 2^30 vocabulary would otherwise ask for hundreds of GB first (ENOMEM, or
 * minutes of zeroing where the allocation succeeds), and 1000 layers for memory the file never fills. */
START_TEST(llama_gguf_absurd_sizes) {
    expect_load_error(&(LlamaGgufOpts){.u32_key = "llama.block_count", .u32_val = 1000}, 1,
                      "tensor 'blk.2.attn_norm.weight' is missing (the metadata's llama.* sizes imply it)");
    expect_load_error(&(LlamaGgufOpts){.u32_key = "llama.block_count", .u32_val = 1u << 24}, 1, "blk.2.attn_norm.weight");
    expect_load_error(&(LlamaGgufOpts){.u32_key = "llama.vocab_size", .u32_val = 1u << 30}, 1,
                      "tensor 'token_embd.weight' has shape [32, 50], expected [32, 1073741824]");
    expect_load_error(&(LlamaGgufOpts){.u32_key = "llama.feed_forward_length", .u32_val = 1u << 28}, 0,
                      "tensor 'blk.0.ffn_gate.weight' has shape [32, 40], expected [32, 268435456]");
    tmp_cleanup();
}
END_TEST

/* ======================= the real SmolLM2 file ======================= */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Rows `row_ids` and the sums of every stride-th row of the HF-layout matrix w (rows, cols) match the
 * fixture's smol.<name>.* values from gguf-py. */
static void expect_matrix(const GgufFile *fx, const char *name, const real_t *w, int64_t rows, int64_t cols) {
    char key[96];
    snprintf(key, sizeof key, "smol.%s.row_ids", name);
    int32_t *ids;
    uint64_t n_ids;
    uint32_t stride;
    ck_assert_msg(gguf_get_i32_array(fx, key, &ids, &n_ids) == PEFTC_OK, "fixture lacks %s: regenerate it with the "
                  "model present", key);
    snprintf(key, sizeof key, "smol.%s.rowsum_stride", name);
    ck_assert_int_eq(gguf_get_u32(fx, key, &stride), PEFTC_OK);
    snprintf(key, sizeof key, "smol.%s.rows", name);
    const GgufTensor *tr = gguf_tensor(fx, key);
    snprintf(key, sizeof key, "smol.%s.rowsum", name);
    const GgufTensor *ts = gguf_tensor(fx, key);
    ck_assert(tr && ts && tr->ne[0] == cols && tr->ne[1] == (int64_t)n_ids);
    ck_assert_int_eq(ts->ne[0], (rows + stride - 1) / stride);
    for (uint64_t k = 0; k < n_ids; k++)
        for (int64_t c = 0; c < cols; c++) {
            float want;
            memcpy(&want, tr->data + 4 * (k * (uint64_t)cols + (uint64_t)c), 4);
            real_t got = w[ids[k] * cols + c];
            if (!close_rel((double)got, want, 1e-6))
                ck_abort_msg("%s row %d col %lld: %.9g, gguf-py %.9g", name, ids[k], (long long)c, (double)got,
                             (double)want);
        }
    for (int64_t r = 0, k = 0; r < rows; r += stride, k++) {
        double sum = 0, mag = 0;
        for (int64_t c = 0; c < cols; c++) {
            sum += (double)w[r * cols + c];
            mag += fabs((double)w[r * cols + c]);
        }
        float want;
        memcpy(&want, ts->data + 4 * k, 4);
        if (!(fabs(sum - want) <= 1e-6 * mag))
            ck_abort_msg("%s row %lld sum %.9g, gguf-py %.9g", name, (long long)r, sum, (double)want);
    }
    free(ids);
}

START_TEST(smollm2_file) {
    const char *path = PEFTC_DEFAULT_MODEL;
    if (access(path, R_OK) != 0) {
        printf("test_model_gguf: SKIP smollm2_file: %s not present (tools/fetch-model.sh downloads it)\n", path);
        return;
    }
    GgufFile g;
    LlamaConfig c;
    ModelInfo info;
    ck_assert_msg(gguf_open(&g, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(g.n_tensors, 272);
    ck_assert_msg(model_gguf_config(&g, &c, &info) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert(c.hidden == 576 && c.intermediate == 1536 && c.layers == 30 && c.heads == 9 && c.kv_heads == 3);
    ck_assert(c.head_dim == 64 && c.vocab == 49152 && c.rope_theta == 100000 && c.tie_embeddings == 1);
    ck_assert(c.qkv_bias == 0 && fabs(c.rms_eps - 1e-5) < 1e-11);
    ck_assert(info.context_length == 8192 && info.is_gguf && info.content_hash != 0);
    ck_assert_str_eq(info.name, "Smollm2 135M 8k Lc100K Mix1 Ep2");
    ck_assert(gguf_tensor(&g, "token_embd.weight")->type == GGML_Q8_0);
    ck_assert(gguf_tensor(&g, "blk.0.attn_q.weight")->type == GGML_Q4_1);
    gguf_close(&g);

    LlamaModel m;
    double t0 = now_s();
    ck_assert_msg(model_gguf_load(&m, backend_cpu(), path, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    printf("test_model_gguf: loaded %s (%lld params) in %.2f s\n", path, (long long)llama_param_count(&m.cfg),
           now_s() - t0);
    GgufFile fx;
    ck_assert_int_eq(gguf_open(&fx, FIXTURE), PEFTC_OK);
    expect_matrix(&fx, "token_embd", m.wte, c.vocab, c.hidden);
    expect_matrix(&fx, "attn_q", m.layers[0].q.W, c.heads * c.head_dim, c.hidden);
    expect_matrix(&fx, "attn_k", m.layers[0].k.W, c.kv_heads * c.head_dim, c.hidden);
    const GgufTensor *norm = gguf_tensor(&fx, "smol.ffn_norm");
    ck_assert(norm && norm->ne[0] == c.hidden);
    int bad = 0;
    for (int i = 0; i < c.hidden; i++) {
        float want;
        memcpy(&want, norm->data + 4 * i, 4);
        bad += m.layers[0].ln2_w[i] != (real_t)want;
    }
    ck_assert_int_eq(bad, 0);
    gguf_close(&fx);
    llama_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("model_gguf");
    TCase *tc = tcase_create("model_gguf");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tiny_llama_tied);
    tcase_add_test(tc, tiny_llama_untied_bias_f16);
    tcase_add_test(tc, permutation_matters);
    tcase_add_test(tc, llama_gguf_rope_scaling_and_o_bias);
    tcase_add_test(tc, content_hash_follows_the_weights);
    tcase_add_test(tc, llama_gguf_errors);
    tcase_add_test(tc, llama_gguf_bad_floats);
    tcase_add_test(tc, llama_gguf_absurd_sizes);
    tcase_add_test(tc, smollm2_file);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
