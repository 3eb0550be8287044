#include "optim.h"

#include <math.h>

double optim_grad_norm(const Arena *a) { return sqrt(a->be->sumsq(a->grads, a->numel)); }

double optim_clip(Arena *a, double max_norm) {
    double norm = optim_grad_norm(a);
    if (max_norm > 0 && norm > max_norm) a->be->scale(a->grads, (real_t)(max_norm / (norm + 1e-6)), a->numel);
    return norm;
}

/* One entry's update; kept free of branches on the group so the compiler vectorises it. */
static void adamw_span(real_t *p, const real_t *g, real_t *m, real_t *v, size_t n, double lr, double wd,
                       const AdamWConfig *c, double bc1, double bc2) {
    const real_t b1 = (real_t)c->beta1, b2 = (real_t)c->beta2;
    const real_t step = (real_t)(lr / bc1), eps = (real_t)c->eps, rbc2 = (real_t)(1.0 / sqrt(bc2));
    const real_t decay = (real_t)(1.0 - lr * wd);
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] = p[i] * decay - step * m[i] / ((real_t)sqrt((double)v[i]) * rbc2 + eps);
    }
}

void optim_adamw_step(Arena *a, const AdamWConfig *c, int64_t step, double lr_factor) {
    double bc1 = 1.0 - pow(c->beta1, (double)step);
    double bc2 = 1.0 - pow(c->beta2, (double)step);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < a->n_entries; i++) {
        const ArenaEntry *e = &a->entries[i];
        const ArenaGroup *g = &a->groups[e->group];
        size_t o = e->offset;
        adamw_span(a->params + o, a->grads + o, a->m + o, a->v + o, e->numel, g->lr * lr_factor,
                   e->decay ? g->weight_decay : 0.0, c, bc1, bc2);
    }
}
