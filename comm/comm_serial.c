/* comm.h for builds without MPI: every Comm is a world of one, so collectives are identities. Bytes
 * are still counted so the per-step log reads the same in both builds. */
#include "comm/comm.h"

#include <stdlib.h>

#include "comm/comm_device.h"

struct Comm {
    uint64_t bytes_reduced;
    CommDevice *device; /* set by comm_use_device: comm_allreduce then reduces device memory */
};

/* Without MPI, `srun -n N` would start N lone copies of the same run; refuse rather than train N times. */
static PeftcStatus check_slurm_step(void) {
    const char *ntasks = getenv("SLURM_NTASKS");
    int in_step = (getenv("SLURM_STEP_ID") || getenv("SLURM_STEPID")) && getenv("SLURM_PROCID");
    if (!ntasks || !in_step || atoi(ntasks) <= 1) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_ECOMM,
                     "SLURM_NTASKS=%s but this peftc was built without MPI (PEFTC_WITH_MPI=OFF): srun started %s "
                     "independent single-process runs. Rebuild with PEFTC_WITH_MPI=ON, or run one task",
                     ntasks, ntasks);
}

static PeftcStatus comm_new(Comm **out) {
    if (!out) return PEFTC_ERR(PEFTC_EINVAL, "comm_init: out must not be NULL");
    *out = calloc(1, sizeof **out);
    return *out ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "comm: out of memory");
}

PeftcStatus comm_init(Comm **out, int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (out) *out = NULL;
    PEFTC_TRY(check_slurm_step());
    return comm_new(out);
}

PeftcStatus comm_init_self(Comm **out) { return comm_new(out); }

void comm_free(Comm *c) {
    if (c && c->device) c->device->destroy(c->device);
    free(c);
}

CommDevice **comm_device_slot(Comm *c) { return &c->device; }

int comm_rank(const Comm *c) { return (void)c, 0; }
int comm_size(const Comm *c) { return (void)c, 1; }
int comm_local_rank(const Comm *c) { return (void)c, 0; }
int comm_local_size(const Comm *c) { return (void)c, 1; }
uint64_t comm_bytes_reduced(const Comm *c) { return c->bytes_reduced; }

static PeftcStatus check_op(const Comm *c, const void *buf, size_t n, CommOp op, const char *what) {
    if (!c) return PEFTC_ERR(PEFTC_EINVAL, "%s: comm must not be NULL", what);
    if (!buf && n) return PEFTC_ERR(PEFTC_EINVAL, "%s: buffer is NULL with count %zu", what, n);
    if (op != COMM_SUM && op != COMM_MEAN && op != COMM_MAX)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: op must be COMM_SUM, COMM_MEAN or COMM_MAX, got %d", what, (int)op);
    return PEFTC_OK;
}

/* Sum, mean (divide by 1) and max over one rank all leave the buffer as it is. */
PeftcStatus comm_allreduce(Comm *c, real_t *buf, size_t n, CommOp op) {
    PEFTC_TRY(check_op(c, buf, n, op, "comm_allreduce"));
    if (c->device) PEFTC_TRY(c->device->allreduce(c->device, buf, n, op));
    c->bytes_reduced += (uint64_t)n * sizeof *buf;
    return PEFTC_OK;
}

PeftcStatus comm_allreduce_f64(Comm *c, double *buf, size_t n, CommOp op) {
    return check_op(c, buf, n, op, "comm_allreduce_f64");
}

PeftcStatus comm_bcast(Comm *c, void *buf, size_t bytes, int root) {
    if (!c) return PEFTC_ERR(PEFTC_EINVAL, "comm_bcast: comm must not be NULL");
    if (!buf && bytes) return PEFTC_ERR(PEFTC_EINVAL, "comm_bcast: buffer is NULL with %zu bytes", bytes);
    if (root != 0) return PEFTC_ERR(PEFTC_EINVAL, "comm_bcast: root must be 0 in a world of one, got %d", root);
    return PEFTC_OK;
}

PeftcStatus comm_barrier(Comm *c) {
    return c ? PEFTC_OK : PEFTC_ERR(PEFTC_EINVAL, "comm_barrier: comm must not be NULL");
}

/* The only rank's status is already the worst one; its message stays as recorded. */
PeftcStatus comm_agree(Comm *c, PeftcStatus local) {
    if (!c) return PEFTC_ERR(PEFTC_EINVAL, "comm_agree: comm must not be NULL");
    return local;
}
