/* Flag parsing for the commands that are not driven by a run configuration (generate, export, merge):
 * "--name value" or "--name=value"; booleans are bare "--name". */
#ifndef PEFTC_FLAGS_H
#define PEFTC_FLAGS_H

#include <stddef.h>
#include <stdio.h>

#include "core/base/status.h"

typedef enum { FLAG_STR, FLAG_INT, FLAG_FLOAT, FLAG_BOOL } FlagType;

typedef struct {
    const char *name;   /* without the dashes */
    FlagType type;
    void *ptr;          /* char[size] | int | double | int */
    size_t size;        /* FLAG_STR buffer size */
    const char *help;
} Flag;

/* EINVAL naming the flag for unknown flags, missing or ill-typed values, and stray arguments. */
PeftcStatus flags_parse(const Flag *flags, int n, int argc, char **argv);
void flags_usage(const Flag *flags, int n, FILE *f);

#endif
