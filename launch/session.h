/* Everything one run holds, assembled from a RunConfig: the model (pretrained or random), its
 * tokenizer and chat format, the trainable set, the data and the trainer. Used by every command and by
 * the end-to-end tests. */
#ifndef PEFTC_SESSION_H
#define PEFTC_SESSION_H

#include "adapters/method.h"
#include "core/models/model_load.h"
#include "datasets/chat.h"
#include "launch/config/config.h"

typedef struct {
    RunConfig cfg;
    MethodConfig method;
    Model *model;            /* NULL until loaded */
    ModelInfo info;          /* of model.path (zero for a random model) */
    Tokenizer *tok;          /* NULL for a random model */
    ChatTemplate chat;
    char chat_system[1024];  /* the template's default system prompt */
    Arena arena;
    Dataset *data;
    SftStats data_stats;     /* for text data */
    Trainer trainer;
    Comm *comm; /* borrowed */
    int bf16;                /* train.precision resolved for this backend: 1 = bf16 matmuls */
    char precision_why[160]; /* why, for the start-up line */
} Session;

/* cfg must have been through config_finish(). Loads the model (cfg.model is replaced by the file's
 * hyperparameters), attaches the method (from lora.init_from when set), builds the data and the
 * trainer. On failure everything built so far is released. */
PeftcStatus session_open(Session *s, const RunConfig *cfg, Comm *comm);
/* The model, tokenizer and method only: for generation, export and merge. */
PeftcStatus session_open_model(Session *s, const RunConfig *cfg);
void session_close(Session *s);

/* The method's phases before the main run (RoSA's masks), rebuilding the session from its
 * configuration when the method asks to start again from step 0. Collective. */
PeftcStatus session_prepare(Session *s, Comm *comm);

/* Reads model.path's hyperparameters into c->model (cheap; no weights), so the resolved configuration
 * shows the real shape. No-op for a random model. */
PeftcStatus session_resolve_model(RunConfig *c);

#endif
