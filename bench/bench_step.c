/* Training-step throughput at a chosen model shape (default: SmolLM2-135M's, seq 256, LoRA r=8 on all
 * linear layers). Prints tokens/s, ms/step, useful GFLOP/s and peak memory. Arguments are the same
 * key=value overrides `peftc train` takes, e.g. method.name=full or train.micro_batch=8. */
#include <omp.h>
#include <stdio.h>
#include <sys/resource.h>

#include "core/base/clock.h"
#include "launch/session.h"
#ifdef PEFTC_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

static const char *smollm2_shape[] = {
    "model.path=", "data.task=reverse", "model.hidden=576", "model.intermediate=1536", "model.layers=30", "model.heads=9", "model.kv_heads=3",
    "model.vocab=49152", "model.rope_theta=100000", "model.init_std=0.02", "train.seq_len=256",
    "train.micro_batch=4", "data.max_digits=64", "train.steps=4", "sched.warmup=1", "train.eval_batches=1",
};

/* FLOPs per token a step really needs: forward 2N over the matrices, input gradients 2N (the frozen
 * weights still pass gradients down), weight gradients 2N only for trainable matrices, plus attention
 * (QK^T and AV forward, twice that backward; causal halves it). */
static double useful_flops_per_token(const Session *s) {
    const LlamaConfig *c = &llama_of(s->model)->cfg;
    double T = s->cfg.train.seq_len, VC = (double)c->vocab * c->hidden;
    /* The embedding lookup costs no FLOPs; the LM head matmul does, tied or not. */
    double N = (double)llama_param_count(c) - VC + (c->tie_embeddings ? VC : 0);
    int trains_base = s->method.desc->trains_base;
    double train = trains_base ? 2 * N : 0;
    double adapter = trains_base ? 0 : 6.0 * (double)arena_trainable(&s->arena);
    double attn = 3 * 2 * 2 * (double)c->layers * c->heads * c->head_dim * T / 2;
    return 4 * N + train + adapter + attn;
}

/* The best of three D^3 products in the run's precision, in GFLOP/s: the matmul peak the useful rate
 * is a share of. fp32: matmul; bf16: matmul_bf16 of an fp32 input by a bf16 weight, as the frozen
 * layers run. D = 2048 on a CPU; 8192 on a GPU, which a 2048^3 product leaves partly idle. */
static double matmul_peak(const Backend *be, int bf16) {
    const int D = be->device == DEV_CPU ? 2048 : 8192;
    size_t n = (size_t)D * D;
    real_t *a = be->alloc(be, n * sizeof(real_t)), *b = be->alloc(be, n * sizeof(real_t));
    real_t *c = be->alloc(be, n * sizeof(real_t));
    uint16_t *bh = be->alloc(be, n * sizeof(uint16_t));
    BackendNeed need = {.bf16 = bf16};
    if (!a || !b || !c || !bh || be->reserve(be, &need) != PEFTC_OK) return 0;
    if (bf16) be->to_bf16(be, bh, b, n);
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        double t = clock_seconds();
        if (bf16) be->matmul_bf16(be, c, a, DT_REAL, bh, DT_BF16, D, D, D, 0, 1, 1, 0);
        else be->matmul(be, c, a, b, D, D, D, 0, 1, 1, 0);
        be->status(be); /* waits for a device */
        t = clock_seconds() - t;
        if (rep > 0 && t < best) best = t; /* the first pays for primitive creation and page faults */
    }
    be->free(be, a), be->free(be, b), be->free(be, c), be->free(be, bh);
    return 2.0 * D * D * (double)D / best / 1e9;
}

int main(int argc, char **argv) {
    Comm *comm;
    if (comm_init(&comm, &argc, &argv) != PEFTC_OK) return fprintf(stderr, "%s\n", peftc_err_msg()), 1;
    static RunConfig cfg;
    config_defaults(&cfg);
    for (size_t i = 0; i < sizeof smollm2_shape / sizeof *smollm2_shape; i++) config_apply_override(&cfg, smollm2_shape[i]);
    for (int i = 1; i < argc; i++)
        if (config_apply_override(&cfg, argv[i]) != PEFTC_OK) return fprintf(stderr, "%s\n", peftc_err_msg()), 2;
    if (config_finish(&cfg) != PEFTC_OK) return fprintf(stderr, "%s\n", peftc_err_msg()), 2;
    backend_cpu_set_threads(cfg.threads);
    static Session s;
    double t0 = clock_seconds();
    if (session_open(&s, &cfg, comm) != PEFTC_OK) return fprintf(stderr, "%s\n", peftc_err_msg()), 1;
    /* RoSA's warm-up, mask and restart come first, so the timed steps train the sparse adapters too. */
    if (session_prepare(&s, comm) != PEFTC_OK) return fprintf(stderr, "%s\n", peftc_err_msg()), 1;
    printf("bench_step: %s in %s (%s), %lld base params, %zu trainable, B=%d T=%d, %d rank(s) x %d thread(s), "
           "setup %.1f s\n", config_method(&cfg)->name, s.bf16 ? "bf16" : "fp32", s.precision_why, (long long)llama_param_count(&cfg.model), arena_trainable(&s.arena), cfg.train.micro_batch, cfg.train.seq_len,
           comm_size(comm), omp_get_max_threads(), clock_seconds() - t0);
    double total_s = 0, total_tok = 0, fpt = useful_flops_per_token(&s);
    for (int64_t i = 0; i < cfg.train.steps; i++) {
        StepStats st;
        if (trainer_step(&s.trainer, &st) != PEFTC_OK) return fprintf(stderr, "%s\n", peftc_err_msg()), 1;
        double tps = st.seq_tokens / st.step_seconds;
        printf("  step %lld: loss %.4f, %.0f ms, %.1f tokens/s, %.1f useful GFLOP/s\n", (long long)st.step, st.loss,
               1e3 * st.step_seconds, tps, tps * fpt / 1e9);
        if (i > 0) { /* the first step pays for page faults */
            total_s += st.step_seconds;
            total_tok += st.seq_tokens;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* before the peak measurement's buffers */
    if (total_s > 0) {
        double useful = total_tok / total_s * fpt / 1e9, peak = matmul_peak(s.model->be, s.bf16);
        printf("bench_step: %.1f tokens/s, %.1f ms/step (mean of the %lld timed steps after the first), %.1f useful "
               "GFLOP/s, peak RSS %.2f GiB\n", total_tok / total_s, 1e3 * total_s / (double)(cfg.train.steps - 1),
               (long long)cfg.train.steps - 1, useful, ru.ru_maxrss / 1048576.0);
        printf("bench_step: precision %s; its matmul peak here %.1f GFLOP/s (%d^3), useful share %.1f%%\n",
               s.bf16 ? "bf16" : "fp32", peak, s.model->be->device == DEV_CPU ? 2048 : 8192, 100 * useful / peak);
    } else {
        printf("bench_step: one step, peak RSS %.2f GiB\n", ru.ru_maxrss / 1048576.0);
    }
#ifdef PEFTC_WITH_CUDA
    if (cfg.device == DEV_CUDA)
        printf("bench_step: peak GPU memory %.2f GiB\n", cuda_mem_peak(s.model->be) / 1073741824.0);
#endif
    session_close(&s);
    comm_free(comm);
    return 0;
}
