/* Rank-0 progress lines. Throughput and step time come from a window of recent steps so the first
 * (allocation-heavy) steps and evaluation pauses do not distort them for the rest of the run. */
#include "launch/progress.h"

#include <stdlib.h>

enum { WINDOW = 16, LINE = 256 };

struct Progress {
    FILE *f;
    int tty;
    int64_t log_every;
    double tokens[WINDOW], targets[WINDOW], seconds[WINDOW];
    int count, next;   /* filled window slots; the slot the next step goes in */
    int pending;       /* TTY: a step line without a newline is on screen */
    char last[LINE];   /* TTY: that line, redrawn after an evaluation line */
};

PeftcStatus progress_create(Progress **out, FILE *f, int is_tty, int64_t log_every) {
    Progress *p = calloc(1, sizeof *p);
    if (!p) return PEFTC_ERR(PEFTC_ENOMEM, "progress: out of memory");
    p->f = f;
    p->tty = is_tty;
    p->log_every = log_every < 1 ? 1 : log_every;
    *out = p;
    return PEFTC_OK;
}

static void format_eta(char *buf, size_t n, double seconds) {
    if (!(seconds >= 0)) seconds = 0;
    if (seconds > 9999.0 * 3600) seconds = 9999.0 * 3600;
    long long s = (long long)(seconds + 0.5);
    snprintf(buf, n, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
}

void progress_format_step(char *buf, size_t n, const StepStats *s, double tok_per_s, double target_per_s,
                          double sec_per_step) {
    char eta[32];
    int64_t left = s->total > s->step ? s->total - s->step : 0;
    format_eta(eta, sizeof eta, (double)left * sec_per_step);
    snprintf(buf, n, "step %lld/%lld | loss %.4f | lr %.2e | gnorm %.3g | %.0f tok/s (%.0f target) | %.1f ms/step | "
             "ETA %s", (long long)s->step, (long long)s->total, s->loss, s->lr, s->grad_norm, tok_per_s, target_per_s,
             sec_per_step * 1e3, eta);
}

/* rate = {positions, targets} per second over the window */
static void window_add(Progress *p, const StepStats *s, double rate[2], double *sec_per_step) {
    p->tokens[p->next] = s->seq_tokens;
    p->targets[p->next] = s->tokens;
    p->seconds[p->next] = s->step_seconds;
    p->next = (p->next + 1) % WINDOW;
    if (p->count < WINDOW) p->count++;
    double tok = 0, tgt = 0, sec = 0;
    for (int i = 0; i < p->count; i++) tok += p->tokens[i], tgt += p->targets[i], sec += p->seconds[i];
    rate[0] = sec > 0 ? tok / sec : 0;
    rate[1] = sec > 0 ? tgt / sec : 0;
    *sec_per_step = sec / p->count;
}

void progress_step(Progress *p, const StepStats *s) {
    double rate[2], sps;
    window_add(p, s, rate, &sps);
    int last_step = s->step >= s->total;
    if (s->skipped) {
        /* Said whatever log_every is: a skipped update is something to know about at once. */
        if (p->tty && p->pending) fprintf(p->f, "\n");
        fprintf(p->f, "step %lld/%lld: loss %g, gradient norm %g: not finite, update skipped (%d in a row)\n",
                (long long)s->step, (long long)s->total, s->loss, s->grad_norm, s->skipped);
        p->pending = 0;
    }
    if (p->tty) {
        progress_format_step(p->last, sizeof p->last, s, rate[0], rate[1], sps);
        fprintf(p->f, "\r%s\033[K%s", p->last, last_step ? "\n" : "");
        p->pending = !last_step;
    } else if (!s->skipped && (s->step % p->log_every == 0 || last_step)) {
        char line[LINE];
        progress_format_step(line, sizeof line, s, rate[0], rate[1], sps);
        fprintf(p->f, "%s\n", line);
    }
    fflush(p->f);
}

void progress_eval(Progress *p, const EvalStats *s) {
    char line[LINE];
    snprintf(line, sizeof line, "eval @ step %lld: held-out loss %.4f (%.0f tokens)", (long long)s->step, s->loss,
             s->tokens);
    if (p->tty && p->pending)
        /* The result takes the progress line's place, and the progress line moves below it. */
        fprintf(p->f, "\r%s\033[K\n%s\033[K", line, p->last);
    else
        fprintf(p->f, "%s\n", line);
    fflush(p->f);
}

void progress_finish(Progress *p) {
    if (!p) return;
    if (p->tty && p->pending) fputc('\n', p->f);
    fflush(p->f);
    free(p);
}
