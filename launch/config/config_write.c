/* The configuration as text for people and for reruns: the resolved YAML and the key reference. Both
 * walk the key table, so a new key shows up in each without touching this file. */
#include <stdio.h>
#include <string.h>

#include "launch/config/config_keys.h"

/* Strings are always double-quoted so paths with ':' or '#' and names like "on" or "1" stay
 * strings, with the escapes YAML's double-quoted style defines. */
static int write_quoted(FILE *f, const char *s) {
    int bad = fputc('"', f) == EOF;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            bad |= fprintf(f, "\\%c", *p) < 0;
        else if (*p < 0x20 || *p == 0x7f)
            bad |= fprintf(f, "\\x%02x", *p) < 0;
        else
            bad |= fputc(*p, f) == EOF;
    }
    bad |= fputc('"', f) == EOF;
    return bad;
}

static int write_key(FILE *f, const ConfigKey *k, const RunConfig *c) {
    char val[1024];
    config_key_format(k, c, val, sizeof val);
    int bad = fprintf(f, "  %s: ", config_key_leaf(k)) < 0;
    if (k->type == KEY_STRING)
        bad |= write_quoted(f, val);
    else
        bad |= fputs(val, f) == EOF;
    return bad | (fputc('\n', f) == EOF);
}

PeftcStatus config_write_yaml(const RunConfig *c, FILE *f) {
    int nk, ns;
    const ConfigKey *keys = config_keys(&nk);
    const ConfigSection *secs = config_sections(&ns);
    int bad = fprintf(f, "# peftc run configuration (every key; peftc train --help describes them)\n") < 0;
    for (int s = 0; s < ns; s++) {
        bad |= fprintf(f, "%s:\n", secs[s].name) < 0;
        for (int i = 0; i < nk; i++)
            if (config_key_in_section(&keys[i], secs[s].name)) bad |= write_key(f, &keys[i], c);
    }
    if (bad || fflush(f) != 0 || ferror(f))
        return PEFTC_ERR(PEFTC_EWRITE, "writing the configuration failed");
    return PEFTC_OK;
}

typedef struct {
    int name, type, def;
} HelpWidths;

static HelpWidths help_widths(const ConfigKey *keys, int n) {
    HelpWidths w = {0, 0, 0};
    char buf[160];
    for (int i = 0; i < n; i++) {
        int ln = (int)strlen(keys[i].name), ld = (int)strlen(keys[i].def);
        config_key_type_label(&keys[i], buf, sizeof buf);
        int lt = (int)strlen(buf);
        if (ln > w.name) w.name = ln;
        if (lt > w.type) w.type = lt;
        if (ld > w.def) w.def = ld;
    }
    return w;
}

void config_print_help(FILE *f) {
    int nk, ns;
    const ConfigKey *keys = config_keys(&nk);
    const ConfigSection *secs = config_sections(&ns);
    HelpWidths w = help_widths(keys, nk);
    fprintf(f, "Configuration keys. Set them in a YAML file (sections as nested mappings) or as key=value\n"
               "arguments; a last component that no other key shares works alone (accum=2).\n");
    fprintf(f, "\n  %-*s  %-*s  %-*s  %s\n", w.name, "KEY", w.type, "TYPE", w.def, "DEFAULT", "DESCRIPTION");
    char type[160];
    for (int s = 0; s < ns; s++) {
        fprintf(f, "\n%s: %s\n", secs[s].name, secs[s].help);
        for (int i = 0; i < nk; i++) {
            if (!config_key_in_section(&keys[i], secs[s].name)) continue;
            config_key_type_label(&keys[i], type, sizeof type);
            fprintf(f, "  %-*s  %-*s  %-*s  %s\n", w.name, keys[i].name, w.type, type, w.def, keys[i].def,
                    keys[i].help);
        }
    }
}
