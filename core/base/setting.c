/* Reading and writing one setting's value: strict parsing (the whole text or nothing), range checks, and
 * text that reads back bit-identically. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/setting.h"

/* Values quoted back in messages are clipped so one absurd argument cannot swamp the message. */
#define CLIP 80
#define CLIPPED(s) (int)(strlen(s) > CLIP ? CLIP : strlen(s)), (s), (strlen(s) > CLIP ? "..." : "")

static void *field(void *c, const SettingKey *k) { return (char *)c + k->offset; }
static const void *cfield(const void *c, const SettingKey *k) { return (const char *)c + k->offset; }

void setting_fmt_double(double v, char *buf, size_t n) {
    /* Whole numbers read better as "10000" than as the shorter "1e+04". */
    if (fabs(v) < 1e15 && v == (double)(long long)v) {
        snprintf(buf, n, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void fmt_range(const KeyRange *r, char *buf, size_t n) {
    char lo[32], hi[32];
    setting_fmt_double(r->lo, lo, sizeof lo);
    setting_fmt_double(r->hi, hi, sizeof hi);
    if (r->lo_kind && r->hi_kind)
        snprintf(buf, n, "in %c%s, %s%c", r->lo_kind, lo, hi, r->hi_kind);
    else if (r->lo_kind)
        snprintf(buf, n, "%s %s", r->lo_kind == '[' ? ">=" : ">", lo);
    else if (r->hi_kind)
        snprintf(buf, n, "%s %s", r->hi_kind == ']' ? "<=" : "<", hi);
    else
        buf[0] = '\0';
}

/* The range a value must satisfy: the table's, narrowed to what an int field can hold. */
static KeyRange effective_range(const SettingKey *k) {
    KeyRange r = k->range;
    if (k->type == KEY_INT && k->size == sizeof(int)) {
        if (!r.lo_kind) r.lo_kind = '[', r.lo = INT_MIN;
        if (!r.hi_kind) r.hi_kind = ']', r.hi = INT_MAX;
    }
    return r;
}

static int in_range(const KeyRange *r, double v) {
    if (r->lo_kind == '[' && !(v >= r->lo)) return 0;
    if (r->lo_kind == '(' && !(v > r->lo)) return 0;
    if (r->hi_kind == ']' && !(v <= r->hi)) return 0;
    if (r->hi_kind == ')' && !(v < r->hi)) return 0;
    return 1;
}

static PeftcStatus range_error(const SettingKey *k, const char *text, const char *where) {
    KeyRange r = effective_range(k);
    char rs[96];
    fmt_range(&r, rs, sizeof rs);
    return PEFTC_ERR(PEFTC_EINVAL, "%skey '%s' must be %s, got %.*s%s", where, k->name, rs, CLIPPED(text));
}

static PeftcStatus type_error(const SettingKey *k, const char *text, const char *where, const char *why) {
    char phrase[160];
    setting_type_phrase(k, phrase, sizeof phrase);
    return PEFTC_ERR(PEFTC_EINVAL, "%skey '%s' expects %s, got '%.*s%s'%s", where, k->name, phrase,
                     CLIPPED(text), why);
}

static PeftcStatus set_int(const SettingKey *k, void *c, const char *text, const char *where) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (text[0] == '\0' || isspace((unsigned char)text[0]) || *end != '\0') return type_error(k, text, where, "");
    if (errno == ERANGE) return type_error(k, text, where, " (out of the 64-bit range)");
    KeyRange r = effective_range(k);
    if (!in_range(&r, (double)v)) return range_error(k, text, where);
    if (k->size == sizeof(int)) {
        int iv = (int)v;
        memcpy(field(c, k), &iv, sizeof iv);
    } else {
        /* int64_t or uint64_t: the ranges keep uint64_t keys (seeds) non-negative, so the bits agree. */
        int64_t lv = (int64_t)v;
        memcpy(field(c, k), &lv, sizeof lv);
    }
    return PEFTC_OK;
}

static PeftcStatus set_float(const SettingKey *k, void *c, const char *text, const char *where) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (text[0] == '\0' || isspace((unsigned char)text[0]) || *end != '\0') return type_error(k, text, where, "");
    /* Underflow (ERANGE with a tiny result) is accepted: a denormal or 0 is the nearest double. */
    if (errno == ERANGE && fabs(v) > 1) return type_error(k, text, where, " (out of the double range)");
    if (!isfinite(v)) return type_error(k, text, where, " (not finite)");
    if (!in_range(&k->range, v)) return range_error(k, text, where);
    memcpy(field(c, k), &v, sizeof v);
    return PEFTC_OK;
}

static PeftcStatus set_bool(const SettingKey *k, void *c, const char *text, const char *where) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        int v = strcasecmp(text, yes[i]) == 0 ? 1 : strcasecmp(text, no[i]) == 0 ? 0 : -1;
        if (v >= 0) {
            memcpy(field(c, k), &v, sizeof v);
            return PEFTC_OK;
        }
    }
    return type_error(k, text, where, "");
}

static PeftcStatus set_enum(const SettingKey *k, void *c, const char *text, const char *where) {
    for (int i = 0; k->values[i]; i++) {
        if (strcasecmp(text, k->values[i]) != 0) continue;
        memcpy(field(c, k), &i, sizeof i);
        return PEFTC_OK;
    }
    return type_error(k, text, where, "");
}

static PeftcStatus set_string(const SettingKey *k, void *c, const char *text, const char *where) {
    size_t len = strlen(text);
    if (len == 0 && !(k->flags & KEYF_OPTIONAL)) return PEFTC_ERR(PEFTC_EINVAL, "%skey '%s' must not be empty", where, k->name);
    if (len >= k->size)
        return PEFTC_ERR(PEFTC_EINVAL, "%skey '%s' is too long: %zu bytes, at most %zu", where, k->name, len,
                         k->size - 1);
    memcpy(field(c, k), text, len + 1);
    return PEFTC_OK;
}

PeftcStatus setting_set(const SettingKey *k, void *c, const char *text, const char *where) {
    switch (k->type) {
    case KEY_INT: return set_int(k, c, text, where);
    case KEY_FLOAT: return set_float(k, c, text, where);
    case KEY_BOOL: return set_bool(k, c, text, where);
    case KEY_ENUM: return set_enum(k, c, text, where);
    case KEY_STRING: return set_string(k, c, text, where);
    }
    return PEFTC_ERR(PEFTC_EINVAL, "%skey '%s' has an unknown type", where, k->name);
}

static void format_enum(const SettingKey *k, const void *c, char *buf, size_t n) {
    int code;
    memcpy(&code, cfield(c, k), sizeof code);
    for (int i = 0; k->values[i]; i++)
        if (i == code) {
            snprintf(buf, n, "%s", k->values[i]);
            return;
        }
    snprintf(buf, n, "%d", code); /* not a valid value: shows up as an error when read back */
}

void setting_format(const SettingKey *k, const void *c, char *buf, size_t n) {
    int iv;
    int64_t lv;
    double dv;
    switch (k->type) {
    case KEY_INT:
        if (k->size == sizeof(int)) {
            memcpy(&iv, cfield(c, k), sizeof iv);
            snprintf(buf, n, "%d", iv);
        } else {
            memcpy(&lv, cfield(c, k), sizeof lv);
            snprintf(buf, n, "%" PRId64, lv);
        }
        return;
    case KEY_FLOAT:
        memcpy(&dv, cfield(c, k), sizeof dv);
        setting_fmt_double(dv, buf, n);
        return;
    case KEY_BOOL:
        memcpy(&iv, cfield(c, k), sizeof iv);
        snprintf(buf, n, "%s", iv ? "true" : "false");
        return;
    case KEY_ENUM: format_enum(k, c, buf, n); return;
    case KEY_STRING: snprintf(buf, n, "%s", (const char *)cfield(c, k)); return;
    }
}

static void join_values(const SettingKey *k, const char *sep, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; k->values[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? sep : "", k->values[i]);
}

void setting_type_phrase(const SettingKey *k, char *buf, size_t n) {
    char vals[128];
    switch (k->type) {
    case KEY_INT: snprintf(buf, n, "an integer"); return;
    case KEY_FLOAT: snprintf(buf, n, "a number"); return;
    case KEY_BOOL: snprintf(buf, n, "a boolean (true/false, yes/no, on/off, 1/0)"); return;
    case KEY_STRING: snprintf(buf, n, "a string"); return;
    case KEY_ENUM:
        join_values(k, ", ", vals, sizeof vals);
        snprintf(buf, n, "one of %s", vals);
        return;
    }
}

void setting_type_label(const SettingKey *k, char *buf, size_t n) {
    char rs[96];
    KeyRange r = k->range;
    fmt_range(&r, rs, sizeof rs);
    switch (k->type) {
    case KEY_INT: snprintf(buf, n, "int%s%s", rs[0] ? " " : "", rs); return;
    case KEY_FLOAT: snprintf(buf, n, "float%s%s", rs[0] ? " " : "", rs); return;
    case KEY_BOOL: snprintf(buf, n, "bool"); return;
    case KEY_STRING: snprintf(buf, n, "%s", k->flags & KEYF_LIST ? "string or list" : "string"); return;
    case KEY_ENUM: join_values(k, "|", buf, n); return;
    }
}
