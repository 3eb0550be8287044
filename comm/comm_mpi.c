/* comm.h over MPI. Every Comm owns a duplicated communicator with MPI_ERRORS_RETURN, so MPI errors
 * come back as PEFTC_ECOMM values instead of aborting the job from inside the library. */
#include "comm/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "comm/comm_device.h"

/* Largest single message. Counts are int in MPI; staying well under 2 GiB per call also sidesteps
 * transports that mishandle messages near the int limit. Overridable so tests can force chunking. */
#ifndef PEFTC_COMM_CHUNK_BYTES
#define PEFTC_COMM_CHUNK_BYTES ((size_t)1 << 30)
#endif

#ifdef PEFTC_REAL_DOUBLE
#define PEFTC_MPI_REAL MPI_DOUBLE
#else
#define PEFTC_MPI_REAL MPI_FLOAT
#endif

struct Comm {
    MPI_Comm comm;
    int rank, size;
    int local_rank, local_size;
    uint64_t bytes_reduced;
    CommDevice *device; /* set by comm_use_device: comm_allreduce then reduces device memory */
};

/* MPI may be initialised and finalised once per process: we finalise only if we initialised it, and
 * only when the last Comm goes, so comm_init_self comms in tests do not end the world under it. */
static int g_we_initialised;
static int g_live_comms;

static PeftcStatus mpi_fail(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return PEFTC_ERR(PEFTC_ECOMM, "%s failed: %s (MPI error %d)", what, len ? msg : "unknown", rc);
}

static PeftcStatus ensure_mpi(int *argc, char ***argv) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized)
        return PEFTC_ERR(PEFTC_ESTATE, "MPI was already finalized in this process (the last Comm was freed); "
                                       "MPI cannot be started twice");
    if (inited) return PEFTC_OK;
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread");
    g_we_initialised = 1;
    if (provided < MPI_THREAD_FUNNELED)
        return PEFTC_ERR(PEFTC_ECOMM, "MPI provides thread level %d, need MPI_THREAD_FUNNELED (%d)", provided,
                         MPI_THREAD_FUNNELED);
    return PEFTC_OK;
}

/* Finalises MPI if we started it and nothing uses it any more. */
static void maybe_finalize(void) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (g_live_comms == 0 && g_we_initialised && !finalized) MPI_Finalize();
}

/* srun without PMI support starts SLURM_NTASKS processes that each become a singleton "rank 0 of 1":
 * the job would silently run N copies of the same training. A launcher that states the world size
 * itself (mpirun: OMPI_COMM_WORLD_SIZE; Hydra: PMI_SIZE) is trusted, since under mpirun the Slurm
 * variables describe its daemons' step, not the ranks. */
static PeftcStatus check_slurm_step(int world_size) {
    const char *ntasks = getenv("SLURM_NTASKS");
    int in_step = (getenv("SLURM_STEP_ID") || getenv("SLURM_STEPID")) && getenv("SLURM_PROCID");
    if (!ntasks || !in_step) return PEFTC_OK;
    const char *launcher[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof launcher / sizeof *launcher; i++) {
        const char *v = getenv(launcher[i]);
        if (v && atoi(v) == world_size) return PEFTC_OK;
    }
    int n = atoi(ntasks);
    if (n == world_size) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_ECOMM,
                     "SLURM_NTASKS=%d but the MPI world has %d rank(s): srun started %d independent processes "
                     "instead of one %d-rank job (srun lacks PMI/PMIx support for this MPI). "
                     "Launch with `srun --mpi=pmix` (see `srun --mpi=list`) or with mpirun",
                     n, world_size, n, n);
}

/* Takes ownership of `mc` (a fresh dup) and fills in the rank layout. */
static PeftcStatus comm_wrap(Comm **out, MPI_Comm mc) {
    Comm *c = calloc(1, sizeof *c);
    if (!c) {
        MPI_Comm_free(&mc);
        return PEFTC_ERR(PEFTC_ENOMEM, "comm: out of memory");
    }
    c->comm = mc;
    int rc = MPI_Comm_set_errhandler(mc, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(mc, &c->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(mc, &c->size);
    MPI_Comm node = MPI_COMM_NULL;
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split_type(mc, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(node, &c->local_rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(node, &c->local_size);
    if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(&c->comm);
        free(c);
        return mpi_fail(rc, "comm setup (rank layout)");
    }
    g_live_comms++;
    *out = c;
    return PEFTC_OK;
}

static PeftcStatus comm_init_on(Comm **out, int *argc, char ***argv, MPI_Comm base, int check_slurm) {
    if (!out) return PEFTC_ERR(PEFTC_EINVAL, "comm_init: out must not be NULL");
    *out = NULL;
    PeftcStatus st = ensure_mpi(argc, argv);
    if (st == PEFTC_OK && check_slurm) {
        int size = 0;
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        st = check_slurm_step(size);
    }
    if (st == PEFTC_OK) {
        MPI_Comm mc;
        int rc = MPI_Comm_dup(base, &mc);
        st = rc == MPI_SUCCESS ? comm_wrap(out, mc) : mpi_fail(rc, "MPI_Comm_dup");
    }
    if (st != PEFTC_OK) maybe_finalize(); /* the caller will exit; leave MPI in a clean state */
    return st;
}

PeftcStatus comm_init(Comm **out, int *argc, char ***argv) { return comm_init_on(out, argc, argv, MPI_COMM_WORLD, 1); }

PeftcStatus comm_init_self(Comm **out) { return comm_init_on(out, NULL, NULL, MPI_COMM_SELF, 0); }

void comm_free(Comm *c) {
    if (!c) return;
    if (c->device) c->device->destroy(c->device);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&c->comm);
    free(c);
    g_live_comms--;
    maybe_finalize();
}

int comm_rank(const Comm *c) { return c->rank; }
int comm_size(const Comm *c) { return c->size; }
int comm_local_rank(const Comm *c) { return c->local_rank; }
int comm_local_size(const Comm *c) { return c->local_size; }
uint64_t comm_bytes_reduced(const Comm *c) { return c->bytes_reduced; }
CommDevice **comm_device_slot(Comm *c) { return &c->device; }

static PeftcStatus check_args(const Comm *c, const void *buf, size_t n, const char *what) {
    if (!c) return PEFTC_ERR(PEFTC_EINVAL, "%s: comm must not be NULL", what);
    if (!buf && n) return PEFTC_ERR(PEFTC_EINVAL, "%s: buffer is NULL with count %zu", what, n);
    return PEFTC_OK;
}

/* In-place reduction of n elements of `type` (elem bytes each), in chunks that fit an int count. */
static PeftcStatus reduce_chunks(Comm *c, void *buf, size_t n, size_t elem, MPI_Datatype type, CommOp op) {
    MPI_Op mop;
    switch (op) {
    case COMM_SUM:
    case COMM_MEAN: mop = MPI_SUM; break;
    case COMM_MAX: mop = MPI_MAX; break;
    default:
        return PEFTC_ERR(PEFTC_EINVAL, "comm_allreduce: op must be COMM_SUM, COMM_MEAN or COMM_MAX, got %d", (int)op);
    }
    size_t chunk = PEFTC_COMM_CHUNK_BYTES / elem;
    if (chunk == 0) chunk = 1;
    if (chunk > INT_MAX) chunk = INT_MAX;
    char *p = buf;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < chunk ? n - done : chunk;
        int rc = MPI_Allreduce(MPI_IN_PLACE, p + done * elem, (int)k, type, mop, c->comm);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce");
        done += k;
    }
    return PEFTC_OK;
}

PeftcStatus comm_allreduce(Comm *c, real_t *buf, size_t n, CommOp op) {
    PEFTC_TRY(check_args(c, buf, n, "comm_allreduce"));
    if (c->device) {
        PEFTC_TRY(c->device->allreduce(c->device, buf, n, op));
        c->bytes_reduced += (uint64_t)n * sizeof *buf;
        return PEFTC_OK;
    }
    PEFTC_TRY(reduce_chunks(c, buf, n, sizeof *buf, PEFTC_MPI_REAL, op));
    /* Division, not a reciprocal multiply: the mean of integer-valued data stays exact. */
    if (op == COMM_MEAN && c->size > 1)
        for (size_t i = 0; i < n; i++) buf[i] /= (real_t)c->size;
    c->bytes_reduced += (uint64_t)n * sizeof *buf;
    return PEFTC_OK;
}

PeftcStatus comm_allreduce_f64(Comm *c, double *buf, size_t n, CommOp op) {
    PEFTC_TRY(check_args(c, buf, n, "comm_allreduce_f64"));
    PEFTC_TRY(reduce_chunks(c, buf, n, sizeof *buf, MPI_DOUBLE, op));
    if (op == COMM_MEAN && c->size > 1)
        for (size_t i = 0; i < n; i++) buf[i] /= (double)c->size;
    return PEFTC_OK;
}

PeftcStatus comm_bcast(Comm *c, void *buf, size_t bytes, int root) {
    PEFTC_TRY(check_args(c, buf, bytes, "comm_bcast"));
    if (root < 0 || root >= c->size)
        return PEFTC_ERR(PEFTC_EINVAL, "comm_bcast: root must be in [0, %d), got %d", c->size, root);
    size_t chunk = PEFTC_COMM_CHUNK_BYTES > INT_MAX ? INT_MAX : PEFTC_COMM_CHUNK_BYTES;
    char *p = buf;
    for (size_t done = 0; done < bytes;) {
        size_t k = bytes - done < chunk ? bytes - done : chunk;
        int rc = MPI_Bcast(p + done, (int)k, MPI_BYTE, root, c->comm);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast");
        done += k;
    }
    return PEFTC_OK;
}

PeftcStatus comm_barrier(Comm *c) {
    if (!c) return PEFTC_ERR(PEFTC_EINVAL, "comm_barrier: comm must not be NULL");
    int rc = MPI_Barrier(c->comm);
    return rc == MPI_SUCCESS ? PEFTC_OK : mpi_fail(rc, "MPI_Barrier");
}

PeftcStatus comm_agree(Comm *c, PeftcStatus local) {
    if (!c) return PEFTC_ERR(PEFTC_EINVAL, "comm_agree: comm must not be NULL");
    /* One reduction carries both facts: the worst code, and (negated, so MAX finds the minimum) the
     * lowest rank that failed; -INT_MAX stands for "none". */
    int v[2] = {(int)local, local != PEFTC_OK ? -c->rank : -INT_MAX};
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, c->comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "comm_agree (MPI_Allreduce)");
    if (v[0] == PEFTC_OK) return PEFTC_OK;
    if (local != PEFTC_OK) return local; /* keep this rank's own message */
    PeftcStatus st = PEFTC_ERR(PEFTC_ECOMM, "rank %d of %d failed (worst status on any rank: %s); see that rank's "
                               "message", -v[1], c->size, peftc_status_name((PeftcStatus)v[0]));
    peftc_err_set_cause((PeftcStatus)v[0]);
    return st;
}
