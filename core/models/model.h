/* The Model interface: what the trainer, the methods, the exports, the checkpoints and generation see
 * of a model family (LLaMA today). A family fills a ModelOps table and embeds a Model as the first
 * member of its own struct, so its functions recover the family struct from the Model pointer.
 *
 * Contract of the passes (all families):
 *   reserve(B, T) sizes activations for B sequences of T tokens, and the attached adapters' saved
 *   inputs; forward with targets returns the summed token loss and the count of valid targets;
 *   backward(loss_scale) accumulates d(loss_scale * summed loss) into every non-NULL gradient:
 *   adapters' (through their Linear) and base tensors' that a method made trainable (ParamRef.grad).
 *   Packed rows (data.packing): forward's seg and pos (B,T) give each token its example (segment) and
 *   its position within it, so no token attends across examples and positions restart at 0 for each;
 *   the backward uses the layout of the forward before it. A family whose ops table leaves `packs` 0
 *   refuses them. */
#ifndef PEFTC_MODEL_H
#define PEFTC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend/backend.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/nn/linear.h"

typedef struct Model Model;
/* model.quantized: how the adaptable layers' weights are held. Int-sized, since the config key writes
 * it through an int. */
typedef enum {
    QUANT_NONE = 0, /* "false": dense fp32 (bf16 with train.precision=bf16) */
    QUANT_BLOCKS,   /* "true": a GGUF file's ggml blocks, kept as the file has them */
    QUANT_NF4,      /* "nf4": an HF folder's weights quantized to NF4 at load (core/base/nf4.h) */
} QuantMode;
extern const char *const quant_mode_names[]; /* indexed by QuantMode, NULL-terminated */
/* A family's generation state for B rows of up to S positions (LLaMA: the KV cache). */
typedef struct GenState GenState;

/* One reference to a base tensor: where its pointer and its (optional) gradient pointer live, so
 * loaders, full fine-tuning and later methods can walk every base tensor by name. */
typedef struct {
    char name[128];    /* HF name, e.g. "model.layers.3.mlp.up_proj.weight" */
    Shape shape;       /* elements are real_t on the model's backend device */
    real_t **data;     /* points at the model's pointer to the tensor */
    real_t **grad;     /* points at the model's gradient pointer (NULL pointer = frozen) */
    int decay;         /* 1 for matrices, 0 for norms */
    int quantized;     /* 1: *data is the shared dequantization scratch, not this tensor: walkers that
                          read or write base tensors (full fine-tuning, copies, saving) must refuse */
} ParamRef;

/* Where a tensor of a llama.cpp GGUF file lies in a model (ModelOps.gguf_tensor). */
typedef struct {
    int ref;        /* index into Model.refs, or -1: the model has no such tensor */
    int n_dims;     /* its shape in llama.cpp's layout, ggml order (ne[0] fastest) */
    int64_t ne[4];  /* (unused dimensions 1) */
} ModelGgufTensor;

/* A kind of adaptable linear layer of a family, as adapter targets name it. Linear.target indexes the
 * family's list; LoRA-shaped methods select targets by bits of that index. */
typedef struct {
    const char *name;  /* short target name: "q", "gate", ... */
    const char *hf;    /* the HF module name: "q_proj", "gate_proj", ... */
    const char *gguf;  /* llama.cpp's tensor name within a block: "attn_q", ... */
    int no_peft;       /* PEFT refuses an adapter on it (Mamba's out_proj: its fused kernels skipped it) */
} ModelTarget;

typedef struct {
    const char *family; /* "llama" */
    int packs;          /* forward takes packed rows (seg, pos) */
    PeftcStatus (*reserve)(Model *m, int B, int T);
    /* tokens, targets (B,T) host; targets or row_keys (B*T) may be NULL (row keys: not training); seg, pos
     * (B,T) host, or both NULL for one sequence per row (see the contract above). */
    PeftcStatus (*forward)(Model *m, const int32_t *tokens, const int32_t *targets, const int32_t *seg,
                           const int32_t *pos, const uint64_t *row_keys, int training, int B, int T, double *loss_sum,
                           int64_t *n_valid);
    void (*backward)(Model *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                     real_t loss_scale);

    /* Generation: B rows that may sit at different positions. prefill runs row b's n prompt tokens
     * (appended after what it holds) and writes the last one's logits (V, host); decode appends
     * tokens[b] to every row with active[b] (NULL = all) and writes their logits (B, V, host). */
    PeftcStatus (*gen_create)(Model *m, int B, int S, GenState **out);
    void (*gen_reset_row)(GenState *g, int b);
    PeftcStatus (*gen_prefill)(Model *m, GenState *g, int b, const int32_t *tokens, int n, real_t *logits);
    PeftcStatus (*gen_decode)(Model *m, GenState *g, const int32_t *tokens, const uint8_t *active,
                              real_t *logits);
    void (*gen_free)(GenState *g);

    /* Base parameters (a tied embedding counted once); bytes the base holds resident (quantized
     * blocks at their size); the same base in fp32. */
    int64_t (*param_count)(const Model *m);
    size_t (*base_bytes)(const Model *m);
    size_t (*dense_bytes)(const Model *m);
    /* A model of m's family and shape on `be` with every base tensor zero (quantized tensors: no blocks
     * yet), for copy_weights. */
    PeftcStatus (*empty_like)(const Model *m, const Backend *be, Model **out);
    /* Copies every base tensor of src (host memory) into dst, a model of the same shape on any
     * backend: how a pretrained model reaches a device. */
    PeftcStatus (*copy_weights)(Model *dst, const Model *src);
    /* Writes the base (with whatever was merged into it) as an HF folder: config.json +
     * model.safetensors, weights as st_dtype (an StDType of core/formats/safetensors.h). */
    PeftcStatus (*save_hf)(const Model *m, const char *dir, int st_dtype);
    /* llama.cpp's tensor `name` (e.g. "blk.3.attn_q.weight"): which base tensor it is and its shape in
     * the file's layout (*where; ref -1 when the model has none), and, when out is not NULL, that
     * tensor's current values in that layout (host, ne[0] fastest: what a GGUF file stores, e.g. LLaMA's
     * Q/K rows interleaved again, Mamba's A as -exp(A_log)). NULL for a family without a GGUF layout. */
    PeftcStatus (*gguf_tensor)(const Model *m, const char *name, ModelGgufTensor *where, real_t *out);
    /* From now on: every frozen dense matmul weight (the adaptable layers' W, the embedding and the
     * head when not trained) kept in bf16 only, its fp32 copy freed, and every matmul of a pass in bf16
     * with fp32 sums. Trainable tensors (the arena: master weights) stay fp32. Called once the method
     * has attached and initialised (some inits read or rewrite W). */
    PeftcStatus (*use_bf16)(Model *m);
    /* Releases everything but the Model struct's own memory (the family struct embedding it stays
     * the caller's); attached adapters are destroyed with their layers. */
    void (*destroy)(Model *m);
} ModelOps;

struct Model {
    const ModelOps *ops;
    const Backend *be;
    const char *gguf_arch; /* llama.cpp's general.architecture for this model: "llama", "qwen2", "mamba" */
    int vocab;          /* V */
    int layers, hidden; /* blocks and width of the residual stream, for what a launcher shows */
    int quantized;      /* the adaptable layers keep their weights in quantized blocks (Linear.qW): a
                           QuantMode other than QUANT_NONE */
    int bf16;           /* matmuls take bf16 inputs with fp32 sums; frozen matmul weights are kept in
                           bf16 (Linear.Wb) after use_bf16 (train.precision=bf16) */
    Linear **linears;   /* (n_linears) every adaptable linear layer, layer-major in the family's order */
    int n_linears;
    const ModelTarget *targets; /* (n_targets) the family's kinds of adaptable layer */
    int n_targets;
    ParamRef *refs;     /* (n_refs) every base tensor */
    int n_refs;
};

static inline PeftcStatus model_reserve(Model *m, int B, int T) { return m->ops->reserve(m, B, T); }
static inline PeftcStatus model_forward(Model *m, const int32_t *tokens, const int32_t *targets, const int32_t *seg,
                                        const int32_t *pos, const uint64_t *row_keys, int training, int B, int T,
                                        double *loss_sum, int64_t *n_valid) {
    return m->ops->forward(m, tokens, targets, seg, pos, row_keys, training, B, T, loss_sum, n_valid);
}
static inline void model_backward(Model *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                                  real_t loss_scale) {
    m->ops->backward(m, tokens, targets, row_keys, loss_scale);
}

/* Bits (bit i = the family's target i) of the comma- or space-separated kinds in text: short names,
 * HF names (a dotted parent prefix is allowed, as PEFT's target_modules write them) or all-linear.
 * EINVAL naming key, the word and the family's list. */
PeftcStatus model_target_mask(const Model *m, const char *text, const char *key, unsigned *out);
/* The same over a family's list t (n) before any model exists (configuration-time checks). */
PeftcStatus model_targets_mask(const ModelTarget *t, int n, const char *family, const char *text, const char *key,
                               unsigned *out);

/* Appends a base tensor entry to m->refs (sized by the family for all of them): its HF name, shape, where
 * its pointer and gradient pointer live, and whether weight decay applies. */
void model_add_ref(Model *m, const char *name, Shape shape, real_t **data, real_t **grad, int decay);

/* N of a tensor name "<prefix>N.<rest>" with N in plain decimal (so that one tensor has one name:
 * "blk.03." is not block 3), *rest pointing at <rest>; -1 for any other name. */
int model_block_index(const char *name, const char *prefix, const char **rest);
/* Index of the base tensor called `name` (HF name) in m->refs, or -1. */
int model_find_ref(const Model *m, const char *name);
/* The current values of base tensor i (m->refs[i], on any backend) into out (numel, host). ESTATE
 * naming the tensor when it is kept only in quantized blocks or in bf16. */
PeftcStatus model_ref_read(const Model *m, int i, real_t *out);

/* A training or eval pass's inputs against what was reserved (B_res, T_res) and the vocabulary V:
 * ESTATE for another (B, T), EINVAL naming the first token or target id outside [0, V) (targets may be
 * NULL, and hold PEFTC_IGNORE_INDEX where no loss is taken). */
PeftcStatus model_check_batch(int B_res, int T_res, int B, int T, const int32_t *tokens, const int32_t *targets, int V);

/* Every attached adapter's saved-input buffers sized for `rows` activation rows: a no-op for those that
 * already hold that many, so calling it before each pass covers adapters attached since. */
PeftcStatus model_reserve_adapters(const Model *m, int rows);

/* Frees a model made by model_load / model_create (the family struct too); NULL is a no-op. */
void model_free(Model *m);

#endif
