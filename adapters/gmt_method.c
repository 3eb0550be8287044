/* GMT's keys and descriptor: full fine-tuning whose every update goes through the gradient mask. */
#include "adapters/full.h"
#include "adapters/gmt.h"

static const SettingKey gmt_keys[] = {
    SETTING_FLT("gmt.mask_ratio", GmtConfig, mask_ratio, "0.5", KEY_IN_HO(0, 1),
                "fraction of each tensor's gradient zeroed every step (smallest |g|)"),
    SETTING_ENUM("gmt.masked_update", GmtConfig, update, "zero", gmt_update_names,
                 "zero: AdamW sees zeros there; skip: masked entries keep parameter, m and v"),
};
_Static_assert(sizeof(GmtUpdate) == sizeof(int), "GmtUpdate must be int-sized");

const MethodSection gmt_section = {
    .name = "gmt",
    .help = "gradient-mask tuning (method.name=gmt): full fine-tuning, each step's gradient masked per tensor",
    .keys = gmt_keys,
    .n_keys = sizeof gmt_keys / sizeof gmt_keys[0],
    .size = sizeof(GmtConfig),
};

static PeftcStatus validate(const MethodSettings *s, const MethodEnv *env) {
    (void)s;
    if (!env->on_cpu)
        return PEFTC_ERR(PEFTC_EINVAL, "train.device=cuda: method.name=gmt runs on the CPU backend only for now");
    return full_validate(s, env, "gmt");
}

static PeftcStatus grad_hook(MethodConfig *mc, const Arena *a, GradHook *h) {
    Gmt *g;
    PEFTC_TRY(gmt_create(&g, a, method_section_settings_c(&mc->settings, &gmt_section)));
    mc->state = g;
    *h = gmt_hook(g);
    return PEFTC_OK;
}

static void release(MethodConfig *mc) { gmt_free(mc->state); }

const MethodDesc gmt_method = {
    .name = "gmt",
    .help = "full, masked gradients",
    .sections = (const MethodSection *const[]){&gmt_section, NULL},
    .trains_base = 1,
    .validate = validate,
    .attach = full_method_attach,
    .init = full_method_init,
    .grad_hook = grad_hook,
    .export = full_method_export,
    .release = release,
};
