/* String tests used across layers (file names, tensor names). */
#ifndef PEFTC_STR_H
#define PEFTC_STR_H

#include <string.h>

/* s ends with suffix (an empty suffix always matches). */
static inline int str_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

#endif
