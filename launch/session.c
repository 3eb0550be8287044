#include "session.h"

#include <string.h>

static MethodConfig method_config(const RunConfig *c) {
    return (MethodConfig){.kind = c->method,
                          .lora = c->lora,
                          .lr = (c->method == METHOD_LORA && c->lora_lr > 0) ? c->lora_lr : c->lr,
                          .weight_decay = c->weight_decay};
}

static PeftcStatus open_parts(Session *s) {
    const RunConfig *c = &s->cfg;
    const Backend *be = backend_cpu();
    s->method = method_config(c);
    PEFTC_TRY(syn_dataset_create(&s->data, &c->data));
    PEFTC_TRY(llama_create(&s->model, be, &c->model, c->model_seed, c->init_std));
    arena_init(&s->arena, be);
    PEFTC_TRY(method_attach(&s->model, &s->arena, &s->method));
    PEFTC_TRY(arena_finalize(&s->arena));
    /* Adapter init is keyed by the training seed so one base model can host differently seeded runs. */
    PEFTC_TRY(method_init(&s->model, &s->arena, &s->method, c->train.seed));
    return trainer_init(&s->trainer, &c->train, &s->model, &s->arena, s->comm, s->data);
}

PeftcStatus session_open(Session *s, const RunConfig *cfg, Comm *comm) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->comm = comm;
    PeftcStatus st = open_parts(s);
    if (st != PEFTC_OK) session_close(s);
    return st;
}

void session_close(Session *s) {
    trainer_free(&s->trainer);
    llama_free(&s->model); /* also destroys attached adapters */
    arena_free(&s->arena);
    if (s->data) s->data->free(s->data);
    memset(s, 0, sizeof *s);
}
