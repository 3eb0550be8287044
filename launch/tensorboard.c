/* The TensorBoard event file writer.
 *
 * Every run, resumed or not, starts a new file; earlier files are left as they are. TensorBoard reads
 * all event files of a folder in name order, and one already watching the folder tails each file from
 * the offset it reached, so cutting an old file back to a checkpoint, as metrics_resume does with the
 * CSV, would confuse it. Instead each new file is named to sort after the folder's existing ones and
 * opens with a SessionLog START at the first step it will write, as TensorFlow's own trainers marked a
 * restart: TensorBoard's Python reader then discards every earlier event at or after that step, and its
 * Rust data server replaces a tag's points from the first new point's step on. Either way the curve
 * shown is the CSV's: a resumed run hides what the interrupted run wrote past its checkpoint, a fresh
 * run in a used output.dir hides the earlier run (whose CSV it overwrote too). */
#include "launch/tensorboard.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/formats/tfevents.h"

struct TbWriter {
    FILE *f;
    char path[1024];
};

/* Seconds since the Unix epoch, TensorBoard's wall_time. */
static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Appends one record that the caller encoded into buf (n = 0: it did not fit) and flushes it. */
static PeftcStatus put_record(TbWriter *w, const uint8_t *buf, size_t n) {
    if (n == 0) return PEFTC_ERR(PEFTC_EINVAL, "TensorBoard event for '%s' too large to encode", w->path);
    if (fwrite(buf, 1, n, w->f) != n || fflush(w->f) != 0)
        return PEFTC_ERR(PEFTC_EWRITE, "writing TensorBoard event file '%s' failed: %s", w->path, strerror(errno));
    return PEFTC_OK;
}

static PeftcStatus put_scalars(TbWriter *w, int64_t step, const TfScalar *v, int n) {
    uint8_t buf[512];
    return put_record(w, buf, tfevents_scalars(buf, sizeof buf, wall_time(), step, v, n));
}

/* The time for a new file's name: now, or one second past the newest event file already in dir, so the
 * new file sorts after it (10 digits: the names sort by time) even when runs follow within a second. */
static long long name_time(const char *dir) {
    long long t = (long long)time(NULL), old;
    DIR *d = opendir(dir);
    if (!d) return t;
    for (struct dirent *e; (e = readdir(d));)
        if (sscanf(e->d_name, "events.out.tfevents.%10lld", &old) == 1 && old >= t) t = old + 1;
    closedir(d);
    return t;
}

/* Opens a file name no other writer holds: "x" fails on an existing one, and n moves past it. */
static PeftcStatus open_new(TbWriter *w, const char *dir) {
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0) strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    long long t = name_time(dir);
    for (int n = 0; n < 1000; n++) {
        if (snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%010lld.%s.%ld.%d", dir, t, host,
                     (long)getpid(), n) >= (int)sizeof w->path)
            return PEFTC_ERR(PEFTC_EINVAL, "TensorBoard folder '%s': path too long for its event file", dir);
        w->f = fopen(w->path, "wbx");
        if (w->f) return PEFTC_OK;
        if (errno != EEXIST) break;
    }
    return PEFTC_ERR(PEFTC_EWRITE, "cannot create TensorBoard event file '%s': %s", w->path, strerror(errno));
}

PeftcStatus tb_open(TbWriter **out, const char *dir, int64_t resumed_at) {
    PEFTC_TRY(fs_mkdir_p(dir));
    TbWriter *w = calloc(1, sizeof *w);
    if (!w) return PEFTC_ERR(PEFTC_ENOMEM, "TensorBoard writer for '%s': out of memory", dir);
    PeftcStatus st = open_new(w, dir);
    uint8_t buf[128];
    double now = wall_time();
    if (st == PEFTC_OK) st = put_record(w, buf, tfevents_version(buf, sizeof buf, now));
    int64_t first = resumed_at > 0 ? resumed_at + 1 : 0;
    if (st == PEFTC_OK) st = put_record(w, buf, tfevents_start(buf, sizeof buf, now, first));
    if (st != PEFTC_OK) {
        if (w->f) fclose(w->f);
        free(w);
        return st;
    }
    *out = w;
    return PEFTC_OK;
}

PeftcStatus tb_step(TbWriter *w, const StepStats *s) {
    TfScalar v[] = {
        {"train/loss", (float)s->loss},
        {"train/learning_rate", (float)s->lr},
        {"train/grad_norm", (float)s->grad_norm},
        {"train/tokens_per_second", (float)(s->step_seconds > 0 ? s->seq_tokens / s->step_seconds : 0)},
    };
    return put_scalars(w, s->step, v, (int)(sizeof v / sizeof v[0]));
}

PeftcStatus tb_eval(TbWriter *w, const EvalStats *s) {
    TfScalar v = {"eval/loss", (float)s->loss};
    return put_scalars(w, s->step, &v, 1);
}

PeftcStatus tb_exact_match(TbWriter *w, int64_t step, double fraction) {
    TfScalar v = {"eval/exact_match", (float)fraction};
    return put_scalars(w, step, &v, 1);
}

const char *tb_path(const TbWriter *w) { return w->path; }

PeftcStatus tb_close(TbWriter *w) {
    if (!w) return PEFTC_OK;
    PeftcStatus st = PEFTC_OK;
    if (fclose(w->f) != 0)
        st = PEFTC_ERR(PEFTC_EWRITE, "closing TensorBoard event file '%s' failed: %s", w->path, strerror(errno));
    free(w);
    return st;
}
