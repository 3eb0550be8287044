#include "session.h"

#include <string.h>
#include <sys/stat.h>

#include "../adapters/peft_io.h"

static MethodConfig method_config(const RunConfig *c) {
    return (MethodConfig){.kind = c->method,
                          .lora = c->lora,
                          .lr = (c->method == METHOD_LORA && c->lora_lr > 0) ? c->lora_lr : c->lr,
                          .weight_decay = c->weight_decay};
}

PeftcStatus session_resolve_model(RunConfig *c) {
    if (!c->model_path[0]) return PEFTC_OK;
    ModelInfo info;
    return model_read_config(c->model_path, &c->model, &info);
}

/* A GGUF file always carries its tokenizer; an HF folder may hold weights only. */
static int has_tokenizer(const char *model_path) {
    struct stat st;
    char path[600];
    if (stat(model_path, &st) != 0 || !S_ISDIR(st.st_mode)) return 1;
    snprintf(path, sizeof path, "%s/tokenizer.json", model_path);
    return stat(path, &st) == 0;
}

static PeftcStatus open_base(Session *s) {
    RunConfig *c = &s->cfg;
    const Backend *be = backend_cpu();
    if (!c->model_path[0]) return llama_create(&s->model, be, &c->model, c->model_seed, c->init_std);
    PEFTC_TRY(model_load(&s->model, be, c->model_path, &s->info));
    c->model = s->model.cfg;
    if (!has_tokenizer(c->model_path)) return PEFTC_OK; /* weights only: fine for export and merge */
    PEFTC_TRY(tok_load(&s->tok, c->model_path));
    const char *tmpl = tok_chat_template(s->tok);
    s->chat.format = chat_detect(tmpl);
    chat_default_system(tmpl, s->chat_system, sizeof s->chat_system);
    s->chat.default_system = s->chat_system;
    return PEFTC_OK;
}

/* A PEFT adapter to start from brings its own shape (rank, alpha, targets). */
static PeftcStatus open_method(Session *s) {
    RunConfig *c = &s->cfg;
    if (c->lora_init_from[0]) {
        if (c->method != METHOD_LORA)
            return PEFTC_ERR(PEFTC_EINVAL, "lora.init_from is set but method.name is %s", method_names[c->method]);
        double dropout = c->lora.dropout;
        PEFTC_TRY(peft_read_config(c->lora_init_from, &c->lora));
        c->lora.dropout = dropout; /* a training choice, not part of the adapter */
    }
    s->method = method_config(c);
    arena_init(&s->arena, s->model.be);
    PEFTC_TRY(method_attach(&s->model, &s->arena, &s->method));
    PEFTC_TRY(arena_finalize(&s->arena));
    /* Adapter init is keyed by the training seed so one base model can host differently seeded runs. */
    PEFTC_TRY(method_init(&s->model, &s->arena, &s->method, c->train.seed));
    if (c->lora_init_from[0]) PEFTC_TRY(peft_load(&s->model, &s->arena, c->lora_init_from));
    return PEFTC_OK;
}

static PeftcStatus open_data(Session *s) {
    const RunConfig *c = &s->cfg;
    if (!c->sft.path[0] && data_task_is_synthetic(c->task)) return syn_dataset_create(&s->data, &c->data);
    if (!s->tok)
        return PEFTC_ERR(PEFTC_EINVAL, "model.path '%s' has no tokenizer.json, which text data (data.%s) needs",
                         c->model_path, c->sft.path[0] ? "path" : "task");
    return sft_dataset_create(&s->data, &c->sft, s->tok, &s->chat, &s->data_stats);
}

PeftcStatus session_open_model(Session *s, const RunConfig *cfg) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    PeftcStatus st = open_base(s);
    if (st == PEFTC_OK) st = open_method(s);
    if (st != PEFTC_OK) session_close(s);
    return st;
}

PeftcStatus session_open(Session *s, const RunConfig *cfg, Comm *comm) {
    PEFTC_TRY(session_open_model(s, cfg));
    s->comm = comm;
    PeftcStatus st = open_data(s);
    if (st == PEFTC_OK) st = trainer_init(&s->trainer, &s->cfg.train, &s->model, &s->arena, comm, s->data);
    if (st != PEFTC_OK) session_close(s);
    return st;
}

void session_close(Session *s) {
    trainer_free(&s->trainer);
    llama_free(&s->model); /* also destroys attached adapters */
    arena_free(&s->arena);
    if (s->data) s->data->free(s->data);
    tok_free(s->tok);
    memset(s, 0, sizeof *s);
}
