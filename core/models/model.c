/* What the Model interface needs beyond its family's table. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/models/model.h"
#include "core/nn/adapter.h"

const char *const quant_mode_names[] = {[QUANT_NONE] = "false", [QUANT_BLOCKS] = "true", [QUANT_NF4] = "nf4", NULL};

/* Index of the kind `name` (short or HF name) in t (n), or -1. */
static int target_index(const ModelTarget *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0 || strcmp(t[i].hf, name) == 0) return i;
    /* PEFT matches module-name suffixes: "self_attn.q_proj" names q_proj. */
    const char *dot = strrchr(name, '.');
    return dot ? target_index(t, n, dot + 1) : -1;
}

/* "q, k, v, ..., their HF names, or all-linear" for messages. */
static void list_targets(const ModelTarget *t, int n, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < cap; i++) used += (size_t)snprintf(buf + used, cap - used, "%s, ", t[i].name);
    if (used < cap) snprintf(buf + used, cap - used, "their HF names, or all-linear");
}

PeftcStatus model_targets_mask(const ModelTarget *t, int n_targets, const char *family, const char *text,
                               const char *key, unsigned *out) {
    unsigned bits = 0;
    const char *p = text;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        size_t n = 0;
        while (p[n] && p[n] != ',' && !isspace((unsigned char)p[n])) n++;
        if (!n) break;
        char word[64], expected[256];
        if (n >= sizeof word) return PEFTC_ERR(PEFTC_EINVAL, "%s: name '%.*s' is too long", key, (int)n, p);
        snprintf(word, sizeof word, "%.*s", (int)n, p);
        p += n;
        if (!strcmp(word, "all-linear") || !strcmp(word, "all")) {
            bits |= (1u << n_targets) - 1;
            continue;
        }
        int i = target_index(t, n_targets, word);
        if (i < 0) {
            list_targets(t, n_targets, expected, sizeof expected);
            return PEFTC_ERR(PEFTC_EINVAL, "%s: '%s' is not a kind of linear layer of a %s model (expected %s)", key,
                             word, family, expected);
        }
        bits |= 1u << i;
    }
    if (!bits) return PEFTC_ERR(PEFTC_EINVAL, "%s: no target given in '%s'", key, text);
    *out = bits;
    return PEFTC_OK;
}

PeftcStatus model_target_mask(const Model *m, const char *text, const char *key, unsigned *out) {
    return model_targets_mask(m->targets, m->n_targets, m->ops->family, text, key, out);
}

PeftcStatus model_reserve_adapters(const Model *m, int rows) {
    for (int i = 0; i < m->n_linears; i++) {
        Linear *l = m->linears[i];
        if (l->adapter) PEFTC_TRY(l->adapter->ops->reserve(l->adapter, rows));
    }
    return PEFTC_OK;
}

PeftcStatus model_check_batch(int B_res, int T_res, int B, int T, const int32_t *tokens, const int32_t *targets, int V) {
    if (B_res != B || T_res != T)
        return PEFTC_ERR(PEFTC_ESTATE, "model: forward with B=%d T=%d but activations were reserved for B=%d T=%d", B, T,
                         B_res, T_res);
    for (int i = 0; i < B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return PEFTC_ERR(PEFTC_EINVAL, "model: token id %d at position %d is outside the vocabulary [0, %d)", tokens[i],
                             i, V);
    for (int i = 0; targets && i < B * T; i++)
        if (targets[i] != PEFTC_IGNORE_INDEX && (targets[i] < 0 || targets[i] >= V))
            return PEFTC_ERR(PEFTC_EINVAL, "model: target id %d at position %d is outside the vocabulary [0, %d)",
                             targets[i], i, V);
    return PEFTC_OK;
}

void model_add_ref(Model *m, const char *name, Shape shape, real_t **data, real_t **grad, int decay) {
    ParamRef *r = &m->refs[m->n_refs++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->shape = shape;
    r->data = data;
    r->grad = grad;
    r->decay = decay;
}

int model_block_index(const char *name, const char *prefix, const char **rest) {
    size_t plen = strlen(prefix);
    if (strncmp(name, prefix, plen) != 0) return -1;
    const char *d = name + plen;
    if (!isdigit((unsigned char)d[0]) || (d[0] == '0' && isdigit((unsigned char)d[1]))) return -1;
    char *end;
    long n = strtol(d, &end, 10);
    if (*end != '.' || n > 1 << 30) return -1;
    *rest = end + 1;
    return (int)n;
}

int model_find_ref(const Model *m, const char *name) {
    for (int i = 0; i < m->n_refs; i++)
        if (strcmp(m->refs[i].name, name) == 0) return i;
    return -1;
}

PeftcStatus model_ref_read(const Model *m, int i, real_t *out) {
    const ParamRef *r = &m->refs[i];
    if (r->quantized || !*r->data)
        return PEFTC_ERR(PEFTC_ESTATE, "model: tensor '%s' is held %s, not as values that can be read back",
                         r->name, r->quantized ? "in quantized blocks" : "in bf16 only");
    m->be->download(m->be, out, *r->data, (size_t)shape_numel(&r->shape) * sizeof *out);
    return m->be->status(m->be);
}
