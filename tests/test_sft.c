/* SFT data: JSONL shapes and their loss masks, splits, truncation and dropping, bad lines, plain-text
 * windows, and prompts for built-in tasks. Uses SmolLM2's tokenizer (ChatML). The tokenized cache has
 * its own suite, test_tokcache. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/real.h"
#include "core/base/status.h"
#include "datasets/jsonl.h"
#include "datasets/sft.h"
#include "datasets/synthetic.h"
#include "tests/sft_testutil.h"
#include "tests/testutil.h"

/* ---- helpers ---- */

static char *decode(const int32_t *ids, int n) {
    char *text = NULL;
    size_t len;
    ck_assert_int_eq(tok_decode(tok, ids, (size_t)n, 0, &text, &len), PEFTC_OK);
    return text;
}

/* The text of every trained target, in order. */
static char *trained_text(const int32_t *targets, int T) {
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    int n = 0;
    for (int t = 0; t < T; t++)
        if (targets[t] != PEFTC_IGNORE_INDEX) ids[n++] = targets[t];
    char *s = decode(ids, n);
    free(ids);
    return s;
}

static int first_trained(const int32_t *targets, int T) {
    for (int t = 0; t < T; t++)
        if (targets[t] != PEFTC_IGNORE_INDEX) return t;
    return -1;
}

static int last_trained(const int32_t *targets, int T) {
    for (int t = T - 1; t >= 0; t--)
        if (targets[t] != PEFTC_IGNORE_INDEX) return t;
    return -1;
}

static void expect_trained(const Dataset *ds, Split split, int64_t id, const char *want) {
    enum { T = 256 };
    int32_t tokens[T], targets[T];
    get_ex(ds, split, id, tokens, targets, T);
    char *got = trained_text(targets, T);
    ck_assert_str_eq(got, want);
    free(got);
}

/* The decoded prompt of an example and its reference answer (caller frees the prompt). */
static char *prompt_text(const Dataset *ds, Split split, int64_t id, const char **answer) {
    const int32_t *ids;
    int n;
    ck_assert_int_eq(sft_prompt(ds, split, id, &ids, &n, answer), PEFTC_OK);
    return decode(ids, n);
}

/* ---- JSONL shapes ---- */

START_TEST(prompt_completion_masks) {
    NEED_TOKENIZER();
    static const char *const prompts[] = {"What is the capital of France?", "Translate to German: good morning",
                                          "Name a primary color.", "2 + 2 =", "Spell 'cat' backwards."};
    static const char *const completions[] = {"Paris.", "Guten Morgen", "Blue is a primary color.", " 4", "tac"};
    SftConfig c = file_cfg(FIX "prompt.jsonl", 128, 0);
    SftStats st;
    Dataset *ds = make(&c, &st);
    ck_assert_int_eq(ds->size(ds, SPLIT_TRAIN), 5);
    ck_assert_int_eq(ds->size(ds, SPLIT_EVAL), 0);
    ck_assert_int_eq(st.examples[0], 5);
    ck_assert_int_eq(st.dropped + st.truncated + st.bad_lines, 0);
    ck_assert_int_eq(sft_task(ds), -1);
    ck_assert_int_eq(ds->vocab_needed, tok_vocab_size(tok));
    int64_t tokens_sum = 0;
    for (int i = 0; i < 5; i++) {
        enum { T = 128 };
        int32_t tokens[T], targets[T];
        get_ex(ds, SPLIT_TRAIN, i, tokens, targets, T);
        char want[256], user[256];
        snprintf(want, sizeof want, "%s<|im_end|>", completions[i]);
        expect_trained(ds, SPLIT_TRAIN, i, want);
        /* Everything up to the answer is prompt: user turn, then the assistant header, all masked. */
        int f = first_trained(targets, T), l = last_trained(targets, T);
        char *prompt = decode(tokens, f + 1);
        snprintf(user, sizeof user, "<|im_start|>user\n%s<|im_end|>\n", prompts[i]);
        ck_assert_ptr_nonnull(strstr(prompt, user));
        ck_assert_ptr_nonnull(strstr(prompt, default_system)); /* the template's default system prompt */
        ck_assert_msg(ends_with(prompt, "<|im_start|>assistant\n"), "prompt ends: %s", prompt);
        free(prompt);
        /* After the end-of-turn: the line break ChatML puts after it, then padding with EOS. */
        for (int t = l + 1; t < T; t++) ck_assert_int_eq(targets[t], PEFTC_IGNORE_INDEX);
        ck_assert_int_eq(tokens[l + 1], tok_find(tok, "<|im_end|>"));
        for (int t = l + 3; t < T; t++) ck_assert_int_eq(tokens[t], tok_eos(tok));
        tokens_sum += l + 3;
        const char *answer;
        char *p = prompt_text(ds, SPLIT_TRAIN, i, &answer);
        ck_assert_str_eq(answer, completions[i]);
        ck_assert_int_eq((int)strlen(p) > 0, 1);
        free(p);
    }
    ck_assert_int_eq(st.tokens, tokens_sum);
    ds->free(ds);
}
END_TEST

START_TEST(instruction_joins_input) {
    NEED_TOKENIZER();
    static const char *const users[] = {
        "<|im_start|>user\nSummarize the text in three words.\n\nThe quick brown fox jumps over the lazy "
        "dog.<|im_end|>",
        "<|im_start|>user\nGive a synonym for happy.<|im_end|>", "<|im_start|>user\nClassify the sentiment.<|im_end|>",
        "<|im_start|>user\nConvert to uppercase.\n\nhello world<|im_end|>"};
    static const char *const outputs[] = {"Fox jumps dog.", "Joyful", "Neutral", "HELLO WORLD"};
    SftConfig c = file_cfg(FIX "instruction.jsonl", 128, 0);
    Dataset *ds = make(&c, NULL);
    ck_assert_int_eq(ds->size(ds, SPLIT_TRAIN), 4);
    for (int i = 0; i < 4; i++) {
        char want[128];
        snprintf(want, sizeof want, "%s<|im_end|>", outputs[i]);
        expect_trained(ds, SPLIT_TRAIN, i, want);
        const char *answer;
        char *p = prompt_text(ds, SPLIT_TRAIN, i, &answer);
        ck_assert_msg(strstr(p, users[i]) != NULL, "example %d prompt: %s", i, p);
        ck_assert_msg(ends_with(p, "<|im_end|>\n<|im_start|>assistant\n"), "example %d prompt: %s", i, p);
        ck_assert_str_eq(answer, outputs[i]);
        free(p);
    }
    ds->free(ds);
}
END_TEST

START_TEST(messages_train_every_assistant) {
    NEED_TOKENIZER();
    SftConfig c = file_cfg(FIX "messages.jsonl", 256, 0);
    Dataset *ds = make(&c, NULL);
    ck_assert_int_eq(ds->size(ds, SPLIT_TRAIN), 3);
    expect_trained(ds, SPLIT_TRAIN, 0, "Hello.<|im_end|>Fine, thanks.<|im_end|>");
    expect_trained(ds, SPLIT_TRAIN, 1, "One, two, three.<|im_end|>");
    const char *answer;
    char *p = prompt_text(ds, SPLIT_TRAIN, 0, &answer);
    ck_assert_str_eq(answer, "Fine, thanks.");
    /* The conversation's own system message replaces the default; earlier turns stay in the prompt. */
    ck_assert_ptr_nonnull(strstr(p, "<|im_start|>system\nYou are terse.<|im_end|>"));
    ck_assert_ptr_null(strstr(p, default_system));
    ck_assert_msg(ends_with(p, "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
                               "<|im_start|>assistant\n"),
                  "prompt: %s", p);
    free(p);
    p = prompt_text(ds, SPLIT_TRAIN, 2, &answer);
    ck_assert_str_eq(answer, "Yes.");
    ck_assert_ptr_nonnull(strstr(p, default_system));
    free(p);
    ds->free(ds);
}
END_TEST

START_TEST(eval_split_is_file_tail_or_eval_path) {
    NEED_TOKENIZER();
    SftConfig c = file_cfg(FIX "prompt.jsonl", 128, 40); /* 5 lines: the last 2 held out */
    SftStats st;
    Dataset *ds = make(&c, &st);
    ck_assert_int_eq(st.examples[0], 3);
    ck_assert_int_eq(st.examples[1], 2);
    const char *answer;
    free(prompt_text(ds, SPLIT_EVAL, 0, &answer));
    ck_assert_str_eq(answer, " 4");
    free(prompt_text(ds, SPLIT_EVAL, 1, &answer));
    ck_assert_str_eq(answer, "tac");
    free(prompt_text(ds, SPLIT_TRAIN, 2, &answer));
    ck_assert_str_eq(answer, "Blue is a primary color.");
    ds->free(ds);

    c.eval_percent = 1; /* rounds down to nothing, but one example is always held out */
    ds = make(&c, &st);
    ck_assert_int_eq(st.examples[1], 1);
    ds->free(ds);

    snprintf(c.eval_path, sizeof c.eval_path, "%s", FIX "instruction.jsonl");
    ds = make(&c, &st);
    ck_assert_int_eq(st.examples[0], 5);
    ck_assert_int_eq(st.examples[1], 4);
    expect_trained(ds, SPLIT_EVAL, 1, "Joyful<|im_end|>");
    ds->free(ds);

    snprintf(c.eval_path, sizeof c.eval_path, "%s", FIX "text.jsonl");
    ck_assert_int_eq(sft_dataset_create(&ds, &c, tok, &ct, &st), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "data.eval_path"));
    ck_assert_ptr_null(ds);
}
END_TEST

/* ---- truncation, dropping, padding ---- */

static void write_long_file(const char *path) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("{\"prompt\": \"Hi\", \"completion\": \"Short.\"}\n{\"prompt\": \"Tell a story.\", \"completion\": \"", f);
    for (int i = 0; i < 200; i++) fputs("once more ", f);
    fputs("the end.\"}\n{\"prompt\": \"", f);
    for (int i = 0; i < 200; i++) fputs("very long question ", f);
    fputs("?\", \"completion\": \"Ok.\"}\n", f);
    fclose(f);
}

START_TEST(truncate_and_drop) {
    NEED_TOKENIZER();
    make_tmp();
    char path[128];
    snprintf(path, sizeof path, "%s/long.jsonl", tmp_root);
    write_long_file(path);
    enum { S = 64 };
    SftConfig c = file_cfg(path, S, 0);
    SftStats st;
    Dataset *ds = make(&c, &st);
    ck_assert_int_eq(st.examples[0], 2);
    ck_assert_int_eq(st.dropped, 1);   /* the long question leaves no room for its answer */
    ck_assert_int_eq(st.truncated, 1); /* the long story keeps its start */
    int32_t tokens[S], targets[S];
    get_ex(ds, SPLIT_TRAIN, 1, tokens, targets, S);
    ck_assert_int_eq(last_trained(targets, S), S - 1); /* trained up to the window's end, no padding */
    char *story = trained_text(targets, S);
    ck_assert_msg(strncmp(story, "once more once more", 19) == 0 && !strstr(story, "the end"), "%s", story);
    free(story);
    const char *answer;
    char *p = prompt_text(ds, SPLIT_TRAIN, 1, &answer);
    ck_assert_ptr_nonnull(strstr(answer, "the end.")); /* the reference stays whole */
    free(p);
    /* A window of more tokens than seq_len pads the rest. */
    int32_t big_tok[2 * S], big_tgt[2 * S];
    get_ex(ds, SPLIT_TRAIN, 0, big_tok, big_tgt, 2 * S);
    ck_assert_int_eq(big_tok[2 * S - 1], tok_eos(tok));
    ds->free(ds);
    remove_tree(tmp_root);
}
END_TEST

/* The boundary: seq_len = prompt length keeps exactly the first answer token; one less drops it. */
START_TEST(drop_boundary) {
    NEED_TOKENIZER();
    make_tmp();
    char path[128];
    snprintf(path, sizeof path, "%s/one.jsonl", tmp_root);
    write_file(path, "{\"prompt\": \"Name a fruit.\", \"completion\": \"Apple pie\"}\n");
    SftConfig c = file_cfg(path, 256, 0);
    Dataset *ds = make(&c, NULL);
    const int32_t *ids;
    int p;
    const char *answer;
    ck_assert_int_eq(sft_prompt(ds, SPLIT_TRAIN, 0, &ids, &p, &answer), PEFTC_OK);
    ds->free(ds);

    c.seq_len = p;
    SftStats st;
    ds = make(&c, &st);
    ck_assert_int_eq(st.truncated, 1);
    int32_t *tokens = malloc((size_t)p * sizeof *tokens), *targets = malloc((size_t)p * sizeof *targets);
    get_ex(ds, SPLIT_TRAIN, 0, tokens, targets, p);
    ck_assert_int_eq(first_trained(targets, p), p - 1);
    char *first = trained_text(targets, p);
    ck_assert_str_eq(first, "Apple");
    free(first);
    free(tokens);
    free(targets);
    ds->free(ds);

    c.seq_len = p - 1;
    ck_assert_int_eq(sft_dataset_create(&ds, &c, tok, &ct, &st), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "1 were dropped") && strstr(peftc_err_msg(), "train.seq_len"), "%s",
                  peftc_err_msg());
    remove_tree(tmp_root);
}
END_TEST

/* ---- bad lines ---- */

START_TEST(bad_line_fails_with_first_and_count) {
    NEED_TOKENIZER();
    SftConfig c = file_cfg(FIX "bad.jsonl", 128, 0);
    Dataset *ds = NULL;
    SftStats st;
    ck_assert_int_eq(sft_dataset_create(&ds, &c, tok, &ct, &st), PEFTC_EFORMAT);
    const char *msg = peftc_err_msg();
    ck_assert_msg(strstr(msg, "bad.jsonl:2: invalid JSON") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "8 bad lines in total") != NULL, "%s", msg);
    ck_assert_ptr_null(ds);
}
END_TEST

START_TEST(skip_bad_lines_counts) {
    NEED_TOKENIZER();
    SftConfig c = file_cfg(FIX "bad.jsonl", 128, 0);
    c.skip_bad_lines = 1;
    SftStats st;
    Dataset *ds = make(&c, &st);
    ck_assert_int_eq(st.bad_lines, 8);
    ck_assert_int_eq(st.examples[0], 3);
    expect_trained(ds, SPLIT_TRAIN, 0, "One.<|im_end|>");
    expect_trained(ds, SPLIT_TRAIN, 1, "Two.<|im_end|>");
    expect_trained(ds, SPLIT_TRAIN, 2, "Three.<|im_end|>");
    ds->free(ds);
}
END_TEST

/* Needs no tokenizer: every kind of bad line is named with its line number and reason. */
START_TEST(each_bad_line_is_named) {
    static const char *const cases[][2] = {
        {"{\"prompt\": \"broken\", ", "invalid JSON at column"},
        {"{\"prompt\": \"a\", \"completion\": \"b\"} extra", "unexpected text after the JSON value at column 36"},
        {"[1, 2, 3]", "expected a JSON object, got an array"},
        {"\"just a string\"", "expected a JSON object, got a string"},
        {"{\"question\": \"What?\", \"answer\": 1}", "none of the known shapes"},
        {"{}", "the object is empty"},
        {"{\"prompt\": \"a\", \"completion\": 5}", "\"completion\" must be a string, got a number"},
        {"{\"prompt\": \"a\"}", "\"completion\" is missing"},
        {"{\"instruction\": \"a\", \"input\": 3, \"output\": \"b\"}", "\"input\" must be a string, got a number"},
        {"{\"prompt\": \"a\", \"completion\": \" \\n \"}", "empty \"completion\""},
        {"{\"instruction\": \"a\", \"output\": \"\"}", "empty \"output\""},
        {"{\"messages\": {\"role\": \"user\"}}", "\"messages\" must be an array, got an object"},
        {"{\"messages\": []}", "\"messages\" is empty"},
        {"{\"messages\": [\"hi\"]}", "messages[0] must be an object, got a string"},
        {"{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}",
         "messages[0].role \"tool\" is not one of system, user, assistant"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": 1}]}", "messages[0]: \"content\" must be a string"},
        {"{\"messages\": [{\"role\": \"user\"}]}", "messages[0]: \"content\" is missing"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", "no assistant message in \"messages\""},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"\"}]}",
         "messages[1] (assistant) has empty \"content\""},
        {"{\"text\": \"a document\"}", "a {\"text\"} document, but line 1 made this a file of conversations"},
        {"{\"text\": 7}", "\"text\" must be a string, got a number"},
    };
    make_tmp();
    char path[128], text[512];
    snprintf(path, sizeof path, "%s/case.jsonl", tmp_root);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(text, sizeof text, "{\"prompt\": \"ok\", \"completion\": \"fine\"}\n%s\n\n", cases[i][0]);
        write_file(path, text);
        JsonlFile f;
        PeftcStatus st = jsonl_read(&f, path, "data.path", 0);
        const char *msg = peftc_err_msg();
        REQUIRE(st == PEFTC_EFORMAT && strstr(msg, "/case.jsonl:2: ") && strstr(msg, cases[i][1]) &&
                    strstr(msg, "(1 bad line in"),
                "line %s: got \"%s\", want \"%s\"", cases[i][0], msg, cases[i][1]);
        ck_assert_int_eq(f.n, 0);
        /* Skipping keeps the good line. */
        ck_assert_int_eq(jsonl_read(&f, path, "data.path", 1), PEFTC_OK);
        ck_assert_int_eq(f.n, 1);
        ck_assert_int_eq(f.bad_lines, 1);
        jsonl_free(&f);
    }
    /* A file of nothing but bad lines has no examples even when skipping. */
    write_file(path, "[1]\n{}\n");
    JsonlFile f;
    ck_assert_int_eq(jsonl_read(&f, path, "data.path", 1), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "holds no examples (2 bad lines skipped)"));
    snprintf(path, sizeof path, "%s/missing.jsonl", tmp_root);
    ck_assert_int_eq(jsonl_read(&f, path, "data.path", 0), PEFTC_EIO);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "missing.jsonl"));
    remove_tree(tmp_root);
}
END_TEST

START_TEST(jsonl_shapes_become_conversations) {
    JsonlFile f;
    ck_assert_int_eq(jsonl_read(&f, FIX "bad.jsonl", "data.path", 1), PEFTC_OK);
    ck_assert_int_eq(f.kind, JSONL_CHAT);
    ck_assert_int_eq(f.n, 3);
    ck_assert_int_eq(f.bad_lines, 8);
    const int64_t lines[] = {1, 9, 12};
    const JsonlShape shapes[] = {JSONL_PROMPT, JSONL_INSTRUCTION, JSONL_MESSAGES};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(f.ex[i].line, lines[i]);
        ck_assert_int_eq(f.ex[i].shape, shapes[i]);
        ck_assert_int_eq(f.ex[i].n_msgs, 2);
        ck_assert_int_eq(f.ex[i].msgs[0].role, ROLE_USER);
        ck_assert_int_eq(f.ex[i].msgs[1].role, ROLE_ASSISTANT);
    }
    ck_assert_str_eq(f.ex[1].msgs[0].content, "Good line two.");
    jsonl_free(&f);
    ck_assert_int_eq(jsonl_read(&f, FIX "text.jsonl", "data.path", 0), PEFTC_OK);
    ck_assert_int_eq(f.kind, JSONL_TEXT);
    ck_assert_int_eq(f.n, 3);
    ck_assert_str_eq(f.ex[2].msgs[0].content, "Nobody in the village remembered when the mill was built.");
    jsonl_free(&f);
}
END_TEST

/* ---- plain text ---- */

static void append_doc(const char *text, size_t n, int32_t **ids, size_t *len, size_t *cap) {
    if (tok_add_bos(tok)) {
        *ids = realloc(*ids, (*len + 1) * sizeof **ids);
        (*ids)[(*len)++] = tok_bos(tok);
        *cap = *len;
    }
    ck_assert_int_eq(tok_encode(tok, text, n, 0, ids, len, cap), PEFTC_OK);
    *ids = realloc(*ids, (*len + 1) * sizeof **ids);
    (*ids)[(*len)++] = tok_eos(tok);
    *cap = *len;
}

/* The windows of `split` are stream[from, to) cut every S tokens, every target trained. */
static void check_windows(const Dataset *ds, Split split, const int32_t *stream, size_t from, size_t to, int S) {
    int64_t w = ds->size(ds, split);
    ck_assert_int_eq(w, (int64_t)((to - from - 2) / (size_t)S + 1));
    int32_t *tokens = malloc((size_t)S * sizeof *tokens), *targets = malloc((size_t)S * sizeof *targets);
    size_t covered = 0;
    for (int64_t i = 0; i < w; i++) {
        get_ex(ds, split, i, tokens, targets, S);
        size_t at = from + (size_t)i * (size_t)S;
        for (int t = 0; t < S; t++) {
            size_t p = at + (size_t)t;
            REQUIRE(tokens[t] == (p < to ? stream[p] : tok_eos(tok)), "window %lld token %d", (long long)i, t);
            REQUIRE(targets[t] == (p + 1 < to ? stream[p + 1] : PEFTC_IGNORE_INDEX), "window %lld target %d",
                    (long long)i, t);
            covered += targets[t] != PEFTC_IGNORE_INDEX;
        }
        const int32_t *ids;
        int n;
        const char *answer = "unset";
        ck_assert_int_eq(sft_prompt(ds, split, i, &ids, &n, &answer), PEFTC_OK);
        ck_assert_ptr_null(answer);
        ck_assert_int_eq(ids[0], stream[at]);
    }
    ck_assert_int_eq(covered, to - from - 1); /* every token but the first is a target exactly once */
    free(tokens);
    free(targets);
}

START_TEST(text_documents_make_windows) {
    NEED_TOKENIZER();
    JsonlFile f;
    ck_assert_int_eq(jsonl_read(&f, FIX "text.jsonl", "data.path", 0), PEFTC_OK);
    int32_t *stream = NULL;
    size_t n = 0, cap = 0;
    for (int64_t i = 0; i < f.n; i++) {
        const char *doc = f.ex[i].msgs[0].content;
        append_doc(doc, strlen(doc), &stream, &n, &cap);
    }
    jsonl_free(&f);
    enum { S = 16 };
    SftConfig c = file_cfg(FIX "text.jsonl", S, 0);
    SftStats st;
    Dataset *ds = make(&c, &st);
    ck_assert_str_eq(ds->name, "sft-text");
    check_windows(ds, SPLIT_TRAIN, stream, 0, n, S);
    ck_assert_int_eq(ds->size(ds, SPLIT_EVAL), 0);
    ds->free(ds);

    /* Held out: the last quarter of the windows, cut at a window edge. */
    c.eval_percent = 25;
    ds = make(&c, &st);
    int64_t w = (int64_t)((n - 2) / S + 1), e = w / 4 > 0 ? w / 4 : 1;
    size_t cut = (size_t)(w - e) * S;
    check_windows(ds, SPLIT_TRAIN, stream, 0, cut, S);
    check_windows(ds, SPLIT_EVAL, stream, cut, n, S);
    ck_assert_int_eq(st.examples[0] + st.examples[1], w);
    ds->free(ds);
    free(stream);
}
END_TEST

START_TEST(txt_file_is_one_document) {
    NEED_TOKENIZER();
    FILE *fp = fopen(FIX "plain.txt", "rb");
    ck_assert_ptr_nonnull(fp);
    char text[4096];
    size_t len = fread(text, 1, sizeof text, fp);
    fclose(fp);
    int32_t *stream = NULL;
    size_t n = 0, cap = 0;
    append_doc(text, len, &stream, &n, &cap);
    enum { S = 8 };
    SftConfig c = file_cfg(FIX "plain.txt", S, 0);
    Dataset *ds = make(&c, NULL);
    check_windows(ds, SPLIT_TRAIN, stream, 0, n, S);
    ds->free(ds);
    free(stream);
}
END_TEST

/* ---- built-in tasks ---- */

START_TEST(task_prompts_and_answers) {
    NEED_TOKENIZER();
    for (int k = 0; k < TASK_COUNT; k++) {
        SftConfig c = {.task = (TaskKind)k, .train_examples = 40, .eval_examples = 30, .seed = 3, .seq_len = 256};
        SftStats st;
        Dataset *ds = make(&c, &st);
        ck_assert_int_eq(sft_task(ds), k);
        ck_assert_int_eq(st.examples[0], 40);
        ck_assert_int_eq(st.examples[1], 30);
        char prompt[512], answer[512], want[600];
        for (int s = 0; s < 2; s++)
            for (int64_t i = 0; i < 30; i++) {
                ck_assert_int_eq(task_example(k, 3, s, i, prompt, sizeof prompt, answer, sizeof answer), PEFTC_OK);
                const char *ref;
                char *p = prompt_text(ds, s, i, &ref);
                ck_assert_str_eq(ref, answer);
                snprintf(want, sizeof want, "<|im_start|>system\n%s<|im_end|>\n", task_instruction(k));
                REQUIRE(strncmp(p, want, strlen(want)) == 0, "%s: prompt starts %s", task_names[k], p);
                snprintf(want, sizeof want, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", prompt);
                REQUIRE(ends_with(p, want), "%s: prompt %s", task_names[k], p);
                free(p);
                snprintf(want, sizeof want, "%s<|im_end|>", answer);
                expect_trained(ds, s, i, want);
            }
        ds->free(ds);
    }
}
END_TEST

START_TEST(task_prompts_are_short_in_tokens) {
    NEED_TOKENIZER();
    for (int k = 0; k < TASK_COUNT; k++) {
        size_t worst = 0, worst_answer = 0;
        for (int64_t i = 0; i < 1000; i++) {
            char prompt[512], answer[512];
            ck_assert_int_eq(task_example(k, 1, i % 2, i, prompt, sizeof prompt, answer, sizeof answer), PEFTC_OK);
            int32_t *ids = NULL;
            size_t n = 0, cap = 0, na;
            ck_assert_int_eq(tok_encode(tok, prompt, strlen(prompt), 0, &ids, &n, &cap), PEFTC_OK);
            na = n;
            ck_assert_int_eq(tok_encode(tok, answer, strlen(answer), 0, &ids, &n, &cap), PEFTC_OK);
            worst = na > worst ? na : worst;
            worst_answer = n - na > worst_answer ? n - na : worst_answer;
            free(ids);
        }
        printf("task %s: longest prompt %zu tokens, longest answer %zu tokens\n", task_names[k], worst, worst_answer);
        ck_assert_uint_lt(worst, 60);
        ck_assert_uint_lt(worst_answer, 40);
    }
}
END_TEST

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

START_TEST(ten_thousand_examples_tokenize) {
    NEED_TOKENIZER();
    SftConfig c = {.task = TASK_SQL, .train_examples = 10000, .eval_examples = 256, .seed = 5, .seq_len = 256};
    double t0 = seconds();
    SftStats st;
    Dataset *ds = make(&c, &st);
    double dt = seconds() - t0;
    printf("10256 sql examples (%lld train tokens) tokenized in %.2f s\n", (long long)st.tokens, dt);
    ck_assert_int_eq(st.examples[0], 10000);
    /* The time is printed, not asserted: a busy machine must not fail a test. The encoder's cost is
     * bounded by operation counts in test_tokenizer. */
    ck_assert_int_gt(st.tokens, 10000 * 10);
    ds->free(ds);
}
END_TEST

START_TEST(bad_calls_fail_cleanly) {
    NEED_TOKENIZER();
    SftConfig c = file_cfg(FIX "prompt.jsonl", 64, 0);
    Dataset *ds = make(&c, NULL);
    int32_t tokens[64], targets[64];
    const int32_t *ids;
    int n;
    const char *answer;
    ck_assert_int_eq(ds->get(ds, SPLIT_TRAIN, 5, tokens, targets, 64), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "outside [0, 5)"));
    ck_assert_int_eq(ds->get(ds, SPLIT_EVAL, 0, tokens, targets, 64), PEFTC_EINVAL);
    ck_assert_int_eq(ds->get(ds, (Split)2, 0, tokens, targets, 64), PEFTC_EINVAL);
    ck_assert_int_eq(ds->get(ds, SPLIT_TRAIN, 0, tokens, targets, 0), PEFTC_EINVAL);
    ck_assert_int_eq(sft_prompt(ds, SPLIT_TRAIN, -1, &ids, &n, &answer), PEFTC_EINVAL);
    ds->free(ds);

    SynConfig sc = {.task = SYN_COPY, .min_digits = 1, .max_digits = 3, .seed = 1, .eval_percent = 10};
    ck_assert_int_eq(syn_dataset_create(&ds, &sc), PEFTC_OK);
    ck_assert_int_eq(sft_prompt(ds, SPLIT_TRAIN, 0, &ids, &n, &answer), PEFTC_EINVAL);
    ck_assert_int_eq(sft_task(ds), -1);
    ds->free(ds);

    c = file_cfg(FIX "does_not_exist.jsonl", 64, 0);
    ck_assert_int_eq(sft_dataset_create(&ds, &c, tok, &ct, NULL), PEFTC_EIO);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "does_not_exist.jsonl"));
    c = file_cfg(FIX "prompt.jsonl", 0, 0);
    ck_assert_int_eq(sft_dataset_create(&ds, &c, tok, &ct, NULL), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "train.seq_len"));
    c = file_cfg(FIX "prompt.jsonl", 64, 0);
    ck_assert_int_eq(sft_dataset_create(&ds, &c, NULL, &ct, NULL), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "tokenizer"));
}
END_TEST

static Suite *sft_suite(void) {
    Suite *s = suite_create("sft");
    TCase *files = tcase_create("files");
    tcase_add_unchecked_fixture(files, load_tokenizer, free_tokenizer);
    tcase_add_test(files, prompt_completion_masks);
    tcase_add_test(files, instruction_joins_input);
    tcase_add_test(files, messages_train_every_assistant);
    tcase_add_test(files, eval_split_is_file_tail_or_eval_path);
    tcase_add_test(files, truncate_and_drop);
    tcase_add_test(files, drop_boundary);
    tcase_add_test(files, bad_line_fails_with_first_and_count);
    tcase_add_test(files, skip_bad_lines_counts);
    tcase_add_test(files, each_bad_line_is_named);
    tcase_add_test(files, jsonl_shapes_become_conversations);
    tcase_add_test(files, text_documents_make_windows);
    tcase_add_test(files, txt_file_is_one_document);
    tcase_add_test(files, task_prompts_and_answers);
    tcase_add_test(files, task_prompts_are_short_in_tokens);
    tcase_add_test(files, ten_thousand_examples_tokenize);
    tcase_add_test(files, bad_calls_fail_cleanly);
    suite_add_tcase(s, files);
    return s;
}

int main(void) { return tu_run_suite(sft_suite()); }
