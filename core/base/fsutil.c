#include "core/base/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

PeftcStatus fs_mkdir_p(const char *path) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return PEFTC_ERR(PEFTC_EINVAL, "path too long: '%.64s...'", path);
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return PEFTC_ERR(PEFTC_EWRITE, "cannot create folder '%s': %s", buf, strerror(errno));
        if (c == '\0') return PEFTC_OK;
        *p = c;
    }
}

/* The rename is durable only once the folder's entry is on disk too. */
static void fsync_parent(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* tmp (already synced) replaces path; the folder entry is synced too. */
static PeftcStatus rename_durably(const char *tmp, const char *path) {
    if (rename(tmp, path) != 0)
        return PEFTC_ERR(PEFTC_EWRITE, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    fsync_parent(path);
    return PEFTC_OK;
}

PeftcStatus fs_atomic_open(const char *path, FILE **f) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    *f = fopen(tmp, "wb");
    if (!*f) return PEFTC_ERR(PEFTC_EWRITE, "cannot write '%s': %s", tmp, strerror(errno));
    return PEFTC_OK;
}

PeftcStatus fs_atomic_commit(const char *path, FILE *f, PeftcStatus st) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int err = errno;
    bad |= fclose(f) != 0;
    if (st == PEFTC_OK && bad) st = PEFTC_ERR(PEFTC_EWRITE, "cannot write '%s': %s", tmp, strerror(err));
    if (st == PEFTC_OK) st = rename_durably(tmp, path);
    if (st != PEFTC_OK) unlink(tmp);
    return st;
}

PeftcStatus fs_write_atomic(const char *path, const void *data, size_t n) {
    FILE *f;
    PEFTC_TRY(fs_atomic_open(path, &f));
    PeftcStatus st = PEFTC_OK;
    if (n && fwrite(data, 1, n, f) != n)
        st = PEFTC_ERR(PEFTC_EWRITE, "cannot write %zu bytes to '%s.tmp': %s", n, path, strerror(errno));
    return fs_atomic_commit(path, f, st);
}
