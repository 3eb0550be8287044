/* The CUDA backend's runtime: instances (device, stream, cuBLAS handle), error recording, device
 * memory with usage tracking, staging of host index arrays, op scratch, and the table.
 *
 * Everything an instance holds is in its CudaState; there is no process-wide state besides the CUDA
 * runtime's own. Each instance runs on one non-blocking stream in issue order, so ops never synchronise
 * with each other; the host waits only where it must read a result (download, scalar-returning ops) or
 * hand back a buffer it may reuse (upload). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/cuda/cuda_ops.h"

/* ---- error recording ---- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void record_error(CudaState *cu, PeftcStatus code, const char *call, const char *file, int line,
                         const char *what) {
    if (cu->err_set) return;
    cu->err_set = 1;
    cu->err_code = code;
    snprintf(cu->err_msg, sizeof cu->err_msg, "cuda: %.200s failed at %s:%d: %s", call, base_name(file), line,
             what);
}

void cuda_check_at(CudaState *cu, cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return;
    record_error(cu, e == cudaErrorMemoryAllocation ? PEFTC_ENOMEM : PEFTC_EIO, call, file, line,
                 cudaGetErrorString(e));
    /* Clears a non-sticky error so the next launch check does not report it a second time. */
    (void)cudaGetLastError();
}

void cuda_fail_at(CudaState *cu, PeftcStatus code, const char *file, int line, const char *fmt, ...) {
    if (cu->err_set) return;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    cu->err_set = 1;
    cu->err_code = code;
    snprintf(cu->err_msg, sizeof cu->err_msg, "cuda: %s (at %s:%d)", what, base_name(file), line);
}

void cublas_check_at(CudaState *cu, cublasStatus_t s, const char *call, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    record_error(cu, s == CUBLAS_STATUS_ALLOC_FAILED ? PEFTC_ENOMEM : PEFTC_EIO, call, file, line,
                 cublasGetStatusString(s));
}

CudaState *cuda_enter(const Backend *be) {
    CudaState *cu = (CudaState *)be->impl;
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != cu->device)
        CUDA_CHECK(cu, cudaSetDevice(cu->device));
    return cu;
}

PeftcStatus cuda_status(const Backend *be) {
    CudaState *cu = cuda_enter(be);
    CUDA_CHECK(cu, cudaStreamSynchronize(cu->stream));
    if (!cu->err_set) return PEFTC_OK;
    cu->err_set = 0;
    return PEFTC_ERR(cu->err_code, "%s", cu->err_msg);
}

extern "C" void *backend_cuda_stream(const Backend *be) { return (void *)((CudaState *)be->impl)->stream; }

/* ---- allocation tracking ---- */

static size_t mem_slot(const void *p, size_t cap) {
    uint64_t h = (uint64_t)(uintptr_t)p;
    h = (h >> 8) * 0x9E3779B97F4A7C15ull; /* allocations are at least 256-byte aligned */
    return (size_t)(h >> 32) & (cap - 1);
}

static void mem_insert(CudaMemEntry *tab, size_t cap, void *p, size_t bytes) {
    size_t i = mem_slot(p, cap);
    while (tab[i].p) i = (i + 1) & (cap - 1);
    tab[i].p = p;
    tab[i].bytes = bytes;
}

/* Keeps the table at most half full; 0 when the host is out of memory. */
static int mem_reserve(CudaState *cu) {
    if (2 * (cu->mem_count + 1) <= cu->mem_cap) return 1;
    size_t cap = cu->mem_cap ? 2 * cu->mem_cap : 1024;
    CudaMemEntry *tab = (CudaMemEntry *)calloc(cap, sizeof *tab);
    if (!tab) return 0;
    for (size_t i = 0; i < cu->mem_cap; i++)
        if (cu->mem[i].p) mem_insert(tab, cap, cu->mem[i].p, cu->mem[i].bytes);
    free(cu->mem);
    cu->mem = tab;
    cu->mem_cap = cap;
    return 1;
}

/* Removes p and returns its size (0 if it was never tracked). Backward-shift deletion keeps every
 * remaining entry reachable from its home slot without tombstones. */
static size_t mem_remove(CudaState *cu, const void *p) {
    if (!cu->mem_cap) return 0;
    CudaMemEntry *m = cu->mem;
    size_t mask = cu->mem_cap - 1, i = mem_slot(p, cu->mem_cap);
    while (m[i].p && m[i].p != p) i = (i + 1) & mask;
    if (!m[i].p) return 0;
    size_t bytes = m[i].bytes;
    m[i].p = NULL;
    for (size_t j = (i + 1) & mask; m[j].p; j = (j + 1) & mask) {
        size_t home = mem_slot(m[j].p, cu->mem_cap);
        /* Entry j may move into the hole at i unless its home lies cyclically in (i, j]. */
        int home_between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (home_between) continue;
        m[i] = m[j];
        m[j].p = NULL;
        i = j;
    }
    cu->mem_count--;
    return bytes;
}

/* cudaMalloc with tracking; NULL (error recorded) on failure. */
static void *dev_malloc(CudaState *cu, size_t bytes) {
    if (!mem_reserve(cu)) {
        record_error(cu, PEFTC_ENOMEM, "allocation table", __FILE__, __LINE__, "host out of memory");
        return NULL;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cuda_check_at(cu, e, "cudaMalloc", __FILE__, __LINE__);
        return NULL;
    }
    mem_insert(cu->mem, cu->mem_cap, p, bytes);
    cu->mem_count++;
    cu->in_use += bytes;
    if (cu->in_use > cu->peak) cu->peak = cu->in_use;
    return p;
}

/* Waits for the stream first: work already issued may still read p. */
static void dev_free(CudaState *cu, void *p) {
    if (!p) return;
    CUDA_CHECK(cu, cudaStreamSynchronize(cu->stream));
    cu->in_use -= mem_remove(cu, p);
    CUDA_CHECK(cu, cudaFree(p));
}

size_t cuda_mem_in_use(const Backend *be) { return ((const CudaState *)be->impl)->in_use; }
size_t cuda_mem_peak(const Backend *be) { return ((const CudaState *)be->impl)->peak; }

/* ---- memory ops ---- */

void *cuda_alloc(const Backend *be, size_t bytes) {
    CudaState *cu = cuda_enter(be);
    void *p = dev_malloc(cu, bytes);
    if (p) CUDA_CHECK(cu, cudaMemsetAsync(p, 0, bytes ? bytes : 1, cu->stream));
    return p;
}

void cuda_free(const Backend *be, void *p) { dev_free(cuda_enter(be), p); }

void cuda_zero(const Backend *be, real_t *x, size_t n) {
    /* x (n) */
    CudaState *cu = cuda_enter(be);
    if (n) CUDA_CHECK(cu, cudaMemsetAsync(x, 0, n * sizeof(real_t), cu->stream));
}

void cuda_copy(const Backend *be, real_t *dst, const real_t *src, size_t n) {
    /* dst (n), src (n); must not overlap */
    CudaState *cu = cuda_enter(be);
    if (n && dst != src)
        CUDA_CHECK(cu, cudaMemcpyAsync(dst, src, n * sizeof(real_t), cudaMemcpyDeviceToDevice, cu->stream));
}

void cuda_copy_2d(const Backend *be, real_t *dst, int ld_dst, const real_t *src, int ld_src, int rows, int cols) {
    /* dst (rows, cols; ld_dst), src (rows, cols; ld_src); must not overlap */
    CudaState *cu = cuda_enter(be);
    if (rows <= 0 || cols <= 0) return;
    CUDA_CHECK(cu, cudaMemcpy2DAsync(dst, (size_t)ld_dst * sizeof(real_t), src, (size_t)ld_src * sizeof(real_t),
                                     (size_t)cols * sizeof(real_t), (size_t)rows, cudaMemcpyDeviceToDevice,
                                     cu->stream));
}

void cuda_upload(const Backend *be, void *dst, const void *host_src, size_t bytes) {
    /* The caller may overwrite host_src as soon as this returns, so the copy must be finished. */
    CudaState *cu = cuda_enter(be);
    if (!bytes) return;
    CUDA_CHECK(cu, cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cu->stream));
    CUDA_CHECK(cu, cudaStreamSynchronize(cu->stream));
}

void cuda_download(const Backend *be, void *host_dst, const void *src, size_t bytes) {
    CudaState *cu = cuda_enter(be);
    if (!bytes) return;
    CUDA_CHECK(cu, cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cu->stream));
    CUDA_CHECK(cu, cudaStreamSynchronize(cu->stream));
}

/* ---- staging and scratch ---- */

static void stage_release(CudaState *cu, CudaStageSlot *s) {
    dev_free(cu, s->dev); /* first: it waits for the stream, so no copy still reads the pinned buffers */
    for (int i = 0; i < CUDA_STAGE_RING; i++) {
        if (s->pinned[i]) CUDA_CHECK(cu, cudaFreeHost(s->pinned[i]));
        if (s->copied[i]) CUDA_CHECK(cu, cudaEventDestroy(s->copied[i]));
    }
    memset(s, 0, sizeof *s);
}

/* Replaces the slot's buffers with ones of at least `bytes`; 0 (error recorded) on failure. */
static int stage_grow(CudaState *cu, CudaStageSlot *s, size_t bytes) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < bytes) cap *= 2;
    stage_release(cu, s);
    s->dev = dev_malloc(cu, cap);
    if (!s->dev) return 0;
    s->cap = cap;
    for (int i = 0; i < CUDA_STAGE_RING; i++) {
        cudaError_t e = cudaMallocHost(&s->pinned[i], cap);
        if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->copied[i], cudaEventDisableTiming);
        if (e != cudaSuccess) {
            cuda_check_at(cu, e, "cudaMallocHost/cudaEventCreate (staging)", __FILE__, __LINE__);
            stage_release(cu, s);
            return 0;
        }
    }
    return 1;
}

const void *cuda_stage(CudaState *cu, int slot, const void *host, size_t bytes) {
    CudaStageSlot *s = &cu->stage[slot];
    if (bytes > s->cap && !stage_grow(cu, s, bytes)) return NULL;
    if (!bytes) return s->dev;
    int i = s->next;
    s->next = (i + 1) % CUDA_STAGE_RING;
    /* pinned[i] may still feed a copy issued CUDA_STAGE_RING calls ago. The device buffer needs no
     * wait: kernels that read it were issued before this copy on the same stream. */
    if (s->used[i]) CUDA_CHECK(cu, cudaEventSynchronize(s->copied[i]));
    memcpy(s->pinned[i], host, bytes);
    CUDA_CHECK(cu, cudaMemcpyAsync(s->dev, s->pinned[i], bytes, cudaMemcpyHostToDevice, cu->stream));
    CUDA_CHECK(cu, cudaEventRecord(s->copied[i], cu->stream));
    s->used[i] = 1;
    return s->dev;
}

void *cuda_scratch(CudaState *cu, int slot, size_t bytes) {
    if (bytes <= cu->scratch_cap[slot] && cu->scratch[slot]) return cu->scratch[slot];
    size_t cap = cu->scratch_cap[slot] ? cu->scratch_cap[slot] : 4096;
    while (cap < bytes) cap *= 2;
    dev_free(cu, cu->scratch[slot]);
    cu->scratch_cap[slot] = 0;
    cu->scratch[slot] = dev_malloc(cu, cap);
    if (cu->scratch[slot]) cu->scratch_cap[slot] = cap;
    return cu->scratch[slot];
}

/* Grows the slots the ops of a (B,T,NH) pass would otherwise grow on their first call: staged tokens,
 * targets, row keys, segment ids and positions, xent's loss sums, attention_bwd's D, ssm_scan_bwd's
 * chunk tile and partials.
 * What no BackendNeed field sizes (sumsq over a span, rmsnorm's partials, decode's lengths) still grows
 * inside the op the first time, recording a failure for status() rather than aborting. */
PeftcStatus cuda_reserve(const Backend *be, const BackendNeed *need) {
    CudaState *cu = cuda_enter(be);
    size_t BT = (size_t)need->B * (size_t)need->T;
    if (!BT) return PEFTC_OK;
    size_t stage_bytes[CUDA_STAGE_COUNT] = {0};
    stage_bytes[CUDA_STAGE_TOKENS] = BT * sizeof(int32_t);
    stage_bytes[CUDA_STAGE_TARGETS] = BT * sizeof(int32_t);
    stage_bytes[CUDA_STAGE_KEYS] = BT * sizeof(uint64_t);
    stage_bytes[CUDA_STAGE_SEG] = BT * sizeof(int32_t);
    stage_bytes[CUDA_STAGE_POS] = BT * sizeof(int32_t);
    for (int i = 0; i < CUDA_STAGE_COUNT; i++)
        if (stage_bytes[i] > cu->stage[i].cap) (void)stage_grow(cu, &cu->stage[i], stage_bytes[i]);
    cuda_scratch(cu, CUDA_SCRATCH_REDUCE, (BT + 1) * sizeof(double));
    if (need->NH > 0) cuda_scratch(cu, CUDA_SCRATCH_ATTN0, BT * (size_t)need->NH * sizeof(float));
    if (need->ssm_D > 0 && need->ssm_N > 0) {
        cuda_scratch(cu, CUDA_SCRATCH_SSM_TILE, cuda_ssm_tile_bytes(need->B, need->ssm_D));
        cuda_scratch(cu, CUDA_SCRATCH_SSM_PART, cuda_ssm_part_bytes(need->B, need->T, need->ssm_D, need->ssm_N));
    }
    /* A failed allocation is reported now, with any earlier failure, rather than at the next step. */
    return cuda_status(be);
}

/* ---- device, table, create/free ---- */

int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no device: not an error for the caller */
        return 0;
    }
    return n;
}

/* The table, generated from the op list: NULL for the ops cuda_ops.h declares missing. */
static void fill_table(Backend *be) {
#define CUDA_TABLE_OP_(ret, name, params) be->name = PEFTC_BACKEND_IMPL(cuda, name);
    PEFTC_BACKEND_OPS(CUDA_TABLE_OP_)
#undef CUDA_TABLE_OP_
}

/* Undoes whatever part of create succeeded, and frees the instance. */
static void cuda_destroy(Backend *be) {
    CudaState *cu = (CudaState *)be->impl;
    if (cu) {
        (void)cudaSetDevice(cu->device);
        if (cu->stream) cudaStreamSynchronize(cu->stream);
        for (int i = 0; i < CUDA_STAGE_COUNT; i++) stage_release(cu, &cu->stage[i]);
        for (int i = 0; i < CUDA_SCRATCH_COUNT; i++) dev_free(cu, cu->scratch[i]);
        if (cu->blas) cublasDestroy(cu->blas);
        if (cu->stream) cudaStreamDestroy(cu->stream);
        free(cu->mem);
        free(cu);
    }
    free(be);
}

/* The device, its stream and the cuBLAS handle bound to it; EINVAL naming the cause. */
static PeftcStatus open_device(CudaState *cu, int count) {
    cudaError_t e = cudaSetDevice(cu->device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return PEFTC_ERR(PEFTC_EINVAL, "backend cuda: cannot use GPU %d of %d: %s", cu->device, count,
                         cudaGetErrorString(e));
    }
    cublasStatus_t bs = cublasCreate(&cu->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(cu->blas, cu->stream);
    if (bs != CUBLAS_STATUS_SUCCESS)
        return PEFTC_ERR(PEFTC_EINVAL, "backend cuda: cuBLAS initialisation failed on GPU %d: %s", cu->device,
                         cublasGetStatusString(bs));
    return PEFTC_OK;
}

PeftcStatus backend_cuda_create(int device, Backend **out) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return PEFTC_ERR(PEFTC_EINVAL, "backend cuda: no usable GPU (cudaGetDeviceCount: %s)",
                         e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device < 0 || device >= n)
        return PEFTC_ERR(PEFTC_EINVAL, "backend cuda: device must be in [0, %d) (the visible GPUs), got %d", n, device);
    Backend *be = (Backend *)calloc(1, sizeof *be);
    CudaState *cu = (CudaState *)calloc(1, sizeof *cu);
    if (!be || !cu) {
        free(be);
        free(cu);
        return PEFTC_ERR(PEFTC_ENOMEM, "backend cuda: out of host memory for an instance");
    }
    be->name = "cuda";
    be->device = DEV_CUDA;
    be->impl = cu;
    be->destroy = cuda_destroy;
    fill_table(be);
    cu->device = device;
    PeftcStatus st = open_device(cu, n);
    if (st != PEFTC_OK) {
        cuda_destroy(be);
        return st;
    }
    *out = be;
    return PEFTC_OK;
}
