#include "core/base/rng.h"

#include <math.h>

uint64_t rng_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t rng_key(uint64_t parent, uint64_t id) { return rng_mix64(rng_mix64(parent) ^ rng_mix64(id + 0x632BE59BD9B4E019ull)); }

uint64_t rng_key_str(uint64_t parent, const char *s) {
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a, then mixed */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return rng_key(parent, h);
}

/* Two rounds of mixing over (key, counter) make neighbouring counters independent. */
uint64_t rng_u64(uint64_t key, uint64_t i) { return rng_mix64(rng_mix64(key ^ rng_mix64(i)) + i); }

double rng_uniform(uint64_t key, uint64_t i) { return (double)(rng_u64(key, i) >> 11) * 0x1.0p-53; }

double rng_normal(uint64_t key, uint64_t i) {
    double u1 = rng_uniform(key, 2 * i), u2 = rng_uniform(key, 2 * i + 1);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t rng_next_u64(Rng *r) { return rng_u64(r->key, r->counter++); }

uint64_t rng_next_below(Rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the short tail to avoid bias */
    uint64_t x;
    do x = rng_next_u64(r);
    while (x >= limit);
    return x % n;
}
