/* Rotary position embedding, HF "rotate half" layout: element i pairs with element i + HD/2 (not with
 * its neighbour as in the original paper), which is what HF LLaMA checkpoints were trained with. */
#include <math.h>

#include "core/backend/backend.h"
#include "core/backend/cpu/cpu_ops.h"

void rope_tables_freq(real_t *ctab, real_t *stab, int T, int half, const double *inv_freq, double scale) {
    /* ctab, stab (T, half). Angles in double: t * inv_freq reaches thousands of radians at long
     * positions, where a float angle would already be off by a visible fraction of a turn. */
    for (int i = 0; i < half; i++)
        for (int t = 0; t < T; t++) {
            double a = (double)t * inv_freq[i];
            ctab[(size_t)t * half + i] = (real_t)(scale * cos(a));
            stab[(size_t)t * half + i] = (real_t)(scale * sin(a));
        }
}

void rope_tables(real_t *ctab, real_t *stab, int T, int HD, double theta) {
    double inv_freq[HD / 2]; /* (HD/2) */
    for (int i = 0; i < HD / 2; i++) inv_freq[i] = pow(theta, -2.0 * i / HD);
    rope_tables_freq(ctab, stab, T, HD / 2, inv_freq, 1.0);
}

/* Rotates every (b,t,h) vector of x by +angle (dir = 1) or -angle (dir = -1) of its position: pos[b,t]
 * when given, else t. sin(-a) = -sin(a), so the backward is the forward with the sine negated. */
static void rope_apply(real_t *x, const real_t *ctab, const real_t *stab, const int32_t *pos, int B, int T, int NH,
                       int HD, real_t dir) {
    /* x (B,T,NH,HD), ctab, stab (rows, HD/2), pos (B,T) or NULL */
    int half = HD / 2;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * NH * HD >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t row = pos ? (size_t)pos[(size_t)b * T + t] : (size_t)t;
            const real_t *c = ctab + row * half, *s = stab + row * half; /* (HD/2) */
            for (int h = 0; h < NH; h++) {
                real_t *v = x + (((size_t)b * T + t) * NH + h) * HD; /* (HD) */
                for (int i = 0; i < half; i++) {
                    real_t x1 = v[i], x2 = v[i + half], si = dir * s[i];
                    v[i] = x1 * c[i] - x2 * si;
                    v[i + half] = x2 * c[i] + x1 * si;
                }
            }
        }
    }
}

void cpu_rope_fwd(const Backend *be, real_t *x, const real_t *ctab, const real_t *stab, const int32_t *pos, int B,
                  int T, int NH, int HD) {
    (void)be;
    rope_apply(x, ctab, stab, pos, B, T, NH, HD, (real_t)1);
}

void cpu_rope_bwd(const Backend *be, real_t *dx, const real_t *ctab, const real_t *stab, const int32_t *pos, int B,
                  int T, int NH, int HD) {
    (void)be;
    rope_apply(dx, ctab, stab, pos, B, T, NH, HD, (real_t)-1);
}
