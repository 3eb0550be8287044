/* Mamba-1 (HF MambaForCausalLM) with explicit forward and backward, on the unfused path so an adapter
 * on any projection really runs.
 *
 * embedding -> L x [RMSNorm -> mixer -> residual] -> final RMSNorm -> LM head (tied or not), where the
 * mixer is: in_proj -> (x | z); x -> causal depthwise conv1d -> SiLU = u; x_proj(u) -> (dt_low | B | C);
 * dt = dt_proj(dt_low) (bias inside the softplus); selective scan over u with A = -exp(A_log), the D
 * skip and the SiLU(z) gate; out_proj. */
#ifndef PEFTC_MAMBA_H
#define PEFTC_MAMBA_H

#include "core/backend/backend.h"
#include "core/base/status.h"
#include "core/models/model.h"
#include "core/nn/linear.h"
#include "core/nn/tensor_delta.h"

typedef struct {
    int hidden;     /* H, HF hidden_size */
    int inner;      /* D = expand * H, HF intermediate_size */
    int state;      /* N, HF state_size */
    int conv;       /* K, HF conv_kernel */
    int dt_rank;    /* R, HF time_step_rank ("auto" = ceil(H / 16)) */
    int layers;     /* L */
    int vocab;      /* V */
    double eps;     /* layer_norm_epsilon */
    int conv_bias;  /* use_conv_bias */
    int proj_bias;  /* use_bias: in_proj and out_proj biases */
    int tie_embeddings;
} MambaConfig;

PeftcStatus mamba_config_check(const MambaConfig *c);
/* Base parameters (a tied embedding counted once). */
int64_t mamba_param_count(const MambaConfig *c);

typedef struct {
    real_t *norm_w, *dnorm_w;   /* (H) */
    Linear in_proj;             /* (2D, H): rows x then z */
    real_t *conv_w, *dconv_w;   /* (D, 1, K) */
    real_t *conv_b, *dconv_b;   /* (D) or NULL without conv_bias */
    Linear x_proj;              /* (R + 2N, D): rows dt_low, B, C */
    Linear dt_proj;             /* (D, R) with bias */
    real_t *A_log, *dA_log;     /* (D, N) */
    const TensorDelta *A_delta; /* NULL, or a trainable delta: the layer computes with A_log + S (SDT) */
    real_t *Dskip, *dDskip;     /* (D) HF "D" */
    Linear out_proj;            /* (H, D) */
} MambaLayer;

/* One layer's activations as its forward writes them and its backward reads them; training keeps one
 * per layer, generation one set reused by every layer. */
typedef struct {
    real_t *x;       /* (BT, H) residual stream entering the layer */
    real_t *ln;      /* (BT, H) */
    real_t *rstd;    /* (BT) */
    real_t *xz;      /* (BT, 2D) in_proj output: x | z */
    real_t *cpre;    /* (BT, D) conv output before SiLU */
    real_t *u;       /* (BT, D) SiLU(conv) */
    real_t *xdbl;    /* (BT, R + 2N) x_proj output: dt_low | B | C */
    real_t *dtlow;   /* (BT, R) dt_low, contiguous for dt_proj */
    real_t *dt;      /* (BT, D) dt_proj output, before softplus */
    real_t *saved;   /* (ssm_scan_saved(B,T,D,N)) or NULL (generation) */
    real_t *y;       /* (BT, D) gated scan output */
    real_t *out;     /* (BT, H) residual stream leaving the layer */
} MambaSlices;

typedef struct {
    int B, T;
    real_t *resid, *ln, *rstd, *xz, *cpre, *u, *xdbl, *dtlow, *dt, *saved, *y; /* (L, ...) of MambaSlices;
                                                                                 resid (L+1, BT, H) */
    real_t *lnf, *rstdf; /* (BT, H), (BT) */
    real_t *logits;      /* (BT, V) logits, then probabilities, then dlogits */
    /* backward scratch */
    real_t *dresid, *dln;      /* (BT, H) */
    real_t *dxz;               /* (BT, 2D) */
    real_t *dcpre, *du, *ddt, *dy; /* (BT, D) */
    real_t *dxdbl;             /* (BT, R + 2N) */
    real_t *ddtlow;            /* (BT, R) */
    real_t *scratch; uint8_t *mask_scratch; int scratch_cols;
    uint64_t *key_scratch;     /* (BT) host memory */
} MambaActs;

/* base.linears lists the 4 L projections layer-major (in_proj x_proj dt_proj out_proj), base.refs
 * every base tensor. */
typedef struct {
    Model base;          /* first member */
    MambaConfig cfg;
    void *mem;           /* one backend allocation holding every base tensor */
    real_t *wte, *dwte;  /* (V, H) */
    real_t *lm_head, *dlm_head; /* (V, H), NULL when tied */
    real_t *normf_w, *dnormf_w; /* (H) */
    MambaLayer *layers;  /* (L) */
    real_t *A_eff, *dA_eff; /* (D, N) each: a delta'd layer's A_log + S and its gradient, one layer at a time */
    MambaActs acts;
} MambaModel;

static inline MambaModel *mamba_of(Model *m) { return (MambaModel *)m; }
static inline const MambaModel *mamba_of_const(const Model *m) { return (const MambaModel *)m; }

extern const ModelTarget mamba_targets[];
#define MAMBA_N_TARGETS 4

/* Allocates a model with base weights as HF's MambaForCausalLM initialises them in spirit: matrices
 * N(0, init_std), norms 1, A_log row log(1..N), D 1, dt_proj's bias the inverse softplus of dt
 * log-uniform in [1e-3, 0.1], keyed by seed and tensor name. init_std < 0 leaves every tensor zero for
 * a loader. */
PeftcStatus mamba_create(MambaModel *m, const Backend *be, const MambaConfig *cfg, uint64_t seed, double init_std);
void mamba_free(MambaModel *m);
PeftcStatus mamba_copy_weights(MambaModel *dst, const MambaModel *src);

/* Training passes (model.h's contract). */
PeftcStatus mamba_reserve(MambaModel *m, int B, int T);
PeftcStatus mamba_forward(MambaModel *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                          int training, int B, int T, double *loss_sum, int64_t *n_valid);
void mamba_backward(MambaModel *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                    real_t loss_scale);

/* One layer's forward on s (B sequences of T tokens). conv_state (B, K-1, D) and ssm_state (B, D, N)
 * or NULL: the recurrent state before the first token, updated to after the last (generation). */
void mamba_layer_forward(MambaModel *m, int l, const MambaSlices *s, int B, int T, const StepCtx *ctx,
                         real_t *conv_state, real_t *ssm_state);
/* The final norm and the head: logits (R, V) from the stream x (R, H); lnf (R, H), rstd (R) scratch. */
void mamba_head(MambaModel *m, real_t *logits, real_t *lnf, real_t *rstd, const real_t *x, int R);

/* Behind the Model interface (mamba_model.c). */
void mamba_model_init(Model *m, const Backend *be, const MambaConfig *c);
PeftcStatus mamba_new(Model **out, const Backend *be, const MambaConfig *cfg, uint64_t seed, double init_std);

/* Layer l computes with A_log + d from now on (d NULL: A_log again); d must outlive its use. */
PeftcStatus mamba_set_A_delta(MambaModel *m, int l, const TensorDelta *d);
/* Folds every layer's A_log delta into A_log (merging before saving), then drops the deltas. */
void mamba_merge_A_deltas(MambaModel *m);

int mamba_linear_count(const MambaModel *m);
Linear *mamba_linear(MambaModel *m, int i);

#endif
