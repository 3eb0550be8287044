/* The methods a run can choose (method.name), in the order --help lists them. Adding a method is one
 * line here plus its own file in adapters/ defining `const MethodDesc <name>_method`. */
#include <string.h>

#include "adapters/method.h"

#define PEFTC_METHODS(X) \
    X(lora)              \
    X(full)              \
    X(gmt)               \
    X(slora)             \
    X(nlora)             \
    X(inttune)           \
    X(eigenlora)         \
    X(rosa)              \
    X(spa)               \
    X(pissa)             \
    X(sdt)               \
    X(sdlora)            \
    /* end of the list: a new method is one line above */

#define DECLARE(n) extern const MethodDesc n##_method;
PEFTC_METHODS(DECLARE)
#define ENTRY(n) &n##_method,
static const MethodDesc *const registry[] = {PEFTC_METHODS(ENTRY)};
enum { N_METHODS = sizeof registry / sizeof registry[0] };

const MethodDesc *const *method_registry(int *n) {
    *n = N_METHODS;
    return registry;
}

/* The descriptors' names, NULL-terminated: filled on first use so the name lives in one place. */
static const char *names[N_METHODS + 1];

const char *const *method_names(void) {
    if (!names[0])
        for (int i = 0; i < N_METHODS; i++) names[i] = registry[i]->name;
    return names;
}

const MethodDesc *method_find(const char *name) {
    for (int i = 0; i < N_METHODS; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

/* Distinct sections in the order methods first name them. Built on first use; the registry is const,
 * so every caller sees the same list. */
static const MethodSection *sections[METHOD_SECTIONS_MAX];
static int n_sections = -1;

static void collect_sections(void) {
    n_sections = 0;
    for (int i = 0; i < N_METHODS; i++)
        for (const MethodSection *const *s = registry[i]->sections; s && *s; s++) {
            int seen = 0;
            for (int j = 0; j < n_sections; j++) seen |= sections[j] == *s;
            if (!seen && n_sections < METHOD_SECTIONS_MAX) sections[n_sections++] = *s;
        }
}

const MethodSection *const *method_sections(int *n) {
    if (n_sections < 0) collect_sections();
    *n = n_sections;
    return sections;
}

int method_section_index(const MethodSection *sec) {
    int n;
    const MethodSection *const *all = method_sections(&n);
    for (int i = 0; i < n; i++)
        if (all[i] == sec) return i;
    return -1;
}
