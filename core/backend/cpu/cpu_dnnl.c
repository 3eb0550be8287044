/* oneDNN matmul primitives for the CPU backend's bf16 path, created once per shape and cached per
 * instance.
 *
 * oneDNN's brgemm kernels are what run bf16 on AMX and AVX512-BF16. (fp32 stays on OpenBLAS: see
 * cpu_gemm.) A primitive costs tens of microseconds to create, more than a small matmul, so each
 * (shape, strides, alpha, beta) gets one the first time it is called and keeps it; a step
 * calls a few dozen distinct shapes. The memory objects are kept with it and re-pointed per call.
 *
 * Only the float build uses this: oneDNN has no f64 matmul. */
#ifndef PEFTC_REAL_DOUBLE

#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>

#include "core/backend/cpu/cpu_ops.h"

/* Distinct matmuls kept; past this the oldest is replaced. Training touches well under 200. */
#define DNNL_CACHE 256

typedef struct {
    int M, N, K, tA, tB, lda, ldb, ldc;
    float alpha, beta;
} MmKey;

typedef struct {
    MmKey key;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} MmEntry;

struct CpuDnnl {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    MmEntry e[DNNL_CACHE];
    int n, next;     /* entries in use; the next one to replace when full */
    int broken;      /* 1 once oneDNN refused a bf16 matmul here (no kernel for this CPU) */
};

static int key_eq(const MmKey *a, const MmKey *b) {
    return a->M == b->M && a->N == b->N && a->K == b->K && a->tA == b->tA && a->tB == b->tB && a->lda == b->lda &&
           a->ldb == b->ldb && a->ldc == b->ldc && a->alpha == b->alpha && a->beta == b->beta;
}

static void entry_free(MmEntry *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    if (e->c) dnnl_memory_destroy(e->c);
    *e = (MmEntry){0};
}

CpuDnnl *cpu_dnnl_create(void) {
    CpuDnnl *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    if (dnnl_engine_create(&d->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&d->stream, d->eng, dnnl_stream_default_flags) != dnnl_success) {
        cpu_dnnl_free(d);
        return NULL;
    }
    return d;
}

void cpu_dnnl_free(CpuDnnl *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) entry_free(&d->e[i]);
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->eng) dnnl_engine_destroy(d->eng);
    free(d);
}

int cpu_dnnl_bf16_native(void) {
    /* The ISA bits are nested: avx512_core_bf16 and everything above it (AMX) include its bits. */
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

int cpu_dnnl_amx(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_amx) == (unsigned)dnnl_cpu_isa_avx512_core_amx;
}

/* A (rows, cols) matrix with row stride ld, or its transpose stored (cols, rows) with stride ld. */
static dnnl_status_t plain_md(dnnl_memory_desc_t *md, int rows, int cols, int ld, int trans, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

/* The primitive and its memory objects for k (bf16 inputs, f32 output), or dnnl_unimplemented (no
 * kernel for it on this CPU). */
static dnnl_status_t entry_make(CpuDnnl *d, const MmKey *k, MmEntry *e) {
    dnnl_memory_desc_t a, b, c;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = plain_md(&a, k->M, k->K, k->lda, k->tA, dnnl_bf16);
    if (s == dnnl_success) s = plain_md(&b, k->K, k->N, k->ldb, k->tB, dnnl_bf16);
    if (s == dnnl_success) s = plain_md(&c, k->M, k->N, k->ldc, 0, dnnl_f32);
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success && k->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (s == dnnl_success && k->beta != 0.0f) {
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, k->beta);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &desc, attr, d->eng, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&e->prim, pd);
    if (s == dnnl_success) s = dnnl_memory_create(&e->a, &a, d->eng, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = dnnl_memory_create(&e->b, &b, d->eng, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = dnnl_memory_create(&e->c, &c, d->eng, DNNL_MEMORY_NONE);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) entry_free(e);
    else e->key = *k;
    return s;
}

static MmEntry *entry_find(CpuDnnl *d, const MmKey *k) {
    for (int i = 0; i < d->n; i++)
        if (d->e[i].prim && key_eq(&d->e[i].key, k)) return &d->e[i];
    return NULL;
}

/* The slot a new entry goes into: a free one, else the oldest (round robin). A slot whose entry_make
 * fails stays empty (prim NULL) and is never found. */
static MmEntry *entry_slot(CpuDnnl *d) {
    if (d->n < DNNL_CACHE) return &d->e[d->n++];
    MmEntry *e = &d->e[d->next];
    d->next = (d->next + 1) % DNNL_CACHE;
    entry_free(e);
    return e;
}

int cpu_dnnl_matmul(const Backend *be, CpuDnnl *d, float *C, const uint16_t *A, const uint16_t *B, int M, int N,
                    int K, int tA, int tB, int lda, int ldb, int ldc, float alpha, float beta) {
    /* C (M,N; ldc) f32; A (M,K) or (K,M) if tA, B (K,N) or (N,K) if tB, bf16 bits */
    if (d->broken) return 0;
    MmKey k = {M, N, K, tA, tB, lda, ldb, ldc, alpha, beta};
    MmEntry *e = entry_find(d, &k);
    if (!e) {
        e = entry_slot(d);
        dnnl_status_t s = entry_make(d, &k, e);
        if (s != dnnl_success) {
            if (s == dnnl_unimplemented) {
                d->broken = 1;
                return 0;
            }
            cpu_fail(be, "cpu backend: oneDNN could not create a bf16 matmul (%d x %d x %d): status %d", M, N, K,
                     (int)s);
            return 1;
        }
    }
    dnnl_memory_set_data_handle(e->a, (void *)A);
    dnnl_memory_set_data_handle(e->b, (void *)B);
    dnnl_memory_set_data_handle(e->c, C);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    dnnl_status_t s = dnnl_primitive_execute(e->prim, d->stream, 3, args);
    if (s == dnnl_success) s = dnnl_stream_wait(d->stream);
    if (s != dnnl_success) cpu_fail(be, "cpu backend: oneDNN matmul (%d x %d x %d) failed: status %d", M, N, K, (int)s);
    return 1;
}

#else /* PEFTC_REAL_DOUBLE */

int cpu_dnnl_bf16_native(void) { return 0; }
int cpu_dnnl_amx(void) { return 0; }

#endif

int backend_cpu_bf16_native(const char **what) {
    int native = cpu_dnnl_bf16_native();
    if (what) *what = !native ? "this CPU has neither AVX512-BF16 nor AMX" : cpu_dnnl_amx() ? "AMX-BF16" : "AVX512-BF16";
    return native;
}
