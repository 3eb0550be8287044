/* Causal grouped-query attention on BLAS calls over strided head views, memory linear in T.
 *
 * q_h, k_g, v_g are (T,HD) views into the (B,T,heads,HD) activations with leading dimension heads*HD,
 * so no head is ever copied out. Work goes in row tiles of CPU_ATT_TILE queries: a tile of rows [t0,t1)
 * only sees keys [0,t1), which skips most of the masked upper triangle the gemms would otherwise
 * compute and throw away.
 *
 * The forward keeps one log-sum-exp per query row, (B,NH,T), not the (B,NH,T,T) probabilities: the
 * backward recomputes each tile's probabilities as exp(score - lse) from q and k, as the CUDA kernel
 * does. That costs one more (rows,t1,HD) gemm per tile and takes the saved state from quadratic in T
 * (7 GiB at SmolLM2's shape, seq 2048) to linear.
 *
 * Packed rows (seg given): row t's scores of keys in another segment are set to -inf before the softmax
 * and their probabilities to 0 in the backward, so the same gemms serve both masks; nothing else
 * changes.
 *
 * Threading: OpenMP over (b,h) in the forward and over (b, kv head) in the backward, so one thread owns
 * each dk/dv slice that the heads of a group accumulate into; BLAS runs single-threaded inside. Each
 * thread works in its own tiles of the instance scratch (reserve() sizes them from BackendNeed T). */
#include <assert.h>
#include <omp.h>
#include <math.h>
#include <tgmath.h> /* exp on real_t picks expf in the float build */

#include "core/backend/cpu/cpu_ops.h"

/* Whether `units` (b, head) tasks of causal attention are worth a thread team: more than one thread,
 * more than one task, and enough multiply-adds (about T*T*HD per task) to pay for the fork. */
static int attn_parallel(int B, int T, int units, int HD) {
    return omp_get_max_threads() > 1 && B * units > 1 && (double)B * units * T * T * HD >= CPU_PAR_MIN * 16.0;
}

/* scores(rows, t1; ld t1) = q rows [t0,t1) . keys [0,t1) / sqrt(HD) */
static void tile_scores(real_t *scores, const real_t *q_h, const real_t *k_g, int t0, int t1, int ldq,
                        int ldkv, int HD) {
    real_t scale = (real_t)(1.0 / sqrt((double)HD));
    cpu_gemm(0, 1, t1 - t0, t1, HD, scale, q_h + (size_t)t0 * ldq, ldq, k_g, ldkv, 0, scores, t1);
}

/* Whether key s < t is hidden from query t by the segments (seg (T) or NULL). */
static inline int other_segment(const int32_t *seg, int s, int t) { return seg && seg[s] != seg[t]; }

/* One (b,h): p = softmax(q_h k_g^T / sqrt(HD)) tile by tile, out_h = p v_g, lse_h[t] = log-sum-exp of
 * row t's visible scores. */
static void attn_fwd_head(real_t *out_h, real_t *lse_h, const real_t *q_h, const real_t *k_g,
                          const real_t *v_g, const int32_t *seg, int T, int ldq, int ldkv, int HD,
                          real_t *p /* (TILE, T) */) {
    /* out_h, q_h (T,HD; ldq), k_g, v_g (T,HD; ldkv), lse_h (T), seg (T) or NULL */
    for (int t0 = 0; t0 < T; t0 += CPU_ATT_TILE) {
        int t1 = t0 + CPU_ATT_TILE < T ? t0 + CPU_ATT_TILE : T, rows = t1 - t0;
        tile_scores(p, q_h, k_g, t0, t1, ldq, ldkv, HD);
        for (int t = t0; t < t1; t++) {
            real_t *row = p + (size_t)(t - t0) * t1;
            for (int s = 0; seg && s < t; s++)
                if (other_segment(seg, s, t)) row[s] = -INFINITY; /* exp gives 0; key t itself keeps it finite */
            lse_h[t] = (real_t)cpu_softmax(row, row, t + 1);
            for (int s = t + 1; s < t1; s++) row[s] = 0;
        }
        cpu_gemm(0, 0, rows, HD, t1, 1, p, t1, v_g, ldkv, 0, out_h + (size_t)t0 * ldq, ldq);
    }
}

void cpu_attention_fwd(const Backend *be, real_t *out, real_t *att, const real_t *q, const real_t *k,
                       const real_t *v, const int32_t *seg, int B, int T, int NH, int NKV, int HD) {
    /* out, q (B,T,NH,HD); k, v (B,T,NKV,HD); att (B,NH,T): the log-sum-exp of every query row; seg (B,T)
     * or NULL */
    assert(NKV > 0 && NH % NKV == 0);
    int team = cpu_thread_team(be, (size_t)CPU_ATT_TILE * T, "attention_fwd", "T");
    if (!team) return;
    int group = NH / NKV, ldq = NH * HD, ldkv = NKV * HD;
    int par = attn_parallel(B, T, NH, HD);
    int saved = par ? cpu_blas_single_begin() : 0;
#pragma omp parallel num_threads(team) if (par)
    {
        real_t *p = cpu_thread_scratch(be); /* (CPU_ATT_TILE, T) of this thread */
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                size_t qo = (size_t)b * T * ldq + (size_t)h * HD;
                size_t kvo = (size_t)b * T * ldkv + (size_t)(h / group) * HD;
                attn_fwd_head(out + qo, att + ((size_t)b * NH + h) * T, q + qo, k + kvo, v + kvo,
                              seg ? seg + (size_t)b * T : NULL, T, ldq, ldkv, HD, p);
            }
        }
    }
    if (par) cpu_blas_single_end(saved);
}

/* The probabilities of rows [t0,t1) back from their scores and saved log-sum-exps, in place; zero past
 * the diagonal and on keys of another segment. */
static void tile_probs(real_t *p, const real_t *lse_h, const int32_t *seg, int t0, int t1) {
    /* p (t1-t0, t1): scores on entry; seg (T) or NULL */
    for (int t = t0; t < t1; t++) {
        real_t *row = p + (size_t)(t - t0) * t1, l = lse_h[t];
        for (int s = 0; s <= t; s++) row[s] = other_segment(seg, s, t) ? 0 : exp(row[s] - l);
        for (int s = t + 1; s < t1; s++) row[s] = 0;
    }
}

/* ds = p * (dp - rowsum(dp * p)) in place over one tile's rows, the softmax Jacobian applied row by
 * row. s > t is cleared explicitly: dp is not zero there and the dk gemm reads the whole tile. */
static void softmax_bwd_tile(real_t *ds, const real_t *p, int t0, int t1) {
    /* ds (t1-t0, t1): dp on entry; p (t1-t0, t1): probabilities */
    for (int t = t0; t < t1; t++) {
        real_t *d = ds + (size_t)(t - t0) * t1;
        const real_t *pr = p + (size_t)(t - t0) * t1;
        double dot = 0.0;
        for (int s = 0; s <= t; s++) dot += (double)d[s] * (double)pr[s];
        real_t rd = (real_t)dot;
        for (int s = 0; s <= t; s++) d[s] = pr[s] * (d[s] - rd);
        for (int s = t + 1; s < t1; s++) d[s] = 0;
    }
}

typedef struct {
    real_t *dq_h, *dk_g, *dv_g;      /* (T,HD; ldq / ldkv / ldkv), any may be NULL */
    const real_t *dout_h, *q_h;      /* (T,HD; ldq) */
    const real_t *k_g, *v_g;         /* (T,HD; ldkv) */
    const real_t *lse_h;             /* (T) */
    const int32_t *seg;              /* (T) or NULL */
    int T, ldq, ldkv, HD;
} AttnBwdHead;

/* One (b,h): accumulates its contribution to dq_h and to the group's dk_g, dv_g. */
static void attn_bwd_head(const AttnBwdHead *w, real_t *p, real_t *ds /* each (CPU_ATT_TILE, T) */) {
    int T = w->T, ldq = w->ldq, ldkv = w->ldkv, HD = w->HD;
    real_t scale = (real_t)(1.0 / sqrt((double)HD));
    for (int t0 = 0; t0 < T; t0 += CPU_ATT_TILE) {
        int t1 = t0 + CPU_ATT_TILE < T ? t0 + CPU_ATT_TILE : T, rows = t1 - t0;
        const real_t *dout = w->dout_h + (size_t)t0 * ldq;  /* (rows, HD; ldq) */
        const real_t *qt = w->q_h + (size_t)t0 * ldq;       /* (rows, HD; ldq) */
        tile_scores(p, w->q_h, w->k_g, t0, t1, ldq, ldkv, HD);
        tile_probs(p, w->lse_h, w->seg, t0, t1);
        if (w->dv_g) cpu_gemm(1, 0, t1, HD, rows, 1, p, t1, dout, ldq, 1, w->dv_g, ldkv);
        if (!w->dq_h && !w->dk_g) continue;
        cpu_gemm(0, 1, rows, t1, HD, 1, dout, ldq, w->v_g, ldkv, 0, ds, t1);
        softmax_bwd_tile(ds, p, t0, t1);
        if (w->dq_h)
            cpu_gemm(0, 0, rows, HD, t1, scale, ds, t1, w->k_g, ldkv, 1, w->dq_h + (size_t)t0 * ldq, ldq);
        if (w->dk_g) cpu_gemm(1, 0, t1, HD, rows, scale, ds, t1, qt, ldq, 1, w->dk_g, ldkv);
    }
}

void cpu_attention_bwd(const Backend *be, real_t *dq, real_t *dk, real_t *dv, const real_t *dout,
                       const real_t *att, const real_t *q, const real_t *k, const real_t *v, const int32_t *seg, int B,
                       int T, int NH, int NKV, int HD) {
    /* dq, dout, q (B,T,NH,HD); dk, dv, k, v (B,T,NKV,HD); att (B,NH,T) log-sum-exps from the forward; seg
     * (B,T) or NULL */
    if (!dq && !dk && !dv) return;
    size_t tile = (size_t)CPU_ATT_TILE * T;
    int team = cpu_thread_team(be, 2 * tile, "attention_bwd", "T");
    if (!team) return;
    int group = NH / NKV, ldq = NH * HD, ldkv = NKV * HD;
    int par = attn_parallel(B, T, NKV, HD);
    int saved = par ? cpu_blas_single_begin() : 0;
#pragma omp parallel num_threads(team) if (par)
    {
        real_t *p = cpu_thread_scratch(be), *ds = p + tile; /* (CPU_ATT_TILE, T) each, this thread's */
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int g = 0; g < NKV; g++) {
                size_t kvo = (size_t)b * T * ldkv + (size_t)g * HD;
                /* The heads of a group run in order on this thread: dk_g/dv_g sums are race-free
                 * and always added in the same order. */
                for (int h = g * group; h < (g + 1) * group; h++) {
                    size_t qo = (size_t)b * T * ldq + (size_t)h * HD;
                    AttnBwdHead w = {dq ? dq + qo : NULL, dk ? dk + kvo : NULL, dv ? dv + kvo : NULL,
                                     dout + qo, q + qo, k + kvo, v + kvo,
                                     att + ((size_t)b * NH + h) * T, seg ? seg + (size_t)b * T : NULL, T, ldq,
                                     ldkv, HD};
                    attn_bwd_head(&w, p, ds);
                }
            }
        }
    }
    if (par) cpu_blas_single_end(saved);
}

size_t cpu_attention_saved(const Backend *be, int B, int T, int NH) {
    (void)be;
    return (size_t)B * NH * T;
}
