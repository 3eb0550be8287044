/* RoSA's sparse deltas on disk: one safetensors file for the whole model, written beside the PEFT
 * folder of the LoRA part. Per RoSA layer:
 *   base_model.model.<module>.rosa_S.row_ptr  I32 (out + 1)
 *   base_model.model.<module>.rosa_S.col_idx  I32 (nnz), ascending within each row
 *   base_model.model.<module>.rosa_S.values   F32 (nnz)
 * metadata {"format": "peftc-rosa"}. S is (out, in) like the layer's weight: W_adapted = W + S + s B A.
 * The same file holds the masks of the two-launch recipe (values then zero). */
#ifndef PEFTC_ROSA_IO_H
#define PEFTC_ROSA_IO_H

#include "core/nn/arena.h"
#include "core/models/model.h"

/* Writes every RoSA layer's pattern and values (atomically). ESTATE when a layer has no mask yet. */
PeftcStatus rosa_save_sparse(const Model *m, const char *path);

/* Sets every RoSA layer's mask from the file; with_values also loads the values into the arena. Every
 * RoSA layer must be in the file with its expected nnz; errors name the file and the tensor. */
PeftcStatus rosa_load_sparse(Model *m, Arena *arena, const char *path, int with_values);

#endif
