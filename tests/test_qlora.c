/* A quantized base (QLoRA / QRoSA) on the real SmolLM2 GGUF: the projection weights stay in their ggml
 * blocks and are expanded per layer, which must give the dense-loaded model's logits and adapter
 * gradients bit for bit, in well under a third of the memory; and the paths that need a dense base
 * (full fine-tuning, copies, HF folders, merging) refuse it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/method.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"
#include "core/models/model_load.h"
#include "core/formats/safetensors.h"
#include "launch/config/config.h"
#include "tests/config_testutil.h"
#include "tests/method_testutil.h"
#include "tests/quant_testutil.h"
#include "tests/testutil.h"

enum { B = 2, T = 12, R = 4 };

static int have_model(void) {
    if (access(PEFTC_DEFAULT_MODEL, R_OK) == 0) return 1;
    printf("SKIP: %s is absent (tools/fetch-model.sh fetches it)\n", PEFTC_DEFAULT_MODEL);
    return 0;
}

/* The synthetic model of tests/quant_testutil.h (every block type), written once per test process. */
static const char *block_llama(void) {
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/test_qlora_%d.gguf", (int)getpid());
        tu_write_block_llama(path);
    }
    return path;
}

static void load_pair_from(const char *path, LlamaModel *dense, LlamaModel *quant) {
    ck_assert_msg(llama_load(dense, backend_cpu(), path, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_msg(llama_load_quantized(quant, backend_cpu(), path, QUANT_BLOCKS, NULL) == PEFTC_OK, "%s",
                  peftc_err_msg());
    ck_assert(quant->cfg.quantized && !dense->cfg.quantized);
}

static void batch(const LlamaModel *m, int32_t *tok, int32_t *tgt, uint64_t *keys) {
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab);
        tgt[i] = (int32_t)((i * 104729 + 5) % m->cfg.vocab);
        keys[i] = (uint64_t)i * 31 + 1;
    }
}

static int same_bits(const real_t *a, const real_t *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* The same batch through a and b: their logits must be the same bits. */
static void expect_same_logits(LlamaModel *a, LlamaModel *b, const char *what) {
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    batch(a, tok, tgt, keys);
    LlamaModel *ms[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(llama_reserve(ms[i], B, T), PEFTC_OK);
        ck_assert_int_eq(llama_forward(ms[i], tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    }
    ck_assert_msg(same_bits(a->acts.logits, b->acts.logits, (size_t)B * T * a->cfg.vocab), "%s", what);
}

static void logits_bit_identical_on(const char *path) {
    LlamaModel dense, quant;
    load_pair_from(path, &dense, &quant);
    expect_same_logits(&dense, &quant, "quantized logits differ from dense ones");
    /* the blocks are the only copy: W is the shared scratch */
    ck_assert(quant.layers[0].q.W == quant.wscratch && quant.layers[0].q.qW != NULL);
    llama_free(&dense);
    llama_free(&quant);
}

START_TEST(logits_bit_identical) {
    if (have_model()) logits_bit_identical_on(PEFTC_DEFAULT_MODEL);
}
END_TEST

/* LoRA on every linear with random A and B (B = 0 would hide dA), dropout on: one training step's loss
 * and every adapter gradient must match the dense model's exactly. */
static void attach_lora(LlamaModel *m, Arena *a) {
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = (LoraConfig){.r = R, .alpha = 8, .dropout = 0.1, .targets = LORA_T_ALL};
    arena_init(a, m->base.be);
    ck_assert_msg(method_attach(&m->base, a, &mc) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
    ck_assert_msg(method_init(&m->base, a, &mc, 3) == PEFTC_OK, "%s", peftc_err_msg());
    tu_fill_uniform(a->params, a->numel, 77, -0.05, 0.05);
    ck_assert_int_eq(llama_reserve(m, B, T), PEFTC_OK);
}

static void lora_grads_bit_identical_on(const char *path) {
    LlamaModel dense, quant;
    load_pair_from(path, &dense, &quant);
    Arena ad, aq;
    attach_lora(&dense, &ad);
    attach_lora(&quant, &aq);
    ck_assert_uint_eq(ad.numel, aq.numel);
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    batch(&dense, tok, tgt, keys);
    double loss[2];
    int64_t nv[2];
    LlamaModel *ms[2] = {&dense, &quant};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(llama_forward(ms[i], tok, tgt, NULL, NULL, keys, 1, B, T, &loss[i], &nv[i]), PEFTC_OK);
        llama_backward(ms[i], tok, tgt, keys, 1);
    }
    ck_assert(nv[0] == nv[1] && loss[0] == loss[1]);
    double g = ad.be->sumsq(ad.be, ad.grads, ad.numel);
    ck_assert_msg(g > 0, "no LoRA gradient reached the arena");
    ck_assert_msg(same_bits(ad.grads, aq.grads, ad.numel), "LoRA gradients differ on the quantized base");
    method_detach(&dense.base, NULL);
    method_detach(&quant.base, NULL);
    llama_free(&dense);
    llama_free(&quant);
    arena_free(&ad);
    arena_free(&aq);
}

START_TEST(lora_grads_bit_identical) {
    if (have_model()) lora_grads_bit_identical_on(PEFTC_DEFAULT_MODEL);
}
END_TEST

/* The same on the synthetic model, whose projections hold every block type: the loader's expansion
 * and the backend's dequantize op must agree for each, Q/K row moves included. */
START_TEST(every_block_type_bit_identical) {
    const char *path = block_llama();
    LlamaModel quant;
    ck_assert_msg(llama_load_quantized(&quant, backend_cpu(), path, QUANT_BLOCKS, NULL) == PEFTC_OK, "%s",
                  peftc_err_msg());
    for (int i = 0; i < TU_N_BLOCK_TYPES; i++) {
        int found = 0;
        for (int l = 0; l < llama_linear_count(&quant); l++) found |= llama_linear(&quant, l)->qW->type == tu_block_types[i];
        ck_assert_msg(found, "no projection of the synthetic model is stored as %s", ggml_type_name(tu_block_types[i]));
    }
    llama_free(&quant);
    logits_bit_identical_on(path);
    lora_grads_bit_identical_on(path);
    unlink(path);
}
END_TEST

/* NLoRA reads W once at init: through linear_weight_dense it must see the same values either way. */
START_TEST(nlora_init_from_blocks) {
    if (!have_model()) return;
    LlamaModel dense, quant;
    load_pair_from(PEFTC_DEFAULT_MODEL, &dense, &quant);
    MethodConfig mc = tu_method("nlora");
    *tu_lora(&mc) = (LoraConfig){.r = R, .alpha = 8, .targets = LORA_T_ALL};
    Arena ad, aq;
    Arena *as[2] = {&ad, &aq};
    LlamaModel *ms[2] = {&dense, &quant};
    for (int i = 0; i < 2; i++) {
        arena_init(as[i], backend_cpu());
        ck_assert_msg(method_attach(&ms[i]->base, as[i], &mc) == PEFTC_OK, "%s", peftc_err_msg());
        ck_assert_int_eq(arena_finalize(as[i]), PEFTC_OK);
        ck_assert_msg(method_init(&ms[i]->base, as[i], &mc, 3) == PEFTC_OK, "%s", peftc_err_msg());
    }
    ck_assert(ad.be->sumsq(ad.be, ad.params, ad.numel) > 0);
    ck_assert_msg(same_bits(ad.params, aq.params, ad.numel), "NLoRA init differs on the quantized base");
    for (int i = 0; i < 2; i++) {
        method_detach(&ms[i]->base, NULL);
        llama_free(ms[i]);
        arena_free(as[i]);
    }
}
END_TEST

/* The embedding (tied LM head) stays fp32 by design: 113 MB of SmolLM2's 538, so the whole base cannot
 * reach 30%; the projections kept in blocks must, and the whole base must come in under 40%. */
START_TEST(base_bytes_shrink) {
    if (!have_model()) return;
    LlamaModel dense, quant;
    load_pair_from(PEFTC_DEFAULT_MODEL, &dense, &quant);
    size_t d = llama_base_bytes(&dense), q = llama_base_bytes(&quant), blocks = 0, proj = 0;
    for (int i = 0; i < llama_linear_count(&quant); i++) {
        const Linear *l = llama_linear(&quant, i);
        ck_assert(l->qW == &quant.qweights[i] && l->qW->blocks);
        blocks += l->qW->nbytes;
        proj += (size_t)l->out * (size_t)l->in * sizeof(real_t);
    }
    printf("base weights: dense %zu bytes (%.1f MiB), quantized %zu bytes (%.1f MiB), %.1f%%; projections %zu -> "
           "%zu bytes (%.1f%%)\n", d, d / 1048576.0, q, q / 1048576.0, 100.0 * (double)q / (double)d, proj, blocks,
           100.0 * (double)blocks / (double)proj);
    ck_assert_uint_eq(d, llama_dense_bytes(&dense.cfg));
    ck_assert_uint_eq(d, (size_t)llama_param_count(&quant.cfg) * sizeof(real_t));
    ck_assert_msg((double)blocks < 0.30 * (double)proj, "projection blocks are %zu bytes of %zu", blocks, proj);
    ck_assert_msg((double)q < 0.40 * (double)d, "quantized base is %zu bytes of %zu", q, d);
    llama_free(&dense);
    llama_free(&quant);
}
END_TEST

/* What a device run does (session: load on the host, empty_like on the device, copy_weights), here onto
 * a second CPU instance: the blocks are copied into the new model's own memory and give the same logits. */
START_TEST(blocks_copy_to_another_instance) {
    const char *path = block_llama();
    LlamaModel quant, copy;
    ck_assert_msg(llama_load_quantized(&quant, backend_cpu(), path, QUANT_BLOCKS, NULL) == PEFTC_OK, "%s",
                  peftc_err_msg());
    Backend *other;
    ck_assert_int_eq(backend_cpu_create(&other), PEFTC_OK);
    ck_assert_int_eq(llama_create(&copy, other, &quant.cfg, 0, -1.0), PEFTC_OK);
    ck_assert_msg(llama_copy_weights(&copy, &quant) == PEFTC_OK, "%s", peftc_err_msg());
    for (int l = 0; l < llama_linear_count(&copy); l++) {
        const QWeight *q = llama_linear(&copy, l)->qW, *src = llama_linear(&quant, l)->qW;
        ck_assert_msg(q && q != src && q->blocks != src->blocks && q->type == src->type && q->nbytes == src->nbytes &&
                          !memcmp(q->blocks, src->blocks, q->nbytes),
                      "linear %d: blocks not copied into the new model", l);
    }
    expect_same_logits(&quant, &copy, "the copied quantized model's logits differ");
    llama_free(&copy);
    llama_free(&quant);
    backend_free(other);
    unlink(path);
}
END_TEST

START_TEST(dense_only_paths_refuse) {
    if (!have_model()) return;
    LlamaModel quant, copy;
    ck_assert_int_eq(llama_load_quantized(&quant, backend_cpu(), PEFTC_DEFAULT_MODEL, QUANT_BLOCKS, NULL), PEFTC_OK);
    Arena a;
    arena_init(&a, backend_cpu());
    MethodConfig full = tu_method("full");
    ck_assert_int_eq(method_attach(&quant.base, &a, &full), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "full fine-tuning needs the dense base: set model.quantized=false"), "%s",
                  peftc_err_msg());
    arena_free(&a);
    LlamaConfig dc = quant.cfg;
    dc.quantized = 0;
    ck_assert_int_eq(llama_create(&copy, backend_cpu(), &dc, 0, -1.0), PEFTC_OK);
    ck_assert_int_eq(llama_copy_weights(&copy, &quant), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "q_proj.weight"), "%s", peftc_err_msg());
    llama_free(&copy);
    ck_assert_int_eq(model_save_hf(&quant, "/tmp/peftc_qlora_never_written", ST_F32), PEFTC_EINVAL);
    ck_assert(access("/tmp/peftc_qlora_never_written", F_OK) != 0);
    llama_free(&quant);
}
END_TEST

START_TEST(hf_folder_and_random_refused) {
    LlamaModel m;
    const char *hf = PEFTC_FIXTURE_DIR "/hf_tiny_llama";
    ck_assert_int_eq(llama_load_quantized(&m, backend_cpu(), hf, QUANT_BLOCKS, NULL), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), hf) && strstr(peftc_err_msg(), "GGUF"), "%s", peftc_err_msg());
    LlamaConfig c = {.hidden = 16, .intermediate = 24, .layers = 1, .heads = 2, .kv_heads = 1, .vocab = 20,
                     .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 1, .quantized = 1};
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &c, 1, 0.1), PEFTC_EINVAL);
}
END_TEST

static PeftcStatus finish_with(const char *a, const char *b) {
    return tu_finish_with("model.quantized=true", a, b);
}

START_TEST(config_refusals) {
    ck_assert_int_eq(finish_with("method.name=full", NULL), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "model.quantized=false"), "%s", peftc_err_msg());
    ck_assert_int_eq(finish_with("method.name=gmt", NULL), PEFTC_EINVAL);
    ck_assert_int_eq(finish_with("model.path=", "data.task=copy"), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "model.quantized=true needs model.path"), "%s", peftc_err_msg());
    ck_assert_msg(finish_with("method.name=rosa", NULL) == PEFTC_OK, "%s", peftc_err_msg());
}
END_TEST

int main(void) {
    Suite *s = suite_create("qlora");
    TCase *tc = tcase_create("qlora");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, logits_bit_identical);
    tcase_add_test(tc, lora_grads_bit_identical);
    tcase_add_test(tc, every_block_type_bit_identical);
    tcase_add_test(tc, nlora_init_from_blocks);
    tcase_add_test(tc, base_bytes_shrink);
    tcase_add_test(tc, blocks_copy_to_another_instance);
    tcase_add_test(tc, dense_only_paths_refuse);
    tcase_add_test(tc, hf_folder_and_random_refused);
    tcase_add_test(tc, config_refusals);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
