/* A model saved as a llama.cpp GGUF file that carries its base file's metadata: what a GGUF base's
 * full fine-tune and `peftc merge --out X.gguf` leave, loadable by llama.cpp, transformers and peftc. */
#ifndef PEFTC_GGUF_SAVE_H
#define PEFTC_GGUF_SAVE_H

#include "core/base/ggml_types.h"
#include "core/models/model.h"

/* llama.cpp's general.file_type for a model whose matrices are `type`: ALL_F32 0, MOSTLY_F16 1,
 * MOSTLY_BF16 32; -1 for any other type. */
int gguf_file_type_of(GgmlType type);

/* Writes m to out_path (atomically: out_path.tmp, then rename; its folder made when missing) as GGUF
 * laid out like base_gguf, the file m was loaded from: every metadata key of the base in its order and
 * with its bytes, but general.file_type (set for `type`, added at the end when the base has none); every
 * tensor of the base in its order and with its shape, from m's current values (ModelOps.gguf_tensor)
 * where m has the tensor, as the base's bytes where it has not (LLaMA-3's rope_freqs). Matrices are
 * stored as `type` (GGML_F32, GGML_F16 or GGML_BF16); what llama.cpp's converter keeps in F32 (vectors,
 * norms, tensors not named *.weight, Mamba's conv weight) stays F32. Tensors are read and encoded one at
 * a time as the file is written, so saving needs about one tensor's size beyond the model.
 * Refused (nothing written): another type; a quantized model (load it dense); a family without a GGUF
 * layout; a base whose general.architecture is not m->gguf_arch or whose tensor has another shape than
 * m's; a base tensor of m that the base lacks or names twice. Messages name the files and the tensor. */
PeftcStatus model_save_gguf(const Model *m, const char *base_gguf, const char *out_path, GgmlType type);

#endif
