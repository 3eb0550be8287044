/* GGUF reader (versions 2 and 3): header, metadata key/values, tensor infos, tensor data.
 *
 * The file is memory-mapped; tensor data pointers point into the map. Every structural field is
 * checked against the file size before use, so a truncated or corrupted file yields EFORMAT with a
 * message naming the file, the key or tensor, and what was expected — never a crash. */
#ifndef PEFTC_GGUF_H
#define PEFTC_GGUF_H

#include <stdint.h>

#include "core/base/ggml_types.h"
#include "core/base/mapped.h"
#include "core/base/status.h"

/* GGUF metadata value types (the numbers are the format's). */
typedef enum {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6,
    GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12
} GgufType;

typedef struct {
    const char *ptr; /* not NUL-terminated: points into the map */
    uint64_t len;
} GgufStr;

typedef struct {
    GgufStr key;
    GgufType type;
    GgufType elem_type; /* for GGUF_ARRAY */
    uint64_t count;     /* for GGUF_ARRAY: number of elements */
    const uint8_t *raw; /* the value (for arrays: the first element) inside the map */
    uint64_t nbytes;    /* bytes of the value from raw on (for arrays: every element, string lengths
                           included), so a key can be copied without decoding it */
} GgufKV;

typedef struct {
    char name[128];
    int n_dims;
    int64_t ne[4];         /* ggml order: ne[0] is the fastest-varying (row length) dimension */
    GgmlType type;
    uint64_t offset;       /* relative to the data section */
    const uint8_t *data;   /* inside the map */
    uint64_t nbytes;
} GgufTensor;

typedef struct {
    MappedFile file;
    uint32_t version;
    uint64_t alignment;
    GgufKV *kv; int64_t n_kv;
    GgufTensor *tensors; int64_t n_tensors;
} GgufFile;

/* Checks: magic, version 2 or 3, counts the file can hold, every string, array and value inside the
 * file, known value types (no nested arrays), unique keys, general.alignment a u32 power of two, tensor
 * names < 128 bytes and unique, 0..4 dimensions whose product does not overflow, known ggml types with
 * rows a multiple of the block size, offsets aligned, data inside the file and not overlapping.
 * On failure g is left zeroed (nothing to close). */
PeftcStatus gguf_open(GgufFile *g, const char *path);
void gguf_close(GgufFile *g);

const GgufKV *gguf_find(const GgufFile *g, const char *key);
const GgufTensor *gguf_tensor(const GgufFile *g, const char *name);

/* Typed metadata access. Missing key -> EFORMAT naming the key unless a default applies; a key of the
 * wrong type -> EFORMAT naming the key, the type found and the type expected. Integer getters accept any
 * integer type whose value fits; gguf_get_f32 accepts F32 and F64; a bool is true when its byte is not 0. */
PeftcStatus gguf_get_u32(const GgufFile *g, const char *key, uint32_t *out);
PeftcStatus gguf_get_f32(const GgufFile *g, const char *key, float *out);
PeftcStatus gguf_get_bool(const GgufFile *g, const char *key, int *out);
PeftcStatus gguf_get_str(const GgufFile *g, const char *key, GgufStr *out);
/* Same, but *out = dflt when the key is absent. */
PeftcStatus gguf_get_u32_or(const GgufFile *g, const char *key, uint32_t dflt, uint32_t *out);
PeftcStatus gguf_get_f32_or(const GgufFile *g, const char *key, float dflt, float *out);
PeftcStatus gguf_get_bool_or(const GgufFile *g, const char *key, int dflt, int *out);

/* Array of strings: *items is a new array of *count views into the map; the caller frees it. */
PeftcStatus gguf_get_str_array(const GgufFile *g, const char *key, GgufStr **items, uint64_t *count);
/* Array of 32-bit integers (I32 or U32) copied into a new int32 array the caller frees. */
PeftcStatus gguf_get_i32_array(const GgufFile *g, const char *key, int32_t **items, uint64_t *count);


#endif
