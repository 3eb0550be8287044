/* A typed, documented setting stored at an offset in some struct, and its text codec: strict parsing
 * (the whole text or nothing), range checks, and text that reads back bit-identically. The run
 * configuration (launch/config/) and the methods' own sections (adapters/method.h) describe their keys
 * with it, so one codec, one help format and one YAML form serve both.
 *
 * SETTING_INT(name, Type, field, default, range, help) and friends fill one SettingKey for a field of
 * struct Type; defaults are text, so they go through the very parser user values go through. */
#ifndef PEFTC_SETTING_H
#define PEFTC_SETTING_H

#include <stddef.h>

#include "core/base/status.h"

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
    size_t offset, size;        /* where the value lives in its struct, and its size in bytes */
    const char *def;            /* default, as the text a user would write */
    KeyRange range;             /* KEY_INT / KEY_FLOAT only */
    const char *const *values;  /* KEY_ENUM: names indexed by the stored (int-sized) enum value,
                                   NULL-terminated; the owning module's table */
    unsigned flags;             /* KEYF_* */
    const char *help;
} SettingKey;

#define SETTING_FIELD(T, f) offsetof(T, f), sizeof(((T *)0)->f)
#define KEY_NO_RANGE {0, 0, 0, 0}
#define KEY_GE(x) {'[', 0, (x), 0}
#define KEY_GT(x) {'(', 0, (x), 0}
#define KEY_IN(a, b) {'[', ']', (a), (b)}    /* [a, b] */
#define KEY_IN_HO(a, b) {'[', ')', (a), (b)} /* [a, b) */
#define SETTING_INT(n, T, f, d, r, h) {n, KEY_INT, SETTING_FIELD(T, f), d, r, NULL, 0, h}
#define SETTING_FLT(n, T, f, d, r, h) {n, KEY_FLOAT, SETTING_FIELD(T, f), d, r, NULL, 0, h}
#define SETTING_BOOL(n, T, f, d, h) {n, KEY_BOOL, SETTING_FIELD(T, f), d, KEY_NO_RANGE, NULL, 0, h}
#define SETTING_STR(n, T, f, d, fl, h) {n, KEY_STRING, SETTING_FIELD(T, f), d, KEY_NO_RANGE, NULL, fl, h}
#define SETTING_ENUM(n, T, f, d, names, h) {n, KEY_ENUM, SETTING_FIELD(T, f), d, KEY_NO_RANGE, names, 0, h}

/* Parses `text` as k's value and stores it at base + k->offset; untouched on failure. Messages start
 * with `where` (e.g. "job.yaml:7: ") and name the key. */
PeftcStatus setting_set(const SettingKey *k, void *base, const char *text, const char *where);
/* The value as text that setting_set reads back to the identical value (strings raw). */
void setting_format(const SettingKey *k, const void *base, char *buf, size_t n);
/* "an integer", "a number", "a boolean", "a string" or "one of a, b, c". */
void setting_type_phrase(const SettingKey *k, char *buf, size_t n);
/* The constraint as text: "int >= 1", "float in [0, 1)", "bool", "lora|full", "string". */
void setting_type_label(const SettingKey *k, char *buf, size_t n);
/* Shortest "%.Ng" text that strtod reads back to exactly v. */
void setting_fmt_double(double v, char *buf, size_t n);

#endif
