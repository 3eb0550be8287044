/* bf16 on the CPU: matmul_bf16, the conversions both ways and the bf16 embedding lookup.
 *
 * With bf16 hardware (AVX512-BF16, AMX) matmul_bf16 hands bf16 operands to oneDNN's brgemm kernels;
 * operands given in real_t are converted into the instance's operand tiles first. Without it (and in
 * the f64 build) the same numbers are computed another way: each operand is rounded to bf16 and kept
 * as real_t, and an ordinary matmul sums the exact products; only the order of the fp32 sums
 * differs. Operands bigger than a tile (CPU_LP_TILE elements) go tile by tile: op(A)'s rows, op(B)'s
 * columns, each C block computed whole over K, so alpha and beta apply once per element. */
#include <string.h>

#include "core/backend/cpu/cpu_ops.h"
#include "core/base/bf16.h"

/* One operand as the caller gave it: stored (rows, cols) with row stride ld, of type t. */
typedef struct {
    const void *p;
    DType t;
    int ld;
} Operand;

/* The (rows, cols) block at (r0, c0) of stored operand o, copied into dst contiguous: as bf16 bits
 * (native) or as bf16-rounded real_t. */
static void pack(void *dst, const Operand *o, int r0, int c0, int rows, int cols, int native) {
    /* dst (rows, cols) */
    size_t n = (size_t)rows * cols;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        size_t src0 = (size_t)(r0 + r) * o->ld + c0, d0 = (size_t)r * cols;
        if (o->t == DT_BF16) {
            const uint16_t *s = (const uint16_t *)o->p + src0;
            if (native) memcpy((uint16_t *)dst + d0, s, (size_t)cols * sizeof *s);
            else
                for (int c = 0; c < cols; c++) ((real_t *)dst)[d0 + c] = (real_t)bf16_to_f32(s[c]);
        } else {
            const real_t *s = (const real_t *)o->p + src0;
            if (native)
                for (int c = 0; c < cols; c++) ((uint16_t *)dst)[d0 + c] = f32_to_bf16((float)s[c]);
            else
                for (int c = 0; c < cols; c++) ((real_t *)dst)[d0 + c] = (real_t)bf16_round((float)s[c]);
        }
    }
}

/* Where the block of op(X) with op-rows [i0, i0+ni) (or op-columns, for B) lives in the stored operand:
 * op(X) = X when !trans, X^T when trans. For A, blocks go along M: rows of stored A, or its columns
 * if transA. For B, along N: columns of stored B, or its rows if transB. */
typedef struct {
    int r0, c0, rows, cols;
} Block;

static Block a_block(int m0, int mb, int K, int tA) { return tA ? (Block){0, m0, K, mb} : (Block){m0, 0, mb, K}; }
static Block b_block(int n0, int nb, int K, int tB) { return tB ? (Block){n0, 0, nb, K} : (Block){0, n0, K, nb}; }

/* The tile ready for the kernel: the caller's memory when it can be used as it is (bf16 bits on the
 * native path), else packed into tile. *ld receives its row stride. */
static const void *tile_of(const Operand *o, Block b, void *tile, int native, int *ld) {
    if (native && o->t == DT_BF16) {
        *ld = o->ld;
        return (const uint16_t *)o->p + (size_t)b.r0 * o->ld + b.c0;
    }
    pack(tile, o, b.r0, b.c0, b.rows, b.cols, native);
    *ld = b.cols;
    return tile;
}

static void tile_mm(const Backend *be, int native, real_t *C, const void *A, const void *B, int M, int N, int K,
                    int tA, int tB, int lda, int ldb, int ldc, real_t alpha, real_t beta) {
#ifndef PEFTC_REAL_DOUBLE
    if (native) {
        if (!cpu_dnnl_matmul(be, cpu_dnnl_of(be), C, A, B, M, N, K, tA, tB, lda, ldb, ldc, alpha, beta))
            cpu_fail(be, "cpu backend: oneDNN has no bf16 matmul for %d x %d x %d on this CPU", M, N, K);
        return;
    }
#endif
    (void)be, (void)native;
    cpu_gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static int lp_native(const Backend *be) {
#ifndef PEFTC_REAL_DOUBLE
    return cpu_dnnl_bf16_native() && cpu_dnnl_of(be);
#else
    (void)be;
    return 0;
#endif
}

void cpu_matmul_bf16(const Backend *be, real_t *C, const void *A, DType ta, const void *B, DType tb, int M, int N,
                     int K, int transA, int transB, real_t alpha, real_t beta) {
    /* C (M,N); A (M,K) or (K,M) if transA; B (K,N) or (N,K) if transB; A, B real_t or bf16 bits */
    CpuState *st = be->impl;
    if (M <= 0 || N <= 0) return;
    if ((ta != DT_REAL && ta != DT_BF16) || (tb != DT_REAL && tb != DT_BF16)) {
        cpu_fail(be, "cpu backend: matmul_bf16 takes real or bf16 operands, not dtypes %d and %d", (int)ta, (int)tb);
        return;
    }
    if (!st->lp[0]) {
        cpu_fail(be, "cpu backend: matmul_bf16 needs its operand tiles: reserve BackendNeed bf16 first");
        return;
    }
    if (K <= 0) { /* no products: C = beta C */
        cpu_gemm(0, 0, M, N, 0, 0, C, 1, C, 1, beta, C, N);
        return;
    }
    if ((size_t)K > CPU_LP_TILE) { /* not even one row fits a tile */
        cpu_fail(be, "cpu backend: matmul_bf16 with K = %d exceeds its %zu-element tiles", K, CPU_LP_TILE);
        return;
    }
    int native = lp_native(be);
    Operand a = {A, ta, transA ? M : K}, b = {B, tb, transB ? K : N};
    int per = (int)(CPU_LP_TILE / (size_t)K); /* rows of op(A), columns of op(B), per tile: >= 1 */
    int mt = M < per ? M : per, nt = N < per ? N : per;
    /* One tile of B for all of M is packed once, outside the loop over A's tiles. */
    int lda = 0, ldb = 0;
    const void *bt = nt == N ? tile_of(&b, b_block(0, N, K, transB), st->lp[1], native, &ldb) : NULL;
    for (int m0 = 0; m0 < M; m0 += mt) {
        int mb = M - m0 < mt ? M - m0 : mt;
        const void *at = tile_of(&a, a_block(m0, mb, K, transA), st->lp[0], native, &lda);
        for (int n0 = 0; n0 < N; n0 += nt) {
            int nb = N - n0 < nt ? N - n0 : nt;
            const void *btile = bt ? bt : tile_of(&b, b_block(n0, nb, K, transB), st->lp[1], native, &ldb);
            tile_mm(be, native, C + (size_t)m0 * N + n0, at, btile, mb, nb, K, transA, transB, lda, ldb, N, alpha,
                    beta);
        }
    }
}

void cpu_to_bf16(const Backend *be, uint16_t *dst, const real_t *src, size_t n) {
    /* dst (n) bf16 bits, src (n) */
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16((float)src[i]);
}

void cpu_from_bf16(const Backend *be, real_t *dst, const uint16_t *src, size_t n) {
    /* dst (n), src (n) bf16 bits */
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = (real_t)bf16_to_f32(src[i]);
}

void cpu_embedding_fwd_bf16(const Backend *be, real_t *out, const int32_t *tokens, const uint16_t *wte, int BT,
                            int C) {
    /* out (BT,C), tokens (BT) in [0,V), wte (V,C) bf16 bits */
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)BT * C >= CPU_PAR_MIN)
    for (int r = 0; r < BT; r++) {
        const uint16_t *row = wte + (size_t)tokens[r] * C;
        for (int c = 0; c < C; c++) out[(size_t)r * C + c] = (real_t)bf16_to_f32(row[c]);
    }
}
