/* Reading a YAML run configuration: nested mappings become dotted keys ("lora: {r: 8}" is "lora.r"),
 * and every message names the file and line so a user can go straight to the mistake. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "launch/config/config_keys.h"

enum { MAX_KEYS = 128 };

typedef struct {
    const char *path;
    yaml_document_t *doc;
    RunConfig *cfg;
    int set_line[MAX_KEYS]; /* line each table key was set on in this file, 0 = not yet */
} YamlCtx;

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a sequence" : "a scalar";
}

static PeftcStatus wrong_shape(const YamlCtx *x, const char *key, const yaml_node_t *v) {
    const ConfigKey *k = config_key_find(key);
    char phrase[160] = "a mapping of keys";
    if (k) config_key_type_phrase(k, phrase, sizeof phrase);
    return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: key '%s' expects %s, got %s", x->path, line_of(v), key, phrase,
                     node_kind(v));
}

static PeftcStatus unknown_key(const YamlCtx *x, const char *key, int line) {
    const ConfigKey *s = config_key_suggest(key);
    if (s)
        return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: unknown key '%s' (did you mean '%s'?)", x->path, line, key, s->name);
    return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: unknown key '%s' (peftc train --help lists every key)", x->path, line,
                     key);
}

/* Joins a sequence of scalars with commas ("targets: [q, v]" is "q,v"). */
static PeftcStatus join_sequence(const YamlCtx *x, const char *key, const yaml_node_t *seq, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        const yaml_node_t *item = yaml_document_get_node(x->doc, *it);
        if (item->type != YAML_SCALAR_NODE)
            return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: key '%s' expects a list of names, got %s in the list", x->path,
                             line_of(item), key, node_kind(item));
        used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s", used ? "," : "", scalar(item));
        if (used >= n)
            return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: key '%s' is too long", x->path, line_of(seq), key);
    }
    return PEFTC_OK;
}

static PeftcStatus set_leaf(YamlCtx *x, const ConfigKey *k, const yaml_node_t *v, int line) {
    int n, idx;
    idx = (int)(k - config_keys(&n));
    if (x->set_line[idx])
        return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: duplicate key '%s' (first set on line %d)", x->path, line, k->name,
                         x->set_line[idx]);
    x->set_line[idx] = line;
    char where[600], joined[1024];
    snprintf(where, sizeof where, "%s:%d: ", x->path, line_of(v));
    if (v->type == YAML_SCALAR_NODE) return config_key_set(k, x->cfg, scalar(v), where);
    if (v->type == YAML_SEQUENCE_NODE && (k->flags & KEYF_LIST)) {
        PEFTC_TRY(join_sequence(x, k->name, v, joined, sizeof joined));
        return config_key_set(k, x->cfg, joined, where);
    }
    return wrong_shape(x, k->name, v);
}

static PeftcStatus apply_mapping(YamlCtx *x, const yaml_node_t *map, const char *prefix);

/* One "key: value" pair whose full dotted name is `key`. */
static PeftcStatus apply_pair(YamlCtx *x, const char *key, const yaml_node_t *v, int line) {
    const ConfigKey *k = config_key_find(key);
    if (k) return set_leaf(x, k, v, line);
    int section = config_key_is_section(key);
    if (v->type == YAML_MAPPING_NODE) {
        /* Descending into an unknown section still pays: its leaves get "did you mean" hints
         * ("trian.steps" -> "train.steps") that the section name alone would not. */
        if (section || v->data.mapping.pairs.start != v->data.mapping.pairs.top) return apply_mapping(x, v, key);
        return unknown_key(x, key, line);
    }
    /* "lora:" with nothing under it is an empty section. */
    if (section && v->type == YAML_SCALAR_NODE && v->data.scalar.length == 0 &&
        v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
        return PEFTC_OK;
    if (section) return wrong_shape(x, key, v);
    return unknown_key(x, key, line);
}

static PeftcStatus check_duplicate(const YamlCtx *x, const yaml_node_t *map, const yaml_node_pair_t *pair,
                                   const char *name) {
    for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pair; q++) {
        const yaml_node_t *k = yaml_document_get_node(x->doc, q->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(scalar(k), name) == 0)
            return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: duplicate key '%s' (first on line %d)", x->path,
                             line_of(yaml_document_get_node(x->doc, pair->key)), name, line_of(k));
    }
    return PEFTC_OK;
}

static PeftcStatus apply_mapping(YamlCtx *x, const yaml_node_t *map, const char *prefix) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = yaml_document_get_node(x->doc, p->key);
        const yaml_node_t *vn = yaml_document_get_node(x->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE)
            return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: keys must be plain names, got %s", x->path, line_of(kn),
                             node_kind(kn));
        PEFTC_TRY(check_duplicate(x, map, p, scalar(kn)));
        char key[256];
        int len = snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", scalar(kn));
        if (len < 0 || (size_t)len >= sizeof key)
            return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: unknown key '%.60s...'", x->path, line_of(kn), key);
        PEFTC_TRY(apply_pair(x, key, vn, line_of(kn)));
    }
    return PEFTC_OK;
}

static PeftcStatus apply_document(YamlCtx *x) {
    const yaml_node_t *root = yaml_document_get_root_node(x->doc);
    if (!root) return PEFTC_OK; /* an empty file changes nothing */
    if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0) return PEFTC_OK;
    if (root->type != YAML_MAPPING_NODE)
        return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: expected a mapping of sections (model:, lora:, ...), got %s",
                         x->path, line_of(root), node_kind(root));
    return apply_mapping(x, root, "");
}

static PeftcStatus syntax_error(const char *path, const yaml_parser_t *p) {
    const yaml_mark_t *m = p->problem ? &p->problem_mark : &p->context_mark;
    return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: YAML syntax error: %s%s%s", path, (int)m->line + 1,
                     p->problem ? p->problem : "unreadable input", p->context ? " " : "",
                     p->context ? p->context : "");
}

/* Loads the first document and applies it to x->cfg; a second document is an error, as it would
 * otherwise be silently ignored. */
static PeftcStatus load_and_apply(YamlCtx *x, yaml_parser_t *parser) {
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) return syntax_error(x->path, parser);
    x->doc = &doc;
    PeftcStatus st = apply_document(x);
    yaml_document_delete(&doc);
    if (st != PEFTC_OK) return st;
    if (!yaml_parser_load(parser, &doc)) return syntax_error(x->path, parser);
    const yaml_node_t *extra = yaml_document_get_root_node(&doc);
    int line = extra ? line_of(extra) : 0;
    yaml_document_delete(&doc);
    if (extra) return PEFTC_ERR(PEFTC_EINVAL, "%s:%d: only one YAML document is allowed", x->path, line);
    return PEFTC_OK;
}

/* Reads from f, or from text when f is NULL; `path` names the source in messages. */
static PeftcStatus load_from(RunConfig *c, const char *path, FILE *f, const char *text) {
    int n;
    config_keys(&n);
    if (n > MAX_KEYS) return PEFTC_ERR(PEFTC_ESTATE, "config: key table larger than MAX_KEYS");
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return PEFTC_ERR(PEFTC_ENOMEM, "%s: cannot initialise the YAML parser", path);
    if (f) yaml_parser_set_input_file(&parser, f);
    else yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    /* Applied to a copy so a file with an error leaves the configuration as it was. */
    RunConfig work = *c;
    YamlCtx x = {.path = path, .cfg = &work};
    PeftcStatus st = load_and_apply(&x, &parser);
    if (st == PEFTC_OK && f && ferror(f)) st = PEFTC_ERR(PEFTC_EINVAL, "%s: read error", path);
    yaml_parser_delete(&parser);
    if (st == PEFTC_OK) *c = work;
    return st;
}

PeftcStatus config_load_yaml(RunConfig *c, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return PEFTC_ERR(PEFTC_EINVAL, "cannot open config file '%s': %s", path, strerror(errno));
    PeftcStatus st = load_from(c, path, f, NULL);
    fclose(f);
    return st;
}

PeftcStatus config_load_yaml_text(RunConfig *c, const char *text, const char *name) {
    return load_from(c, name, NULL, text);
}
