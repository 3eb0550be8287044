/* Token sampling: greedy, or temperature with top-k and nucleus (top-p) filters, driven by
 * counter-based draws so that (seed, row, step) fixes every choice whatever the batch or thread count.
 *
 * The filters keep a prefix of the vocabulary in the order (probability descending, id ascending).
 * Sorting all V ids every token would cost milliseconds at V = 50k, so the ids within GEN_CUT of the
 * largest weight are sorted first; that set is itself a prefix of the order, and when it already holds
 * the kept prefix the rest of the vocabulary cannot change the result. */
#include <math.h>
#include <stdlib.h>

#include "core/models/generate.h"
#include "core/base/rng.h"

/* Candidate weights relative to the largest (exp of the scaled logit gap): below this a token can only
 * matter for very flat distributions, which fall back to sorting everything. */
#define GEN_CUT 1e-6
/* rng_key purpose tag of sampling draws ("SAMP"), so they never share a stream with other draws. */
#define GEN_SAMPLE_PURPOSE 0x53414D50u

typedef struct {
    double w; /* unnormalised probability exp((logit - max) / T) */
    int id;
} Cand;

static int argmax(const real_t *x, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int cand_cmp(const void *pa, const void *pb) {
    const Cand *a = pa, *b = pb;
    if (a->w != b->w) return a->w < b->w ? 1 : -1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Collects the ids with weight >= cut into c; returns how many and their total weight in *mass. */
static int collect(Cand *c, const real_t *logits, int V, double mx, double inv_t, double cut, double *mass) {
    int n = 0;
    double s = 0;
    for (int i = 0; i < V; i++) {
        double w = exp(((double)logits[i] - mx) * inv_t);
        if (w < cut) continue;
        c[n++] = (Cand){w, i};
        s += w;
    }
    *mass = s;
    return n;
}

/* Length of the kept prefix of the sorted candidates c(n): the top k, then the smallest prefix whose
 * weight reaches top_p of the top-k weight (total = that weight when k covers the vocabulary). */
static int kept_prefix(const Cand *c, int n, int k, double top_p, double total, int V) {
    int m = k < n ? k : n;
    if (k < V) {
        total = 0;
        for (int i = 0; i < m; i++) total += c[i].w;
    }
    if (top_p >= 1) return m;
    double acc = 0;
    for (int i = 0; i < m; i++) {
        acc += c[i].w;
        if (acc >= top_p * total) return i + 1;
    }
    return m;
}

/* Inverse CDF over the first m entries of c, for a uniform u in [0,1). */
static int invert(const Cand *c, int m, double u) {
    double mass = 0;
    for (int i = 0; i < m; i++) mass += c[i].w;
    double target = u * mass, acc = 0;
    for (int i = 0; i < m; i++) {
        acc += c[i].w;
        if (target < acc) return c[i].id;
    }
    return c[m - 1].id;
}

static double total_weight(const real_t *logits, int V, double mx, double inv_t) {
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(((double)logits[i] - mx) * inv_t);
    return z;
}

/* Without filters: inverse CDF in id order, no buffer needed. */
static int sample_all(const real_t *logits, int V, double mx, double inv_t, double u) {
    double target = u * total_weight(logits, V, mx, inv_t), acc = 0;
    int last = 0; /* u * z can round up to z itself: then the last token that has any weight */
    for (int i = 0; i < V; i++) {
        double w = exp(((double)logits[i] - mx) * inv_t);
        acc += w;
        if (target < acc) return i;
        if (w > 0) last = i;
    }
    return last;
}

/* Returns -1 only when the V-entry candidate buffer cannot be allocated. */
int gen_sample(const SamplerConfig *sc, const real_t *logits, int V, uint64_t row, uint64_t step) {
    /* logits (V) */
    int top = argmax(logits, V);
    if (sc->temperature <= 0) return top;
    double mx = (double)logits[top], inv_t = 1.0 / sc->temperature;
    double u = rng_uniform(rng_key(rng_key(sc->seed, GEN_SAMPLE_PURPOSE), row), step);
    int k = sc->top_k > 0 && sc->top_k < V ? sc->top_k : V;
    if (k == V && sc->top_p >= 1) return sample_all(logits, V, mx, inv_t, u);
    Cand *c = malloc((size_t)V * sizeof *c);
    if (!c) return -1;
    double z = total_weight(logits, V, mx, inv_t), mass;
    int n = collect(c, logits, V, mx, inv_t, GEN_CUT, &mass);
    /* The candidates hold the kept prefix when they cover the top k, or, with no top-k, when they
     * already reach top_p of the whole mass. */
    if (n < k && !(k == V && mass >= sc->top_p * z)) n = collect(c, logits, V, mx, inv_t, 0, &mass);
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    int id = invert(c, kept_prefix(c, n, k, sc->top_p, z, V), u);
    free(c);
    return id;
}
