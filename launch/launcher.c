/* Launcher watch (see launcher.h). */
#define _GNU_SOURCE /* pthread_setname_np */
#include "launch/launcher.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pid_t launcher_pid;

static int under_launcher(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") || getenv("SLURM_STEP_ID");
}

static void *watch(void *arg) {
    (void)arg;
    const struct timespec period = {0, 200 * 1000000L};
    for (;;) {
        nanosleep(&period, NULL);
        if (getppid() == launcher_pid) continue;
        static const char msg[] = "peftc: error: the launcher of this rank (mpirun, orted or srun) is gone; "
                                  "exiting so no orphaned rank keeps writing\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)ignored;
        _exit(1);
    }
    return NULL;
}

void launcher_watch_start(void) {
    if (launcher_pid || !under_launcher()) return;
    launcher_pid = getppid();
    if (launcher_pid <= 1) return; /* already orphaned or a child of init: nothing to watch */
    pthread_t t;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, watch, NULL) == 0) pthread_setname_np(t, "peftc-watch");
    pthread_attr_destroy(&attr);
}
