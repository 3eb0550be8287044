/* What every method shares: settings storage, defaults, the finish of its sections, and attaching one
 * adapter per targeted linear layer. */
#include "adapters/method.h"

#include <stdint.h>
#include <string.h>

#include "core/nn/adapter.h"

void *method_section_settings(MethodSettings *s, const MethodSection *sec) {
    int i = method_section_index(sec);
    return i < 0 ? NULL : s->sec[i].bytes;
}

const void *method_section_settings_c(const MethodSettings *s, const MethodSection *sec) {
    return method_section_settings((MethodSettings *)s, sec);
}

int method_reads(const MethodDesc *d, const MethodSection *sec) {
    for (const MethodSection *const *s = d->sections; s && *s; s++)
        if (*s == sec) return 1;
    return 0;
}

PeftcStatus method_settings_defaults(MethodSettings *s) {
    memset(s, 0, sizeof *s);
    int n;
    const MethodSection *const *secs = method_sections(&n);
    for (int i = 0; i < n; i++) {
        if (secs[i]->size > METHOD_SECTION_BYTES)
            return PEFTC_ERR(PEFTC_EINVAL, "method section %s: settings of %zu bytes exceed METHOD_SECTION_BYTES (%d)",
                             secs[i]->name, secs[i]->size, METHOD_SECTION_BYTES);
        for (int k = 0; k < secs[i]->n_keys; k++)
            PEFTC_TRY(setting_set(&secs[i]->keys[k], s->sec[i].bytes, secs[i]->keys[k].def, "default: "));
    }
    return PEFTC_OK;
}

PeftcStatus method_finish(const MethodDesc *d, MethodSettings *s, const MethodEnv *env) {
    int n;
    const MethodSection *const *secs = method_sections(&n);
    for (int i = 0; i < n; i++)
        if (secs[i]->finish) PEFTC_TRY(secs[i]->finish(s->sec[i].bytes, d, env));
    return d->validate ? d->validate(s, env) : PEFTC_OK;
}

PeftcStatus method_config_defaults(MethodConfig *mc, const char *name, double lr) {
    memset(mc, 0, sizeof *mc);
    mc->desc = method_find(name);
    if (!mc->desc) return PEFTC_ERR(PEFTC_EINVAL, "method.name: no method called '%s'", name);
    mc->lr = lr;
    PEFTC_TRY(method_settings_defaults(&mc->settings));
    /* No output folder: nothing derived from one (RoSA's mask file) is set. */
    MethodEnv env = {.out_dir = NULL, .train_steps = INT64_MAX, .on_cpu = 1, .quantized_base = 0};
    return method_finish(mc->desc, &mc->settings, &env);
}

/* Whether some registered method claims op as its own. */
static int method_only(BackendOp op) {
    int n;
    const MethodDesc *const *all = method_registry(&n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < all[i]->n_ops; k++)
            if (all[i]->ops[k] == op) return 1;
    return 0;
}

int method_backend_ops(const MethodConfig *mc, BackendOp *ops) {
    const MethodDesc *d = mc->desc;
    int own = !d->needs_ops || d->needs_ops(mc), n = 0;
    for (int op = 0; op < BACKEND_OP_COUNT; op++) {
        int mine = 0;
        for (int k = 0; k < d->n_ops; k++) mine |= d->ops[k] == (BackendOp)op;
        if (mine ? own : !method_only((BackendOp)op)) ops[n++] = (BackendOp)op;
    }
    return n;
}

PeftcStatus method_attach(Model *m, Arena *arena, MethodConfig *mc) { return mc->desc->attach(m, arena, mc); }

PeftcStatus method_init(Model *m, Arena *arena, MethodConfig *mc, uint64_t seed) {
    return mc->desc->init(m, arena, mc, seed);
}

PeftcStatus method_attach_each(Model *m, Arena *arena, unsigned targets, AdapterMaker make, const void *cfg,
                               int group, int group2) {
    for (int i = 0; i < m->n_linears; i++) {
        Linear *l = m->linears[i];
        if (!(linear_target_bit(l) & targets)) continue;
        Adapter *a;
        PEFTC_TRY(make(&a, m->be, l, cfg, group, group2));
        l->adapter = a;
        PEFTC_TRY(a->ops->register_params(a, arena));
    }
    return PEFTC_OK;
}

PeftcStatus method_init_adapters(Model *m, Arena *arena, uint64_t seed) {
    for (int i = 0; i < m->n_linears; i++) {
        Linear *l = m->linears[i];
        if (l->adapter) PEFTC_TRY(l->adapter->ops->init(l->adapter, arena, l, seed));
    }
    return PEFTC_OK;
}

void method_merge(Model *m) {
    for (int i = 0; i < m->n_linears; i++) {
        Linear *l = m->linears[i];
        if (l->adapter && !l->qW && l->W) l->adapter->ops->merge(l->adapter, l->W);
    }
}

void method_detach(Model *m, MethodConfig *mc) {
    for (int i = 0; m && i < m->n_linears; i++) {
        Linear *l = m->linears[i];
        if (l->adapter) l->adapter->ops->destroy(l->adapter);
        l->adapter = NULL;
    }
    if (mc && mc->desc && mc->desc->release) mc->desc->release(mc);
    if (mc) mc->state = NULL;
}
