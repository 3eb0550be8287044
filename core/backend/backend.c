/* What every backend shares: the op names, asking an instance which ops it has, releasing it. */
#include "core/backend/backend.h"

#include <stdio.h>
#include <string.h>

const char *const backend_op_names[BACKEND_OP_COUNT] = {
#define PEFTC_BACKEND_OP_NAME_(ret, name, params) [BACKEND_OP_##name] = #name,
    PEFTC_BACKEND_OPS(PEFTC_BACKEND_OP_NAME_)
#undef PEFTC_BACKEND_OP_NAME_
};

int backend_has(const Backend *be, BackendOp op) {
    switch (op) {
#define PEFTC_BACKEND_OP_HAS_(ret, name, params) \
    case BACKEND_OP_##name:                      \
        return be->name != NULL;
        PEFTC_BACKEND_OPS(PEFTC_BACKEND_OP_HAS_)
#undef PEFTC_BACKEND_OP_HAS_
    case BACKEND_OP_COUNT:
        break;
    }
    return 0;
}

/* Appends s to buf (cap bytes, NUL-terminated), truncating. */
static void append(char *buf, size_t cap, const char *s) {
    size_t len = strlen(buf);
    if (len + 1 < cap) snprintf(buf + len, cap - len, "%s", s);
}

PeftcStatus backend_require(const Backend *be, const BackendOp *ops, int n, const char *who, const char *needed_by) {
    char missing[768] = "";
    for (int i = 0; i < n; i++) {
        if ((int)ops[i] < 0 || ops[i] >= BACKEND_OP_COUNT || backend_has(be, ops[i])) continue;
        if (missing[0]) append(missing, sizeof missing, ", ");
        append(missing, sizeof missing, backend_op_names[ops[i]]);
    }
    if (!missing[0]) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_EINVAL, "%s%sthe %s backend lacks %s%s%s%s", who ? who : "", who ? ": " : "", be->name,
                     missing, needed_by ? " (needed by " : "", needed_by ? needed_by : "", needed_by ? ")" : "");
}

void backend_free(Backend *be) {
    if (be && be->destroy) be->destroy(be);
}
