/* Everything one training run holds, assembled from a RunConfig: the model, the trainable set, the
 * data and the trainer. Used by `peftc train` and by the end-to-end tests. */
#ifndef PEFTC_SESSION_H
#define PEFTC_SESSION_H

#include "../adapters/method.h"
#include "config.h"

typedef struct {
    RunConfig cfg;
    MethodConfig method;
    LlamaModel model;
    Arena arena;
    Dataset *data;
    Trainer trainer;
    Comm *comm; /* borrowed */
} Session;

/* cfg must have been through config_finish(). On failure everything built so far is released. */
PeftcStatus session_open(Session *s, const RunConfig *cfg, Comm *comm);
void session_close(Session *s);

#endif
