/* Checkpoint policy and resume (see ckpt_run.h). */
#include "launch/ckpt_run.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/train/checkpoint.h"
#include "core/base/clock.h"
#include "core/base/fsutil.h"
#include "core/formats/h5util.h"
#include "launch/ckpt_settings.h"
#include "launch/ckpt_state.h"
#include "launch/signals.h"

#define PATH_CAP 1100

/* ---- the checkpoint folder ---- */

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of the step_N.h5 files in dir, newest first (malloc'ed; *n may be 0). */
static int64_t *list_steps(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    int64_t *steps = NULL;
    int cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        long long step;
        int used = 0;
        if (sscanf(e->d_name, "step_%lld.h5%n", &step, &used) != 1 || e->d_name[used] != '\0' || step < 0) continue;
        if (*n == cap) {
            int64_t *grown = realloc(steps, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *steps);
            if (!grown) break;
            steps = grown;
        }
        steps[(*n)++] = step;
    }
    closedir(d);
    if (*n) qsort(steps, (size_t)*n, sizeof *steps, cmp_desc);
    return steps;
}

static void step_path(const RunConfig *c, int64_t step, char *out) {
    snprintf(out, PATH_CAP, "%s/step_%lld.h5", c->ckpt_dir, (long long)step);
}

/* Deletes all but the newest checkpoint.keep files; a failure only costs disk space, so it is reported
 * and not fatal. */
static void prune(const RunConfig *c) {
    int n;
    int64_t *steps = list_steps(c->ckpt_dir, &n);
    for (int i = c->ckpt_keep; i < n; i++) {
        char p[PATH_CAP];
        step_path(c, steps[i], p);
        if (unlink(p) != 0)
            fprintf(stderr, "peftc: warning: cannot delete old checkpoint '%s': %s\n", p, strerror(errno));
    }
    free(steps);
}

/* ---- identity of the base model ---- */

/* model.path's identity: a file's CRC and size; for an HF folder, those of its config.json and weight
 * files combined; for a random model, its seed (its shape is in the stored config). */
static PeftcStatus base_identity(const RunConfig *c, char *out, size_t cap) {
    if (!c->model_path[0]) {
        snprintf(out, cap, "random:seed=%llu", (unsigned long long)c->model_seed);
        return PEFTC_OK;
    }
    struct stat sb;
    if (stat(c->model_path, &sb) != 0)
        return PEFTC_ERR(PEFTC_EIO, "model.path '%s': %s", c->model_path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return ckpt_file_hash(c->model_path, out, cap);
    struct dirent **names;
    int n = scandir(c->model_path, &names, NULL, alphasort);
    if (n < 0) return PEFTC_ERR(PEFTC_EIO, "model.path '%s': %s", c->model_path, strerror(errno));
    uint32_t crc = 0; /* over "name=hash;" of each file, in name order */
    PeftcStatus st = PEFTC_OK;
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        size_t len = strlen(nm);
        int weights = len > 12 && strcmp(nm + len - 12, ".safetensors") == 0;
        if (st == PEFTC_OK && (weights || strcmp(nm, "config.json") == 0)) {
            char p[PATH_CAP], h[64];
            snprintf(p, sizeof p, "%s/%s", c->model_path, nm);
            st = ckpt_file_hash(p, h, sizeof h);
            if (st == PEFTC_OK) {
                crc = h5_crc32_update(crc, nm, len);
                crc = h5_crc32_update(crc, "=", 1);
                crc = h5_crc32_update(crc, h, strlen(h));
                crc = h5_crc32_update(crc, ";", 1);
            }
        }
        free(names[i]);
    }
    free(names);
    if (st == PEFTC_OK) snprintf(out, cap, "folder crc32:%08x", crc);
    return st;
}

/* ---- saving ---- */

static char *config_text(const RunConfig *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    config_write_yaml(c, f);
    fclose(f);
    return text;
}

static PeftcStatus save_rank0(CkptRun *r) {
    const RunConfig *c = &r->s->cfg;
    const Trainer *t = &r->s->trainer;
    PEFTC_TRY(fs_mkdir_p(c->ckpt_dir));
    CkptMeta m = {.step = t->step, .cursor = t->train_sampler.cursor, .seed = c->train.seed,
                  .global_batch = (int64_t)c->train.micro_batch * c->train.accum * comm_size(r->comm),
                  .world = comm_size(r->comm)};
    snprintf(m.method, sizeof m.method, "%s", config_method(c)->name);
    snprintf(m.base_model, sizeof m.base_model, "%s", c->model_path[0] ? c->model_path : "random");
    snprintf(m.base_hash, sizeof m.base_hash, "%s", r->base_hash);
    m.config = config_text(c);
    if (!m.config) return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint: no memory for the configuration text");
    char path[PATH_CAP], latest[PATH_CAP], name[64];
    step_path(c, t->step, path);
    double t0 = clock_seconds();
    CkptState state;
    PeftcStatus st = ckpt_state_gather(r->s, &state);
    if (st == PEFTC_OK) {
        st = ckpt_write(path, &m, &r->s->arena, state.blobs, state.n);
        ckpt_state_free(&state);
    }
    free(m.config);
    snprintf(latest, sizeof latest, "%s/latest", c->ckpt_dir);
    int len = snprintf(name, sizeof name, "step_%lld.h5\n", (long long)t->step);
    if (st == PEFTC_OK) st = fs_write_atomic(latest, name, (size_t)len);
    if (st != PEFTC_OK) return st;
    prune(c);
    printf("peftc: checkpoint at step %lld written to %s (%.1f MiB, %.2f s)\n", (long long)t->step, path,
           3.0 * (double)r->s->arena.numel * sizeof(real_t) / (1024.0 * 1024.0), clock_seconds() - t0);
    fflush(stdout);
    return PEFTC_OK;
}

PeftcStatus ckpt_run_save(CkptRun *r) {
    PeftcStatus st = comm_rank(r->comm) == 0 ? save_rank0(r) : PEFTC_OK;
    PEFTC_TRY(comm_agree(r->comm, st));
    r->saved_step = r->s->trainer.step;
    r->last_save = clock_seconds();
    return PEFTC_OK;
}

/* Rank 0's report failure, on every rank: rank 0 keeps its own message; the others say where to look. */
static PeftcStatus report_failed(const CkptRun *r, PeftcStatus st, int64_t step) {
    if (r->report_status) return *r->report_status;
    PeftcStatus e = PEFTC_ERR(PEFTC_ECOMM, "rank 0 could not write its reports at step %lld (its message says why)",
                              (long long)step);
    peftc_err_set_cause(st);
    return e;
}

/* The step hook: the ranks agree on a pending signal, on rank 0's clock and on rank 0's reporting,
 * then save when due. */
static PeftcStatus after_step(void *user, Trainer *t, int *stop) {
    CkptRun *r = user;
    const RunConfig *c = &r->s->cfg;
    double flags[3] = {signals_pending() ? 1 : 0, 0, r->report_status ? (double)*r->report_status : 0};
    if (comm_rank(r->comm) == 0 && c->ckpt_minutes > 0)
        flags[1] = clock_seconds() - r->last_save >= 60.0 * c->ckpt_minutes;
    PEFTC_TRY(comm_allreduce_f64(r->comm, flags, 3, COMM_MAX));
    if (flags[2] > 0) return report_failed(r, (PeftcStatus)flags[2], t->step);
    int scheduled = c->ckpt_every > 0 || c->ckpt_minutes > 0;
    int due = flags[1] > 0 || (c->ckpt_every > 0 && t->step % c->ckpt_every == 0) ||
              (scheduled && t->step == t->cfg.steps);
    /* A step whose update was skipped (non-finite) writes no scheduled checkpoint, so a streak of skips
     * cannot rotate the earlier ones away; a preemption saves regardless. */
    if (t->skips_in_row > 0 && flags[0] == 0) due = 0;
    if ((due || flags[0] > 0) && r->saved_step != t->step) PEFTC_TRY(ckpt_run_save(r));
    if (flags[0] > 0) {
        r->preempted = 1;
        *stop = 1;
    }
    return PEFTC_OK;
}

PeftcStatus ckpt_run_init(CkptRun *r, Session *s, Comm *comm) {
    memset(r, 0, sizeof *r);
    r->s = s;
    r->comm = comm;
    r->saved_step = -1;
    r->last_save = clock_seconds();
    PeftcStatus st = comm_rank(comm) == 0 ? base_identity(&s->cfg, r->base_hash, sizeof r->base_hash) : PEFTC_OK;
    return comm_agree(comm, st);
}

void ckpt_run_attach(CkptRun *r) {
    StepHook h = {r, after_step};
    trainer_set_step_hook(&r->s->trainer, &h);
}

/* ---- resuming ---- */

/* A checkpoint this run can continue: same method, base model, seed and global batch. (The adapter
 * layout is checked tensor by tensor when the arena is read.) */
static PeftcStatus check_compatible(const CkptRun *r, const char *path, const CkptMeta *m) {
    const RunConfig *c = &r->s->cfg;
    int64_t batch = (int64_t)c->train.micro_batch * c->train.accum * comm_size(r->comm);
    if (strcmp(m->method, config_method(c)->name) != 0)
        return PEFTC_ERR(PEFTC_EINVAL, "checkpoint '%s' was made by method.name=%s; this run is %s", path, m->method,
                         config_method(c)->name);
    if (strcmp(m->base_hash, r->base_hash) != 0)
        return PEFTC_ERR(PEFTC_EINVAL, "checkpoint '%s' was made for base model '%s' (%s); model.path '%s' is %s",
                         path, m->base_model, m->base_hash, c->model_path[0] ? c->model_path : "random",
                         r->base_hash);
    if (m->seed != c->train.seed)
        return PEFTC_ERR(PEFTC_EINVAL, "checkpoint '%s' was made with train.seed=%llu; this run has %llu", path,
                         (unsigned long long)m->seed, (unsigned long long)c->train.seed);
    if (m->global_batch != batch)
        return PEFTC_ERR(PEFTC_EINVAL, "checkpoint '%s' was made with a global batch of %lld sequences; this run has "
                         "%lld (train.micro_batch x train.accum x ranks must stay the same)", path,
                         (long long)m->global_batch, (long long)batch);
    return ckpt_settings_check(c, m->config, path, m->step, stdout);
}

/* One candidate, on rank 0: readable, intact and compatible. */
static PeftcStatus try_candidate(const CkptRun *r, const char *path) {
    PEFTC_TRY(ckpt_verify(path));
    CkptMeta m;
    PEFTC_TRY(ckpt_read_meta(path, &m));
    PeftcStatus st = check_compatible(r, path, &m);
    ckpt_meta_free(&m);
    return st == PEFTC_OK ? ckpt_state_check(r->s, path) : st;
}

/* The file name `latest` holds, if it is a step_N.h5 of this folder (peftc writes nothing else there):
 * a path elsewhere is refused rather than followed. "" when absent or refused. */
static void read_latest(const RunConfig *c, char *name, size_t cap) {
    char latest[PATH_CAP];
    snprintf(latest, sizeof latest, "%s/latest", c->ckpt_dir);
    name[0] = '\0';
    FILE *f = fopen(latest, "r");
    if (!f) return;
    if (!fgets(name, (int)cap, f)) name[0] = '\0';
    fclose(f);
    name[strcspn(name, "\r\n")] = '\0';
    long long step;
    int used = 0;
    if (!name[0] || (sscanf(name, "step_%lld.h5%n", &step, &used) == 1 && name[used] == '\0' && step >= 0)) return;
    fprintf(stderr, "peftc: warning: ignoring '%s': it names '%s', not a step_N.h5 file of that folder\n", latest,
            name);
    name[0] = '\0';
}

/* checkpoint.resume=auto on rank 0: `latest` first, then every step_N.h5 newest first. Corrupt files
 * are reported and skipped; an incompatible one stops the search (an older one would not fit either).
 * Checkpoints that all fail to verify are an error, not a fresh start: that would discard the run. */
static PeftcStatus pick_auto(const CkptRun *r, char *chosen) {
    const RunConfig *c = &r->s->cfg;
    chosen[0] = '\0';
    char name[256];
    read_latest(c, name, sizeof name);
    int n, corrupt = 0;
    int64_t *steps = list_steps(c->ckpt_dir, &n);
    PeftcStatus st = PEFTC_OK;
    for (int i = -1; i < n && !chosen[0] && st == PEFTC_OK; i++) {
        char p[PATH_CAP];
        if (i < 0 && !name[0]) continue;
        if (i < 0) snprintf(p, sizeof p, "%s/%s", c->ckpt_dir, name);
        else step_path(c, steps[i], p);
        PeftcStatus one = try_candidate(r, p);
        if (one == PEFTC_OK) strcpy(chosen, p);
        else if (one == PEFTC_EINVAL) st = one;
        else {
            corrupt += i >= 0;
            fprintf(stderr, "peftc: warning: skipping checkpoint: %s\n", peftc_err_msg());
        }
    }
    free(steps);
    if (st == PEFTC_OK && !chosen[0] && corrupt > 0)
        st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint.resume=auto: none of the %d checkpoint(s) in '%s' can be read (each "
                       "is reported above); move them away to start from step 0", corrupt, c->ckpt_dir);
    return st;
}

PeftcStatus ckpt_run_resume(CkptRun *r, int64_t *step) {
    const RunConfig *c = &r->s->cfg;
    *step = 0;
    if (!c->resume[0]) return PEFTC_OK;
    char chosen[PATH_CAP] = "";
    PeftcStatus st = PEFTC_OK;
    if (comm_rank(r->comm) == 0) {
        if (strcmp(c->resume, "auto") == 0) st = pick_auto(r, chosen);
        else if ((st = try_candidate(r, c->resume)) == PEFTC_OK) snprintf(chosen, sizeof chosen, "%s", c->resume);
    }
    PEFTC_TRY(comm_agree(r->comm, st));
    PEFTC_TRY(comm_bcast(r->comm, chosen, sizeof chosen, 0));
    if (!chosen[0]) {
        if (comm_rank(r->comm) == 0) printf("peftc: resume: no checkpoint in %s; starting from step 0\n", c->ckpt_dir);
        return PEFTC_OK;
    }
    CkptMeta m;
    st = ckpt_read_meta(chosen, &m);
    if (st == PEFTC_OK) {
        st = ckpt_read_arena(chosen, &r->s->arena);
        if (st == PEFTC_OK) trainer_resume_at(&r->s->trainer, m.step, m.cursor);
        *step = m.step;
        ckpt_meta_free(&m);
    }
    PEFTC_TRY(comm_agree(r->comm, st));
    r->saved_step = *step;
    if (comm_rank(r->comm) == 0)
        printf("peftc: resumed from %s at step %lld of %lld\n", chosen, (long long)*step, (long long)c->train.steps);
    return PEFTC_OK;
}
