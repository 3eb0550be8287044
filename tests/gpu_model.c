/* The whole model on the GPU against the CPU backend: logits, loss and every LoRA gradient for one
 * batch (random LLaMA with GQA and LoRA dropout; the same in bf16; a quantized base holding every block
 * type; a random Mamba under full fine-tuning), the transformers+PEFT fixture on the GPU, a short training run whose losses follow the CPU's,
 * and determinism: the same seed on the same GPU gives bit-identical losses after 20 steps. Skips without a GPU. fp32 storage on both sides; tolerances
 * allow for cuBLAS summing in another order (1e-4 relative on logits and gradients). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "adapters/method.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/models/llama/model_formats.h"
#include "core/models/mamba/mamba.h"
#include "launch/session.h"
#include "tests/fixture.h"
#include "tests/method_testutil.h"
#include "tests/quant_testutil.h"
#include "tests/testutil.h"

#define TOL 1e-4

static int have_gpu(void) {
    if (cuda_device_count() > 0) return 1;
    printf("SKIP: no GPU (cuda_device_count() == 0)\n");
    return 0;
}

/* The small run below with overrides `extra` (NULL-terminated, or NULL) applied after its own. */
static RunConfig small_with(Device dev, Precision prec, const char *const *extra) {
    RunConfig c;
    config_defaults(&c);
    const char *kv[] = {"model.path=", "data.task=reverse", "model.hidden=64", "model.intermediate=96",
                        "model.layers=2", "model.heads=4", "model.kv_heads=2", "model.vocab=32",
                        "train.seq_len=24", "train.micro_batch=4", "train.steps=20", "sched.warmup=2",
                        "train.eval_batches=2", "lora.r=4", "lora.dropout=0.1", "eval.examples=0",
                        "output.save_adapter=false", "optim.lr=1e-2"};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        ck_assert_msg(config_apply_override(&c, kv[i]) == PEFTC_OK, "%s", peftc_err_msg());
    for (int i = 0; extra && extra[i]; i++)
        ck_assert_msg(config_apply_override(&c, extra[i]) == PEFTC_OK, "%s: %s", extra[i], peftc_err_msg());
    c.device = dev;
    c.precision = prec;
    ck_assert_msg(config_finish(&c) == PEFTC_OK, "%s", peftc_err_msg());
    return c;
}

/* n values of backend memory, in a new host array. */
static real_t *fetch(const Backend *be, const real_t *p, size_t n) {
    real_t *h = malloc(n * sizeof *h);
    be->download(be, h, p, n * sizeof *h);
    ck_assert_msg(be->status(be) == PEFTC_OK, "%s", peftc_err_msg());
    return h;
}

static double rel(const real_t *a, const real_t *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / fmax(s, 1e-30);
}

/* The logits buffer of either family's activations. */
static real_t *logits_of(Model *m) {
    return strcmp(m->ops->family, "mamba") ? llama_of(m)->acts.logits : mamba_of(m)->acts.logits;
}

/* One training forward/backward of a fixed batch of B rows of T tokens on `dev` (the small run plus
 * overrides extra): the probabilities (B*T, V), the loss sum and the arena's gradient, on the host. */
static void pass_with(Device dev, Precision prec, const char *const *extra, int B, int T, Comm *comm, real_t **probs,
                      double *loss, real_t **grads, size_t *numel) {
    RunConfig c = small_with(dev, prec, extra);
    static Session s;
    ck_assert_msg(session_open(&s, &c, comm) == PEFTC_OK, "%s", peftc_err_msg());
    int V = 32, BT = B * T;
    int32_t *tok = malloc(BT * sizeof *tok), *tgt = malloc(BT * sizeof *tgt);
    uint64_t *keys = malloc(BT * sizeof *keys);
    for (int i = 0; i < BT; i++) tok[i] = (i * 7 + 3) % V, tgt[i] = i % 5 ? (i * 11 + 1) % V : -100, keys[i] = 1000 + i;
    ck_assert_int_eq(model_reserve(s.model, B, T), PEFTC_OK);
    const Backend *be = s.model->be;
    be->zero(be, s.arena.grads, s.arena.numel);
    int64_t nv;
    ck_assert_int_eq(model_forward(s.model, tok, tgt, NULL, NULL, keys, 1, B, T, loss, &nv), PEFTC_OK);
    *probs = fetch(be, logits_of(s.model), (size_t)BT * V);
    model_backward(s.model, tok, tgt, keys, (real_t)(1.0 / (double)nv));
    *numel = s.arena.numel;
    *grads = fetch(be, s.arena.grads, s.arena.numel);
    session_close(&s);
    free(tok), free(tgt), free(keys);
}

static void one_pass(Device dev, Precision prec, Comm *comm, real_t **probs, double *loss, real_t **grads,
                     size_t *numel) {
    pass_with(dev, prec, NULL, 4, 24, comm, probs, loss, grads, numel);
}

/* The same fp32 pass (pass_with's arguments) on the CPU and the GPU: probabilities, loss and the
 * whole gradient within TOL; `what` names the case in the printed line. */
static void expect_gpu_matches_cpu(const char *what, const char *const *extra, int B, int T) {
    Comm *comm;
    ck_assert_int_eq(comm_init_self(&comm), PEFTC_OK);
    real_t *pc, *pg, *gc, *gg;
    double lc, lg;
    size_t nc, ng;
    pass_with(DEV_CPU, PREC_FP32, extra, B, T, comm, &pc, &lc, &gc, &nc);
    pass_with(DEV_CUDA, PREC_FP32, extra, B, T, comm, &pg, &lg, &gg, &ng);
    ck_assert_uint_eq(nc, ng);
    double ep = rel(pg, pc, (size_t)B * T * 32), eg = rel(gg, gc, nc);
    printf("gpu vs cpu, %s: probabilities %.2e, loss %.9g vs %.9g, gradients %.2e\n", what, ep, lg, lc, eg);
    ck_assert(ep < TOL && eg < TOL && fabs(lg - lc) / fabs(lc) < TOL);
    free(pc), free(pg), free(gc), free(gg);
    comm_free(comm);
}

START_TEST(gpu_matches_cpu_on_one_batch) {
    if (have_gpu()) expect_gpu_matches_cpu("LoRA", NULL, 4, 24);
}
END_TEST

/* train.precision=bf16 on both: the same bf16-rounded matmul inputs, fp32 sums in another order. An
 * activation a rounding step apart on the two sides can round to neighbouring bf16 values, so agreement
 * is to bf16's resolution (2^-8), not fp32's; and it must differ from the fp32 pass. */
START_TEST(gpu_bf16_matches_cpu_bf16) {
    if (!have_gpu()) return;
    Comm *comm;
    ck_assert_int_eq(comm_init_self(&comm), PEFTC_OK);
    real_t *pc, *pg, *gc, *gg, *pf, *gf;
    double lc, lg, lf;
    size_t nc, ng, nf;
    one_pass(DEV_CPU, PREC_BF16, comm, &pc, &lc, &gc, &nc);
    one_pass(DEV_CUDA, PREC_BF16, comm, &pg, &lg, &gg, &ng);
    one_pass(DEV_CPU, PREC_FP32, comm, &pf, &lf, &gf, &nf);
    ck_assert_uint_eq(nc, ng);
    double ep = rel(pg, pc, 96 * 32), eg = rel(gg, gc, nc);
    printf("gpu bf16 vs cpu bf16: probabilities %.2e, loss %.9g vs %.9g, LoRA gradients %.2e\n", ep, lg, lc, eg);
    ck_assert(ep < 1e-2 && eg < 2e-2 && fabs(lg - lc) / fabs(lc) < 1e-3);
    ck_assert_msg(rel(pc, pf, 96 * 32) > 1e-6, "the bf16 pass equals the fp32 one");
    free(pc), free(pg), free(gc), free(gg), free(pf), free(gf);
    comm_free(comm);
}
END_TEST

/* A random Mamba (model.family=mamba) under full fine-tuning, so every base tensor's gradient goes
 * through the CUDA conv1d, SiLU and selective-scan kernels: probabilities, loss and the whole gradient
 * against the CPU. T = 80 crosses the scan's 64-step chunk, which the backward recomputes from. */
static const char *const mamba_run[] = {"model.family=mamba", "model.hidden=32", "model.layers=2", "model.state=8",
                                        "model.vocab=32", "method.name=full", "train.seq_len=80", NULL};

START_TEST(gpu_mamba_matches_cpu) {
    if (have_gpu()) expect_gpu_matches_cpu("mamba full fine-tuning", mamba_run, 2, 80);
}
END_TEST

/* The PEFT fixture's logits, computed on the GPU. */
START_TEST(gpu_matches_peft_fixture) {
    if (!have_gpu()) return;
    Fixture fx = fixture_load("hf_tiny_lora_logits");
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T"), BT = B * T;
    int32_t tok[64];
    ck_assert_int_le(BT, 64);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "tokens"), tok, BT);
    RunConfig c;
    config_defaults(&c);
    ck_assert_int_eq(config_apply_override(&c, "model.path=" PEFTC_FIXTURE_DIR "/hf_tiny_llama"), PEFTC_OK);
    ck_assert_int_eq(config_apply_override(&c, "lora.init_from=" PEFTC_FIXTURE_DIR "/hf_tiny_lora"), PEFTC_OK);
    c.device = DEV_CUDA;
    c.em_examples = 0;
    ck_assert_int_eq(session_resolve_model(&c), PEFTC_OK);
    static Session s;
    ck_assert_msg(session_open_model(&s, &c) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(llama_reserve(llama_of(s.model), B, T), PEFTC_OK);
    ck_assert_int_eq(llama_forward(llama_of(s.model), tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    size_t n = (size_t)BT * llama_of(s.model)->cfg.vocab;
    real_t *logits = fetch(s.model->be, llama_of(s.model)->acts.logits, n);
    double e = fixture_rel_err(logits, fixture_tensor(&fx, "logits", (Shape){3, {B, T, llama_of(s.model)->cfg.vocab}}), n);
    printf("gpu vs PEFT: logits %.2e\n", e);
    ck_assert(e < TOL);
    free(logits);
    session_close(&s);
    fixture_free(&fx);
}
END_TEST

/* model.quantized on the GPU: the synthetic model of tests/quant_testutil.h (every block type) loaded
 * with its projections kept in blocks on the CPU (GGUF loaders fill host memory) and moved to `be` as
 * a session does (empty_like + copy_weights), LoRA on every linear with the same random factors on
 * both backends. One pass: the logits (B*T, V), the loss sum and the adapter gradient, on the host. */
static void quant_pass(const Backend *be, const char *path, real_t **logits, double *loss, real_t **grads,
                       size_t *numel) {
    enum { QB = 2, QT = 16 };
    static LlamaModel host;
    Arena a;
    ck_assert_msg(llama_load_quantized(&host, backend_cpu(), path, QUANT_BLOCKS, NULL) == PEFTC_OK, "%s",
                  peftc_err_msg());
    Model *dev = NULL;
    if (be->device != DEV_CPU) {
        ck_assert_msg(host.base.ops->empty_like(&host.base, be, &dev) == PEFTC_OK, "%s", peftc_err_msg());
        ck_assert_msg(dev->ops->copy_weights(dev, &host.base) == PEFTC_OK, "%s", peftc_err_msg());
    }
    LlamaModel *m = dev ? llama_of(dev) : &host;
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = (LoraConfig){.r = 4, .alpha = 8, .targets = LORA_T_ALL};
    arena_init(&a, be);
    ck_assert_msg(method_attach(&m->base, &a, &mc) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_msg(method_init(&m->base, &a, &mc, 3) == PEFTC_OK, "%s", peftc_err_msg());
    real_t *p = malloc(a.numel * sizeof *p); /* random A and B: B = 0 would hide dA */
    tu_fill_uniform(p, a.numel, 77, -0.05, 0.05);
    be->upload(be, a.params, p, a.numel * sizeof *p);
    free(p);
    ck_assert_int_eq(llama_reserve(m, QB, QT), PEFTC_OK);
    be->zero(be, a.grads, a.numel);
    int32_t tok[QB * QT], tgt[QB * QT];
    uint64_t keys[QB * QT];
    for (int i = 0; i < QB * QT; i++) tok[i] = (i * 7 + 3) % TU_QL_VOCAB, tgt[i] = (i * 11 + 1) % TU_QL_VOCAB, keys[i] = 1 + i;
    int64_t nv;
    ck_assert_int_eq(llama_forward(m, tok, tgt, NULL, NULL, keys, 1, QB, QT, loss, &nv), PEFTC_OK);
    *logits = fetch(be, m->acts.logits, (size_t)QB * QT * TU_QL_VOCAB);
    llama_backward(m, tok, tgt, keys, (real_t)(1.0 / (double)nv));
    *numel = a.numel;
    *grads = fetch(be, a.grads, a.numel);
    method_detach(&m->base, NULL);
    if (dev) model_free(dev);
    llama_free(&host);
    arena_free(&a);
}

START_TEST(gpu_quantized_base_matches_cpu) {
    if (!have_gpu()) return;
    char path[64];
    snprintf(path, sizeof path, "/tmp/gpu_model_q_%d.gguf", (int)getpid());
    tu_write_block_llama(path);
    Backend *gpu;
    ck_assert_msg(backend_cuda_create(0, &gpu) == PEFTC_OK, "%s", peftc_err_msg());
    real_t *pc, *pg, *gc, *gg;
    double lc, lg;
    size_t nc, ng;
    quant_pass(backend_cpu(), path, &pc, &lc, &gc, &nc);
    quant_pass(gpu, path, &pg, &lg, &gg, &ng);
    ck_assert_uint_eq(nc, ng);
    double el = rel(pg, pc, (size_t)2 * 16 * TU_QL_VOCAB), eg = rel(gg, gc, nc);
    printf("gpu vs cpu, quantized base (every block type): logits %.2e, loss %.9g vs %.9g, LoRA gradients %.2e\n",
           el, lg, lc, eg);
    ck_assert(el < TOL && eg < TOL && fabs(lg - lc) / fabs(lc) < TOL);
    free(pc), free(pg), free(gc), free(gg);
    backend_free(gpu);
    unlink(path);
}
END_TEST

static void train_losses_with(Device dev, Comm *comm, double *loss, int steps, const char *const *extra) {
    RunConfig c = small_with(dev, PREC_FP32, extra);
    static Session s;
    ck_assert_msg(session_open(&s, &c, comm) == PEFTC_OK, "%s", peftc_err_msg());
    for (int i = 0; i < steps; i++) {
        StepStats st;
        ck_assert_msg(trainer_step(&s.trainer, &st) == PEFTC_OK, "%s", peftc_err_msg());
        loss[i] = st.loss;
    }
    session_close(&s);
}

static void train_losses(Device dev, Comm *comm, double *loss, int steps) { train_losses_with(dev, comm, loss, steps, NULL); }

/* 8 steps of the session with `extra` (NULL-ended overrides) on the CPU, then on the GPU: each GPU loss
 * within 1e-3 of the CPU's. */
static void losses_follow_cpu(const char *const *extra, double *cpu, double *gpu) {
    Comm *comm;
    ck_assert_int_eq(comm_init_self(&comm), PEFTC_OK);
    train_losses_with(DEV_CPU, comm, cpu, 8, extra);
    train_losses_with(DEV_CUDA, comm, gpu, 8, extra);
    for (int i = 0; i < 8; i++)
        ck_assert_msg(fabs(gpu[i] - cpu[i]) <= 1e-3 * fabs(cpu[i]), "step %d: gpu loss %.9g, cpu %.9g", i + 1, gpu[i],
                      cpu[i]);
    comm_free(comm);
}

/* The two paths that once ran on the CPU only, through the whole session on the GPU: a quantized base
 * (loaded on the host, its blocks copied to the device) under RoSA with a sparse delta (the mask built
 * after 2 warm-up steps from 2 steps' gradients, then the CSR ops). The losses must follow the CPU's;
 * a mask entry at the selection threshold could flip between the two, hence 1e-3. */
START_TEST(gpu_quantized_rosa_session_follows_cpu) {
    if (!have_gpu()) return;
    char path[64], model[96], out[96];
    snprintf(path, sizeof path, "/tmp/gpu_model_qs_%d.gguf", (int)getpid());
    snprintf(model, sizeof model, "model.path=%s", path);
    snprintf(out, sizeof out, "output.dir=/tmp/gpu_model_qs_%d", (int)getpid());
    tu_write_block_llama(path);
    const char *extra[] = {model, "model.quantized=true", "method.name=rosa", "rosa.density=0.05", "rosa.warmup=2",
                           "rosa.grad_steps=2", "rosa.restart=false", out, NULL};
    double cpu[8], gpu[8];
    losses_follow_cpu(extra, cpu, gpu);
    printf("gpu quantized base + rosa: step 8 loss %.6f (cpu %.6f)\n", gpu[7], cpu[7]);
    unlink(path);
}
END_TEST

/* model.quantized=nf4 through the session on the GPU: the HF fixture quantized on the host, its NF4
 * bytes copied to the device and expanded there with the host's arithmetic; LoRA's losses follow the
 * CPU's as the dense model's do. */
START_TEST(gpu_nf4_session_follows_cpu) {
    if (!have_gpu()) return;
    char out[96];
    snprintf(out, sizeof out, "output.dir=/tmp/gpu_model_nf4_%d", (int)getpid());
    const char *extra[] = {"model.path=" PEFTC_FIXTURE_DIR "/hf_tiny_llama", "model.quantized=nf4", out, NULL};
    double cpu[8], gpu[8];
    losses_follow_cpu(extra, cpu, gpu);
    printf("gpu nf4 base: step 8 loss %.6f (cpu %.6f)\n", gpu[7], cpu[7]);
}
END_TEST

START_TEST(gpu_training_follows_cpu_and_is_deterministic) {
    if (!have_gpu()) return;
    Comm *comm;
    ck_assert_int_eq(comm_init_self(&comm), PEFTC_OK);
    double cpu[20], a[20], b[20];
    train_losses(DEV_CPU, comm, cpu, 5);
    train_losses(DEV_CUDA, comm, a, 20);
    train_losses(DEV_CUDA, comm, b, 20);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(fabs(a[i] - cpu[i]) <= 1e-3 * fabs(cpu[i]), "step %d: gpu loss %.9g, cpu %.9g", i + 1, a[i], cpu[i]);
    ck_assert_msg(memcmp(a, b, sizeof a) == 0, "two GPU runs with the same seed differ (step 20: %.17g vs %.17g)",
                  a[19], b[19]);
    printf("gpu training: step 5 loss %.6f (cpu %.6f), step 20 %.9f twice\n", a[4], cpu[4], a[19]);
    comm_free(comm);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gpu_model");
    TCase *tc = tcase_create("gpu");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gpu_matches_cpu_on_one_batch);
    tcase_add_test(tc, gpu_bf16_matches_cpu_bf16);
    tcase_add_test(tc, gpu_matches_peft_fixture);
    tcase_add_test(tc, gpu_quantized_base_matches_cpu);
    tcase_add_test(tc, gpu_quantized_rosa_session_follows_cpu);
    tcase_add_test(tc, gpu_nf4_session_follows_cpu);
    tcase_add_test(tc, gpu_mamba_matches_cpu);
    tcase_add_test(tc, gpu_training_follows_cpu_and_is_deterministic);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
