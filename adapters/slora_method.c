/* The three-matrix LoRA family s B N A (METHODS.md section 3): SLoRA (random init), NLoRA (N from the
 * base weight, nlora.core) and IntTune (NLoRA's init, only N trains). They share the lora.* keys and
 * the adapter of slora.c; they export as PEFT LoRA with B N folded into B. */
#include "adapters/formats/peft_io.h"
#include "adapters/slora.h"

typedef struct {
    NloraCore core;
} NloraSettings;
_Static_assert(sizeof(NloraCore) == sizeof(int), "NloraCore must be int-sized");

static const SettingKey nlora_keys[] = {
    SETTING_ENUM("nlora.core", NloraSettings, core, "block", nlora_core_names,
                 "N from the base weight: block = W[:r,:r] (the code's), pinv = its pseudo-inverse (the paper figure's)"),
};

const MethodSection nlora_section = {
    .name = "nlora",
    .help = "NLoRA / IntTune initialisation from the base weight",
    .keys = nlora_keys,
    .n_keys = sizeof nlora_keys / sizeof nlora_keys[0],
    .size = sizeof(NloraSettings),
};

static SloraConfig slora_config(const MethodConfig *mc, SloraInit init, int train_ab) {
    const LoraConfig *l = &lora_settings_c(&mc->settings)->lora;
    const NloraSettings *n = method_section_settings_c(&mc->settings, &nlora_section);
    return (SloraConfig){.r = l->r, .alpha = l->alpha, .dropout = l->dropout, .rslora = l->rslora, .init = init,
                         .core = n->core, .train_ab = train_ab, .targets = l->targets};
}

static PeftcStatus make_slora(Adapter **out, const Backend *be, const Linear *l, const void *cfg, int group,
                              int unused) {
    (void)unused;
    return slora_create(out, be, l, cfg, group);
}

static PeftcStatus attach_as(Model *m, Arena *a, MethodConfig *mc, SloraInit init, int train_ab) {
    PEFTC_TRY(lora_resolve_targets(m, mc));
    SloraConfig sc = slora_config(mc, init, train_ab);
    int group;
    PEFTC_TRY(arena_group(a, mc->desc->name, lora_group_lr(mc), mc->weight_decay, &group));
    return method_attach_each(m, a, sc.targets, make_slora, &sc, group, -1);
}

static PeftcStatus slora_attach(Model *m, Arena *a, MethodConfig *mc) { return attach_as(m, a, mc, SLORA_INIT_SLORA, 1); }
static PeftcStatus nlora_attach(Model *m, Arena *a, MethodConfig *mc) { return attach_as(m, a, mc, SLORA_INIT_NLORA, 1); }
static PeftcStatus inttune_attach(Model *m, Arena *a, MethodConfig *mc) {
    return attach_as(m, a, mc, SLORA_INIT_NLORA, 0);
}

static PeftcStatus init(Model *m, Arena *a, MethodConfig *mc, uint64_t seed) {
    (void)mc;
    return method_init_adapters(m, a, seed);
}

static PeftcStatus export(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name) {
    return peft_save(m, &lora_settings_c(&mc->settings)->lora, base_name, dir);
}

#define THREE_MATRIX(n, h, sections_list)                                                                      \
    const MethodDesc n##_method = {.name = #n, .help = h, .sections = sections_list, .attach = n##_attach,     \
                                   .init = init, .export = export}

THREE_MATRIX(slora, "s B N A, random init", ((const MethodSection *const[]){&lora_section, NULL}));
THREE_MATRIX(nlora, "s B N A, N from the base weight",
             ((const MethodSection *const[]){&lora_section, &nlora_section, NULL}));
THREE_MATRIX(inttune, "NLoRA with only N trained",
             ((const MethodSection *const[]){&lora_section, &nlora_section, NULL}));
