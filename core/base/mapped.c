#include "core/base/mapped.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

PeftcStatus mapped_open(MappedFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return PEFTC_ERR(PEFTC_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return PEFTC_ERR(PEFTC_EIO, "cannot stat '%s': %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return PEFTC_ERR(PEFTC_EIO, "'%s' is not a regular file", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size == 0) { /* mmap rejects length 0; an empty file is still a valid (empty) map */
        close(fd);
        return PEFTC_OK;
    }
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd); /* the mapping keeps the file referenced */
    if (p == MAP_FAILED) {
        f->size = 0;
        return PEFTC_ERR(PEFTC_EIO, "cannot map '%s' (%zu bytes): %s", path, (size_t)st.st_size, strerror(err));
    }
    f->data = p;
    return PEFTC_OK;
}

void mapped_close(MappedFile *f) {
    if (f->data) munmap((void *)f->data, f->size);
    memset(f, 0, sizeof *f);
}
