/* model_save_gguf: a model loaded from a GGUF file, changed in every base tensor, saved as GGUF and
 * loaded again is the changed model (bit for bit in F32, to f16/bf16 rounding otherwise), with the
 * base's metadata byte for byte but general.file_type, the base's tensor order and shapes, llama.cpp's
 * layout (Q/K rows interleaved, Mamba's A as -exp(A_log)) and the tensors the model lacks copied;
 * and what cannot be saved is refused by name. The base files are written here, independently of the
 * loader's name table and permutation. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/formats/gguf.h"
#include "core/formats/gguf_write.h"
#include "core/formats/quant.h"
#include "core/models/gguf_save.h"
#include "core/models/llama/llama.h"
#include "core/models/model_load.h"
#include "tests/gguf_testutil.h"
#include "tests/testutil.h"

#define MAMBA_FIXTURE PEFTC_FIXTURE_DIR "/hf_tiny_mamba.gguf"
#define HF_FOLDER PEFTC_FIXTURE_DIR "/hf_tiny_llama"

/* ======================= a LLaMA base as llama.cpp's converter writes it ======================= */

static LlamaConfig tiny_cfg(int bias) {
    return (LlamaConfig){.hidden = 32, .intermediate = 48, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 8,
                         .vocab = 40, .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 0, .qkv_bias = bias};
}



/* Heads of HF tensor `hf` that llama.cpp permutes (q: heads, k: kv_heads), or 0. */
static int permuted_heads(const LlamaConfig *c, const char *hf) {
    return strstr(hf, "q_proj") ? c->heads : strstr(hf, "k_proj") ? c->kv_heads : 0;
}

/* Tensor r of m in llama.cpp's layout: float values (numel), Q/K rows and bias elements permuted. */
static float *file_layout(const Model *m, const ParamRef *r) {
    const LlamaConfig *c = &llama_of_const(m)->cfg;
    size_t n = (size_t)shape_numel(&r->shape);
    float *v = malloc(n * sizeof *v), *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) v[i] = (float)(*r->data)[i];
    int heads = permuted_heads(c, r->name);
    if (heads) {
        llama_cpp_permute(p, v, heads, c->head_dim, r->shape.ndim == 2 ? (int)r->shape.dim[1] : 1);
        memcpy(v, p, n * sizeof *v);
    }
    free(p);
    return v;
}

static const float rope_freqs[4] = {1.0f, 1.5f, 2.0f, 4.0f}; /* one per rotated pair of head_dim 8 */

/* Metadata of every value type a real file carries: strings, string / i32 / f32 arrays, a bool, u32s,
 * f32s, a non-default alignment. */
static void write_meta(GgufWriter *w, const LlamaConfig *c) {
    const char *tags[] = {"tiny", "two words", ""};
    ck_assert_int_eq(gguf_writer_str(w, "general.architecture", "llama"), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_str(w, "general.name", "tiny saved llama"), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_str_array(w, "general.tags", tags, 3), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_u32(w, "general.alignment", 64), PEFTC_OK);
    struct { const char *key; int v; } u[] = {
        {"llama.block_count", c->layers}, {"llama.context_length", 256}, {"llama.embedding_length", c->hidden},
        {"llama.feed_forward_length", c->intermediate}, {"llama.attention.head_count", c->heads},
        {"llama.attention.head_count_kv", c->kv_heads}, {"llama.vocab_size", c->vocab}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
        ck_assert_int_eq(gguf_writer_u32(w, u[i].key, (uint32_t)u[i].v), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32(w, "llama.rope.freq_base", (float)c->rope_theta), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_eps), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_u32(w, "general.file_type", 1), PEFTC_OK); /* MOSTLY_F16, as the matrices are */
    const char **toks = malloc((size_t)c->vocab * sizeof *toks);
    int32_t *types = malloc((size_t)c->vocab * sizeof *types);
    float *scores = malloc((size_t)c->vocab * sizeof *scores);
    for (int i = 0; i < c->vocab; i++) {
        toks[i] = i % 3 ? "tok" : "\xc4\xa0t";
        types[i] = 1 + i % 2;
        scores[i] = -(float)i;
    }
    ck_assert_int_eq(gguf_writer_str(w, "tokenizer.ggml.model", "gpt2"), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_str_array(w, "tokenizer.ggml.tokens", toks, (uint64_t)c->vocab), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_i32_array(w, "tokenizer.ggml.token_type", types, (uint64_t)c->vocab), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32_array(w, "tokenizer.ggml.scores", scores, (uint64_t)c->vocab), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", 0), PEFTC_OK);
    const char *tmpl = "{% for m in messages %}{{ m.content }}{% endfor %}";
    ck_assert_int_eq(gguf_writer_str(w, "tokenizer.chat_template", tmpl), PEFTC_OK);
    free(toks);
    free(types);
    free(scores);
}

/* m's base as llama.cpp writes a MOSTLY_F16 file: rope_freqs first, matrices F16, vectors F32; with
 * with_bias 0 the q/k/v biases are left out. */
static void write_base(const Model *m, const char *path, int with_bias) {
    GgufWriter *w = gguf_writer_new();
    write_meta(w, &llama_of_const(m)->cfg);
    ck_assert_int_eq(gguf_writer_add_f32(w, "rope_freqs.weight", 1, (int64_t[]){4}, rope_freqs), PEFTC_OK);
    for (int i = 0; i < m->n_refs; i++) {
        const ParamRef *r = &m->refs[i];
        if (!with_bias && strstr(r->name, ".bias")) continue;
        char name[96];
        gguf_name(r->name, name, sizeof name);
        int nd = r->shape.ndim;
        int64_t ne[2] = {r->shape.dim[nd - 1], nd == 2 ? r->shape.dim[0] : 1};
        float *v = file_layout(m, r);
        if (nd == 2) {
            real_t *rv = malloc((size_t)shape_numel(&r->shape) * sizeof *rv);
            for (int64_t k = 0; k < shape_numel(&r->shape); k++) rv[k] = v[k];
            ck_assert_int_eq(gguf_writer_add_real(w, name, GGML_F16, 2, ne, rv), PEFTC_OK);
            free(rv);
        } else {
            ck_assert_int_eq(gguf_writer_add_f32(w, name, 1, ne, v), PEFTC_OK);
        }
        free(v);
    }
    ck_assert_int_eq(gguf_writer_write(w, path), PEFTC_OK);
    gguf_writer_free(w);
}

/* A random tiny LLaMA (biases given values, so their permutation shows) written as base `path`. */
static void make_base(const char *path, int bias, uint64_t seed) {
    LlamaConfig cfg = tiny_cfg(bias);
    Model *src;
    ck_assert_int_eq(llama_new(&src, backend_cpu(), &cfg, seed, 0.5), PEFTC_OK);
    for (int i = 0; i < src->n_refs; i++)
        if (strstr(src->refs[i].name, ".bias"))
            tu_fill_uniform(*src->refs[i].data, (size_t)shape_numel(&src->refs[i].shape), seed + (uint64_t)i, -1, 1);
    write_base(src, path, 1);
    model_free(src);
}

static Model *load(const char *path, QuantMode q) {
    Model *m = NULL;
    ck_assert_msg(model_load(&m, backend_cpu(), path, q, NULL) == PEFTC_OK, "%s: %s", path, peftc_err_msg());
    return m;
}

/* What training does to a model: every base tensor changed (stream `key`). */
static void perturb(Model *m, uint64_t key) {
    for (int i = 0; i < m->n_refs; i++) {
        size_t n = (size_t)shape_numel(&m->refs[i].shape);
        real_t *d = malloc(n * sizeof *d);
        tu_fill_uniform(d, n, key + (uint64_t)i, -0.05, 0.05);
        for (size_t k = 0; k < n; k++) (*m->refs[i].data)[k] += d[k];
        free(d);
    }
}

/* ======================= checks on the saved file ======================= */

static uint32_t u32_of(const GgufFile *g, const char *key) {
    uint32_t v;
    ck_assert_int_eq(gguf_get_u32(g, key, &v), PEFTC_OK);
    return v;
}

/* Every key of base is in saved, in the same place, with the same bytes, but general.file_type. */
static void expect_same_metadata(const char *base, const char *saved, uint32_t file_type) {
    GgufFile a, b;
    ck_assert_int_eq(gguf_open(&a, base), PEFTC_OK);
    ck_assert_int_eq(gguf_open(&b, saved), PEFTC_OK);
    ck_assert_int_eq(a.n_kv, b.n_kv);
    for (int64_t i = 0; i < a.n_kv; i++) {
        const GgufKV *x = &a.kv[i], *y = &b.kv[i];
        ck_assert(x->key.len == y->key.len && memcmp(x->key.ptr, y->key.ptr, x->key.len) == 0);
        if (x->key.len == 17 && !memcmp(x->key.ptr, "general.file_type", 17)) continue;
        ck_assert_msg(x->type == y->type && x->elem_type == y->elem_type && x->count == y->count &&
                      x->nbytes == y->nbytes && !memcmp(x->raw, y->raw, (size_t)x->nbytes),
                      "key %.*s differs", (int)x->key.len, x->key.ptr);
    }
    ck_assert_uint_eq(u32_of(&b, "general.file_type"), file_type);
    ck_assert_uint_eq(b.alignment, a.alignment);
    gguf_close(&a);
    gguf_close(&b);
}

/* The base's tensors in its order with its shapes; the saved type of each is `matrix` for 2-D .weight
 * tensors but F32 for what llama.cpp keeps in F32 (f32_names, NULL-terminated substrings) and for
 * vectors; tensors the model lacks (`copied`) are the base's bytes. */
static void expect_tensor_layout(const char *base, const char *saved, GgmlType matrix, const char *const *f32_names,
                                 const char *copied) {
    GgufFile a, b;
    ck_assert_int_eq(gguf_open(&a, base), PEFTC_OK);
    ck_assert_int_eq(gguf_open(&b, saved), PEFTC_OK);
    ck_assert_int_eq(a.n_tensors, b.n_tensors);
    for (int64_t i = 0; i < a.n_tensors; i++) {
        const GgufTensor *x = &a.tensors[i], *y = &b.tensors[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert(x->n_dims == y->n_dims && !memcmp(x->ne, y->ne, sizeof x->ne));
        ck_assert_uint_eq(y->offset % b.alignment, 0);
        int f32 = x->n_dims == 1;
        for (const char *const *n = f32_names; *n; n++) f32 |= strstr(x->name, *n) != NULL;
        if (copied && !strcmp(x->name, copied)) {
            ck_assert(y->type == x->type && y->nbytes == x->nbytes && !memcmp(x->data, y->data, x->nbytes));
            continue;
        }
        ck_assert_msg(y->type == (f32 ? GGML_F32 : matrix), "%s saved as %s", y->name, ggml_type_name(y->type));
    }
    gguf_close(&a);
    gguf_close(&b);
}

/* Every base tensor of got equals want's, rounded through `matrix` for matrices. */
static void expect_weights(const Model *want, const Model *got, GgmlType matrix) {
    ck_assert_int_eq(want->n_refs, got->n_refs);
    for (int i = 0; i < want->n_refs; i++) {
        const ParamRef *a = &want->refs[i], *b = &got->refs[i];
        ck_assert_str_eq(a->name, b->name);
        for (int64_t k = 0; k < shape_numel(&a->shape); k++) {
            float w = (float)(*a->data)[k];
            if (a->shape.ndim == 2 && matrix == GGML_F16) w = f16_to_f32(f32_to_f16(w));
            if (a->shape.ndim == 2 && matrix == GGML_BF16) w = bf16_to_f32(f32_to_bf16(w));
            if ((float)(*b->data)[k] != w)
                ck_abort_msg("%s[%lld]: %.9g, expected %.9g (%s)", a->name, (long long)k, (double)(*b->data)[k],
                             (double)w, ggml_type_name(matrix));
        }
    }
}

/* The saved tensor `name` holds ref `hf` of m in llama.cpp's layout (the test's own permutation). */
static void expect_file_layout(const char *saved, const Model *m, const char *name, const char *hf) {
    GgufFile g;
    ck_assert_int_eq(gguf_open(&g, saved), PEFTC_OK);
    const GgufTensor *t = gguf_tensor(&g, name);
    const ParamRef *r = &m->refs[model_find_ref(m, hf)];
    float *want = file_layout(m, r);
    ck_assert(t && t->type == GGML_F32 && t->nbytes == (size_t)shape_numel(&r->shape) * sizeof(float));
    ck_assert_msg(!memcmp(t->data, want, t->nbytes), "%s is not in llama.cpp's layout", name);
    free(want);
    gguf_close(&g);
}

/* ======================= LLaMA ======================= */

START_TEST(llama_f32_round_trip) {
    const char *base = tmp_path("base.gguf"), *out = tmp_path("saved.gguf");
    make_base(base, 1, 21);
    Model *m = load(base, QUANT_NONE);
    perturb(m, 500);
    ck_assert_msg(model_save_gguf(m, base, out, GGML_F32) == PEFTC_OK, "%s", peftc_err_msg());
    Model *back = load(out, QUANT_NONE);
    expect_weights(m, back, GGML_F32);
    expect_same_metadata(base, out, 0);
    expect_tensor_layout(base, out, GGML_F32, (const char *const[]){NULL}, "rope_freqs.weight");
    expect_file_layout(out, m, "blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight");
    expect_file_layout(out, m, "blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias");
    expect_file_layout(out, m, "blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight");
    ck_assert_int_eq(llama_of(back)->cfg.rope_scaling.type, ROPE_FACTORS);
    ck_assert(llama_of(back)->cfg.rope_scaling.factors[3] == 4.0f);
    model_free(back);
    model_free(m);
    tmp_cleanup();
}
END_TEST

START_TEST(llama_f16_bf16) {
    const char *base = tmp_path("base.gguf"), *out = tmp_path("saved.gguf");
    make_base(base, 1, 22);
    Model *m = load(base, QUANT_NONE);
    perturb(m, 600);
    const GgmlType types[] = {GGML_F16, GGML_BF16};
    const uint32_t ftypes[] = {1, 32};
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(model_save_gguf(m, base, out, types[i]) == PEFTC_OK, "%s", peftc_err_msg());
        Model *back = load(out, QUANT_NONE);
        expect_weights(m, back, types[i]);
        expect_same_metadata(base, out, ftypes[i]);
        expect_tensor_layout(base, out, types[i], (const char *const[]){"_norm.weight", NULL}, "rope_freqs.weight");
        model_free(back);
    }
    model_free(m);
    tmp_cleanup();
}
END_TEST

/* ======================= Mamba ======================= */

START_TEST(mamba_round_trip) {
    const char *out = tmp_path("mamba.gguf");
    Model *m = load(MAMBA_FIXTURE, QUANT_NONE);
    perturb(m, 700);
    ck_assert_msg(model_save_gguf(m, MAMBA_FIXTURE, out, GGML_F32) == PEFTC_OK, "%s", peftc_err_msg());
    expect_same_metadata(MAMBA_FIXTURE, out, 0);
    expect_tensor_layout(MAMBA_FIXTURE, out, GGML_F32, (const char *const[]){NULL}, NULL);
    Model *back = load(out, QUANT_NONE);
    GgufFile g;
    ck_assert_int_eq(gguf_open(&g, out), PEFTC_OK);
    const GgufTensor *a = gguf_tensor(&g, "blk.1.ssm_a");
    const real_t *A_log = *m->refs[model_find_ref(m, "backbone.layers.1.mixer.A_log")].data;
    for (int k = 0; k < 64 * 8; k++) { /* the file holds A = -exp(A_log), as llama.cpp's converter stores it */
        float v;
        memcpy(&v, a->data + 4 * k, 4);
        ck_assert_msg(v == (float)-exp((double)A_log[k]), "ssm_a[%d] = %g, A_log %g", k, (double)v, (double)A_log[k]);
    }
    gguf_close(&g);
    for (int i = 0; i < m->n_refs; i++) {
        const ParamRef *r = &m->refs[i];
        int is_a = strstr(r->name, "A_log") != NULL;
        for (int64_t k = 0; k < shape_numel(&r->shape); k++) {
            double want = (*r->data)[k], got = (*back->refs[i].data)[k];
            /* A_log through exp and log: the float rounding of A (2^-24 relative, so 2^-24 in its log)
             * and of A_log itself */
            double tol = is_a ? 0x1p-24 + 0x1p-24 * fabs(want) : 0;
            ck_assert_msg(fabs(got - want) <= tol, "%s[%lld]: %.9g, expected %.9g", r->name, (long long)k, got, want);
        }
    }
    model_free(back);
    /* In F16 the projections and embedding are halved; A, D, the conv and every vector stay F32. */
    ck_assert_int_eq(model_save_gguf(m, MAMBA_FIXTURE, out, GGML_F16), PEFTC_OK);
    expect_same_metadata(MAMBA_FIXTURE, out, 1);
    expect_tensor_layout(MAMBA_FIXTURE, out, GGML_F16, (const char *const[]){"ssm_a", "ssm_conv1d.weight", NULL},
                         NULL);
    model_free(m);
    tmp_cleanup();
}
END_TEST

/* ======================= refusals ======================= */

/* Saving fails with st, names `what` and both files where given, and leaves no file at out. */
static void expect_refused(const Model *m, const char *base, const char *out, GgmlType type, PeftcStatus st,
                           const char *what) {
    peftc_err_clear();
    PeftcStatus got = model_save_gguf(m, base, out, type);
    const char *msg = peftc_err_msg();
    ck_assert_msg(got == st, "%s: status %d (%s)", what, got, msg);
    ck_assert_msg(strstr(msg, what), "no '%s' in: %s", what, msg);
    ck_assert_msg(strstr(msg, base) && strstr(msg, out), "the message should name %s and %s: %s", base, out, msg);
    ck_assert_int_ne(access(out, F_OK), 0);
}

START_TEST(refusals) {
    const char *base = tmp_path("base.gguf"), *plain = tmp_path("plain.gguf"), *out = tmp_path("out.gguf");
    make_base(base, 1, 23);
    Model *m = load(base, QUANT_NONE);
    Model *nobias;
    LlamaConfig c = tiny_cfg(0);
    ck_assert_int_eq(llama_new(&nobias, backend_cpu(), &c, 4, 0.5), PEFTC_OK);
    write_base(nobias, plain, 0);
    /* the model's q/k/v biases are in no tensor of a base without them */
    expect_refused(m, plain, out, GGML_F32, PEFTC_EINVAL, "model.layers.0.self_attn.q_proj.bias");
    expect_refused(m, MAMBA_FIXTURE, out, GGML_F32, PEFTC_EINVAL, "general.architecture is 'mamba', expected 'llama'");
    expect_refused(m, base, out, GGML_Q8_0, PEFTC_EINVAL, "F32, F16 or BF16");
    Model *hf = load(HF_FOLDER, QUANT_NONE); /* hidden 64: every matrix differs from the base's */
    expect_refused(hf, base, out, GGML_F32, PEFTC_EINVAL,
                   "tensor 'token_embd.weight' has shape [32, 40], expected [64, 128]");
    /* an HF folder is no GGUF base: nothing to take the metadata from */
    peftc_err_clear();
    ck_assert_int_ne(model_save_gguf(hf, HF_FOLDER, out, GGML_F32), PEFTC_OK);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), HF_FOLDER));
    ck_assert_int_ne(access(out, F_OK), 0);
    Model *q = load(base, QUANT_BLOCKS);
    expect_refused(q, base, out, GGML_F32, PEFTC_EINVAL, "load");
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "quantized"));
    Model *mamba = load(MAMBA_FIXTURE, QUANT_NONE);
    expect_refused(mamba, base, out, GGML_F32, PEFTC_EINVAL, "general.architecture is 'llama', expected 'mamba'");
    model_free(mamba);
    model_free(q);
    model_free(hf);
    model_free(nobias);
    model_free(m);
    tmp_cleanup();
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf_save");
    TCase *tc = tcase_create("gguf_save");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, llama_f32_round_trip);
    tcase_add_test(tc, llama_f16_bf16);
    tcase_add_test(tc, mamba_round_trip);
    tcase_add_test(tc, refusals);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
