#include "core/base/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char err_msg[1024];
static _Thread_local char err_origin[256];
static _Thread_local PeftcStatus err_cause;

PeftcStatus peftc_err_set(PeftcStatus st, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    snprintf(err_origin, sizeof err_origin, "%s:%d", file, line);
    err_cause = st;
    return st;
}

const char *peftc_err_msg(void) { return err_msg; }
const char *peftc_err_origin(void) { return err_origin; }

void peftc_err_clear(void) {
    err_msg[0] = '\0';
    err_origin[0] = '\0';
    err_cause = PEFTC_OK;
}

PeftcStatus peftc_err_cause(void) { return err_cause; }
void peftc_err_set_cause(PeftcStatus cause) { err_cause = cause; }

const char *peftc_status_name(PeftcStatus st) {
    switch (st) {
    case PEFTC_OK: return "ok";
    case PEFTC_EINVAL: return "invalid argument";
    case PEFTC_EIO: return "I/O error";
    case PEFTC_EFORMAT: return "format error";
    case PEFTC_ENOMEM: return "out of memory";
    case PEFTC_ECOMM: return "communication error";
    case PEFTC_ESTATE: return "invalid state";
    case PEFTC_EWRITE: return "write error";
    case PEFTC_EDIVERGED: return "training diverged";
    case PEFTC_EBUSY: return "in use by another run";
    }
    return "unknown error";
}
