/* A small GGUF v3 writer: metadata, then tensors given as F32/real_t values or as raw ggml bytes.
 *
 * Values are copied when they are added, so the caller's buffers may be freed right away. Metadata
 * keys keep the order they were first set in; setting a key again replaces its value. Tensors are
 * written in the order added, each at an offset that is a multiple of the alignment: 32, or the u32
 * `general.alignment` when that key is set (a power of two). The file is written atomically
 * (path.tmp, fsync, rename).
 *
 * Shapes are in ggml order: ne[0] is the row length (fastest-varying). An HF (out, in) row-major matrix
 * is ne = {in, out} with the same bytes. Names are limited to 63 bytes, as ggml's reader requires. */
#ifndef PEFTC_GGUF_WRITE_H
#define PEFTC_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "core/formats/gguf.h"
#include "core/base/real.h"
#include "core/base/status.h"

typedef struct GgufWriter GgufWriter;

/* NULL when out of memory. */
GgufWriter *gguf_writer_new(void);
void gguf_writer_free(GgufWriter *w);

PeftcStatus gguf_writer_u32(GgufWriter *w, const char *key, uint32_t v);
PeftcStatus gguf_writer_i32(GgufWriter *w, const char *key, int32_t v);
PeftcStatus gguf_writer_f32(GgufWriter *w, const char *key, float v);
PeftcStatus gguf_writer_bool(GgufWriter *w, const char *key, int v);
PeftcStatus gguf_writer_str(GgufWriter *w, const char *key, const char *v);
PeftcStatus gguf_writer_str_array(GgufWriter *w, const char *key, const char *const *v, uint64_t n);
PeftcStatus gguf_writer_i32_array(GgufWriter *w, const char *key, const int32_t *v, uint64_t n);
PeftcStatus gguf_writer_f32_array(GgufWriter *w, const char *key, const float *v, uint64_t n);
/* Key kv of an open GgufFile (any type, arrays of strings included) with its value's bytes as the file
 * has them, so a model saved from a base carries the base's metadata unchanged. EINVAL for a key holding
 * a NUL byte (the writer's keys are C strings). */
PeftcStatus gguf_writer_copy_kv(GgufWriter *w, const GgufKV *kv);

/* F32 tensor of n_dims (1..4) dimensions ne (each >= 1). EINVAL for a bad shape or a name used twice. */
PeftcStatus gguf_writer_add_f32(GgufWriter *w, const char *name, int n_dims, const int64_t *ne, const float *data);
/* real_t values stored as `type`: GGML_F32, GGML_F16 or GGML_BF16 (rounded to nearest even). */
PeftcStatus gguf_writer_add_real(GgufWriter *w, const char *name, GgmlType type, int n_dims, const int64_t *ne,
                                 const real_t *data);
/* nbytes of already-encoded data of any ggml type whose block size is known; nbytes must equal the
 * size that type and shape take (ne[0] a multiple of the block size). */
PeftcStatus gguf_writer_add_raw(GgufWriter *w, const char *name, GgmlType type, int n_dims, const int64_t *ne,
                                const void *data, size_t nbytes);

/* A tensor whose bytes are given only while the file is written (gguf_writer_write_filled), so a large
 * model is never held twice in memory. */
PeftcStatus gguf_writer_add_deferred(GgufWriter *w, const char *name, GgmlType type, int n_dims, const int64_t *ne);
/* The encoded bytes (nbytes, as `type` and the shape take) of deferred tensor `name`. */
typedef PeftcStatus (*GgufFill)(void *user, const char *name, GgmlType type, void *dst, size_t nbytes);
/* n real_t values as F32, F16 or BF16 little-endian bytes (4 or 2 each), as gguf_writer_add_real stores them. */
void gguf_encode_real(GgmlType type, const real_t *v, size_t n, uint8_t *out);

/* Writes everything added so far to path. EIO naming the path on failure (no partial file is left);
 * EINVAL when a tensor was deferred. */
PeftcStatus gguf_writer_write(GgufWriter *w, const char *path);
/* The same, deferred tensors filled by fill one at a time in file order, through a buffer of one
 * tensor's size; a fill's failure is returned and leaves no file. */
PeftcStatus gguf_writer_write_filled(GgufWriter *w, const char *path, GgufFill fill, void *user);

#endif
