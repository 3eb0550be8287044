/* RoSA (arXiv 2401.04679, METHODS.md section 1): LoRA plus a fixed-mask sparse delta S (out,in),
 *
 *   y = x (W + S)^T + s drop(x) A^T B^T,   s = alpha/r (alpha/sqrt r with rsLoRA)
 *
 * SpA is RoSA with r = 0 (no LoRA branch); density 0 leaves plain LoRA.
 *   (a) trains   "<module>.lora_A" (r,in), "<module>.lora_B" (out,r) in the LoRA group (r > 0), and
 *                "<module>.rosa_values" (nnz) in the sparse group (nnz > 0), all with weight decay on.
 *                nnz = floor(density * out * in), the reference's int(d * numel).
 *   (b) init     A, B exactly as lora.c (kaiming-uniform keyed by (seed, arena name), B = 0), values 0.
 *                The mask is not part of init: until one is set (rosa_set_mask, or
 *                rosa_mask_from_accumulator after collecting gradients) the sparse term is absent, its
 *                values stay 0 and get no gradient, and the layer is exactly LoRA.
 *   (c) forward  y += x S^T (SpMM on the UNDROPPED x) + the LoRA branch of lora.c (dropout on its
 *                input only). Backward: dvalues += (dy^T x) at the pattern (SDDMM, undropped x),
 *                dx += dy S, plus LoRA's terms.
 *   (d) merge    W += S + s B A
 *   (e) export   export_tensors() yields the LoRA tensors with PEFT names (nothing for SpA), so
 *                peft_io writes a loadable PEFT LoRA adapter; the sparse part goes through
 *                rosa_export_sparse() (CSR) for a separate file.
 *
 * Mask generation (METHODS.md "Mask generation" steps 2-4) is per layer: while collection is on,
 * every backward adds the dense gradient of the frozen weight, G^T X (out,in), to a host float sum
 * (squared elementwise for mean_squared) and counts micro-batches; rosa_mask_from_accumulator() then
 * keeps the nnz largest |sum / count| entries, ties to the lower flat index, so every rank holding the
 * same (all-reduced) sum gets the same mask. The schedule around it (warm-up, when to collect, the
 * all-reduce, mask files, restart) is the caller's.
 *
 * Which gradient is collected: G is the gradient of the micro-batch's SUMMED token loss (the trainer
 * backpropagates loss_scale 1 and normalises by the global token count only at the step). Within a
 * layer this scales every entry of one micro-batch's G^T X alike, so for `mean` the ranking is that
 * of the token-weighted mean gradient and for a single micro-batch it is the reference's ranking
 * exactly. Across micro-batches it is a choice: the reference collects the gradient of each
 * micro-batch's MEAN loss, so its mean_squared weighs a micro-batch's squared gradient by
 * 1/tokens^2, ours by 1. We keep the summed loss: it needs no token count inside the layer, makes a
 * micro-batch's weight independent of how the global batch is cut into micro-batches and ranks
 * (one sequence of 8 tokens does not outweigh one of 500), and equals the reference when every
 * micro-batch holds the same number of target tokens. */
#ifndef PEFTC_ROSA_H
#define PEFTC_ROSA_H

#include "core/nn/adapter.h"
#include "adapters/lora.h"
#include "comm/comm.h"
#include "core/train/trainer.h"

typedef enum { ROSA_ACC_MEAN_SQUARED = 0, ROSA_ACC_MEAN = 1 } RosaAccum;

/* Names indexed by RosaAccum, NULL-terminated: "mean_squared", "mean". */
extern const char *const rosa_accum_names[];

typedef struct {
    LoraConfig lora; /* the LoRA branch; lora.r == 0: SpA (then alpha, dropout, rslora are unused) */
    double density;  /* d in [0, 1]: nnz = floor(d * out * in) per layer; 0: plain LoRA */
    int64_t nnz;     /* > 0: exactly this many nonzeros per layer instead (a caller with its own
                        selection, SDT's x_proj), at most out * in */
} RosaConfig;

/* The rosa.* keys (adapters/rosa_method.c), read by RoSA and SpA. */
typedef struct {
    double density;      /* rosa.density */
    int64_t warmup;      /* rosa.warmup: LoRA-only steps before the gradients are collected */
    int64_t grad_steps;  /* rosa.grad_steps: steps whose micro-batches are collected */
    RosaAccum statistic; /* rosa.statistic */
    int restart;         /* rosa.restart: after the mask, start again from step 0 (the paper's recipe) */
    char mask_path[512]; /* rosa.mask_path: masks to load, or where generated ones go */
    double lr;           /* rosa.lr: the sparse values' lr; 0 = optim.lr */
} RosaSettings;

extern const MethodSection rosa_section;

/* RoSA's mask schedule (adapters/rosa_masks.c, METHODS.md "Mask generation"): train LoRA for
 * rosa.warmup steps, collect the frozen weights' gradients over rosa.grad_steps steps, all-reduce the
 * accumulators once, take the same deterministic top-k on every rank and check it, and rank 0 saves
 * the masks to rosa.mask_path. *report receives a line for rank 0 to print. Collective. */
PeftcStatus rosa_make_masks(const RosaSettings *rs, Model *m, Trainer *t, Comm *comm, char *report, size_t cap);
/* The backend ops that S, and only S, calls: what a backend must have for rosa.density > 0. */
#define ROSA_SPARSE_OPS 4
extern const BackendOp rosa_sparse_ops[ROSA_SPARSE_OPS];

/* Nonzeros of S for an (out, in) layer: cfg->nnz when set, else floor(density * out * in). */
int64_t rosa_nnz(const RosaConfig *cfg, int in, int out);
/* Trainable parameters of an (out, in) layer: r (in + out) + nnz. */
int64_t rosa_param_count(const RosaConfig *cfg, int in, int out);

/* Creates the adapter of `base`, attaching nothing (the caller sets base->adapter, then registers).
 * LoRA tensors go to arena group lora_group, the sparse values to sparse_group (RoSA trains them at
 * different learning rates). EINVAL for r < 0, density outside [0, 1], r = 0 with density 0 (nothing
 * would train), a LoRA dropout outside [0, 1), more than INT32_MAX nonzeros, or density > 0 on a backend
 * without the csr_* ops. */
PeftcStatus rosa_create(Adapter **out, const Backend *be, const Linear *base, const RosaConfig *cfg, int lora_group,
                        int sparse_group);

/* An AdapterMaker for method_attach_each: rosa_create with cfg a RosaConfig. */
PeftcStatus rosa_maker(Adapter **out, const Backend *be, const Linear *l, const void *cfg, int lora_group,
                       int sparse_group);

/* Whether a is a RoSA adapter. The functions below return EINVAL (or do nothing) for any other. */
int rosa_is(const Adapter *a);

/* ---- the mask ---- */

/* Fixes the pattern of S: flat (count) host indices row * in + col, any order, no duplicates, count ==
 * rosa_nnz (EINVAL naming the layer otherwise). ESTATE if the layer already has a mask: masks are
 * fixed once set. Ends any gradient collection and drops its accumulator. Callable before or after
 * init; the values keep whatever the arena holds (0 after init). */
PeftcStatus rosa_set_mask(Adapter *a, const int64_t *flat, int64_t count);
int rosa_has_mask(const Adapter *a);
/* The mask as ascending flat indices into out (nnz entries, host): what a mask file stores.
 * ESTATE before a mask is set. */
PeftcStatus rosa_mask_flat(const Adapter *a, int64_t *out);

/* ---- gradient collection (the empirical Fisher) ----
 * Each backward while collecting costs one (out,in) matmul and a pass over the (out,in) host sum. */

/* Starts collecting in `mode`. scratch: NULL (the adapter allocates out*in real_t of backend memory
 * until rosa_collect_end) or caller-owned backend memory of at least out*in real_t, which every
 * layer of a model may share (backward visits one layer at a time) and which must outlive
 * rosa_collect_end. The host sum (out*in floats) is created zeroed, or kept when a previous
 * collection left one, so a collection may span several steps with begin/end around each. ESTATE
 * when already collecting or when the layer has a mask; EINVAL when continuing a sum of the other
 * mode. */
PeftcStatus rosa_collect_begin(Adapter *a, RosaAccum mode, real_t *scratch);
/* Stops collecting; the sum and its count stay until the mask is made. */
void rosa_collect_end(Adapter *a);
/* The running SUM (out*in host floats, row-major like W) of G^T X, or of its square, and in *count the
 * micro-batches it holds; NULL (count 0) when there is none. The caller may overwrite it, e.g. with
 * its all-reduce over ranks, before rosa_mask_from_accumulator. */
float *rosa_accumulator(Adapter *a, int64_t *count);
/* Sets the mask to the top nnz entries of |sum / count| (for mean_squared the mean itself), ties to
 * the lower flat index, then frees the sum (collection ends). count is the number of micro-batches
 * the sum holds: the local count, or the sum of the ranks' counts after an all-reduce of the sums.
 * ESTATE without a sum; EINVAL for count < 1 or a NaN entry (naming layer, row and column). The sum
 * is scored in place, so it is unusable after a failure. */
PeftcStatus rosa_mask_from_accumulator(Adapter *a, int64_t count);

/* ---- export of the sparse part ---- */

/* Nonzeros of this layer's S (its configured nnz; 0 for a non-RoSA adapter). */
int64_t rosa_layer_nnz(const Adapter *a);

/* S in CSR form into host arrays: row_ptr (out+1), col_idx (nnz, ascending within a row, int32 row
 * offsets and column indices), values (nnz). ESTATE before a mask is set or before init. */
PeftcStatus rosa_export_sparse(const Adapter *a, int32_t *row_ptr, int32_t *col_idx, real_t *values);

#endif
