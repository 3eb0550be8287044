/* The per-method structural state a checkpoint carries beside the arena, so that a resume can prove it
 * rebuilt the same adapters: RoSA/SpA masks (flat indices per layer, /state/rosa/<layer>/mask) and the
 * EigenLoRAx basis file's identity (/state/eigenlora/basis). */
#ifndef PEFTC_CKPT_STATE_H
#define PEFTC_CKPT_STATE_H

#include "core/train/checkpoint.h"
#include "launch/session.h"

typedef struct {
    CkptBlob *blobs;
    int n;
    void **owned; /* (n) buffers to free */
} CkptState;

/* Gathers the session's state (empty for methods without any). */
PeftcStatus ckpt_state_gather(const Session *s, CkptState *out);
void ckpt_state_free(CkptState *st);

/* Compares the session's state with the one stored in checkpoint `path`; errors name the layer or file. */
PeftcStatus ckpt_state_check(const Session *s, const char *path);

#endif
