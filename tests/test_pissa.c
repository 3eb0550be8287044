/* PiSSA against HF PEFT (tests/fixtures/hf_tiny_pissa.*, written by gen_pissa.py on hf_tiny_llama):
 * the exact init's A, B and residual W up to the SVD's signs, the unchanged model at init, the
 * randomized init's guarantees, and the export PEFT converts a trained PiSSA adapter into (a rank-2r
 * LoRA that gives PEFT's logits on the original base). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/formats/peft_io.h"
#include "core/formats/safetensors.h"
#include "core/models/llama/model_formats.h"
#include "tests/fixture.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

#define BASE PEFTC_FIXTURE_DIR "/hf_tiny_llama"
#define TOL 1e-5

typedef struct {
    LlamaModel m;
    Arena a;
    MethodConfig mc;
} Run;

/* hf_tiny_llama with `method` (r 4, alpha 8, every target, no dropout) attached and initialised. */
static void open_run(Run *r, const char *method, int niter) {
    ck_assert_msg(llama_load(&r->m, backend_cpu(), BASE, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    r->mc = tu_method(method);
    *tu_lora(&r->mc) = (LoraConfig){.r = 4, .alpha = 8, .dropout = 0, .targets = LORA_T_ALL};
    if (niter) {
        char kv[32];
        snprintf(kv, sizeof kv, "%d", niter);
        tu_set_key(&r->mc, "pissa.niter", kv);
    }
    arena_init(&r->a, backend_cpu());
    ck_assert_msg(method_attach(&r->m.base, &r->a, &r->mc) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(arena_finalize(&r->a), PEFTC_OK);
    ck_assert_msg(method_init(&r->m.base, &r->a, &r->mc, 11) == PEFTC_OK, "%s", peftc_err_msg());
}

static void close_run(Run *r) {
    method_detach(&r->m.base, &r->mc);
    arena_free(&r->a);
    llama_free(&r->m);
}

static real_t *entry(const Run *r, const char *module, const char *which) {
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", module, which);
    int h = arena_find(&r->a, name);
    ck_assert_msg(h >= 0, "no arena entry %s", name);
    return arena_param(&r->a, h);
}

static const double *fx_module(const Fixture *fx, const char *what, const char *module, Shape s) {
    char name[200];
    snprintf(name, sizeof name, "%s.%s", what, module);
    return fixture_tensor(fx, name, s);
}

/* max |x - y| over n values with y read as a row (stride 1) or column (stride k) and scaled by sign. */
static double max_diff(const real_t *x, size_t xs, const double *y, size_t ys, int n, double sign) {
    double worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)x[i * xs] - sign * y[i * ys]));
    return worst;
}

/* Sign of the singular pair c: row c of A (r,in) against the reference's. */
static double pair_sign(const real_t *A, const double *ref, int c, int in) {
    double dot = 0;
    for (int j = 0; j < in; j++) dot += A[c * in + j] * ref[c * in + j];
    return dot < 0 ? -1 : 1;
}

/* max over the r pairs of |A - sign ref_A| and |B - sign ref_B|, signs taken per pair from A. */
static double factor_diff(const real_t *A, const real_t *B, const double *rA, const double *rB, int r, int in,
                          int out) {
    double worst = 0;
    for (int c = 0; c < r; c++) {
        double sign = pair_sign(A, rA, c, in);
        worst = fmax(worst, max_diff(A + c * in, 1, rA + c * in, 1, in, sign));
        worst = fmax(worst, max_diff(B + c, (size_t)r, rB + c, (size_t)r, out, sign));
    }
    return worst;
}

/* A and B against the float64 SVD with PEFT's split (ref64), and against PEFT's own float32 factors no
 * further than those are from ref64 (PEFT's float32 SVD is off by about eps |W| / gap, 1e-5 here);
 * the residual W - s B A against the float64 one. */
START_TEST(exact_init_matches_peft_up_to_signs) {
    Fixture fx = fixture_load("hf_tiny_pissa");
    Run r, orig;
    open_run(&r, "pissa", 0);
    ck_assert_int_eq(llama_load(&orig.m, backend_cpu(), BASE, NULL), PEFTC_OK);
    double worst_ref = 0, worst_peft = 0, peft_own = 0, worst_w = 0;
    for (int i = 0; i < r.m.base.n_linears; i++) {
        const Linear *l = r.m.base.linears[i], *o = orig.m.base.linears[i];
        int in = l->in, out = l->out, k = 4;
        const real_t *A = entry(&r, l->name, "lora_A"), *B = entry(&r, l->name, "lora_B");
        const double *rA = fx_module(&fx, "ref64.lora_A", l->name, shape2(k, in));
        const double *rB = fx_module(&fx, "ref64.lora_B", l->name, shape2(out, k));
        const double *pA = fx_module(&fx, "pissa.lora_A", l->name, shape2(k, in));
        const double *pB = fx_module(&fx, "pissa.lora_B", l->name, shape2(out, k));
        worst_ref = fmax(worst_ref, factor_diff(A, B, rA, rB, k, in, out));
        double theirs = factor_diff(A, B, pA, pB, k, in, out), own = 0;
        for (int j = 0; j < k * in; j++) own = fmax(own, fabs(pA[j] - rA[j]));
        for (int j = 0; j < out * k; j++) own = fmax(own, fabs(pB[j] - rB[j]));
        ck_assert_msg(theirs <= own + 2e-6, "%s: %.3g from PEFT's factors, which are %.3g from the float64 SVD",
                      l->name, theirs, own);
        worst_peft = fmax(worst_peft, theirs);
        peft_own = fmax(peft_own, own);
        for (int p = 0; p < out; p++)
            for (int j = 0; j < in; j++) {
                double d = 0;
                for (int c = 0; c < k; c++) d += rB[p * k + c] * rA[c * in + j];
                worst_w = fmax(worst_w, fabs(l->W[p * in + j] - (o->W[p * in + j] - 2.0 * d)));
            }
    }
    printf("pissa init: A, B max |diff| %.2e from the float64 SVD, %.2e from PEFT's (PEFT's own: %.2e); residual "
           "W %.2e\n", worst_ref, worst_peft, peft_own, worst_w);
    ck_assert_msg(worst_ref < 2e-6, "A or B differ from the float64 SVD's by %.3g", worst_ref);
    ck_assert_msg(worst_w < 2e-6, "the residual base differs from the float64 one by %.3g", worst_w);
    llama_free(&orig.m);
    close_run(&r);
    fixture_free(&fx);
}
END_TEST

/* Logits (B,T,V) of m on the fixture's tokens. */
static const real_t *logits_of(LlamaModel *m, const Fixture *fx, int B, int T) {
    int32_t tok[256];
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx->meta, "tokens"), tok, B * T);
    ck_assert_int_eq(llama_reserve(m, B, T), PEFTC_OK);
    ck_assert_int_eq(llama_forward(m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    return m->acts.logits;
}

START_TEST(init_leaves_the_model_unchanged) {
    Fixture fx = fixture_load("hf_tiny_pissa");
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T");
    Run r;
    open_run(&r, "pissa", 0);
    const real_t *got = logits_of(&r.m, &fx, B, T);
    double e = fixture_rel_err(got, fixture_tensor(&fx, "logits.base", (Shape){3, {B, T, 128}}), (size_t)B * T * 128);
    printf("pissa at init vs the base model: logits rel err %.2e\n", e);
    ck_assert_msg(e < 1e-5, "PiSSA's init changed the logits by %.3g relative", e);
    close_run(&r);
    fixture_free(&fx);
}
END_TEST

/* The randomized SVD cannot match torch's draw; what it guarantees: W = W_res + s B A, a residual no
 * smaller than the optimum and close to it, and singular value estimates that are lower bounds. */
START_TEST(randomized_init_keeps_its_guarantees) {
    Fixture fx = fixture_load("hf_tiny_pissa");
    Run r, orig;
    open_run(&r, "pissa", 4);
    ck_assert_int_eq(llama_load(&orig.m, backend_cpu(), BASE, NULL), PEFTC_OK);
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(fx.meta, "modules");
    for (int i = 0; i < r.m.base.n_linears; i++) {
        const Linear *l = r.m.base.linears[i], *o = orig.m.base.linears[i];
        int in = l->in, out = l->out, k = 4;
        const real_t *A = entry(&r, l->name, "lora_A"), *B = entry(&r, l->name, "lora_B");
        double worst = 0, fro = 0;
        for (int p = 0; p < out; p++)
            for (int j = 0; j < in; j++) {
                double d = 0;
                for (int c = 0; c < k; c++) d += B[p * k + c] * A[c * in + j];
                worst = fmax(worst, fabs(o->W[p * in + j] - (l->W[p * in + j] + 2.0 * d)));
                fro += (double)l->W[p * in + j] * l->W[p * in + j];
            }
        ck_assert_msg(worst < TOL, "%s: W_res + s B A differs from W by %.3g", l->name, worst);
        double best = fixture_num(cJSON_GetObjectItemCaseSensitive(mods, l->name), "residual_fro_optimal");
        ck_assert_msg(sqrt(fro) >= best * (1 - 1e-5) && sqrt(fro) <= best * 1.05,
                      "%s: residual %.6g against the optimum %.6g", l->name, sqrt(fro), best);
        /* Rayleigh-Ritz: the c-th estimated singular value s |A_c|^2 never exceeds the true c-th one. */
        const double *sv = fx_module(&fx, "sv", l->name, shape1(in < out ? in : out));
        for (int c = 0; c < k; c++) {
            double est = 0;
            for (int j = 0; j < in; j++) est += 2.0 * A[c * in + j] * A[c * in + j];
            ck_assert_msg(est <= sv[c] * (1 + 1e-5), "%s: estimate %.6g above singular value %d (%.6g)", l->name,
                          est, c, sv[c]);
        }
    }
    llama_free(&orig.m);
    close_run(&r);
    fixture_free(&fx);
}
END_TEST

/* max |s' B' A' - s (B_tr A_tr - B64 A64)| over layer `module`: the exported rank-2r pair (file f,
 * scale 2) against the exact delta the conversion stands for (trained factors, float64 init). */
static double export_delta_err(const StFile *f, const Fixture *fx, const char *module, int in, int out) {
    char name[200];
    real_t *A2 = malloc(sizeof *A2 * 8 * in), *B2 = malloc(sizeof *B2 * out * 8);
    snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", module);
    Shape sa = shape2(8, in), sb = shape2(out, 8);
    ck_assert_int_eq(st_read_real(f, st_find(f, name), &sa, A2), PEFTC_OK);
    snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", module);
    ck_assert_int_eq(st_read_real(f, st_find(f, name), &sb, B2), PEFTC_OK);
    const double *tA = fx_module(fx, "trained.lora_A", module, shape2(4, in));
    const double *tB = fx_module(fx, "trained.lora_B", module, shape2(out, 4));
    const double *rA = fx_module(fx, "ref64.lora_A", module, shape2(4, in));
    const double *rB = fx_module(fx, "ref64.lora_B", module, shape2(out, 4));
    double worst = 0;
    for (int p = 0; p < out; p++)
        for (int j = 0; j < in; j++) {
            double got = 0, want = 0;
            for (int c = 0; c < 8; c++) got += (double)B2[p * 8 + c] * A2[c * in + j];
            for (int c = 0; c < 4; c++) want += tB[p * 4 + c] * tA[c * in + j] - rB[p * 4 + c] * rA[c * in + j];
            worst = fmax(worst, fabs(2.0 * (got - want)));
        }
    free(A2);
    free(B2);
    return worst;
}

/* Trains nothing but puts PEFT's "trained" factors in the arena and exports. The rank-2r delta must be
 * the exact one; loaded as a plain LoRA on the ORIGINAL base it must give PEFT's logits for PEFT's own
 * conversion, up to the float32 error of PEFT's SVD (about 1e-5 of the delta here). */
START_TEST(export_is_peft_conversion_on_the_original_base) {
    Fixture fx = fixture_load("hf_tiny_pissa");
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T");
    Run r;
    open_run(&r, "pissa", 0);
    for (int i = 0; i < r.m.base.n_linears; i++) {
        const Linear *l = r.m.base.linears[i];
        real_t *A = entry(&r, l->name, "lora_A"), *Bm = entry(&r, l->name, "lora_B");
        const double *tA = fx_module(&fx, "trained.lora_A", l->name, shape2(4, l->in));
        const double *tB = fx_module(&fx, "trained.lora_B", l->name, shape2(l->out, 4));
        for (int j = 0; j < 4 * l->in; j++) A[j] = (real_t)tA[j];
        for (int j = 0; j < 4 * l->out; j++) Bm[j] = (real_t)tB[j];
    }
    char dir[] = "/tmp/peftc_pissa_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_msg(r.mc.desc->export(&r.mc, &r.m.base, dir, "hf_tiny_llama") == PEFTC_OK, "%s", peftc_err_msg());
    char file[128];
    snprintf(file, sizeof file, "%s/adapter_model.safetensors", dir);
    StFile f;
    ck_assert_int_eq(st_open(&f, file), PEFTC_OK);
    double worst = 0;
    for (int i = 0; i < r.m.base.n_linears; i++)
        worst = fmax(worst, export_delta_err(&f, &fx, r.m.base.linears[i]->name, r.m.base.linears[i]->in,
                                             r.m.base.linears[i]->out));
    st_close(&f);
    printf("pissa export: rank-8 delta max |diff| %.2e from the exact conversion\n", worst);
    ck_assert_msg(worst < 2e-6, "the exported delta differs from the exact conversion by %.3g", worst);
    close_run(&r);

    LoraConfig lc;
    ck_assert_int_eq(peft_read_config(dir, &lc), PEFTC_OK);
    ck_assert_int_eq(lc.r, 8);
    ck_assert(lc.alpha == 16);
    Run plain;
    ck_assert_int_eq(llama_load(&plain.m, backend_cpu(), BASE, NULL), PEFTC_OK);
    plain.mc = tu_method("lora");
    snprintf(lora_settings(&plain.mc.settings)->init_from, sizeof lora_settings(&plain.mc.settings)->init_from, "%s",
             dir);
    tu_lora(&plain.mc)->dropout = 0;
    arena_init(&plain.a, backend_cpu());
    ck_assert_msg(method_attach(&plain.m.base, &plain.a, &plain.mc) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(arena_finalize(&plain.a), PEFTC_OK);
    ck_assert_msg(method_init(&plain.m.base, &plain.a, &plain.mc, 1) == PEFTC_OK, "%s", peftc_err_msg());
    const real_t *got = logits_of(&plain.m, &fx, B, T);
    double e = fixture_rel_err(got, fixture_tensor(&fx, "logits.converted", (Shape){3, {B, T, 128}}),
                               (size_t)B * T * 128);
    printf("pissa export as LoRA on the original base vs PEFT's conversion: logits rel err %.2e\n", e);
    ck_assert_msg(e < 1e-4, "the exported adapter's logits differ from PEFT's by %.3g relative", e);
    close_run(&plain);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    fixture_free(&fx);
}
END_TEST

START_TEST(quantized_base_is_refused) {
    MethodConfig mc = tu_method("pissa");
    MethodEnv env = {.out_dir = "/tmp", .train_steps = 10, .on_cpu = 1, .quantized_base = 1};
    ck_assert_int_eq(method_finish(mc.desc, &mc.settings, &env), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "model.quantized=false"));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("pissa");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, exact_init_matches_peft_up_to_signs);
    tcase_add_test(tc, init_leaves_the_model_unchanged);
    tcase_add_test(tc, randomized_init_keeps_its_guarantees);
    tcase_add_test(tc, export_is_peft_conversion_on_the_original_base);
    tcase_add_test(tc, quantized_base_is_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
