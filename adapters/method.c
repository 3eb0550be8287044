#include "method.h"

#include "adapter.h"
#include "full.h"

const char *const method_names[] = {[METHOD_LORA] = "lora", [METHOD_FULL] = "full", NULL};

static PeftcStatus attach_lora(LlamaModel *m, Arena *arena, const MethodConfig *mc) {
    int group;
    PEFTC_TRY(arena_group(arena, "lora", mc->lr, mc->weight_decay, &group));
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (!(lora_target_bit(l->short_name) & mc->lora.targets)) continue;
        Adapter *a;
        PEFTC_TRY(lora_create(&a, m->be, l, &mc->lora, group));
        l->adapter = a;
        PEFTC_TRY(a->ops->register_params(a, arena));
    }
    return PEFTC_OK;
}

PeftcStatus method_attach(LlamaModel *m, Arena *arena, const MethodConfig *mc) {
    if (mc->kind == METHOD_FULL) return full_attach(m, arena, mc->lr, mc->weight_decay);
    return attach_lora(m, arena, mc);
}

PeftcStatus method_init(LlamaModel *m, Arena *arena, const MethodConfig *mc, uint64_t seed) {
    if (mc->kind == METHOD_FULL) return full_init(m, arena);
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter) PEFTC_TRY(l->adapter->ops->init(l->adapter, arena, l, seed));
    }
    return PEFTC_OK;
}

void method_merge(LlamaModel *m) {
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter) l->adapter->ops->merge(l->adapter, l->W);
    }
}

void method_detach(LlamaModel *m) {
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter) l->adapter->ops->destroy(l->adapter);
        l->adapter = NULL;
    }
}
