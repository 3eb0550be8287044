#include "core/train/optim.h"

#include <math.h>

double optim_grad_norm(const Arena *a) { return sqrt(a->be->sumsq(a->be, a->grads, a->numel)); }

double optim_clip(Arena *a, double max_norm) {
    double norm = optim_grad_norm(a);
    if (max_norm > 0 && norm > max_norm) a->be->scale(a->be, a->grads, (real_t)(max_norm / (norm + 1e-6)), a->numel);
    return norm;
}

void optim_adamw_step(Arena *a, const AdamWConfig *c, int64_t step, double lr_factor) {
    double bc1 = 1.0 - pow(c->beta1, (double)step);
    double bc2 = 1.0 - pow(c->beta2, (double)step);
    /* Entries in parallel on the CPU; a device backend is driven from one host thread. */
    #pragma omp parallel for schedule(dynamic, 1) if (a->be->device == DEV_CPU)
    for (int i = 0; i < a->n_entries; i++) {
        const ArenaEntry *e = &a->entries[i];
        const ArenaGroup *g = &a->groups[e->group];
        size_t o = e->offset;
        a->be->adamw(a->be, a->params + o, a->grads + o, a->m + o, a->v + o, e->numel, g->lr * lr_factor,
                     e->decay ? g->weight_decay : 0.0, c->beta1, c->beta2, c->eps, bc1, bc2);
    }
}
