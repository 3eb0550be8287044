#include "core/train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/clock.h"
#include "core/base/rng.h"

const char *const nonfinite_names[] = {[NONFINITE_STOP] = "stop", [NONFINITE_SKIP] = "skip", NULL};

/* Held-out examples an evaluation reads: eval_batches micro-batches' worth, or the whole split when
 * that is smaller. */
static int64_t eval_examples(const Trainer *t) {
    int64_t total = (int64_t)t->cfg.eval_batches * t->cfg.micro_batch, avail = t->data->size(t->data, SPLIT_EVAL);
    return avail >= 0 && total > avail ? avail : total;
}

/* data.packing: windows of the whole train split and of the examples an evaluation reads, made once.
 * The sampler then shuffles windows each epoch (rather than examples before packing anew each epoch):
 * its contract stays as it is, so ranks split a step's windows exactly as they split examples and a
 * checkpoint's cursor is all a resume needs; the price is that the same examples share a window in
 * every epoch, which the segment mask makes harmless. */
static PeftcStatus init_packing(Trainer *t) {
    const TrainConfig *c = &t->cfg;
    size_t BT = (size_t)c->micro_batch * c->seq_len;
    if (!t->model->ops->packs)
        return PEFTC_ERR(PEFTC_EINVAL, "data.packing=true: a %s model cannot take packed rows (its forward does not "
                         "keep examples apart); set data.packing=false", t->model->ops->family);
    t->seg = calloc(BT, sizeof *t->seg);
    t->pos = calloc(BT, sizeof *t->pos);
    t->sample = calloc(BT, sizeof *t->sample);
    if (!t->seg || !t->pos || !t->sample) return PEFTC_ERR(PEFTC_ENOMEM, "trainer: out of memory for packed rows");
    PEFTC_TRY(packing_build(&t->pack[SPLIT_TRAIN], t->data, SPLIT_TRAIN, t->data->size(t->data, SPLIT_TRAIN),
                            c->seq_len));
    return packing_build(&t->pack[SPLIT_EVAL], t->data, SPLIT_EVAL, eval_examples(t), c->seq_len);
}

PeftcStatus trainer_init(Trainer *t, const TrainConfig *cfg, Model *model, Arena *arena, Comm *comm,
                         Dataset *data) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->model = model;
    t->arena = arena;
    t->comm = comm;
    t->data = data;
    int B = cfg->micro_batch, T = cfg->seq_len;
    if (B < 1 || T < 2 || cfg->accum < 1 || cfg->steps < 1)
        return PEFTC_ERR(PEFTC_EINVAL, "trainer: micro_batch, accum and steps must be >= 1 and seq_len >= 2");
    if (!arena->finalized) return PEFTC_ERR(PEFTC_ESTATE, "trainer: the arena must be finalized first");
    t->tokens = calloc((size_t)B * T, sizeof *t->tokens);
    t->targets = calloc((size_t)B * T, sizeof *t->targets);
    t->row_keys = calloc((size_t)B * T, sizeof *t->row_keys);
    t->ids = calloc((size_t)B, sizeof *t->ids);
    if (!t->tokens || !t->targets || !t->row_keys || !t->ids) {
        trainer_free(t);
        return PEFTC_ERR(PEFTC_ENOMEM, "trainer: out of memory for batch buffers");
    }
    PeftcStatus st = cfg->packing ? init_packing(t) : PEFTC_OK;
    if (st != PEFTC_OK) {
        trainer_free(t);
        return st;
    }
    int64_t n = cfg->packing ? t->pack[SPLIT_TRAIN].n : data->size(data, SPLIT_TRAIN);
    sampler_init(&t->train_sampler, rng_key(cfg->seed, 0x5A3F), n, B, cfg->accum, comm_size(comm), comm_rank(comm));
    PEFTC_TRY(model_reserve(model, B, T));
    t->start_time = clock_seconds();
    return PEFTC_OK;
}

void trainer_set_grad_hook(Trainer *t, const GradHook *h) {
    if (h) t->grad_hook = *h;
    else memset(&t->grad_hook, 0, sizeof t->grad_hook);
}

void trainer_free(Trainer *t) {
    free(t->tokens);
    free(t->targets);
    free(t->row_keys);
    free(t->ids);
    free(t->seg);
    free(t->pos);
    free(t->sample);
    packing_free(&t->pack[SPLIT_TRAIN]);
    packing_free(&t->pack[SPLIT_EVAL]);
    memset(t, 0, sizeof *t);
}

/* Loads micro-batch rows: examples, or windows when packing; ids < 0 mark unused rows, which get
 * padding tokens and no targets. */
static PeftcStatus load_rows(Trainer *t, Split split) {
    int B = t->cfg.micro_batch, T = t->cfg.seq_len;
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * T;
        if (t->cfg.packing) {
            PEFTC_TRY(packing_fill_row(&t->pack[split], t->data, split, t->ids[b], t->tokens + o, t->targets + o,
                                       t->seg + o, t->pos + o, t->sample + o));
            continue;
        }
        int32_t *tok = t->tokens + o, *tgt = t->targets + o;
        if (t->ids[b] < 0) {
            memset(tok, 0, (size_t)T * sizeof *tok);
            for (int i = 0; i < T; i++) tgt[i] = PEFTC_IGNORE_INDEX;
            continue;
        }
        PEFTC_TRY(t->data->get(t->data, split, t->ids[b], tok, tgt, T));
    }
    return PEFTC_OK;
}

/* Dropout and other per-row randomness follow (seed, step, sample, position in the sample): the same
 * sample sees the same mask whichever rank, micro-batch or window carries it, packed or not. */
static void make_row_keys(Trainer *t) {
    int B = t->cfg.micro_batch, T = t->cfg.seq_len, packed = t->cfg.packing;
    uint64_t step_key = rng_key(rng_key(t->cfg.seed, 0xD80F), (uint64_t)t->step);
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < T; i++) {
            size_t o = (size_t)b * T + i;
            uint64_t sample = (uint64_t)(packed ? t->sample[o] : t->ids[b]), at = (uint64_t)(packed ? t->pos[o] : i);
            t->row_keys[o] = rng_key(rng_key(step_key, sample), at);
        }
    }
}

/* The micro-batch's packed layout for the model, or NULL when not packing. */
static const int32_t *packed(const Trainer *t, const int32_t *layout) { return t->cfg.packing ? layout : NULL; }

/* Forward and backward over this rank's micro-batches; sums loss and target count. */
static PeftcStatus accumulate(Trainer *t, double *loss_sum, double *n_tokens) {
    int B = t->cfg.micro_batch, T = t->cfg.seq_len;
    for (int micro = 0; micro < t->cfg.accum; micro++) {
        sampler_micro_ids(&t->train_sampler, micro, t->ids);
        PEFTC_TRY(load_rows(t, SPLIT_TRAIN));
        make_row_keys(t);
        double ls;
        int64_t nv;
        PEFTC_TRY(model_forward(t->model, t->tokens, t->targets, packed(t, t->seg), packed(t, t->pos), t->row_keys, 1,
                                B, T, &ls, &nv));
        /* Gradients of the summed loss; the global token count normalises them after the reduce. */
        model_backward(t->model, t->tokens, t->targets, t->row_keys, 1);
        *loss_sum += ls;
        *n_tokens += (double)nv;
    }
    return PEFTC_OK;
}

/* A step whose loss or gradient norm is not finite: never applied, since one NaN in AdamW's moments
 * poisons every later step and every checkpoint after it. Returns PEFTC_OK to skip the update, or
 * PEFTC_EDIVERGED. */
static PeftcStatus nonfinite_step(Trainer *t, double loss, double norm) {
    const char *what = !isfinite(loss) ? "loss" : "gradient norm";
    double value = !isfinite(loss) ? loss : norm;
    if (t->cfg.nonfinite == NONFINITE_SKIP && t->skips_in_row < t->cfg.max_skips) {
        t->skips_in_row++;
        return PEFTC_OK;
    }
    if (t->cfg.nonfinite == NONFINITE_SKIP)
        return PEFTC_ERR(PEFTC_EDIVERGED, "training diverged: step %lld's %s is %g after %d skipped steps in a row "
                         "(train.max_skips=%d); the last checkpoint holds the state before them",
                         (long long)t->step + 1, what, value, t->skips_in_row, t->cfg.max_skips);
    return PEFTC_ERR(PEFTC_EDIVERGED, "training diverged: step %lld's %s is %g; stopped before applying it, so no "
                     "checkpoint or adapter of this state is written (lower optim.lr, or set train.nonfinite=skip "
                     "to skip such steps)", (long long)t->step + 1, what, value);
}

PeftcStatus trainer_step(Trainer *t, StepStats *out) {
    double t0 = clock_seconds();
    Arena *a = t->arena;
    int B = t->cfg.micro_batch, T = t->cfg.seq_len;
    uint64_t bytes0 = comm_bytes_reduced(t->comm);
    a->be->zero(a->be, a->grads, a->numel + ARENA_TRAILER);
    double loss_sum = 0, n_tokens = 0;
    PeftcStatus local = accumulate(t, &loss_sum, &n_tokens);
    if (local == PEFTC_OK) local = a->be->status(a->be); /* also waits for queued device work */
    double t_computed = clock_seconds();
    /* A failing rank still joins the one reduce of the step, flagging itself, so no rank hangs. */
    real_t trailer[ARENA_TRAILER] = {(real_t)loss_sum, (real_t)n_tokens, local != PEFTC_OK};
    a->be->upload(a->be, a->grads + a->numel, trailer, sizeof trailer);
    PEFTC_TRY(comm_allreduce(t->comm, a->grads, a->numel + ARENA_TRAILER, COMM_SUM));
    a->be->download(a->be, trailer, a->grads + a->numel, sizeof trailer);
    double t_reduced = clock_seconds();
    if (local != PEFTC_OK) return local;
    if (trailer[2] > 0)
        return PEFTC_ERR(PEFTC_ECOMM, "trainer: %g other rank(s) failed at step %lld (their messages say why)",
                         (double)trailer[2], (long long)t->step);
    double total_tokens = trailer[1];
    if (total_tokens < 1)
        return PEFTC_ERR(PEFTC_EINVAL, "trainer: step %lld's global batch has no target tokens", (long long)t->step);
    a->be->scale(a->be, a->grads, (real_t)(1.0 / total_tokens), a->numel);
    const GradHook *hook = &t->grad_hook;
    double loss = trailer[0] / total_tokens, norm = NAN;
    /* The hook edits the gradient before clipping (see GradHook), so the norm reported is the one
     * clipped with. A non-finite loss goes nowhere near the hook (GMT ranks the gradient's entries). */
    if (isfinite(loss) && hook->before_update) PEFTC_TRY(hook->before_update(hook->user, a));
    if (isfinite(loss)) norm = optim_clip(a, t->cfg.adamw.grad_clip);
    double factor = sched_factor(&t->cfg.sched, t->step);
    int apply = isfinite(loss) && isfinite(norm);
    if (!apply) PEFTC_TRY(nonfinite_step(t, loss, norm));
    if (apply) {
        optim_adamw_step(a, &t->cfg.adamw, t->step + 1, factor);
        if (hook->after_update) hook->after_update(hook->user, a);
        t->skips_in_row = 0;
    }
    sampler_advance(&t->train_sampler);
    t->step++;

    double t1 = clock_seconds();
    out->step = t->step;
    out->total = t->cfg.steps;
    out->loss = loss;
    out->skipped = t->skips_in_row;
    out->lr = factor * (a->n_groups ? a->groups[0].lr : 0);
    out->grad_norm = norm;
    out->tokens = total_tokens;
    out->seq_tokens = (double)B * T * t->cfg.accum * comm_size(t->comm);
    out->step_seconds = t1 - t0;
    out->compute_seconds = t_computed - t0;
    out->reduce_seconds = t_reduced - t_computed;
    out->elapsed_seconds = t1 - t->start_time;
    out->bytes_reduced = comm_bytes_reduced(t->comm) - bytes0;
    return PEFTC_OK;
}

/* This rank's share of the held-out set (examples, or their windows when packing): ids rank,
 * rank+world, ... in micro-batches; rows past the end stay empty. sums = {loss sum, token count}. */
static PeftcStatus eval_local(Trainer *t, double *sums) {
    int B = t->cfg.micro_batch, T = t->cfg.seq_len, world = comm_size(t->comm), rank = comm_rank(t->comm);
    int64_t total = t->cfg.packing ? t->pack[SPLIT_EVAL].n : eval_examples(t);
    int64_t mine = total > rank ? (total - rank + world - 1) / world : 0;
    for (int64_t r = 0; r * B < mine; r++) {
        for (int b = 0; b < B; b++) {
            int64_t j = r * B + b;
            t->ids[b] = j < mine ? rank + j * world : -1;
        }
        PEFTC_TRY(load_rows(t, SPLIT_EVAL));
        double ls;
        int64_t nv;
        PEFTC_TRY(model_forward(t->model, t->tokens, t->targets, packed(t, t->seg), packed(t, t->pos), NULL, 0, B, T,
                                &ls, &nv));
        sums[0] += ls;
        sums[1] += (double)nv;
    }
    /* Ops return nothing: a device (or an op past its reserved scratch) reports here. */
    return t->model->be->status(t->model->be);
}

PeftcStatus trainer_eval(Trainer *t, EvalStats *out) {
    double sums[3] = {0, 0, 0}; /* loss sum, token count, failed ranks */
    PeftcStatus local = eval_local(t, sums);
    sums[2] = local != PEFTC_OK;
    PEFTC_TRY(comm_allreduce_f64(t->comm, sums, 3, COMM_SUM));
    if (local != PEFTC_OK) return local;
    if (sums[2] > 0) return PEFTC_ERR(PEFTC_ECOMM, "trainer: %g other rank(s) failed during evaluation", sums[2]);
    out->step = t->step;
    out->loss = sums[1] > 0 ? sums[0] / sums[1] : 0;
    out->tokens = sums[1];
    return PEFTC_OK;
}

void trainer_set_step_hook(Trainer *t, const StepHook *h) {
    if (h) t->step_hook = *h;
    else memset(&t->step_hook, 0, sizeof t->step_hook);
}

void trainer_resume_at(Trainer *t, int64_t step, int64_t cursor) {
    t->step = step;
    t->train_sampler.cursor = cursor;
}

PeftcStatus trainer_run(Trainer *t, const TrainerHooks *hooks) {
    EvalStats es;
    StepStats ss;
    t->stopped = 0;
    if (t->step == 0) {
        PEFTC_TRY(trainer_eval(t, &es));
        if (hooks && hooks->on_eval) hooks->on_eval(hooks->user, &es);
    }
    while (t->step < t->cfg.steps && !t->stopped) {
        PEFTC_TRY(trainer_step(t, &ss));
        if (hooks && hooks->on_step) hooks->on_step(hooks->user, &ss);
        int due = t->cfg.eval_every > 0 && t->step % t->cfg.eval_every == 0;
        if (due || t->step == t->cfg.steps) {
            PEFTC_TRY(trainer_eval(t, &es));
            if (hooks && hooks->on_eval) hooks->on_eval(hooks->user, &es);
        }
        if (t->step_hook.after_step) PEFTC_TRY(t->step_hook.after_step(t->step_hook.user, t, &t->stopped));
    }
    return PEFTC_OK;
}
