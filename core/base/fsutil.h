/* Small filesystem helpers shared by every writer: folders, and files that appear whole or not at all. */
#ifndef PEFTC_FSUTIL_H
#define PEFTC_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

#include "core/base/status.h"

/* mkdir -p; EIO naming the path that could not be created. */
PeftcStatus fs_mkdir_p(const char *path);

/* Writes n bytes to path atomically: path.tmp, fsync, rename over path, fsync the folder. A reader
 * sees either the old file or the complete new one. */
PeftcStatus fs_write_atomic(const char *path, const void *data, size_t n);

/* Same for content produced in pieces: open returns a FILE* on path.tmp; commit flushes, fsyncs,
 * closes and renames (or removes the temporary on failure, then returns the failure). */
PeftcStatus fs_atomic_open(const char *path, FILE **f);
PeftcStatus fs_atomic_commit(const char *path, FILE *f, PeftcStatus st);

#endif
