/* The configuration key table and the per-key value codec, shared by the YAML reader, the override
 * parser, the YAML writer and the help text. Internal to launch/ (and its tests).
 *
 * Every key is described once: its dotted name, type, where it lives in RunConfig, its default (as
 * text, so defaults go through the very parser user values go through), its range and its help. */
#ifndef PEFTC_CONFIG_KEYS_H
#define PEFTC_CONFIG_KEYS_H

#include <stddef.h>

#include "core/base/setting.h"
#include "launch/config/config.h"

/* A key of the run configuration: a setting whose offset is into RunConfig. */
typedef SettingKey ConfigKey;

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

/* The setting codec (core/base/setting.h) on a RunConfig. */
static inline PeftcStatus config_key_set(const ConfigKey *k, RunConfig *c, const char *text, const char *where) {
    return setting_set(k, c, text, where);
}
static inline void config_key_format(const ConfigKey *k, const RunConfig *c, char *buf, size_t n) {
    setting_format(k, c, buf, n);
}
static inline void config_key_type_phrase(const ConfigKey *k, char *buf, size_t n) { setting_type_phrase(k, buf, n); }
static inline void config_key_type_label(const ConfigKey *k, char *buf, size_t n) { setting_type_label(k, buf, n); }
static inline void config_fmt_double(double v, char *buf, size_t n) { setting_fmt_double(v, buf, n); }

#endif
