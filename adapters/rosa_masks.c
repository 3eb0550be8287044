/* RoSA's mask schedule (rosa.h): warm-up, collection, the all-reduced top-k, the check that every rank
 * holds rank 0's masks, and the mask file. */
#include "adapters/rosa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/formats/rosa_io.h"

/* Sums a layer's float accumulator acc (n) over the ranks. The reduction runs on real_t buffers: the
 * float build reduces acc in place; the double build (gradient checks) widens a copy first. */
static PeftcStatus reduce_floats(Comm *comm, float *acc, size_t n) {
    if (sizeof(real_t) == sizeof(float)) return comm_allreduce(comm, (real_t *)(void *)acc, n, COMM_SUM);
    real_t *wide = malloc((n ? n : 1) * sizeof *wide);
    if (!wide) return PEFTC_ERR(PEFTC_ENOMEM, "rosa: out of memory reducing %zu accumulator values", n);
    for (size_t i = 0; i < n; i++) wide[i] = acc[i];
    PeftcStatus st = comm_allreduce(comm, wide, n, COMM_SUM);
    for (size_t i = 0; st == PEFTC_OK && i < n; i++) acc[i] = (float)wide[i];
    free(wide);
    return st;
}

/* One shared (out*in) device scratch for G^T X: backward visits one layer at a time. */
static size_t largest_layer(const Model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_linears; i++) {
        const Linear *l = m->linears[i];
        if ((size_t)l->in * (size_t)l->out > n) n = (size_t)l->in * (size_t)l->out;
    }
    return n;
}

static PeftcStatus collect_step(Model *m, Trainer *t, RosaAccum statistic, real_t *scratch, int64_t *micro) {
    for (int i = 0; i < m->n_linears; i++) {
        Linear *l = m->linears[i];
        if (l->adapter && rosa_is(l->adapter)) PEFTC_TRY(rosa_collect_begin(l->adapter, statistic, scratch));
    }
    StepStats st;
    PeftcStatus r = trainer_step(t, &st);
    for (int i = 0; i < m->n_linears; i++) {
        Linear *l = m->linears[i];
        if (l->adapter && rosa_is(l->adapter)) rosa_collect_end(l->adapter);
    }
    *micro += t->cfg.accum;
    return r;
}

/* Sums every layer's accumulator over the ranks, then the same top-k everywhere. */
static PeftcStatus masks_from_sums(Model *m, Comm *comm, int64_t local_micro) {
    double total = (double)local_micro;
    PEFTC_TRY(comm_allreduce_f64(comm, &total, 1, COMM_SUM));
    for (int i = 0; i < m->n_linears; i++) {
        Linear *l = m->linears[i];
        if (!l->adapter || !rosa_is(l->adapter)) continue;
        int64_t count;
        float *acc = rosa_accumulator(l->adapter, &count);
        if (!acc) return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s collected nothing", l->name);
        PEFTC_TRY(reduce_floats(comm, acc, (size_t)l->in * (size_t)l->out));
        PEFTC_TRY(rosa_mask_from_accumulator(l->adapter, (int64_t)total));
    }
    return PEFTC_OK;
}

/* Every rank must hold rank 0's masks: compare them once (an all-reduce that summed differently on
 * some rank would show here, not as silently diverging models). */
static PeftcStatus check_same_masks(Model *m, Comm *comm) {
    PeftcStatus local = PEFTC_OK;
    for (int i = 0; i < m->n_linears && local == PEFTC_OK; i++) {
        Linear *l = m->linears[i];
        int64_t nnz = l->adapter ? rosa_layer_nnz(l->adapter) : 0;
        if (nnz == 0) continue;
        int64_t *mine = malloc((size_t)nnz * sizeof *mine), *root = malloc((size_t)nnz * sizeof *root);
        if (!mine || !root) local = PEFTC_ERR(PEFTC_ENOMEM, "rosa: out of memory comparing masks");
        if (local == PEFTC_OK) local = rosa_mask_flat(l->adapter, mine);
        if (local == PEFTC_OK) memcpy(root, mine, (size_t)nnz * sizeof *root);
        if (local == PEFTC_OK) local = comm_bcast(comm, root, (size_t)nnz * sizeof *root, 0);
        if (local == PEFTC_OK && memcmp(mine, root, (size_t)nnz * sizeof *root) != 0)
            local = PEFTC_ERR(PEFTC_ECOMM, "rosa: rank %d's mask of %s differs from rank 0's", comm_rank(comm), l->name);
        free(mine);
        free(root);
    }
    return comm_agree(comm, local);
}

static PeftcStatus save_masks(Model *m, Comm *comm, const char *path) {
    PeftcStatus st = comm_rank(comm) == 0 ? rosa_save_sparse(m, path) : PEFTC_OK;
    return comm_agree(comm, st);
}

PeftcStatus rosa_make_masks(const RosaSettings *rs, Model *m, Trainer *t, Comm *comm, char *report, size_t cap) {
    real_t *scratch = m->be->alloc(m->be, largest_layer(m) * sizeof(real_t));
    if (!scratch) return PEFTC_ERR(PEFTC_ENOMEM, "rosa: no memory for the gradient scratch");
    PeftcStatus st = PEFTC_OK;
    int64_t micro = 0, steps = rs->warmup + rs->grad_steps;
    for (int64_t step = 0; step < steps && st == PEFTC_OK; step++) {
        if (step < rs->warmup) {
            StepStats ss;
            st = trainer_step(t, &ss);
        } else {
            st = collect_step(m, t, rs->statistic, scratch, &micro);
        }
    }
    m->be->free(m->be, scratch);
    if (st == PEFTC_OK) st = masks_from_sums(m, comm, micro);
    st = comm_agree(comm, st);
    if (st == PEFTC_OK) st = check_same_masks(m, comm);
    if (st == PEFTC_OK) st = save_masks(m, comm, rs->mask_path);
    if (st != PEFTC_OK) return st;
    snprintf(report, cap, "rosa: masks from %lld micro-batches after step %lld, saved to %s%s",
             (long long)(micro * comm_size(comm)), (long long)steps, rs->mask_path,
             rs->restart ? "; training again from step 0 with them" : "");
    return PEFTC_OK;
}
