/* What every backend shares: the op names, asking an instance which ops it has, releasing it. */
#include "core/backend/backend.h"

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

void backend_free(Backend *be) {
    if (be && be->destroy) be->destroy(be);
}
