/* The trainable arena: every trainable tensor, registered by name, lives in one contiguous buffer.
 *
 * Gradients and the AdamW moments m and v mirror the parameter buffer entry for entry, so the
 * optimizer, gradient clipping, the all-reduce and the checkpoint each see one flat vector. Tensors
 * are always found by name, never by position. Use: register everything, finalize (allocates), then
 * take pointers with arena_param()/arena_grad(). */
#ifndef PEFTC_ARENA_H
#define PEFTC_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend/backend.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#define ARENA_NAME_MAX 128
#define ARENA_MAX_GROUPS 8
#define ARENA_TRAILER 3

/* Optimizer settings shared by the tensors of one group (e.g. "lora", "base"). */
typedef struct {
    char name[32];
    double lr;           /* peak learning rate of the group */
    double weight_decay; /* decoupled; applied only to entries whose decay flag is set */
} ArenaGroup;

typedef struct {
    char name[ARENA_NAME_MAX];
    Shape shape;   /* elements are real_t (DT_REAL) on the backend's device */
    size_t offset; /* in elements from the start of the buffer */
    size_t numel;
    int group;     /* index into Arena.groups */
    int decay;     /* 1: weight decay applies */
} ArenaEntry;

typedef struct {
    const Backend *be;
    ArenaEntry *entries;
    int n_entries, cap_entries;
    ArenaGroup groups[ARENA_MAX_GROUPS];
    int n_groups;
    size_t numel;
    real_t *params; /* (numel) */
    real_t *grads;  /* (numel + ARENA_TRAILER): the trailer carries the step's loss sum, token
                       count and failed-rank count, so one all-reduce moves gradients, their
                       normaliser and the ranks' agreement on whether to go on */
    real_t *m, *v;  /* (numel) AdamW moments */
    int finalized;
} Arena;

void arena_init(Arena *a, const Backend *be);
void arena_free(Arena *a);

/* Adds (or finds) a group by name and sets its lr and weight decay; returns its index in *id. */
PeftcStatus arena_group(Arena *a, const char *name, double lr, double weight_decay, int *id);

/* Registers a tensor; *handle receives its entry index. Names must be unique. */
PeftcStatus arena_register(Arena *a, const char *name, Shape shape, int group, int decay, int *handle);

/* Allocates params, grads, m and v (zero-filled). No registration after this. */
PeftcStatus arena_finalize(Arena *a);

real_t *arena_param(const Arena *a, int handle);
real_t *arena_grad(const Arena *a, int handle);
/* The parameter of an entry as a tensor description. */
Tensor arena_param_tensor(const Arena *a, int handle);
/* Trainable values: the sum of the entries' sizes (numel also counts the alignment gaps). */
size_t arena_trainable(const Arena *a);
/* Entry index of `name`, or -1. */
int arena_find(const Arena *a, const char *name);

#endif
