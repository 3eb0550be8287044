#include "adapters/gmt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const gmt_update_names[] = {[GMT_ZERO] = "zero", [GMT_SKIP] = "skip", NULL};

struct Gmt {
    GmtConfig cfg;
    size_t numel;     /* of the arena the mask was made for */
    int n_entries;
    uint8_t *keep;    /* (numel) 1 = kept this step */
    size_t *saved_at; /* (n_entries) where each tensor's masked entries start in saved_* (skip) */
    real_t *saved_p, *saved_m, *saved_v; /* (sum of masked counts) skip only */
};

/* |g| as an unsigned integer that orders exactly like the magnitude: the IEEE bit pattern with the
 * sign cleared (+0 and -0 coincide, NaN sorts above infinity). Integer keys make the selection a total
 * order, so no gradient value can derail it. */
#ifdef PEFTC_REAL_DOUBLE
typedef uint64_t MagKey;
#else
typedef uint32_t MagKey;
#endif
_Static_assert(sizeof(MagKey) == sizeof(real_t), "MagKey must be real_t's bit pattern");
enum { KEY_BITS = 8 * sizeof(MagKey), RADIX_BITS = 11 };

static inline MagKey mag_key(real_t g) {
    MagKey k;
    memcpy(&k, &g, sizeof k);
    return k & ~((MagKey)1 << (KEY_BITS - 1));
}

int64_t gmt_kept(const GmtConfig *cfg, int64_t numel) {
    if (numel <= 0) return 0;
    int64_t masked = (int64_t)floor(cfg->mask_ratio * (double)numel);
    /* mask_ratio < 1 already keeps one; the clamp holds whatever the rounding of large numel. */
    if (masked > numel - 1) masked = numel - 1;
    if (masked < 0) masked = 0;
    return numel - masked;
}

/* The k-th largest key of g(n), 1 <= k <= n, by radix selection from the top digit down (11 bits a
 * pass, three passes for float): O(n), reads g only, no scratch copy of the tensor. *n_above receives
 * how many keys are strictly larger. */
static MagKey kth_largest(const real_t *g, size_t n, size_t k, size_t *n_above) {
    MagKey prefix = 0, prefix_mask = 0;
    size_t above = 0;
    size_t count[1 << RADIX_BITS];
    for (int hi = KEY_BITS; hi > 0;) {
        int width = hi < RADIX_BITS ? hi : RADIX_BITS, shift = hi - width;
        MagKey digit_mask = ((MagKey)1 << width) - 1;
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++) {
            MagKey key = mag_key(g[i]);
            if ((key & prefix_mask) == prefix) count[(key >> shift) & digit_mask]++;
        }
        /* The keys sharing the prefix number at least k - above, so this stops at a digit. */
        size_t d = (size_t)digit_mask;
        while (above + count[d] < k) above += count[d--];
        prefix |= (MagKey)d << shift;
        prefix_mask |= digit_mask << shift;
        hi = shift;
    }
    *n_above = above;
    return prefix;
}

/* Keeps the k entries of g(n) that rank first by |g| descending, then index ascending; zeroes the
 * others and records the choice in keep(n). */
static void mask_tensor(real_t *g, uint8_t *keep, size_t n, size_t k) {
    if (k >= n) {
        memset(keep, 1, n);
        return;
    }
    size_t above;
    MagKey t = kth_largest(g, n, k, &above);
    size_t ties = k - above; /* entries equal to the threshold still to keep, lowest index first */
    for (size_t i = 0; i < n; i++) {
        MagKey key = mag_key(g[i]);
        int kept = key > t || (key == t && ties > 0);
        if (key == t && kept) ties--;
        keep[i] = (uint8_t)kept;
        if (!kept) g[i] = 0;
    }
}

/* Copies (to_saved) or restores the parameter and moments of entry e's masked elements. */
static void swap_masked(Gmt *g, Arena *a, int e, int to_saved) {
    const ArenaEntry *en = &a->entries[e];
    size_t o = en->offset, s = g->saved_at[e];
    const uint8_t *keep = g->keep + o;
    real_t *p = a->params + o, *m = a->m + o, *v = a->v + o;
    for (size_t i = 0; i < en->numel; i++) {
        if (keep[i]) continue;
        if (to_saved) {
            g->saved_p[s] = p[i];
            g->saved_m[s] = m[i];
            g->saved_v[s] = v[i];
        } else {
            p[i] = g->saved_p[s];
            m[i] = g->saved_m[s];
            v[i] = g->saved_v[s];
        }
        s++;
    }
}

/* The mask is made and applied by host code reading the arena directly. */
static PeftcStatus require_cpu(const Arena *a) {
    if (a->be->device == DEV_CPU) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_EINVAL, "gmt runs on the CPU backend only for now (the arena is on backend '%s'); "
                                   "set train.device=cpu",
                     a->be->name);
}

static PeftcStatus check_arena(const Gmt *g, const Arena *a) {
    PEFTC_TRY(require_cpu(a));
    if (a->numel != g->numel || a->n_entries != g->n_entries)
        return PEFTC_ERR(PEFTC_ESTATE, "gmt: the arena has %d tensors (%zu values), the mask was made for %d (%zu)",
                         a->n_entries, a->numel, g->n_entries, g->numel);
    return PEFTC_OK;
}

static PeftcStatus gmt_before_update(void *user, Arena *a) {
    Gmt *g = user;
    PEFTC_TRY(check_arena(g, a));
    /* Tensors are independent; the CPU backend is idle between the reduce and the optimizer. */
    #pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < a->n_entries; e++) {
        const ArenaEntry *en = &a->entries[e];
        mask_tensor(a->grads + en->offset, g->keep + en->offset, en->numel,
                    (size_t)gmt_kept(&g->cfg, (int64_t)en->numel));
        if (g->cfg.update == GMT_SKIP) swap_masked(g, a, e, 1);
    }
    return PEFTC_OK;
}

static void gmt_after_update(void *user, Arena *a) {
    Gmt *g = user;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < a->n_entries; e++) swap_masked(g, a, e, 0);
}

GradHook gmt_hook(Gmt *g) {
    GradHook h = {.user = g, .before_update = gmt_before_update};
    if (g->cfg.update == GMT_SKIP) h.after_update = gmt_after_update;
    return h;
}

static PeftcStatus check_config(const GmtConfig *cfg) {
    if (!(cfg->mask_ratio >= 0 && cfg->mask_ratio < 1))
        return PEFTC_ERR(PEFTC_EINVAL, "gmt.mask_ratio must be in [0, 1) (the fraction of each tensor masked), got %g",
                         cfg->mask_ratio);
    if (cfg->update != GMT_ZERO && cfg->update != GMT_SKIP)
        return PEFTC_ERR(PEFTC_EINVAL, "gmt.masked_update must be zero or skip, got value %d", (int)cfg->update);
    return PEFTC_OK;
}

/* Room for skip's saved values: each tensor masks the same count every step. */
static PeftcStatus alloc_saved(Gmt *g, const Arena *a) {
    g->saved_at = calloc((size_t)a->n_entries + 1, sizeof *g->saved_at);
    if (!g->saved_at) return PEFTC_ERR(PEFTC_ENOMEM, "gmt: out of memory for the skip offsets");
    size_t total = 0;
    for (int e = 0; e < a->n_entries; e++) {
        g->saved_at[e] = total;
        int64_t n = (int64_t)a->entries[e].numel;
        total += (size_t)(n - gmt_kept(&g->cfg, n));
    }
    size_t bytes = (total ? total : 1) * sizeof(real_t);
    g->saved_p = malloc(bytes);
    g->saved_m = malloc(bytes);
    g->saved_v = malloc(bytes);
    if (!g->saved_p || !g->saved_m || !g->saved_v)
        return PEFTC_ERR(PEFTC_ENOMEM, "gmt: out of memory saving %zu masked values (skip keeps 3 copies)", total);
    return PEFTC_OK;
}

PeftcStatus gmt_create(Gmt **out, const Arena *a, const GmtConfig *cfg) {
    *out = NULL;
    PEFTC_TRY(check_config(cfg));
    if (!a->finalized) return PEFTC_ERR(PEFTC_ESTATE, "gmt: the arena must be finalized first");
    PEFTC_TRY(require_cpu(a));
    Gmt *g = calloc(1, sizeof *g);
    if (!g) return PEFTC_ERR(PEFTC_ENOMEM, "gmt: out of memory");
    g->cfg = *cfg;
    g->numel = a->numel;
    g->n_entries = a->n_entries;
    g->keep = malloc(a->numel ? a->numel : 1);
    PeftcStatus st = g->keep ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "gmt: out of memory for a %zu-entry mask", a->numel);
    if (st == PEFTC_OK) memset(g->keep, 1, a->numel);
    if (st == PEFTC_OK && cfg->update == GMT_SKIP) st = alloc_saved(g, a);
    if (st != PEFTC_OK) {
        gmt_free(g);
        return st;
    }
    *out = g;
    return PEFTC_OK;
}

void gmt_free(Gmt *g) {
    if (!g) return;
    free(g->keep);
    free(g->saved_at);
    free(g->saved_p);
    free(g->saved_m);
    free(g->saved_v);
    free(g);
}

const uint8_t *gmt_keep_mask(const Gmt *g) { return g->keep; }
