/* model.quantized=nf4 on an HF folder (tests/fixtures/hf_tiny_llama: hidden 64, intermediate 160, so
 * down_proj's blocks span rows): the projections held in NF4 must give the logits, LoRA gradients and
 * NLoRA init of the dense model whose projections were replaced by their NF4 round trip, bit for bit;
 * the blocks copy to another backend instance; the base shrinks; and the paths that need another kind
 * of file or a dense base refuse it by name. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/method.h"
#include "core/base/nf4.h"
#include "core/formats/safetensors.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"
#include "core/models/model_load.h"
#include "launch/config/config.h"
#include "tests/config_testutil.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

enum { B = 2, T = 12, R = 4 };

static const char *const HF = PEFTC_FIXTURE_DIR "/hf_tiny_llama";

/* W (out, in) replaced by what NF4 keeps of it; when blocks is given, the NF4 bytes must equal it. */
static void round_trip(Linear *l, const QWeight *blocks) {
    int64_t n = (int64_t)l->out * l->in;
    uint8_t *buf = malloc(nf4_bytes(n));
    ck_assert_int_eq(nf4_quantize(l->W, n, buf, l->name), PEFTC_OK);
    if (blocks)
        ck_assert_msg(blocks->type == GGML_NF4 && blocks->nbytes == nf4_bytes(n) && !memcmp(blocks->blocks, buf, blocks->nbytes),
                      "%s: the loader's NF4 bytes are not those of the file's weight", l->name);
    nf4_dequantize_blocks(buf, n, 0, nf4_blocks(n), l->W);
    free(buf);
}

/* dense: the folder loaded dense, every projection then replaced by its NF4 round trip; nf4: loaded
 * with model.quantized=nf4. */
static void load_pair(LlamaModel *dense, LlamaModel *nf4) {
    ck_assert_msg(llama_load(dense, backend_cpu(), HF, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_msg(llama_load_quantized(nf4, backend_cpu(), HF, QUANT_NF4, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert(nf4->cfg.quantized == QUANT_NF4 && nf4->base.quantized);
    for (int i = 0; i < llama_linear_count(dense); i++) round_trip(llama_linear(dense, i), llama_linear(nf4, i)->qW);
}

static void batch(int V, int32_t *tok, int32_t *tgt, uint64_t *keys) {
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)((i * 7919 + 13) % V);
        tgt[i] = (int32_t)((i * 104729 + 5) % V);
        keys[i] = (uint64_t)i * 31 + 1;
    }
}

static void expect_same_logits(LlamaModel *a, LlamaModel *b, const char *what) {
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    batch(a->cfg.vocab, tok, tgt, keys);
    LlamaModel *ms[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(llama_reserve(ms[i], B, T), PEFTC_OK);
        ck_assert_int_eq(llama_forward(ms[i], tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    }
    ck_assert_msg(!memcmp(a->acts.logits, b->acts.logits, (size_t)B * T * a->cfg.vocab * sizeof(real_t)), "%s", what);
}

START_TEST(logits_match_the_round_trip) {
    LlamaModel dense, nf4;
    load_pair(&dense, &nf4);
    for (int i = 0; i < llama_linear_count(&nf4); i++) {
        const Linear *l = llama_linear(&nf4, i);
        ck_assert(l->qW == &nf4.qweights[i] && l->W == nf4.wscratch); /* the NF4 bytes are the only copy */
    }
    expect_same_logits(&dense, &nf4, "NF4 logits differ from the dense model holding the NF4 values");
    llama_free(&dense);
    llama_free(&nf4);
}
END_TEST

static void attach(LlamaModel *m, Arena *a, const char *method) {
    MethodConfig mc = tu_method(method);
    *tu_lora(&mc) = (LoraConfig){.r = R, .alpha = 8, .dropout = 0.1, .targets = LORA_T_ALL};
    arena_init(a, m->base.be);
    ck_assert_msg(method_attach(&m->base, a, &mc) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
    ck_assert_msg(method_init(&m->base, a, &mc, 3) == PEFTC_OK, "%s", peftc_err_msg());
}

/* LoRA with random A and B and dropout: one step's loss and every adapter gradient, bit for bit. */
START_TEST(lora_grads_match_the_round_trip) {
    LlamaModel dense, nf4;
    load_pair(&dense, &nf4);
    Arena a[2];
    LlamaModel *ms[2] = {&dense, &nf4};
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    batch(dense.cfg.vocab, tok, tgt, keys);
    double loss[2];
    int64_t nv[2];
    for (int i = 0; i < 2; i++) {
        attach(ms[i], &a[i], "lora");
        tu_fill_uniform(a[i].params, a[i].numel, 77, -0.05, 0.05);
        ck_assert_int_eq(llama_reserve(ms[i], B, T), PEFTC_OK);
        ck_assert_int_eq(llama_forward(ms[i], tok, tgt, NULL, NULL, keys, 1, B, T, &loss[i], &nv[i]), PEFTC_OK);
        llama_backward(ms[i], tok, tgt, keys, 1);
    }
    ck_assert(nv[0] == nv[1] && loss[0] == loss[1]);
    ck_assert_msg(a[0].be->sumsq(a[0].be, a[0].grads, a[0].numel) > 0, "no LoRA gradient reached the arena");
    ck_assert_msg(!memcmp(a[0].grads, a[1].grads, a[0].numel * sizeof(real_t)), "LoRA gradients differ on NF4");
    for (int i = 0; i < 2; i++) {
        method_detach(&ms[i]->base, NULL);
        llama_free(ms[i]);
        arena_free(&a[i]);
    }
}
END_TEST

/* NLoRA reads W once at init (linear_weight_dense): through the NF4 expansion it sees the same values. */
START_TEST(nlora_init_matches_the_round_trip) {
    LlamaModel dense, nf4;
    load_pair(&dense, &nf4);
    Arena a[2];
    LlamaModel *ms[2] = {&dense, &nf4};
    for (int i = 0; i < 2; i++) attach(ms[i], &a[i], "nlora");
    ck_assert(a[0].be->sumsq(a[0].be, a[0].params, a[0].numel) > 0);
    ck_assert_msg(!memcmp(a[0].params, a[1].params, a[0].numel * sizeof(real_t)), "NLoRA init differs on NF4");
    for (int i = 0; i < 2; i++) {
        method_detach(&ms[i]->base, NULL);
        llama_free(ms[i]);
        arena_free(&a[i]);
    }
}
END_TEST

/* What a device run does (load on the host, empty_like on the device, copy_weights), onto a second CPU
 * instance: the NF4 bytes copied into the new model's own memory, the same logits. */
START_TEST(nf4_copies_to_another_instance) {
    LlamaModel nf4, copy;
    ck_assert_msg(llama_load_quantized(&nf4, backend_cpu(), HF, QUANT_NF4, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    Backend *other;
    ck_assert_int_eq(backend_cpu_create(&other), PEFTC_OK);
    ck_assert_int_eq(llama_create(&copy, other, &nf4.cfg, 0, -1.0), PEFTC_OK);
    ck_assert_msg(llama_copy_weights(&copy, &nf4) == PEFTC_OK, "%s", peftc_err_msg());
    for (int l = 0; l < llama_linear_count(&copy); l++) {
        const QWeight *q = llama_linear(&copy, l)->qW, *src = llama_linear(&nf4, l)->qW;
        ck_assert_msg(q && q->blocks != src->blocks && q->type == GGML_NF4 && q->nbytes == src->nbytes &&
                          !memcmp(q->blocks, src->blocks, q->nbytes),
                      "linear %d: NF4 bytes not copied into the new model", l);
    }
    expect_same_logits(&nf4, &copy, "the copied NF4 model's logits differ");
    llama_free(&copy);
    llama_free(&nf4);
    backend_free(other);
}
END_TEST

/* Each projection takes nf4_bytes (about 0.52 bytes a value instead of 4); the base counts them, the
 * fp32 rest and one scratch of the largest projection. */
START_TEST(base_bytes_shrink) {
    LlamaModel dense, nf4;
    ck_assert_int_eq(llama_load(&dense, backend_cpu(), HF, NULL), PEFTC_OK);
    ck_assert_int_eq(llama_load_quantized(&nf4, backend_cpu(), HF, QUANT_NF4, NULL), PEFTC_OK);
    size_t proj = 0, held = 0, most = 0;
    for (int i = 0; i < llama_linear_count(&nf4); i++) {
        const Linear *l = llama_linear(&nf4, i);
        size_t n = (size_t)l->out * (size_t)l->in;
        ck_assert_uint_eq(l->qW->nbytes, nf4_bytes((int64_t)n));
        proj += n * sizeof(real_t);
        held += l->qW->nbytes;
        most = n > most ? n : most;
    }
    size_t d = llama_base_bytes(&dense), q = llama_base_bytes(&nf4);
    printf("hf_tiny_llama base: dense %zu bytes, NF4 %zu bytes (projections %zu -> %zu, %.1f%%)\n", d, q, proj, held,
           100.0 * (double)held / (double)proj);
    ck_assert_uint_eq(q, d - proj + held + most * sizeof(real_t));
    ck_assert_msg((double)held < 0.135 * (double)proj, "NF4 projections take %zu bytes of %zu", held, proj);
    llama_free(&dense);
    llama_free(&nf4);
}
END_TEST

/* nf4 needs an HF folder and true a GGUF file, each saying which mode fits the other; a random model,
 * a Mamba folder, writing the base and full fine-tuning refuse an NF4 base. */
START_TEST(refusals_name_the_mode) {
    LlamaModel m;
    const char *gguf = "/tmp/test_qlora_nf4.gguf";
    FILE *f = fopen(gguf, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("GGUF", f);
    fclose(f);
    ck_assert_int_eq(llama_load_quantized(&m, backend_cpu(), gguf, QUANT_NF4, NULL), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), gguf) && strstr(peftc_err_msg(), "model.quantized=true"), "%s",
                  peftc_err_msg());
    unlink(gguf);
    ck_assert_int_eq(llama_load_quantized(&m, backend_cpu(), HF, QUANT_BLOCKS, NULL), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), HF) && strstr(peftc_err_msg(), "model.quantized=nf4"), "%s", peftc_err_msg());
    LlamaConfig c = {.hidden = 64, .intermediate = 64, .layers = 1, .heads = 2, .kv_heads = 1, .vocab = 20,
                     .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 1, .quantized = QUANT_NF4};
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &c, 1, 0.1), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "model.quantized=nf4"), "%s", peftc_err_msg());
    Model *mamba = NULL;
    ck_assert_int_eq(model_load(&mamba, backend_cpu(), PEFTC_FIXTURE_DIR "/hf_tiny_mamba", QUANT_NF4, NULL),
                     PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "Mamba") && strstr(peftc_err_msg(), "model.quantized=nf4"), "%s",
                  peftc_err_msg());

    ck_assert_int_eq(llama_load_quantized(&m, backend_cpu(), HF, QUANT_NF4, NULL), PEFTC_OK);
    ck_assert_int_eq(model_save_hf(&m, "/tmp/peftc_nf4_never_written", ST_F32), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "model.quantized=nf4"), "%s", peftc_err_msg());
    ck_assert(access("/tmp/peftc_nf4_never_written", F_OK) != 0);
    Arena a;
    arena_init(&a, backend_cpu());
    MethodConfig full = tu_method("full");
    ck_assert_int_eq(method_attach(&m.base, &a, &full), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "model.quantized=false"), "%s", peftc_err_msg());
    arena_free(&a);
    llama_free(&m);
}
END_TEST

static PeftcStatus finish_with(const char *a, const char *b) {
    return tu_finish_with("model.quantized=nf4", a, b);
}

/* The methods that need the dense base refuse nf4 as they refuse true; the others take it. */
START_TEST(config_refusals) {
    ck_assert_int_eq(finish_with("method.name=full", NULL), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "model.quantized=false"), "%s", peftc_err_msg());
    ck_assert_int_eq(finish_with("method.name=gmt", NULL), PEFTC_EINVAL);
    ck_assert_int_eq(finish_with("method.name=pissa", NULL), PEFTC_EINVAL);
    ck_assert_int_eq(finish_with("model.path=", "data.task=copy"), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "model.quantized=nf4 needs model.path to be an HF folder"), "%s",
                  peftc_err_msg());
    const char *fine[] = {"method.name=lora", "method.name=rosa", "method.name=spa", "method.name=nlora",
                          "method.name=slora", "method.name=inttune"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++)
        ck_assert_msg(finish_with("model.path=" PEFTC_FIXTURE_DIR "/hf_tiny_llama", fine[i]) == PEFTC_OK, "%s: %s",
                      fine[i], peftc_err_msg());
}
END_TEST

int main(void) {
    Suite *s = suite_create("qlora_nf4");
    TCase *tc = tcase_create("qlora_nf4");
    tcase_add_test(tc, logits_match_the_round_trip);
    tcase_add_test(tc, lora_grads_match_the_round_trip);
    tcase_add_test(tc, nlora_init_matches_the_round_trip);
    tcase_add_test(tc, nf4_copies_to_another_instance);
    tcase_add_test(tc, base_bytes_shrink);
    tcase_add_test(tc, refusals_name_the_mode);
    tcase_add_test(tc, config_refusals);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
