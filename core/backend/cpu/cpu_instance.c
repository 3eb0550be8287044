/* CPU instances: the table, the shared default instance and created ones, each with its own op scratch
 * (sized by reserve(), see CpuState in cpu_ops.h) and first failure. */
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "core/backend/cpu/cpu_ops.h"

static CpuState *state(const Backend *be) { return (CpuState *)be->impl; }

void cpu_fail(const Backend *be, const char *fmt, ...) {
    CpuState *st = state(be);
    if (st->err_set) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err_msg, sizeof st->err_msg, fmt, ap);
    va_end(ap);
    st->err_set = 1;
    st->err_code = PEFTC_ESTATE;
}

PeftcStatus cpu_status(const Backend *be) {
    CpuState *st = state(be);
    if (!st->err_set) return PEFTC_OK;
    st->err_set = 0;
    return PEFTC_ERR(st->err_code, "%s", st->err_msg);
}

/* ---- scratch ---- */

double *cpu_shared_scratch(const Backend *be, size_t n, const char *op, const char *need) {
    CpuState *st = state(be);
    if (n <= st->shared_cap) return st->shared;
    cpu_fail(be, "cpu backend: %s needs %zu doubles of scratch but reserve() sized %zu: reserve BackendNeed %s "
             ">= %zu first", op, n, st->shared_cap, need, n);
    return NULL;
}

int cpu_thread_team(const Backend *be, size_t n, const char *op, const char *need) {
    CpuState *st = state(be);
    if (omp_in_parallel()) {
        cpu_fail(be, "cpu backend: %s called from inside an OpenMP parallel region, where its threads would "
                 "share one scratch slot; call it from one host thread", op);
        return 0;
    }
    if (n > st->thread_cap) {
        cpu_fail(be, "cpu backend: %s needs %zu values of scratch per thread but reserve() sized %zu: reserve "
                 "BackendNeed %s first", op, n, st->thread_cap, need);
        return 0;
    }
    int team = omp_get_max_threads();
    if (team > st->threads) team = st->threads;
    return team > 1 ? team : 1;
}

real_t *cpu_thread_scratch(const Backend *be) {
    CpuState *st = state(be);
    return st->per_thread ? st->per_thread + (size_t)omp_get_thread_num() * st->thread_cap : NULL;
}

CpuDnnl *cpu_dnnl_of(const Backend *be) {
#ifndef PEFTC_REAL_DOUBLE
    CpuState *st = state(be);
    if (!st->dnnl && !st->dnnl_failed) {
        st->dnnl = cpu_dnnl_create();
        st->dnnl_failed = !st->dnnl;
    }
    return st->dnnl;
#else
    (void)be;
    return NULL;
#endif
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

/* Replaces *p with a block of n elements of `size` bytes; 0 (old block kept) when out of memory. */
static int regrow(void **p, size_t n, size_t size) {
    void *q = malloc(n * size);
    if (!q) return 0;
    free(*p);
    *p = q;
    return 1;
}

PeftcStatus cpu_reserve(const Backend *be, const BackendNeed *need) {
    CpuState *st = state(be);
    /* One call at a time uses the shared block: xent_fwd's B*T row losses, csr_sddmm's nnz sums or
     * ssm_scan_bwd's partial sums. */
    size_t shared = zmax((size_t)need->B * (size_t)need->T, need->nnz > 0 ? (size_t)need->nnz : 0);
    shared = zmax(shared, cpu_ssm_bwd_scratch(need->B, need->T, need->ssm_D, need->ssm_N));
    /* Per thread: attention_bwd's two (CPU_ATT_TILE, T) tiles (the forward uses one) or
     * attention_decode's S probabilities, for as many threads as OpenMP may start now or after
     * backend_cpu_set_threads(0). */
    size_t per = zmax(2 * (size_t)CPU_ATT_TILE * (size_t)need->T, (size_t)need->S);
    int threads = omp_get_max_threads() > omp_get_num_procs() ? omp_get_max_threads() : omp_get_num_procs();
    if (shared > st->shared_cap) {
        if (!regrow((void **)&st->shared, shared, sizeof(double)))
            return PEFTC_ERR(PEFTC_ENOMEM, "cpu backend: no memory for %zu doubles of op scratch", shared);
        st->shared_cap = shared;
    }
    if (per > st->thread_cap || threads > st->threads) {
        per = zmax(per, st->thread_cap);
        threads = threads > st->threads ? threads : st->threads;
        if (!regrow((void **)&st->per_thread, per * (size_t)threads, sizeof(real_t)))
            return PEFTC_ERR(PEFTC_ENOMEM, "cpu backend: no memory for %d threads x %zu values of op scratch",
                             threads, per);
        st->thread_cap = per;
        st->threads = threads;
    }
    for (int i = 0; i < 2 && need->bf16; i++) {
        if (st->lp[i]) continue;
        st->lp[i] = malloc(CPU_LP_TILE * sizeof(real_t));
        if (!st->lp[i])
            return PEFTC_ERR(PEFTC_ENOMEM, "cpu backend: no memory for matmul_bf16's %zu-byte operand tiles",
                             2 * CPU_LP_TILE * sizeof(real_t));
    }
    return PEFTC_OK;
}

/* ---- instances ---- */

/* The table, generated from the op list: the CPU backend has every op. */
#define CPU_TABLE_OP_(ret, name, params) .name = PEFTC_BACKEND_IMPL(cpu, name),
#define CPU_TABLE(impl_, destroy_)                                                \
    {                                                                             \
        .name = "cpu", .device = DEV_CPU, .impl = (impl_), .destroy = (destroy_), \
        PEFTC_BACKEND_OPS(CPU_TABLE_OP_)                                          \
    }

/* The shared instance: never freed, so no destroy. Its scratch lives until exit. */
static CpuState cpu_default_state;
static const Backend cpu_default = CPU_TABLE(&cpu_default_state, NULL);

const Backend *backend_cpu(void) { return &cpu_default; }

static void cpu_destroy(Backend *be) {
    CpuState *st = state(be);
    free(st->shared);
    free(st->per_thread);
    free(st->lp[0]);
    free(st->lp[1]);
#ifndef PEFTC_REAL_DOUBLE
    cpu_dnnl_free(st->dnnl);
#endif
    free(st);
    free(be);
}

PeftcStatus backend_cpu_create(Backend **out) {
    *out = NULL;
    Backend *be = malloc(sizeof *be);
    CpuState *st = calloc(1, sizeof *st);
    if (!be || !st) {
        free(be);
        free(st);
        return PEFTC_ERR(PEFTC_ENOMEM, "backend cpu: out of memory for an instance");
    }
    *be = (Backend)CPU_TABLE(st, cpu_destroy);
    *out = be;
    return PEFTC_OK;
}
