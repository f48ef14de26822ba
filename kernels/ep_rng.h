/* Explicit, seeded random numbers (xoshiro256** seeded through splitmix64).
 * There is no global state: every draw goes through an ep_rng the caller owns,
 * so the simulator and the real backend route the same tokens. Also the one
 * FNV-1a 64 content hash. */
#ifndef EP_RNG_H
#define EP_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct ep_rng {
  uint64_t s[4];
} ep_rng;

/* Seeds a generator for one independent stream: (seed, stream) pairs that
 * differ give unrelated sequences. Used with stream = global token id so any
 * rank can regenerate any token's routing on its own. */
void ep_rng_seed(ep_rng *rng, uint64_t seed, uint64_t stream);

static inline uint64_t ep__rotl64(uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

/* Inline: the router's inner loop is a handful of instructions around each
 * draw, and a call costs about as much. */
static inline uint64_t ep_rng_next_u64(ep_rng *rng)
{
  uint64_t *s = rng->s;
  const uint64_t result = ep__rotl64(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = ep__rotl64(s[3], 45);
  return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double ep_rng_uniform(ep_rng *rng)
{
  return (double)(ep_rng_next_u64(rng) >> 11) * 0x1.0p-53;
}

/* One splitmix64 step: a good 64-bit mixer, also used for hashing. */
uint64_t ep_splitmix64(uint64_t *state);

/* FNV-1a 64 of n_bytes at data, continuing from hash: start a fresh hash at
 * EP_FNV1A64_INIT, and chain calls to hash several pieces as one. */
#define EP_FNV1A64_INIT 0xcbf29ce484222325ULL
uint64_t ep_fnv1a64(uint64_t hash, const void *data, size_t n_bytes);

#endif
