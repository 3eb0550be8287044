/* Built-in instruction tasks, generated from a seed, no files needed. In the spirit of the seed papers'
 * benchmarks:
 *   arith   grade-school arithmetic word problems; the answer is a number ("42")
 *   records structured record -> one sentence (name=..., city=..., ... -> "X is a ... from ...")
 *   sql     question -> SQL over a small fixed schema ("SELECT name FROM employees WHERE ...")
 * Every problem belongs to exactly one split, decided by a hash of its text (20% of problems are held
 * out, whatever the seed), so train and eval never share a problem; example i of a split is the same on
 * every call and every rank. */
#ifndef PEFTC_TASKS_H
#define PEFTC_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "core/train/dataset.h"

typedef enum { TASK_ARITH = 0, TASK_RECORDS = 1, TASK_SQL = 2, TASK_COUNT } TaskKind;

extern const char *const task_names[]; /* indexed by TaskKind, NULL-terminated */

/* The system/instruction line shown to the model for a task ("" if none). */
const char *task_instruction(TaskKind k);

/* Writes example `id` of `split` as a user prompt and the exact reference answer. */
PeftcStatus task_example(TaskKind k, uint64_t seed, Split split, int64_t id, char *prompt, size_t prompt_cap,
                         char *answer, size_t answer_cap);

/* Normalised exact match of a generated answer against the reference: surrounding whitespace and a
 * trailing period are ignored, internal runs of whitespace compare as one space; for arith, the first
 * number in the output is compared. */
int task_match(TaskKind k, const char *generated, const char *reference);

#endif
