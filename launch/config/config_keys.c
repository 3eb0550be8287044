/* The one table of configuration keys, and name lookup over it. */
#include "launch/config/config_keys.h"

#include <limits.h>
#include <string.h>

#define FIELD(f) offsetof(RunConfig, f), sizeof(((RunConfig *)0)->f)

#define NO_RANGE {0, 0, 0, 0}
#define GE(x) {'[', 0, (x), 0}
#define GT(x) {'(', 0, (x), 0}
#define IN(a, b) {'[', ']', (a), (b)}      /* [a, b] */
#define IN_HO(a, b) {'[', ')', (a), (b)}   /* [a, b) */

#define INT(n, f, d, r, h) {n, KEY_INT, FIELD(f), d, r, NULL, 0, h}
#define FLT(n, f, d, r, h) {n, KEY_FLOAT, FIELD(f), d, r, NULL, 0, h}
#define BOOL(n, f, d, h) {n, KEY_BOOL, FIELD(f), d, NO_RANGE, NULL, 0, h}
#define STR(n, f, d, fl, h) {n, KEY_STRING, FIELD(f), d, NO_RANGE, NULL, fl, h}
#define ENUM(n, f, d, names, h) {n, KEY_ENUM, FIELD(f), d, NO_RANGE, names, 0, h}

/* eigenlora.init is stored in EigenConfig.init_projection (an int: 0 uniform, 1 projection). */
static const char *const eigen_init_names[] = {"uniform", "projection", NULL};

/* Enum keys are C enums whose values index their names, written through an int. */
_Static_assert(sizeof(MethodKind) == sizeof(int), "MethodKind must be int-sized");
_Static_assert(sizeof(SchedType) == sizeof(int), "SchedType must be int-sized");
_Static_assert(sizeof(DataTask) == sizeof(int), "DataTask must be int-sized");
_Static_assert(sizeof(Device) == sizeof(int), "Device must be int-sized");
_Static_assert(sizeof(GmtUpdate) == sizeof(int), "GmtUpdate must be int-sized");
_Static_assert(sizeof(NloraCore) == sizeof(int), "NloraCore must be int-sized");
_Static_assert(sizeof(RosaAccum) == sizeof(int), "RosaAccum must be int-sized");
_Static_assert(sizeof(NonfiniteAction) == sizeof(int), "NonfiniteAction must be int-sized");

static const ConfigSection SECTIONS[] = {
    {"model", "the base model: a pretrained file, or a random LLaMA-shaped one"},
    {"method", "which parameters train"},
    {"lora", "LoRA-shaped adapters (method.name=lora, slora, nlora, inttune)"},
    {"nlora", "NLoRA / IntTune initialisation from the base weight"},
    {"rosa", "RoSA and SpA (method.name=rosa, spa): LoRA plus a sparse delta on a Fisher mask"},
    {"eigenlora", "EigenLoRAx (method.name=eigenlora): loadings on a basis from 'peftc eigen build'"},
    {"gmt", "gradient-mask tuning (method.name=gmt): full fine-tuning, each step's gradient masked per tensor"},
    {"train", "the training loop"},
    {"optim", "AdamW and gradient clipping"},
    {"sched", "learning-rate schedule"},
    {"data", "training and held-out data"},
    {"eval", "generation-based evaluation"},
    {"output", "where results go"},
    {"checkpoint", "HDF5 checkpoints and resuming after preemption"},
};

static const ConfigKey KEYS[] = {
    STR("model.path", model_path, "models/SmolLM2-135M-Instruct.Q4_1.gguf", KEYF_OPTIONAL,
        "GGUF file or HF folder (config.json + safetensors); \"\" = random model shaped by the keys below"),
    INT("model.hidden", model.hidden, "128", GE(1), "hidden size (random model only)"),
    INT("model.intermediate", model.intermediate, "352", GE(1), "SwiGLU MLP width"),
    INT("model.layers", model.layers, "4", GE(1), "decoder layers"),
    INT("model.heads", model.heads, "4", GE(1), "attention (query) heads"),
    INT("model.kv_heads", model.kv_heads, "2", GE(1), "key/value heads; must divide model.heads"),
    INT("model.head_dim", model.head_dim, "0", GE(0), "per-head size; 0 = hidden / heads; must be even"),
    INT("model.vocab", model.vocab, "64", GE(1), "vocabulary size"),
    FLT("model.rope_theta", model.rope_theta, "10000", GT(0), "RoPE base frequency"),
    FLT("model.rms_eps", model.rms_eps, "1e-5", GT(0), "RMSNorm epsilon"),
    BOOL("model.tie_embeddings", model.tie_embeddings, "true", "LM head shares the embedding"),
    BOOL("model.qkv_bias", model.qkv_bias, "false", "bias on the q/k/v projections"),
    BOOL("model.quantized", model.quantized, "false",
         "keep the GGUF base's linear weights in their quantized blocks (QLoRA/QRoSA); needs model.path to be a GGUF file"),
    FLT("model.init_std", init_std, "0.1", GT(0), "std of the random base weights (a richer random base gives LoRA more to steer)"),
    INT("model.seed", model_seed, "1234", GE(0), "seed of the base weights"),

    ENUM("method.name", method, "lora", method_names,
         "lora; full (every base tensor); gmt (full, masked gradients); slora, nlora, inttune (s B N A)"),

    INT("lora.r", lora.r, "8", IN(1, 4096), "adapter rank"),
    FLT("lora.alpha", lora.alpha, "16", GT(0), "scale numerator: alpha/r (alpha/sqrt(r) with rslora)"),
    FLT("lora.dropout", lora.dropout, "0.05", IN_HO(0, 1), "dropout on the adapter input"),
    BOOL("lora.rslora", lora.rslora, "false", "rank-stabilised scale alpha/sqrt(r)"),
    STR("lora.targets", lora_targets, "all-linear", KEYF_LIST,
        "all-linear or a list of q,k,v,o,gate,up,down"),
    FLT("lora.lr", lora_lr, "0", GE(0), "adapter learning rate; 0 = optim.lr"),
    STR("lora.init_from", lora_init_from, "", KEYF_OPTIONAL,
        "PEFT adapter folder to start from (its r, alpha, targets and rslora replace the lora.* keys)"),

    ENUM("nlora.core", nlora_core, "block", nlora_core_names,
         "N from the base weight: block = W[:r,:r] (the code's), pinv = its pseudo-inverse (the paper figure's)"),
    FLT("rosa.density", rosa_density, "0.01", IN(0, 1), "nonzeros of each layer's sparse delta, as a fraction"),
    INT("rosa.warmup", rosa_warmup, "10", GE(0), "LoRA-only steps before gradients are collected for the mask"),
    INT("rosa.grad_steps", rosa_grad_steps, "1", GE(1), "steps whose micro-batch gradients make the mask"),
    ENUM("rosa.statistic", rosa_accum, "mean_squared", rosa_accum_names,
         "what ranks the mask: mean_squared (empirical Fisher diagonal) or mean of the frozen weight's gradients"),
    BOOL("rosa.restart", rosa_restart, "true", "after the mask, train again from step 0 with fresh adapters"),
    STR("rosa.mask_path", rosa_mask_path, "", KEYF_OPTIONAL,
        "masks to load (skips generation) if the file exists, else where generated masks go; \"\" = <output.dir>/rosa_masks.safetensors"),
    FLT("rosa.lr", rosa_lr, "0", GE(0), "sparse values' learning rate; 0 = optim.lr"),
    STR("eigenlora.basis", eigen.basis_path, "", KEYF_OPTIONAL, "basis file written by 'peftc eigen build'"),
    INT("eigenlora.k", eigen.K, "0", GE(0), "components per side; 0 = all the basis holds"),
    ENUM("eigenlora.init", eigen.init_projection, "uniform", eigen_init_names,
         "uniform: loadings U(-0.5, 0.5); projection: loadings of the adapter in eigenlora.projection_from"),
    STR("eigenlora.projection_from", eigen.projection_from, "", KEYF_OPTIONAL, "PEFT LoRA folder for init=projection"),
    FLT("gmt.mask_ratio", gmt.mask_ratio, "0.5", IN_HO(0, 1), "fraction of each tensor's gradient zeroed every step (smallest |g|)"),
    ENUM("gmt.masked_update", gmt.update, "zero", gmt_update_names,
         "zero: AdamW sees zeros there; skip: masked entries keep parameter, m and v"),

    INT("train.steps", train.steps, "40", GE(1), "optimizer steps"),
    INT("train.micro_batch", train.micro_batch, "4", GE(1), "sequences per micro-batch per rank"),
    INT("train.accum", train.accum, "1", GE(1), "micro-batches per step per rank"),
    INT("train.seq_len", train.seq_len, "96", GE(2), "tokens per sequence (longer examples are truncated)"),
    INT("train.seed", train.seed, "42", GE(0), "seed of sampling and dropout"),
    INT("train.eval_every", train.eval_every, "20", GE(0), "steps between held-out loss evaluations; 0 = start and end"),
    INT("train.eval_batches", train.eval_batches, "4", GE(1), "held-out micro-batches per evaluation, split across ranks"),
    INT("train.threads", threads, "0", IN(0, 4096), "threads per rank; 0 = cores / local ranks"),
    ENUM("train.device", device, "cpu", device_names, "cpu, or cuda: one GPU per rank, chosen by local rank"),
    ENUM("train.nonfinite", train.nonfinite, "stop", nonfinite_names,
         "a step with a non-finite loss or gradient norm: stop (exit 3, nothing of it saved) or skip its update"),
    INT("train.max_skips", train.max_skips, "10", GE(1), "train.nonfinite=skip: skipped steps in a row that stop the run"),

    FLT("optim.lr", lr, "1e-3", GT(0), "peak learning rate"),
    FLT("optim.weight_decay", weight_decay, "0", GE(0), "decoupled weight decay (matrices only)"),
    FLT("optim.beta1", train.adamw.beta1, "0.9", IN_HO(0, 1), "first-moment decay"),
    FLT("optim.beta2", train.adamw.beta2, "0.999", IN_HO(0, 1), "second-moment decay"),
    FLT("optim.eps", train.adamw.eps, "1e-8", GT(0), "denominator epsilon"),
    FLT("optim.grad_clip", train.adamw.grad_clip, "1.0", GE(0), "max global gradient norm; 0 disables"),

    ENUM("sched.type", train.sched.type, "cosine", sched_names, "decay after warm-up"),
    INT("sched.warmup", train.sched.warmup, "5", GE(0), "steps of linear warm-up; <= train.steps"),
    FLT("sched.min_lr_ratio", train.sched.min_ratio, "0.1", IN(0, 1), "final lr as a fraction of peak"),

    STR("data.path", sft.path, "", KEYF_OPTIONAL,
        "JSONL (prompt/completion, instruction/input/output, messages, text) or .txt file; \"\" = data.task"),
    STR("data.eval_path", sft.eval_path, "", KEYF_OPTIONAL, "held-out file; \"\" = the last data.eval_percent of data.path"),
    ENUM("data.task", task, "records", data_task_names,
         "built-in task: arith|records|sql (text; need model.path) or copy|reverse|add (digit tokens)"),
    INT("data.train_examples", sft.train_examples, "5000", GE(1), "train problems of a text task"),
    INT("data.eval_examples", sft.eval_examples, "256", GE(1), "held-out problems of a text task"),
    BOOL("data.skip_bad_lines", sft.skip_bad_lines, "false", "report and skip bad JSONL lines instead of stopping"),
    STR("data.cache_dir", sft.cache_dir, "runs/.cache", KEYF_OPTIONAL, "tokenized-data cache; \"\" = none"),
    INT("data.min_digits", data.min_digits, "3", IN(1, 64), "fewest digits per operand (digit tasks)"),
    INT("data.max_digits", data.max_digits, "8", IN(1, 64), "most digits per operand (digit tasks)"),
    INT("data.seed", data.seed, "7", GE(0), "seed of the problems"),
    INT("data.eval_percent", data.eval_percent, "10", IN(1, 50), "share held out, percent (digit tasks, files)"),

    INT("eval.examples", em_examples, "64", GE(0),
        "held-out prompts answered by greedy generation for exact-match accuracy at start and end; 0 = off"),
    INT("eval.max_new_tokens", max_new_tokens, "32", IN(1, 4096), "longest generated answer"),

    STR("output.dir", out_dir, "runs/default", 0, "run directory (resolved config, metrics CSV, adapter)"),
    BOOL("output.save_adapter", save_adapter, "true", "write the trained adapter to <dir>/adapter in PEFT format"),
    INT("output.log_every", log_every, "10", GE(1), "steps between progress lines (non-TTY)"),

    INT("checkpoint.every", ckpt_every, "0", GE(0), "steps between checkpoints; 0 = none on a schedule"),
    FLT("checkpoint.minutes", ckpt_minutes, "0", GE(0), "minutes between checkpoints; 0 = none on a clock"),
    INT("checkpoint.keep", ckpt_keep, "3", GE(1), "newest checkpoints kept; older ones are deleted"),
    STR("checkpoint.folder", ckpt_dir, "", KEYF_OPTIONAL, "where step_N.h5 and 'latest' go; \"\" = <output.dir>/checkpoints"),
    STR("checkpoint.resume", resume, "", KEYF_OPTIONAL,
        "\"\" = start fresh; auto = the newest checkpoint in checkpoint.folder that verifies (fresh if none); "
        "or a step_N.h5 path"),
    STR("checkpoint.allow_changes", ckpt_allow, "", KEYF_LIST | KEYF_OPTIONAL,
        "keys whose value may differ from the checkpoint's when resuming (e.g. [optim.lr, train.steps]); "
        "any other changed setting that alters the result is refused"),
};

const ConfigKey *config_keys(int *n) {
    *n = (int)(sizeof KEYS / sizeof KEYS[0]);
    return KEYS;
}

const ConfigSection *config_sections(int *n) {
    *n = (int)(sizeof SECTIONS / sizeof SECTIONS[0]);
    return SECTIONS;
}

const ConfigKey *config_key_find(const char *name) {
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

int config_key_in_section(const ConfigKey *k, const char *section) {
    size_t len = strlen(section);
    return strncmp(k->name, section, len) == 0 && k->name[len] == '.';
}

int config_key_is_section(const char *prefix) {
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (config_key_in_section(&KEYS[i], prefix)) return 1;
    return 0;
}

const char *config_key_leaf(const ConfigKey *k) {
    const char *dot = strrchr(k->name, '.');
    return dot ? dot + 1 : k->name;
}

/* Levenshtein distance; names longer than the buffer are compared on their first 63 bytes, which is
 * plenty to spot a typo. */
static int edit_distance(const char *a, const char *b) {
    enum { M = 64 };
    int prev[M + 1], cur[M + 1];
    size_t la = strnlen(a, M - 1), lb = strnlen(b, M - 1);
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

const ConfigKey *config_key_suggest(const char *name) {
    const ConfigKey *best = NULL;
    int best_d = INT_MAX;
    int dotless = strchr(name, '.') == NULL;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        int d = edit_distance(name, KEYS[i].name);
        if (dotless) {
            int dl = edit_distance(name, config_key_leaf(&KEYS[i]));
            if (dl < d) d = dl;
        }
        if (d < best_d) best_d = d, best = &KEYS[i];
    }
    /* A third of the name may be wrong ("lora.rank" -> "lora.r"), and one edit always may, so short
     * names ("acum") still get a hint without "rank" suggesting "task". */
    int len = (int)strlen(name), limit = len / 3 > 1 ? len / 3 : 1;
    return best_d <= limit ? best : NULL;
}
