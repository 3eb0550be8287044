#include "adapters/full.h"

PeftcStatus full_attach(LlamaModel *m, Arena *arena, double lr, double weight_decay) {
    int group, h;
    PEFTC_TRY(arena_group(arena, "base", lr, weight_decay, &group));
    for (int i = 0; i < m->n_refs; i++) {
        const LlamaParamRef *r = &m->refs[i];
        if (r->quantized)
            return PEFTC_ERR(PEFTC_EINVAL, "full fine-tuning needs the dense base: set model.quantized=false (%s is "
                             "kept in quantized blocks)", r->name);
        PEFTC_TRY(arena_register(arena, r->name, r->shape, group, r->decay, &h));
    }
    return PEFTC_OK;
}

PeftcStatus full_init(LlamaModel *m, Arena *arena) {
    for (int i = 0; i < m->n_refs; i++) {
        const LlamaParamRef *r = &m->refs[i];
        int h = arena_find(arena, r->name);
        if (h < 0) return PEFTC_ERR(PEFTC_ESTATE, "full fine-tuning: tensor '%s' was not registered", r->name);
        real_t *p = arena_param(arena, h);
        m->be->copy(m->be, p, *r->data, arena->entries[h].numel);
        *r->data = p;
        *r->grad = arena_grad(arena, h);
    }
    return PEFTC_OK;
}
