/* The metrics CSV writer. */
#include "launch/metrics.h"

#include "core/base/fsutil.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Metrics {
    FILE *f;
    char path[];
};

static const char HEADER[] = "kind,step,loss,lr,grad_norm,tokens,tokens_per_s,step_ms,bytes_reduced,compute_ms,allreduce_ms\n";

/* Flushing every row costs one write per step, which is nothing next to a training step. */
static PeftcStatus finish_row(Metrics *m, int printed) {
    if (printed < 0 || fflush(m->f) != 0)
        return PEFTC_ERR(PEFTC_EWRITE, "writing metrics file '%s' failed: %s", m->path, strerror(errno));
    return PEFTC_OK;
}

/* A Metrics on path opened with mode ("w" fresh, "a" continued). */
static PeftcStatus metrics_new(Metrics **out, const char *path, const char *mode) {
    size_t len = strlen(path);
    Metrics *m = malloc(sizeof *m + len + 1);
    if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "metrics file '%s': out of memory", path);
    memcpy(m->path, path, len + 1);
    m->f = fopen(path, mode);
    if (!m->f) {
        PeftcStatus st = PEFTC_ERR(PEFTC_EWRITE, "cannot open metrics file '%s': %s", path, strerror(errno));
        free(m);
        return st;
    }
    *out = m;
    return PEFTC_OK;
}

PeftcStatus metrics_open(Metrics **out, const char *path) {
    Metrics *m;
    PEFTC_TRY(metrics_new(&m, path, "w"));
    PeftcStatus st = finish_row(m, fputs(HEADER, m->f) == EOF ? -1 : 0);
    if (st != PEFTC_OK) {
        metrics_close(m);
        return st;
    }
    *out = m;
    return PEFTC_OK;
}

/* Copies the kept rows of the old file into out; *first_eval as in metrics_resume. Returns NULL, or
 * what is wrong with the old file (a plain string: the caller's message wraps it). */
static const char *keep_rows(FILE *in, FILE *out, int64_t step, double *first_eval, double *last_eval) {
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, in)) {
        long long s;
        double loss;
        char kind[16];
        int fields = sscanf(line, "%15[^,],%lld,%lf", kind, &s, &loss);
        if (first) {
            first = 0;
            if (strcmp(line, HEADER) != 0) return "its header differs";
        } else if (fields < 2 || s > step) {
            continue;
        } else if (fields == 3 && strcmp(kind, "eval") == 0) {
            if (isnan(*first_eval)) *first_eval = loss;
            *last_eval = loss;
        }
        if (fputs(line, out) == EOF) return "copying its rows failed";
    }
    return first ? "it is empty" : NULL;
}

PeftcStatus metrics_resume(Metrics **out, const char *path, int64_t step, double *first_eval, double *last_eval) {
    *first_eval = *last_eval = NAN;
    FILE *in = fopen(path, "r");
    if (!in) return metrics_open(out, path);
    FILE *tmp;
    PeftcStatus st = fs_atomic_open(path, &tmp);
    if (st == PEFTC_OK) {
        const char *why = keep_rows(in, tmp, step, first_eval, last_eval);
        if (why)
            st = PEFTC_ERR(PEFTC_EFORMAT, "metrics file '%s' cannot be continued (%s); move it away to start a new "
                           "one", path, why);
        st = fs_atomic_commit(path, tmp, st);
    }
    fclose(in);
    if (st != PEFTC_OK) return st;
    return metrics_new(out, path, "a");
}

PeftcStatus metrics_step(Metrics *m, const StepStats *s) {
    double tok_per_s = s->step_seconds > 0 ? s->seq_tokens / s->step_seconds : 0;
    int n = fprintf(m->f, "train,%lld,%.9g,%.9g,%.9g,%.0f,%.1f,%.3f,%" PRIu64 ",%.3f,%.3f\n", (long long)s->step,
                    s->loss, s->lr, s->grad_norm, s->tokens, tok_per_s, s->step_seconds * 1e3, s->bytes_reduced,
                    s->compute_seconds * 1e3, s->reduce_seconds * 1e3);
    return finish_row(m, n);
}

PeftcStatus metrics_eval(Metrics *m, const EvalStats *s) {
    int n = fprintf(m->f, "eval,%lld,%.9g,,,%.0f,,,,,\n", (long long)s->step, s->loss, s->tokens);
    return finish_row(m, n);
}

PeftcStatus metrics_close(Metrics *m) {
    if (!m) return PEFTC_OK;
    PeftcStatus st = PEFTC_OK;
    if (fclose(m->f) != 0)
        st = PEFTC_ERR(PEFTC_EWRITE, "closing metrics file '%s' failed: %s", m->path, strerror(errno));
    free(m);
    return st;
}
