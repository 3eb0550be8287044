#include "core/nn/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void arena_init(Arena *a, const Backend *be) {
    memset(a, 0, sizeof *a);
    a->be = be;
}

void arena_free(Arena *a) {
    if (a->be) {
        a->be->free(a->be, a->params);
        a->be->free(a->be, a->grads);
        a->be->free(a->be, a->m);
        a->be->free(a->be, a->v);
    }
    free(a->entries);
    memset(a, 0, sizeof *a);
}

PeftcStatus arena_group(Arena *a, const char *name, double lr, double weight_decay, int *id) {
    for (int i = 0; i < a->n_groups; i++) {
        if (strcmp(a->groups[i].name, name) == 0) {
            a->groups[i].lr = lr;
            a->groups[i].weight_decay = weight_decay;
            *id = i;
            return PEFTC_OK;
        }
    }
    if (a->n_groups == ARENA_MAX_GROUPS)
        return PEFTC_ERR(PEFTC_EINVAL, "arena: too many parameter groups (max %d) adding '%s'", ARENA_MAX_GROUPS, name);
    if (strlen(name) >= sizeof a->groups[0].name)
        return PEFTC_ERR(PEFTC_EINVAL, "arena: group name '%s' is too long", name);
    ArenaGroup *g = &a->groups[a->n_groups];
    strcpy(g->name, name);
    g->lr = lr;
    g->weight_decay = weight_decay;
    *id = a->n_groups++;
    return PEFTC_OK;
}

PeftcStatus arena_register(Arena *a, const char *name, Shape shape, int group, int decay, int *handle) {
    if (a->finalized) return PEFTC_ERR(PEFTC_ESTATE, "arena: cannot register '%s' after finalize", name);
    if (strlen(name) >= ARENA_NAME_MAX) return PEFTC_ERR(PEFTC_EINVAL, "arena: tensor name too long: '%s'", name);
    char what[ARENA_NAME_MAX + 16];
    snprintf(what, sizeof what, "arena: tensor '%s'", name);
    PEFTC_TRY(shape_check(&shape, what));
    if (group < 0 || group >= a->n_groups)
        return PEFTC_ERR(PEFTC_EINVAL, "arena: tensor '%s' names unknown group %d", name, group);
    if (arena_find(a, name) >= 0) return PEFTC_ERR(PEFTC_EINVAL, "arena: tensor '%s' registered twice", name);
    if (a->n_entries == a->cap_entries) {
        int cap = a->cap_entries ? 2 * a->cap_entries : 64;
        ArenaEntry *e = realloc(a->entries, (size_t)cap * sizeof *e);
        if (!e) return PEFTC_ERR(PEFTC_ENOMEM, "arena: out of memory registering '%s'", name);
        a->entries = e;
        a->cap_entries = cap;
    }
    ArenaEntry *e = &a->entries[a->n_entries];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->shape = shape;
    e->numel = (size_t)shape_numel(&shape);
    /* Align every tensor to 16 elements (64 bytes in f32) so vector loads and future device copies
     * never straddle two tensors' cache lines. */
    e->offset = (a->numel + 15) & ~(size_t)15;
    a->numel = e->offset + e->numel;
    e->group = group;
    e->decay = decay;
    *handle = a->n_entries++;
    return PEFTC_OK;
}

PeftcStatus arena_finalize(Arena *a) {
    if (a->finalized) return PEFTC_ERR(PEFTC_ESTATE, "arena: finalized twice");
    size_t n = a->numel ? a->numel : 1;
    size_t bytes = n * sizeof(real_t);
    a->params = a->be->alloc(a->be, bytes);
    a->grads = a->be->alloc(a->be, bytes + ARENA_TRAILER * sizeof(real_t));
    a->m = a->be->alloc(a->be, bytes);
    a->v = a->be->alloc(a->be, bytes);
    if (!a->params || !a->grads || !a->m || !a->v)
        return PEFTC_ERR(PEFTC_ENOMEM, "arena: cannot allocate 4 x %zu bytes for %zu trainable values", bytes, a->numel);
    a->finalized = 1;
    return PEFTC_OK;
}

real_t *arena_param(const Arena *a, int handle) { return a->params + a->entries[handle].offset; }
real_t *arena_grad(const Arena *a, int handle) { return a->grads + a->entries[handle].offset; }

Tensor arena_param_tensor(const Arena *a, int handle) {
    return (Tensor){arena_param(a, handle), DT_REAL, a->be->device, a->entries[handle].shape};
}

int arena_find(const Arena *a, const char *name) {
    for (int i = 0; i < a->n_entries; i++)
        if (strcmp(a->entries[i].name, name) == 0) return i;
    return -1;
}

size_t arena_trainable(const Arena *a) {
    size_t n = 0;
    for (int i = 0; i < a->n_entries; i++) n += a->entries[i].numel;
    return n;
}
