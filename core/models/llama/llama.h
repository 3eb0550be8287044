/* LLaMA-family decoder with explicit forward and backward.
 *
 * embedding -> L x [RMSNorm -> GQA attention (RoPE) -> residual, RMSNorm -> SwiGLU MLP -> residual]
 * -> final RMSNorm -> LM head (tied to the embedding or not). */
#ifndef PEFTC_LLAMA_H
#define PEFTC_LLAMA_H

#include "core/backend/backend.h"
#include "core/base/status.h"
#include "core/models/model.h"
#include "core/nn/linear.h"
#include "core/nn/rope_scaling.h"

typedef struct {
    int hidden;       /* C */
    int intermediate; /* I */
    int layers;       /* L */
    int heads;        /* NH */
    int kv_heads;     /* NKV, divides NH */
    int head_dim;     /* HD; 0 means hidden / heads */
    int vocab;        /* V */
    double rope_theta;
    double rms_eps;
    int tie_embeddings;
    int qkv_bias;
    int o_bias;       /* o_proj has a bias too (HF LLaMA's attention_bias) */
    int sliding_window; /* 0, or the attention window of some layer: sequences longer than it are refused */
    RopeScaling rope_scaling;
    int gguf_qwen2;   /* llama.cpp calls it qwen2: GGUF keys qwen2.*, and Q/K rows stored in HF's order
                         (llama.cpp's llama files permute them for interleaved RoPE) */
    QuantMode quantized; /* not QUANT_NONE: the 7 projection weights of every layer stay quantized
                            (Linear.qW), filled by a loader (llama_load_quantized: a GGUF file's blocks,
                            or NF4 from an HF folder) or llama_copy_weights; the rest is fp32 */
} LlamaConfig;

PeftcStatus llama_config_check(const LlamaConfig *c);
/* Number of base parameters (embedding counted once when tied). */
int64_t llama_param_count(const LlamaConfig *c);

typedef struct {
    real_t *ln1_w, *ln2_w;       /* (C) */
    real_t *dln1_w, *dln2_w;     /* (C) or NULL */
    Linear q, k, v, o;           /* q (NH*HD, C), k/v (NKV*HD, C), o (C, NH*HD) */
    Linear gate, up, down;       /* gate/up (I, C), down (C, I) */
} LlamaLayer;

/* Activations of one (B, T); each layer keeps what its backward needs. */
typedef struct {
    int B, T;
    real_t *resid;   /* (L+1, BT, C) residual stream entering each layer; [L] is the final one */
    /* ln1, atty, ln2 and act are read back only as matmul inputs, which a bf16 run rounds to bf16
     * anyway: there (lowp) each holds one layer's fp32 values, one block (BT, 2C + QD + I) in that
     * order, and saved16 keeps every layer's copy in bf16 for the backward, half the memory. */
    int lowp;
    uint16_t *saved16; /* (L, BT, 2C + QD + I) when lowp, else unused */
    real_t *ln1;     /* (L, BT, C); (BT, C) when lowp */
    real_t *rstd1;   /* (L, BT) */
    real_t *q;       /* (L, BT, NH*HD) after RoPE */
    real_t *k, *v;   /* (L, BT, NKV*HD) k after RoPE */
    real_t *att;     /* (L, attention_saved(B,T,NH)) what each layer's attention backward needs */
    real_t *atty;    /* (L, BT, NH*HD) attention output before o_proj; (BT, NH*HD) when lowp */
    real_t *resid2;  /* (L, BT, C) residual after attention */
    real_t *ln2;     /* (L, BT, C); (BT, C) when lowp */
    real_t *rstd2;   /* (L, BT) */
    real_t *gate, *up; /* (L, BT, I) */
    real_t *act;     /* (L, BT, I) silu(gate) * up; (BT, I) when lowp */
    real_t *lnf;     /* (BT, C) */
    real_t *rstdf;   /* (BT) */
    real_t *logits;  /* (BT, V) logits, then probabilities, then dlogits */
    /* backward scratch */
    real_t *dresid;  /* (BT, C) */
    real_t *dx;      /* (BT, max(C, NH*HD)) */
    real_t *dq, *dk, *dv; /* (BT, NH*HD), (BT, NKV*HD) x2 */
    real_t *dgate, *dup, *dact; /* (BT, I) */
    real_t *scratch; uint8_t *mask_scratch; int scratch_cols;
    /* Host memory, one block from key_scratch: row keys, segment ids and positions are index arrays. */
    uint64_t *key_scratch; /* (BT) */
    int32_t *seg, *pos;    /* (BT) each: the packed layout of the last forward (see llama_forward) */
    int packed;            /* the last forward was given seg and pos; 0: the ops get NULL (causal rows) */
    real_t *rope_cos, *rope_sin; /* (T, HD/2) */
} LlamaActs;

/* base.linears lists the 7 L projections layer-major (q k v o gate up down), base.refs every base
 * tensor. */
typedef struct {
    Model base;        /* first member: a Model * of a LLaMA model points at its LlamaModel */
    LlamaConfig cfg;
    real_t **base_own; /* (n_refs) each base tensor's own allocation; NULL for quantized ones and for those
                          use_bf16 replaced (separate blocks, so each is freed as soon as it is converted) */
    uint16_t **bf16_own; /* (n_refs) the bf16 copies use_bf16 made, or NULL */
    QWeight *qweights; /* (7 L) layer-major q k v o gate up down, when cfg.quantized; else NULL */
    real_t *wscratch;  /* (max out*in) where a quantized linear's W is expanded during one op; or NULL */
    real_t *wte;       /* (V, C) */
    real_t *dwte;      /* (V, C) or NULL */
    real_t *lm_head;   /* (V, C); NULL when tied: the head then reads wte */
    real_t *dlm_head;  /* (V, C) or NULL; NULL when tied (dwte takes the gradient) */
    real_t *lnf_w, *dlnf_w; /* (C) */
    const uint16_t *wte_b;   /* (V, C) bf16 when the embedding is frozen under bf16 (wte is then NULL) */
    const uint16_t *lm_head_b; /* (V, C) likewise for an untied frozen head */
    LlamaLayer *layers; /* (L) */
    LlamaActs acts;
} LlamaModel;

static inline LlamaModel *llama_of(Model *m) { return (LlamaModel *)m; }
static inline const LlamaModel *llama_of_const(const Model *m) { return (const LlamaModel *)m; }

/* The LLaMA family's adaptable layers, in LlamaLayer order: q k v o gate up down. */
extern const ModelTarget llama_targets[];
#define LLAMA_N_TARGETS 7

/* Allocates a model with base weights drawn from N(0, init_std) (norms at 1, biases at 0), keyed by
 * seed and tensor name so the draw does not depend on allocation order. init_std < 0 leaves every
 * tensor zero, for loaders that fill them (model_load.h). */
PeftcStatus llama_create(LlamaModel *m, const Backend *be, const LlamaConfig *cfg, uint64_t seed,
                         double init_std);
void llama_free(LlamaModel *m);
/* out(n,C) = the embedding rows of tok(n) host, from wte or its bf16 copy. */
void llama_embed(const LlamaModel *m, real_t *out, const int32_t *tok, int n);
/* The LM head in the model's precision: !bwd: out(R,V) = x(R,C) head^T; bwd: out(R,C) = x(R,V) head. */
void llama_head(const LlamaModel *m, real_t *out, const real_t *x, int R, int bwd);
/* ModelOps.use_bf16 (llama_bf16.c). */
PeftcStatus llama_use_bf16(Model *m);

/* out (n): what sets c apart from a plain LLaMA, for the start-up line ("rope llama3 x8, q/k/v biases,
 * window 4096"), or "". */
void llama_describe(const LlamaConfig *c, char *out, size_t n);
/* Refuses sequences of T tokens that a sliding attention window would cut (llama.c says why). */
PeftcStatus llama_check_window(const LlamaConfig *c, int T);
/* The RoPE tables cos, sin (T, HD/2) of m's configuration, scaling included, in m's backend memory. */
PeftcStatus llama_rope_tables(const LlamaModel *m, real_t *cos, real_t *sin, int T);

/* Points m (the base of a LlamaModel) at the LLaMA family's operations and fills its shape fields. */
void llama_model_init(Model *m, const Backend *be, const LlamaConfig *c);
/* A heap LlamaModel behind the Model interface (model_free releases it). */
PeftcStatus llama_new(Model **out, const Backend *be, const LlamaConfig *cfg, uint64_t seed, double init_std);

/* Copies every base tensor of src, whose weights are in host memory (the CPU backend), into dst, a
 * model of the same configuration on any backend. How a pretrained model reaches a device: loaders
 * read into host memory, then one upload per tensor. */
PeftcStatus llama_copy_weights(LlamaModel *dst, const LlamaModel *src);

/* Sizes activation memory for (B, T), and the saved activations of every attached adapter. The model's
 * own buffers are reallocated only when (B, T) changes, so calling again after attaching adapters
 * costs nothing but the adapters' buffers. */
PeftcStatus llama_reserve(LlamaModel *m, int B, int T);

/* Forward pass. tokens (B,T); targets (B,T) or NULL; row_keys (B*T) or NULL when not training.
 * seg, pos (B,T) or both NULL: rows packed with several examples (data.packing), where token (b,t)
 * attends only to earlier tokens of its own segment seg[b,t] and takes RoPE position pos[b,t] in [0, T);
 * NULL: one sequence per row, positions 0..T-1. Both are copied, for the backward.
 * With targets, returns the summed token loss in *loss_sum and the count of valid targets in *n_valid
 * and leaves probabilities in acts.logits; without, acts.logits holds the logits. */
PeftcStatus llama_forward(LlamaModel *m, const int32_t *tokens, const int32_t *targets, const int32_t *seg,
                          const int32_t *pos, const uint64_t *row_keys, int training, int B, int T, double *loss_sum,
                          int64_t *n_valid);

/* Backward of (loss_scale * summed loss) after llama_forward with targets, with that forward's packed
 * layout: accumulates into every non-NULL gradient (adapters, and base tensors that are trainable). */
void llama_backward(LlamaModel *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                    real_t loss_scale);


/* Bytes the base weights hold resident: fp32 tensors at 4 bytes per value, quantized ones at their
 * blocks' size, plus the shared dequantization scratch. */
size_t llama_base_bytes(const LlamaModel *m);
/* The same model's base held entirely in fp32 (4 bytes x llama_param_count). */
size_t llama_dense_bytes(const LlamaConfig *c);

/* Every linear layer of the model in order (layer-major, q k v o gate up down). */
int llama_linear_count(const LlamaModel *m);
Linear *llama_linear(LlamaModel *m, int i);

#endif
