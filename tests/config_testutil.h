/* Run configurations for tests: defaults plus overrides, through config_finish's checks. */
#ifndef PEFTC_CONFIG_TESTUTIL_H
#define PEFTC_CONFIG_TESTUTIL_H

#include "launch/config/config.h"

/* config_finish's verdict on the defaults with up to three overrides (NULL ends the list early). */
static inline PeftcStatus tu_finish_with(const char *a, const char *b, const char *c) {
    RunConfig cfg;
    config_defaults(&cfg);
    const char *kv[] = {a, b, c};
    for (int i = 0; i < 3 && kv[i]; i++) PEFTC_TRY(config_apply_override(&cfg, kv[i]));
    return config_finish(&cfg);
}

#endif
