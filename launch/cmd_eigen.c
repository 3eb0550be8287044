/* peftc eigen build: the EigenLoRAx principal subspaces of several PEFT LoRA adapters, written once so
 * that every run (and every rank) trains on the same components, augmentation vectors included. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/formats/eigen_basis.h"
#include "launch/commands.h"
#include "launch/flags.h"

typedef struct {
    char adapters[8192], out[512], seed[32];
    int k, random;
} EigenArgs;

/* Running totals of what the build reports, one printed line per module. */
typedef struct {
    EigenSideInfo a; /* the module's A side, printed with its B side */
    int modules;
    double sum[2], min[2];
} Summary;

static void on_side(void *user, const EigenSideInfo *info) {
    Summary *s = user;
    int b = info->side == 'B';
    s->sum[b] += info->captured;
    if (!s->modules || info->captured < s->min[b]) s->min[b] = info->captured;
    if (!b) {
        s->a = *info;
        return;
    }
    s->modules++;
    printf("  %-40s A: rank %3d, %3d PCs + %3d random, captured %6.2f%%   B: rank %3d, %3d PCs + %3d random, "
           "captured %6.2f%%\n", info->module, s->a.rank, s->a.pcs, s->a.random, 100 * s->a.captured, info->rank,
           info->pcs, info->random, 100 * info->captured);
}

/* Splits "d1,d2,..." in place; empty entries are skipped. */
static PeftcStatus split_dirs(char *list, char ***dirs, int *n) {
    int cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    char **out = calloc((size_t)cap, sizeof *out);
    if (!out) return PEFTC_ERR(PEFTC_ENOMEM, "--adapters: out of memory");
    int k = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
        if (*tok) out[k++] = tok;
    if (!k) {
        free(out);
        return PEFTC_ERR(PEFTC_EINVAL, "--adapters: no folder given (expected DIR1,DIR2,...)");
    }
    *dirs = out;
    *n = k;
    return PEFTC_OK;
}

static PeftcStatus parse_seed(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return PEFTC_ERR(PEFTC_EINVAL, "--seed: expected a non-negative integer, got '%s'", s);
    *out = x;
    return PEFTC_OK;
}

static PeftcStatus parse(const Flag *f, int n, int argc, char **argv, const EigenArgs *a) {
    PEFTC_TRY(flags_parse(f, n, argc, argv));
    if (!a->adapters[0]) return PEFTC_ERR(PEFTC_EINVAL, "--adapters (comma-separated PEFT folders) is required");
    if (!a->out[0]) return PEFTC_ERR(PEFTC_EINVAL, "--out (the basis file to write) is required");
    if (a->k < 1) return PEFTC_ERR(PEFTC_EINVAL, "--k: expected a number of components >= 1, got %d", a->k);
    if (a->random < 0) return PEFTC_ERR(PEFTC_EINVAL, "--random: expected >= 0, got %d", a->random);
    return PEFTC_OK;
}

static int finish(PeftcStatus st, int code) {
    if (st == PEFTC_OK) return 0;
    fprintf(stderr, "peftc: error: %s\n", peftc_err_msg());
    return code;
}

static void print_totals(const Summary *s, const char *out) {
    EigenBasis b;
    if (eigen_basis_open(&b, out) != PEFTC_OK) return;
    printf("peftc: captured variance: A mean %.2f%% (min %.2f%%), B mean %.2f%% (min %.2f%%)\n",
           100 * s->sum[0] / s->modules, 100 * s->min[0], 100 * s->sum[1] / s->modules, 100 * s->min[1]);
    printf("peftc: wrote %s (%d modules, r = %d, %d components per side: k %d + k_rand %d, seed %llu)\n", out,
           s->modules, b.r, b.columns, b.k, b.k_rand, (unsigned long long)b.seed);
    eigen_basis_close(&b);
}

static int eigen_build_cmd(int argc, char **argv) {
    EigenArgs a = {.k = 32, .seed = "0"};
    Flag f[] = {
        {"adapters", FLAG_STR, a.adapters, sizeof a.adapters,
         "PEFT LoRA folders, comma-separated (same r and modules)"},
        {"k", FLAG_INT, &a.k, 0, "principal components per module and side (default 32)"},
        {"random", FLAG_INT, &a.random, 0, "extra random orthonormal components (default 0)"},
        {"seed", FLAG_STR, a.seed, sizeof a.seed, "seed of the random components (default 0)"},
        {"out", FLAG_STR, a.out, sizeof a.out, "basis file to write (safetensors)"},
    };
    int n = (int)(sizeof f / sizeof f[0]);
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: peftc eigen build --adapters DIR1,DIR2,... --k N [--random N] [--seed N] --out FILE\n\n");
            flags_usage(f, n, stdout);
            return 0;
        }
    uint64_t seed = 0;
    PeftcStatus st = parse(f, n, argc, argv, &a);
    if (st == PEFTC_OK) st = parse_seed(a.seed, &seed);
    char **dirs = NULL;
    int n_dirs = 0;
    if (st == PEFTC_OK) st = split_dirs(a.adapters, &dirs, &n_dirs);
    if (st != PEFTC_OK) return finish(st, EXIT_USAGE);
    printf("peftc: eigen basis of %d adapter(s), k = %d + %d random, seed %llu\n", n_dirs, a.k, a.random,
           (unsigned long long)seed);
    Summary sum = {0};
    st = eigen_build_report((const char *const *)dirs, n_dirs, a.k, a.random, seed, a.out, on_side, &sum);
    free(dirs);
    if (st == PEFTC_OK) print_totals(&sum, a.out);
    return finish(st, exit_code_for(st));
}

int cmd_eigen(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "build")) return eigen_build_cmd(argc - 1, argv + 1);
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: peftc eigen build --adapters DIR1,DIR2,... --k N [--random N] [--seed N] --out FILE\n");
        return 0;
    }
    fprintf(stderr, "peftc: error: eigen: expected the subcommand 'build' (peftc eigen build --help)\n");
    return EXIT_USAGE;
}
