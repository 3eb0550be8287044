/* Sampler: positions -> example ids.
 *
 * The per-epoch permutation of a finite dataset is a keyed Feistel network on the smallest
 * even-bit power-of-two domain holding n, with cycle-walking back into [0, n). That is a bijection on
 * [0, n) computed in O(1) memory for any position, so resuming needs nothing but the cursor. */
#include "core/train/sampler.h"

#include "core/base/rng.h"

enum { FEISTEL_ROUNDS = 6 };

void sampler_init(Sampler *s, uint64_t seed, int64_t n, int micro_batch, int accum, int world, int rank) {
    *s = (Sampler){
        .seed = seed, .n = n, .cursor = 0, .micro_batch = micro_batch, .accum = accum, .world = world, .rank = rank};
}

/* Half-width h such that 4^h >= n (h >= 1), so both Feistel halves have h bits. */
static int half_bits(int64_t n) {
    int h = 1;
    while (h < 32 && ((uint64_t)1 << (2 * h)) < (uint64_t)n) h++;
    return h;
}

/* One pass of the network: a bijection on [0, 4^h). */
static uint64_t feistel(uint64_t x, int h, uint64_t key) {
    uint64_t mask = ((uint64_t)1 << h) - 1;
    uint64_t l = x >> h, r = x & mask;
    for (int j = 0; j < FEISTEL_ROUNDS; j++) {
        uint64_t f = rng_u64(rng_key(key, (uint64_t)j), r) & mask;
        uint64_t nl = r;
        r = l ^ f;
        l = nl;
    }
    return (l << h) | r;
}

/* i-th element of the permutation of [0, n) for `key`. Cycle-walking terminates because i's own
 * cycle under the domain permutation passes through i < n; the domain is < 4n, so few steps. */
static int64_t permute(uint64_t i, int64_t n, uint64_t key) {
    int h = half_bits(n);
    uint64_t x = i;
    do x = feistel(x, h, key);
    while (x >= (uint64_t)n);
    return (int64_t)x;
}

int64_t sampler_id_at(const Sampler *s, int64_t p) {
    if (s->n < 0) return p;
    if (s->n <= 1) return 0;
    int64_t epoch = p / s->n;
    uint64_t key = rng_key(rng_key_str(s->seed, "sampler.epoch"), (uint64_t)epoch);
    return permute((uint64_t)(p % s->n), s->n, key);
}

void sampler_micro_ids(const Sampler *s, int micro, int64_t *ids) {
    int64_t B = s->micro_batch;
    int64_t first = s->cursor + ((int64_t)micro * s->world + s->rank) * B;
    for (int64_t b = 0; b < B; b++) ids[b] = sampler_id_at(s, first + b);
}

void sampler_advance(Sampler *s) { s->cursor += (int64_t)s->micro_batch * s->accum * s->world; }
