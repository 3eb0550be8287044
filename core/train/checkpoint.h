/* Training checkpoints: one HDF5 file per saved step, readable with h5py or h5dump.
 *
 *   /                      attributes: format = "peftc-checkpoint", version = 1, step, cursor (the
 *                          sampler's position in global samples, so any world size resumes it), seed,
 *                          global_batch (sequences per step; a resume must keep it), world (ranks
 *                          that wrote it; informational), method, base_model (path),
 *                          base_hash ("crc32:XXXXXXXX size:N" of the base file), config (resolved YAML)
 *   /arena                 attributes: names (string per tensor), offsets, numel, rank, dims (4 per
 *                          tensor), precision ("float32" | "float64")
 *   /arena/params, m, v    the trainable arena's flat buffers (numel elements each, alignment gaps
 *                          included): values and AdamW's moments
 *   /state/<name>          extra per-method state (RoSA masks, EigenLoRAx basis hash, ...): int32, int64,
 *                          uint8 or real arrays, each whole
 *
 * Every dataset carries a `crc32` attribute over its raw bytes; reading recomputes it and names the
 * dataset that fails. The file is written with HDF5's newest format, whose metadata blocks carry their
 * own checksums, so a flipped byte anywhere is an error rather than a silently different value.
 *
 * Writing goes to PATH.tmp, is fsynced, renamed over PATH, and the folder is fsynced: a reader sees
 * the old file or the complete new one. */
#ifndef PEFTC_CHECKPOINT_H
#define PEFTC_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/nn/arena.h"
#include "core/base/status.h"

#define CKPT_VERSION 1

typedef struct {
    int64_t step;        /* optimizer steps completed */
    int64_t cursor;      /* sampler cursor, in global samples */
    uint64_t seed;       /* train.seed */
    int64_t global_batch; /* sequences per optimizer step (micro_batch x accum x world) */
    int world;           /* ranks of the run that wrote it */
    char method[32];
    char base_model[512];
    char base_hash[64];
    char *config;        /* resolved YAML; owned (malloc) after ckpt_read_meta, borrowed when writing */
} CkptMeta;

typedef enum { CKPT_I32, CKPT_I64, CKPT_U8, CKPT_REAL } CkptKind;

/* Bytes per element of a kind. */
size_t ckpt_kind_size(CkptKind k);

/* One extra dataset under /state. */
typedef struct {
    const char *name;    /* e.g. "rosa/layers.0.self_attn.q_proj/row_ptr" (groups are created) */
    CkptKind kind;
    const void *data;    /* (n) host memory */
    size_t n;
} CkptBlob;

/* Writes meta, the arena (downloaded from its device) and the blobs to path atomically. */
PeftcStatus ckpt_write(const char *path, const CkptMeta *meta, const Arena *a, const CkptBlob *blobs, int n_blobs);

/* Opens path and reads its root attributes into *meta (meta->config must be freed with ckpt_meta_free).
 * Fails with EFORMAT naming the file when it is not a readable checkpoint. */
PeftcStatus ckpt_read_meta(const char *path, CkptMeta *meta);
void ckpt_meta_free(CkptMeta *meta);

/* Reads the arena's params, m and v into a (uploading to its device) after checking that the
 * registry (names, shapes, offsets, precision) is the same, and every dataset's CRC. Errors name the
 * file, the tensor or dataset, and what was expected. */
PeftcStatus ckpt_read_arena(const char *path, Arena *a);

/* Reads /state/<name> into a fresh malloc'ed buffer (*out, *n elements of kind). ENOENT-like misses
 * are EFORMAT naming the dataset. CRC checked. */
PeftcStatus ckpt_read_blob(const char *path, const char *name, CkptKind kind, void **out, size_t *n);

/* Checks every dataset's CRC and the metadata; the check `resume: auto` runs before trusting a file. */
PeftcStatus ckpt_verify(const char *path);

/* "crc32:XXXXXXXX size:N" of a file's bytes: the base model's identity. */
PeftcStatus ckpt_file_hash(const char *path, char *out, size_t cap);

#endif
