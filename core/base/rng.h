/* Counter-based random numbers.
 *
 * Every random draw is a pure function of a key and a counter, so results do not depend on thread
 * count, rank count or the order in which tensors are visited. Keys are derived by hashing
 * (seed, purpose, ids...) with rng_key(). */
#ifndef PEFTC_RNG_H
#define PEFTC_RNG_H

#include <stdint.h>

/* Mixes a 64-bit value (splitmix64 finaliser). */
uint64_t rng_mix64(uint64_t x);

/* Derives a key from a parent key and one more identifier; chain calls for several ids. */
uint64_t rng_key(uint64_t parent, uint64_t id);

/* Derives a key from a string (e.g. a tensor name), so keys survive reordering of registrations. */
uint64_t rng_key_str(uint64_t parent, const char *s);

/* The i-th 64 random bits of stream `key`. */
uint64_t rng_u64(uint64_t key, uint64_t i);

/* The i-th value of the splitmix64 stream seeded with `key`: one mixing round per 64 bits, about a
 * third of rng_u64's cost, for bulk draws such as dropout masks. `key` should itself come from
 * rng_key() so that neighbouring streams do not overlap in a predictable way. */
static inline uint64_t rng_stream_u64(uint64_t key, uint64_t i) { return rng_mix64(key + i * 0x9E3779B97F4A7C15ull); }

/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(uint64_t key, uint64_t i);

/* Standard normal via Box-Muller on draws 2i and 2i+1. */
double rng_normal(uint64_t key, uint64_t i);

/* A small sequential generator for code that draws a variable number of values (data generation).
 * Its whole state is {key, counter}, which is what a checkpoint stores. */
typedef struct {
    uint64_t key;
    uint64_t counter;
} Rng;

static inline Rng rng_make(uint64_t key) { return (Rng){key, 0}; }
uint64_t rng_next_u64(Rng *r);
/* Uniform integer in [0, n), n >= 1, without modulo bias. */
uint64_t rng_next_below(Rng *r, uint64_t n);

#endif
