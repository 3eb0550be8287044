/* What the Model interface needs beyond its family's table. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/models/model.h"

int model_target_index(const Model *m, const char *name) {
    for (int i = 0; i < m->n_targets; i++)
        if (strcmp(m->targets[i].name, name) == 0 || strcmp(m->targets[i].hf, name) == 0) return i;
    /* PEFT matches module-name suffixes: "self_attn.q_proj" names q_proj. */
    const char *dot = strrchr(name, '.');
    return dot ? model_target_index(m, dot + 1) : -1;
}

/* "q, k, v, ... or all-linear" for messages. */
static void list_targets(const Model *m, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < m->n_targets && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s, ", m->targets[i].name);
    if (used < cap) snprintf(buf + used, cap - used, "their HF names, or all-linear");
}

PeftcStatus model_target_mask(const Model *m, const char *text, const char *key, unsigned *out) {
    unsigned bits = 0;
    const char *p = text;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        size_t n = 0;
        while (p[n] && p[n] != ',' && !isspace((unsigned char)p[n])) n++;
        if (!n) break;
        char word[64], expected[256];
        snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word ? n : sizeof word - 1), p);
        p += n;
        if (!strcmp(word, "all-linear") || !strcmp(word, "all")) {
            bits |= (1u << m->n_targets) - 1;
            continue;
        }
        int i = model_target_index(m, word);
        list_targets(m, expected, sizeof expected);
        if (i < 0)
            return PEFTC_ERR(PEFTC_EINVAL, "%s: '%s' is not a kind of linear layer of a %s model (expected %s)", key, word,
                             m->ops->family, expected);
        bits |= 1u << i;
    }
    if (!bits) return PEFTC_ERR(PEFTC_EINVAL, "%s: no target given in '%s'", key, text);
    *out = bits;
    return PEFTC_OK;
}
