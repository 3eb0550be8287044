/* The rosa.* keys and the descriptors of RoSA (LoRA plus a sparse delta on a Fisher mask) and SpA (the
 * sparse delta alone). A run without a mask file first makes the masks (rosa_masks.c) and, with
 * rosa.restart, asks to be rebuilt; the rebuilt run finds the file its predecessor wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapters/formats/peft_io.h"
#include "adapters/formats/rosa_io.h"
#include "adapters/rosa.h"
#include "core/base/fsutil.h"

_Static_assert(sizeof(RosaAccum) == sizeof(int), "RosaAccum must be int-sized");

static const SettingKey rosa_keys[] = {
    SETTING_FLT("rosa.density", RosaSettings, density, "0.01", KEY_IN(0, 1),
                "nonzeros of each layer's sparse delta, as a fraction"),
    SETTING_INT("rosa.warmup", RosaSettings, warmup, "10", KEY_GE(0),
                "LoRA-only steps before gradients are collected for the mask"),
    SETTING_INT("rosa.grad_steps", RosaSettings, grad_steps, "1", KEY_GE(1), "steps whose micro-batch gradients make the mask"),
    SETTING_ENUM("rosa.statistic", RosaSettings, statistic, "mean_squared", rosa_accum_names,
                 "what ranks the mask: mean_squared (empirical Fisher diagonal) or mean of the frozen weight's gradients"),
    SETTING_BOOL("rosa.restart", RosaSettings, restart, "true", "after the mask, train again from step 0 with fresh adapters"),
    SETTING_STR("rosa.mask_path", RosaSettings, mask_path, "", KEYF_OPTIONAL,
                "masks to load (skips generation) if the file exists, else where generated masks go; \"\" = "
                "<output.dir>/rosa_masks.safetensors"),
    SETTING_FLT("rosa.lr", RosaSettings, lr, "0", KEY_GE(0), "sparse values' learning rate; 0 = optim.lr"),
};

static PeftcStatus finish(void *settings, const MethodDesc *d, const MethodEnv *env);

const MethodSection rosa_section = {
    .name = "rosa",
    .help = "RoSA and SpA (method.name=rosa, spa): LoRA plus a sparse delta on a Fisher mask",
    .keys = rosa_keys,
    .n_keys = sizeof rosa_keys / sizeof rosa_keys[0],
    .size = sizeof(RosaSettings),
    .finish = finish,
};

extern const MethodDesc spa_method;

static PeftcStatus finish(void *settings, const MethodDesc *d, const MethodEnv *env) {
    RosaSettings *rs = settings;
    if (!method_reads(d, &rosa_section)) return PEFTC_OK;
    if (d == &spa_method && !(rs->density > 0))
        return PEFTC_ERR(PEFTC_EINVAL, "method.name=spa needs rosa.density > 0 (SpA is the sparse delta alone)");
    if (rs->density > 0 && rs->warmup + rs->grad_steps > env->train_steps && !rs->restart)
        return PEFTC_ERR(PEFTC_EINVAL, "rosa.warmup + rosa.grad_steps (%lld) must fit in train.steps (%lld) when "
                                       "rosa.restart is false", (long long)(rs->warmup + rs->grad_steps),
                         (long long)env->train_steps);
    if (rs->mask_path[0] || !env->out_dir) return PEFTC_OK;
    const char *leaf = "/rosa_masks.safetensors";
    if (strlen(env->out_dir) + strlen(leaf) >= sizeof rs->mask_path)
        return PEFTC_ERR(PEFTC_EINVAL, "output.dir is too long to hold rosa_masks.safetensors; set rosa.mask_path");
    snprintf(rs->mask_path, sizeof rs->mask_path, "%s%s", env->out_dir, leaf);
    return PEFTC_OK;
}

static const RosaSettings *rosa_settings_c(const MethodConfig *mc) {
    return method_section_settings_c(&mc->settings, &rosa_section);
}

/* RoSA's sparse values learn at their own rate (the paper: 2e-4 against LoRA's 7e-4); SpA has nothing
 * else, so its one group is the sparse one. */
static PeftcStatus attach(Model *m, Arena *a, MethodConfig *mc) {
    PEFTC_TRY(lora_resolve_targets(m, mc));
    const RosaSettings *rs = rosa_settings_c(mc);
    int spa = mc->desc == &spa_method;
    RosaConfig rc = {.lora = lora_settings_c(&mc->settings)->lora, .density = rs->density};
    if (spa) rc.lora.r = 0;
    int group = -1, sparse_group;
    if (!spa) PEFTC_TRY(arena_group(a, mc->desc->name, lora_group_lr(mc), mc->weight_decay, &group));
    PEFTC_TRY(arena_group(a, "sparse", rs->lr > 0 ? rs->lr : mc->lr, mc->weight_decay, &sparse_group));
    if (spa) group = sparse_group;
    return method_attach_each(m, a, rc.lora.targets, rosa_maker, &rc, group, sparse_group);
}

/* The second launch of RoSA's recipe (or a restarted run): the masks the first one saved. */
static PeftcStatus init(Model *m, Arena *a, MethodConfig *mc, uint64_t seed) {
    PEFTC_TRY(method_init_adapters(m, a, seed));
    const RosaSettings *rs = rosa_settings_c(mc);
    struct stat sb;
    if (!(rs->density > 0) || !rs->mask_path[0] || stat(rs->mask_path, &sb) != 0) return PEFTC_OK;
    PEFTC_TRY(rosa_load_sparse(m, a, rs->mask_path, 0));
    mc->found_earlier = 1;
    return PEFTC_OK;
}

static PeftcStatus prepare(MethodConfig *mc, Model *m, Trainer *t, Comm *comm, int *restart, char *report,
                           size_t cap) {
    const RosaSettings *rs = rosa_settings_c(mc);
    *restart = 0;
    if (!(rs->density > 0) || mc->found_earlier) return PEFTC_OK;
    PEFTC_TRY(rosa_make_masks(rs, m, t, comm, report, cap));
    *restart = rs->restart;
    return PEFTC_OK;
}

static PeftcStatus state(const MethodConfig *mc, const Model *m, MethodStateSink sink, void *user) {
    (void)mc;
    for (int i = 0; i < m->n_linears; i++) {
        const Adapter *ad = m->linears[i]->adapter;
        if (!ad || !rosa_is(ad) || !rosa_has_mask(ad)) continue;
        int64_t nnz = rosa_layer_nnz(ad);
        int64_t *flat = malloc((size_t)(nnz ? nnz : 1) * sizeof *flat);
        if (!flat) return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint: out of memory for the mask of %s", ad->name);
        PeftcStatus st = rosa_mask_flat(ad, flat);
        if (st != PEFTC_OK) {
            free(flat);
            return st;
        }
        char name[300];
        snprintf(name, sizeof name, "rosa/%s/mask", ad->name);
        PEFTC_TRY(sink(user, name, CKPT_I64, flat, (size_t)nnz));
    }
    return PEFTC_OK;
}

/* The LoRA part as a PEFT folder (RoSA), the sparse deltas beside it. */
static PeftcStatus export(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name) {
    const RosaSettings *rs = rosa_settings_c(mc);
    const LoraConfig *lc = &lora_settings_c(&mc->settings)->lora;
    if (mc->desc != &spa_method && lc->r > 0) PEFTC_TRY(peft_save(m, lc, base_name, dir));
    if (!(rs->density > 0)) return PEFTC_OK;
    char path[700];
    PEFTC_TRY(fs_mkdir_p(dir));
    snprintf(path, sizeof path, "%s/rosa_sparse.safetensors", dir);
    return rosa_save_sparse(m, path);
}

/* The CSR ops run only for a sparse delta (rosa.density > 0). */
static int needs_sparse_ops(const MethodConfig *mc) { return rosa_settings_c(mc)->density > 0; }

/* RoSA and SpA differ only where the functions above ask which one they serve. */
#define ROSA_FAMILY(n, h)                                                                                       \
    const MethodDesc n##_method = {.name = #n, .help = h,                                                       \
                                   .sections = (const MethodSection *const[]){&lora_section, &rosa_section, NULL}, \
                                   .attach = attach, .init = init, .prepare = prepare, .state = state,          \
                                   .export = export, .ops = rosa_sparse_ops, .n_ops = ROSA_SPARSE_OPS,          \
                                   .needs_ops = needs_sparse_ops}

ROSA_FAMILY(rosa, "LoRA + Fisher-masked sparse delta");
ROSA_FAMILY(spa, "the sparse delta alone");
