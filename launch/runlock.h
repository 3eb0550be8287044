/* One run per folder. Two runs writing one output.dir or checkpoint.folder interleave their metrics
 * rows, overwrite each other's config.yaml and race on `latest`. Rank 0 holds an exclusive flock on
 * <folder>/.peftc.lock for the whole run; the kernel drops it when the process ends in any way (a
 * crash, SIGKILL, a lost node's job killed by Slurm), so a requeued job is never locked out by a
 * stale file. The file names its holder (pid, host, start time) for the refusal message. flock works
 * across hosts on NFS (Linux emulates it with POSIX locks) and on Lustre mounted with -o flock. */
#ifndef PEFTC_RUNLOCK_H
#define PEFTC_RUNLOCK_H

#include "core/base/status.h"

typedef struct {
    int fd[2]; /* -1 when not held */
} RunLock;

/* Marks l as holding nothing. */
void runlock_init(RunLock *l);
/* Creates folder `dir` if needed and locks it; `key` is the configuration key that named it (for the
 * message). Retries for a few seconds, so a run whose predecessor's ranks are still exiting waits for
 * them, then fails with PEFTC_EBUSY naming the holder. */
PeftcStatus runlock_take(RunLock *l, const char *dir, const char *key);
/* Releases every lock l holds (also done by the kernel at exit). */
void runlock_release(RunLock *l);

#endif
