/* The metrics CSV writer. */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Metrics {
    FILE *f;
    char path[];
};

static const char HEADER[] = "kind,step,loss,lr,grad_norm,tokens,tokens_per_s,step_ms,bytes_reduced\n";

/* Flushing every row costs one write per step, which is nothing next to a training step. */
static PeftcStatus finish_row(Metrics *m, int printed) {
    if (printed < 0 || fflush(m->f) != 0)
        return PEFTC_ERR(PEFTC_EIO, "writing metrics file '%s' failed: %s", m->path, strerror(errno));
    return PEFTC_OK;
}

PeftcStatus metrics_open(Metrics **out, const char *path) {
    size_t len = strlen(path);
    Metrics *m = malloc(sizeof *m + len + 1);
    if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "metrics file '%s': out of memory", path);
    memcpy(m->path, path, len + 1);
    m->f = fopen(path, "w");
    if (!m->f) {
        PeftcStatus st = PEFTC_ERR(PEFTC_EIO, "cannot create metrics file '%s': %s", path, strerror(errno));
        free(m);
        return st;
    }
    PeftcStatus st = finish_row(m, fputs(HEADER, m->f) == EOF ? -1 : 0);
    if (st != PEFTC_OK) {
        fclose(m->f);
        free(m);
        return st;
    }
    *out = m;
    return PEFTC_OK;
}

PeftcStatus metrics_step(Metrics *m, const StepStats *s) {
    double tok_per_s = s->step_seconds > 0 ? s->seq_tokens / s->step_seconds : 0;
    int n = fprintf(m->f, "train,%lld,%.9g,%.9g,%.9g,%.0f,%.1f,%.3f,%" PRIu64 "\n", (long long)s->step, s->loss,
                    s->lr, s->grad_norm, s->tokens, tok_per_s, s->step_seconds * 1e3, s->bytes_reduced);
    return finish_row(m, n);
}

PeftcStatus metrics_eval(Metrics *m, const EvalStats *s) {
    int n = fprintf(m->f, "eval,%lld,%.9g,,,%.0f,,,\n", (long long)s->step, s->loss, s->tokens);
    return finish_row(m, n);
}

PeftcStatus metrics_close(Metrics *m) {
    if (!m) return PEFTC_OK;
    PeftcStatus st = PEFTC_OK;
    if (fclose(m->f) != 0)
        st = PEFTC_ERR(PEFTC_EIO, "closing metrics file '%s' failed: %s", m->path, strerror(errno));
    free(m);
    return st;
}
