/* Built-in synthetic tasks on digit tokens, so the trainer runs with no files at all.
 *
 * Each example is   BOS a_1..a_n SEP c_1..c_m EOS  PAD...   where the digits a are drawn from the
 * example's own key and c is the task's answer: copy (c = a), reverse (c = a backwards) or add
 * (a is "x + y" with an PLUS token, c the digits of x+y). Targets are ignored on the prompt (up to and
 * including SEP predicts nothing) and on padding, so the loss measures the answer only. Every problem
 * belongs to exactly one split, decided by a hash of its content, so train and held-out never share
 * a problem. */
#ifndef PEFTC_SYNTHETIC_H
#define PEFTC_SYNTHETIC_H

#include "core/train/dataset.h"

/* Token ids: digits 0..9 are ids 0..9. */
enum { SYN_PLUS = 10, SYN_SEP = 11, SYN_BOS = 12, SYN_EOS = 13, SYN_PAD = 14, SYN_VOCAB = 15 };

typedef enum { SYN_COPY = 0, SYN_REVERSE = 1, SYN_ADD = 2 } SynTask;

typedef struct {
    SynTask task;
    int min_digits; /* digits per operand, >= 1 */
    int max_digits; /* >= min_digits */
    uint64_t seed;
    int eval_percent; /* share of problems (by content hash) that belong to the held-out split, 1..50 */
} SynConfig;

/* Names indexed by SynTask, NULL-terminated: what configurations spell. */
extern const char *const syn_task_names[];

/* Longest sequence the config can produce (so the caller can check seq_len). */
int syn_max_len(const SynConfig *cfg);

PeftcStatus syn_dataset_create(Dataset **out, const SynConfig *cfg);

#endif
