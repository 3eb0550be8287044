/* A read-only memory map of a whole file: loaders point into it instead of copying. */
#ifndef PEFTC_MAPPED_H
#define PEFTC_MAPPED_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

typedef struct {
    char path[512];
    const uint8_t *data; /* (size) bytes, or NULL for an empty file */
    size_t size;
} MappedFile;

/* EIO naming the path when the file cannot be opened or mapped. */
PeftcStatus mapped_open(MappedFile *f, const char *path);
void mapped_close(MappedFile *f);

#endif
