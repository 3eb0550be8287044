/* comm_use_device: comm_allreduce over NCCL on the CUDA backend's memory, so gradients never travel
 * through the host. The NCCL communicator is bootstrapped over the Comm itself (rank 0's unique id
 * goes out by comm_bcast), which works alike over MPI and over the serial world of one.
 *
 * Built only into peftc_core, and only when the CUDA backend is (PEFTC_WITH_CUDA); the double build
 * and CUDA-less builds get the EINVAL comm_use_device of comm_mpi.c / comm_serial.c instead. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <limits.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/comm_device.h"

_Static_assert(sizeof(real_t) == sizeof(float), "device reductions are ncclFloat32: real_t must be float");

typedef struct {
    CommDevice base; /* first, so comm_mpi.c / comm_serial.c can hold it as a CommDevice */
    ncclComm_t nccl;
    cudaStream_t stream; /* the CUDA backend's: reductions queue behind the kernels that made the data */
    cublasHandle_t blas; /* COMM_MEAN's scaling; created only when size > 1 */
    int size;
} NcclDevice;

static PeftcStatus cuda_fail(cudaError_t e, const char *what) {
    return PEFTC_ERR(PEFTC_ECOMM, "%s failed: %s (CUDA error %d)", what, cudaGetErrorString(e), (int)e);
}

static PeftcStatus nccl_fail(ncclResult_t r, const char *what, ncclComm_t comm) {
    const char *detail = ncclGetLastError(comm); /* NULL comm: the last error of any communicator */
    return PEFTC_ERR(PEFTC_ECOMM, "%s failed: %s (NCCL error %d)%s%s", what, ncclGetErrorString(r), (int)r,
                     detail && *detail ? ": " : "", detail ? detail : "");
}

/* A host pointer handed to NCCL faults on the device or corrupts memory; name the mistake instead. */
static PeftcStatus check_device_buffer(const real_t *buf) {
    struct cudaPointerAttributes attr;
    cudaError_t e = cudaPointerGetAttributes(&attr, buf);
    if (e != cudaSuccess) return cuda_fail(e, "comm_allreduce: cudaPointerGetAttributes");
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
        return PEFTC_ERR(PEFTC_EINVAL,
                         "comm_allreduce: buffer %p is not device memory, but comm_use_device made this Comm "
                         "reduce the CUDA backend's memory (use comm_allreduce_f64 or a Comm without a device "
                         "for host buffers)",
                         (const void *)buf);
    return PEFTC_OK;
}

/* buf(n) *= 1/size on the stream. A reciprocal multiply, unlike the host path's division: exact for
 * power-of-two world sizes, within one rounding otherwise, and no kernel of our own in this C file. */
static PeftcStatus scale_mean(NcclDevice *d, real_t *buf, size_t n) {
    const float inv = 1.0f / (float)d->size;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < (size_t)INT_MAX ? n - done : (size_t)INT_MAX;
        cublasStatus_t s = cublasSscal(d->blas, (int)k, &inv, buf + done, 1);
        if (s != CUBLAS_STATUS_SUCCESS)
            return PEFTC_ERR(PEFTC_ECOMM, "comm_allreduce (COMM_MEAN): cublasSscal failed: %s",
                             cublasGetStatusString(s));
        done += k;
    }
    return PEFTC_OK;
}

static PeftcStatus nccl_allreduce(CommDevice *base, real_t *buf, size_t n, CommOp op) {
    /* buf (n) device memory */
    NcclDevice *d = (NcclDevice *)base;
    if (op != COMM_SUM && op != COMM_MEAN && op != COMM_MAX)
        return PEFTC_ERR(PEFTC_EINVAL, "comm_allreduce: op must be COMM_SUM, COMM_MEAN or COMM_MAX, got %d", (int)op);
    if (n == 0) return PEFTC_OK;
    PEFTC_TRY(check_device_buffer(buf));
    if (!d->stream) {
        /* The legacy default stream does not wait for non-blocking streams such as the backend's. */
        cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess) return cuda_fail(e, "comm_allreduce: cudaDeviceSynchronize before ncclAllReduce");
    }
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, op == COMM_MAX ? ncclMax : ncclSum, d->nccl, d->stream);
    if (r != ncclSuccess) return nccl_fail(r, "ncclAllReduce", d->nccl);
    if (op == COMM_MEAN && d->size > 1) PEFTC_TRY(scale_mean(d, buf, n));
    cudaError_t e = cudaStreamSynchronize(d->stream);
    if (e != cudaSuccess) return cuda_fail(e, "comm_allreduce: cudaStreamSynchronize after ncclAllReduce");
    return PEFTC_OK;
}

static void nccl_destroy(CommDevice *base) {
    NcclDevice *d = (NcclDevice *)base;
    if (d->nccl) ncclCommDestroy(d->nccl);
    if (d->blas) cublasDestroy(d->blas);
    free(d);
}

/* This rank's part before any collective: device selection and allocation. NCCL refuses two ranks on
 * one GPU, so a node with more ranks than GPUs is an error here rather than an NCCL abort later. */
static PeftcStatus prepare(Comm *c, int device_local_rank, NcclDevice **out) {
    if (*comm_device_slot(c))
        return PEFTC_ERR(PEFTC_ESTATE, "comm_use_device: this Comm already reduces device memory");
    if (device_local_rank < 0)
        return PEFTC_ERR(PEFTC_EINVAL, "comm_use_device: device_local_rank must be >= 0, got %d", device_local_rank);
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
        return PEFTC_ERR(PEFTC_EINVAL, "comm_use_device: no CUDA device is visible on this node (rank %d)",
                         comm_rank(c));
    if (comm_local_size(c) > count)
        return PEFTC_ERR(PEFTC_EINVAL,
                         "comm_use_device: %d ranks on this node but %d GPU(s) visible; NCCL needs one GPU per "
                         "rank: start at most %d ranks per node",
                         comm_local_size(c), count, count);
    cudaError_t e = cudaSetDevice(device_local_rank % count);
    if (e != cudaSuccess) return cuda_fail(e, "comm_use_device: cudaSetDevice");
    *out = calloc(1, sizeof **out);
    return *out ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "comm_use_device: out of memory");
}

static PeftcStatus make_id(Comm *c, ncclUniqueId *id) {
    memset(id, 0, sizeof *id);
    if (comm_rank(c) != 0) return PEFTC_OK;
    ncclResult_t r = ncclGetUniqueId(id);
    return r == ncclSuccess ? PEFTC_OK : nccl_fail(r, "ncclGetUniqueId", NULL);
}

static PeftcStatus nccl_connect(NcclDevice *d, Comm *c, ncclUniqueId id, void *cuda_stream) {
    d->base.allreduce = nccl_allreduce;
    d->base.destroy = nccl_destroy;
    d->stream = (cudaStream_t)cuda_stream;
    d->size = comm_size(c);
    ncclResult_t r = ncclCommInitRank(&d->nccl, d->size, id, comm_rank(c));
    if (r != ncclSuccess) {
        d->nccl = NULL;
        return nccl_fail(r, "comm_use_device: ncclCommInitRank", NULL);
    }
    if (d->size > 1) {
        cublasStatus_t s = cublasCreate(&d->blas);
        if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(d->blas, d->stream);
        if (s != CUBLAS_STATUS_SUCCESS)
            return PEFTC_ERR(PEFTC_ECOMM, "comm_use_device: cuBLAS setup failed: %s", cublasGetStatusString(s));
    }
    return PEFTC_OK;
}

/* Every step is agreed, so a rank that fails locally makes all ranks return instead of leaving the
 * others blocked in the broadcast or in ncclCommInitRank. */
PeftcStatus comm_use_device(Comm *c, int device_local_rank, void *cuda_stream) {
    if (!c) return PEFTC_ERR(PEFTC_EINVAL, "comm_use_device: comm must not be NULL");
    NcclDevice *d = NULL;
    ncclUniqueId id;
    PeftcStatus st = comm_agree(c, prepare(c, device_local_rank, &d));
    if (st == PEFTC_OK) st = comm_agree(c, make_id(c, &id));
    if (st == PEFTC_OK) st = comm_bcast(c, &id, sizeof id, 0);
    if (st == PEFTC_OK) st = comm_agree(c, nccl_connect(d, c, id, cuda_stream));
    if (st != PEFTC_OK) {
        if (d) nccl_destroy(&d->base);
        return st;
    }
    *comm_device_slot(c) = &d->base;
    return PEFTC_OK;
}
