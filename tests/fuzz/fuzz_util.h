/* Shared by the harnesses: the loaders under test take paths, so each input is written to a file in a
 * folder of this process's own (/dev/shm when present: no disk writes at thousands of inputs a second),
 * removed at exit. */
#ifndef PEFTC_FUZZ_UTIL_H
#define PEFTC_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The folder's path, created on first use. */
const char *fuzz_dir(void);

/* Writes size bytes to fuzz_dir()/name and returns its path (static storage, one per name slot:
 * valid until the next call with the same name). Aborts on an I/O error, which is not the input's fault. */
const char *fuzz_write(const char *name, const uint8_t *data, size_t size);

/* Returns st. With FUZZ_DEBUG set in the environment, prints what a failing call reported (to see how
 * far a seed gets); silent otherwise, so a campaign's output is the fuzzer's own. */
#include "core/base/status.h"
PeftcStatus fuzz_note(PeftcStatus st, const char *what);

/* Copies a fixture file (at most 1 MiB) to fuzz_dir()/name, for the files a harness does not vary.
 * Aborts if it cannot be read whole. */
void fuzz_copy(const char *from, const char *name);

/* Removes fuzz_dir()/name if present. */
void fuzz_remove(const char *name);

#endif
