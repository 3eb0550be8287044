/* The CUDA backend's runtime: device selection, the one stream and cuBLAS handle, error recording,
 * device memory with usage tracking, staging of host index arrays, op scratch, and the vtable.
 *
 * Everything runs on one non-blocking stream in issue order, so ops never synchronise with each other;
 * the host waits only where it must read a result (download, scalar-returning ops) or hand back a
 * buffer it may reuse (upload). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/cuda/cuda_ops.h"

/* Pinned copies kept per staging slot: a slot can be refilled this many times before the host waits
 * for the oldest copy out of it, so staging does not serialise the host with the GPU. */
#define STAGE_RING 8

typedef struct {
    void *dev;                         /* (cap) bytes, device */
    void *pinned[STAGE_RING];          /* (cap) bytes each, page-locked host */
    cudaEvent_t copied[STAGE_RING];    /* recorded after the copy out of pinned[i] */
    int used[STAGE_RING];              /* copied[i] has been recorded */
    int next;
    size_t cap;
} StageSlot;

typedef struct {
    void *p;
    size_t bytes;
} MemEntry;

static struct {
    int open;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    Backend vtable;
    StageSlot stage[CUDA_STAGE_COUNT];
    void *scratch[CUDA_SCRATCH_COUNT];
    size_t scratch_cap[CUDA_SCRATCH_COUNT];
    /* Live device allocations, open addressing keyed by pointer: free() needs each one's size. */
    MemEntry *mem;
    size_t mem_cap, mem_count, in_use, peak;
    /* The first failure since the last backend_cuda_status(). */
    int err_set;
    PeftcStatus err_code;
    char err_msg[512];
} g;

/* ---- error recording ---- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void record_error(PeftcStatus code, const char *call, const char *file, int line, const char *what) {
    if (g.err_set) return;
    g.err_set = 1;
    g.err_code = code;
    snprintf(g.err_msg, sizeof g.err_msg, "cuda: %.200s failed at %s:%d: %s", call, base_name(file), line, what);
}

void cuda_check_at(cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return;
    record_error(e == cudaErrorMemoryAllocation ? PEFTC_ENOMEM : PEFTC_EIO, call, file, line,
                 cudaGetErrorString(e));
    /* Clears a non-sticky error so the next launch check does not report it a second time. */
    (void)cudaGetLastError();
}

void cuda_fail_at(PeftcStatus code, const char *file, int line, const char *fmt, ...) {
    if (g.err_set) return;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    g.err_set = 1;
    g.err_code = code;
    snprintf(g.err_msg, sizeof g.err_msg, "cuda: %s (at %s:%d)", what, base_name(file), line);
}

void cublas_check_at(cublasStatus_t s, const char *call, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    record_error(s == CUBLAS_STATUS_ALLOC_FAILED ? PEFTC_ENOMEM : PEFTC_EIO, call, file, line,
                 cublasGetStatusString(s));
}

PeftcStatus backend_cuda_status(void) {
    if (g.open) CUDA_CHECK(cudaStreamSynchronize(g.stream));
    if (!g.err_set) return PEFTC_OK;
    g.err_set = 0;
    return PEFTC_ERR(g.err_code, "%s", g.err_msg);
}

cudaStream_t cuda_stream(void) { return g.stream; }

extern "C" void *backend_cuda_stream(void) { return (void *)g.stream; }
cublasHandle_t cuda_cublas(void) { return g.blas; }

/* ---- allocation tracking ---- */

static size_t mem_slot(const void *p, size_t cap) {
    uint64_t h = (uint64_t)(uintptr_t)p;
    h = (h >> 8) * 0x9E3779B97F4A7C15ull; /* allocations are at least 256-byte aligned */
    return (size_t)(h >> 32) & (cap - 1);
}

static void mem_insert(MemEntry *tab, size_t cap, void *p, size_t bytes) {
    size_t i = mem_slot(p, cap);
    while (tab[i].p) i = (i + 1) & (cap - 1);
    tab[i].p = p;
    tab[i].bytes = bytes;
}

/* Keeps the table at most half full; 0 when the host is out of memory. */
static int mem_reserve(void) {
    if (2 * (g.mem_count + 1) <= g.mem_cap) return 1;
    size_t cap = g.mem_cap ? 2 * g.mem_cap : 1024;
    MemEntry *tab = (MemEntry *)calloc(cap, sizeof *tab);
    if (!tab) return 0;
    for (size_t i = 0; i < g.mem_cap; i++)
        if (g.mem[i].p) mem_insert(tab, cap, g.mem[i].p, g.mem[i].bytes);
    free(g.mem);
    g.mem = tab;
    g.mem_cap = cap;
    return 1;
}

/* Removes p and returns its size (0 if it was never tracked). Backward-shift deletion keeps every
 * remaining entry reachable from its home slot without tombstones. */
static size_t mem_remove(const void *p) {
    if (!g.mem_cap) return 0;
    size_t mask = g.mem_cap - 1, i = mem_slot(p, g.mem_cap);
    while (g.mem[i].p && g.mem[i].p != p) i = (i + 1) & mask;
    if (!g.mem[i].p) return 0;
    size_t bytes = g.mem[i].bytes;
    g.mem[i].p = NULL;
    for (size_t j = (i + 1) & mask; g.mem[j].p; j = (j + 1) & mask) {
        size_t home = mem_slot(g.mem[j].p, g.mem_cap);
        /* Entry j may move into the hole at i unless its home lies cyclically in (i, j]. */
        int home_between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (home_between) continue;
        g.mem[i] = g.mem[j];
        g.mem[j].p = NULL;
        i = j;
    }
    g.mem_count--;
    return bytes;
}

/* cudaMalloc with tracking; NULL (error recorded) on failure. */
static void *dev_malloc(size_t bytes) {
    if (!mem_reserve()) {
        record_error(PEFTC_ENOMEM, "allocation table", __FILE__, __LINE__, "host out of memory");
        return NULL;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cuda_check_at(e, "cudaMalloc", __FILE__, __LINE__);
        return NULL;
    }
    mem_insert(g.mem, g.mem_cap, p, bytes);
    g.mem_count++;
    g.in_use += bytes;
    if (g.in_use > g.peak) g.peak = g.in_use;
    return p;
}

/* Waits for the stream first: work already issued may still read p. */
static void dev_free(void *p) {
    if (!p) return;
    CUDA_CHECK(cudaStreamSynchronize(g.stream));
    g.in_use -= mem_remove(p);
    CUDA_CHECK(cudaFree(p));
}

size_t cuda_mem_in_use(void) { return g.in_use; }
size_t cuda_mem_peak(void) { return g.peak; }

/* ---- memory ops ---- */

void *cuda_alloc(size_t bytes) {
    void *p = dev_malloc(bytes);
    if (p) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes ? bytes : 1, g.stream));
    return p;
}

void cuda_free(void *p) { dev_free(p); }

void cuda_zero(real_t *x, size_t n) {
    /* x (n) */
    if (n) CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(real_t), g.stream));
}

void cuda_copy(real_t *dst, const real_t *src, size_t n) {
    /* dst (n), src (n); must not overlap */
    if (n && dst != src)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(real_t), cudaMemcpyDeviceToDevice, g.stream));
}

void cuda_upload(void *dst, const void *host_src, size_t bytes) {
    /* The caller may overwrite host_src as soon as this returns, so the copy must be finished. */
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, g.stream));
    CUDA_CHECK(cudaStreamSynchronize(g.stream));
}

void cuda_download(void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, g.stream));
    CUDA_CHECK(cudaStreamSynchronize(g.stream));
}

/* ---- staging and scratch ---- */

static void stage_release(StageSlot *s) {
    dev_free(s->dev); /* first: it waits for the stream, so no copy still reads the pinned buffers */
    for (int i = 0; i < STAGE_RING; i++) {
        if (s->pinned[i]) CUDA_CHECK(cudaFreeHost(s->pinned[i]));
        if (s->copied[i]) CUDA_CHECK(cudaEventDestroy(s->copied[i]));
    }
    memset(s, 0, sizeof *s);
}

/* Replaces the slot's buffers with ones of at least `bytes`; 0 (error recorded) on failure. */
static int stage_grow(StageSlot *s, size_t bytes) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < bytes) cap *= 2;
    stage_release(s);
    s->dev = dev_malloc(cap);
    if (!s->dev) return 0;
    s->cap = cap;
    for (int i = 0; i < STAGE_RING; i++) {
        cudaError_t e = cudaMallocHost(&s->pinned[i], cap);
        if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->copied[i], cudaEventDisableTiming);
        if (e != cudaSuccess) {
            cuda_check_at(e, "cudaMallocHost/cudaEventCreate (staging)", __FILE__, __LINE__);
            stage_release(s);
            return 0;
        }
    }
    return 1;
}

const void *cuda_stage(int slot, const void *host, size_t bytes) {
    StageSlot *s = &g.stage[slot];
    if (bytes > s->cap && !stage_grow(s, bytes)) return NULL;
    if (!bytes) return s->dev;
    int i = s->next;
    s->next = (i + 1) % STAGE_RING;
    /* pinned[i] may still feed a copy issued STAGE_RING calls ago. The device buffer needs no wait:
     * kernels that read it were issued before this copy on the same stream. */
    if (s->used[i]) CUDA_CHECK(cudaEventSynchronize(s->copied[i]));
    memcpy(s->pinned[i], host, bytes);
    CUDA_CHECK(cudaMemcpyAsync(s->dev, s->pinned[i], bytes, cudaMemcpyHostToDevice, g.stream));
    CUDA_CHECK(cudaEventRecord(s->copied[i], g.stream));
    s->used[i] = 1;
    return s->dev;
}

void *cuda_scratch(int slot, size_t bytes) {
    if (bytes <= g.scratch_cap[slot] && g.scratch[slot]) return g.scratch[slot];
    size_t cap = g.scratch_cap[slot] ? g.scratch_cap[slot] : 4096;
    while (cap < bytes) cap *= 2;
    dev_free(g.scratch[slot]);
    g.scratch_cap[slot] = 0;
    g.scratch[slot] = dev_malloc(cap);
    if (g.scratch[slot]) g.scratch_cap[slot] = cap;
    return g.scratch[slot];
}

/* ---- device, vtable, open/close ---- */

int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no device: not an error for the caller */
        return 0;
    }
    return n;
}

static void fill_vtable(Backend *be) {
    memset(be, 0, sizeof *be);
    be->name = "cuda";
    be->device = DEV_CUDA;
    be->status = backend_cuda_status;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->zero = cuda_zero;
    be->copy = cuda_copy;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->matmul = cuda_matmul;
    be->axpy = cuda_axpy;
    be->scale = cuda_scale;
    be->sumsq = cuda_sumsq;
    be->bias_fwd = cuda_bias_fwd;
    be->bias_bwd = cuda_bias_bwd;
    be->embedding_fwd = cuda_embedding_fwd;
    be->embedding_bwd = cuda_embedding_bwd;
    be->rmsnorm_fwd = cuda_rmsnorm_fwd;
    be->rmsnorm_bwd = cuda_rmsnorm_bwd;
    be->rope_fwd = cuda_rope_fwd;
    be->rope_bwd = cuda_rope_bwd;
    be->attention_saved = cuda_attention_saved;
    be->attention_fwd = cuda_attention_fwd;
    be->attention_bwd = cuda_attention_bwd;
    be->attention_decode = cuda_attention_decode;
    be->swiglu_fwd = cuda_swiglu_fwd;
    be->swiglu_bwd = cuda_swiglu_bwd;
    be->xent_fwd = cuda_xent_fwd;
    be->xent_bwd = cuda_xent_bwd;
    be->dropout_fwd = cuda_dropout_fwd;
    be->dropout_bwd = cuda_dropout_bwd;
    be->adamw = cuda_adamw;
}

/* Undoes whatever part of open succeeded. */
static void teardown(void) {
    if (g.stream) cudaStreamSynchronize(g.stream);
    for (int i = 0; i < CUDA_STAGE_COUNT; i++) stage_release(&g.stage[i]);
    for (int i = 0; i < CUDA_SCRATCH_COUNT; i++) {
        dev_free(g.scratch[i]);
        g.scratch[i] = NULL;
        g.scratch_cap[i] = 0;
    }
    if (g.blas) cublasDestroy(g.blas);
    if (g.stream) cudaStreamDestroy(g.stream);
    g.blas = NULL;
    g.stream = NULL;
    g.open = 0;
}

PeftcStatus backend_cuda_open(const Backend **out, int local_rank) {
    *out = NULL;
    if (g.open) {
        *out = &g.vtable; /* one device and one stream per process */
        return PEFTC_OK;
    }
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return PEFTC_ERR(PEFTC_EINVAL, "backend cuda: no usable GPU (cudaGetDeviceCount: %s)",
                         e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (local_rank < 0) return PEFTC_ERR(PEFTC_EINVAL, "backend cuda: local rank must be >= 0, got %d", local_rank);
    g.device = local_rank % n;
    e = cudaSetDevice(g.device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        teardown();
        return PEFTC_ERR(PEFTC_EINVAL, "backend cuda: cannot use GPU %d of %d: %s", g.device, n, cudaGetErrorString(e));
    }
    cublasStatus_t bs = cublasCreate(&g.blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(g.blas, g.stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        teardown();
        return PEFTC_ERR(PEFTC_EINVAL, "backend cuda: cuBLAS initialisation failed on GPU %d: %s", g.device,
                         cublasGetStatusString(bs));
    }
    fill_vtable(&g.vtable);
    g.open = 1;
    g.err_set = 0;
    *out = &g.vtable;
    return PEFTC_OK;
}

void backend_cuda_close(void) {
    if (g.open) teardown();
}
