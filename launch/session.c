#include "launch/session.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "adapters/formats/peft_io.h"
#include "adapters/formats/rosa_io.h"
#ifdef PEFTC_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

static MethodConfig method_config(const RunConfig *c) {
    return (MethodConfig){.kind = c->method,
                          .lora = c->lora,
                          .gmt = c->gmt,
                          .nlora_core = c->nlora_core,
                          .eigen = c->eigen,
                          .rosa_density = c->rosa_density,
                          .sparse_lr = c->rosa_lr > 0 ? c->rosa_lr : c->lr,
                          .lr = (method_is_lora_shaped(c->method) && c->lora_lr > 0) ? c->lora_lr : c->lr,
                          .weight_decay = c->weight_decay};
}

PeftcStatus session_resolve_model(RunConfig *c) {
    if (!c->model_path[0]) return PEFTC_OK;
    ModelInfo info;
    int quantized = c->model.quantized; /* a run choice, not in the file */
    PeftcStatus st = model_read_config(c->model_path, &c->model, &info);
    c->model.quantized = quantized;
    return st;
}

/* A GGUF file always carries its tokenizer; an HF folder may hold weights only. */
static int has_tokenizer(const char *model_path) {
    struct stat st;
    char path[600];
    if (stat(model_path, &st) != 0 || !S_ISDIR(st.st_mode)) return 1;
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
    snprintf(why, sizeof why, "method %s", method_names[c->method]);
    return backend_require(be, ops, n, who, why);
}

/* The weights in host memory: the file's, or a seeded random model. */
static PeftcStatus load_weights(Session *s, LlamaModel *m) {
    RunConfig *c = &s->cfg;
    if (!c->model_path[0]) return llama_create(m, backend_cpu(), &c->model, c->model_seed, c->init_std);
    if (c->model.quantized) PEFTC_TRY(model_load_quantized(m, backend_cpu(), c->model_path, &s->info));
    else PEFTC_TRY(model_load(m, backend_cpu(), c->model_path, &s->info));
    c->model = m->cfg;
    return PEFTC_OK;
}

static PeftcStatus open_base(Session *s, Comm *comm) {
    RunConfig *c = &s->cfg;
    const Backend *be = NULL;
    PEFTC_TRY(open_backend(c, comm, &be));
    PEFTC_TRY(require_ops(c, be));
    if (be->device == DEV_CPU) {
        PEFTC_TRY(load_weights(s, &s->model));
    } else {
        /* Loaders write host memory: load there, then one upload per tensor. */
        LlamaModel host;
        PEFTC_TRY(load_weights(s, &host));
        PeftcStatus st = llama_create(&s->model, be, &c->model, 0, -1.0);
        if (st == PEFTC_OK) st = llama_copy_weights(&s->model, &host);
        llama_free(&host);
        PEFTC_TRY(st);
    }
    if (!c->model_path[0] || !has_tokenizer(c->model_path)) return PEFTC_OK; /* weights only: fine for export and merge */
    PEFTC_TRY(tok_load(&s->tok, c->model_path));
    /* A model may have more ids than its tokenizer (padded vocabularies; generation never samples
     * them), never fewer: the tokenizer's ids would index past the embedding in the first step. */
    if (tok_vocab_size(s->tok) > c->model.vocab)
        return PEFTC_ERR(PEFTC_EFORMAT, "model.path '%s': its tokenizer has %d tokens but the model's vocabulary "
                         "holds %d; ids from %d up would index past the embedding", c->model_path,
                         tok_vocab_size(s->tok), c->model.vocab, c->model.vocab);
    const char *tmpl = tok_chat_template(s->tok);
    s->chat.format = chat_detect(tmpl);
    chat_default_system(tmpl, s->chat_system, sizeof s->chat_system);
    s->chat.default_system = s->chat_system;
    return PEFTC_OK;
}

/* A PEFT adapter to start from brings its own shape (rank, alpha, targets). */
static PeftcStatus open_method(Session *s) {
    RunConfig *c = &s->cfg;
    if (c->lora_init_from[0]) {
        if (c->method != METHOD_LORA)
            return PEFTC_ERR(PEFTC_EINVAL, "lora.init_from is set but method.name is %s", method_names[c->method]);
        double dropout = c->lora.dropout;
        PEFTC_TRY(peft_read_config(c->lora_init_from, &c->lora));
        c->lora.dropout = dropout; /* a training choice, not part of the adapter */
    }
    s->method = method_config(c);
    arena_init(&s->arena, s->model.be);
    PEFTC_TRY(method_attach(&s->model, &s->arena, &s->method));
    PEFTC_TRY(arena_finalize(&s->arena));
    /* Adapter init is keyed by the training seed so one base model can host differently seeded runs. */
    PEFTC_TRY(method_init(&s->model, &s->arena, &s->method, c->train.seed));
    if (c->lora_init_from[0]) PEFTC_TRY(peft_load(&s->model, &s->arena, c->lora_init_from));
    /* The second launch of RoSA's recipe: the masks the first one saved. */
    struct stat sb;
    if (method_is_rosa(c->method) && c->rosa_density > 0 && stat(c->rosa_mask_path, &sb) == 0) {
        PEFTC_TRY(rosa_load_sparse(&s->model, &s->arena, c->rosa_mask_path, 0));
        s->rosa_masks_loaded = 1;
    }
    return PEFTC_OK;
}

static PeftcStatus open_data(Session *s) {
    const RunConfig *c = &s->cfg;
    if (!c->sft.path[0] && data_task_is_synthetic(c->task)) return syn_dataset_create(&s->data, &c->data);
    if (!s->tok)
        return PEFTC_ERR(PEFTC_EINVAL, "model.path '%s' has no tokenizer.json, which text data (data.%s) needs",
                         c->model_path, c->sft.path[0] ? "path" : "task");
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
    PeftcStatus st = comm_use_device(s->comm, comm_local_rank(s->comm), backend_cuda_stream(s->model.be));
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
    PeftcStatus st = reduce_on_device(s);
    if (st == PEFTC_OK) st = open_data(s);
    if (st == PEFTC_OK) st = trainer_init(&s->trainer, &s->cfg.train, &s->model, &s->arena, comm, s->data);
    if (st == PEFTC_OK && s->cfg.method == METHOD_GMT) st = gmt_create(&s->gmt, &s->arena, &s->cfg.gmt);
    if (st == PEFTC_OK && s->gmt) {
        GradHook h = gmt_hook(s->gmt);
        trainer_set_grad_hook(&s->trainer, &h);
    }
    if (st != PEFTC_OK) session_close(s);
    return st;
}

void session_close(Session *s) {
    trainer_free(&s->trainer);
    gmt_free(s->gmt);
    llama_free(&s->model); /* also destroys attached adapters */
    arena_free(&s->arena);
    if (s->data) s->data->free(s->data);
    tok_free(s->tok);
    memset(s, 0, sizeof *s);
}
