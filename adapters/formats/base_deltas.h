/* Dense deltas on named base tensors, as a method that trains base tensors sparsely leaves them (SDT:
 * A_log and x_proj.weight): one safetensors file, tensor "<base tensor name>.delta" (F32, the base
 * tensor's shape), metadata {"format": "peftc-base-deltas"}. peftc merge adds each to its tensor, so a
 * merged folder computes what the trained run computed. */
#ifndef PEFTC_BASE_DELTAS_H
#define PEFTC_BASE_DELTAS_H

#include "core/models/model.h"

typedef struct BaseDeltas BaseDeltas;

/* A writer for deltas of m's base tensors; add each, then write (atomically) and free. */
PeftcStatus base_deltas_new(BaseDeltas **out);
/* delta (host, the shape of ref) for base tensor ref. */
PeftcStatus base_deltas_add(BaseDeltas *d, const ParamRef *ref, const real_t *delta);
PeftcStatus base_deltas_write(BaseDeltas *d, const char *path);
void base_deltas_free(BaseDeltas *d);

/* Adds every delta of the file to m's base tensor of that name (m on any backend). EFORMAT naming the
 * file and tensor for a name m has no tensor for, or another shape. */
PeftcStatus base_deltas_apply(Model *m, const char *path);

#endif
