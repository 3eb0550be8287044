/* Deterministic, resumable, rank-sharded sampler.
 *
 * A step consumes one global batch of G = micro_batch * accum * world examples at stream positions
 * cursor .. cursor+G-1. Rank r's micro-batch m takes positions cursor + (m*world + r)*B + [0, B), so
 * ranks hold disjoint shards and the union over ranks is the same global batch whatever the world
 * size (a 1-rank run with accum = N*a sees exactly the examples an N-rank run with accum = a sees).
 * For a finite dataset position p maps to epoch p / n and a seeded permutation within the epoch; for
 * an endless one the position is the id. The whole state is the cursor (plus the fixed seed). */
#ifndef PEFTC_SAMPLER_H
#define PEFTC_SAMPLER_H

#include <stdint.h>

typedef struct {
    uint64_t seed;
    int64_t n;      /* examples in the split, or -1 for endless */
    int64_t cursor; /* global stream position of the next step's first example */
    int micro_batch, accum, world, rank;
} Sampler;

void sampler_init(Sampler *s, uint64_t seed, int64_t n, int micro_batch, int accum, int world, int rank);
/* Example ids (B) of this rank's micro-batch `micro` (0..accum-1) of the current step. */
void sampler_micro_ids(const Sampler *s, int micro, int64_t *ids);
/* Moves past the current global batch. */
void sampler_advance(Sampler *s);
/* Example id at global stream position p (the permutation; exposed for tests). */
int64_t sampler_id_at(const Sampler *s, int64_t p);

#endif
