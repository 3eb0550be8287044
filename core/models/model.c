/* What the Model interface needs beyond its family's table. */
#include <string.h>

#include "core/models/model.h"

int model_target_index(const Model *m, const char *name) {
    for (int i = 0; i < m->n_targets; i++)
        if (strcmp(m->targets[i].name, name) == 0 || strcmp(m->targets[i].hf, name) == 0) return i;
    return -1;
}
