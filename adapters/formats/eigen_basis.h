/* EigenLoRAx principal subspaces: built offline from T PEFT LoRA folders, read by the adapter.
 *
 * Per adapted module and side (A side: the columns of A^T (in,r); B side: the columns of B (out,r)),
 * the T matrices are concatenated into M (n, r*T), each row is centred across its r*T columns, and the
 * top-K left singular vectors of M are kept. Where K exceeds the numerical rank of M, and for K_rand
 * more columns, vectors u ~ U[0,1)^n keyed by (seed, module, side, index) are Gram-Schmidt
 * orthogonalised against every current column and normalised. The C (n, K + K_rand) of each side is
 * orthonormal.
 *
 * File (safetensors): "<module>.eigen_A" (in, K + K_rand) and "<module>.eigen_B" (out, K + K_rand), F32,
 * leading columns in order of captured variance, then the augmentation vectors; __metadata__
 * {"format": "peftc-eigenlora", "r", "k", "k_rand", "seed", "sources": comma-joined folders}. */
#ifndef PEFTC_EIGEN_BASIS_H
#define PEFTC_EIGEN_BASIS_H

#include <stdint.h>

#include "core/backend/backend.h"
#include "core/formats/safetensors.h"

#define EIGEN_FORMAT "peftc-eigenlora"

/* What building one side of one module found; handed to an EigenReportFn as the build goes. */
typedef struct {
    const char *module; /* valid during the call only */
    char side;       /* 'A' or 'B' */
    int n;           /* rows: in for A, out for B */
    int rank;        /* numerical rank of the centred M */
    int pcs;         /* principal components kept: min(K, rank) */
    int random;      /* augmentation vectors: K_rand + (K - pcs) */
    double captured; /* sum of the kept sigma^2 / sum of all sigma^2 (0 when M is zero) */
} EigenSideInfo;

typedef void (*EigenReportFn)(void *user, const EigenSideInfo *info);

/* Builds the basis from n_dirs PEFT folders (same r, same adapted modules, same shapes; errors name the
 * folder and the module or tensor that differs) and writes it to out_path atomically. K >= 1,
 * K_rand >= 0, and K + K_rand must not exceed any side's n. */
PeftcStatus eigen_build(const char *const *adapter_dirs, int n_dirs, int K, int K_rand, uint64_t seed,
                        const char *out_path);
/* The same, calling report (if non-NULL) once per module and side. */
PeftcStatus eigen_build_report(const char *const *adapter_dirs, int n_dirs, int K, int K_rand, uint64_t seed,
                               const char *out_path, EigenReportFn report, void *user);

/* An open basis file; the components stay in the file's memory map until close. */
typedef struct {
    StFile file;
    int r;         /* rank of the source adapters */
    int k, k_rand; /* principal components asked for, augmentation vectors asked for */
    int columns;   /* k + k_rand: the width of every component matrix */
    uint64_t seed;
} EigenBasis;

/* Validates the metadata and that every tensor is "<module>.eigen_A|B" (n, columns) with both sides
 * present; errors name the file and the field or tensor. */
PeftcStatus eigen_basis_open(EigenBasis *b, const char *path);
void eigen_basis_close(EigenBasis *b);

/* out(n,K) = the leading K columns of module's side ('A' or 'B') component matrix, whose n must be the
 * expected one; errors name the file and tensor. Host memory. */
PeftcStatus eigen_basis_read(const EigenBasis *b, const char *module, char side, int n, int K, real_t *out);

/* The same into backend memory allocated with be->alloc (be, *out (n,K)); the caller frees it with be->free. */
PeftcStatus eigen_basis_load(const EigenBasis *b, const Backend *be, const char *module, char side, int n, int K,
                             real_t **out);

#endif
