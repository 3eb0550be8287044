/* The lora.* keys every LoRA-shaped method reads, and plain LoRA's descriptor: adapters on the targeted
 * linear layers, optionally started from a PEFT adapter (lora.init_from), exported as a PEFT folder. */
#include <stdio.h>
#include <string.h>

#include "adapters/formats/peft_io.h"
#include "adapters/lora.h"

static const SettingKey lora_keys[] = {
    SETTING_INT("lora.r", LoraSettings, lora.r, "8", KEY_IN(1, 4096), "adapter rank"),
    SETTING_FLT("lora.alpha", LoraSettings, lora.alpha, "16", KEY_GT(0),
                "scale numerator: alpha/r (alpha/sqrt(r) with rslora)"),
    SETTING_FLT("lora.dropout", LoraSettings, lora.dropout, "0.05", KEY_IN_HO(0, 1), "dropout on the adapter input"),
    SETTING_BOOL("lora.rslora", LoraSettings, lora.rslora, "false", "rank-stabilised scale alpha/sqrt(r)"),
    SETTING_STR("lora.targets", LoraSettings, targets, "all-linear", KEYF_LIST,
                "all-linear or a list of q,k,v,o,gate,up,down"),
    SETTING_FLT("lora.lr", LoraSettings, lr, "0", KEY_GE(0), "adapter learning rate; 0 = optim.lr"),
    SETTING_STR("lora.init_from", LoraSettings, init_from, "", KEYF_OPTIONAL,
                "PEFT adapter folder to start from (its r, alpha, targets and rslora replace the lora.* keys)"),
};

static PeftcStatus lora_finish(void *settings, const MethodDesc *d, const MethodEnv *env) {
    (void)env;
    LoraSettings *ls = settings;
    if (ls->init_from[0] && !d->loads_peft)
        return PEFTC_ERR(PEFTC_EINVAL, "lora.init_from is set but method.name is %s", d->name);
    if (!method_reads(d, &lora_section)) return PEFTC_OK; /* e.g. full fine-tuning: targets do not matter */
    return lora_parse_targets(ls->targets, &ls->lora.targets);
}

const MethodSection lora_section = {
    .name = "lora",
    .help = "LoRA-shaped adapters: rank, scale, dropout, targets (every method that attaches adapters)",
    .keys = lora_keys,
    .n_keys = sizeof lora_keys / sizeof lora_keys[0],
    .size = sizeof(LoraSettings),
    .finish = lora_finish,
};

LoraSettings *lora_settings(MethodSettings *s) { return method_section_settings(s, &lora_section); }
const LoraSettings *lora_settings_c(const MethodSettings *s) { return method_section_settings_c(s, &lora_section); }

double lora_group_lr(const MethodConfig *mc) {
    double lr = lora_settings_c(&mc->settings)->lr;
    return lr > 0 ? lr : mc->lr;
}

PeftcStatus lora_resolve_targets(const Model *m, MethodConfig *mc) {
    LoraSettings *ls = lora_settings(&mc->settings);
    return model_target_mask(m, ls->targets, "lora.targets", &ls->lora.targets);
}

PeftcStatus lora_maker(Adapter **out, const Backend *be, const Linear *l, const void *cfg, int group, int unused) {
    (void)unused;
    return lora_create(out, be, l, cfg, group);
}

/* A PEFT adapter to start from brings its own shape (rank, alpha, targets resolved against the model);
 * dropout stays the run's. Only plain LoRA reads lora.init_from (the lora section refuses it for
 * others). */
static PeftcStatus start_from_peft(const Model *m, LoraSettings *ls) {
    double dropout = ls->lora.dropout;
    char names[512], key[600];
    PEFTC_TRY(peft_read_config_targets(ls->init_from, &ls->lora, names, sizeof names));
    ls->lora.dropout = dropout;
    snprintf(key, sizeof key, "%s/adapter_config.json: target_modules", ls->init_from);
    return model_target_mask(m, names, key, &ls->lora.targets);
}

static PeftcStatus lora_attach(Model *m, Arena *a, MethodConfig *mc) {
    LoraSettings *ls = lora_settings(&mc->settings);
    PEFTC_TRY(ls->init_from[0] ? start_from_peft(m, ls) : lora_resolve_targets(m, mc));
    int group;
    PEFTC_TRY(arena_group(a, mc->desc->name, lora_group_lr(mc), mc->weight_decay, &group));
    return method_attach_each(m, a, ls->lora.targets, lora_maker, &ls->lora, group, -1);
}

static PeftcStatus lora_init(Model *m, Arena *a, MethodConfig *mc, uint64_t seed) {
    PEFTC_TRY(method_init_adapters(m, a, seed));
    const LoraSettings *ls = lora_settings(&mc->settings);
    return ls->init_from[0] ? peft_load(m, a, ls->init_from) : PEFTC_OK;
}

static PeftcStatus lora_export(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name) {
    return peft_save(m, &lora_settings_c(&mc->settings)->lora, base_name, dir);
}

const MethodDesc lora_method = {
    .name = "lora",
    .help = "LoRA",
    .sections = (const MethodSection *const[]){&lora_section, NULL},
    .loads_peft = 1,
    .attach = lora_attach,
    .init = lora_init,
    .export = lora_export,
};
