/* The bundled SmolLM2-135M-Instruct GGUF end to end, against HF transformers loading the same file
 * (tests/fixtures/gen_smollm2_logits.py: transformers dequantizes, un-permutes Q/K and ties the head on
 * its own): the prompt's token ids, the next-token logits (max |diff| <= 1e-3 of the largest |logit|:
 * both dequantize the same blocks in float32 but sum in different orders over 30 layers), and the greedy
 * continuation token for token, which must name Paris. Skips when the model has not been fetched. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/models/generate.h"
#include "core/models/llama/generate.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"
#include "core/models/model_load.h"
#include "datasets/tokenizer/tokenizer.h"
#include "tests/fixture.h"
#include "tests/testutil.h"

#define LOGIT_TOL 1e-3

static int have_model(void) {
    if (access(PEFTC_DEFAULT_MODEL, R_OK) == 0) return 1;
    printf("SKIP: %s is absent (tools/fetch-model.sh fetches it)\n", PEFTC_DEFAULT_MODEL);
    return 0;
}

static const cJSON *fixture_case(const Fixture *fx, const char *name) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(fx->meta, "cases")) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return c;
    }
    ck_abort_msg("fixture has no case %s", name);
    return NULL;
}

/* Encodes the case's text, checks the ids, compares next-token logits and the greedy continuation. */
static void check_case(LlamaModel *m, const Tokenizer *tok, const Fixture *fx, const char *name, int special) {
    const cJSON *c = fixture_case(fx, name);
    const char *text = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    ck_assert_int_eq(tok_encode(tok, text, strlen(text), special, &ids, &n, &cap), PEFTC_OK);
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "ids");
    ck_assert_int_eq((int)n, cJSON_GetArraySize(want));
    int32_t *ref_ids = malloc(n * sizeof *ref_ids);
    fixture_ints(want, ref_ids, (int)n);
    ck_assert_msg(memcmp(ids, ref_ids, n * sizeof *ids) == 0, "%s: token ids differ from transformers'", name);

    int V = m->cfg.vocab, max_new = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(c, "greedy_ids"));
    KvCache kv;
    ck_assert_int_eq(kv_create(&kv, m, 1, (int)n + 1), PEFTC_OK);
    real_t *logits = malloc((size_t)V * sizeof *logits);
    ck_assert_int_eq(gen_prefill(m, &kv, 0, ids, (int)n, logits), PEFTC_OK);
    size_t off = (size_t)fixture_num(c, "logits_offset");
    ck_assert_uint_le(off + (size_t)V, fx->n);
    double e = fixture_rel_err(logits, fx->data + off, (size_t)V);
    int argmax = gen_sample(&(SamplerConfig){0, 1, 0, 0, 0}, logits, V, 0, 0);
    printf("smollm2 %s: next-token logits max |diff| %.2e of the largest; argmax %d\n", name, e, argmax);
    ck_assert_msg(e < LOGIT_TOL, "%s: logits differ from transformers' by %.3g", name, e);
    ck_assert_int_eq(argmax, (int)fixture_num(c, "argmax"));
    kv_free(&kv);

    /* Greedy decoding: every fixture step has a margin of >= 0.05 logits, far above the differences. */
    int32_t *out = malloc((size_t)max_new * sizeof *out);
    int out_n = 0, len = (int)n;
    const int32_t *prompts[1] = {ids};
    ck_assert_int_eq(gen_generate(&m->base, &(SamplerConfig){0, 1, 0, 0, 0}, 1, prompts, &len, max_new, NULL, 0, &out, &out_n,
                                  NULL, NULL), PEFTC_OK);
    int32_t *ref_gen = malloc((size_t)max_new * sizeof *ref_gen);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(c, "greedy_ids"), ref_gen, max_new);
    ck_assert_int_eq(out_n, max_new);
    ck_assert_msg(memcmp(out, ref_gen, (size_t)max_new * sizeof *out) == 0, "%s: greedy continuation differs", name);
    char *cont = NULL;
    size_t clen;
    ck_assert_int_eq(tok_decode(tok, out, (size_t)out_n, 1, &cont, &clen), PEFTC_OK);
    printf("smollm2 %s: \"%s\" ->%s\n", name, text, cont);
    ck_assert_ptr_nonnull(strstr(cont, "Paris"));
    free(cont);
    free(out);
    free(ref_gen);
    free(logits);
    free(ref_ids);
    free(ids);
}

START_TEST(matches_transformers_on_the_same_gguf) {
    if (!have_model()) return;
    Fixture fx = fixture_load("smollm2_logits");
    LlamaModel m;
    ModelInfo info;
    ck_assert_msg(llama_load(&m, backend_cpu(), PEFTC_DEFAULT_MODEL, &info) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(m.cfg.vocab, (int)fixture_num(fx.meta, "vocab"));
    Tokenizer *tok;
    ck_assert_msg(tok_load(&tok, PEFTC_DEFAULT_MODEL) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(tok_add_bos(tok), 0);
    check_case(&m, tok, &fx, "plain", 0);
    check_case(&m, tok, &fx, "chatml", 1);
    tok_free(tok);
    llama_free(&m);
    fixture_free(&fx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("smollm2");
    TCase *tc = tcase_create("gguf");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, matches_transformers_on_the_same_gguf);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
