/* Settings a resume may not change (see ckpt_settings.h). */
#include "launch/ckpt_settings.h"

#include <string.h>

#include "launch/config/config_keys.h"

/* Keys (or whole sections, ending in '.') whose values never change what training computes, or that
 * are checked another way. */
static const char *const IGNORED[] = {
    "model.path",         /* the base's identity is its content hash, compared separately */
    "train.micro_batch",  /* the global batch is compared; its split over ranks and accumulation */
    "train.accum",        /* gives the same result */
    "train.threads", "train.device", "train.eval_every", "train.eval_batches", "train.nonfinite",
    "train.max_skips", "eval.", "output.", "checkpoint.", "data.cache_dir",
    "rosa.mask_path",     /* the masks themselves are compared with the checkpoint's */
    "eigenlora.basis",    /* the basis identity is compared with the checkpoint's */
    "eigenlora.projection_from", "lora.init_from", /* initialisation only: the checkpoint replaces it */
};

static int ignored(const char *name) {
    for (size_t i = 0; i < sizeof IGNORED / sizeof IGNORED[0]; i++) {
        size_t n = strlen(IGNORED[i]);
        if (IGNORED[i][n - 1] == '.' ? strncmp(name, IGNORED[i], n) == 0 : strcmp(name, IGNORED[i]) == 0) return 1;
    }
    return 0;
}

static int allowed(const RunConfig *c, const char *name) {
    size_t n = strlen(name);
    for (const char *p = c->ckpt_allow; *p;) {
        p += strspn(p, " ,");
        size_t len = strcspn(p, ",");
        while (len && p[len - 1] == ' ') len--;
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

/* Appends "key old -> new" to the list in buf. */
static void add_change(char *buf, size_t cap, const char *name, const char *was, const char *is) {
    size_t used = strlen(buf);
    if (used + 8 >= cap) return;
    snprintf(buf + used, cap - used, "%s%s: %s -> %s", used ? "; " : "", name, was[0] ? was : "\"\"",
             is[0] ? is : "\"\"");
    if (strlen(buf) + 5 >= cap) strcpy(buf + cap - 5, "...");
}

PeftcStatus ckpt_settings_check(const RunConfig *now, const char *stored, const char *path, int64_t step, FILE *log) {
    if (now->train.steps < step)
        return PEFTC_ERR(PEFTC_EINVAL, "checkpoint '%s' is at step %lld, past train.steps=%lld; set train.steps to "
                         "%lld or more (and list it in checkpoint.allow_changes) to train further", path,
                         (long long)step, (long long)now->train.steps, (long long)step);
    static RunConfig then; /* large: not on the stack */
    config_defaults(&then);
    char name[1200];
    snprintf(name, sizeof name, "%s (its stored configuration)", path);
    PEFTC_TRY(config_load_yaml_text(&then, stored, name));
    int n;
    const ConfigKey *keys = config_keys(&n);
    char refused[2048] = "", accepted[2048] = "";
    for (int i = 0; i < n; i++) {
        if (ignored(keys[i].name)) continue;
        char was[600], is[600];
        config_key_format(&keys[i], &then, was, sizeof was);
        config_key_format(&keys[i], now, is, sizeof is);
        if (strcmp(was, is) == 0) continue;
        if (allowed(now, keys[i].name)) add_change(accepted, sizeof accepted, keys[i].name, was, is);
        else add_change(refused, sizeof refused, keys[i].name, was, is);
    }
    if (refused[0])
        return PEFTC_ERR(PEFTC_EINVAL, "checkpoint '%s' was made with other settings (%s); run with the "
                         "checkpoint's values, or name the keys in checkpoint.allow_changes to accept them", path,
                         refused);
    if (accepted[0] && log) fprintf(log, "peftc: resume: accepting changed settings (checkpoint.allow_changes): %s\n",
                                    accepted);
    return PEFTC_OK;
}
