/* EigenLoRAx principal subspaces: built from PEFT LoRA folders (centred SVD per module and side, seeded
 * augmentation), written as safetensors, read back for the adapter. The linear algebra runs in double
 * whatever real_t is: the sources are F32 and the components are stored as F32. */
#include "adapters/formats/eigen_basis.h"

#include <errno.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"
#include "adapters/formats/peft_io.h"

#define PEFT_PREFIX "base_model.model."
#define PEFT_WEIGHTS "adapter_model.safetensors"
#define EIGEN_PATH_MAX 1024
#define EIGEN_MIN_NORM 1e-8

/* ================================================================ the source adapters */

typedef struct {
    char name[96];
    int in, out;
    const StTensor **A, **B; /* (n_src) lora_A (r,in) and lora_B (out,r) of each source */
} SrcModule;

typedef struct {
    const char *const *dirs;
    int n;          /* sources */
    int r;
    StFile *files;  /* (n) */
    int n_open;
    SrcModule *mods;
    int n_mods, cap_mods;
} Sources;


static int find_module(const Sources *s, const char *name) {
    for (int i = 0; i < s->n_mods; i++)
        if (strcmp(s->mods[i].name, name) == 0) return i;
    return -1;
}

static PeftcStatus add_module(Sources *s, const char *name, int *idx) {
    if (s->n_mods == s->cap_mods) {
        int cap = s->cap_mods ? 2 * s->cap_mods : 64;
        SrcModule *m = realloc(s->mods, (size_t)cap * sizeof *m);
        if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "eigen build: out of memory listing modules");
        s->mods = m;
        s->cap_mods = cap;
    }
    SrcModule *m = &s->mods[s->n_mods];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->A = calloc((size_t)s->n, sizeof *m->A);
    m->B = calloc((size_t)s->n, sizeof *m->B);
    if (!m->A || !m->B) {
        free(m->A);
        free(m->B);
        return PEFTC_ERR(PEFTC_ENOMEM, "eigen build: out of memory listing modules");
    }
    *idx = s->n_mods++;
    return PEFTC_OK;
}

/* Files each LoRA tensor of source i under its module; the first source defines the module set. */
static PeftcStatus scan_source(Sources *s, int i) {
    const StFile *f = &s->files[i];
    for (int t = 0; t < f->n_tensors; t++) {
        const StTensor *ten = &f->tensors[t];
        char module[96];
        int which;
        if (!peft_split_name(ten->name, module, sizeof module, &which))
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': unexpected name (expected %s<module>.lora_A.weight or "
                                            ".lora_B.weight)", f->file.path, ten->name, PEFT_PREFIX);
        int m = find_module(s, module);
        if (m < 0 && i > 0)
            return PEFTC_ERR(PEFTC_EFORMAT, "adapter folder '%s': module %s is adapted here but not in '%s' (every "
                                            "source must adapt the same modules)", s->dirs[i], module, s->dirs[0]);
        if (m < 0) PEFTC_TRY(add_module(s, module, &m));
        const StTensor **slot = which ? &s->mods[m].B[i] : &s->mods[m].A[i];
        if (*slot)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': module %s has a second lora_%c tensor", f->file.path,
                             ten->name, module, which ? 'B' : 'A');
        *slot = ten;
    }
    return PEFTC_OK;
}

static PeftcStatus check_shape(const Sources *s, int i, const StTensor *t, int64_t d0, int64_t d1) {
    Shape want = shape2(d0, d1);
    if (shape_equal(&t->shape, &want)) return PEFTC_OK;
    char got[64], exp[64];
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has shape %s, expected %s (r = %d; shapes of '%s')",
                     s->files[i].file.path, t->name, shape_str(&t->shape, got, sizeof got),
                     shape_str(&want, exp, sizeof exp), s->r, s->dirs[0]);
}

/* Every module has both tensors in every source, with r = the config's r and one (in, out) for all. */
static PeftcStatus check_complete(Sources *s) {
    if (!s->n_mods)
        return PEFTC_ERR(PEFTC_EFORMAT, "adapter folder '%s': no LoRA tensor in %s", s->dirs[0], PEFT_WEIGHTS);
    for (int m = 0; m < s->n_mods; m++) {
        SrcModule *mod = &s->mods[m];
        for (int i = 0; i < s->n; i++) {
            if (mod->A[i] && mod->B[i]) continue;
            return PEFTC_ERR(PEFTC_EFORMAT, "adapter folder '%s': module %s: tensor %s%s.lora_%c.weight is missing "
                                            "(the module is adapted in '%s')", s->dirs[i], mod->name, PEFT_PREFIX,
                             mod->name, mod->A[i] ? 'B' : 'A', s->dirs[0]);
        }
        if (mod->A[0]->shape.ndim != 2 || mod->B[0]->shape.ndim != 2)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: module %s: lora_A and lora_B must be 2-D", s->files[0].file.path,
                             mod->name);
        mod->in = (int)mod->A[0]->shape.dim[1];
        mod->out = (int)mod->B[0]->shape.dim[0];
        for (int i = 0; i < s->n; i++) {
            PEFTC_TRY(check_shape(s, i, mod->A[i], s->r, mod->in));
            PEFTC_TRY(check_shape(s, i, mod->B[i], mod->out, s->r));
        }
    }
    return PEFTC_OK;
}

static PeftcStatus open_source(Sources *s, int i) {
    LoraConfig c;
    PEFTC_TRY(peft_read_config(s->dirs[i], &c));
    if (i == 0) s->r = c.r;
    else if (c.r != s->r)
        return PEFTC_ERR(PEFTC_EFORMAT, "adapter folder '%s': r = %d, but '%s' has r = %d (every source must have "
                                        "the same rank)", s->dirs[i], c.r, s->dirs[0], s->r);
    char path[EIGEN_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", s->dirs[i], PEFT_WEIGHTS) >= (int)sizeof path)
        return PEFTC_ERR(PEFTC_EINVAL, "adapter folder '%s': path too long", s->dirs[i]);
    PEFTC_TRY(st_open(&s->files[i], path));
    s->n_open++;
    return scan_source(s, i);
}

static void close_sources(Sources *s) {
    for (int i = 0; i < s->n_open; i++) st_close(&s->files[i]);
    for (int m = 0; m < s->n_mods; m++) {
        free(s->mods[m].A);
        free(s->mods[m].B);
    }
    free(s->files);
    free(s->mods);
}

static PeftcStatus open_sources(Sources *s, const char *const *dirs, int n) {
    memset(s, 0, sizeof *s);
    s->dirs = dirs;
    s->n = n;
    s->files = calloc((size_t)n, sizeof *s->files);
    if (!s->files) return PEFTC_ERR(PEFTC_ENOMEM, "eigen build: out of memory for %d sources", n);
    for (int i = 0; i < n; i++) PEFTC_TRY(open_source(s, i));
    return check_complete(s);
}

/* ================================================================ one side of one module */

/* M (n, r*T) column-major: column i*r + c is column c of source i's A^T (side 'A') or B (side 'B').
 * tmp: r * n real_t. */
static PeftcStatus gather(const Sources *s, const SrcModule *m, char side, double *M, real_t *tmp) {
    int n = side == 'A' ? m->in : m->out, r = s->r;
    for (int i = 0; i < s->n; i++) {
        const StTensor *t = side == 'A' ? m->A[i] : m->B[i];
        PEFTC_TRY(st_read_real(&s->files[i], t, NULL, tmp));
        for (int c = 0; c < r; c++) {
            double *col = M + (size_t)(i * r + c) * (size_t)n;
            for (int j = 0; j < n; j++)
                col[j] = side == 'A' ? (double)tmp[(size_t)c * (size_t)n + (size_t)j] /* A (r,in) row c */
                                     : (double)tmp[(size_t)j * (size_t)r + (size_t)c]; /* B (out,r) col c */
        }
    }
    return PEFTC_OK;
}

/* Each row minus its mean across the m columns. M (n, m) column-major. */
static void centre_rows(double *M, int n, int m) {
    for (int j = 0; j < n; j++) {
        double mean = 0;
        for (int c = 0; c < m; c++) mean += M[(size_t)c * (size_t)n + (size_t)j];
        mean /= m;
        for (int c = 0; c < m; c++) M[(size_t)c * (size_t)n + (size_t)j] -= mean;
    }
}

/* Left singular vectors U (n, min(n,m)) and values sv (descending) of M (n, m), destroyed. Each column's
 * largest-magnitude entry is made positive, so the file does not depend on the LAPACK build's signs. */
static PeftcStatus svd_left(double *M, int n, int m, double *U, double *sv, const char *module, char side) {
    int mn = n < m ? n : m;
    double *superb = malloc((size_t)(mn > 1 ? mn : 2) * sizeof *superb);
    if (!superb) return PEFTC_ERR(PEFTC_ENOMEM, "eigen build: out of memory for the SVD of %s", module);
    lapack_int info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'N', n, m, M, n, sv, U, n, NULL, 1, superb);
    free(superb);
    if (info != 0)
        return PEFTC_ERR(PEFTC_EINVAL, "eigen build: module %s side %c: LAPACKE_dgesvd failed (info %d)", module, side,
                         (int)info);
    for (int c = 0; c < mn; c++) {
        double *u = U + (size_t)c * (size_t)n;
        int at = 0;
        for (int j = 1; j < n; j++)
            if (fabs(u[j]) > fabs(u[at])) at = j;
        if (u[at] < 0)
            for (int j = 0; j < n; j++) u[j] = -u[j];
    }
    return PEFTC_OK;
}

/* Singular values above max(n, m) * eps * sigma_max (NumPy's matrix_rank rule): the centring leaves one
 * direction at rounding level, which this excludes. */
static int numerical_rank(const double *sv, int mn, int n, int m) {
    if (mn == 0 || sv[0] <= 0) return 0;
    double tol = sv[0] * (double)(n > m ? n : m) * DBL_EPSILON;
    int k = 0;
    while (k < mn && sv[k] > tol) k++;
    return k;
}

/* The j-th augmentation draw of (seed, module, side). */
static uint64_t augment_key(uint64_t seed, const char *module, char side, int j) {
    return rng_key(rng_key(rng_key_str(rng_key(seed, 0xE16E4A11ull), module), (uint64_t)side), (uint64_t)j);
}

/* u -= C (C^T u) against the first `cols` columns of C (n, *) column-major: classical Gram-Schmidt. */
static void project_out(double *u, const double *C, int n, int cols) {
    for (int c = 0; c < cols; c++) {
        const double *q = C + (size_t)c * (size_t)n;
        double h = 0;
        for (int j = 0; j < n; j++) h += q[j] * u[j];
        for (int j = 0; j < n; j++) u[j] -= h * q[j];
    }
}

/* Columns from..total-1 of C (n, total): u ~ U[0,1)^n, two Gram-Schmidt passes (the second restores
 * orthogonality lost to rounding in the first), normalised. */
static PeftcStatus augment(double *C, int n, int from, int total, uint64_t seed, const char *module, char side) {
    for (int c = from; c < total; c++) {
        double *u = C + (size_t)c * (size_t)n;
        uint64_t key = augment_key(seed, module, side, c - from);
        for (int j = 0; j < n; j++) u[j] = rng_uniform(key, (uint64_t)j);
        project_out(u, C, n, c);
        project_out(u, C, n, c);
        double norm = 0;
        for (int j = 0; j < n; j++) norm += u[j] * u[j];
        norm = sqrt(norm);
        if (norm < EIGEN_MIN_NORM)
            return PEFTC_ERR(PEFTC_EINVAL, "eigen build: module %s side %c: augmentation vector %d has norm %.3g after "
                                           "Gram-Schmidt (below %g)", module, side, c - from, norm, EIGEN_MIN_NORM);
        for (int j = 0; j < n; j++) u[j] /= norm;
    }
    return PEFTC_OK;
}

typedef struct {
    int K, K_rand;
    uint64_t seed;
    StWriter *w;
    EigenReportFn report;
    void *user;
} BuildCtx;

/* Appends "<module>.eigen_<side>" (n, K + K_rand) as F32, row-major. C (n, cols) column-major. */
static PeftcStatus write_side(StWriter *w, const char *module, char side, const double *C, int n, int cols) {
    real_t *rm = malloc((size_t)n * (size_t)cols * sizeof *rm);
    if (!rm) return PEFTC_ERR(PEFTC_ENOMEM, "eigen build: out of memory writing %s", module);
    for (int j = 0; j < n; j++)
        for (int c = 0; c < cols; c++)
            rm[(size_t)j * (size_t)cols + (size_t)c] = (real_t)C[(size_t)c * (size_t)n + (size_t)j];
    char name[160];
    snprintf(name, sizeof name, "%s.eigen_%c", module, side);
    Shape sh = shape2(n, cols);
    PeftcStatus st = st_writer_add(w, name, ST_F32, &sh, rm);
    free(rm);
    return st;
}

/* C (n, K + K_rand) column-major from the centred M (n, m): kept components, then augmentation. */
static PeftcStatus components(const BuildCtx *b, double *M, int n, int m, double *C, const char *module, char side,
                              EigenSideInfo *info) {
    int mn = n < m ? n : m, cols = b->K + b->K_rand;
    double *U = malloc((size_t)n * (size_t)mn * sizeof *U), *sv = malloc((size_t)mn * sizeof *sv);
    PeftcStatus st = U && sv ? svd_left(M, n, m, U, sv, module, side)
                             : PEFTC_ERR(PEFTC_ENOMEM, "eigen build: out of memory for the SVD of %s", module);
    if (st == PEFTC_OK) {
        int rank = numerical_rank(sv, mn, n, m), pcs = rank < b->K ? rank : b->K;
        double total = 0, kept = 0;
        for (int c = 0; c < mn; c++) total += sv[c] * sv[c], kept += c < pcs ? sv[c] * sv[c] : 0;
        memcpy(C, U, (size_t)n * (size_t)pcs * sizeof *C);
        *info = (EigenSideInfo){module, side, n, rank, pcs, cols - pcs, total > 0 ? kept / total : 0};
        st = augment(C, n, pcs, cols, b->seed, module, side);
    }
    free(U);
    free(sv);
    return st;
}

static PeftcStatus build_side(const BuildCtx *b, const Sources *s, const SrcModule *mod, char side) {
    int n = side == 'A' ? mod->in : mod->out, m = s->r * s->n, cols = b->K + b->K_rand;
    if (cols > n)
        return PEFTC_ERR(PEFTC_EINVAL, "eigen build: module %s side %c has %d rows: k + k_rand = %d orthonormal "
                                       "columns do not fit (lower --k or --random)", mod->name, side, n, cols);
    double *M = malloc((size_t)n * (size_t)m * sizeof *M), *C = malloc((size_t)n * (size_t)cols * sizeof *C);
    real_t *tmp = malloc((size_t)n * (size_t)s->r * sizeof *tmp);
    PeftcStatus st = M && C && tmp ? gather(s, mod, side, M, tmp)
                                   : PEFTC_ERR(PEFTC_ENOMEM, "eigen build: out of memory for module %s", mod->name);
    EigenSideInfo info = {0};
    if (st == PEFTC_OK) {
        centre_rows(M, n, m);
        st = components(b, M, n, m, C, mod->name, side, &info);
    }
    if (st == PEFTC_OK) st = write_side(b->w, mod->name, side, C, n, cols);
    if (st == PEFTC_OK && b->report) b->report(b->user, &info);
    free(M);
    free(C);
    free(tmp);
    return st;
}

static PeftcStatus write_meta(StWriter *w, const BuildCtx *b, int r, const char *const *dirs, int n_dirs) {
    char num[32];
    PEFTC_TRY(st_writer_meta(w, "format", EIGEN_FORMAT));
    snprintf(num, sizeof num, "%d", r);
    PEFTC_TRY(st_writer_meta(w, "r", num));
    snprintf(num, sizeof num, "%d", b->K);
    PEFTC_TRY(st_writer_meta(w, "k", num));
    snprintf(num, sizeof num, "%d", b->K_rand);
    PEFTC_TRY(st_writer_meta(w, "k_rand", num));
    snprintf(num, sizeof num, "%llu", (unsigned long long)b->seed);
    PEFTC_TRY(st_writer_meta(w, "seed", num));
    size_t len = 1;
    for (int i = 0; i < n_dirs; i++) len += strlen(dirs[i]) + 1;
    char *joined = malloc(len);
    if (!joined) return PEFTC_ERR(PEFTC_ENOMEM, "eigen build: out of memory for the sources list");
    joined[0] = '\0';
    for (int i = 0; i < n_dirs; i++) {
        if (i) strcat(joined, ",");
        strcat(joined, dirs[i]);
    }
    PeftcStatus st = st_writer_meta(w, "sources", joined);
    free(joined);
    return st;
}

PeftcStatus eigen_build_report(const char *const *dirs, int n_dirs, int K, int K_rand, uint64_t seed,
                               const char *out_path, EigenReportFn report, void *user) {
    if (n_dirs < 1) return PEFTC_ERR(PEFTC_EINVAL, "eigen build: at least one adapter folder is needed");
    if (K < 1) return PEFTC_ERR(PEFTC_EINVAL, "eigen build: k must be >= 1, got %d", K);
    if (K_rand < 0) return PEFTC_ERR(PEFTC_EINVAL, "eigen build: k_rand (--random) must be >= 0, got %d", K_rand);
    if (!out_path || !*out_path) return PEFTC_ERR(PEFTC_EINVAL, "eigen build: no output path");
    Sources s;
    BuildCtx b = {K, K_rand, seed, NULL, report, user};
    PeftcStatus st = open_sources(&s, dirs, n_dirs);
    if (st == PEFTC_OK) {
        b.w = st_writer_new();
        if (!b.w) st = PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for the safetensors writer", out_path);
    }
    if (st == PEFTC_OK) st = write_meta(b.w, &b, s.r, dirs, n_dirs);
    for (int m = 0; m < s.n_mods && st == PEFTC_OK; m++) {
        st = build_side(&b, &s, &s.mods[m], 'A');
        if (st == PEFTC_OK) st = build_side(&b, &s, &s.mods[m], 'B');
    }
    if (st == PEFTC_OK) st = st_write(b.w, out_path);
    if (b.w) st_writer_free(b.w);
    close_sources(&s);
    return st;
}

PeftcStatus eigen_build(const char *const *dirs, int n_dirs, int K, int K_rand, uint64_t seed, const char *out_path) {
    return eigen_build_report(dirs, n_dirs, K, K_rand, seed, out_path, NULL, NULL);
}

/* ================================================================ reading a basis */

static const char *meta_value(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

static PeftcStatus meta_uint(const StFile *f, const char *key, unsigned long long lo, unsigned long long hi,
                             unsigned long long *out) {
    const char *v = meta_value(f, key);
    if (!v) return PEFTC_ERR(PEFTC_EFORMAT, "%s: __metadata__ has no '%s' (expected an integer)", f->file.path, key);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || x < lo || x > hi)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: __metadata__ '%s' = '%s', expected an integer in [%llu, %llu]",
                         f->file.path, key, v, lo, hi);
    *out = x;
    return PEFTC_OK;
}

static PeftcStatus read_meta(EigenBasis *b) {
    const StFile *f = &b->file;
    const char *fmt = meta_value(f, "format");
    if (!fmt || strcmp(fmt, EIGEN_FORMAT) != 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: __metadata__ format is '%s', expected '%s' (make one with peftc eigen "
                                        "build)", f->file.path, fmt ? fmt : "(missing)", EIGEN_FORMAT);
    unsigned long long r, k, kr, seed;
    PEFTC_TRY(meta_uint(f, "r", 1, 1u << 20, &r));
    PEFTC_TRY(meta_uint(f, "k", 1, 1u << 20, &k));
    PEFTC_TRY(meta_uint(f, "k_rand", 0, 1u << 20, &kr));
    PEFTC_TRY(meta_uint(f, "seed", 0, UINT64_MAX, &seed));
    b->r = (int)r, b->k = (int)k, b->k_rand = (int)kr, b->columns = (int)(k + kr), b->seed = seed;
    return PEFTC_OK;
}

/* "<module>.eigen_A" or "<module>.eigen_B", 2-D (n >= columns, columns), with its other side present. */
static PeftcStatus check_tensor(const EigenBasis *b, const StTensor *t) {
    size_t n = strlen(t->name), ns = strlen(".eigen_A");
    const char *path = b->file.file.path;
    if (n <= ns || strncmp(t->name + n - ns, ".eigen_", ns - 1) != 0 ||
        (t->name[n - 1] != 'A' && t->name[n - 1] != 'B'))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': unexpected name (expected <module>.eigen_A or .eigen_B)",
                         path, t->name);
    if (t->shape.ndim != 2 || t->shape.dim[1] != b->columns || t->shape.dim[0] < b->columns)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': expected shape (n, %d) with n >= %d (k + k_rand columns)",
                         path, t->name, b->columns, b->columns);
    char other[sizeof t->name];
    snprintf(other, sizeof other, "%s", t->name);
    other[n - 1] = t->name[n - 1] == 'A' ? 'B' : 'A';
    if (!st_find(&b->file, other))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has no partner '%s'", path, t->name, other);
    return PEFTC_OK;
}

PeftcStatus eigen_basis_open(EigenBasis *b, const char *path) {
    memset(b, 0, sizeof *b);
    PEFTC_TRY(st_open(&b->file, path));
    PeftcStatus st = read_meta(b);
    for (int i = 0; i < b->file.n_tensors && st == PEFTC_OK; i++) st = check_tensor(b, &b->file.tensors[i]);
    if (st == PEFTC_OK && b->file.n_tensors == 0) st = PEFTC_ERR(PEFTC_EFORMAT, "%s: the basis has no tensor", path);
    if (st != PEFTC_OK) st_close(&b->file);
    return st;
}

void eigen_basis_close(EigenBasis *b) { st_close(&b->file); }

PeftcStatus eigen_basis_read(const EigenBasis *b, const char *module, char side, int n, int K, real_t *out) {
    const char *path = b->file.file.path;
    char name[160];
    snprintf(name, sizeof name, "%s.eigen_%c", module, side);
    if (K < 1 || K > b->columns)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: %d components asked for tensor '%s', the basis has %d (k %d + k_rand %d)",
                         path, K, name, b->columns, b->k, b->k_rand);
    const StTensor *t = st_find(&b->file, name);
    if (!t)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: no tensor '%s': the basis does not cover module %s", path, name, module);
    Shape want = shape2(n, b->columns);
    if (K == b->columns) return st_read_real(&b->file, t, &want, out);
    real_t *all = malloc((size_t)n * (size_t)b->columns * sizeof *all);
    if (!all) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory reading '%s'", path, name);
    PeftcStatus st = st_read_real(&b->file, t, &want, all);
    for (int j = 0; j < n && st == PEFTC_OK; j++)
        memcpy(out + (size_t)j * (size_t)K, all + (size_t)j * (size_t)b->columns, (size_t)K * sizeof *out);
    free(all);
    return st;
}

PeftcStatus eigen_basis_load(const EigenBasis *b, const Backend *be, const char *module, char side, int n, int K,
                             real_t **out) {
    size_t numel = (size_t)n * (size_t)K;
    real_t *dev = be->alloc(be, numel * sizeof *dev);
    const char *path = b->file.file.path;
    if (!dev) return PEFTC_ERR(PEFTC_ENOMEM, "%s: cannot allocate %zu components for %s", path, numel, module);
    real_t *host = backend_host_begin(be, dev, numel);
    PeftcStatus st = host ? eigen_basis_read(b, module, side, n, K, host)
                          : PEFTC_ERR(PEFTC_ENOMEM, "%s: no host memory for the components of %s", path, module);
    if (st == PEFTC_OK) backend_host_done(be, dev, host, numel);
    else {
        if (host && host != dev) free(host);
        be->free(be, dev);
        return st;
    }
    *out = dev;
    return PEFTC_OK;
}
