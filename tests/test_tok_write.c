/* Writing a tokenizer as an HF tokenizer.json (tok_write_hf), how a GGUF model's tokenizer reaches a
 * merged folder: the written files, read back by tok_load_hf, give the ids the `tokenizers` library
 * gave for every fixture string (tests/fixtures/tokenizer/<kind>/expected.json), with the same special
 * tokens, BOS/EOS and chat template; for SmolLM2's GGUF tokenizer (when the model is present), the ids
 * of smollm2_ids.json. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/formats/gguf.h"
#include "datasets/tokenizer/tokenizer.h"
#include "tests/fixture.h"
#include "tests/testutil.h"

#define SMOLLM2 PEFTC_DEFAULT_MODEL

static cJSON *read_json_file(const char *path) {
    size_t len;
    char *text = fx_slurp(path, &len);
    cJSON *j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "%s is not JSON", path);
    return j;
}

/* Every string of the expected file encodes to its ids with t. */
static int expect_ids(const Tokenizer *t, const char *expected_path) {
    cJSON *exp = read_json_file(expected_path);
    const cJSON *s;
    int n = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(exp, "strings")) {
        const char *text = cJSON_GetObjectItemCaseSensitive(s, "text")->valuestring;
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "special"));
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(s, "ids");
        int32_t *ids = NULL;
        size_t n_ids = 0, cap = 0;
        ck_assert_int_eq(tok_encode(t, text, strlen(text), special, &ids, &n_ids, &cap), PEFTC_OK);
        ck_assert_msg((int)n_ids == cJSON_GetArraySize(want), "'%s': %zu ids, expected %d", text, n_ids,
                      cJSON_GetArraySize(want));
        for (size_t i = 0; i < n_ids; i++)
            ck_assert_msg(ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint, "'%s': id %zu is %d, expected %d", text,
                          i, ids[i], cJSON_GetArrayItem(want, (int)i)->valueint);
        free(ids);
        n++;
    }
    cJSON_Delete(exp);
    return n;
}

static void same_tokenizer(const Tokenizer *a, const Tokenizer *b) {
    ck_assert_int_eq(tok_vocab_size(a), tok_vocab_size(b));
    ck_assert_int_eq(tok_bos(a), tok_bos(b));
    ck_assert_int_eq(tok_eos(a), tok_eos(b));
    ck_assert_int_eq(tok_add_bos(a), tok_add_bos(b));
    ck_assert_str_eq(tok_chat_template(a), tok_chat_template(b));
    for (int i = 0; i < tok_vocab_size(a); i++) {
        ck_assert_int_eq(tok_is_special(a, i), tok_is_special(b, i));
        ck_assert_str_eq(tok_piece(a, i), tok_piece(b, i));
    }
    ck_assert_msg(tok_hash(a) == tok_hash(b), "vocabulary, merges, specials or pre-tokenizer changed");
}

/* t written to a fresh folder and read back; the folder's path in dir. */
static Tokenizer *rewritten(const Tokenizer *t, char *dir) {
    strcpy(dir, "/tmp/peftc_tokw_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_msg(tok_write_hf(t, dir, 8192) == PEFTC_OK, "%s", peftc_err_msg());
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    Tokenizer *back = NULL;
    ck_assert_msg(tok_load_hf(&back, path) == PEFTC_OK, "%s", peftc_err_msg());
    return back;
}

static void remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void check_kind(const char *kind) {
    char path[600], dir[64];
    snprintf(path, sizeof path, "%s/tokenizer/%s/tokenizer.json", PEFTC_FIXTURE_DIR, kind);
    Tokenizer *t = NULL;
    ck_assert_msg(tok_load_hf(&t, path) == PEFTC_OK, "%s", peftc_err_msg());
    Tokenizer *back = rewritten(t, dir);
    same_tokenizer(t, back);
    snprintf(path, sizeof path, "%s/tokenizer/%s/expected.json", PEFTC_FIXTURE_DIR, kind);
    printf("tok_write %s: %d strings, ids as tokenizers gave them\n", kind, expect_ids(back, path));
    tok_free(back);
    tok_free(t);
    remove_dir(dir);
}

START_TEST(hf_tokenizers_survive_a_rewrite) {
    check_kind("gpt2");
    check_kind("smollm");
    check_kind("llama3");
    check_kind("qwen2");
}
END_TEST

START_TEST(gguf_tokenizer_becomes_tokenizer_json) {
    if (access(SMOLLM2, R_OK) != 0) {
        printf("SKIP: %s absent (tools/fetch-model.sh)\n", SMOLLM2);
        return;
    }
    GgufFile g;
    ck_assert_int_eq(gguf_open(&g, SMOLLM2), PEFTC_OK);
    Tokenizer *t = NULL, *back;
    ck_assert_msg(tok_load_gguf(&t, &g) == PEFTC_OK, "%s", peftc_err_msg());
    gguf_close(&g);
    char dir[64], path[600];
    back = rewritten(t, dir);
    same_tokenizer(t, back);
    printf("tok_write SmolLM2 GGUF: %d strings as its tokenizer.json gives them\n",
           expect_ids(back, PEFTC_FIXTURE_DIR "/tokenizer/smollm2_ids.json"));
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    cJSON *cfg = read_json_file(path);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cfg, "eos_token")->valuestring, tok_piece(t, tok_eos(t)));
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length")->valueint, 8192);
    ck_assert(strstr(cJSON_GetObjectItemCaseSensitive(cfg, "chat_template")->valuestring, "<|im_start|>"));
    cJSON_Delete(cfg);
    tok_free(back);
    tok_free(t);
    remove_dir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tok_write");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, hf_tokenizers_survive_a_rewrite);
    tcase_add_test(tc, gguf_tokenizer_becomes_tokenizer_json);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
