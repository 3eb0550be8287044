/* peftc against HF transformers + PEFT on the same files (tests/fixtures/gen_peft_parity.py): a tiny
 * LLaMA saved by transformers (config.json + model.safetensors) and a LoRA adapter saved by PEFT are
 * loaded by llama_load() and lora.init_from; logits, the loss and every LoRA gradient must match what
 * PyTorch computed. Then the adapter goes back out through peft_save: the export must reload in peftc
 * with bit-identical logits, and hold exactly the bytes of tests/fixtures/peftc_export_tiny, the folder
 * check_peft_export.py verified loads in PEFT with the logits PEFT gives for the original adapter.
 * Tolerance: 1e-4 relative (float32 here, float64 in the fixture). */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/formats/peft_io.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"
#include "core/formats/safetensors.h"
#include "launch/session.h"
#include "tests/fixture.h"
#include "tests/method_testutil.h"
#include "tests/session_testutil.h"
#include "tests/testutil.h"

#define TOL 1e-4
#define ADAPTER PEFTC_FIXTURE_DIR "/hf_tiny_lora"
#define EXPORTED PEFTC_FIXTURE_DIR "/peftc_export_tiny"

/* A session on the transformers model with a PEFT adapter loaded through lora.init_from. */
static void open_adapted(Session *s, const char *adapter, int B, int T) {
    tu_open_hf_tiny(s, adapter);
    ck_assert_int_eq(llama_reserve(llama_of(s->model), B, T), PEFTC_OK);
}

static void read_batch(const Fixture *fx, int32_t *tok, int32_t *tgt, int BT) {
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx->meta, "tokens"), tok, BT);
    if (tgt) fixture_ints(cJSON_GetObjectItemCaseSensitive(fx->meta, "targets"), tgt, BT);
}

START_TEST(forward_and_gradients_match_peft) {
    Fixture fx = fixture_load("hf_tiny_parity");
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T"), BT = B * T;
    static Session s;
    open_adapted(&s, ADAPTER, B, T);
    ck_assert_int_eq(lora_settings(&s.method.settings)->lora.r, 4);
    ck_assert(lora_settings(&s.method.settings)->lora.alpha == 8);
    int32_t *tok = malloc(sizeof *tok * BT), *tgt = malloc(sizeof *tgt * BT);
    read_batch(&fx, tok, tgt, BT);

    LlamaModel *m = llama_of(s.model);
    int V = m->cfg.vocab;
    ck_assert_int_eq(llama_forward(m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    double e = fixture_rel_err(m->acts.logits, fixture_tensor(&fx, "logits", (Shape){3, {B, T, V}}), (size_t)BT * V);
    printf("hf parity: logits rel err %.2e\n", e);
    ck_assert_msg(e < TOL, "logits differ from PEFT by %.3g relative", e);

    double loss;
    int64_t nv;
    ck_assert_int_eq(llama_forward(m, tok, tgt, NULL, NULL, NULL, 1, B, T, &loss, &nv), PEFTC_OK);
    ck_assert_int_eq(nv, (int64_t)fixture_num(fx.meta, "n_valid"));
    e = fabs(loss / (double)nv - fixture_num(fx.meta, "loss_mean")) / fixture_num(fx.meta, "loss_mean");
    ck_assert_msg(e < TOL, "mean loss %.8g, PEFT %.8g", loss / (double)nv, fixture_num(fx.meta, "loss_mean"));

    /* PEFT differentiated the mean loss. */
    llama_backward(m, tok, tgt, NULL, (real_t)(1.0 / (double)nv));
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < s.arena.n_entries; i++) {
        const ArenaEntry *en = &s.arena.entries[i];
        char gname[256];
        snprintf(gname, sizeof gname, "grad.base_model.model.%s.weight", en->name);
        e = fixture_rel_err(arena_grad(&s.arena, i), fixture_tensor(&fx, gname, en->shape), en->numel);
        worst = fmax(worst, e);
        ck_assert_msg(e < TOL, "%s: gradient differs from PEFT by %.3g relative", en->name, e);
        checked++;
    }
    printf("hf parity: %d LoRA gradients, worst rel err %.2e\n", checked, worst);
    ck_assert_int_eq(checked, 2 * 7 * m->cfg.layers);
    free(tok);
    free(tgt);
    session_close(&s);
    fixture_free(&fx);
}
END_TEST

/* Logits (B,T,V) of the fixture tokens with the adapter in `dir`. */
static real_t *adapted_logits(const char *dir, const int32_t *tok, int B, int T) {
    static Session s;
    open_adapted(&s, dir, B, T);
    size_t n = (size_t)B * T * llama_of(s.model)->cfg.vocab;
    ck_assert_int_eq(llama_forward(llama_of(s.model), tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    real_t *out = malloc(n * sizeof *out);
    memcpy(out, llama_of(s.model)->acts.logits, n * sizeof *out);
    session_close(&s);
    return out;
}

static void same_tensors(const char *a_path, const char *b_path) {
    StFile a, b;
    ck_assert_msg(st_open(&a, a_path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_msg(st_open(&b, b_path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(a.n_tensors, b.n_tensors);
    for (int i = 0; i < a.n_tensors; i++) {
        const StTensor *t = st_find(&b, a.tensors[i].name);
        ck_assert_msg(t != NULL, "%s lacks %s", b_path, a.tensors[i].name);
        ck_assert_msg(t->nbytes == a.tensors[i].nbytes && !memcmp(t->data, a.tensors[i].data, t->nbytes),
                      "%s differs between %s and %s", t->name, a_path, b_path);
    }
    st_close(&a);
    st_close(&b);
}

START_TEST(export_reloads_with_identical_logits) {
    Fixture fx = fixture_load("hf_tiny_lora_logits");
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T"), BT = B * T;
    int32_t *tok = malloc(sizeof *tok * BT);
    read_batch(&fx, tok, NULL, BT);
    real_t *orig = adapted_logits(ADAPTER, tok, B, T);
    size_t n = (size_t)BT * 128;
    double e = fixture_rel_err(orig, fixture_tensor(&fx, "logits", (Shape){3, {B, T, 128}}), n);
    ck_assert_msg(e < TOL, "logits with the PEFT adapter differ from PEFT's by %.3g", e);

    char dir[] = "/tmp/peftc_parity_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    static Session s;
    open_adapted(&s, ADAPTER, B, T);
    ck_assert_msg(peft_save(s.model, &lora_settings(&s.method.settings)->lora, "hf_tiny_llama", dir) == PEFTC_OK, "%s", peftc_err_msg());
    session_close(&s);
    real_t *again = adapted_logits(dir, tok, B, T);
    ck_assert_msg(memcmp(orig, again, n * sizeof *orig) == 0, "re-imported export changes the logits");

    /* The committed export is what PEFT was shown to load (check_peft_export.py): today's export must
     * carry the same tensors, and PEFT's own tensors must survive the round trip unchanged. */
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    same_tensors(path, EXPORTED "/adapter_model.safetensors");
    same_tensors(path, ADAPTER "/adapter_model.safetensors");
    LoraConfig mine, theirs;
    ck_assert_int_eq(peft_read_config(dir, &mine), PEFTC_OK);
    ck_assert_int_eq(peft_read_config(EXPORTED, &theirs), PEFTC_OK);
    ck_assert(mine.r == theirs.r && mine.alpha == theirs.alpha && mine.targets == theirs.targets &&
              mine.rslora == theirs.rslora);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(path), 0);
    free(orig);
    free(again);
    free(tok);
    fixture_free(&fx);
}
END_TEST

/* peftc merge's path: fold the adapter into the base, save as an HF folder, load that folder alone. */
START_TEST(merged_model_equals_adapted_model) {
    Fixture fx = fixture_load("hf_tiny_lora_logits");
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T"), BT = B * T;
    int32_t *tok = malloc(sizeof *tok * BT);
    read_batch(&fx, tok, NULL, BT);
    real_t *adapted = adapted_logits(ADAPTER, tok, B, T);

    char dir[] = "/tmp/peftc_merge_XXXXXX", cmd[600];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    static Session s;
    open_adapted(&s, ADAPTER, B, T);
    method_merge(s.model);
    ck_assert_msg(model_save_hf(llama_of(s.model), dir, ST_F32) == PEFTC_OK, "%s", peftc_err_msg());
    session_close(&s);

    LlamaModel merged;
    ck_assert_msg(llama_load(&merged, backend_cpu(), dir, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(llama_reserve(&merged, B, T), PEFTC_OK);
    ck_assert_int_eq(llama_forward(&merged, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    double e = 0, scale = 0;
    for (size_t i = 0; i < (size_t)BT * 128; i++) {
        e = fmax(e, fabs((double)merged.acts.logits[i] - adapted[i]));
        scale = fmax(scale, fabs((double)adapted[i]));
    }
    printf("hf parity: merged vs adapted logits rel err %.2e\n", e / scale);
    ck_assert_msg(e / scale < 1e-5, "merged logits differ from adapted ones by %.3g relative", e / scale);
    llama_free(&merged);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(adapted);
    free(tok);
    fixture_free(&fx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("hf_parity");
    TCase *tc = tcase_create("peft");
    tcase_add_test(tc, forward_and_gradients_match_peft);
    tcase_add_test(tc, export_reloads_with_identical_logits);
    tcase_add_test(tc, merged_model_equals_adapted_model);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
