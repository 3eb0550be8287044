/* Folder locks (see runlock.h). */
#include "launch/runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "core/base/fsutil.h"

enum { LOCK_WAIT_MS = 3000, LOCK_POLL_MS = 100 };

void runlock_init(RunLock *l) { l->fd[0] = l->fd[1] = -1; }

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* "pid 123 on host node7 since 2026-12-02T20:15:01Z", written by the holder. */
static void write_holder(int fd) {
    char host[256] = "?", when[32] = "?", text[400];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(text, sizeof text, "pid %ld on host %s since %s\n", (long)getpid(), host, when);
    /* Best effort: the lock is what matters, the text only explains a refusal. */
    if (ftruncate(fd, 0) == 0 && pwrite(fd, text, (size_t)n, 0) == n) return;
}

static void read_holder(int fd, char *out, size_t cap) {
    ssize_t n = pread(fd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    if (!out[0]) snprintf(out, cap, "a process that has not said who it is yet");
}

static PeftcStatus lock_one(int *slot, const char *dir, const char *key) {
    PEFTC_TRY(fs_mkdir_p(dir));
    char path[1100];
    snprintf(path, sizeof path, "%s/.peftc.lock", dir);
    /* Close-on-exec: a child process (a launcher's helper) must not keep the lock alive. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return PEFTC_ERR(PEFTC_EWRITE, "%s '%s': cannot create the lock file '%s': %s", key, dir, path,
                                 strerror(errno));
    for (int waited = 0;; waited += LOCK_POLL_MS) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
        if (errno != EWOULDBLOCK || waited >= LOCK_WAIT_MS) {
            int err = errno;
            char holder[300];
            read_holder(fd, holder, sizeof holder);
            close(fd);
            if (err != EWOULDBLOCK)
                return PEFTC_ERR(PEFTC_EWRITE, "%s '%s': cannot lock '%s': %s", key, dir, path, strerror(err));
            return PEFTC_ERR(PEFTC_EBUSY, "%s '%s' is in use by another peftc run (%s); give each run its own %s, "
                             "or wait for that run to end", key, dir, holder, key);
        }
        sleep_ms(LOCK_POLL_MS);
    }
    write_holder(fd);
    *slot = fd;
    return PEFTC_OK;
}

PeftcStatus runlock_take(RunLock *l, const char *dir, const char *key) {
    int i = l->fd[0] < 0 ? 0 : 1;
    if (l->fd[i] >= 0) return PEFTC_ERR(PEFTC_ESTATE, "runlock: already holding two folders");
    return lock_one(&l->fd[i], dir, key);
}

void runlock_release(RunLock *l) {
    for (int i = 0; i < 2; i++) {
        if (l->fd[i] >= 0) close(l->fd[i]); /* closing drops the flock */
        l->fd[i] = -1;
    }
}
