/* A training run's checkpoints: when to write them, where, how many to keep, and resuming.
 *
 * <checkpoint.folder>/step_N.h5 files (core/train/checkpoint.h) and a `latest` file naming the newest, both
 * replaced atomically, so a job killed at any moment leaves `latest` naming a complete file. Rank 0
 * writes; every rank reads (the folder is on a filesystem all ranks see, as output.dir is).
 *
 * Checkpoints are written every checkpoint.every steps, every checkpoint.minutes, at the end when
 * either is set, and whenever a preemption signal arrived (launch/signals.h): the ranks agree on the
 * signal at each step boundary with one small all-reduce, so they stop at the same step. */
#ifndef PEFTC_CKPT_RUN_H
#define PEFTC_CKPT_RUN_H

#include "launch/session.h"

typedef struct {
    Session *s;
    Comm *comm;
    char base_hash[64];  /* identity of model.path (rank 0) */
    double last_save;    /* clock seconds of the last checkpoint (or of the start) */
    int64_t saved_step;  /* step of the newest checkpoint written by this run, -1 none */
    int preempted;       /* a signal stopped the run after its checkpoint */
    /* Rank 0's reporting (metrics file): a failure there stops every rank at the step it happened.
     * NULL on the other ranks. */
    const PeftcStatus *report_status;
} CkptRun;

/* Installs the signal handlers and takes the base model's identity. Collective. */
PeftcStatus ckpt_run_init(CkptRun *r, Session *s, Comm *comm);

/* Installs the trainer's step hook that checkpoints and stops. Call right before trainer_run: RoSA's
 * restart rebuilds the trainer, and the steps of its mask schedule are not checkpointed. */
void ckpt_run_attach(CkptRun *r);

/* checkpoint.resume: "" does nothing; "auto" loads the newest checkpoint that verifies (reporting
 * and skipping corrupt ones; none means a fresh start); a path loads that file or fails. Refuses a
 * checkpoint of another base model, method, adapter layout or global batch. On success *step is the
 * step resumed at (0 for a fresh start). Collective. */
PeftcStatus ckpt_run_resume(CkptRun *r, int64_t *step);

/* Writes a checkpoint of the trainer's current state now (rank 0) and updates `latest`. Collective. */
PeftcStatus ckpt_run_save(CkptRun *r);

#endif
