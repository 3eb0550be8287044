/* A resume continues the run the checkpoint came from: every setting that alters the result must be
 * the checkpoint's, unless the user accepts the change by name (checkpoint.allow_changes). */
#ifndef PEFTC_CKPT_SETTINGS_H
#define PEFTC_CKPT_SETTINGS_H

#include <stdint.h>
#include <stdio.h>

#include "launch/config/config.h"

/* Compares `now` with the configuration text stored in checkpoint `path` (made at step `step`).
 * Refuses (PEFTC_EINVAL) naming each changed key with its old and new value, unless the key is in
 * now->ckpt_allow; accepted changes are described on `log` (may be NULL). train.steps below `step`
 * is always refused. Keys that cannot change the result (output, checkpoint, evaluation, threads,
 * and those checked otherwise: model.path by the base's hash, the split of the global batch) are not
 * compared. */
PeftcStatus ckpt_settings_check(const RunConfig *now, const char *stored, const char *path, int64_t step, FILE *log);

#endif
