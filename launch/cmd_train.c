/* peftc train: configuration, then one Session driven by the trainer, with rank 0 reporting. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters/formats/peft_io.h"
#include "core/base/fsutil.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/hf_companions.h"
#include "launch/metrics.h"
#include "launch/summary.h"
#include "launch/tensorboard.h"
#include "launch/ckpt_run.h"
#include "launch/launcher.h"
#include "launch/runlock.h"
#include "launch/signals.h"
#include "core/base/clock.h"
#include "launch/progress.h"
#include "launch/session.h"

void train_usage(FILE *f) {
    fprintf(f, "usage: peftc train [config.yaml] [key=value | --key=value | --key value ...]\n\n");
    config_print_help(f);
}

/* Applies one option in flag form: "--key=value", or "--key value" taking the next argument.
 * Returns how many arguments it used through *used. */
static PeftcStatus apply_flag(RunConfig *c, int argc, char **argv, int i, int *used) {
    const char *arg = argv[i] + 2;
    if (strchr(arg, '=')) {
        *used = 1;
        return config_apply_override(c, arg);
    }
    if (i + 1 >= argc) return PEFTC_ERR(PEFTC_EINVAL, "option '%s' needs a value (--key value or key=value)", argv[i]);
    char kv[1024];
    if (snprintf(kv, sizeof kv, "%s=%s", arg, argv[i + 1]) >= (int)sizeof kv)
        return PEFTC_ERR(PEFTC_EINVAL, "option '%s' and its value are too long", argv[i]);
    *used = 2;
    return config_apply_override(c, kv);
}

PeftcStatus run_config_from_args(RunConfig *c, int argc, char **argv) {
    config_defaults(c);
    int i = 0;
    if (argc > 0 && !strchr(argv[0], '=') && strncmp(argv[0], "--", 2) != 0) PEFTC_TRY(config_load_yaml(c, argv[i++]));
    while (i < argc) {
        int used = 1;
        if (strncmp(argv[i], "--", 2) == 0) PEFTC_TRY(apply_flag(c, argc, argv, i, &used));
        else PEFTC_TRY(config_apply_override(c, argv[i]));
        i += used;
    }
    PEFTC_TRY(config_finish(c));
    return session_resolve_model(c);
}

static PeftcStatus write_resolved_config(const RunConfig *c) {
    char path[600];
    snprintf(path, sizeof path, "%s/config.yaml", c->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return PEFTC_ERR(PEFTC_EWRITE, "cannot write resolved config '%s': %s", path, strerror(errno));
    PeftcStatus st = config_write_yaml(c, f);
    if (fclose(f) != 0 && st == PEFTC_OK) st = PEFTC_ERR(PEFTC_EWRITE, "cannot write '%s'", path);
    return st;
}

typedef struct {
    Progress *progress;
    Metrics *metrics;
    TbWriter *tb;               /* NULL unless output.tensorboard */
    PeftcStatus report_status;  /* the first failure writing the metrics CSV or the event file */
    double first_eval, last_eval, tokens_seen, targets_seen, seconds;
    int n_evals;
} Reporter;

static void on_step(void *user, const StepStats *s) {
    Reporter *r = user;
    progress_step(r->progress, s);
    if (r->report_status == PEFTC_OK) r->report_status = metrics_step(r->metrics, s);
    if (r->report_status == PEFTC_OK && r->tb) r->report_status = tb_step(r->tb, s);
    r->tokens_seen += s->seq_tokens;
    r->targets_seen += s->tokens;
    r->seconds += s->step_seconds;
}

static void on_eval(void *user, const EvalStats *s) {
    Reporter *r = user;
    progress_eval(r->progress, s);
    if (r->report_status == PEFTC_OK) r->report_status = metrics_eval(r->metrics, s);
    if (r->report_status == PEFTC_OK && r->tb) r->report_status = tb_eval(r->tb, s);
    if (r->n_evals++ == 0) r->first_eval = s->loss;
    r->last_eval = s->loss;
}

/* The base's resident size; for a quantized base beside what fp32 would take, with the block types held. */
static void print_base_bytes(const Model *m) {
    const double mib = 1024.0 * 1024.0;
    double dense = (double)m->ops->dense_bytes(m) / mib;
    if (!m->quantized) return; /* the dense size is the param count in the banner, times 4 */
    char types[96] = "";
    size_t used = 0;
    for (int i = 0; i < m->n_linears; i++) {
        if (!m->linears[i]->qW) continue;
        const char *name = ggml_type_name(m->linears[i]->qW->type);
        char tagged[24];
        snprintf(tagged, sizeof tagged, "/%s/", name);
        char probe[100];
        snprintf(probe, sizeof probe, "/%s/", types);
        if (strstr(probe, tagged) || used >= sizeof types) continue;
        used += (size_t)snprintf(types + used, sizeof types - used, "%s%s", used ? "/" : "", name);
    }
    printf("peftc: base weights %.1f MiB quantized (%s blocks) instead of %.1f MiB fp32\n",
           (double)m->ops->base_bytes(m) / mib, types, dense);
}

/* How full the packed windows are, beside one example per row (positions that carry an example). */
static void print_packing(const Trainer *t) {
    const Packing *p = &t->pack[SPLIT_TRAIN];
    if (!t->cfg.packing || !p->examples) return;
    printf("peftc: packing: %lld examples into %lld windows of %d tokens, %.1f%% filled (one example per row: "
           "%.1f%%)\n", (long long)p->examples, (long long)p->n, p->T, 100.0 * (double)p->used / ((double)p->n * p->T),
           100.0 * (double)p->used / ((double)p->examples * p->T));
}

static void print_banner(const Session *s, int world) {
    const RunConfig *c = &s->cfg;
    print_base_bytes(s->model);
    if (c->model_path[0])
        printf("peftc: model %s (%s %s, %d layers, hidden %d, vocab %d, %s%s%s chat format)\n", c->model_path,
               s->info.arch[0] ? s->info.arch : s->model->ops->family, s->info.name, s->model->layers, s->model->hidden, s->model->vocab,
               s->info.features, s->info.features[0] ? ", " : "", chat_format_names[s->chat.format]);
    if (s->tok && s->data_stats.examples[0])
        printf("peftc: data %s: %lld train / %lld held-out examples, %lld train tokens, %lld dropped as too long%s\n",
               c->sft.path[0] ? c->sft.path : data_task_names[c->task], (long long)s->data_stats.examples[0],
               (long long)s->data_stats.examples[1], (long long)s->data_stats.tokens,
               (long long)s->data_stats.dropped, s->data_stats.from_cache ? " (tokenized cache)" : "");
    printf("peftc: %s on %d rank(s) x %d thread(s); model %lld params, trainable %zu (%s)\n", config_method(c)->name, world,
           omp_get_max_threads(), (long long)s->model->ops->param_count(s->model), arena_trainable(&s->arena),
           s->arena.n_groups ? s->arena.groups[0].name : "-");
    printf("peftc: precision %s (%s); base weights %.1f MiB resident\n", s->bf16 ? "bf16" : "fp32", s->precision_why,
           (double)s->model->ops->base_bytes(s->model) / (1024.0 * 1024.0));
    printf("peftc: global batch %d x %d tokens (micro %d x accum %d x ranks %d); all-reduce %zu bytes/step\n",
           c->train.micro_batch * c->train.accum * world, c->train.seq_len, c->train.micro_batch, c->train.accum,
           world, (s->arena.numel + ARENA_TRAILER) * sizeof(real_t));
    print_packing(&s->trainer);
    fflush(stdout);
}

/* In-place redraw only for a person at a terminal. MPI launchers hand ranks a pseudo-terminal even
 * when mpirun's own output goes to a file, so under a launcher plain lines are the safe choice. */
static int redraw_in_place(void) {
    const char *term = getenv("TERM");
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("SLURM_STEP_ID")) return 0;
    return isatty(fileno(stdout)) && !(term && strcmp(term, "dumb") == 0);
}

/* Rank 0 writes what the method leaves behind (its descriptor's export: a PEFT adapter, RoSA's sparse
 * deltas); the others wait for its verdict. */
/* Modules with an adapter that HF PEFT refuses to load one on (Mamba's out_proj): the folder still
 * reloads in peftc and merges with peftc merge, and the user should know before reaching for PEFT. */
static void note_peft_refusals(const Model *m) {
    unsigned seen = 0;
    for (int i = 0; i < m->n_linears; i++) {
        const Linear *l = m->linears[i];
        if (!l->adapter || !m->targets[l->target].no_peft || (seen & linear_target_bit(l))) continue;
        seen |= linear_target_bit(l);
        printf("peftc: note: HF PEFT refuses an adapter on %s of a %s model; this folder reloads in peftc "
               "(lora.init_from) and merges with peftc merge\n", m->targets[l->target].hf, m->ops->family);
    }
}

/* What the method leaves: an adapter folder, or for methods that train the whole base the model itself:
 * model.gguf beside a GGUF base's metadata (which holds the tokenizer), else an HF folder with its
 * tokenizer files. */
static PeftcStatus save_adapter(Session *s, Comm *comm) {
    const RunConfig *c = &s->cfg;
    if (!c->save_adapter || !s->method.desc->export) return PEFTC_OK;
    PeftcStatus st = PEFTC_OK;
    if (comm_rank(comm) == 0) {
        char dir[600];
        int model = s->method.desc->trains_base, gguf = model && s->info.is_gguf;
        snprintf(dir, sizeof dir, "%s/%s", c->out_dir, gguf ? "model.gguf" : model ? "model" : "adapter");
        st = s->method.desc->export(&s->method, s->model, dir, c->model_path[0] ? c->model_path : "random");
        if (st == PEFTC_OK && model && !gguf) st = hf_companions_write(s, dir);
        if (st == PEFTC_OK) printf("peftc: %s saved to %s\n", model ? "model" : "adapter", dir);
        note_peft_refusals(s->model);
    }
    return comm_agree(comm, st);
}

/* Rank 0's summary.json: the figures of the final "done" line, for scripts. */
static PeftcStatus write_summary(const Session *s, const Reporter *rep, int world, int em, double em0, double em1,
                                 double t0) {
    RunSummary r = {world, rep->first_eval, rep->last_eval, em, em0, em1,
                    rep->seconds > 0 ? rep->tokens_seen / rep->seconds : 0.0,
                    rep->seconds > 0 ? rep->targets_seen / rep->seconds : 0.0, rep->seconds, clock_seconds() - t0};
    char path[600];
    snprintf(path, sizeof path, "%s/summary.json", s->cfg.out_dir);
    return summary_write(s, &r, path);
}

/* Rank 0's metrics file (continued when resuming), TensorBoard file (a new one when resuming), progress
 * line and banner. */
static PeftcStatus open_reporting(Session *s, Reporter *rep, int world, int64_t resumed) {
    char path[600];
    snprintf(path, sizeof path, "%s/tensorboard", s->cfg.out_dir);
    if (s->cfg.tensorboard) PEFTC_TRY(tb_open(&rep->tb, path, resumed));
    snprintf(path, sizeof path, "%s/metrics.csv", s->cfg.out_dir);
    if (resumed > 0) {
        double first, last;
        PEFTC_TRY(metrics_resume(&rep->metrics, path, resumed, &first, &last));
        rep->first_eval = first;
        rep->last_eval = last;
        rep->n_evals = isnan(first) ? 0 : 1;
    } else {
        PEFTC_TRY(metrics_open(&rep->metrics, path));
    }
    PEFTC_TRY(progress_create(&rep->progress, stdout, redraw_in_place(), s->cfg.log_every));
    print_banner(s, world);
    return PEFTC_OK;
}

/* Closes what open_reporting opened; the first failure, if any. */
static PeftcStatus close_reporting(Reporter *rep) {
    PeftcStatus mst = metrics_close(rep->metrics);
    PeftcStatus tst = tb_close(rep->tb);
    return mst != PEFTC_OK ? mst : tst;
}

/* The metrics CSV has no exact-match rows (summary.json holds both values); TensorBoard gets a point. */
static void report_exact_match(Reporter *rep, int64_t step, double acc) {
    if (rep->report_status == PEFTC_OK && rep->tb) rep->report_status = tb_exact_match(rep->tb, step, acc);
}

/* Rank 0 reports; every rank trains. t0 is when the command started. *preempted: a signal stopped
 * training after a checkpoint. */
static PeftcStatus run(Session *s, Comm *comm, double t0, int *preempted) {
    Reporter rep = {0};
    TrainerHooks hooks = {&rep, on_step, on_eval};
    int root = comm_rank(comm) == 0;
    CkptRun ck;
    int64_t resumed = 0;
    PeftcStatus st = ckpt_run_init(&ck, s, comm);
    if (root) ck.report_status = &rep.report_status;
    if (st == PEFTC_OK) st = ckpt_run_resume(&ck, &resumed);
    if (st != PEFTC_OK) return st;
    if (root) st = open_reporting(s, &rep, comm_size(comm), resumed);
    st = comm_agree(comm, st);
    double em0 = NAN, em1 = 0;
    int em = em_enabled(s);
    if (st == PEFTC_OK && em && resumed == 0) {
        st = em_report(s, comm, "before training", &em0);
        if (st == PEFTC_OK && root) report_exact_match(&rep, 0, em0);
    } else if (st == PEFTC_OK && em && root) printf("exact match before training: see the run that wrote the checkpoint\n");
    if (st == PEFTC_OK) st = session_prepare(s, comm);
    if (st == PEFTC_OK) {
        ckpt_run_attach(&ck);
        st = trainer_run(&s->trainer, root ? &hooks : NULL);
    }
    if (root) progress_finish(rep.progress);
    *preempted = st == PEFTC_OK && ck.preempted;
    if (*preempted) {
        if (root)
            printf("peftc: stopped by signal %d at step %lld after writing its checkpoint; run the same command "
                   "with checkpoint.resume=auto to continue (exit code %d)\n", signals_pending(),
                   (long long)s->trainer.step, EXIT_PREEMPTED);
        if (root) close_reporting(&rep);
        return PEFTC_OK;
    }
    /* Saved before the final evaluation: a failure there must not lose a finished run. */
    if (st == PEFTC_OK) st = save_adapter(s, comm);
    if (st == PEFTC_OK && em) st = em_report(s, comm, "after training", &em1);
    if (st == PEFTC_OK && em && root) report_exact_match(&rep, s->trainer.step, em1);
    if (root) {
        PeftcStatus mst = close_reporting(&rep);
        if (st == PEFTC_OK) st = rep.report_status != PEFTC_OK ? rep.report_status : mst;
        if (st == PEFTC_OK) st = write_summary(s, &rep, comm_size(comm), em, em0, em1, t0);
        if (st == PEFTC_OK) {
            char emtxt[96] = "";
            if (em && !isnan(em0)) snprintf(emtxt, sizeof emtxt, ", exact match %.1f%% -> %.1f%%", 100 * em0, 100 * em1);
            else if (em) snprintf(emtxt, sizeof emtxt, ", exact match %.1f%%", 100 * em1);
            /* A run resumed at its last step whose metrics file was lost has no held-out loss to quote. */
            char losstxt[96] = "no held-out loss in its metrics";
            if (!isnan(rep.first_eval) && !isnan(rep.last_eval))
                snprintf(losstxt, sizeof losstxt, "held-out loss %.4f -> %.4f", rep.first_eval, rep.last_eval);
            else if (!isnan(rep.last_eval)) snprintf(losstxt, sizeof losstxt, "held-out loss %.4f", rep.last_eval);
            printf("peftc: done: %s%s, %.0f tokens/s (%.0f target tokens/s), metrics in %s/metrics.csv\n", losstxt,
                   emtxt, rep.seconds > 0 ? rep.tokens_seen / rep.seconds : 0.0,
                   rep.seconds > 0 ? rep.targets_seen / rep.seconds : 0.0, s->cfg.out_dir);
        }
    }
    return st;
}

void report_error(PeftcStatus st, const Comm *comm, int is_config) {
    if (st == PEFTC_OK) return;
    /* Configuration errors are the same on every rank: say them once. */
    if (is_config && comm_rank(comm) != 0) return;
    if (st == PEFTC_ECOMM && comm_rank(comm) != 0) return;
    /* Every rank diverges at the same step with the same all-reduced loss: one message says it. */
    if (st == PEFTC_EDIVERGED && comm_rank(comm) != 0) return;
    if (comm_size(comm) > 1 && !is_config) fprintf(stderr, "peftc: error: [rank %d] %s\n", comm_rank(comm), peftc_err_msg());
    else fprintf(stderr, "peftc: error: %s\n", peftc_err_msg());
}

/* Threads per rank when train.threads is 0. An explicit OMP_NUM_THREADS wins. A rank that a launcher
 * already bound to some cores (srun --cpus-per-task, mpirun's default binding) uses exactly those;
 * an unbound rank shares the node's cores with the other ranks on it. */
static int auto_threads(const Comm *comm) {
    if (getenv("OMP_NUM_THREADS")) return omp_get_max_threads();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < online) return CPU_COUNT(&set);
    int n = (int)(online / comm_local_size(comm));
    return n < 1 ? 1 : n;
}

void set_rank_threads(const RunConfig *c, const Comm *comm) {
    backend_cpu_set_threads(c->threads > 0 ? c->threads : auto_threads(comm));
}

int run_start(int argc, char **argv, RunConfig *cfg, Comm **comm) {
    if (comm_init(comm, NULL, NULL) != PEFTC_OK) {
        fprintf(stderr, "peftc: error: %s\n", peftc_err_msg());
        return EXIT_RUNTIME;
    }
    PeftcStatus st = comm_agree(*comm, run_config_from_args(cfg, argc, argv));
    if (st != PEFTC_OK) {
        report_error(st, *comm, 1);
        comm_free(*comm);
        return exit_code_for(st); /* the configuration (2), or the model its shape is read from (65) */
    }
    set_rank_threads(cfg, *comm);
    return 0;
}

/* Rank 0 locks output.dir, and checkpoint.folder when it is another folder, before writing anything
 * into them. */
static PeftcStatus lock_folders(RunLock *lock, const RunConfig *c) {
    PEFTC_TRY(runlock_take(lock, c->out_dir, "output.dir"));
    PEFTC_TRY(fs_mkdir_p(c->ckpt_dir));
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(c->out_dir, a) && realpath(c->ckpt_dir, b) && strcmp(a, b) == 0) return PEFTC_OK;
    return runlock_take(lock, c->ckpt_dir, "checkpoint.folder");
}

int cmd_train(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            train_usage(stdout);
            return 0;
        }
    double t0 = clock_seconds();
    /* Before anything slow (MPI start, loading the base): a preemption signal during startup must be
     * caught too, or its default action kills the rank and the job is never requeued. Training then
     * stops after its first step with a checkpoint. */
    signals_install();
    launcher_watch_start();
    Comm *comm;
    static RunConfig cfg;
    int rc = run_start(argc, argv, &cfg, &comm);
    if (rc) return rc;
    PeftcStatus st = PEFTC_OK;
    RunLock lock;
    runlock_init(&lock);
    if (comm_rank(comm) == 0) {
        st = lock_folders(&lock, &cfg);
        if (st == PEFTC_OK) st = write_resolved_config(&cfg);
        if (st == PEFTC_OK) {
            printf("# resolved configuration (also in %s/config.yaml)\n", cfg.out_dir);
            config_write_yaml(&cfg, stdout);
            fflush(stdout);
        }
    }
    st = comm_agree(comm, st);
    static Session session;
    int preempted = 0;
    if (st == PEFTC_OK) {
        PeftcStatus local = session_open(&session, &cfg, comm);
        st = comm_agree(comm, local);
        if (st == PEFTC_OK) st = run(&session, comm, t0, &preempted);
        if (local == PEFTC_OK) session_close(&session);
    }
    report_error(st, comm, 0);
    comm_free(comm);
    runlock_release(&lock);
    return st != PEFTC_OK ? exit_code_for(st) : preempted ? EXIT_PREEMPTED : 0;
}
