/* xoshiro256** (Blackman and Vigna) seeded by splitmix64; FNV-1a 64. */
#include "ep_rng.h"

uint64_t ep_splitmix64(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void ep_rng_seed(ep_rng *rng, uint64_t seed, uint64_t stream)
{
  uint64_t sm = seed;
  uint64_t mixed_seed = ep_splitmix64(&sm);
  uint64_t state = mixed_seed ^ (stream * 0xd1b54a32d192ed03ULL);
  for (int i = 0; i < 4; i++)
    rng->s[i] = ep_splitmix64(&state);
}

uint64_t ep_fnv1a64(uint64_t hash, const void *data, size_t n_bytes)
{
  const unsigned char *p = data;
  for (size_t i = 0; i < n_bytes; i++) {
    hash ^= p[i];
    hash *= 0x100000001b3ULL;
  }
  return hash;
}
