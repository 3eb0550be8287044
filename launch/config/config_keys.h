/* The configuration key table and the per-key value codec, shared by the YAML reader, the override
 * parser, the YAML writer and the help text. Internal to launch/ (and its tests).
 *
 * Every key is described once: its dotted name, type, where it lives in RunConfig, its default (as
 * text, so defaults go through the very parser user values go through), its range and its help. */
#ifndef PEFTC_CONFIG_KEYS_H
#define PEFTC_CONFIG_KEYS_H

#include <stddef.h>

#include "launch/config/config.h"

typedef enum { KEY_INT, KEY_FLOAT, KEY_BOOL, KEY_STRING, KEY_ENUM } KeyType;

/* A numeric range. lo_kind is 0 (unbounded), '[' (closed) or '(' (open); hi_kind 0, ']' or ')'. */
typedef struct {
    char lo_kind, hi_kind;
    double lo, hi;
} KeyRange;

enum {
    KEYF_LIST = 1,     /* a YAML sequence of scalars is accepted and joined with commas */
    KEYF_OPTIONAL = 2, /* a string that may be empty ("" = not set) */
};

typedef struct {
    const char *name;           /* "section.leaf" */
    KeyType type;
    size_t offset, size;        /* where the value lives in RunConfig, and its size in bytes */
    const char *def;            /* default, as the text a user would write */
    KeyRange range;             /* KEY_INT / KEY_FLOAT only */
    const char *const *values;  /* KEY_ENUM: names indexed by the stored (int-sized) enum value,
                                   NULL-terminated; the owning module's table */
    unsigned flags;             /* KEYF_* */
    const char *help;
} ConfigKey;

typedef struct {
    const char *name; /* "model" */
    const char *help;
} ConfigSection;

/* The table, in section order. */
const ConfigKey *config_keys(int *n);
const ConfigSection *config_sections(int *n);

/* The key with exactly this dotted name, or NULL. */
const ConfigKey *config_key_find(const char *name);
/* 1 if key k's name is "section.<leaf>". */
int config_key_in_section(const ConfigKey *k, const char *section);
/* 1 if some key lives under "prefix." (prefix names a section). */
int config_key_is_section(const char *prefix);
/* The last component of a key's name. */
const char *config_key_leaf(const ConfigKey *k);
/* Closest key to a misspelt name by edit distance (full name, or leaf for a dotless name), or NULL
 * when nothing is close enough to be a plausible typo. */
const ConfigKey *config_key_suggest(const char *name);

/* Parses `text` as key k's value and stores it into c; c is untouched on failure. Messages start with
 * `where` (e.g. "job.yaml:7: ") and name the key. */
PeftcStatus config_key_set(const ConfigKey *k, RunConfig *c, const char *text, const char *where);
/* The value of key k in c as text that config_key_set reads back to the identical value (strings are
 * returned raw: the YAML writer quotes them). */
void config_key_format(const ConfigKey *k, const RunConfig *c, char *buf, size_t n);
/* "an integer", "a number", "a boolean", "a string" or "one of a, b, c". */
void config_key_type_phrase(const ConfigKey *k, char *buf, size_t n);
/* The constraint as text: "int >= 1", "float in [0, 1)", "bool", "lora|full", "string". */
void config_key_type_label(const ConfigKey *k, char *buf, size_t n);

/* Shortest "%.Ng" text that strtod reads back to exactly v. */
void config_fmt_double(double v, char *buf, size_t n);

#endif
