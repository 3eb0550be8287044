/* summary.json (see summary.h). */
#include "launch/summary.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "core/base/fsutil.h"

static void add_number_or_null(cJSON *o, const char *key, int present, double v) {
    if (present && isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

static cJSON *build(const Session *s, const RunSummary *r) {
    const RunConfig *c = &s->cfg;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "method", config_method(c)->name);
    cJSON_AddStringToObject(o, "model", c->model_path[0] ? c->model_path : "random");
    cJSON_AddStringToObject(o, "task", c->sft.path[0] ? c->sft.path : data_task_names[c->task]);
    cJSON_AddNumberToObject(o, "ranks", r->ranks);
    cJSON_AddNumberToObject(o, "trainable", (double)arena_trainable(&s->arena));
    cJSON_AddNumberToObject(o, "steps", c->train.steps);
    cJSON_AddNumberToObject(o, "seed", (double)c->train.seed);
    cJSON_AddNumberToObject(o, "global_batch", c->train.micro_batch * c->train.accum * r->ranks);
    cJSON_AddNumberToObject(o, "seq_len", c->train.seq_len);
    cJSON_AddNumberToObject(o, "eval_loss_first", r->eval_loss_first);
    cJSON_AddNumberToObject(o, "eval_loss_last", r->eval_loss_last);
    add_number_or_null(o, "exact_match_before", r->has_exact_match, r->exact_match_before);
    add_number_or_null(o, "exact_match_after", r->has_exact_match, r->exact_match_after);
    cJSON_AddNumberToObject(o, "eval_examples", r->has_exact_match ? c->em_examples : 0);
    cJSON_AddNumberToObject(o, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(o, "target_tokens_per_s", r->target_tokens_per_s);
    cJSON_AddNumberToObject(o, "train_seconds", r->train_seconds);
    cJSON_AddNumberToObject(o, "wall_seconds", r->wall_seconds);
    return o;
}

PeftcStatus summary_write(const Session *s, const RunSummary *r, const char *path) {
    cJSON *o = build(s, r);
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text) return PEFTC_ERR(PEFTC_ENOMEM, "run summary '%s': out of memory", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON_Print's terminator becomes the file's final newline */
    PeftcStatus st = fs_write_atomic(path, text, n + 1);
    cJSON_free(text);
    return st;
}
