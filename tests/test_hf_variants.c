/* The LLaMA-family variants real checkpoints use, against transformers on folders it saved
 * (tests/fixtures/gen_hf_variants.py): LLaMA-3 RoPE scaling with q/k/v/o biases, Qwen2 with YaRN, and
 * Mistral with linear scaling and a sliding window longer than the sequence. The folders are read by
 * the HF loader; logits, the loss and the gradient of every parameter must match PyTorch's float64
 * values to 1e-4 relative. Then the loaded model is written back as an HF folder and read again
 * (bit-identical logits), and a sequence longer than Mistral's window is refused. */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/method.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"
#include "core/formats/safetensors.h"
#include "tests/fixture.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

#define TOL 1e-4

typedef struct {
    LlamaModel m;
    Arena a;
} Trained;

/* The fixture's folder loaded, every base tensor trainable (full fine-tuning), sized for (B, T). */
static void open_full(Trained *t, const char *folder, int B, int T) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", PEFTC_FIXTURE_DIR, folder);
    ck_assert_msg(model_hf_load(&t->m, backend_cpu(), dir, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    MethodConfig mc = tu_method("full");
    arena_init(&t->a, backend_cpu());
    ck_assert_int_eq(method_attach(&t->m.base, &t->a, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&t->a), PEFTC_OK);
    ck_assert_int_eq(method_init(&t->m.base, &t->a, &mc, 1), PEFTC_OK);
    ck_assert_msg(llama_reserve(&t->m, B, T) == PEFTC_OK, "%s", peftc_err_msg());
}

static void close_full(Trained *t) {
    llama_free(&t->m);
    arena_free(&t->a);
}

static void check_gradients(Trained *t, const Fixture *fx, const char *name) {
    double worst = 0;
    int checked = 0;
    for (int i = 0; i < t->a.n_entries; i++) {
        const ArenaEntry *en = &t->a.entries[i];
        char gname[ARENA_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", en->name);
        double e = fixture_rel_err(arena_grad(&t->a, i), fixture_tensor(fx, gname, en->shape), en->numel);
        ck_assert_msg(e < TOL, "%s: gradient of %s differs from transformers by %.3g relative", name, en->name, e);
        worst = fmax(worst, e);
        checked++;
    }
    ck_assert_int_eq(checked, (int)fixture_num(fx->meta, "n_grads"));
    printf(", %d gradients, worst %.2e\n", checked, worst);
}

static void check_case(const char *name) {
    Fixture fx = fixture_load(name);
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T"), BT = B * T;
    static Trained t;
    open_full(&t, name, B, T);
    int32_t *tok = malloc((size_t)BT * sizeof *tok), *tgt = malloc((size_t)BT * sizeof *tgt);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "tokens"), tok, BT);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "targets"), tgt, BT);
    int V = t.m.cfg.vocab;

    ck_assert_int_eq(llama_forward(&t.m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    double e = fixture_rel_err(t.m.acts.logits, fixture_tensor(&fx, "logits", (Shape){3, {B, T, V}}), (size_t)BT * V);
    printf("%s (rope %s): logits %.2e", name, rope_type_name(t.m.cfg.rope_scaling.type), e);
    ck_assert_msg(e < TOL, "%s: logits differ from transformers by %.3g relative", name, e);

    double loss;
    int64_t nv;
    t.a.be->zero(t.a.be, t.a.grads, t.a.numel);
    ck_assert_int_eq(llama_forward(&t.m, tok, tgt, NULL, NULL, NULL, 0, B, T, &loss, &nv), PEFTC_OK);
    ck_assert_int_eq(nv, (int64_t)fixture_num(fx.meta, "n_valid"));
    e = fabs(loss / (double)nv - fixture_num(fx.meta, "loss_mean")) / fixture_num(fx.meta, "loss_mean");
    ck_assert_msg(e < TOL, "%s: mean loss %.10g, transformers %.10g", name, loss / (double)nv,
                  fixture_num(fx.meta, "loss_mean"));
    llama_backward(&t.m, tok, tgt, NULL, (real_t)(1.0 / (double)nv)); /* transformers differentiated the mean */
    check_gradients(&t, &fx, name);
    free(tok);
    free(tgt);
    close_full(&t);
    fixture_free(&fx);
}

START_TEST(llama3_rope_and_attention_bias_match_transformers) { check_case("hf_llama3_bias"); }
END_TEST

START_TEST(qwen2_yarn_matches_transformers) { check_case("hf_qwen2_yarn"); }
END_TEST

START_TEST(mistral_linear_rope_within_window_matches_transformers) { check_case("hf_mistral_linear"); }
END_TEST

/* Logits (B,T,V) of the model in folder dir (absolute) on tok. */
static real_t *logits_of(const char *dir, const int32_t *tok, int B, int T, LlamaConfig *cfg) {
    LlamaModel m;
    ck_assert_msg(model_hf_load(&m, backend_cpu(), dir, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(llama_reserve(&m, B, T), PEFTC_OK);
    ck_assert_int_eq(llama_forward(&m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    size_t n = (size_t)B * T * m.cfg.vocab;
    real_t *out = malloc(n * sizeof *out);
    memcpy(out, m.acts.logits, n * sizeof *out);
    *cfg = m.cfg;
    llama_free(&m);
    return out;
}

/* What the writer puts in config.json is what the reader needs to rebuild the same model: scaling,
 * biases and window survive the round trip. */
static void round_trip(const char *name) {
    Fixture fx = fixture_load(name);
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T");
    int32_t *tok = malloc((size_t)B * T * sizeof *tok);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "tokens"), tok, B * T);
    char src[512], dir[] = "/tmp/peftc_variant_XXXXXX", cmd[600];
    snprintf(src, sizeof src, "%s/%s", PEFTC_FIXTURE_DIR, name);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    LlamaConfig a, b;
    real_t *before = logits_of(src, tok, B, T, &a);
    LlamaModel m;
    ck_assert_int_eq(model_hf_load(&m, backend_cpu(), src, NULL), PEFTC_OK);
    ck_assert_msg(model_save_hf(&m, dir, ST_F32) == PEFTC_OK, "%s", peftc_err_msg());
    llama_free(&m);
    real_t *after = logits_of(dir, tok, B, T, &b);
    ck_assert_msg(memcmp(before, after, (size_t)B * T * a.vocab * sizeof *before) == 0,
                  "%s: the folder peftc wrote gives other logits", name);
    ck_assert(a.rope_scaling.type == b.rope_scaling.type && a.rope_scaling.factor == b.rope_scaling.factor &&
              a.rope_scaling.attn_factor == b.rope_scaling.attn_factor);
    ck_assert(a.o_bias == b.o_bias && a.qkv_bias == b.qkv_bias && a.sliding_window == b.sliding_window);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(before);
    free(after);
    free(tok);
    fixture_free(&fx);
}

START_TEST(written_folders_reload_identically) {
    round_trip("hf_llama3_bias");
    round_trip("hf_qwen2_yarn");
    round_trip("hf_mistral_linear");
}
END_TEST

/* A Qwen2 GGUF as llama.cpp's converter writes it (tests/fixtures/gen_gguf_qwen2.py): qwen2.* keys,
 * q/k rows in HF's order, YaRN in qwen2.rope.scaling.*. Loaded dense, and with its (F32) blocks kept
 * (model.quantized=true), it gives transformers' logits of the folder it was converted from; written
 * as an HF folder, it is a Qwen2 folder with the same logits. */
START_TEST(qwen2_gguf_from_llama_cpp_matches_transformers) {
    Fixture fx = fixture_load("qwen2_tiny");
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T"), V = (int)fixture_num(fx.meta, "V");
    int32_t *tok = malloc((size_t)B * T * sizeof *tok);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "tokens"), tok, B * T);
    const double *want = fixture_tensor(&fx, "logits", (Shape){3, {B, T, V}});
    const char *path = PEFTC_FIXTURE_DIR "/qwen2_tiny.gguf";
    for (int quant = 0; quant < 2; quant++) {
        LlamaModel m;
        ModelInfo info;
        PeftcStatus st = quant ? model_gguf_load_quantized(&m, backend_cpu(), path, &info)
                               : model_gguf_load(&m, backend_cpu(), path, &info);
        ck_assert_msg(st == PEFTC_OK, "%s", peftc_err_msg());
        ck_assert(m.cfg.gguf_qwen2 && m.cfg.qkv_bias && !m.cfg.o_bias && m.cfg.tie_embeddings);
        ck_assert_int_eq(m.cfg.rope_scaling.type, ROPE_YARN);
        ck_assert_str_eq(info.arch, "qwen2");
        ck_assert_str_eq(m.base.gguf_arch, "qwen2");
        ck_assert_int_eq(llama_reserve(&m, B, T), PEFTC_OK);
        ck_assert_int_eq(llama_forward(&m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
        double e = fixture_rel_err(m.acts.logits, want, (size_t)B * T * V);
        printf("qwen2 GGUF (%s): logits %.2e\n", quant ? "blocks kept" : "dense", e);
        ck_assert_msg(e < TOL, "qwen2_tiny.gguf: logits differ from transformers by %.3g relative", e);
        if (!quant) {
            char dir[] = "/tmp/peftc_qwen2gguf_XXXXXX", cmd[600];
            ck_assert_ptr_nonnull(mkdtemp(dir));
            ck_assert_msg(model_save_hf(&m, dir, ST_F32) == PEFTC_OK, "%s", peftc_err_msg());
            LlamaConfig c;
            real_t *back = logits_of(dir, tok, B, T, &c);
            ck_assert(c.gguf_qwen2 && c.rope_scaling.type == ROPE_YARN);
            ck_assert_msg(memcmp(back, m.acts.logits, (size_t)B * T * V * sizeof *back) == 0,
                          "the HF folder written from qwen2_tiny.gguf gives other logits");
            free(back);
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
            ck_assert_int_eq(system(cmd), 0);
        }
        llama_free(&m);
    }
    free(tok);
    fixture_free(&fx);
}
END_TEST

START_TEST(sequences_beyond_the_sliding_window_are_refused) {
    LlamaModel m;
    ck_assert_int_eq(model_hf_load(&m, backend_cpu(), PEFTC_FIXTURE_DIR "/hf_mistral_linear", NULL), PEFTC_OK);
    ck_assert_int_eq(m.cfg.sliding_window, 32);
    ck_assert_int_eq(llama_reserve(&m, 1, 32), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(&m, 1, 33), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "longer than the model's sliding_window (32)") &&
                  strstr(peftc_err_msg(), "train.seq_len"), "%s", peftc_err_msg());
    llama_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("hf_variants");
    TCase *tc = tcase_create("transformers");
    tcase_add_test(tc, llama3_rope_and_attention_bias_match_transformers);
    tcase_add_test(tc, qwen2_yarn_matches_transformers);
    tcase_add_test(tc, mistral_linear_rope_within_window_matches_transformers);
    tcase_add_test(tc, written_folders_reload_identically);
    tcase_add_test(tc, qwen2_gguf_from_llama_cpp_matches_transformers);
    tcase_add_test(tc, sequences_beyond_the_sliding_window_are_refused);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
