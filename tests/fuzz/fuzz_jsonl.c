/* JSONL SFT data (datasets/jsonl.c, datasets/sft.c): every line shape, then, when the file reads, the
 * examples tokenized into a dataset (ChatML, the fixture SmolLM tokenizer) and each one fetched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/jsonl.h"
#include "datasets/sft.h"
#include "tests/fuzz/fuzz_util.h"

enum { SEQ = 128 };

static Tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (fuzz_note(tok_load_hf(&tok, PEFTC_FIXTURE_DIR "/tokenizer/smollm/tokenizer.json"), "tok_load_hf") != PEFTC_OK)
        abort();
    return 0;
}

static void build_dataset(const char *path) {
    SftConfig cfg = {.eval_percent = 20, .seed = 1, .seq_len = SEQ};
    snprintf(cfg.path, sizeof cfg.path, "%s", path);
    ChatTemplate ct = {CHAT_CHATML, "You are helpful."};
    Dataset *ds = NULL;
    SftStats stats;
    if (fuzz_note(sft_dataset_create(&ds, &cfg, tok, &ct, &stats), "sft_dataset_create") != PEFTC_OK) return;
    int32_t tokens[SEQ], targets[SEQ];
    for (int s = 0; s < 2; s++) {
        int64_t n = ds->size(ds, (Split)s);
        for (int64_t i = 0; i < n && i < 64; i++) {
            (void)ds->get(ds, (Split)s, i, tokens, targets, SEQ);
            const int32_t *ids;
            int len;
            const char *answer;
            (void)sft_prompt(ds, (Split)s, i, &ids, &len, &answer);
        }
    }
    ds->free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("train.jsonl", data, size);
    JsonlFile f;
    PeftcStatus st = fuzz_note(jsonl_read(&f, path, "data.path", 0), "jsonl_read");
    jsonl_free(&f);
    if (st == PEFTC_OK) build_dataset(path);
    return 0;
}
