#include "launch/flags.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const Flag *find(const Flag *flags, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0) return &flags[i];
    return NULL;
}

static PeftcStatus set_value(const Flag *f, const char *v) {
    char *end;
    errno = 0;
    switch (f->type) {
    case FLAG_STR:
        if (strlen(v) >= f->size) return PEFTC_ERR(PEFTC_EINVAL, "--%s: value longer than %zu bytes", f->name, f->size - 1);
        memcpy(f->ptr, v, strlen(v) + 1);
        return PEFTC_OK;
    case FLAG_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L)
            return PEFTC_ERR(PEFTC_EINVAL, "--%s: expected an integer, got '%s'", f->name, v);
        *(int *)f->ptr = (int)x;
        return PEFTC_OK;
    }
    case FLAG_FLOAT: {
        double x = strtod(v, &end);
        if (errno || end == v || *end) return PEFTC_ERR(PEFTC_EINVAL, "--%s: expected a number, got '%s'", f->name, v);
        *(double *)f->ptr = x;
        return PEFTC_OK;
    }
    case FLAG_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1")) *(int *)f->ptr = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0")) *(int *)f->ptr = 0;
        else return PEFTC_ERR(PEFTC_EINVAL, "--%s: expected true or false, got '%s'", f->name, v);
        return PEFTC_OK;
    }
    return PEFTC_ERR(PEFTC_EINVAL, "--%s: unknown flag type", f->name);
}

PeftcStatus flags_parse(const Flag *flags, int n, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return PEFTC_ERR(PEFTC_EINVAL, "unexpected argument '%s' (flags are --name value)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const Flag *f = find(flags, n, name, len);
        if (!f) return PEFTC_ERR(PEFTC_EINVAL, "unknown flag '--%.*s' (--help lists them)", (int)len, name);
        if (eq) PEFTC_TRY(set_value(f, eq + 1));
        else if (f->type == FLAG_BOOL) *(int *)f->ptr = 1;
        else if (i + 1 < argc) PEFTC_TRY(set_value(f, argv[++i]));
        else return PEFTC_ERR(PEFTC_EINVAL, "flag '--%s' needs a value", f->name);
    }
    return PEFTC_OK;
}

void flags_usage(const Flag *flags, int n, FILE *f) {
    for (int i = 0; i < n; i++) {
        const char *arg = flags[i].type == FLAG_BOOL ? "" : flags[i].type == FLAG_STR ? " TEXT" : " N";
        fprintf(f, "  --%s%-*s %s\n", flags[i].name, (int)(22 - strlen(flags[i].name)), arg, flags[i].help);
    }
}
