#include "launch/rosa_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/formats/rosa_io.h"

_Static_assert(sizeof(real_t) == sizeof(float), "RoSA accumulators (float) are all-reduced as real_t");

int rosa_needs_masks(const Session *s) {
    return method_is_rosa(s->cfg.method) && s->cfg.rosa_density > 0 && !s->rosa_masks_loaded;
}

/* One shared (out*in) device scratch for G^T X: backward visits one layer at a time. */
static size_t largest_layer(LlamaModel *m) {
    size_t n = 0;
    for (int i = 0; i < llama_linear_count(m); i++) {
        const Linear *l = llama_linear(m, i);
        if ((size_t)l->in * (size_t)l->out > n) n = (size_t)l->in * (size_t)l->out;
    }
    return n;
}

static PeftcStatus collect_step(Session *s, real_t *scratch, int64_t *micro) {
    LlamaModel *m = &s->model;
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter && rosa_is(l->adapter)) PEFTC_TRY(rosa_collect_begin(l->adapter, s->cfg.rosa_accum, scratch));
    }
    StepStats st;
    PeftcStatus r = trainer_step(&s->trainer, &st);
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter && rosa_is(l->adapter)) rosa_collect_end(l->adapter);
    }
    *micro += s->cfg.train.accum;
    return r;
}

/* Sums every layer's accumulator over the ranks, then the same top-k everywhere. */
static PeftcStatus masks_from_sums(Session *s, Comm *comm, int64_t local_micro) {
    double total = (double)local_micro;
    PEFTC_TRY(comm_allreduce_f64(comm, &total, 1, COMM_SUM));
    LlamaModel *m = &s->model;
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (!l->adapter || !rosa_is(l->adapter)) continue;
        int64_t count;
        float *acc = rosa_accumulator(l->adapter, &count);
        if (!acc) return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s collected nothing", l->name);
        PEFTC_TRY(comm_allreduce(comm, (real_t *)acc, (size_t)l->in * (size_t)l->out, COMM_SUM));
        PEFTC_TRY(rosa_mask_from_accumulator(l->adapter, (int64_t)total));
    }
    return PEFTC_OK;
}

/* Every rank must hold rank 0's masks: compare them once (an all-reduce that summed differently on
 * some rank would show here, not as silently diverging models). */
static PeftcStatus check_same_masks(Session *s, Comm *comm) {
    LlamaModel *m = &s->model;
    PeftcStatus local = PEFTC_OK;
    for (int i = 0; i < llama_linear_count(m) && local == PEFTC_OK; i++) {
        Linear *l = llama_linear(m, i);
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

static PeftcStatus save_masks(Session *s, Comm *comm) {
    PeftcStatus st = comm_rank(comm) == 0 ? rosa_save_sparse(&s->model, s->cfg.rosa_mask_path) : PEFTC_OK;
    return comm_agree(comm, st);
}

PeftcStatus rosa_make_masks(Session *s, Comm *comm) {
    const RunConfig *c = &s->cfg;
    real_t *scratch = s->model.be->alloc(s->model.be, largest_layer(&s->model) * sizeof(real_t));
    if (!scratch) return PEFTC_ERR(PEFTC_ENOMEM, "rosa: no memory for the gradient scratch");
    PeftcStatus st = PEFTC_OK;
    int64_t micro = 0, steps = c->rosa_warmup + c->rosa_grad_steps;
    for (int64_t step = 0; step < steps && st == PEFTC_OK; step++) {
        if (step < c->rosa_warmup) {
            StepStats ss;
            st = trainer_step(&s->trainer, &ss);
        } else {
            st = collect_step(s, scratch, &micro);
        }
    }
    s->model.be->free(s->model.be, scratch);
    if (st == PEFTC_OK) st = masks_from_sums(s, comm, micro);
    st = comm_agree(comm, st);
    if (st == PEFTC_OK) st = check_same_masks(s, comm);
    if (st == PEFTC_OK) st = save_masks(s, comm);
    if (st != PEFTC_OK) return st;
    if (comm_rank(comm) == 0) {
        printf("rosa: masks from %lld micro-batches after step %lld, saved to %s%s\n",
               (long long)(micro * comm_size(comm)), (long long)steps, c->rosa_mask_path,
               c->rosa_restart ? "; training again from step 0 with them" : "");
        fflush(stdout);
    }
    if (!c->rosa_restart) return PEFTC_OK;
    /* The paper's recipe: a fresh model, adapters (same seed), optimizer and schedule, with the masks
     * read back from the file just written (which is also what a second launch would do). */
    RunConfig cfg = s->cfg;
    session_close(s);
    PEFTC_TRY(session_open(s, &cfg, comm));
    if (!s->rosa_masks_loaded) return PEFTC_ERR(PEFTC_ESTATE, "rosa: the masks in %s did not load", cfg.rosa_mask_path);
    return PEFTC_OK;
}
