/* The one table of configuration keys, and name lookup over it. */
#include "launch/config/config_keys.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define GE KEY_GE
#define GT KEY_GT
#define IN KEY_IN
#define IN_HO KEY_IN_HO
/* setting.h's SETTING_* for RunConfig fields (spelt out: a range argument expanded here would reach
 * SETTING_* as several arguments). */
#define FIELD(f) SETTING_FIELD(RunConfig, f)
#define INT(n, f, d, r, h) {n, KEY_INT, FIELD(f), d, r, NULL, 0, h}
#define FLT(n, f, d, r, h) {n, KEY_FLOAT, FIELD(f), d, r, NULL, 0, h}
#define BOOL(n, f, d, h) {n, KEY_BOOL, FIELD(f), d, KEY_NO_RANGE, NULL, 0, h}
#define STR(n, f, d, fl, h) {n, KEY_STRING, FIELD(f), d, KEY_NO_RANGE, NULL, fl, h}
#define ENUM(n, f, d, names, h) {n, KEY_ENUM, FIELD(f), d, KEY_NO_RANGE, names, 0, h}

/* Enum keys are C enums whose values index their names, written through an int. */
_Static_assert(sizeof(SchedType) == sizeof(int), "SchedType must be int-sized");
_Static_assert(sizeof(DataTask) == sizeof(int), "DataTask must be int-sized");
_Static_assert(sizeof(Device) == sizeof(int), "Device must be int-sized");
_Static_assert(sizeof(Precision) == sizeof(int), "Precision must be int-sized");
_Static_assert(sizeof(NonfiniteAction) == sizeof(int), "NonfiniteAction must be int-sized");
_Static_assert(sizeof(QuantMode) == sizeof(int), "QuantMode must be int-sized");

/* Sections before the methods' own (which the registry adds at run time), then after them. */
static const ConfigSection HEAD_SECTIONS[] = {
    {"model", "the base model: a pretrained file, or a random LLaMA-shaped one"},
    {"method", "which parameters train"},
};
static const ConfigSection TAIL_SECTIONS[] = {
    {"train", "the training loop"},
    {"optim", "AdamW and gradient clipping"},
    {"sched", "learning-rate schedule"},
    {"data", "training and held-out data"},
    {"eval", "generation-based evaluation"},
    {"output", "where results go"},
    {"checkpoint", "HDF5 checkpoints and resuming after preemption"},
};

static const ConfigKey HEAD_KEYS[] = {
    STR("model.path", model_path, "models/SmolLM2-135M-Instruct.Q4_1.gguf", KEYF_OPTIONAL,
        "GGUF file or HF folder (config.json + safetensors); \"\" = random model shaped by the keys below"),
    ENUM("model.family", model_family, "llama", family_names, "the random model's family: llama or mamba"),
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
    INT("model.state", mamba.state, "16", GE(1), "Mamba SSM state size N (random Mamba)"),
    INT("model.conv", mamba.conv, "4", GE(1), "Mamba causal conv kernel (random Mamba)"),
    INT("model.expand", mamba_expand, "2", GE(1), "Mamba inner width = expand * hidden (random Mamba)"),
    INT("model.dt_rank", mamba.dt_rank, "0", GE(0), "Mamba dt_proj rank; 0 = ceil(hidden / 16) (random Mamba)"),
    ENUM("model.quantized", model.quantized, "false", quant_mode_names,
         "the projection weights kept quantized (QLoRA/QRoSA): false (dense), true (a GGUF file's own blocks) or "
         "nf4 (an HF folder's weights quantized to NF4 at load, as bitsandbytes does)"),
    FLT("model.init_std", init_std, "0.1", GT(0), "std of the random base weights (a richer random base gives LoRA more to steer)"),
    INT("model.seed", model_seed, "1234", GE(0), "seed of the base weights"),

    /* values and help: from the registry, filled in when the table is built */
    ENUM("method.name", method, "lora", NULL, NULL),
};

static const ConfigKey TAIL_KEYS[] = {
    INT("train.steps", train.steps, "40", GE(1), "optimizer steps"),
    INT("train.micro_batch", train.micro_batch, "4", GE(1), "sequences per micro-batch per rank"),
    INT("train.accum", train.accum, "1", GE(1), "micro-batches per step per rank"),
    INT("train.seq_len", train.seq_len, "96", GE(2), "tokens per sequence (longer examples are truncated)"),
    INT("train.seed", train.seed, "42", GE(0), "seed of sampling and dropout"),
    INT("train.eval_every", train.eval_every, "20", GE(0), "steps between held-out loss evaluations; 0 = start and end"),
    INT("train.eval_batches", train.eval_batches, "4", GE(1), "held-out micro-batches per evaluation, split across ranks"),
    INT("train.threads", threads, "0", IN(0, 4096), "threads per rank; 0 = cores / local ranks"),
    ENUM("train.device", device, "cpu", device_names, "cpu, or cuda: one GPU per rank, chosen by local rank"),
    ENUM("train.precision", precision, "auto", precision_names,
         "matmuls in fp32, or bf16 (frozen base in bf16, fp32 sums and master weights); auto = bf16 where the "
         "hardware has it (AMX, AVX512-BF16), else fp32"),
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
    STR("data.tokenizer", tokenizer_path, "", KEYF_OPTIONAL,
        "tokenizer.json (or a folder / GGUF with one) for a model without its own; \"\" = the model's"),
    STR("data.eval_path", sft.eval_path, "", KEYF_OPTIONAL, "held-out file; \"\" = the last data.eval_percent of data.path"),
    ENUM("data.task", task, "records", data_task_names,
         "built-in task: arith|records|sql (text; need model.path) or copy|reverse|add (digit tokens)"),
    INT("data.train_examples", sft.train_examples, "5000", GE(1), "train problems of a text task"),
    INT("data.eval_examples", sft.eval_examples, "256", GE(1), "held-out problems of a text task"),
    BOOL("data.skip_bad_lines", sft.skip_bad_lines, "false", "report and skip bad JSONL lines instead of stopping"),
    STR("data.cache_dir", sft.cache_dir, "runs/.cache", KEYF_OPTIONAL, "tokenized-data cache; \"\" = none"),
    BOOL("data.packing", train.packing, "false",
         "pack several examples into each train.seq_len row (best-fit decreasing), each attending only to itself "
         "with positions from 0: far fewer padded positions per step; text data and LLaMA models"),
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
    BOOL("output.tensorboard", tensorboard, "false",
         "also write TensorBoard event files to <dir>/tensorboard (the metrics CSV's curves, exact match)"),

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

enum { MAX_KEYS = 256, MAX_SECTIONS = 32 };
static ConfigKey KEYS[MAX_KEYS];
static ConfigSection SECTIONS[MAX_SECTIONS];
static int n_keys = -1, n_sections;

static char method_help[1024];

/* "lora (LoRA); full (every base tensor); ...": each registered method with its descriptor's words. */
static const char *describe_methods(void) {
    int n;
    const MethodDesc *const *all = method_registry(&n);
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof method_help; i++)
        used += (size_t)snprintf(method_help + used, sizeof method_help - used, "%s%s (%s)", i ? "; " : "",
                                 all[i]->name, all[i]->help);
    return method_help;
}

static void add_keys(const ConfigKey *keys, int n, size_t base) {
    for (int i = 0; i < n && n_keys < MAX_KEYS; i++) {
        KEYS[n_keys] = keys[i];
        KEYS[n_keys++].offset += base;
    }
}

/* The run's own keys with every method section's keys between method.name and train.*: a section's
 * settings live in RunConfig.methods.sec[i], so its keys' offsets are shifted there. */
static void build(void) {
    n_keys = n_sections = 0;
    int ns;
    const MethodSection *const *secs = method_sections(&ns);
    add_keys(HEAD_KEYS, (int)(sizeof HEAD_KEYS / sizeof HEAD_KEYS[0]), 0);
    for (int i = 0; i < n_keys; i++)
        if (strcmp(KEYS[i].name, "method.name") == 0) KEYS[i].values = method_names(), KEYS[i].help = describe_methods();
    for (size_t i = 0; i < sizeof HEAD_SECTIONS / sizeof HEAD_SECTIONS[0]; i++) SECTIONS[n_sections++] = HEAD_SECTIONS[i];
    for (int i = 0; i < ns && n_sections < MAX_SECTIONS; i++) {
        add_keys(secs[i]->keys, secs[i]->n_keys, offsetof(RunConfig, methods) + offsetof(MethodSettings, sec[i]));
        SECTIONS[n_sections++] = (ConfigSection){secs[i]->name, secs[i]->help};
    }
    add_keys(TAIL_KEYS, (int)(sizeof TAIL_KEYS / sizeof TAIL_KEYS[0]), 0);
    for (size_t i = 0; i < sizeof TAIL_SECTIONS / sizeof TAIL_SECTIONS[0] && n_sections < MAX_SECTIONS; i++)
        SECTIONS[n_sections++] = TAIL_SECTIONS[i];
}

const ConfigKey *config_keys(int *n) {
    if (n_keys < 0) build();
    *n = n_keys;
    return KEYS;
}

const ConfigSection *config_sections(int *n) {
    if (n_keys < 0) build();
    *n = n_sections;
    return SECTIONS;
}

const ConfigKey *config_key_find(const char *name) {
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

int config_key_in_section(const ConfigKey *k, const char *section) {
    size_t len = strlen(section);
    return strncmp(k->name, section, len) == 0 && k->name[len] == '.';
}

int config_key_is_section(const char *prefix) {
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++)
        if (config_key_in_section(&keys[i], prefix)) return 1;
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
    int dotless = strchr(name, '.') == NULL, n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++) {
        int d = edit_distance(name, keys[i].name);
        if (dotless) {
            int dl = edit_distance(name, config_key_leaf(&keys[i]));
            if (dl < d) d = dl;
        }
        if (d < best_d) best_d = d, best = &keys[i];
    }
    /* A third of the name may be wrong ("lora.rank" -> "lora.r"), and one edit always may, so short
     * names ("acum") still get a hint without "rank" suggesting "task". */
    int len = (int)strlen(name), limit = len / 3 > 1 ? len / 3 : 1;
    return best_d <= limit ? best : NULL;
}
