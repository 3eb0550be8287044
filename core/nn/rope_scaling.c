/* RoPE frequency scaling (see rope_scaling.h), computed in double: transformers computes the same
 * formulas in float32, a difference of a few 1e-8 relative in each frequency. */
#include "core/nn/rope_scaling.h"

#include <math.h>

#define TWO_PI 6.283185307179586476925286766559

const char *rope_type_name(RopeType t) {
    static const char *names[] = {"default", "linear", "llama3", "yarn", "factors"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

double rope_yarn_mscale(double s, double m) { return s <= 1 ? 1.0 : 0.1 * m * log(s) + 1.0; }

static int positive(double v) { return isfinite(v) && v > 0; }

PeftcStatus rope_scaling_check(const RopeScaling *r, int HD, const char *what) {
    const char *type = rope_type_name(r->type);
    if (r->type == ROPE_DEFAULT) return PEFTC_OK;
    if (r->type == ROPE_FACTORS) {
        if (r->n_factors != HD / 2)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoPE frequency factors: %d values, expected one per rotated pair (%d)",
                             what, r->n_factors, HD / 2);
        for (int i = 0; i < r->n_factors; i++)
            if (!positive(r->factors[i]))
                return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoPE frequency factor %d is %g, expected a finite number > 0",
                                 what, i, (double)r->factors[i]);
        return PEFTC_OK;
    }
    if (!positive(r->factor))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoPE scaling '%s': factor is %g, expected a finite number > 0", what,
                         type, r->factor);
    if (r->type == ROPE_LINEAR) return PEFTC_OK;
    if (r->original_ctx < 1)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoPE scaling '%s': original_max_position_embeddings is %d, expected >= 1",
                         what, type, r->original_ctx);
    if (r->type == ROPE_LLAMA3 && !(positive(r->low_freq_factor) && r->high_freq_factor > r->low_freq_factor &&
                                    isfinite(r->high_freq_factor)))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoPE scaling 'llama3': low_freq_factor %g and high_freq_factor %g, "
                         "expected 0 < low < high", what, r->low_freq_factor, r->high_freq_factor);
    if (r->type == ROPE_YARN && !(positive(r->beta_fast) && positive(r->beta_slow) && positive(r->attn_factor)))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoPE scaling 'yarn': beta_fast %g, beta_slow %g and attention_factor %g "
                         "must be finite numbers > 0", what, r->beta_fast, r->beta_slow, r->attn_factor);
    return PEFTC_OK;
}

/* Long wavelengths (beyond the original context / low_freq_factor) are slowed by the factor, short
 * ones (below original context / high_freq_factor) kept, and the band between blended linearly in
 * original_ctx / wavelength. */
static double llama3_freq(const RopeScaling *r, double f) {
    double wavelen = TWO_PI / f, ctx = r->original_ctx;
    if (wavelen > ctx / r->low_freq_factor) return f / r->factor;
    if (wavelen < ctx / r->high_freq_factor) return f;
    double smooth = (ctx / wavelen - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
    return (1 - smooth) * f / r->factor + smooth * f;
}

/* The dimension (of HD) whose frequency turns `rotations` times over the original context. */
static double yarn_dim(const RopeScaling *r, double rotations, double theta, int HD) {
    return HD * log(r->original_ctx / (rotations * TWO_PI)) / (2 * log(theta));
}

/* The ramp's ends (lo, hi) in pairs: below lo a pair keeps its original (extrapolated) frequency,
 * beyond hi it takes the interpolated one. */
static void yarn_ramp(const RopeScaling *r, double theta, int HD, double *lo, double *hi) {
    *lo = yarn_dim(r, r->beta_fast, theta, HD);
    *hi = yarn_dim(r, r->beta_slow, theta, HD);
    if (r->truncate) {
        *lo = floor(*lo);
        *hi = ceil(*hi);
    }
    *lo = fmax(*lo, 0);
    *hi = fmin(*hi, HD - 1);
    if (*lo == *hi) *hi += 0.001;
}

void rope_inv_freq(const RopeScaling *r, double theta, int HD, double *inv_freq) {
    double lo = 0, hi = 1;
    if (r->type == ROPE_YARN) yarn_ramp(r, theta, HD, &lo, &hi);
    for (int i = 0; i < HD / 2; i++) {
        double f = pow(theta, -2.0 * i / HD), e;
        switch (r->type) {
        case ROPE_LINEAR: f /= r->factor; break;
        case ROPE_LLAMA3: f = llama3_freq(r, f); break;
        case ROPE_FACTORS: f /= r->factors[i]; break;
        case ROPE_YARN:
            e = 1 - fmin(fmax((i - lo) / (hi - lo), 0), 1); /* weight on the original frequency */
            f = f / r->factor * (1 - e) + f * e;
            break;
        default: break;
        }
        inv_freq[i] = f;
    }
}

double rope_attn_scale(const RopeScaling *r) { return r->type == ROPE_YARN ? r->attn_factor : 1.0; }
