#include "adapters/full.h"

#include "core/base/str.h"
#include "core/formats/safetensors.h"
#include "core/models/gguf_save.h"

PeftcStatus full_attach(Model *m, Arena *arena, double lr, double weight_decay) {
    int group, h;
    PEFTC_TRY(arena_group(arena, "base", lr, weight_decay, &group));
    for (int i = 0; i < m->n_refs; i++) {
        const ParamRef *r = &m->refs[i];
        if (r->quantized)
            return PEFTC_ERR(PEFTC_EINVAL, "full fine-tuning needs the dense base: set model.quantized=false (%s is "
                             "kept in quantized blocks)", r->name);
        PEFTC_TRY(arena_register(arena, r->name, r->shape, group, r->decay, &h));
    }
    return PEFTC_OK;
}

PeftcStatus full_init(Model *m, Arena *arena) {
    for (int i = 0; i < m->n_refs; i++) {
        const ParamRef *r = &m->refs[i];
        int h = arena_find(arena, r->name);
        if (h < 0) return PEFTC_ERR(PEFTC_ESTATE, "full fine-tuning: tensor '%s' was not registered", r->name);
        real_t *p = arena_param(arena, h);
        m->be->copy(m->be, p, *r->data, arena->entries[h].numel);
        *r->data = p;
        *r->grad = arena_grad(arena, h);
    }
    return PEFTC_OK;
}

PeftcStatus full_validate(const MethodSettings *s, const MethodEnv *env, const char *name) {
    (void)s;
    if (env->quantized_base)
        return PEFTC_ERR(PEFTC_EINVAL, "method.name=%s: full fine-tuning needs the dense base: set model.quantized=false",
                         name);
    return PEFTC_OK;
}

static PeftcStatus validate(const MethodSettings *s, const MethodEnv *env) { return full_validate(s, env, "full"); }

PeftcStatus full_method_attach(Model *m, Arena *a, MethodConfig *mc) {
    return full_attach(m, a, mc->lr, mc->weight_decay);
}

PeftcStatus full_method_init(Model *m, Arena *a, MethodConfig *mc, uint64_t seed) {
    (void)mc;
    (void)seed;
    return full_init(m, a);
}

PeftcStatus full_method_export(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name) {
    (void)mc;
    if (str_ends_with(dir, ".gguf")) return model_save_gguf(m, base_name, dir, GGML_F32);
    return m->ops->save_hf(m, dir, ST_F32);
}

const MethodDesc full_method = {
    .name = "full",
    .help = "every base tensor",
    .sections = (const MethodSection *const[]){NULL},
    .trains_base = 1,
    .validate = validate,
    .attach = full_method_attach,
    .init = full_method_init,
    .export = full_method_export,
};
