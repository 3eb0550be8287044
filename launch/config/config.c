/* Defaults, command-line overrides and the cross-field checks of the run configuration. The keys
 * themselves live in config_keys.c; YAML in config_yaml.c; write-out and help in config_write.c. */
#include "launch/config/config.h"

#include <string.h>

#include "adapters/lora.h"
#include "launch/config/config_keys.h"

const char *const data_task_names[] = {"arith", "records", "sql", "copy", "reverse", "add", NULL};

const char *const device_names[] = {"cpu", "cuda", NULL};
const char *const family_names[] = {[FAMILY_LLAMA] = "llama", [FAMILY_MAMBA] = "mamba", NULL};
const char *const precision_names[] = {[PREC_AUTO] = "auto", [PREC_FP32] = "fp32", [PREC_BF16] = "bf16", NULL};

int data_task_is_synthetic(DataTask t) { return t >= DATA_COPY; }

const MethodDesc *config_method(const RunConfig *c) {
    int n;
    const MethodDesc *const *all = method_registry(&n);
    return all[c->method >= 0 && c->method < n ? c->method : 0];
}

void config_defaults(RunConfig *c) {
    memset(c, 0, sizeof *c);
    int n;
    const ConfigKey *keys = config_keys(&n);
    /* Defaults are text parsed like user input, so the help shows exactly what is applied. The test
     * suite checks every default parses; a failure here would leave the field zero. */
    for (int i = 0; i < n; i++) (void)config_key_set(&keys[i], c, keys[i].def, "default: ");
    peftc_err_clear();
    /* what "all-linear" parses to; config_finish re-parses the text */
    lora_settings(&c->methods)->lora.targets = LORA_T_ALL;
    c->train.sched.total = c->train.steps;
}

/* Finds a key by full name or, on the command line, by a last component no other key shares. */
static PeftcStatus resolve_key(const char *name, const char *where, const ConfigKey **out) {
    if ((*out = config_key_find(name))) return PEFTC_OK;
    if (!strchr(name, '.')) {
        int n, hits = 0;
        const ConfigKey *keys = config_keys(&n);
        char list[512] = "";
        size_t used = 0;
        for (int i = 0; i < n; i++) {
            if (strcmp(config_key_leaf(&keys[i]), name) != 0) continue;
            *out = &keys[i];
            if (used < sizeof list)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", hits ? ", " : "", keys[i].name);
            hits++;
        }
        if (hits == 1) return PEFTC_OK;
        if (hits > 1)
            return PEFTC_ERR(PEFTC_EINVAL, "%s'%s' is ambiguous: it could be %s; give the full key", where, name,
                             list);
    }
    *out = NULL;
    const ConfigKey *s = config_key_suggest(name);
    if (s) return PEFTC_ERR(PEFTC_EINVAL, "%sunknown key '%s' (did you mean '%s'?)", where, name, s->name);
    return PEFTC_ERR(PEFTC_EINVAL, "%sunknown key '%s' (peftc train --help lists every key)", where, name);
}

PeftcStatus config_apply_override(RunConfig *c, const char *kv) {
    char where[160], name[128];
    snprintf(where, sizeof where, "override '%.120s%s': ", kv, strlen(kv) > 120 ? "..." : "");
    const char *eq = strchr(kv, '=');
    if (!eq) return PEFTC_ERR(PEFTC_EINVAL, "%sexpected key=value", where);
    size_t len = (size_t)(eq - kv);
    if (len == 0) return PEFTC_ERR(PEFTC_EINVAL, "%smissing key before '='", where);
    if (len >= sizeof name)
        return PEFTC_ERR(PEFTC_EINVAL, "%sunknown key '%.*s...'", where, 40, kv);
    memcpy(name, kv, len);
    name[len] = '\0';
    const ConfigKey *k;
    PEFTC_TRY(resolve_key(name, where, &k));
    return config_key_set(k, c, eq + 1, where);
}

static PeftcStatus finish_model(RunConfig *c) {
    LlamaConfig *m = &c->model;
    int derived = m->head_dim == 0;
    if (derived) {
        if (m->hidden % m->heads != 0)
            return PEFTC_ERR(PEFTC_EINVAL,
                             "model.hidden (%d) must be divisible by model.heads (%d) when model.head_dim is 0",
                             m->hidden, m->heads);
        m->head_dim = m->hidden / m->heads;
    }
    if (m->head_dim % 2 != 0)
        return PEFTC_ERR(PEFTC_EINVAL, "model.head_dim (%d%s) must be even: RoPE rotates pairs of dimensions",
                         m->head_dim, derived ? " = model.hidden / model.heads" : "");
    if (m->heads % m->kv_heads != 0)
        return PEFTC_ERR(PEFTC_EINVAL, "model.kv_heads (%d) must divide model.heads (%d)", m->kv_heads, m->heads);
    if (!c->model_path[0] && m->vocab < SYN_VOCAB)
        return PEFTC_ERR(PEFTC_EINVAL, "model.vocab (%d) must be >= %d, the token count of data.task", m->vocab,
                         SYN_VOCAB);
    return PEFTC_OK;
}

/* A quantized base comes from a file, frozen: a GGUF file's blocks or an HF folder's weights in NF4
 * (llama_load_quantized checks which file it is). */
static PeftcStatus finish_quantized(const RunConfig *c) {
    if (c->model.quantized == QUANT_NONE || c->model_path[0]) return PEFTC_OK;
    if (c->model.quantized == QUANT_NF4)
        return PEFTC_ERR(PEFTC_EINVAL, "model.quantized=nf4 needs model.path to be an HF folder, whose weights it "
                                       "quantizes at load; the random model has none");
    return PEFTC_ERR(PEFTC_EINVAL, "model.quantized=true needs model.path to be a GGUF file; the random model has "
                                   "no quantized blocks");
}

static PeftcStatus finish_train(RunConfig *c) {
    TrainConfig *t = &c->train;
    if (t->sched.warmup > t->steps)
        return PEFTC_ERR(PEFTC_EINVAL, "sched.warmup (%lld) must be <= train.steps (%lld)",
                         (long long)t->sched.warmup, (long long)t->steps);
    t->sched.total = t->steps;
    return PEFTC_OK;
}

/* Text data (a file or a text task) needs a tokenizer: a pretrained model's, or data.tokenizer's. */
static PeftcStatus finish_text_data(RunConfig *c) {
    SftConfig *s = &c->sft;
    if (!c->model_path[0] && !c->tokenizer_path[0]) {
        if (s->path[0])
            return PEFTC_ERR(PEFTC_EINVAL, "data.path needs a tokenizer: set model.path to a GGUF file or HF folder, "
                             "or data.tokenizer");
        return PEFTC_ERR(PEFTC_EINVAL,
                         "data.task=%s is text and needs a tokenizer: set model.path (or data.tokenizer), or use a "
                         "digit task (copy, reverse, add) with the random model",
                         data_task_names[c->task]);
    }
    s->task = (TaskKind)c->task;
    s->seed = c->data.seed;
    s->eval_percent = c->data.eval_percent;
    s->seq_len = c->train.seq_len;
    return PEFTC_OK;
}

static PeftcStatus finish_data(RunConfig *c) {
    if (c->sft.path[0] || !data_task_is_synthetic(c->task)) return finish_text_data(c);
    if (c->sft.eval_path[0]) return PEFTC_ERR(PEFTC_EINVAL, "data.eval_path is set but data.path is not");
    if (c->train.packing)
        return PEFTC_ERR(PEFTC_EINVAL, "data.packing=true needs text data (data.path, or data.task=arith, records or "
                         "sql): the digit task %s is an endless generator with nothing to pack",
                         data_task_names[c->task]);
    SynConfig *d = &c->data;
    d->task = (SynTask)(c->task - DATA_COPY);
    if (d->min_digits > d->max_digits)
        return PEFTC_ERR(PEFTC_EINVAL, "data.min_digits (%d) must be <= data.max_digits (%d)", d->min_digits,
                         d->max_digits);
    int need = syn_max_len(d);
    if (need > c->train.seq_len) {
        char task[32];
        config_key_format(config_key_find("data.task"), c, task, sizeof task);
        return PEFTC_ERR(PEFTC_EINVAL,
                         "train.seq_len (%d) is too short for data.task=%s with data.max_digits=%d: "
                         "the longest example needs %d tokens",
                         c->train.seq_len, task, d->max_digits, need);
    }
    return PEFTC_OK;
}

/* The chosen method's sections and checks (adapters/method.h). */
static PeftcStatus finish_method(RunConfig *c) {
    MethodEnv env = {.out_dir = c->out_dir, .train_steps = c->train.steps, .on_cpu = c->device == DEV_CPU,
                     .quantized_base = c->model.quantized != QUANT_NONE};
    return method_finish(config_method(c), &c->methods, &env);
}

/* What the CUDA path cannot do yet is refused before anything starts. */
static PeftcStatus finish_device(const RunConfig *c) {
    if (c->device != DEV_CUDA) return PEFTC_OK;
#ifndef PEFTC_WITH_CUDA
    return PEFTC_ERR(PEFTC_EINVAL, "train.device=cuda: this build has no CUDA backend (nvcc was not found when it "
                                   "was configured)");
#else
    if (c->em_examples > 0)
        return PEFTC_ERR(PEFTC_EINVAL, "train.device=cuda: generation (eval.examples) runs on the CPU backend only "
                                       "for now; set eval.examples=0");
    return PEFTC_OK;
#endif
}

/* Every name in checkpoint.allow_changes is a key (a typo must not silently accept nothing). */
static PeftcStatus finish_allow_changes(const RunConfig *c) {
    char list[sizeof c->ckpt_allow];
    snprintf(list, sizeof list, "%s", c->ckpt_allow);
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        name += strspn(name, " ");
        if (config_key_find(name)) continue;
        const ConfigKey *s = config_key_suggest(name);
        return PEFTC_ERR(PEFTC_EINVAL, "checkpoint.allow_changes: '%s' is not a configuration key%s%s%s", name,
                         s ? " (did you mean '" : "", s ? s->name : "", s ? "'?)" : "");
    }
    return PEFTC_OK;
}

static PeftcStatus finish_checkpoint(RunConfig *c) {
    PEFTC_TRY(finish_allow_changes(c));
    if (c->ckpt_dir[0]) return PEFTC_OK;
    if (snprintf(c->ckpt_dir, sizeof c->ckpt_dir, "%s/checkpoints", c->out_dir) >= (int)sizeof c->ckpt_dir)
        return PEFTC_ERR(PEFTC_EINVAL, "output.dir is too long to hold checkpoints/; set checkpoint.folder");
    return PEFTC_OK;
}

PeftcStatus config_finish(RunConfig *c) {
    PEFTC_TRY(finish_checkpoint(c));
    PEFTC_TRY(finish_device(c));
    PEFTC_TRY(finish_model(c));
    PEFTC_TRY(finish_quantized(c));
    PEFTC_TRY(finish_train(c));
    PEFTC_TRY(finish_data(c));
    return finish_method(c);
}
