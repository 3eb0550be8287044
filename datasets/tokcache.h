/* Tokenized SFT data and its on-disk cache.
 *
 * TokData is what sft.c builds from a data file or built-in task: per split, every kept example's
 * token ids and loss mask in one array, addressed by offsets, with the generation prompt and reference
 * answer used for exact-match evaluation. The cache stores it as <cache_dir>/<key as 16 hex>.tok, where
 * the key hashes everything the tokens depend on (sft.c decides what). A file is trusted only after its
 * magic, format version, key, sizes, a checksum over all its bytes and every offset and token id have
 * been checked; anything else is treated as absent and rebuilt. Writes go to a unique temporary file
 * renamed into place, so concurrent ranks never see a half-written cache. */
#ifndef PEFTC_TOKCACHE_H
#define PEFTC_TOKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

/* Bump when the file layout or what sft.c stores changes. */
enum { TOKCACHE_VERSION = 1 };

typedef struct {
    int64_t n;             /* examples */
    int64_t *start;        /* (n) example i is ids[start[i] .. start[i] + len[i]) */
    int32_t *len;          /* (n) >= 1; at most seq_len + 1 (inputs plus the last target) */
    int64_t *prompt_off;   /* (n) generation prompt at pids[prompt_off[i]..], or -1: ids[start[i]..] */
    int32_t *prompt_len;   /* (n) */
    int64_t *answer_off;   /* (n) NUL-terminated reference answer at answers[answer_off[i]], or -1 */
    int64_t n_ids;
    int32_t *ids;          /* (n_ids) */
    uint8_t *mask;         /* (n_ids) 1 = trained as a target; NULL = every token (plain text) */
    int64_t n_pids;
    int32_t *pids;         /* (n_pids) prompts that are not a prefix of their example */
    int64_t n_answers;
    char *answers;         /* (n_answers) */
} TokSplit;

typedef struct {
    int plain;             /* 1: plain-text windows, mask NULL and no answers */
    TokSplit split[2];     /* indexed by Split */
    int64_t dropped, truncated, bad_lines;
} TokData;

void tokdata_free(TokData *d);

/* A streaming 64-bit hash (word at a time, splitmix-finalised); the same bytes give the same value
 * however they are split across updates. */
typedef struct {
    uint64_t h, total;
    unsigned char tail[8];
    int n_tail;
} TcHash;

void tc_hash_init(TcHash *s, uint64_t seed);
void tc_hash_update(TcHash *s, const void *p, size_t n);
void tc_hash_u64(TcHash *s, uint64_t v);
void tc_hash_str(TcHash *s, const char *str); /* length-prefixed, so ("ab","c") != ("a","bc") */
uint64_t tc_hash_final(const TcHash *s);

/* Hashes a file's size and bytes, read in chunks; `what` names the setting in errors ("data.path"). */
PeftcStatus tc_hash_file(TcHash *s, const char *path, const char *what);

/* "<dir>/<key as 16 hex digits>.tok" */
void tokcache_path(const char *dir, uint64_t key, char *out, size_t cap);
/* 1 and *out filled when a valid cache for `key` exists (token ids checked against [0, vocab)); 0 with
 * *out empty when it is absent, stale or corrupt. */
int tokcache_load(const char *dir, uint64_t key, int vocab, TokData *out);
/* Creates dir (and parents) if needed; EIO naming data.cache_dir when it cannot be written. */
PeftcStatus tokcache_save(const char *dir, uint64_t key, const TokData *d);

#endif
