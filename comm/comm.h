/* Collectives over one flat buffer. Knows nothing of models.
 *
 * Under `mpirun` or `srun` each process is one rank of MPI_COMM_WORLD; a process started on its own
 * is a world of one and needs no launcher. Built without MPI (PEFTC_WITH_MPI=OFF), every Comm is a
 * world of one. */
#ifndef PEFTC_COMM_H
#define PEFTC_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/real.h"
#include "core/base/status.h"

typedef enum { COMM_SUM = 0, COMM_MEAN = 1, COMM_MAX = 2 } CommOp;

typedef struct Comm Comm;

/* Initialises MPI if it is not yet initialised (thread level FUNNELED) and returns the world
 * communicator. Checks that a Slurm step started as many ranks as it asked for (SLURM_NTASKS), so a
 * missing PMI that would start N lone "rank 0 of 1" processes is an error, not a silent N-fold job. */
PeftcStatus comm_init(Comm **out, int *argc, char ***argv);

/* A world of one on this process alone (MPI_COMM_SELF when MPI is present). Used for reference runs
 * inside multi-rank tests. */
PeftcStatus comm_init_self(Comm **out);

/* Frees the communicator; finalizes MPI if comm_init initialised it and this is the last Comm. */
void comm_free(Comm *c);

int comm_rank(const Comm *c);
int comm_size(const Comm *c);
int comm_local_rank(const Comm *c); /* rank among the ranks on this node */
int comm_local_size(const Comm *c);

/* In-place all-reduce of n real_t values. COMM_MEAN divides by the world size after summing. */
PeftcStatus comm_allreduce(Comm *c, real_t *buf, size_t n, CommOp op);
/* In-place all-reduce of n doubles (statistics: loss sums, token counts). */
PeftcStatus comm_allreduce_f64(Comm *c, double *buf, size_t n, CommOp op);
/* Broadcast of `bytes` raw bytes from `root`. */
PeftcStatus comm_bcast(Comm *c, void *buf, size_t bytes, int root);
PeftcStatus comm_barrier(Comm *c);

/* Agreed error: every rank passes its local status and all get back the worst one (the maximum
 * code), so ranks leave together instead of one hanging in a collective. If another rank failed
 * while this one did not, the result is PEFTC_ECOMM with a message naming the first failing rank. */
PeftcStatus comm_agree(Comm *c, PeftcStatus local);

/* Total bytes this Comm has moved through comm_allreduce since creation (for the per-step log). */
uint64_t comm_bytes_reduced(const Comm *c);

/* Switches comm_allreduce on `c` to DEVICE memory of the CUDA backend: from now on it runs
 * ncclAllReduce (fp32; COMM_MEAN sums, then scales by 1/size) and returns once the result is readable.
 * `cuda_stream` is a cudaStream_t: pass the stream the CUDA backend's ops run on, so the reduction is
 * ordered after the kernels that wrote the buffer (NULL: the legacy default stream, after a
 * cudaDeviceSynchronize, since that stream does not wait for non-blocking ones). `device_local_rank` picks the GPU
 * (modulo the device count), which must be the one the rank's CUDA instance was created on. Collective:
 * every rank of `c` calls it; the NCCL id travels by comm_bcast.
 * comm_allreduce_f64, comm_bcast and comm_agree keep taking host memory. comm_free releases NCCL, so
 * free the Comm before closing the backend. EINVAL when this build has no CUDA backend or no GPU is
 * visible, ESTATE when `c` already reduces device memory, ECOMM when NCCL fails. */
PeftcStatus comm_use_device(Comm *c, int device_local_rank, void *cuda_stream);

#endif
