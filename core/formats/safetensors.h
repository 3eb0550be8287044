/* safetensors: reading (memory-mapped, validated as the reference parser does) and writing.
 *
 * Layout: u64 little-endian N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__":
 * {str: str}}, then the data buffer; offsets are relative to the buffer. */
#ifndef PEFTC_SAFETENSORS_H
#define PEFTC_SAFETENSORS_H

#include <stdint.h>

#include "core/base/mapped.h"
#include "core/base/real.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

typedef enum { ST_F32 = 0, ST_F16, ST_BF16, ST_F64, ST_I32, ST_I64, ST_OTHER } StDType;

typedef struct {
    char name[160];
    StDType dtype;
    char dtype_name[16]; /* as written in the file, e.g. "BF16" */
    Shape shape;
    const uint8_t *data; /* inside the map */
    uint64_t nbytes;
} StTensor;

typedef struct {
    MappedFile file;
    StTensor *tensors; int n_tensors;
    char **meta_keys, **meta_vals; int n_meta; /* __metadata__ */
} StFile;

/* Validates the header (size bound, JSON, dtypes, shapes, offsets tile the buffer without gaps or
 * overlaps, numel * dtype size == span, file ends at the last tensor, no duplicate names). */
PeftcStatus st_open(StFile *f, const char *path);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);
/* out(numel) = tensor converted to real_t from F32/F16/BF16/F64; EFORMAT naming file and tensor for
 * other dtypes or when `expect` (if non-NULL) differs from the tensor's shape. */
PeftcStatus st_read_real(const StFile *f, const StTensor *t, const Shape *expect, real_t *out);

/* out(numel) = an I32 tensor; EFORMAT naming file and tensor for another dtype or shape. */
PeftcStatus st_read_i32(const StFile *f, const StTensor *t, const Shape *expect, int32_t *out);

/* Writer: add tensors (the data is copied or converted at add time), then st_write(). */
typedef struct StWriter StWriter;
StWriter *st_writer_new(void);
/* `dtype` of the stored tensor: ST_F32, ST_F16 or ST_BF16, converted from real_t values. */
PeftcStatus st_writer_add(StWriter *w, const char *name, StDType dtype, const Shape *shape, const real_t *data);
/* An I32 tensor, stored as given (index arrays such as sparse patterns). */
PeftcStatus st_writer_add_i32(StWriter *w, const char *name, const Shape *shape, const int32_t *data);
PeftcStatus st_writer_meta(StWriter *w, const char *key, const char *value);
/* Writes `path` atomically (path.tmp, fsync, rename); header padded to 8 bytes, tensors sorted by name. */
PeftcStatus st_write(StWriter *w, const char *path);
void st_writer_free(StWriter *w);

const char *st_dtype_name(StDType t);

#endif
