/* EigenLoRAx's keys and descriptor: loadings on a recycled principal subspace (a 'peftc eigen build'
 * file); a checkpoint records the basis file's identity so a resume cannot silently use another. */
#include <stdlib.h>
#include <string.h>

#include "adapters/formats/peft_io.h"
#include "adapters/eigenlora.h"

static const char *const init_names[] = {"uniform", "projection", NULL};

static const SettingKey eigen_keys[] = {
    SETTING_STR("eigenlora.basis", EigenConfig, basis_path, "", KEYF_OPTIONAL, "basis file written by 'peftc eigen build'"),
    SETTING_INT("eigenlora.k", EigenConfig, K, "0", KEY_GE(0), "components per side; 0 = all the basis holds"),
    SETTING_ENUM("eigenlora.init", EigenConfig, init_projection, "uniform", init_names,
                 "uniform: loadings U(-0.5, 0.5); projection: loadings of the adapter in eigenlora.projection_from"),
    SETTING_STR("eigenlora.projection_from", EigenConfig, projection_from, "", KEYF_OPTIONAL,
                "PEFT LoRA folder for init=projection"),
};

static PeftcStatus finish(void *settings, const MethodDesc *d, const MethodEnv *env);

const MethodSection eigenlora_section = {
    .name = "eigenlora",
    .help = "EigenLoRAx (method.name=eigenlora): loadings on a basis from 'peftc eigen build'",
    .keys = eigen_keys,
    .n_keys = sizeof eigen_keys / sizeof eigen_keys[0],
    .size = sizeof(EigenConfig),
    .finish = finish,
};

static PeftcStatus finish(void *settings, const MethodDesc *d, const MethodEnv *env) {
    (void)env;
    const EigenConfig *e = settings;
    if (!method_reads(d, &eigenlora_section)) return PEFTC_OK;
    if (!e->basis_path[0])
        return PEFTC_ERR(PEFTC_EINVAL, "method.name=eigenlora needs eigenlora.basis (a file from 'peftc eigen build')");
    if (e->init_projection && !e->projection_from[0])
        return PEFTC_ERR(PEFTC_EINVAL, "eigenlora.init=projection needs eigenlora.projection_from (a PEFT folder)");
    return PEFTC_OK;
}

/* The eigenlora.* keys completed by the lora.* ones: rank and targets. */
static EigenConfig eigen_config(const MethodConfig *mc) {
    EigenConfig ec = *(const EigenConfig *)method_section_settings_c(&mc->settings, &eigenlora_section);
    const LoraConfig *l = &lora_settings_c(&mc->settings)->lora;
    ec.r = l->r;
    ec.targets = l->targets;
    return ec;
}

static PeftcStatus make_eigen(Adapter **out, const Backend *be, const Linear *l, const void *cfg, int group,
                              int unused) {
    (void)unused;
    const void *const *pair = cfg; /* {EigenConfig, EigenBasis} */
    return eigenlora_create(out, be, l, pair[1], pair[0], group);
}

/* Adapters copy their components at creation, so the basis file is open only meanwhile. */
static PeftcStatus attach(Model *m, Arena *a, MethodConfig *mc) {
    PEFTC_TRY(lora_resolve_targets(m, mc));
    EigenConfig ec = eigen_config(mc);
    EigenBasis basis;
    int group;
    PEFTC_TRY(arena_group(a, mc->desc->name, lora_group_lr(mc), mc->weight_decay, &group));
    PEFTC_TRY(eigen_basis_open(&basis, ec.basis_path));
    if (ec.K == 0) ec.K = basis.columns; /* every component the file holds */
    const void *pair[2] = {&ec, &basis};
    PeftcStatus st = method_attach_each(m, a, ec.targets, make_eigen, pair, group, -1);
    eigen_basis_close(&basis);
    return st;
}

static PeftcStatus init(Model *m, Arena *a, MethodConfig *mc, uint64_t seed) {
    (void)mc;
    return method_init_adapters(m, a, seed);
}

static PeftcStatus state(const MethodConfig *mc, const Model *m, MethodStateSink sink, void *user) {
    (void)m;
    char *id = malloc(96);
    if (!id) return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint: out of memory");
    PeftcStatus st = ckpt_file_hash(eigen_config(mc).basis_path, id, 96);
    if (st != PEFTC_OK) {
        free(id);
        return st;
    }
    return sink(user, "eigenlora/basis", CKPT_U8, id, strlen(id));
}

/* A PEFT LoRA whose scale is 1: no alpha/r scaling, no dropout. */
static PeftcStatus export(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name) {
    EigenConfig ec = eigen_config(mc);
    LoraConfig lc = lora_settings_c(&mc->settings)->lora;
    lc.alpha = eigenlora_export_alpha(&ec);
    lc.rslora = 0;
    lc.dropout = 0;
    return peft_save(m, &lc, base_name, dir);
}

const MethodDesc eigenlora_method = {
    .name = "eigenlora",
    .help = "loadings on a recycled subspace",
    .sections = (const MethodSection *const[]){&lora_section, &eigenlora_section, NULL},
    .attach = attach,
    .init = init,
    .state = state,
    .export = export,
};
