/* peftc generate: continue a prompt (or answer it as a chat turn) with the model and an optional
 * adapter, streaming tokens as they come. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/lora.h"
#include "core/base/clock.h"
#include "core/models/generate.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "launch/session.h"

typedef struct {
    char model[512], adapter[512], prompt[8192], system[1024];
    int chat, no_bos, max_new, top_k, seed;
    double temperature, top_p;
} GenArgs;

static const Flag *gen_flags(GenArgs *a, int *n) {
    static Flag f[11];
    Flag t[] = {
        {"model", FLAG_STR, a->model, sizeof a->model, "GGUF file or HF folder (default: the bundled SmolLM2)"},
        {"adapter", FLAG_STR, a->adapter, sizeof a->adapter, "PEFT LoRA adapter folder to apply"},
        {"prompt", FLAG_STR, a->prompt, sizeof a->prompt, "text to continue (or the user turn with --chat)"},
        {"chat", FLAG_BOOL, &a->chat, 0, "wrap the prompt in the model's chat format as a user turn"},
        {"system", FLAG_STR, a->system, sizeof a->system, "system message with --chat (default: the template's)"},
        {"no-bos", FLAG_BOOL, &a->no_bos, 0, "do not start a plain prompt with BOS even if the model asks for it"},
        {"max-new", FLAG_INT, &a->max_new, 0, "most tokens to generate (default 64)"},
        {"temperature", FLAG_FLOAT, &a->temperature, 0, "0 = greedy (default); > 0 samples"},
        {"top-p", FLAG_FLOAT, &a->top_p, 0, "nucleus sampling mass (default 1 = off)"},
        {"top-k", FLAG_INT, &a->top_k, 0, "sample among the k most likely (default 0 = off)"},
        {"seed", FLAG_INT, &a->seed, 0, "sampling seed (default 0)"},
    };
    memcpy(f, t, sizeof t);
    *n = (int)(sizeof t / sizeof t[0]);
    return f;
}

void generate_usage(FILE *f) {
    GenArgs a;
    int n;
    const Flag *fl = gen_flags(&a, &n);
    fprintf(f, "usage: peftc generate --prompt TEXT [flags]\n\n");
    flags_usage(fl, n, f);
}

/* Prompt ids: the chat turn with its generation header, or the plain text (after BOS if asked for). */
static PeftcStatus encode_prompt(const Session *s, const GenArgs *a, int32_t **ids, size_t *n) {
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    if (a->chat) {
        ChatTemplate ct = s->chat;
        if (a->system[0]) ct.default_system = a->system;
        ChatMessage m = {ROLE_USER, a->prompt};
        uint8_t *mask = NULL;
        PeftcStatus st = chat_encode(&ct, s->tok, &m, 1, 1, ids, &mask, n, &cap);
        free(mask);
        return st;
    }
    if (!a->no_bos && tok_add_bos(s->tok) && tok_bos(s->tok) >= 0) {
        cap = 64;
        if (!(*ids = malloc(cap * sizeof **ids))) return PEFTC_ERR(PEFTC_ENOMEM, "generate: out of memory");
        (*ids)[(*n)++] = tok_bos(s->tok);
    }
    return tok_encode(s->tok, a->prompt, strlen(a->prompt), 0, ids, n, &cap);
}

typedef struct {
    const Tokenizer *tok;
    int count;
} Stream;

static void print_token(void *user, int32_t id) {
    Stream *st = user;
    char *text = NULL;
    size_t len;
    if (tok_decode(st->tok, &id, 1, 1, &text, &len) == PEFTC_OK) fwrite(text, 1, len, stdout);
    free(text);
    fflush(stdout);
    st->count++;
}

static PeftcStatus generate(const GenArgs *a) {
    static RunConfig cfg;
    config_defaults(&cfg);
    if (a->model[0]) snprintf(cfg.model_path, sizeof cfg.model_path, "%s", a->model);
    LoraSettings *ls = lora_settings(&cfg.methods);
    snprintf(ls->init_from, sizeof ls->init_from, "%s", a->adapter);
    static Session s;
    PEFTC_TRY(session_resolve_model(&cfg));
    PEFTC_TRY(session_open_model(&s, &cfg));
    if (!s.tok) {
        session_close(&s);
        return PEFTC_ERR(PEFTC_EINVAL, "--model '%s' has no tokenizer.json to encode the prompt with", cfg.model_path);
    }
    int32_t *ids = NULL, *out = malloc((size_t)a->max_new * sizeof *out), stop[8];
    size_t n = 0;
    PeftcStatus st = out ? encode_prompt(&s, a, &ids, &n) : PEFTC_ERR(PEFTC_ENOMEM, "generate: out of memory");
    if (st == PEFTC_OK && n == 0) st = PEFTC_ERR(PEFTC_EINVAL, "--prompt: the prompt encodes to no tokens");
    if (st == PEFTC_OK) {
        SamplerConfig sc = {a->temperature, a->top_p, a->top_k, (uint64_t)a->seed, tok_vocab_size(s.tok)};
        int n_stop = chat_stop_ids(&s.chat, s.tok, stop, 8), len = (int)n, out_n = 0;
        const int32_t *prompts[1] = {ids};
        Stream stream = {s.tok, 0};
        fputs(a->chat ? "" : a->prompt, stdout);
        double t0 = clock_seconds();
        st = gen_generate(s.model, &sc, 1, prompts, &len, a->max_new, stop, n_stop, &out, &out_n, print_token, &stream);
        double dt = clock_seconds() - t0;
        if (st == PEFTC_OK)
            fprintf(stderr, "\npeftc: %d prompt + %d new tokens in %.2f s (%.1f tokens/s)\n", len, out_n, dt,
                    dt > 0 ? (len + out_n) / dt : 0.0);
    }
    free(ids);
    free(out);
    session_close(&s);
    return st;
}

int cmd_generate(int argc, char **argv) {
    GenArgs a = {.max_new = 64, .top_p = 1.0};
    int n;
    const Flag *fl = gen_flags(&a, &n);
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            generate_usage(stdout);
            return 0;
        }
    PeftcStatus st = flags_parse(fl, n, argc, argv);
    if (st == PEFTC_OK && !a.prompt[0]) st = PEFTC_ERR(PEFTC_EINVAL, "--prompt is required");
    if (st == PEFTC_OK && a.max_new < 1) st = PEFTC_ERR(PEFTC_EINVAL, "--max-new must be >= 1, got %d", a.max_new);
    if (st == PEFTC_OK && (a.temperature < 0 || a.top_p <= 0 || a.top_p > 1 || a.top_k < 0))
        st = PEFTC_ERR(PEFTC_EINVAL, "--temperature must be >= 0, --top-p in (0, 1], --top-k >= 0");
    if (st != PEFTC_OK) {
        fprintf(stderr, "peftc: error: %s\n", peftc_err_msg());
        return EXIT_USAGE;
    }
    st = generate(&a);
    if (st != PEFTC_OK) {
        fprintf(stderr, "peftc: error: %s\n", peftc_err_msg());
        return exit_code_for(st);
    }
    return 0;
}
