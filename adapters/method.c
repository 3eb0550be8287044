#include "adapters/method.h"

#include "core/nn/adapter.h"
#include "adapters/full.h"

const char *const method_names[] = {[METHOD_LORA] = "lora",   [METHOD_FULL] = "full",   [METHOD_GMT] = "gmt",
                                    [METHOD_SLORA] = "slora", [METHOD_NLORA] = "nlora", [METHOD_INTTUNE] = "inttune",
                                    [METHOD_EIGENLORA] = "eigenlora", [METHOD_ROSA] = "rosa", [METHOD_SPA] = "spa",
                                    NULL};

/* SpA has no LoRA part to export; RoSA's LoRA part is a plain PEFT LoRA. */
int method_is_lora_shaped(MethodKind k) {
    return k == METHOD_LORA || (k >= METHOD_SLORA && k <= METHOD_EIGENLORA) || k == METHOD_ROSA;
}

int method_is_rosa(MethodKind k) { return k == METHOD_ROSA || k == METHOD_SPA; }

static int is_sparse_op(BackendOp op) {
    for (int i = 0; i < ROSA_SPARSE_OPS; i++)
        if (rosa_sparse_ops[i] == op) return 1;
    return 0;
}

int method_backend_ops(const MethodConfig *mc, BackendOp *ops) {
    int sparse = method_is_rosa(mc->kind) && mc->rosa_density > 0, n = 0;
    for (int op = 0; op < BACKEND_OP_COUNT; op++)
        if (sparse || !is_sparse_op((BackendOp)op)) ops[n++] = (BackendOp)op;
    return n;
}

LoraConfig method_export_config(const MethodConfig *mc) {
    LoraConfig c = mc->lora;
    if (mc->kind == METHOD_EIGENLORA) {
        EigenConfig e = mc->eigen;
        e.r = c.r;
        c.alpha = eigenlora_export_alpha(&e);
        c.rslora = 0;
        c.dropout = 0;
    }
    return c;
}

SloraConfig method_slora_config(const MethodConfig *mc) {
    const LoraConfig *l = &mc->lora;
    return (SloraConfig){.r = l->r, .alpha = l->alpha, .dropout = l->dropout, .rslora = l->rslora,
                         .init = mc->kind == METHOD_SLORA ? SLORA_INIT_SLORA : SLORA_INIT_NLORA,
                         .core = mc->nlora_core, .train_ab = mc->kind != METHOD_INTTUNE, .targets = l->targets};
}

/* GMT trains what full fine-tuning trains; only the update differs (the trainer's gradient hook). */
static int is_full(MethodKind k) { return k == METHOD_FULL || k == METHOD_GMT; }

/* One adapter per targeted linear layer, its tensors in the method's learning-rate group. */
static PeftcStatus attach_adapters(LlamaModel *m, Arena *arena, const MethodConfig *mc, const EigenBasis *basis) {
    int group;
    SloraConfig sc = method_slora_config(mc);
    EigenConfig ec = mc->eigen;
    ec.r = mc->lora.r;
    ec.targets = mc->lora.targets;
    if (basis && ec.K == 0) ec.K = basis->columns; /* every component the file holds */
    /* RoSA's sparse values learn at their own rate (the paper: 2e-4 against LoRA's 7e-4); SpA has
     * nothing else. */
    RosaConfig rc = {.lora = mc->lora, .density = mc->rosa_density};
    if (mc->kind == METHOD_SPA) rc.lora.r = 0;
    int sparse_group = -1;
    if (mc->kind != METHOD_SPA) PEFTC_TRY(arena_group(arena, method_names[mc->kind], mc->lr, mc->weight_decay, &group));
    if (method_is_rosa(mc->kind)) PEFTC_TRY(arena_group(arena, "sparse", mc->sparse_lr, mc->weight_decay, &sparse_group));
    if (mc->kind == METHOD_SPA) group = sparse_group;
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (!(lora_target_bit(l->short_name) & mc->lora.targets)) continue;
        Adapter *a;
        if (mc->kind == METHOD_LORA) PEFTC_TRY(lora_create(&a, m->be, l, &mc->lora, group));
        else if (mc->kind == METHOD_EIGENLORA) PEFTC_TRY(eigenlora_create(&a, m->be, l, basis, &ec, group));
        else if (method_is_rosa(mc->kind)) PEFTC_TRY(rosa_create(&a, m->be, l, &rc, group, sparse_group));
        else PEFTC_TRY(slora_create(&a, m->be, l, &sc, group));
        l->adapter = a;
        PEFTC_TRY(a->ops->register_params(a, arena));
    }
    return PEFTC_OK;
}

/* EigenLoRAx adapters copy their components at creation, so the basis file is open only meanwhile. */
static PeftcStatus attach_eigenlora(LlamaModel *m, Arena *arena, const MethodConfig *mc) {
    EigenBasis basis;
    PEFTC_TRY(eigen_basis_open(&basis, mc->eigen.basis_path));
    PeftcStatus st = attach_adapters(m, arena, mc, &basis);
    eigen_basis_close(&basis);
    return st;
}

PeftcStatus method_attach(LlamaModel *m, Arena *arena, const MethodConfig *mc) {
    if (is_full(mc->kind)) return full_attach(m, arena, mc->lr, mc->weight_decay);
    if (mc->kind == METHOD_EIGENLORA) return attach_eigenlora(m, arena, mc);
    return attach_adapters(m, arena, mc, NULL);
}

PeftcStatus method_init(LlamaModel *m, Arena *arena, const MethodConfig *mc, uint64_t seed) {
    if (is_full(mc->kind)) return full_init(m, arena);
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter) PEFTC_TRY(l->adapter->ops->init(l->adapter, arena, l, seed));
    }
    return PEFTC_OK;
}

void method_merge(LlamaModel *m) {
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter && !l->qW) l->adapter->ops->merge(l->adapter, l->W);
    }
}

void method_detach(LlamaModel *m) {
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter) l->adapter->ops->destroy(l->adapter);
        l->adapter = NULL;
    }
}
