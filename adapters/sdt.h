/* SDT / SDLoRA for Mamba (arXiv 2410.09016, METHODS.md section 5): Sparse Dimension Tuning of A_log and
 * of x_proj's B and C rows, on channels and states chosen from a warm-up run.
 *
 *   warm-up  a fresh model trains a dense additive delta on every layer's A_log (zero init) and LoRA on
 *            out_proj for sdt.warmup steps;
 *   select   per layer, from that delta: channel score_d = sum_n delta[d,n]^2, keep the top
 *            n_ch = D - round(f_ch D) channels; inside each, the top n_st = N - round(f_st N) states by
 *            delta^2 for A_log; for x_proj, all N rows of B and of C at the kept channels. Ties go to the
 *            lower index. Data parallelism keeps the delta identical on every rank, so every rank
 *            selects the same (checked against rank 0's);
 *   main     the delta is thrown away and a fresh model, fresh adapters, optimizer and schedule train
 *            sparse deltas at those entries (values from 0): A_log + S_A (a TensorDelta the model
 *            applies) and x_proj's W + S_x (RoSA's sparse adapter with r = 0); SDLoRA adds LoRA on
 *            out_proj.
 * The selection goes to sdt.mask_path; a run that finds that file starts at the main run (the second
 * launch of the two-launch recipe, or a restarted or resumed one). */
#ifndef PEFTC_SDT_H
#define PEFTC_SDT_H

#include "adapters/method.h"

typedef struct {
    double f_ch, f_st;   /* sdt.f_ch, sdt.f_st: the fractions of channels and states left frozen */
    int64_t warmup;      /* sdt.warmup: steps of the warm-up run */
    char mask_path[512]; /* sdt.mask_path: the selection to load, or where a new one goes */
    double lr;           /* sdt.lr: the sparse values' learning rate; 0 = optim.lr */
} SdtSettings;

extern const MethodSection sdt_section;

/* Channels and states kept: D - round(f_ch D), N - round(f_st N). */
int sdt_kept(double f, int n);

/* One layer's selection from its warm-up delta (D, N) host: channels (n_ch, ascending) and A_log flat
 * indices d*N + n (n_ch * n_st, ascending). EINVAL on a NaN. */
PeftcStatus sdt_select(const float *delta, int D, int N, int n_ch, int n_st, int32_t *channels, int64_t *a_flat);
/* x_proj (R + 2N, D) flat indices of B's and C's rows at the kept channels (2 N n_ch, ascending). */
void sdt_xproj_flat(const int32_t *channels, int n_ch, int R, int N, int D, int64_t *out);

/* The selection file: per layer "<layer>.sdt_channels" (n_ch) and "<layer>.A_log.sdt_index" (n_ch n_st),
 * int32, with <layer> "backbone.layers.L.mixer". */
PeftcStatus sdt_save_masks(const char *path, int L, int n_ch, int n_st, const int32_t *channels, const int64_t *a_flat);
/* Reads what sdt_save_masks wrote for L layers of those sizes (EFORMAT naming the file and tensor when
 * it holds another shape). */
PeftcStatus sdt_load_masks(const char *path, int L, int n_ch, int n_st, int32_t *channels, int64_t *a_flat);

#endif
