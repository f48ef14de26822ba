/* Token routing: exact Gumbel-top-k in O(top_k) per token.
 *
 * Popularity p: uniform; Zipf p ∝ 1/(i+1)^s with i an expert's rank in a Fisher-Yates
 * permutation drawn from (seed, stream UINT64_MAX), which no token stream (id >= 0)
 * reaches; hot: the permutation's first hot_experts share hot_share, the rest share
 * 1 - hot_share.
 *
 * A token (stream = its global id) has gate logits log p_e + Gumbel(0, 1) and keeps the
 * top_k. Drawn directly: the argmax over the remaining set R is ∝ p (Walker/Vose alias
 * draws rejecting chosen experts, with tables that already exclude the two hottest
 * experts once chosen; a linear scan once rejection would be slow), and the max value is
 * Gumbel(log m_R), m_R the mass of R, truncated below the previous value:
 * v_j = log m_R - log(-log(u F(v_{j-1}))). With T_j = exp(-v_j) that is the exponential
 * race T_j = T_{j-1} + E_j / m_R, E_j = -log u ~ Exp(1), T_0 = 0: one log per draw.
 * Softmax over v_1..v_k is w_j = (1/T_j) / sum_i (1/T_i), decreasing in j. A token's
 * stream gives all its expert draws first, then its k value draws, so plans that only
 * count experts (ep__router_route_sets) skip the values and get the same sets. */
#include "ep_routing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ep_alloc.h"
#include "ep_rng.h"

/* Below this acceptance rate a linear scan beats rejection (>= 4 tries expected). */
#define EP__ROUTER_SCAN_ACCEPT 0.25
/* After this many rejections in a row, finish the draw with the exact linear scan. */
#define EP__ROUTER_MAX_REJECTS 32
/* Up to this many experts, membership in the chosen set is a bit set on the stack. */
#define EP__ROUTER_BITSET_EXPERTS 65536

typedef struct ep__alias {
  uint64_t accept; /* column i yields expert i when its 64-bit fraction is below this */
  int32_t other;   /* else this expert */
} ep__alias;

/* Alias tables: table m excludes hot[i] for every bit i set in m, so once a hot expert
 * is chosen the draws stop hitting it (under Zipf the two hottest experts cause most
 * rejections: top-8 of 256 at s = 1.2 needs 10.9 draws per token, 8.6 with this). */
#define EP__ROUTER_N_HOT 2
#define EP__ROUTER_N_TABLES (1 << EP__ROUTER_N_HOT)
_Static_assert(EP__ROUTER_N_HOT == 2, "draw_experts_impl tracks exactly two hot experts");

struct ep_router {
  int32_t n_experts;
  int32_t top_k;
  uint64_t seed;
  double *probs;                               /* [n_experts] popularity, sums to 1 */
  int32_t hot[EP__ROUTER_N_HOT];               /* most popular experts, -1 if unused */
  double scan_below[EP__ROUTER_N_TABLES];      /* scan once the remaining mass is below */
  ep__alias *alias;                            /* [N_TABLES * n_experts] Walker/Vose tables */
  const ep__alias *table[EP__ROUTER_N_TABLES]; /* table m: alias + m * n_experts */
};

/* Unbiased integer in [0, bound) (Lemire-style rejection on the low range). */
static uint64_t rng_below(ep_rng *rng, uint64_t bound)
{
  uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    uint64_t x = ep_rng_next_u64(rng);
    if (x >= threshold)
      return x % bound;
  }
}

/* Uniform in the open interval (0, 1), so -log(u) is finite and positive. */
static double rng_open01(ep_rng *rng)
{
  return ((double)(ep_rng_next_u64(rng) >> 12) + 0.5) * 0x1.0p-52;
}

ep_status ep_routing_expert_probs(const ep_routing_cfg *cfg, int32_t n_experts, double *probs)
{
  if (!cfg || !probs || n_experts <= 0) {
    ep_log_error("ep_routing_expert_probs: null argument or n_experts %d <= 0", (int)n_experts);
    return EP_ERR_INVALID;
  }
  if (cfg->kind == EP_ROUTING_UNIFORM) {
    for (int32_t e = 0; e < n_experts; e++)
      probs[e] = 1.0 / (double)n_experts;
    return EP_OK;
  }
  if (cfg->kind == EP_ROUTING_ZIPF) {
    if (!(cfg->zipf_exponent > 0.0) || !isfinite(cfg->zipf_exponent)) {
      ep_log_error("routing: zipf_exponent %g must be finite and > 0", cfg->zipf_exponent);
      return EP_ERR_INVALID;
    }
  } else if (cfg->kind == EP_ROUTING_HOT) {
    if (cfg->hot_experts < 1 || cfg->hot_experts >= n_experts) {
      ep_log_error("routing: hot_experts %d must be in 1..n_experts-1 (%d)", (int)cfg->hot_experts,
                   (int)n_experts - 1);
      return EP_ERR_INVALID;
    }
    if (!(cfg->hot_share > 0.0 && cfg->hot_share < 1.0)) {
      ep_log_error("routing: hot_share %g must be in (0, 1)", cfg->hot_share);
      return EP_ERR_INVALID;
    }
  } else {
    ep_log_error("routing: unknown routing kind %d", (int)cfg->kind);
    return EP_ERR_INVALID;
  }

  int32_t *perm = malloc((size_t)n_experts * sizeof *perm); /* [rank] = expert */
  if (!perm) {
    ep_log_error("routing: out of memory for %d experts", (int)n_experts);
    return EP_ERR_NOMEM;
  }
  for (int32_t i = 0; i < n_experts; i++)
    perm[i] = i;
  ep_rng rng;
  ep_rng_seed(&rng, cfg->seed, UINT64_MAX);
  for (int32_t i = n_experts - 1; i > 0; i--) {
    int32_t j = (int32_t)rng_below(&rng, (uint64_t)i + 1);
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }

  ep_status st = EP_OK;
  if (cfg->kind == EP_ROUTING_ZIPF) {
    double total = 0.0;
    for (int32_t i = n_experts - 1; i >= 0; i--) /* small terms first */
      total += pow((double)i + 1.0, -cfg->zipf_exponent);
    for (int32_t i = 0; i < n_experts; i++) {
      probs[perm[i]] = pow((double)i + 1.0, -cfg->zipf_exponent) / total;
      if (!(probs[perm[i]] > 0.0)) {
        /* A zero probability has no Gumbel logit; refuse rather than route oddly. */
        ep_log_error("routing: zipf_exponent %g underflows for %d experts", cfg->zipf_exponent,
                     (int)n_experts);
        st = EP_ERR_INVALID;
        break;
      }
    }
  } else {
    int32_t hot = cfg->hot_experts;
    double p_hot = cfg->hot_share / (double)hot;
    double p_cold = (1.0 - cfg->hot_share) / (double)(n_experts - hot);
    for (int32_t i = 0; i < n_experts; i++)
      probs[perm[i]] = i < hot ? p_hot : p_cold;
  }
  free(perm);
  return st;
}

/* Vose's alias method over weight[] (normalised by its sum), into table[n]. */
static ep_status build_alias(const double *weight, int32_t n, ep__alias *table)
{
  int32_t *small = malloc((size_t)n * sizeof *small);
  int32_t *large = malloc((size_t)n * sizeof *large);
  double *scaled = malloc((size_t)n * sizeof *scaled);
  if (!small || !large || !scaled) {
    free(small);
    free(large);
    free(scaled);
    return EP_ERR_NOMEM;
  }
  double total = 0.0;
  for (int32_t e = 0; e < n; e++)
    total += weight[e];
  int32_t n_small = 0, n_large = 0;
  for (int32_t e = 0; e < n; e++) {
    scaled[e] = weight[e] * (double)n / total;
    if (scaled[e] < 1.0)
      small[n_small++] = e;
    else
      large[n_large++] = e;
  }
  while (n_small > 0 && n_large > 0) {
    int32_t s = small[--n_small];
    int32_t l = large[n_large - 1];
    table[s].accept = (uint64_t)(scaled[s] * 0x1.0p64); /* scaled[s] < 1 */
    table[s].other = l;
    scaled[l] = (scaled[l] + scaled[s]) - 1.0;
    if (scaled[l] < 1.0) {
      n_large--;
      small[n_small++] = l;
    }
  }
  /* What is left is 1 up to rounding. (An excluded expert left here can come out of
   * the table; the chosen-set check rejects it like any chosen expert.) */
  while (n_large > 0) {
    int32_t l = large[--n_large];
    table[l].accept = UINT64_MAX;
    table[l].other = l;
  }
  while (n_small > 0) {
    int32_t s = small[--n_small];
    table[s].accept = UINT64_MAX;
    table[s].other = s;
  }
  free(small);
  free(large);
  free(scaled);
  return EP_OK;
}

/* Picks the hot experts (highest p, ties by id) and builds one table per subset. */
static ep_status build_tables(ep_router *r)
{
  int32_t n = r->n_experts;
  int n_hot = n > EP__ROUTER_N_HOT ? EP__ROUTER_N_HOT : 0; /* a table must keep an expert */
  for (int h = 0; h < EP__ROUTER_N_HOT; h++)
    r->hot[h] = -1;
  for (int h = 0; h < n_hot; h++) {
    int32_t best = -1;
    for (int32_t e = 0; e < n; e++) {
      int taken = 0;
      for (int i = 0; i < h; i++)
        taken |= e == r->hot[i];
      if (!taken && (best < 0 || r->probs[e] > r->probs[best]))
        best = e;
    }
    r->hot[h] = best;
  }
  double *weight = malloc((size_t)n * sizeof *weight);
  if (!weight)
    return EP_ERR_NOMEM;
  for (int m = 0; m < EP__ROUTER_N_TABLES; m++) {
    memcpy(weight, r->probs, (size_t)n * sizeof *weight);
    for (int h = 0; h < EP__ROUTER_N_HOT; h++) {
      if ((m >> h) & 1 && r->hot[h] >= 0)
        weight[r->hot[h]] = 0.0;
    }
    double mass = 0.0;
    for (int32_t e = 0; e < n; e++)
      mass += weight[e];
    /* A rejection draw from table m succeeds with probability remaining mass / mass. */
    r->scan_below[m] = EP__ROUTER_SCAN_ACCEPT * mass;
    r->table[m] = r->alias + (size_t)m * (size_t)n;
    ep_status st = build_alias(weight, n, r->alias + (size_t)m * (size_t)n);
    if (st != EP_OK) {
      free(weight);
      return st;
    }
  }
  free(weight);
  return EP_OK;
}

ep_status ep_router_init(ep_router **out, const ep_routing_cfg *cfg, int32_t n_experts,
                         int32_t top_k)
{
  if (!out)
    return EP_ERR_INVALID;
  *out = NULL;
  if (!cfg || n_experts <= 0 || top_k < 1 || top_k > n_experts) {
    ep_log_error("ep_router_init: need cfg and 1 <= top_k (%d) <= n_experts (%d)", (int)top_k,
                 (int)n_experts);
    return EP_ERR_INVALID;
  }
  if (top_k > EP_ROUTER_MAX_TOP_K) {
    ep_log_error("ep_router_init: top_k %d above the supported %d", (int)top_k,
                 EP_ROUTER_MAX_TOP_K);
    return EP_ERR_UNSUPPORTED;
  }
  ep_router *r = calloc(1, sizeof *r);
  if (!r)
    return EP_ERR_NOMEM;
  r->n_experts = n_experts;
  r->top_k = top_k;
  r->seed = cfg->seed;
  r->probs = malloc((size_t)n_experts * sizeof *r->probs);
  r->alias = malloc((size_t)EP__ROUTER_N_TABLES * (size_t)n_experts * sizeof *r->alias);
  ep_status st = EP_ERR_NOMEM;
  if (!r->probs || !r->alias) {
    ep_log_error("ep_router_init: out of memory for %d experts", (int)n_experts);
    goto fail;
  }
  st = ep_routing_expert_probs(cfg, n_experts, r->probs);
  if (st != EP_OK)
    goto fail;
  st = build_tables(r);
  if (st != EP_OK) {
    ep_log_error("ep_router_init: out of memory for the alias tables");
    goto fail;
  }
  *out = r;
  return EP_OK;
fail:
  ep_router_free(r);
  return st;
}

void ep_router_free(ep_router *router)
{
  if (!router)
    return;
  EP__FREE_ALL(router->probs, router->alias, router);
}

int32_t ep_router_n_experts(const ep_router *router)
{
  return router ? router->n_experts : 0;
}
int32_t ep_router_top_k(const ep_router *router)
{
  return router ? router->top_k : 0;
}

/* Is e in sorted[0..n-1]? */
static int in_sorted(const int32_t *sorted, int32_t n, int32_t e)
{
  int32_t lo = 0, hi = n;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] < e)
      lo = mid + 1;
    else if (sorted[mid] > e)
      hi = mid;
    else
      return 1;
  }
  return 0;
}

static void insert_sorted(int32_t *sorted, int32_t n, int32_t e)
{
  int32_t i = n;
  while (i > 0 && sorted[i - 1] > e) {
    sorted[i] = sorted[i - 1];
    i--;
  }
  sorted[i] = e;
}

/* Exact draw ∝ p over the experts not in sorted[0..n_chosen-1]; *mass_out gets their
 * total mass, summed afresh so it stays accurate when it is small. O(n_experts): only
 * reached when chosen experts other than the two hottest hold most of the mass. */
static int32_t draw_by_scan(const ep_router *r, const int32_t *sorted, int32_t n_chosen,
                            ep_rng *rng, double *mass_out)
{
  double mass = 0.0;
  int32_t c = 0, last = -1;
  for (int32_t e = 0; e < r->n_experts; e++) {
    if (c < n_chosen && sorted[c] == e) {
      c++;
      continue;
    }
    mass += r->probs[e];
    last = e;
  }
  *mass_out = mass;
  double target = ep_rng_uniform(rng) * mass;
  double acc = 0.0;
  c = 0;
  for (int32_t e = 0; e < r->n_experts; e++) {
    if (c < n_chosen && sorted[c] == e) {
      c++;
      continue;
    }
    acc += r->probs[e];
    if (target < acc)
      return e;
  }
  return last; /* rounding left target at the very top */
}

/* One draw from table[n]: x * n / 2^64 picks the column, the low 64 bits of x * n are
 * the uniform fraction within it (n < 2^31, so two 32x32-bit products suffice). */
static inline int32_t alias_draw(const ep__alias *table, uint64_t n, ep_rng *rng)
{
  uint64_t x = ep_rng_next_u64(rng);
  uint64_t a = (x >> 32) * n, b = (x & 0xffffffffu) * n;
  uint64_t mid = a + (b >> 32);
  uint32_t col = (uint32_t)(mid >> 32);
  uint64_t frac = (mid << 32) | (b & 0xffffffffu);
  ep__alias al = table[col];
  return frac < al.accept ? (int32_t)col : al.other;
}

static inline int bit_test(const uint64_t *bits, int32_t e)
{
  return (int)((bits[e >> 6] >> (e & 63)) & 1u);
}

/* The token's experts in draw order (= decreasing gate value); mass_at[j] is the
 * remaining mass draw j was taken from. Leaves rng where the value draws start.
 * chosen: an all-zero bit set over the experts, left all zero again; NULL above
 * EP__ROUTER_BITSET_EXPERTS, where membership is a binary search in sorted[] instead.
 * Each draw takes an expert ∝ p over the rest: from the alias table that excludes the
 * chosen hot experts, rejecting other chosen ones, or by a linear scan once rejection
 * would be slow. The switch depends only on what was drawn so far: still exact.
 * use_bits is a constant at both call sites (bit set, or sorted list above the limit). */
static inline void draw_experts_impl(const ep_router *r, ep_rng *rng, int32_t *experts,
                                     int32_t *sorted, double *mass_at, uint64_t *chosen,
                                     const int use_bits)
{
  /* Locals: stores through experts[] could alias the router's int32 fields. */
  const int32_t k = r->top_k, hot0 = r->hot[0], hot1 = r->hot[1];
  const uint64_t n = (uint64_t)r->n_experts;
  const double *probs = r->probs;
  int have_sorted = !use_bits; /* sorted[0..j-1] is maintained */
  int table = 0;               /* bit h set: hot[h] chosen, so table `table` excludes it */
  const ep__alias *tab = r->table[0];
  double chosen_mass = 0.0;
  for (int32_t j = 0; j < k; j++) {
    double mass = 1.0 - chosen_mass;
    int32_t e = -1;
    if (mass >= r->scan_below[table]) {
      for (int tries = 0; tries < EP__ROUTER_MAX_REJECTS; tries++) {
        int32_t cand = alias_draw(tab, n, rng);
        if (use_bits ? !bit_test(chosen, cand) : !in_sorted(sorted, j, cand)) {
          e = cand;
          break;
        }
      }
    }
    if (e < 0) {
      if (!have_sorted) {
        for (int32_t i = 0; i < j; i++)
          insert_sorted(sorted, i, experts[i]);
        have_sorted = 1;
      }
      e = draw_by_scan(r, sorted, j, rng, &mass);
    }
    experts[j] = e;
    mass_at[j] = mass;
    if (have_sorted)
      insert_sorted(sorted, j, e);
    if (use_bits)
      chosen[e >> 6] |= (uint64_t)1 << (e & 63);
    table |= (e == hot0) | (e == hot1) << 1; /* branch-free: changes at random */
    tab = r->table[table];
    chosen_mass += probs[e];
  }
  if (use_bits) {
    for (int32_t j = 0; j < k; j++)
      chosen[experts[j] >> 6] = 0;
  }
}

static void draw_experts(const ep_router *r, ep_rng *rng, int32_t *experts, int32_t *sorted,
                         double *mass_at, uint64_t *chosen)
{
  if (chosen)
    draw_experts_impl(r, rng, experts, sorted, mass_at, chosen, 1);
  else
    draw_experts_impl(r, rng, experts, sorted, mass_at, NULL, 0);
}

/* One token's experts; with_values also draws the gate values, writes the weights
 * (when weights is not NULL) and orders experts whose float weights tie by id. */
static void route_token(const ep_router *r, int64_t token, int32_t *experts, float *weights,
                        int with_values, int32_t *sorted, double *race, uint64_t *chosen)
{
  int32_t k = r->top_k;
  ep_rng rng;
  ep_rng_seed(&rng, r->seed, (uint64_t)token);
  draw_experts(r, &rng, experts, sorted, race, chosen);
  if (!with_values)
    return;

  /* Values: T_j = T_{j-1} + E_j / m_j = exp(-v_j); weight_j ∝ exp(v_j) = 1 / T_j. */
  double arrival = 0.0, inv_sum = 0.0;
  for (int32_t j = 0; j < k; j++) {
    arrival += -log(rng_open01(&rng)) / race[j];
    race[j] = arrival;
  }
  for (int32_t j = 0; j < k; j++) {
    race[j] = 1.0 / race[j];
    inv_sum += race[j];
  }
  double scale = 1.0 / inv_sum;
  /* Weights are non-increasing by construction; equal floats are ordered by expert id,
   * so the expert order is the same whether or not weights are requested. */
  float w_prev = 0.0f;
  for (int32_t j = 0; j < k; j++) {
    float w = (float)(race[j] * scale);
    if (weights)
      weights[j] = w;
    if (j > 0 && w == w_prev) {
      int32_t e = experts[j];
      int32_t i = j;
      while (i > 0 && experts[i - 1] > e && (float)(race[i - 1] * scale) == w) {
        experts[i] = experts[i - 1];
        i--;
      }
      experts[i] = e;
    }
    w_prev = w;
  }
}

static int route_args_ok(const ep_router *router, int64_t first_token, int64_t n_tokens,
                         const int32_t *experts)
{
  if (!router || !experts || first_token < 0 || n_tokens <= 0 ||
      n_tokens > INT64_MAX - first_token) {
    if (n_tokens != 0)
      ep_log_error("ep_router_route: invalid arguments (first_token %lld, n_tokens %lld)",
                   (long long)first_token, (long long)n_tokens);
    return 0;
  }
  return 1;
}

/* Zeroes the part of bits[] the router's experts need, or returns NULL above the limit. */
static uint64_t *chosen_set(const ep_router *r, uint64_t *bits)
{
  if (r->n_experts > EP__ROUTER_BITSET_EXPERTS)
    return NULL;
  memset(bits, 0, (size_t)(r->n_experts + 63) / 64 * sizeof *bits);
  return bits;
}

/* Routes tokens [first_token, first_token + n_tokens) through route_token. */
static void route_range(const ep_router *router, int64_t first_token, int64_t n_tokens,
                        int32_t *experts, float *weights, int with_values)
{
  if (!route_args_ok(router, first_token, n_tokens, experts))
    return;
  int32_t sorted[EP_ROUTER_MAX_TOP_K];
  double race[EP_ROUTER_MAX_TOP_K];
  uint64_t bits[EP__ROUTER_BITSET_EXPERTS / 64];
  uint64_t *chosen = chosen_set(router, bits);
  int32_t k = router->top_k;
  for (int64_t t = 0; t < n_tokens; t++) {
    size_t off = (size_t)t * (size_t)k;
    route_token(router, first_token + t, experts + off, weights ? weights + off : NULL, with_values,
                sorted, race, chosen);
  }
}

void ep_router_route(const ep_router *router, int64_t first_token, int64_t n_tokens,
                     int32_t *experts, float *weights)
{
  route_range(router, first_token, n_tokens, experts, weights, 1);
}

/* Internal (declared in ep_plan.c): each token's expert set, in draw order, without
 * the value draws. The sets equal ep_router_route's; only the order of experts whose
 * float weights tie may differ. Counting plans need nothing more, at half the cost. */
void ep__router_route_sets(const ep_router *router, int64_t first_token, int64_t n_tokens,
                           int32_t *experts);
void ep__router_route_sets(const ep_router *router, int64_t first_token, int64_t n_tokens,
                           int32_t *experts)
{
  route_range(router, first_token, n_tokens, experts, NULL, 0);
}
