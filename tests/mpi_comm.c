/* comm.h under mpiexec with 1, 2 and 3 ranks (or alone, as a singleton).
 *
 * Check runs without fork, so a failed assertion leaves its test on that rank only. Every test
 * therefore makes all its collective calls first and asserts afterwards; otherwise one rank would
 * skip a collective the others are waiting in. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/base/clock.h"
#include "core/base/real.h"
#include "core/base/status.h"

static Comm *g_world;

/* Rank-dependent data whose sum, mean and max are exact in float: the 2r-(size-1) terms cancel in
 * the sum, so the mean is an integer too. */
static double val_mean(int r, int size, size_t i) { return (double)((int)(i % 13) * size + 2 * r - (size - 1)); }
static double val_max(int r, size_t i) { return (double)(r * (int)(i % 5)) - 3.0; }

START_TEST(allreduce_real_ops) {
    enum { N = 1000 };
    int r = comm_rank(g_world), size = comm_size(g_world);
    static real_t sum[N], mean[N], mx[N];
    for (size_t i = 0; i < N; i++) sum[i] = mean[i] = (real_t)val_mean(r, size, i), mx[i] = (real_t)val_max(r, i);
    PeftcStatus s1 = comm_allreduce(g_world, sum, N, COMM_SUM);
    PeftcStatus s2 = comm_allreduce(g_world, mean, N, COMM_MEAN);
    PeftcStatus s3 = comm_allreduce(g_world, mx, N, COMM_MAX);
    ck_assert_msg(s1 == PEFTC_OK && s2 == PEFTC_OK && s3 == PEFTC_OK, "%s", peftc_err_msg());
    int bad = 0;
    for (size_t i = 0; i < N; i++) {
        bad += sum[i] != (real_t)((int)(i % 13) * size * size);
        bad += mean[i] != (real_t)((int)(i % 13) * size);
        bad += mx[i] != (real_t)val_max(size - 1, i);
    }
    ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(allreduce_f64_ops) {
    enum { N = 777 };
    int r = comm_rank(g_world), size = comm_size(g_world);
    static double sum[N], mean[N], mx[N];
    for (size_t i = 0; i < N; i++) {
        sum[i] = 0.25 * (double)(r + 1) * (double)i; /* sum = 0.25 * i * size(size+1)/2 */
        mean[i] = val_mean(r, size, i);
        mx[i] = -val_max(size - 1 - r, i); /* max at rank size-1 */
    }
    PeftcStatus s1 = comm_allreduce_f64(g_world, sum, N, COMM_SUM);
    PeftcStatus s2 = comm_allreduce_f64(g_world, mean, N, COMM_MEAN);
    PeftcStatus s3 = comm_allreduce_f64(g_world, mx, N, COMM_MAX);
    ck_assert_msg(s1 == PEFTC_OK && s2 == PEFTC_OK && s3 == PEFTC_OK, "%s", peftc_err_msg());
    int bad = 0;
    for (size_t i = 0; i < N; i++) {
        bad += sum[i] != 0.25 * (double)i * (double)(size * (size + 1) / 2);
        bad += mean[i] != (double)((int)(i % 13) * size);
        bad += mx[i] != -val_max(0, i);
    }
    ck_assert_int_eq(bad, 0);
}
END_TEST

/* 3M values (12 MB in float): many transport segments, and several chunks when built with a small
 * PEFTC_COMM_CHUNK_BYTES. Also checks the byte counter: real_t traffic counts, f64 does not. */
START_TEST(allreduce_large_and_bytes) {
    const size_t n = 3u << 20;
    int r = comm_rank(g_world), size = comm_size(g_world);
    real_t *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++) x[i] = (real_t)((int)(i % 1000) + r);
    uint64_t before = comm_bytes_reduced(g_world);
    PeftcStatus st = comm_allreduce(g_world, x, n, COMM_SUM);
    uint64_t mid = comm_bytes_reduced(g_world);
    double d[4] = {1, 2, 3, 4};
    PeftcStatus st2 = comm_allreduce_f64(g_world, d, 4, COMM_SUM);
    uint64_t after = comm_bytes_reduced(g_world);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += x[i] != (real_t)((int)(i % 1000) * size + size * (size - 1) / 2);
    free(x);
    ck_assert_msg(st == PEFTC_OK && st2 == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_uint_eq(bad, 0);
    ck_assert_uint_eq(mid - before, n * sizeof(real_t));
    ck_assert_uint_eq(after, mid);
}
END_TEST

START_TEST(bcast_bytes) {
    enum { N = (1 << 20) + 3 };
    int r = comm_rank(g_world), size = comm_size(g_world);
    unsigned char *buf = malloc(N);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < N; i++) buf[i] = (unsigned char)(r == size - 1 ? i * 7 + 1 : 0);
    PeftcStatus st = comm_bcast(g_world, buf, N, size - 1);
    char word[16];
    snprintf(word, sizeof word, "%s", r == 0 ? "from-rank-0" : "garbage");
    PeftcStatus st2 = comm_bcast(g_world, word, sizeof word, 0);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) bad += buf[i] != (unsigned char)(i * 7 + 1);
    free(buf);
    ck_assert_msg(st == PEFTC_OK && st2 == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_uint_eq(bad, 0);
    ck_assert_str_eq(word, "from-rank-0");
    /* Argument errors are local and make no MPI call. */
    ck_assert_int_eq(comm_bcast(g_world, word, sizeof word, size), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "root"));
    ck_assert_int_eq(comm_allreduce(g_world, (real_t *)word, 1, (CommOp)7), PEFTC_EINVAL);
}
END_TEST

/* The barrier holds everyone until the last rank (which sleeps first) arrives. */
START_TEST(barrier_waits) {
    int r = comm_rank(g_world), size = comm_size(g_world);
    PeftcStatus st = comm_barrier(g_world);
    double t0 = clock_seconds();
    if (r == size - 1) nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    PeftcStatus st2 = comm_barrier(g_world);
    double waited = clock_seconds() - t0;
    ck_assert_msg(st == PEFTC_OK && st2 == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_msg(waited > 0.15, "rank %d left the barrier after %.3f s", r, waited);
}
END_TEST

START_TEST(agree_all_ok) { ck_assert_int_eq(comm_agree(g_world, PEFTC_OK), PEFTC_OK); }
END_TEST

START_TEST(agree_last_rank_fails) {
    int r = comm_rank(g_world), size = comm_size(g_world);
    PeftcStatus local = PEFTC_OK;
    if (r == size - 1) local = PEFTC_ERR(PEFTC_EIO, "disk full on the last rank");
    PeftcStatus got = comm_agree(g_world, local);
    if (r == size - 1) {
        ck_assert_int_eq(got, PEFTC_EIO);
        ck_assert_str_eq(peftc_err_msg(), "disk full on the last rank"); /* own message kept */
    } else {
        char want[32];
        snprintf(want, sizeof want, "rank %d ", size - 1);
        ck_assert_int_eq(got, PEFTC_ECOMM);
        ck_assert_msg(strstr(peftc_err_msg(), want), "message lacks '%s': %s", want, peftc_err_msg());
    }
}
END_TEST

/* With several failing ranks the OK ones name the lowest and report the worst code. */
START_TEST(agree_names_lowest_failing_rank) {
    int r = comm_rank(g_world), size = comm_size(g_world);
    PeftcStatus local = PEFTC_OK;
    if (size > 1 && r >= 1) local = PEFTC_ERR(r == 1 ? PEFTC_EINVAL : PEFTC_ESTATE, "rank %d broke", r);
    PeftcStatus got = comm_agree(g_world, local);
    if (size == 1) {
        ck_assert_int_eq(got, PEFTC_OK);
    } else if (r == 0) {
        ck_assert_int_eq(got, PEFTC_ECOMM);
        ck_assert_msg(strstr(peftc_err_msg(), "rank 1 "), "%s", peftc_err_msg());
        const char *worst = peftc_status_name(size > 2 ? PEFTC_ESTATE : PEFTC_EINVAL);
        ck_assert_msg(strstr(peftc_err_msg(), worst), "lacks '%s': %s", worst, peftc_err_msg());
    } else {
        ck_assert_int_eq(got, local);
    }
}
END_TEST

START_TEST(layout_and_self) {
    int r = comm_rank(g_world), size = comm_size(g_world);
    ck_assert_int_eq(comm_barrier(g_world), PEFTC_OK); /* the only collective here, so first */
    ck_assert(size >= 1 && r >= 0 && r < size);
    ck_assert(comm_local_rank(g_world) >= 0 && comm_local_rank(g_world) < comm_local_size(g_world));
    ck_assert_int_eq(comm_local_size(g_world), size); /* the tests run on one node */
    ck_assert_int_eq(comm_local_rank(g_world), r);

    Comm *self = NULL;
    ck_assert_int_eq(comm_init_self(&self), PEFTC_OK);
    ck_assert_int_eq(comm_size(self), 1);
    ck_assert_int_eq(comm_rank(self), 0);
    ck_assert_int_eq(comm_local_size(self), 1);
    real_t v[3] = {1, (real_t)r, 3};
    uint64_t world_bytes = comm_bytes_reduced(g_world);
    ck_assert_int_eq(comm_allreduce(self, v, 3, COMM_MEAN), PEFTC_OK);
    ck_assert(v[0] == 1 && v[1] == (real_t)r && v[2] == 3);
    ck_assert_uint_eq(comm_bytes_reduced(self), 3 * sizeof(real_t));
    ck_assert_uint_eq(comm_bytes_reduced(g_world), world_bytes);
    ck_assert_int_eq(comm_agree(self, PEFTC_OK), PEFTC_OK);
    comm_free(self); /* must not finalize MPI under g_world */
}
END_TEST

/* Environment juggling for the Slurm check; values restored afterwards. */
static const char *const slurm_vars[] = {"SLURM_NTASKS", "SLURM_STEP_ID", "SLURM_PROCID", "OMPI_COMM_WORLD_SIZE",
                                         "PMI_SIZE"};
enum { NVARS = sizeof slurm_vars / sizeof *slurm_vars };

static void env_save(char *saved[NVARS]) {
    for (int i = 0; i < NVARS; i++) {
        const char *v = getenv(slurm_vars[i]);
        saved[i] = v ? strdup(v) : NULL;
    }
}

static void env_restore(char *saved[NVARS]) {
    for (int i = 0; i < NVARS; i++) {
        if (saved[i])
            setenv(slurm_vars[i], saved[i], 1);
        else
            unsetenv(slurm_vars[i]);
        free(saved[i]);
    }
}

/* As if srun without PMI had started size+1 processes: comm_init refuses (locally, no collective);
 * with a matching SLURM_NTASKS it succeeds (a collective dup on every rank). */
START_TEST(slurm_ntasks_mismatch) {
    int size = comm_size(g_world);
    char *saved[NVARS], n[16];
    env_save(saved);
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    setenv("SLURM_STEP_ID", "0", 1);
    setenv("SLURM_PROCID", "0", 1);
    snprintf(n, sizeof n, "%d", size + 1);
    setenv("SLURM_NTASKS", n, 1);
    Comm *c = NULL;
    PeftcStatus bad = comm_init(&c, NULL, NULL);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", peftc_err_msg());
    snprintf(n, sizeof n, "%d", size);
    setenv("SLURM_NTASKS", n, 1);
    Comm *ok = NULL;
    PeftcStatus good = comm_init(&ok, NULL, NULL);
    if (ok) comm_free(ok);
    env_restore(saved);
    ck_assert_int_eq(bad, PEFTC_ECOMM);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(msg, "SLURM_NTASKS=") && strstr(msg, "srun"), "%s", msg);
#ifdef PEFTC_WITH_MPI
    ck_assert_msg(strstr(msg, "--mpi=pmix") && strstr(msg, "mpirun"), "%s", msg);
#endif
    ck_assert_msg(good == PEFTC_OK, "%s", peftc_err_msg());
}
END_TEST

static Suite *comm_suite(void) {
    Suite *s = suite_create("comm");
    TCase *tc = tcase_create("collectives");
    tcase_add_test(tc, allreduce_real_ops);
    tcase_add_test(tc, allreduce_f64_ops);
    tcase_add_test(tc, allreduce_large_and_bytes);
    tcase_add_test(tc, bcast_bytes);
    tcase_add_test(tc, barrier_waits);
    tcase_add_test(tc, agree_all_ok);
    tcase_add_test(tc, agree_last_rank_fails);
    tcase_add_test(tc, agree_names_lowest_failing_rank);
    tcase_add_test(tc, layout_and_self);
    tcase_add_test(tc, slurm_ntasks_mismatch);
    suite_add_tcase(s, tc);
    return s;
}

/* Each rank prints its own summary and failures, in rank order. */
static void report(SRunner *sr, int rank, int size) {
    for (int r = 0; r < size; r++) {
        if (r == rank) {
            TestResult **tr = srunner_failures(sr);
            for (int i = 0; i < srunner_ntests_failed(sr); i++)
                fprintf(stderr, "rank %d: %s:%d: %s: %s\n", rank, tr_lfile(tr[i]), tr_lno(tr[i]), tr_tcname(tr[i]),
                        tr_msg(tr[i]));
            free(tr);
            printf("rank %d/%d: %d checks, %d failed\n", rank, size, srunner_ntests_run(sr), srunner_ntests_failed(sr));
            fflush(stdout);
            fflush(stderr);
        }
        comm_barrier(g_world);
    }
}

int main(int argc, char **argv) {
    double t0 = clock_seconds();
    if (comm_init(&g_world, &argc, &argv) != PEFTC_OK) {
        fprintf(stderr, "comm_init: %s\n", peftc_err_msg());
        return EXIT_FAILURE;
    }
    int rank = comm_rank(g_world), size = comm_size(g_world);
    if (rank == 0) printf("comm_init: %d rank(s) in %.2f s\n", size, clock_seconds() - t0);
    SRunner *sr = srunner_create(comm_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* forking under MPI is unsupported */
    srunner_run_all(sr, CK_SILENT);
    report(sr, rank, size);
    double failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    /* Every rank exits with the same code, so mpiexec's status means "any rank failed". */
    PeftcStatus st = comm_allreduce_f64(g_world, &failed, 1, COMM_SUM);
    comm_free(g_world);
    return st == PEFTC_OK && failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
