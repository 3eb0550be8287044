/* Private to comm/: the hook through which comm_nccl.c makes a Comm reduce device memory. The Comm
 * struct is private to comm_mpi.c / comm_serial.c; each keeps one CommDevice pointer that
 * comm_allreduce hands the buffer to when it is set, and that comm_free destroys. */
#ifndef PEFTC_COMM_DEVICE_H
#define PEFTC_COMM_DEVICE_H

#include "comm/comm.h"

typedef struct CommDevice CommDevice;

struct CommDevice {
    /* In-place all-reduce of n real_t in device memory; returns once the host may read the result. */
    PeftcStatus (*allreduce)(CommDevice *d, real_t *buf, size_t n, CommOp op);
    void (*destroy)(CommDevice *d);
};

/* The Comm's device slot: NULL until comm_use_device fills it; the Comm owns what it points to. */
CommDevice **comm_device_slot(Comm *c);

#endif
