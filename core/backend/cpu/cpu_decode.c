/* Attention of one new query per row over a KV cache, the inner op of batched decoding (and of prefill,
 * one query at a time).
 *
 * Each (b, h) is two matrix-vector products on strided views of the cache, k_g and v_g (len,HD) with
 * leading dimension NKV*HD, so no head is copied out, and a softmax in between. OpenMP runs over
 * (b, h) with BLAS single-threaded inside, as in cpu_attention.c. */
#include <assert.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/backend/cpu/cpu_ops.h"

/* One (b,h): out_h = softmax(q_h k_g^T / sqrt(HD)) v_g over the first n cached positions. */
static void decode_head(real_t *out_h, const real_t *q_h, const real_t *k_g, const real_t *v_g, int n, int ldkv,
                        int HD, real_t *p) {
    /* out_h, q_h (HD); k_g, v_g (n,HD; ldkv); p (n) scratch */
    if (n == 0) {
        memset(out_h, 0, (size_t)HD * sizeof *out_h);
        return;
    }
    real_t scale = (real_t)(1.0 / sqrt((double)HD));
    cpu_gemm(0, 1, 1, n, HD, scale, q_h, HD, k_g, ldkv, 0, p, n); /* p(1,n) = scale q k^T */
    cpu_softmax(p, p, n);
    cpu_gemm(0, 0, 1, HD, n, 1, p, n, v_g, ldkv, 0, out_h, HD);   /* out(1,HD) = p v */
}

/* Worth a thread team when there is more than one task and enough multiply-adds (about 2*len*HD per
 * (b,h)) to pay for the fork: decode steps are short, so the bar sits lower than for full attention. */
static int decode_parallel(int B, int NH, int max_len, int HD) {
    return omp_get_max_threads() > 1 && B * NH > 1 && (double)B * NH * max_len * HD >= CPU_PAR_MIN * 4.0;
}

void cpu_attention_decode(const Backend *be, real_t *out, const real_t *q, const real_t *kc, const real_t *vc,
                          const int *len, int B, int S, int NH, int NKV, int HD) {
    /* out, q (B,NH,HD); kc, vc (B,S,NKV,HD); len (B) */
    assert(NKV > 0 && NH % NKV == 0);
    int group = NH / NKV, ldkv = NKV * HD, max_len = 0;
    for (int b = 0; b < B; b++) {
        assert(len[b] >= 0 && len[b] <= S);
        max_len = len[b] > max_len ? len[b] : max_len;
    }
    int team = cpu_thread_team(be, (size_t)max_len, "attention_decode", "S");
    if (!team) return;
    int par = decode_parallel(B, NH, max_len, HD);
    int saved = par ? cpu_blas_single_begin() : 0;
#pragma omp parallel num_threads(team) if (par)
    {
        real_t *p = cpu_thread_scratch(be); /* (max_len) of this thread */
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                size_t qo = ((size_t)b * NH + h) * HD, kvo = (size_t)b * S * ldkv + (size_t)(h / group) * HD;
                decode_head(out + qo, q + qo, kc + kvo, vc + kvo, len[b], ldkv, HD, p);
            }
        }
    }
    if (par) cpu_blas_single_end(saved);
}
