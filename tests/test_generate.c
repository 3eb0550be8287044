/* KV-cache inference against the training forward: prefill and decode logits equal llama_forward's at
 * the same positions (LoRA adapters attached and non-zero, dropout configured but off), batched decode
 * equals each row alone, greedy generation equals argmax re-runs, and the sampler's filters and
 * frequencies. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/method.h"
#include "core/models/generate.h"
#include "core/models/llama/generate.h"
#include "core/base/rng.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

static const LlamaConfig cfg = {.hidden = 64, .intermediate = 96, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 97,
                                .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 0, .qkv_bias = 1};
enum { V = 97 };

typedef struct {
    LlamaModel m;
    Arena a;
} Fixture;

/* Random model, LoRA on every linear with B filled at random (PEFT's zero B would make the adapters
 * invisible), q/k/v biases random too. Dropout 0.1 must not act: inference passes training = 0. */
static void open_model(Fixture *f) {
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = (LoraConfig){.r = 4, .alpha = 8, .dropout = 0.1, .targets = LORA_T_ALL};
    ck_assert_int_eq(llama_create(&f->m, backend_cpu(), &cfg, 7, 0.02), PEFTC_OK);
    arena_init(&f->a, backend_cpu());
    ck_assert_int_eq(method_attach(&f->m.base, &f->a, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&f->a), PEFTC_OK);
    ck_assert_int_eq(method_init(&f->m.base, &f->a, &mc, 5), PEFTC_OK);
    int n_b = 0;
    for (int i = 0; i < f->a.n_entries; i++) {
        const ArenaEntry *e = &f->a.entries[i];
        if (!strstr(e->name, "lora_B")) continue;
        tu_fill_uniform(arena_param(&f->a, i), e->numel, 100 + (uint64_t)i, -0.3, 0.3);
        n_b++;
    }
    ck_assert_int_eq(n_b, 7 * cfg.layers);
    for (int l = 0; l < cfg.layers; l++) {
        LlamaLayer *L = &f->m.layers[l];
        tu_fill_uniform(L->q.b, (size_t)L->q.out, 200 + (uint64_t)l, -0.1, 0.1);
        tu_fill_uniform(L->k.b, (size_t)L->k.out, 300 + (uint64_t)l, -0.1, 0.1);
        tu_fill_uniform(L->v.b, (size_t)L->v.out, 400 + (uint64_t)l, -0.1, 0.1);
    }
}

static void close_model(Fixture *f) {
    llama_free(&f->m);
    arena_free(&f->a);
}

static void random_tokens(int32_t *t, int n, uint64_t key) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)(rng_u64(key, (uint64_t)i) % V);
}

/* The training forward's logits (T,V) of one sequence, into a new buffer. */
static real_t *full_logits(LlamaModel *m, const int32_t *tok, int T) {
    ck_assert_int_eq(llama_reserve(m, 1, T), PEFTC_OK);
    ck_assert_int_eq(llama_forward(m, tok, NULL, NULL, NULL, NULL, 0, 1, T, NULL, NULL), PEFTC_OK);
    real_t *out = malloc((size_t)T * V * sizeof *out);
    memcpy(out, m->acts.logits, (size_t)T * V * sizeof *out);
    return out;
}

/* max |a - b| over n entries, relative to max |b|. */
static double rel_diff(const real_t *a, const real_t *b, int n) {
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / fmax(s, 1e-30);
}

static int argmax_of(const real_t *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

START_TEST(prefill_matches_forward) {
    Fixture f;
    open_model(&f);
    enum { N = 11, LONG = 300 }; /* LONG crosses the 256-token prefill chunk */
    int32_t tok[LONG];
    random_tokens(tok, LONG, 1);
    real_t *ref = full_logits(&f.m, tok, N), logits[V], two[V];
    KvCache c;
    ck_assert_int_eq(kv_create(&c, &f.m, 1, LONG), PEFTC_OK);
    ck_assert_int_eq(gen_prefill(&f.m, &c, 0, tok, N, logits), PEFTC_OK);
    ck_assert_int_eq(c.len[0], N);
    double d = rel_diff(logits, ref + (size_t)(N - 1) * V, V);
    ck_assert_msg(d <= 1e-4, "prefill logits differ from the forward's by %g", d);
    /* in two chunks: the first chunk's logits are those of position 3 */
    kv_reset_row(&c, 0);
    ck_assert_int_eq(gen_prefill(&f.m, &c, 0, tok, 4, two), PEFTC_OK);
    ck_assert_msg(rel_diff(two, ref + 3 * V, V) <= 1e-4, "first chunk differs");
    ck_assert_int_eq(gen_prefill(&f.m, &c, 0, tok + 4, N - 4, two), PEFTC_OK);
    ck_assert_int_eq(c.len[0], N);
    d = rel_diff(two, logits, V);
    ck_assert_msg(d <= 1e-5, "prefill in two chunks differs from one by %g", d);
    free(ref);
    /* a prompt longer than one internal chunk */
    ref = full_logits(&f.m, tok, LONG);
    kv_reset_row(&c, 0);
    ck_assert_int_eq(gen_prefill(&f.m, &c, 0, tok, LONG, logits), PEFTC_OK);
    d = rel_diff(logits, ref + (size_t)(LONG - 1) * V, V);
    ck_assert_msg(d <= 1e-4, "long prefill differs by %g", d);
    /* full row: one more token is refused and names the capacity */
    ck_assert_int_eq(gen_prefill(&f.m, &c, 0, tok, 1, logits), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "S=300"));
    free(ref);
    kv_free(&c);
    close_model(&f);
}
END_TEST

START_TEST(decode_matches_forward) {
    Fixture f;
    open_model(&f);
    enum { K = 5, T = 14 };
    int32_t tok[T];
    random_tokens(tok, T, 2);
    real_t *ref = full_logits(&f.m, tok, T), logits[V];
    KvCache c;
    ck_assert_int_eq(kv_create(&c, &f.m, 1, T), PEFTC_OK);
    ck_assert_int_eq(gen_prefill(&f.m, &c, 0, tok, K, logits), PEFTC_OK);
    for (int t = K; t < T; t++) {
        ck_assert_int_eq(gen_decode(&f.m, &c, &tok[t], NULL, logits), PEFTC_OK);
        double d = rel_diff(logits, ref + (size_t)t * V, V);
        ck_assert_msg(d <= 1e-4, "decode at position %d differs from the forward by %g", t, d);
    }
    ck_assert_int_eq(c.len[0], T);
    ck_assert_int_eq(gen_decode(&f.m, &c, &tok[0], NULL, logits), PEFTC_EINVAL); /* cache full */
    int32_t bad = V;
    kv_reset_row(&c, 0);
    ck_assert_int_eq(gen_prefill(&f.m, &c, 0, &bad, 1, logits), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "vocabulary"));
    free(ref);
    kv_free(&c);
    close_model(&f);
}
END_TEST

/* Three rows at different positions decoded together, row 1 sitting out one step, against each row's
 * sequence run alone in its own cache. */
START_TEST(batched_decode_equals_alone) {
    Fixture f;
    open_model(&f);
    enum { R = 3, STEPS = 6, SKIP_ROW = 1, SKIP_STEP = 2, S = 24 };
    const int plen[R] = {3, 7, 5};
    int32_t prompt[R][8], steps[STEPS][R];
    for (int b = 0; b < R; b++) random_tokens(prompt[b], plen[b], 10 + (uint64_t)b);
    random_tokens(&steps[0][0], STEPS * R, 20);
    KvCache c;
    ck_assert_int_eq(kv_create(&c, &f.m, R, S), PEFTC_OK);
    real_t batched[STEPS][R][V], pre[V];
    for (int b = 0; b < R; b++) ck_assert_int_eq(gen_prefill(&f.m, &c, b, prompt[b], plen[b], pre), PEFTC_OK);
    for (int s = 0; s < STEPS; s++) {
        uint8_t active[R] = {1, 1, 1};
        if (s == SKIP_STEP) active[SKIP_ROW] = 0;
        for (int i = 0; i < R * V; i++) (&batched[s][0][0])[i] = -12345;
        ck_assert_int_eq(gen_decode(&f.m, &c, steps[s], active, &batched[s][0][0]), PEFTC_OK);
    }
    for (int i = 0; i < V; i++) ck_assert(batched[SKIP_STEP][SKIP_ROW][i] == -12345); /* untouched */
    ck_assert_int_eq(c.len[SKIP_ROW], plen[SKIP_ROW] + STEPS - 1);
    double worst = 0;
    for (int b = 0; b < R; b++) {
        KvCache one;
        ck_assert_int_eq(kv_create(&one, &f.m, 1, S), PEFTC_OK);
        ck_assert_int_eq(gen_prefill(&f.m, &one, 0, prompt[b], plen[b], pre), PEFTC_OK);
        for (int s = 0; s < STEPS; s++) {
            if (b == SKIP_ROW && s == SKIP_STEP) continue;
            real_t alone[V];
            ck_assert_int_eq(gen_decode(&f.m, &one, &steps[s][b], NULL, alone), PEFTC_OK);
            worst = fmax(worst, rel_diff(batched[s][b], alone, V));
        }
        kv_free(&one);
    }
    ck_assert_msg(worst <= 1e-6, "batched decode differs from rows alone by %g", worst);
    kv_free(&c);
    close_model(&f);
}
END_TEST

typedef struct {
    int n;
    int32_t ids[16];
} Stream;

static void on_token(void *user, int32_t id) {
    Stream *s = user;
    if (s->n < 16) s->ids[s->n] = id;
    s->n++;
}

START_TEST(greedy_generation_matches_argmax) {
    Fixture f;
    open_model(&f);
    enum { P = 4, NEW = 8 };
    int32_t p0[P], p1[P + 2], o0[2][NEW], o1[2][NEW];
    random_tokens(p0, P, 30);
    random_tokens(p1, P + 2, 31);
    const int32_t *ids[2] = {p0, p1};
    int n[2] = {P, P + 2}, out_n[2], out_n2[2];
    SamplerConfig sc = {.temperature = 0, .top_p = 1, .top_k = 0, .seed = 1};
    Stream st = {0};
    int32_t *out[2] = {o0[0], o1[0]}, *out2[2] = {o0[1], o1[1]};
    ck_assert_int_eq(gen_generate(&f.m.base, &sc, 2, ids, n, NEW, NULL, 0, out, out_n, on_token, &st), PEFTC_OK);
    ck_assert_int_eq(out_n[0], NEW);
    ck_assert_int_eq(out_n[1], NEW);
    ck_assert_int_eq(st.n, NEW);
    ck_assert_mem_eq(st.ids, o0[0], NEW * sizeof(int32_t));
    ck_assert_int_eq(gen_generate(&f.m.base, &sc, 2, ids, n, NEW, NULL, 0, out2, out_n2, NULL, NULL), PEFTC_OK);
    ck_assert_mem_eq(o0[0], o0[1], NEW * sizeof(int32_t));
    ck_assert_mem_eq(o1[0], o1[1], NEW * sizeof(int32_t));
    /* each token is the argmax of the full forward over prompt + what came before it (up to a rounding
     * tie: a different argmax must then be within 1e-5 of the chosen one) */
    for (int b = 0; b < 2; b++) {
        int32_t seq[P + 2 + NEW];
        memcpy(seq, ids[b], (size_t)n[b] * sizeof(int32_t));
        memcpy(seq + n[b], b ? o1[0] : o0[0], NEW * sizeof(int32_t));
        real_t *ref = full_logits(&f.m, seq, n[b] + NEW - 1);
        for (int i = 0; i < NEW; i++) {
            const real_t *row = ref + (size_t)(n[b] - 1 + i) * V;
            int want = argmax_of(row, V), got = seq[n[b] + i];
            ck_assert_msg(got == want || row[want] - row[got] < 1e-5, "row %d token %d: %d, argmax %d", b, i, got, want);
        }
        free(ref);
    }
    /* a stop id ends the row before it and is not included */
    int32_t stop = o0[0][3];
    int first = 0;
    while (o0[0][first] != stop) first++;
    ck_assert_int_eq(gen_generate(&f.m.base, &sc, 2, ids, n, NEW, &stop, 1, out2, out_n2, NULL, NULL), PEFTC_OK);
    ck_assert_int_eq(out_n2[0], first);
    ck_assert_mem_eq(o0[1], o0[0], (size_t)first * sizeof(int32_t));
    close_model(&f);
}
END_TEST

/* A model whose vocabulary is padded past its tokenizer's: ids from vocab_limit up are never
 * generated, greedy or sampled, and greedy picks the best id below the limit. */
START_TEST(generation_stays_inside_the_tokenizer) {
    Fixture f;
    open_model(&f);
    enum { P = 4, NEW = 12, LIMIT = 5 };
    int32_t p0[P], o[NEW];
    random_tokens(p0, P, 30);
    const int32_t *ids[1] = {p0};
    int n[1] = {P}, out_n[1];
    int32_t *out[1] = {o};
    SamplerConfig greedy = {.temperature = 0, .top_p = 1, .seed = 1, .vocab_limit = LIMIT};
    ck_assert_int_eq(gen_generate(&f.m.base, &greedy, 1, ids, n, NEW, NULL, 0, out, out_n, NULL, NULL), PEFTC_OK);
    int32_t seq[P + NEW];
    memcpy(seq, p0, sizeof p0);
    memcpy(seq + P, o, sizeof o);
    real_t *ref = full_logits(&f.m, seq, P + NEW - 1);
    int above = 0; /* steps whose unrestricted argmax lies past the limit: the case under test */
    for (int i = 0; i < NEW; i++) {
        const real_t *row = ref + (size_t)(P - 1 + i) * V;
        int want = argmax_of(row, LIMIT);
        above += argmax_of(row, V) >= LIMIT;
        ck_assert_msg(o[i] < LIMIT, "token %d is %d, past the tokenizer's %d ids", i, o[i], LIMIT);
        ck_assert_msg(o[i] == want || row[want] - row[o[i]] < 1e-5, "token %d: %d, best below the limit %d", i, o[i],
                      want);
    }
    ck_assert_int_gt(above, 0);
    free(ref);
    SamplerConfig hot = {.temperature = 5, .top_p = 1, .seed = 9, .vocab_limit = LIMIT};
    ck_assert_int_eq(gen_generate(&f.m.base, &hot, 1, ids, n, NEW, NULL, 0, out, out_n, NULL, NULL), PEFTC_OK);
    for (int i = 0; i < out_n[0]; i++) ck_assert_int_lt(o[i], LIMIT);
    close_model(&f);
}
END_TEST

START_TEST(sampler_filters_and_frequencies) {
    enum { N = 20000 };
    real_t big[V];
    tu_fill_uniform(big, V, 40, -3, 3);
    int top = argmax_of(big, V);
    SamplerConfig greedy = {.temperature = 0, .top_p = 1, .seed = 3};
    SamplerConfig nucleus = {.temperature = 1, .top_p = 1e-9, .seed = 3};
    SamplerConfig k1 = {.temperature = 1, .top_p = 1, .top_k = 1, .seed = 3};
    for (uint64_t s = 0; s < 50; s++) {
        ck_assert_int_eq(gen_sample(&greedy, big, V, 0, s), top);
        ck_assert_int_eq(gen_sample(&nucleus, big, V, 1, s), top);
        ck_assert_int_eq(gen_sample(&k1, big, V, 2, s), top);
    }
    real_t tie[4] = {0.5f, 2, -1, 2};
    ck_assert_int_eq(gen_sample(&greedy, tie, 4, 0, 0), 1); /* lowest id on ties */
    ck_assert_int_eq(gen_sample(&k1, tie, 4, 0, 0), 1);

    /* empirical frequencies of a 4-token distribution: plain, temperature 0.5, top-k 2, top-p 0.7 */
    const real_t lg[4] = {1.0f, 0.5f, -0.3f, 2.0f};
    double p[4], z = 0, p2[4], z2 = 0;
    for (int i = 0; i < 4; i++) z += p[i] = exp(lg[i]), z2 += p2[i] = exp(lg[i] / 0.5);
    for (int i = 0; i < 4; i++) p[i] /= z, p2[i] /= z2;
    /* top-2 is {3, 0}; sorted probabilities .591, .218, ... reach 0.7 after the same two */
    double pk[4] = {p[0] / (p[0] + p[3]), 0, 0, p[3] / (p[0] + p[3])};
    const struct { SamplerConfig sc; const double *want; } cases[] = {
        {{.temperature = 1, .top_p = 1, .seed = 9}, p},
        {{.temperature = 0.5, .top_p = 1, .seed = 9}, p2},
        {{.temperature = 1, .top_p = 1, .top_k = 2, .seed = 9}, pk},
        {{.temperature = 1, .top_p = 0.7, .seed = 9}, pk},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int count[4] = {0};
        for (int s = 0; s < N; s++) {
            int id = gen_sample(&cases[c].sc, lg, 4, 5, (uint64_t)s);
            ck_assert(id >= 0 && id < 4);
            count[id]++;
        }
        for (int i = 0; i < 4; i++)
            ck_assert_msg(fabs((double)count[i] / N - cases[c].want[i]) < 0.015, "case %zu token %d: %g vs %g", c, i,
                          (double)count[i] / N, cases[c].want[i]);
    }

    /* same seed, same draws; another seed or row, other draws */
    SamplerConfig t1 = {.temperature = 1, .top_p = 0.95, .top_k = 50, .seed = 11}, t2 = t1;
    t2.seed = 12;
    int same = 1, diff_seed = 0, diff_row = 0;
    for (uint64_t s = 0; s < 100; s++) {
        int a = gen_sample(&t1, big, V, 0, s);
        same &= a == gen_sample(&t1, big, V, 0, s);
        diff_seed |= a != gen_sample(&t2, big, V, 0, s);
        diff_row |= a != gen_sample(&t1, big, V, 1, s);
    }
    ck_assert(same && diff_seed && diff_row);
}
END_TEST

/* Flat and near-flat distributions: ties keep ids in order, and a top-k reaching past the tokens near
 * the maximum still keeps exactly k. */
START_TEST(sampler_flat_distributions) {
    enum { W = 1000 };
    real_t *flat = calloc(W, sizeof *flat);
    SamplerConfig sc = {.temperature = 1, .top_p = 0.9, .seed = 2};
    int hi = 0;
    for (uint64_t s = 0; s < 2000; s++) {
        int id = gen_sample(&sc, flat, W, 0, s);
        ck_assert_int_lt(id, 900); /* the nucleus of equal weights is the first 900 ids */
        hi = id > hi ? id : hi;
    }
    ck_assert_int_gt(hi, 850);
    /* one dominant token and a tail far below it: top-k 40 keeps the dominant one and ids 1..39 */
    for (int i = 1; i < W; i++) flat[i] = -15;
    sc = (SamplerConfig){.temperature = 1, .top_p = 1, .top_k = 40, .seed = 2};
    for (uint64_t s = 0; s < 200; s++) ck_assert_int_eq(gen_sample(&sc, flat, W, 0, s), 0);
    sc.temperature = 1e4; /* flattened: the tail is drawn, but only its first 39 ids */
    int tail = 0;
    for (uint64_t s = 0; s < 2000; s++) {
        int id = gen_sample(&sc, flat, W, 0, s);
        ck_assert_int_lt(id, 40);
        tail += id > 0;
    }
    ck_assert_int_gt(tail, 1500);
    free(flat);
}
END_TEST

/* A device error during prefill or decode (ops return nothing; the backend records it) must come back
 * from generation, not a row of tokens sampled from garbage. */
static PeftcStatus failing_status(const Backend *be) {
    (void)be;
    return PEFTC_ERR(PEFTC_EIO, "device lost");
}

START_TEST(backend_failure_is_returned) {
    Backend failing = *backend_cpu();
    failing.status = failing_status;
    LlamaModel m;
    ck_assert_int_eq(llama_create(&m, &failing, &cfg, 7, 0.02), PEFTC_OK);
    const int32_t prompt[3] = {1, 2, 3};
    const int32_t *ids[1] = {prompt};
    int n = 3, out_n;
    int32_t got[4], *out[1] = {got};
    SamplerConfig sc = {.temperature = 0, .top_p = 1};
    ck_assert_int_eq(gen_generate(&m.base, &sc, 1, ids, &n, 4, NULL, 0, out, &out_n, NULL, NULL), PEFTC_EIO);
    ck_assert_str_eq(peftc_err_msg(), "device lost");
    llama_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("generate");
    TCase *tc = tcase_create("generate");
    tcase_add_test(tc, prefill_matches_forward);
    tcase_add_test(tc, decode_matches_forward);
    tcase_add_test(tc, batched_decode_equals_alone);
    tcase_add_test(tc, greedy_generation_matches_argmax);
    tcase_add_test(tc, generation_stays_inside_the_tokenizer);
    tcase_add_test(tc, sampler_filters_and_frequencies);
    tcase_add_test(tc, sampler_flat_distributions);
    tcase_add_test(tc, backend_failure_is_returned);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
