#include "launch/session.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/formats/gguf.h"
#include "core/models/mamba/mamba_formats.h"

#ifdef PEFTC_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

static MethodConfig method_config(const RunConfig *c) {
    return (MethodConfig){.desc = config_method(c), .settings = c->methods, .lr = c->lr,
                          .weight_decay = c->weight_decay};
}

/* A Mamba file's hyperparameters into the model.* keys: the shared ones and the Mamba ones. */
static PeftcStatus resolve_mamba(RunConfig *c) {
    MambaConfig m;
    PEFTC_TRY(mamba_read_config(c->model_path, &m, NULL));
    c->model_family = FAMILY_MAMBA;
    c->mamba = m;
    c->mamba_expand = m.inner / m.hidden;
    c->model.hidden = m.hidden;
    c->model.layers = m.layers;
    c->model.vocab = m.vocab;
    c->model.rms_eps = m.eps;
    c->model.tie_embeddings = m.tie_embeddings;
    return PEFTC_OK;
}

PeftcStatus session_resolve_model(RunConfig *c) {
    if (!c->model_path[0]) return PEFTC_OK;
    if (!strcmp(model_file_family(c->model_path), "mamba")) return resolve_mamba(c);
    c->model_family = FAMILY_LLAMA;
    ModelInfo info;
    QuantMode quantized = c->model.quantized; /* a run choice, not in the file */
    PeftcStatus st = model_read_config(c->model_path, &c->model, &info);
    c->model.quantized = quantized;
    return st;
}

/* Whether the model carries a tokenizer: a GGUF file in its tokenizer.ggml.* keys, an HF folder as
 * tokenizer.json. Either may hold weights only (fine for synthetic tasks, export and merge). A file that
 * does not open counts as having one: its loader then names what is wrong with it. */
static int has_tokenizer(const char *model_path) {
    struct stat st;
    char path[600];
    if (stat(model_path, &st) != 0) return 1;
    if (!S_ISDIR(st.st_mode)) {
        GgufFile g;
        if (gguf_open(&g, model_path) != PEFTC_OK) {
            peftc_err_clear();
            return 1;
        }
        int has = gguf_find(&g, "tokenizer.ggml.model") != NULL;
        gguf_close(&g);
        return has;
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", model_path);
    return stat(path, &st) == 0;
}

#ifdef PEFTC_WITH_CUDA
/* The process's CUDA instance, made by the first session that asks for one and kept until exit. A
 * Comm moved to the device queues its all-reduce on this instance's stream (comm_use_device) and
 * outlives sessions (RoSA's restart closes one and opens the next on the same Comm), so sessions share
 * one instance rather than each making its own. */
static Backend *process_cuda;
#endif

/* The backend of train.device; a GPU is chosen by the rank's place on its node. */
static PeftcStatus open_backend(const RunConfig *c, Comm *comm, const Backend **be) {
    if (c->device == DEV_CPU) {
        *be = backend_cpu();
        return PEFTC_OK;
    }
#ifdef PEFTC_WITH_CUDA
    if (!process_cuda) {
        int count = cuda_device_count(), local = comm ? comm_local_rank(comm) : 0;
        PEFTC_TRY(backend_cuda_create(count > 0 ? local % count : 0, &process_cuda));
    }
    *be = process_cuda;
    return PEFTC_OK;
#else
    (void)comm;
    return PEFTC_ERR(PEFTC_EINVAL, "train.device=%s: this build has no such backend", device_names[c->device]);
#endif
}

/* Every op the run will call, asked for once before anything is loaded. */
static PeftcStatus require_ops(const RunConfig *c, const Backend *be) {
    MethodConfig mc = method_config(c);
    BackendOp ops[BACKEND_OP_COUNT];
    int n = method_backend_ops(&mc, ops);
    char who[64], why[64];
    snprintf(who, sizeof who, "train.device=%s", device_names[c->device]);
    snprintf(why, sizeof why, "method %s", config_method(c)->name);
    return backend_require(be, ops, n, who, why);
}

/* A random Mamba from the model.* keys: the shared ones (hidden, layers, vocab, rms_eps, tie) and the
 * Mamba ones; conv and in/out projections as HF's defaults have them (conv bias, no projection bias). */
static MambaConfig random_mamba(const RunConfig *c) {
    MambaConfig m = c->mamba;
    m.hidden = c->model.hidden;
    m.layers = c->model.layers;
    m.vocab = c->model.vocab;
    m.eps = c->model.rms_eps;
    m.tie_embeddings = c->model.tie_embeddings;
    m.inner = c->mamba_expand * c->model.hidden;
    if (!m.dt_rank) m.dt_rank = (c->model.hidden + 15) / 16;
    m.conv_bias = 1;
    m.proj_bias = 0;
    return m;
}

/* The weights in host memory: the file's, or a seeded random LLaMA-shaped model (model.* keys). */
static PeftcStatus load_weights(Session *s, Model **m) {
    RunConfig *c = &s->cfg;
    if (!c->model_path[0] && c->model_family == FAMILY_MAMBA) {
        MambaConfig mc = random_mamba(c);
        return mamba_new(m, backend_cpu(), &mc, c->model_seed, c->init_std);
    }
    if (!c->model_path[0]) return llama_new(m, backend_cpu(), &c->model, c->model_seed, c->init_std);
    PEFTC_TRY(model_load(m, backend_cpu(), c->model_path, c->model.quantized, &s->info));
    /* The resolved configuration shows the file's hyperparameters (head_dim resolved). */
    if (!strcmp((*m)->ops->family, "llama")) c->model = llama_of(*m)->cfg;
    return PEFTC_OK;
}

/* train.precision for this backend, and why (the start-up line). auto takes bf16 only where it is
 * faster: a GPU, or a CPU that multiplies bf16 in hardware. (The bf16 ops themselves were asked of the
 * backend with all the others by require_ops.) */
static void resolve_precision(Session *s, const Backend *be) {
    Precision p = s->cfg.precision;
    const char *hw = "a GPU";
    int native = be->device != DEV_CPU || backend_cpu_bf16_native(&hw);
    s->bf16 = p == PREC_BF16 || (p == PREC_AUTO && native);
    /* auto says what it found; an explicit bf16 says only when it costs time here */
    const char *why = p == PREC_AUTO ? ": " : s->bf16 && !native ? "; slower than fp32 here: " : NULL;
    snprintf(s->precision_why, sizeof s->precision_why, "train.precision=%s%s%s", precision_names[p], why ? why : "",
             why ? hw : "");
}

static PeftcStatus open_base(Session *s, Comm *comm) {
    RunConfig *c = &s->cfg;
    const Backend *be = NULL;
    PEFTC_TRY(open_backend(c, comm, &be));
    PEFTC_TRY(require_ops(c, be));
    resolve_precision(s, be);
    if (be->device == DEV_CPU) {
        PEFTC_TRY(load_weights(s, &s->model));
    } else {
        /* Loaders write host memory: load there, then one upload per tensor. */
        Model *host = NULL;
        PEFTC_TRY(load_weights(s, &host));
        PeftcStatus st = host->ops->empty_like(host, be, &s->model);
        if (st == PEFTC_OK) st = s->model->ops->copy_weights(s->model, host);
        model_free(host);
        PEFTC_TRY(st);
    }
    const char *tok = c->tokenizer_path[0] ? c->tokenizer_path
                      : c->model_path[0] && has_tokenizer(c->model_path) ? c->model_path
                                                                         : NULL;
    if (!tok) return PEFTC_OK; /* weights only: fine for synthetic tasks, export and merge */
    PEFTC_TRY(tok_load(&s->tok, tok));
    /* A model may have more ids than its tokenizer (padded vocabularies; generation never samples
     * them), never fewer: the tokenizer's ids would index past the embedding in the first step. */
    if (tok_vocab_size(s->tok) > s->model->vocab)
        return PEFTC_ERR(PEFTC_EFORMAT, "'%s': its tokenizer has %d tokens but the model's vocabulary "
                         "holds %d; ids from %d up would index past the embedding", tok,
                         tok_vocab_size(s->tok), s->model->vocab, s->model->vocab);
    const char *tmpl = tok_chat_template(s->tok);
    s->chat.format = chat_detect(tmpl);
    chat_default_system(tmpl, s->chat_system, sizeof s->chat_system);
    s->chat.default_system = s->chat_system;
    return PEFTC_OK;
}

static PeftcStatus open_method(Session *s) {
    s->method = method_config(&s->cfg);
    arena_init(&s->arena, s->model->be);
    PEFTC_TRY(method_attach(s->model, &s->arena, &s->method));
    PEFTC_TRY(arena_finalize(&s->arena));
    /* Adapter init is keyed by the training seed so one base model can host differently seeded runs. */
    return method_init(s->model, &s->arena, &s->method, s->cfg.train.seed);
}

static PeftcStatus open_data(Session *s) {
    const RunConfig *c = &s->cfg;
    if (!c->sft.path[0] && data_task_is_synthetic(c->task)) return syn_dataset_create(&s->data, &c->data);
    if (!s->tok)
        return PEFTC_ERR(PEFTC_EINVAL, "model.path '%s' has no tokenizer (tokenizer.json in a folder, "
                         "tokenizer.ggml.* keys in a GGUF file), which text data (data.%s) needs; give one with "
                         "data.tokenizer", c->model_path, c->sft.path[0] ? "path" : "task");
    return sft_dataset_create(&s->data, &c->sft, s->tok, &s->chat, &s->data_stats);
}

static PeftcStatus open_model(Session *s, const RunConfig *cfg, Comm *comm) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->comm = comm;
    PeftcStatus st = open_base(s, comm);
    if (st == PEFTC_OK) st = open_method(s);
    if (st != PEFTC_OK) session_close(s);
    return st;
}

PeftcStatus session_open_model(Session *s, const RunConfig *cfg) { return open_model(s, cfg, NULL); }

/* On a GPU the step's all-reduce runs on device memory through NCCL, queued behind the kernels. A
 * communicator that an earlier session already moved to the device (ESTATE) stays as it is. */
static PeftcStatus reduce_on_device(Session *s) {
    if (s->cfg.device == DEV_CPU) return PEFTC_OK;
#ifdef PEFTC_WITH_CUDA
    PeftcStatus st = comm_use_device(s->comm, comm_local_rank(s->comm), backend_cuda_stream(s->model->be));
    if (st == PEFTC_ESTATE) {
        peftc_err_clear();
        return PEFTC_OK;
    }
    return st;
#else
    return PEFTC_ERR(PEFTC_EINVAL, "train.device=%s: this build has no such backend", device_names[s->cfg.device]);
#endif
}

PeftcStatus session_open(Session *s, const RunConfig *cfg, Comm *comm) {
    PEFTC_TRY(open_model(s, cfg, comm));
    /* After the method's init, which may read or rewrite the base (NLoRA, PiSSA) in fp32. */
    PeftcStatus st = s->bf16 ? s->model->ops->use_bf16(s->model) : PEFTC_OK;
    if (st == PEFTC_OK) st = reduce_on_device(s);
    if (st == PEFTC_OK) st = open_data(s);
    if (st == PEFTC_OK) st = trainer_init(&s->trainer, &s->cfg.train, s->model, &s->arena, comm, s->data);
    if (st == PEFTC_OK && s->method.desc->grad_hook) {
        GradHook h;
        st = s->method.desc->grad_hook(&s->method, &s->arena, &h);
        if (st == PEFTC_OK) trainer_set_grad_hook(&s->trainer, &h);
    }
    if (st != PEFTC_OK) session_close(s);
    return st;
}

void session_close(Session *s) {
    trainer_free(&s->trainer);
    method_detach(s->model, &s->method);
    model_free(s->model);
    s->model = NULL;
    arena_free(&s->arena);
    if (s->data) s->data->free(s->data);
    tok_free(s->tok);
    memset(s, 0, sizeof *s);
}

PeftcStatus session_prepare(Session *s, Comm *comm) {
    for (int round = 0; s->method.desc->prepare; round++) {
        int restart = 0;
        char report[512] = "";
        PEFTC_TRY(s->method.desc->prepare(&s->method, s->model, &s->trainer, comm, &restart, report, sizeof report));
        if (report[0] && comm_rank(comm) == 0) {
            printf("%s\n", report);
            fflush(stdout);
        }
        if (!restart) return PEFTC_OK;
        if (round > 0)
            return PEFTC_ERR(PEFTC_ESTATE, "method %s asked to start again a second time", s->method.desc->name);
        /* A fresh model, method, optimizer and schedule from the same configuration; the method finds
         * what its first run left (RoSA: the mask file), as a second launch would. */
        RunConfig cfg = s->cfg;
        session_close(s);
        PEFTC_TRY(session_open(s, &cfg, comm));
        /* what trains may differ from the first run's (SDT: a dense warm-up delta, then sparse ones) */
        if (comm_rank(comm) == 0)
            printf("peftc: the run starts again from step 0; trainable %zu (%s)\n", arena_trainable(&s->arena),
                   s->arena.n_groups ? s->arena.groups[0].name : "-");
    }
    return PEFTC_OK;
}
