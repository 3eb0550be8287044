/* The tokenized cache file, in native byte order (a cache is local to the machine that wrote it; a
 * foreign byte order fails the version check and is rebuilt):
 *   "PEFTCTOK" | u64 version, plain, key, dropped, truncated, bad_lines
 *   per split: u64 n, n_ids, n_pids, n_answers, has_mask
 *              start(i64 n) len(i32 n) prompt_off(i64 n) prompt_len(i32 n) answer_off(i64 n)
 *              ids(i32 n_ids) [mask(u8 n_ids)] pids(i32 n_pids) answers(n_answers)
 *   u64 checksum of every byte before it */
#include "datasets/tokcache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/rng.h"

static const char MAGIC[8] = {'P', 'E', 'F', 'T', 'C', 'T', 'O', 'K'};
static const uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full;

/* ---- hashing ---- */

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t round64(uint64_t h, uint64_t w) { return rotl(h ^ (w * P2), 31) * P1; }
static uint64_t load64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

void tc_hash_init(TcHash *s, uint64_t seed) { *s = (TcHash){.h = seed ^ P1}; }

void tc_hash_update(TcHash *s, const void *p, size_t n) {
    const unsigned char *b = p;
    s->total += n;
    if (s->n_tail) { /* finish a word begun by earlier updates */
        size_t k = 8 - (size_t)s->n_tail < n ? 8 - (size_t)s->n_tail : n;
        memcpy(s->tail + s->n_tail, b, k);
        s->n_tail += (int)k;
        b += k;
        n -= k;
        if (s->n_tail < 8) return;
        s->h = round64(s->h, load64(s->tail));
        s->n_tail = 0;
    }
    for (; n >= 8; b += 8, n -= 8) s->h = round64(s->h, load64(b));
    memcpy(s->tail, b, n);
    s->n_tail = (int)n;
}

void tc_hash_u64(TcHash *s, uint64_t v) { tc_hash_update(s, &v, sizeof v); }

void tc_hash_str(TcHash *s, const char *str) {
    size_t n = str ? strlen(str) : 0;
    tc_hash_u64(s, n);
    tc_hash_update(s, str ? str : "", n);
}

uint64_t tc_hash_final(const TcHash *s) {
    uint64_t h = s->h;
    if (s->n_tail) {
        unsigned char w[8] = {0};
        memcpy(w, s->tail, (size_t)s->n_tail);
        h = round64(h, load64(w));
    }
    return rng_mix64(h ^ s->total);
}

PeftcStatus tc_hash_file(TcHash *s, const char *path, const char *what) {
    enum { CHUNK = 1 << 20 };
    FILE *f = fopen(path, "rb");
    if (!f) return PEFTC_ERR(PEFTC_EIO, "%s: cannot open %s: %s", what, path, strerror(errno));
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory hashing %s", what, path);
    }
    size_t got, total = 0;
    while ((got = fread(buf, 1, CHUNK, f)) > 0) {
        tc_hash_update(s, buf, got);
        total += got;
    }
    int failed = ferror(f);
    free(buf);
    fclose(f);
    if (failed) return PEFTC_ERR(PEFTC_EIO, "%s: error reading %s", what, path);
    tc_hash_u64(s, total);
    return PEFTC_OK;
}

/* ---- data ---- */

static void split_free(TokSplit *s) {
    free(s->start);
    free(s->len);
    free(s->prompt_off);
    free(s->prompt_len);
    free(s->answer_off);
    free(s->ids);
    free(s->mask);
    free(s->pids);
    free(s->answers);
    memset(s, 0, sizeof *s);
}

void tokdata_free(TokData *d) {
    if (!d) return;
    split_free(&d->split[0]);
    split_free(&d->split[1]);
    memset(d, 0, sizeof *d);
}

void tokcache_path(const char *dir, uint64_t key, char *out, size_t cap) {
    snprintf(out, cap, "%s/%016llx.tok", dir, (unsigned long long)key);
}

/* ---- writing ---- */

typedef struct {
    FILE *f;
    TcHash h;
    int failed;
} Writer;

static void put(Writer *w, const void *p, size_t n) {
    if (!n || w->failed) return;
    if (fwrite(p, 1, n, w->f) != n) w->failed = 1;
    tc_hash_update(&w->h, p, n);
}

static void put_u64(Writer *w, uint64_t v) { put(w, &v, sizeof v); }

/* A conversation split always has a mask section (empty with no ids), so the reader can insist on it. */
static void put_split(Writer *w, const TokSplit *s, int plain) {
    size_t n = (size_t)s->n;
    const uint64_t counts[] = {(uint64_t)s->n, (uint64_t)s->n_ids, (uint64_t)s->n_pids, (uint64_t)s->n_answers,
                               (uint64_t)!plain};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) put_u64(w, counts[i]);
    put(w, s->start, n * sizeof *s->start);
    put(w, s->len, n * sizeof *s->len);
    put(w, s->prompt_off, n * sizeof *s->prompt_off);
    put(w, s->prompt_len, n * sizeof *s->prompt_len);
    put(w, s->answer_off, n * sizeof *s->answer_off);
    put(w, s->ids, (size_t)s->n_ids * sizeof *s->ids);
    if (!plain) put(w, s->mask, (size_t)s->n_ids);
    put(w, s->pids, (size_t)s->n_pids * sizeof *s->pids);
    put(w, s->answers, (size_t)s->n_answers);
}

static void put_all(Writer *w, uint64_t key, const TokData *d) {
    put(w, MAGIC, sizeof MAGIC);
    const uint64_t head[] = {TOKCACHE_VERSION,      (uint64_t)d->plain,     key,
                             (uint64_t)d->dropped, (uint64_t)d->truncated, (uint64_t)d->bad_lines};
    for (size_t i = 0; i < sizeof head / sizeof *head; i++) put_u64(w, head[i]);
    put_split(w, &d->split[0], d->plain);
    put_split(w, &d->split[1], d->plain);
    uint64_t sum = tc_hash_final(&w->h);
    put(w, &sum, sizeof sum);
}

/* mkdir -p */
static int make_dirs(const char *dir) {
    char p[1024];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return errno = ENAMETOOLONG, 0;
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c) continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) return 0;
        if (!(*c = saved)) break;
    }
    return 1;
}

PeftcStatus tokcache_save(const char *dir, uint64_t key, const TokData *d) {
    if (!make_dirs(dir)) return PEFTC_ERR(PEFTC_EWRITE, "data.cache_dir: cannot create %s: %s", dir, strerror(errno));
    char final[1100], tmp[1200];
    tokcache_path(dir, key, final, sizeof final);
    /* pid + time + an address: unique among ranks and runs writing the same key at once */
    uint64_t salt = rng_key(rng_key((uint64_t)getpid(), (uint64_t)time(NULL)), (uint64_t)(uintptr_t)&salt);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%08llx", final, (long)getpid(), (unsigned long long)(salt & 0xffffffffu));
    Writer w = {.f = fopen(tmp, "wb")};
    if (!w.f) return PEFTC_ERR(PEFTC_EWRITE, "data.cache_dir: cannot write %s: %s", tmp, strerror(errno));
    tc_hash_init(&w.h, 0);
    put_all(&w, key, d);
    int err = w.failed || fflush(w.f) != 0 || fsync(fileno(w.f)) != 0;
    int saved = errno;
    if (fclose(w.f) != 0 && !err) err = 1, saved = errno;
    if (!err && rename(tmp, final) != 0) err = 1, saved = errno;
    if (!err) return PEFTC_OK;
    unlink(tmp);
    return PEFTC_ERR(PEFTC_EWRITE, "data.cache_dir: cannot write %s: %s", final, strerror(saved));
}

/* ---- reading: every count and offset is checked before use; any doubt means "no cache" ---- */

typedef struct {
    const unsigned char *p;
    size_t n, pos;
    int bad;
} Reader;

static uint64_t get_u64(Reader *r) {
    uint64_t v = 0;
    if (r->bad || r->n - r->pos < sizeof v) return r->bad = 1, 0;
    memcpy(&v, r->p + r->pos, sizeof v);
    r->pos += sizeof v;
    return v;
}

static void *get_array(Reader *r, uint64_t count, size_t elem) {
    if (r->bad || count > (r->n - r->pos) / elem) return r->bad = 1, NULL;
    size_t bytes = (size_t)count * elem;
    void *a = malloc(bytes ? bytes : 1);
    if (!a) return r->bad = 1, NULL;
    memcpy(a, r->p + r->pos, bytes);
    r->pos += bytes;
    return a;
}

static void get_split(Reader *r, TokSplit *s, int plain) {
    uint64_t c[5];
    for (int i = 0; i < 5; i++) c[i] = get_u64(r);
    for (int i = 0; i < 4; i++) r->bad |= c[i] > r->n; /* no count can exceed the bytes holding it */
    if (r->bad || c[4] != (uint64_t)!plain) return (void)(r->bad = 1);
    s->n = (int64_t)c[0];
    s->n_ids = (int64_t)c[1];
    s->n_pids = (int64_t)c[2];
    s->n_answers = (int64_t)c[3];
    s->start = get_array(r, c[0], sizeof *s->start);
    s->len = get_array(r, c[0], sizeof *s->len);
    s->prompt_off = get_array(r, c[0], sizeof *s->prompt_off);
    s->prompt_len = get_array(r, c[0], sizeof *s->prompt_len);
    s->answer_off = get_array(r, c[0], sizeof *s->answer_off);
    s->ids = get_array(r, c[1], sizeof *s->ids);
    if (!plain) s->mask = get_array(r, c[1], 1);
    s->pids = get_array(r, c[2], sizeof *s->pids);
    s->answers = get_array(r, c[3], 1);
}

static int ids_ok(const int32_t *ids, int64_t n, int vocab) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) return 0;
    return 1;
}

static int example_ok(const TokSplit *s, int64_t i, int plain) {
    int64_t st = s->start[i], len = s->len[i], po = s->prompt_off[i], pl = s->prompt_len[i], ao = s->answer_off[i];
    if (st < 0 || len < 1 || st > s->n_ids - len || pl < 0) return 0;
    if (po == -1 ? pl > len : (plain || po < 0 || po > s->n_pids - pl)) return 0;
    return ao == -1 || (!plain && ao >= 0 && ao < s->n_answers);
}

static int split_ok(const TokSplit *s, int plain, int vocab) {
    for (int64_t i = 0; i < s->n; i++)
        if (!example_ok(s, i, plain)) return 0;
    if (s->n_answers > 0 && s->answers[s->n_answers - 1] != '\0') return 0; /* every answer ends */
    if (s->mask)
        for (int64_t i = 0; i < s->n_ids; i++)
            if (s->mask[i] > 1) return 0;
    return ids_ok(s->ids, s->n_ids, vocab) && ids_ok(s->pids, s->n_pids, vocab);
}

static int parse(const unsigned char *buf, size_t size, uint64_t key, int vocab, TokData *out) {
    TcHash h;
    tc_hash_init(&h, 0);
    tc_hash_update(&h, buf, size - 8);
    if (tc_hash_final(&h) != load64(buf + size - 8) || memcmp(buf, MAGIC, sizeof MAGIC) != 0) return 0;
    Reader r = {.p = buf, .n = size - 8, .pos = sizeof MAGIC};
    uint64_t version = get_u64(&r), plain = get_u64(&r), k = get_u64(&r);
    out->dropped = (int64_t)get_u64(&r);
    out->truncated = (int64_t)get_u64(&r);
    out->bad_lines = (int64_t)get_u64(&r);
    if (r.bad || version != TOKCACHE_VERSION || plain > 1 || k != key) return 0;
    if (out->dropped < 0 || out->truncated < 0 || out->bad_lines < 0) return 0;
    out->plain = (int)plain;
    get_split(&r, &out->split[0], out->plain);
    get_split(&r, &out->split[1], out->plain);
    if (r.bad || r.pos != r.n) return 0;
    return split_ok(&out->split[0], out->plain, vocab) && split_ok(&out->split[1], out->plain, vocab);
}

/* The whole file in memory, or NULL. */
static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    unsigned char *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && (buf = malloc((size_t)st.st_size))) {
        *size = (size_t)st.st_size;
        if (fread(buf, 1, *size, f) != *size) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

int tokcache_load(const char *dir, uint64_t key, int vocab, TokData *out) {
    memset(out, 0, sizeof *out);
    char path[1100];
    tokcache_path(dir, key, path, sizeof path);
    size_t size = 0;
    unsigned char *buf = slurp(path, &size);
    int ok = buf && size >= sizeof MAGIC + 7 * 8 && parse(buf, size, key, vocab, out);
    free(buf);
    if (!ok) tokdata_free(out);
    return ok;
}
