/* Host staging for backend tensors written once from the host (initial values, RoPE tables). */
#include <stdlib.h>

#include "core/base/status.h"

#include "core/backend/backend.h"

real_t *backend_host_begin(const Backend *be, real_t *dst, size_t n) {
    return be->device == DEV_CPU ? dst : malloc((n ? n : 1) * sizeof(real_t));
}

void backend_host_done(const Backend *be, real_t *dst, real_t *host, size_t n) {
    if (host == dst) return;
    be->upload(be, dst, host, n * sizeof(real_t));
    free(host);
}

PeftcStatus backend_rope_tables(const Backend *be, real_t *cos, real_t *sin, int T, int half, const double *inv_freq,
                                double scale) {
    size_t n = (size_t)T * (size_t)half;
    real_t *hc = backend_host_begin(be, cos, n), *hs = backend_host_begin(be, sin, n);
    if (!hc || !hs) {
        if (hc != cos) free(hc);
        if (hs != sin) free(hs);
        return PEFTC_ERR(PEFTC_ENOMEM, "rope: no host memory for %d x %d tables", T, half);
    }
    rope_tables_freq(hc, hs, T, half, inv_freq, scale);
    backend_host_done(be, cos, hc, n);
    backend_host_done(be, sin, hs, n);
    return PEFTC_OK;
}
