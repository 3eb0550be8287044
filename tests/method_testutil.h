/* Methods for tests: a descriptor's configuration at its defaults, and its sections' settings. */
#ifndef PEFTC_METHOD_TESTUTIL_H
#define PEFTC_METHOD_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "adapters/lora.h"
#include "adapters/method.h"
#include "adapters/rosa.h"
#include "core/models/llama/llama.h"

/* Method `name` with every key at its default and optim.lr 1e-3. */
static inline MethodConfig tu_method(const char *name) {
    MethodConfig mc;
    ck_assert_msg(method_config_defaults(&mc, name, 1e-3) == PEFTC_OK, "%s", peftc_err_msg());
    return mc;
}

/* The lora.* and rosa.* settings of mc. */
static inline LoraConfig *tu_lora(MethodConfig *mc) { return &lora_settings(&mc->settings)->lora; }
static inline RosaSettings *tu_rosa(MethodConfig *mc) {
    return method_section_settings(&mc->settings, &rosa_section);
}

/* Targets the LLaMA layer kinds in `bits` (LORA_T_*): lora.targets' text, which attach resolves against
 * the model, and the bits it resolves to. */
static inline void tu_targets(MethodConfig *mc, unsigned bits) {
    LoraSettings *ls = lora_settings(&mc->settings);
    size_t used = 0;
    ls->targets[0] = '\0';
    for (int i = 0; i < LLAMA_N_TARGETS; i++)
        if (bits & (1u << i)) used += (size_t)snprintf(ls->targets + used, sizeof ls->targets - used, "%s%s",
                                                       used ? "," : "", llama_targets[i].name);
    ls->lora.targets = bits;
}

/* Sets key `name` (e.g. "pissa.niter") of whichever method section holds it, as a configuration would. */
static inline void tu_set_key(MethodConfig *mc, const char *name, const char *value) {
    int n;
    const MethodSection *const *secs = method_sections(&n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < secs[i]->n_keys; k++)
            if (!strcmp(secs[i]->keys[k].name, name)) {
                ck_assert_msg(setting_set(&secs[i]->keys[k], mc->settings.sec[i].bytes, value, "") == PEFTC_OK, "%s",
                              peftc_err_msg());
                return;
            }
    ck_abort_msg("no method key %s", name);
}

/* method.name's stored value for `name`: its index in the registry. */
static inline int tu_method_index(const char *name) {
    int n;
    const MethodDesc *const *all = method_registry(&n);
    for (int i = 0; i < n; i++)
        if (all[i] == method_find(name)) return i;
    ck_abort_msg("no method %s", name);
    return -1;
}

#endif
