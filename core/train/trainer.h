/* The training loop: micro-batches with gradient accumulation, one all-reduce of the arena's gradient
 * per optimizer step, an optional gradient hook, clipping, AdamW, the schedule, and periodic held-out
 * evaluation. Printing and files are the caller's: the trainer reports through callbacks. */
#ifndef PEFTC_TRAINER_H
#define PEFTC_TRAINER_H

#include <stdint.h>

#include "comm/comm.h"
#include "core/train/dataset.h"
#include "core/train/sampler.h"
#include "core/nn/arena.h"
#include "core/models/model.h"
#include "core/train/optim.h"
#include "core/train/packing.h"
#include "core/train/schedule.h"

/* What a step whose loss or gradient norm is not finite does (the same on every rank: both are
 * computed from all-reduced values). */
typedef enum { NONFINITE_STOP, NONFINITE_SKIP } NonfiniteAction;
extern const char *const nonfinite_names[]; /* indexed by NonfiniteAction, NULL-terminated */

typedef struct {
    int64_t steps;     /* optimizer steps */
    int micro_batch;   /* B: sequences per micro-batch per rank */
    int accum;         /* micro-batches per optimizer step per rank */
    int seq_len;       /* T */
    uint64_t seed;
    int64_t eval_every; /* steps between evaluations; 0 = only at start and end */
    int eval_batches;  /* held-out micro-batches: eval_batches * micro_batch sequences in all (fewer when
                          the held-out split is smaller), split across ranks, so the eval loss does
                          not depend on the world size */
    AdamWConfig adamw;
    Schedule sched;
    NonfiniteAction nonfinite; /* stop: the step fails with PEFTC_EDIVERGED before its update; skip: no
                                  update, the batch is consumed, and more than max_skips such steps in a
                                  row fail as stop does */
    int max_skips;
    int packing;       /* data.packing: the training windows and the evaluated held-out examples are packed
                          (packing.h); the sampler then walks windows, not examples */
} TrainConfig;

typedef struct {
    int64_t step, total;
    double loss;        /* mean token loss of the global batch */
    double lr;          /* lr factor times the first group's peak lr */
    double grad_norm;   /* the norm clipping compared with max_norm: of the gradient after the grad hook
                           (e.g. GMT's mask), before clipping */
    double tokens;      /* target tokens in the global batch */
    double seq_tokens;  /* input positions processed this step over all ranks (B*T*accum*world), padding
                           included: packed or not, the work done; `tokens` is what was learnt from */
    double step_seconds;
    /* Split of step_seconds on this rank: forward and backward, then the all-reduce (which includes
     * waiting for the slowest rank, so imbalance shows up here); the rest is clipping and the update. */
    double compute_seconds, reduce_seconds;
    double elapsed_seconds;
    uint64_t bytes_reduced; /* bytes all-reduced this step */
    int skipped;            /* the loss or gradient norm was not finite and the update was skipped: the
                               count of such steps in a row (0 for an applied update) */
} StepStats;

typedef struct {
    int64_t step;
    double loss;        /* mean token loss over the held-out batches */
    double tokens;
} EvalStats;

typedef struct {
    void *user;
    void (*on_step)(void *user, const StepStats *s);
    void (*on_eval)(void *user, const EvalStats *s);
} TrainerHooks;

/* A method's say in each optimizer step, for methods that edit the update rather than the model
 * (GMT). Order within trainer_step: zero grads, accumulate micro-batches, all-reduce, normalise by the
 * global token count, before_update, clip, AdamW, after_update. before_update thus sees the gradient
 * AdamW would get, identical on every rank, and clipping measures and scales what it leaves: the
 * clip budget goes to the entries that will move. Either pointer may be NULL. */
typedef struct {
    void *user;
    /* May edit the arena's gradient (never its trailer). A failure ends the step before any update;
     * hooks that depend only on the reduced gradient fail on every rank alike. */
    PeftcStatus (*before_update)(void *user, Arena *a);
    /* May restore parameters and moments that the update should not have touched. */
    void (*after_update)(void *user, Arena *a);
} GradHook;

struct Trainer;

/* Called on every rank after each optimizer step and its evaluation, for what must be collective
 * (checkpoints, the ranks' agreement to stop on a signal). Setting *stop ends trainer_run after this
 * step with PEFTC_OK and t->stopped = 1. */
typedef struct {
    void *user;
    PeftcStatus (*after_step)(void *user, struct Trainer *t, int *stop);
} StepHook;

typedef struct Trainer {
    TrainConfig cfg;
    Model *model;
    Arena *arena;
    Comm *comm;
    Dataset *data;
    Sampler train_sampler;
    int64_t step;     /* optimizer steps completed */
    /* per-rank micro-batch buffers */
    int32_t *tokens, *targets;  /* (B,T) */
    uint64_t *row_keys;         /* (B*T) */
    int64_t *ids;               /* (B) example ids, or window ids when packing */
    /* data.packing only: the windows of each split (indexed by Split; the held-out one packs the
     * examples an evaluation reads), and the micro-batch's layout */
    Packing pack[2];
    int32_t *seg, *pos;         /* (B,T) segment ids and positions within their example */
    int64_t *sample;            /* (B,T) example id of each position, -1 on padding */
    double start_time;          /* monotonic seconds when training started */
    GradHook grad_hook;         /* none after trainer_init */
    StepHook step_hook;         /* none after trainer_init */
    int stopped;                /* trainer_run ended early because the step hook asked */
    int skips_in_row;           /* non-finite steps skipped since the last applied update */
} Trainer;

PeftcStatus trainer_init(Trainer *t, const TrainConfig *cfg, Model *model, Arena *arena, Comm *comm,
                         Dataset *data);
void trainer_free(Trainer *t);
/* Installs h for every later step (a copy is kept; h->user must outlive the trainer's use of it);
 * NULL removes the hook. */
void trainer_set_grad_hook(Trainer *t, const GradHook *h);
/* Installs (a copy of) h for later trainer_run calls; NULL removes it. */
void trainer_set_step_hook(Trainer *t, const StepHook *h);
/* Continues from a checkpoint: step optimizer steps done, sampler at global position cursor. */
void trainer_resume_at(Trainer *t, int64_t step, int64_t cursor);
/* One optimizer step (all micro-batches, reduce, grad hook, clip, update). */
PeftcStatus trainer_step(Trainer *t, StepStats *out);
/* Mean held-out loss over cfg.eval_batches global batches (same ids on every call). */
PeftcStatus trainer_eval(Trainer *t, EvalStats *out);
/* Runs steps until cfg.steps with evaluation and hooks. The held-out evaluation before the first step
 * runs only when starting from step 0: a resumed run already reported it. */
PeftcStatus trainer_run(Trainer *t, const TrainerHooks *hooks);

#endif
