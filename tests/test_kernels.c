/* Tests for kernels/: the dtype table, placement tables, expert popularity, the
 * Gumbel-top-k router (properties, determinism, and statistical agreement with a
 * brute-force reference that draws every expert's Gumbel), the dispatch algorithm
 * table, and the dispatch plan against brute-force counts and an independent
 * capacity admission, with the direct algorithm's stages. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ep_dispatch.h"
#include "ep_dtype.h"
#include "ep_placement.h"
#include "ep_plan.h"
#include "ep_rng.h"
#include "ep_routing.h"

/* ---------- dtypes ---------- */

static void test_dtype(void)
{
  CHECK_EQ_INT(EP_DTYPE_COUNT, 3);
  CHECK_EQ_INT(EP_DTYPE_PAYLOAD_COUNT, 2);
  CHECK_EQ_INT(ep_dtype_element_bytes(EP_DTYPE_BF16), 2);
  CHECK_EQ_INT(ep_dtype_element_bytes(EP_DTYPE_FP8), 1);
  CHECK_EQ_INT(ep_dtype_element_bytes(EP_DTYPE_F32), 4);
  CHECK_EQ_INT(ep_dtype_element_bytes((ep_dtype)EP_DTYPE_COUNT), 0);
  /* DeepEP's numbers: 7168 bf16 values, or 7168 e4m3 values + 56 fp32 scales. */
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_BF16, 7168), 14336);
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_FP8, 7168), 7392);
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_FP8, 128), 132);
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_F32, 100), 400);
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_BF16, 100), 200);
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_FP8, 100), -1); /* partial scale block */
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_FP8, 7168 + 64), -1);
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_BF16, 0), -1);
  CHECK_EQ_INT(ep_dtype_bytes_per_token(EP_DTYPE_FP8, -128), -1);
  CHECK_EQ_INT(ep_dtype_bytes_per_token((ep_dtype)EP_DTYPE_COUNT, 128), -1);
  CHECK(strcmp(ep_dtype_name(EP_DTYPE_BF16), "bf16") == 0);
  CHECK(strcmp(ep_dtype_name(EP_DTYPE_FP8), "fp8") == 0);
  CHECK(strcmp(ep_dtype_name(EP_DTYPE_F32), "f32") == 0);
  CHECK(strcmp(ep_dtype_name((ep_dtype)-1), "unknown") == 0);
  /* Names round-trip; the payload list is the table's prefix, NULL-terminated. */
  for (int d = 0; d < EP_DTYPE_COUNT; d++) {
    ep_dtype got = (ep_dtype)-1;
    CHECK_EQ_INT(ep_dtype_from_name(ep_dtype_name((ep_dtype)d), &got), EP_OK);
    CHECK_EQ_INT(got, d);
    if (d < EP_DTYPE_PAYLOAD_COUNT)
      CHECK(strcmp(ep_dtype_payload_names[d], ep_dtype_name((ep_dtype)d)) == 0);
  }
  CHECK(ep_dtype_payload_names[EP_DTYPE_PAYLOAD_COUNT] == NULL);
  ep_dtype kept = EP_DTYPE_FP8;
  CHECK_EQ_INT(ep_dtype_from_name("BF16", &kept), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_dtype_from_name("fp16", &kept), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_dtype_from_name(NULL, &kept), EP_ERR_INVALID);
  CHECK_EQ_INT(kept, EP_DTYPE_FP8);
}

/* ---------- placement ---------- */

static void check_placement_table(ep_placement_kind kind, int32_t n_experts, int32_t n_ranks,
                                  const int32_t *rank_of, const int32_t *slot_of,
                                  const int32_t *expert_of)
{
  ep_placement pl;
  CHECK_EQ_INT(ep_placement_init(&pl, kind, n_experts, n_ranks), EP_OK);
  CHECK_EQ_INT(pl.n_experts, n_experts);
  CHECK_EQ_INT(pl.n_ranks, n_ranks);
  CHECK_EQ_INT(pl.experts_per_rank, n_experts / n_ranks);
  for (int32_t e = 0; e < n_experts; e++) {
    CHECK_EQ_INT(pl.rank_of_expert[e], rank_of[e]);
    CHECK_EQ_INT(pl.slot_of_expert[e], slot_of[e]);
    CHECK_EQ_INT(pl.expert_of_slot[e], expert_of[e]);
  }
  ep_placement_free(&pl);
  CHECK(pl.rank_of_expert == NULL && pl.n_experts == 0);
  ep_placement_free(&pl); /* freeing a freed (zeroed) placement is harmless */
}

static void test_placement(void)
{
  /* Hand-derived: contiguous gives rank r experts 2r, 2r+1; round robin gives e % 4. */
  const int32_t c_rank[8] = {0, 0, 1, 1, 2, 2, 3, 3};
  const int32_t c_slot[8] = {0, 1, 0, 1, 0, 1, 0, 1};
  const int32_t c_eos[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  check_placement_table(EP_PLACEMENT_CONTIGUOUS, 8, 4, c_rank, c_slot, c_eos);
  const int32_t r_rank[8] = {0, 1, 2, 3, 0, 1, 2, 3};
  const int32_t r_slot[8] = {0, 0, 0, 0, 1, 1, 1, 1};
  const int32_t r_eos[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  check_placement_table(EP_PLACEMENT_ROUND_ROBIN, 8, 4, r_rank, r_slot, r_eos);
  const int32_t r6_rank[6] = {0, 1, 2, 0, 1, 2};
  const int32_t r6_slot[6] = {0, 0, 0, 1, 1, 1};
  const int32_t r6_eos[6] = {0, 3, 1, 4, 2, 5};
  check_placement_table(EP_PLACEMENT_ROUND_ROBIN, 6, 3, r6_rank, r6_slot, r6_eos);
  const int32_t c6_rank[6] = {0, 0, 0, 1, 1, 1};
  const int32_t c6_slot[6] = {0, 1, 2, 0, 1, 2};
  const int32_t c6_eos[6] = {0, 1, 2, 3, 4, 5};
  check_placement_table(EP_PLACEMENT_CONTIGUOUS, 6, 2, c6_rank, c6_slot, c6_eos);
  const int32_t one_rank[3] = {0, 0, 0}, one_slot[3] = {0, 1, 2}, one_eos[3] = {0, 1, 2};
  check_placement_table(EP_PLACEMENT_ROUND_ROBIN, 3, 1, one_rank, one_slot, one_eos);

  ep_placement pl;
  CHECK_EQ_INT(ep_placement_init(&pl, EP_PLACEMENT_CONTIGUOUS, 7, 4), EP_ERR_INVALID);
  CHECK(pl.rank_of_expert == NULL && pl.slot_of_expert == NULL && pl.expert_of_slot == NULL);
  CHECK_EQ_INT(ep_placement_init(&pl, EP_PLACEMENT_CONTIGUOUS, 0, 4), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_placement_init(&pl, EP_PLACEMENT_CONTIGUOUS, 8, 0), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_placement_init(&pl, (ep_placement_kind)42, 8, 4), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_placement_init(NULL, EP_PLACEMENT_CONTIGUOUS, 8, 4), EP_ERR_INVALID);
  ep_placement_free(NULL);
}

/* ---------- expert popularity ---------- */

static int cmp_double_desc(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

static void test_expert_probs(void)
{
  enum { N = 50 };
  double p[N], sorted[N], zipf[N];
  ep_routing_cfg cfg = EP_ROUTING_CFG_INIT;

  cfg.kind = EP_ROUTING_UNIFORM;
  CHECK_EQ_INT(ep_routing_expert_probs(&cfg, N, p), EP_OK);
  for (int i = 0; i < N; i++)
    CHECK_REL(p[i], 1.0 / N, 1e-15);

  cfg.kind = EP_ROUTING_ZIPF;
  cfg.zipf_exponent = 1.2;
  cfg.seed = 99;
  CHECK_EQ_INT(ep_routing_expert_probs(&cfg, N, zipf), EP_OK);
  double sum = 0.0;
  for (int i = 0; i < N; i++)
    sum += zipf[i];
  CHECK_REL(sum, 1.0, 1e-12);
  memcpy(sorted, zipf, sizeof sorted);
  qsort(sorted, N, sizeof sorted[0], cmp_double_desc);
  for (int i = 0; i < N; i++)
    CHECK_REL(sorted[i] / sorted[0], pow(i + 1.0, -1.2), 1e-12);
  /* The popularity order is a seeded permutation, not the expert ids. */
  int in_id_order = 1;
  for (int i = 1; i < N; i++)
    in_id_order &= zipf[i] < zipf[i - 1];
  CHECK(!in_id_order);
  cfg.seed = 100;
  CHECK_EQ_INT(ep_routing_expert_probs(&cfg, N, p), EP_OK);
  CHECK(memcmp(p, zipf, sizeof p) != 0);
  cfg.seed = 99;

  /* The popularity order is Fisher-Yates on stream UINT64_MAX of the seed, each index
   * drawn without bias by rejecting x < 2^64 mod bound. Regenerated here with ep_rng. */
  {
    int32_t perm[N];
    for (int i = 0; i < N; i++)
      perm[i] = i;
    ep_rng rng;
    ep_rng_seed(&rng, 99, UINT64_MAX);
    for (int i = N - 1; i > 0; i--) {
      uint64_t bound = (uint64_t)i + 1, x;
      do
        x = ep_rng_next_u64(&rng);
      while (x < (0 - bound) % bound);
      int j = (int)(x % bound);
      int32_t t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    double h = 0.0;
    for (int i = N - 1; i >= 0; i--)
      h += pow(i + 1.0, -1.2);
    for (int i = 0; i < N; i++)
      CHECK_REL(zipf[perm[i]], pow(i + 1.0, -1.2) / h, 1e-12);
  }

  /* Hot experts are the first hot_experts of the same permutation: Zipf's top ranks. */
  cfg.kind = EP_ROUTING_HOT;
  cfg.hot_experts = 5;
  cfg.hot_share = 0.7;
  CHECK_EQ_INT(ep_routing_expert_probs(&cfg, N, p), EP_OK);
  sum = 0.0;
  int n_hot = 0;
  for (int i = 0; i < N; i++) {
    sum += p[i];
    int zipf_top5 = zipf[i] >= sorted[4];
    if (zipf_top5) {
      n_hot++;
      CHECK_REL(p[i], 0.7 / 5, 1e-15);
    } else {
      CHECK_REL(p[i], 0.3 / 45, 1e-15);
    }
  }
  CHECK_EQ_INT(n_hot, 5);
  CHECK_REL(sum, 1.0, 1e-12);

  /* Invalid arguments are refused, never fatal. */
  ep_routing_cfg bad = cfg;
  bad.kind = EP_ROUTING_ZIPF;
  bad.zipf_exponent = 0.0;
  CHECK_EQ_INT(ep_routing_expert_probs(&bad, N, p), EP_ERR_INVALID);
  bad.zipf_exponent = NAN;
  CHECK_EQ_INT(ep_routing_expert_probs(&bad, N, p), EP_ERR_INVALID);
  bad.zipf_exponent = 1e6; /* every probability but one underflows */
  CHECK_EQ_INT(ep_routing_expert_probs(&bad, N, p), EP_ERR_INVALID);
  bad = cfg;
  bad.hot_experts = 0;
  CHECK_EQ_INT(ep_routing_expert_probs(&bad, N, p), EP_ERR_INVALID);
  bad.hot_experts = N;
  CHECK_EQ_INT(ep_routing_expert_probs(&bad, N, p), EP_ERR_INVALID);
  bad = cfg;
  bad.hot_share = 1.0;
  CHECK_EQ_INT(ep_routing_expert_probs(&bad, N, p), EP_ERR_INVALID);
  bad.hot_share = 0.0;
  CHECK_EQ_INT(ep_routing_expert_probs(&bad, N, p), EP_ERR_INVALID);
  bad = cfg;
  bad.kind = (ep_routing_kind)17;
  CHECK_EQ_INT(ep_routing_expert_probs(&bad, N, p), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_routing_expert_probs(&cfg, 0, p), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_routing_expert_probs(NULL, N, p), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_routing_expert_probs(&cfg, N, NULL), EP_ERR_INVALID);
}

/* ---------- router properties and determinism ---------- */

static ep_routing_cfg make_cfg(ep_routing_kind kind, double zipf_s, int32_t hot, double share,
                               uint64_t seed)
{
  ep_routing_cfg cfg = EP_ROUTING_CFG_INIT;
  cfg.kind = kind;
  cfg.zipf_exponent = zipf_s;
  cfg.hot_experts = hot;
  cfg.hot_share = share;
  cfg.seed = seed;
  return cfg;
}

static void check_router_output(const int32_t *ex, const float *w, int64_t n_tokens,
                                int32_t n_experts, int32_t k)
{
  int64_t bad_range = 0, bad_distinct = 0, bad_weight = 0, bad_sum = 0, bad_order = 0;
  for (int64_t t = 0; t < n_tokens; t++) {
    const int32_t *e = ex + t * k;
    const float *wt = w + t * k;
    double sum = 0.0;
    for (int32_t j = 0; j < k; j++) {
      bad_range += e[j] < 0 || e[j] >= n_experts;
      for (int32_t i = 0; i < j; i++)
        bad_distinct += e[i] == e[j];
      bad_weight += !(wt[j] > 0.0f);
      sum += wt[j];
      if (j > 0)
        bad_order += wt[j] > wt[j - 1] || (wt[j] == wt[j - 1] && e[j] < e[j - 1]);
    }
    bad_sum += !(fabs(sum - 1.0) <= 1e-5);
  }
  CHECK_EQ_INT(bad_range, 0);
  CHECK_EQ_INT(bad_distinct, 0);
  CHECK_EQ_INT(bad_weight, 0);
  CHECK_EQ_INT(bad_sum, 0);
  CHECK_EQ_INT(bad_order, 0);
}

static void test_router_properties(void)
{
  const struct {
    ep_routing_cfg cfg;
    int32_t n_experts, top_k;
  } cases[] = {
      {make_cfg(EP_ROUTING_UNIFORM, 1.0, 1, 0.5, 1), 64, 8},
      {make_cfg(EP_ROUTING_ZIPF, 1.2, 1, 0.5, 2), 256, 8},
      {make_cfg(EP_ROUTING_HOT, 1.0, 2, 0.95, 3), 32, 6},
      {make_cfg(EP_ROUTING_ZIPF, 2.0, 1, 0.5, 4), 16, 16}, /* top_k == n_experts */
      {make_cfg(EP_ROUTING_ZIPF, 1.0, 1, 0.5, 5), 5, 1},
      {make_cfg(EP_ROUTING_UNIFORM, 1.0, 1, 0.5, 6), 1, 1},
      {make_cfg(EP_ROUTING_HOT, 1.0, 1, 0.5, 7), 2, 2},
      {make_cfg(EP_ROUTING_ZIPF, 0.8, 1, 0.5, 8), 40, 24},    /* top_k above 16 */
      {make_cfg(EP_ROUTING_ZIPF, 1.1, 1, 0.5, 9), 70000, 6},  /* no bit set: sorted path */
      {make_cfg(EP_ROUTING_HOT, 1.0, 3, 0.97, 10), 70000, 5}, /* ... and its scan */
  };
  const int64_t first = 123456789;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int32_t n = cases[c].n_experts, k = cases[c].top_k;
    /* Huge expert counts take the O(n_experts) scan path: fewer tokens. */
    const int64_t n_tokens = n > 1024 ? 200 : 20000;
    size_t len = (size_t)n_tokens * (size_t)k;
    ep_router *r = NULL, *r2 = NULL, *r_other = NULL;
    CHECK_EQ_INT(ep_router_init(&r, &cases[c].cfg, n, k), EP_OK);
    CHECK_EQ_INT(ep_router_init(&r2, &cases[c].cfg, n, k), EP_OK);
    ep_routing_cfg other = cases[c].cfg;
    other.seed += 1000;
    CHECK_EQ_INT(ep_router_init(&r_other, &other, n, k), EP_OK);
    if (!r || !r2 || !r_other)
      return;
    CHECK_EQ_INT(ep_router_n_experts(r), n);
    CHECK_EQ_INT(ep_router_top_k(r), k);
    int32_t *ex = malloc(len * sizeof *ex), *ex2 = malloc(len * sizeof *ex2);
    float *w = malloc(len * sizeof *w), *w2 = malloc(len * sizeof *w2);
    if (!ex || !ex2 || !w || !w2)
      return;

    ep_router_route(r, first, n_tokens, ex, w);
    check_router_output(ex, w, n_tokens, n, k);
    if (k == n) { /* every expert chosen once per token */
      int64_t total = 0;
      for (size_t i = 0; i < len; i++)
        total += ex[i];
      CHECK_EQ_INT(total, n_tokens * (int64_t)n * (n - 1) / 2);
    }

    /* Same seed, other router instance: byte-identical. */
    ep_router_route(r2, first, n_tokens, ex2, w2);
    CHECK(memcmp(ex, ex2, len * sizeof *ex) == 0);
    CHECK(memcmp(w, w2, len * sizeof *w) == 0);
    /* Two halves equal one call; no weights gives the same experts. */
    memset(ex2, 0xff, len * sizeof *ex2);
    int64_t half = n_tokens / 2 + 7;
    ep_router_route(r, first, half, ex2, w2);
    ep_router_route(r, first + half, n_tokens - half, ex2 + (size_t)half * (size_t)k,
                    w2 + (size_t)half * (size_t)k);
    CHECK(memcmp(ex, ex2, len * sizeof *ex) == 0);
    CHECK(memcmp(w, w2, len * sizeof *w) == 0);
    memset(ex2, 0xff, len * sizeof *ex2);
    ep_router_route(r, first, n_tokens, ex2, NULL);
    CHECK(memcmp(ex, ex2, len * sizeof *ex) == 0);
    /* Another seed gives other routing (one expert, or top-1, has weights of 1 only). */
    ep_router_route(r_other, first, n_tokens, ex2, w2);
    if (k > 1)
      CHECK(memcmp(w, w2, len * sizeof *w) != 0);
    if (n > k)
      CHECK(memcmp(ex, ex2, len * sizeof *ex) != 0);

    free(ex);
    free(ex2);
    free(w);
    free(w2);
    ep_router_free(r);
    ep_router_free(r2);
    ep_router_free(r_other);
  }

  ep_routing_cfg cfg = EP_ROUTING_CFG_INIT;
  ep_router *r = (ep_router *)&cfg; /* must be reset to NULL on failure */
  CHECK_EQ_INT(ep_router_init(&r, &cfg, 8, 0), EP_ERR_INVALID);
  CHECK(r == NULL);
  CHECK_EQ_INT(ep_router_init(&r, &cfg, 8, 9), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_router_init(&r, &cfg, 0, 1), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_router_init(&r, NULL, 8, 2), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_router_init(NULL, &cfg, 8, 2), EP_ERR_INVALID);
  /* Per-token scratch is on the stack: top_k is capped (a documented limit). */
  CHECK_EQ_INT(ep_router_init(&r, &cfg, 2000, 1025), EP_ERR_UNSUPPORTED);
  CHECK(r == NULL);
  cfg.kind = EP_ROUTING_HOT;
  cfg.hot_experts = 8;
  CHECK_EQ_INT(ep_router_init(&r, &cfg, 8, 2), EP_ERR_INVALID);
  CHECK(r == NULL);
  /* Invalid ranges are refused without writing (the call has no status to return). */
  cfg.hot_experts = 2;
  CHECK_EQ_INT(ep_router_init(&r, &cfg, 8, 2), EP_OK);
  int32_t sentinel[4] = {-7, -7, -7, -7};
  ep_router_route(r, -1, 2, sentinel, NULL);
  ep_router_route(r, INT64_MAX, 2, sentinel, NULL);
  CHECK(sentinel[0] == -7 && sentinel[3] == -7);
  ep_router_route(r, 5, 2, sentinel, NULL);
  CHECK(sentinel[0] >= 0 && sentinel[3] >= 0);
  ep_router_free(r);
  ep_router_free(NULL);
}

/* ---------- statistical agreement with brute-force Gumbel top-k ---------- */

/* The reference's own generator (splitmix64 sequence), independent of ep_rng. */
static uint64_t ref_next(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* One token the slow way: n_experts Gumbel draws, full sort by logit, softmax of the
 * top_k logits. */
static void ref_route(const double *log_p, int32_t n, int32_t k, uint64_t *state, double *logit,
                      int32_t *order, int32_t *ex, double *w)
{
  for (int32_t e = 0; e < n; e++) {
    double u = ((double)(ref_next(state) >> 11) + 0.5) / 9007199254740992.0;
    logit[e] = log_p[e] - log(-log(u));
    order[e] = e;
  }
  for (int32_t i = 1; i < n; i++) { /* insertion sort, decreasing logit */
    int32_t e = order[i], j = i;
    while (j > 0 && logit[order[j - 1]] < logit[e]) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = e;
  }
  double sum = 0.0;
  for (int32_t j = 0; j < k; j++) {
    ex[j] = order[j];
    w[j] = exp(logit[order[j]] - logit[order[0]]);
    sum += w[j];
  }
  for (int32_t j = 0; j < k; j++)
    w[j] /= sum;
}

/* |a - b| within 5 standard deviations of the difference of two independent
 * Binomial(n, p) counts, p estimated from both, plus one count of slack. */
static int counts_agree(int64_t a, int64_t b, int64_t n)
{
  double p = (double)(a + b) / (2.0 * (double)n);
  double sigma = sqrt(2.0 * (double)n * p * (1.0 - p));
  return fabs((double)(a - b)) <= 5.0 * sigma + 1.0;
}

static void test_router_statistics(ep_routing_cfg cfg, int32_t n, int32_t k, int64_t n_tokens)
{
  double *p = malloc((size_t)n * sizeof *p), *log_p = malloc((size_t)n * sizeof *log_p);
  double *logit = malloc((size_t)n * sizeof *logit), *ref_w = malloc((size_t)k * sizeof *ref_w);
  int32_t *order = malloc((size_t)n * sizeof *order), *ref_ex = malloc((size_t)k * sizeof *ref_ex);
  int64_t *cnt = calloc((size_t)n * 4, sizeof *cnt); /* router in, ref in, router top1, ref top1 */
  double *wstat = calloc((size_t)k * 4, sizeof *wstat); /* sum and sum of squares, both sides */
  int32_t *ex = malloc((size_t)n_tokens * (size_t)k * sizeof *ex);
  float *w = malloc((size_t)n_tokens * (size_t)k * sizeof *w);
  ep_router *r = NULL;
  CHECK_EQ_INT(ep_router_init(&r, &cfg, n, k), EP_OK);
  CHECK_EQ_INT(ep_routing_expert_probs(&cfg, n, p), EP_OK);
  if (!p || !log_p || !logit || !ref_w || !order || !ref_ex || !cnt || !wstat || !ex || !w || !r)
    return;
  for (int32_t e = 0; e < n; e++)
    log_p[e] = log(p[e]);

  ep_router_route(r, 0, n_tokens, ex, w);
  uint64_t state = 0x5eed0f7e57ULL;
  for (int64_t t = 0; t < n_tokens; t++) {
    ref_route(log_p, n, k, &state, logit, order, ref_ex, ref_w);
    cnt[4 * ex[t * k] + 2]++;
    cnt[4 * ref_ex[0] + 3]++;
    for (int32_t j = 0; j < k; j++) {
      cnt[4 * ex[t * k + j] + 0]++;
      cnt[4 * ref_ex[j] + 1]++;
      double a = w[t * k + j], b = ref_w[j];
      wstat[4 * j + 0] += a;
      wstat[4 * j + 1] += a * a;
      wstat[4 * j + 2] += b;
      wstat[4 * j + 3] += b * b;
    }
  }
  int bad_in = 0, bad_top1 = 0, bad_w = 0;
  for (int32_t e = 0; e < n; e++) {
    bad_in += !counts_agree(cnt[4 * e + 0], cnt[4 * e + 1], n_tokens);
    bad_top1 += !counts_agree(cnt[4 * e + 2], cnt[4 * e + 3], n_tokens);
  }
  /* Mean weight at each position: 5 sigma of the difference of two sample means. */
  for (int32_t j = 0; j < k; j++) {
    double nt = (double)n_tokens;
    double ma = wstat[4 * j] / nt, mb = wstat[4 * j + 2] / nt;
    double va = wstat[4 * j + 1] / nt - ma * ma, vb = wstat[4 * j + 3] / nt - mb * mb;
    double sigma = sqrt((va + vb) / nt);
    if (!(fabs(ma - mb) <= 5.0 * sigma + 1e-7)) {
      fprintf(stderr, "position %d: mean weight %.6f vs reference %.6f (sigma %.2e)\n", (int)j, ma,
              mb, sigma);
      bad_w++;
    }
  }
  if (bad_in || bad_top1) {
    for (int32_t e = 0; e < n; e++)
      fprintf(stderr, "expert %d p=%.4f in %lld/%lld top1 %lld/%lld\n", (int)e, p[e],
              (long long)cnt[4 * e], (long long)cnt[4 * e + 1], (long long)cnt[4 * e + 2],
              (long long)cnt[4 * e + 3]);
  }
  CHECK_EQ_INT(bad_in, 0);
  CHECK_EQ_INT(bad_top1, 0);
  CHECK_EQ_INT(bad_w, 0);

  ep_router_free(r);
  free(p);
  free(log_p);
  free(logit);
  free(ref_w);
  free(order);
  free(ref_ex);
  free(cnt);
  free(wstat);
  free(ex);
  free(w);
}

/* Closed forms: uniform top-k includes each expert with probability k/n and ranks it
 * first with 1/n; top-2 includes e with p_e + sum_{f != e} p_f p_e / (1 - p_f). Each
 * count is Binomial(N, pi): within 5 sigma plus one count. */
static int count_matches(int64_t count, double pi, int64_t n)
{
  double sigma = sqrt((double)n * pi * (1.0 - pi));
  return fabs((double)count - (double)n * pi) <= 5.0 * sigma + 1.0;
}

/* Routes n_tokens tokens (no weights) and counts, per expert, the tokens that
 * picked it (in[]) and those that picked it first (first[]). 0 when setup failed. */
static int route_counts(const ep_routing_cfg *cfg, int32_t n_experts, int32_t k, int64_t n_tokens,
                        int64_t *in, int64_t *first)
{
  ep_router *r = NULL;
  int32_t *ex = malloc((size_t)n_tokens * (size_t)k * sizeof *ex);
  CHECK_EQ_INT(ep_router_init(&r, cfg, n_experts, k), EP_OK);
  const int ok = r && ex;
  if (ok) {
    ep_router_route(r, 0, n_tokens, ex, NULL);
    memset(in, 0, (size_t)n_experts * sizeof *in);
    memset(first, 0, (size_t)n_experts * sizeof *first);
    for (int64_t t = 0; t < n_tokens; t++) {
      first[ex[t * k]]++;
      for (int32_t j = 0; j < k; j++)
        in[ex[t * k + j]]++;
    }
  }
  ep_router_free(r);
  free(ex);
  return ok;
}

static void test_router_closed_forms(void)
{
  const int64_t n_tokens = 100000;
  {
    enum { N = 20, K = 5 };
    ep_routing_cfg cfg = make_cfg(EP_ROUTING_UNIFORM, 1.0, 1, 0.5, 21);
    int64_t in[N], first[N];
    if (!route_counts(&cfg, N, K, n_tokens, in, first))
      return;
    int bad = 0;
    for (int e = 0; e < N; e++)
      bad += !count_matches(in[e], (double)K / N, n_tokens) +
             !count_matches(first[e], 1.0 / N, n_tokens);
    CHECK_EQ_INT(bad, 0);
  }
  {
    enum { N = 16, K = 2 };
    ep_routing_cfg cfg = make_cfg(EP_ROUTING_HOT, 1.0, 3, 0.8, 22);
    double p[N];
    int64_t in[N], first[N];
    CHECK_EQ_INT(ep_routing_expert_probs(&cfg, N, p), EP_OK);
    if (!route_counts(&cfg, N, K, n_tokens, in, first))
      return;
    int bad = 0;
    for (int e = 0; e < N; e++) {
      double pi = p[e];
      for (int f = 0; f < N; f++)
        if (f != e)
          pi += p[f] * p[e] / (1.0 - p[f]);
      bad += !count_matches(in[e], pi, n_tokens) + !count_matches(first[e], p[e], n_tokens);
    }
    CHECK_EQ_INT(bad, 0);
  }
}

/* ---------- dispatch plan ---------- */

static void test_plan_case(ep_routing_cfg rcfg, ep_placement_kind kind, int32_t n_ranks,
                           int32_t n_experts, int32_t k, int64_t tpr, double cap_factor,
                           int64_t expected_capacity)
{
  ep_router *r = NULL;
  ep_placement pl;
  ep_plan plan, plan2;
  CHECK_EQ_INT(ep_router_init(&r, &rcfg, n_experts, k), EP_OK);
  CHECK_EQ_INT(ep_placement_init(&pl, kind, n_experts, n_ranks), EP_OK);
  ep_plan_cfg cfg = {tpr, cap_factor, 7392, 14336, &ep_dispatch_direct};
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_OK);
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan2), EP_OK);
  size_t n_re = (size_t)n_ranks * (size_t)n_experts, n_rr = (size_t)n_ranks * (size_t)n_ranks;
  size_t n_copies = (size_t)tpr * (size_t)k;
  int32_t *ex = malloc(n_copies * sizeof *ex), *ex2 = malloc(n_copies * sizeof *ex2);
  int32_t *dest = malloc(n_copies * sizeof *dest);
  float *w = malloc(n_copies * sizeof *w), *w2 = malloc(n_copies * sizeof *w2);
  int64_t *routed = calloc(n_re, sizeof *routed), *kept = calloc(n_re, sizeof *kept);
  int64_t *src_dst = calloc(n_rr, sizeof *src_dst);
  int64_t *per_expert = calloc((size_t)n_experts, sizeof *per_expert);
  int64_t *admitted = calloc((size_t)n_experts, sizeof *admitted);
  if (!r || !ex || !ex2 || !dest || !w || !w2 || !routed || !kept || !src_dst || !per_expert ||
      !admitted || !plan.tokens_src_dst)
    return;

  CHECK_EQ_INT(plan.n_ranks, n_ranks);
  CHECK_EQ_INT(plan.n_experts, n_experts);
  CHECK_EQ_INT(plan.top_k, k);
  CHECK_EQ_INT(plan.tokens_per_rank, tpr);
  CHECK_EQ_INT(plan.capacity_per_expert, expected_capacity);
  CHECK_EQ_INT(plan.n_routed, (int64_t)n_ranks * tpr * k);
  CHECK_EQ_INT(plan.dispatch_bytes_per_token, 7392);
  CHECK_EQ_INT(plan.combine_bytes_per_token, 14336);
  CHECK(plan.placement.rank_of_expert != pl.rank_of_expert); /* owned copy */
  CHECK(memcmp(plan.placement.rank_of_expert, pl.rank_of_expert,
               (size_t)n_experts * sizeof(int32_t)) == 0);
  CHECK(memcmp(plan.tokens_src_dst, plan2.tokens_src_dst, n_rr * sizeof(int64_t)) == 0);
  CHECK(memcmp(plan.kept_src_expert, plan2.kept_src_expert, n_re * sizeof(int64_t)) == 0);

  /* Walk every token in global order: brute-force counts, and an independent capacity
   * admission with one counter per expert. */
  int64_t bad_dest = 0, brute_dropped = 0;
  for (int32_t src = 0; src < n_ranks; src++) {
    CHECK_EQ_INT(ep_plan_rank_tokens(&plan, r, src, ex, w, dest), EP_OK);
    ep_router_route(r, (int64_t)src * tpr, tpr, ex2, w2);
    CHECK(memcmp(ex, ex2, n_copies * sizeof *ex) == 0);
    CHECK(memcmp(w, w2, n_copies * sizeof *w) == 0);
    for (size_t i = 0; i < n_copies; i++) {
      int32_t e = ex[i];
      int32_t expect = admitted[e] < expected_capacity ? pl.rank_of_expert[e] : -1;
      admitted[e]++;
      bad_dest += dest[i] != expect;
      routed[(size_t)src * n_experts + e]++;
      if (dest[i] >= 0) {
        kept[(size_t)src * n_experts + e]++;
        src_dst[(size_t)src * n_ranks + dest[i]]++;
        per_expert[e]++;
      } else {
        brute_dropped++;
      }
    }
  }
  CHECK_EQ_INT(bad_dest, 0);
  CHECK(memcmp(routed, plan.routed_src_expert, n_re * sizeof *routed) == 0);
  CHECK(memcmp(kept, plan.kept_src_expert, n_re * sizeof *kept) == 0);
  CHECK(memcmp(src_dst, plan.tokens_src_dst, n_rr * sizeof *src_dst) == 0);
  CHECK(memcmp(per_expert, plan.tokens_per_expert, (size_t)n_experts * sizeof(int64_t)) == 0);
  CHECK_EQ_INT(plan.n_dropped, brute_dropped);

  int64_t sum_routed = 0, sum_kept = 0, sum_sd = 0;
  for (size_t i = 0; i < n_re; i++) {
    sum_routed += plan.routed_src_expert[i];
    sum_kept += plan.kept_src_expert[i];
  }
  CHECK_EQ_INT(sum_routed, plan.n_routed);
  CHECK_EQ_INT(sum_routed, sum_kept + plan.n_dropped);
  int64_t over_cap = 0;
  for (int32_t e = 0; e < n_experts; e++)
    over_cap += plan.tokens_per_expert[e] > plan.capacity_per_expert;
  CHECK_EQ_INT(over_cap, 0);
  int64_t bad_bytes = 0;
  for (int32_t src = 0; src < n_ranks; src++) {
    for (int32_t dst = 0; dst < n_ranks; dst++) {
      int64_t tok = plan.tokens_src_dst[(size_t)src * n_ranks + dst];
      sum_sd += tok;
      bad_bytes += plan.dispatch_bytes_src_dst[(size_t)src * n_ranks + dst] != tok * 7392;
      bad_bytes += plan.combine_bytes_src_dst[(size_t)dst * n_ranks + src] != tok * 14336;
    }
  }
  CHECK_EQ_INT(bad_bytes, 0);
  CHECK_EQ_INT(sum_sd, plan.n_routed - plan.n_dropped);

  /* Dispatch "direct": one route stage per direction, exactly the logical traffic;
   * a message per token copy, combine's transposed. */
  CHECK(plan.dispatch == &ep_dispatch_direct);
  CHECK_EQ_INT(plan.n_dispatch_stages, 1);
  CHECK_EQ_INT(plan.n_combine_stages, 1);
  const ep_stage *ds = &plan.dispatch_stage[0], *cs = &plan.combine_stage[0];
  CHECK_EQ_INT(ds->link, EP_LINK_ROUTE);
  CHECK_EQ_INT(cs->link, EP_LINK_ROUTE);
  CHECK(memcmp(ds->bytes_src_dst, plan.dispatch_bytes_src_dst, n_rr * sizeof(int64_t)) == 0);
  CHECK(memcmp(cs->bytes_src_dst, plan.combine_bytes_src_dst, n_rr * sizeof(int64_t)) == 0);
  CHECK(memcmp(ds->messages_src_dst, plan.tokens_src_dst, n_rr * sizeof(int64_t)) == 0);
  int64_t bad_msgs = 0;
  for (int32_t src = 0; src < n_ranks; src++)
    for (int32_t dst = 0; dst < n_ranks; dst++)
      bad_msgs += cs->messages_src_dst[(size_t)dst * n_ranks + src] !=
                  plan.tokens_src_dst[(size_t)src * n_ranks + dst];
  CHECK_EQ_INT(bad_msgs, 0);
  CHECK(plan.dispatch_stage[1].bytes_src_dst == NULL &&
        plan.combine_stage[1].bytes_src_dst == NULL);
  for (int32_t dst = 0; dst < n_ranks; dst++) {
    int64_t col = 0;
    for (int32_t src = 0; src < n_ranks; src++)
      col += plan.tokens_src_dst[(size_t)src * n_ranks + dst];
    CHECK_EQ_INT(plan.tokens_recv_rank[dst], col);
  }
  if (expected_capacity == INT64_MAX)
    CHECK_EQ_INT(plan.n_dropped, 0);

  /* Argument checks. */
  CHECK_EQ_INT(ep_plan_rank_tokens(&plan, r, n_ranks, ex, w, dest), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_plan_rank_tokens(&plan, r, -1, ex, w, dest), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_plan_rank_tokens(&plan, r, 0, NULL, w, dest), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_plan_rank_tokens(&plan, r, 0, ex, NULL, dest), EP_OK);

  ep_plan_free(&plan);
  ep_plan_free(&plan);
  CHECK(plan.tokens_src_dst == NULL);
  CHECK(plan.dispatch_stage[0].bytes_src_dst == NULL &&
        plan.combine_stage[0].messages_src_dst == NULL);
  ep_plan_free(&plan2);
  ep_placement_free(&pl);
  ep_router_free(r);
  free(ex);
  free(ex2);
  free(dest);
  free(w);
  free(w2);
  free(routed);
  free(kept);
  free(src_dst);
  free(per_expert);
  free(admitted);
}

/* Algorithms that fail: after one stage, and by building no stage at all. */
static ep_status build_then_fail(ep_plan *plan)
{
  ep_status st = ep_stage_init(&plan->dispatch_stage[0], EP_LINK_NIC, plan->n_ranks);
  return st == EP_OK ? EP_ERR_NOMEM : st;
}

static ep_status build_nothing(ep_plan *plan)
{
  (void)plan;
  return EP_OK;
}

static void test_dispatch_table(void)
{
  const ep_dispatch_algo_desc *direct = ep_dispatch_find("direct");
  CHECK(direct == &ep_dispatch_direct);
  CHECK(direct && strcmp(direct->name, "direct") == 0 && direct->build_stages != NULL);
  CHECK(ep_dispatch_find("two_shot") == NULL);
  CHECK(ep_dispatch_find("Direct") == NULL);
  CHECK(ep_dispatch_find("") == NULL);
  CHECK(ep_dispatch_find(NULL) == NULL);
  int32_t n = 0;
  const ep_dispatch_algo_desc *const *table = ep_dispatch_table(&n);
  CHECK_EQ_INT(n, 1);
  CHECK(table[0] == direct);
  CHECK(ep_dispatch_table(NULL) == table);
  /* The names list is the table's, in order, NULL-terminated. */
  for (int32_t i = 0; i < n; i++) {
    CHECK(strcmp(ep_dispatch_names[i], table[i]->name) == 0);
    CHECK(ep_dispatch_find(ep_dispatch_names[i]) == table[i]);
  }
  CHECK(ep_dispatch_names[n] == NULL);

  CHECK(strcmp(ep_link_class_name(EP_LINK_ROUTE), "route") == 0);
  CHECK(strcmp(ep_link_class_name(EP_LINK_NVLINK), "nvlink") == 0);
  CHECK(strcmp(ep_link_class_name(EP_LINK_NIC), "nic") == 0);
  CHECK(strcmp(ep_link_class_name(EP_LINK_COUNT), "unknown") == 0);
  ep_stage stage;
  CHECK_EQ_INT(ep_stage_init(&stage, EP_LINK_NVLINK, 3), EP_OK);
  CHECK_EQ_INT(stage.link, EP_LINK_NVLINK);
  int64_t nonzero = 0;
  for (int i = 0; i < 9; i++)
    nonzero += stage.bytes_src_dst[i] != 0 || stage.messages_src_dst[i] != 0;
  CHECK_EQ_INT(nonzero, 0);
  ep_stage_free(&stage);
  CHECK(stage.bytes_src_dst == NULL && stage.messages_src_dst == NULL);
  ep_stage_free(&stage);
  ep_stage_free(NULL);
}

static void test_plan(void)
{
  const int32_t R = 8, E = 32, K = 4;
  const int64_t T = 500, n_routed = (int64_t)R * T * K;
  ep_routing_cfg hot = make_cfg(EP_ROUTING_HOT, 1.0, 2, 0.5, 7);
  ep_routing_cfg zipf = make_cfg(EP_ROUTING_ZIPF, 1.2, 1, 0.5, 8);
  /* capacity = ceil(c * n_routed / E) as exact integers: c = 1 and c = 5/4. */
  int64_t cap1 = (n_routed + E - 1) / E, cap125 = (5 * n_routed + 4 * E - 1) / (4 * E);
  test_plan_case(hot, EP_PLACEMENT_CONTIGUOUS, R, E, K, T, 1.0, cap1);
  test_plan_case(zipf, EP_PLACEMENT_ROUND_ROBIN, R, E, K, T, 1.25, cap125);
  test_plan_case(hot, EP_PLACEMENT_ROUND_ROBIN, R, E, K, T, 0.0, INT64_MAX);
  test_plan_case(zipf, EP_PLACEMENT_CONTIGUOUS, 4, 8, 8, 300, 1.0, (4 * 300 * 8 + 7) / 8);
  /* More experts than the router's bit set covers. */
  test_plan_case(make_cfg(EP_ROUTING_HOT, 1.0, 2, 0.6, 9), EP_PLACEMENT_ROUND_ROBIN, 5, 70000, 3,
                 400, 2.0, (int64_t)ceil(2.0 * 5 * 400 * 3 / 70000.0));
  /* A tokens_per_rank over the build's routing chunk. */
  test_plan_case(hot, EP_PLACEMENT_CONTIGUOUS, 2, 16, 2, 20000, 1.1,
                 (int64_t)ceil(1.1 * 2 * 20000 * 2 / 16));

  /* Hot routing with capacity 1.0 drops copies; without a capacity none drop. */
  ep_router *r = NULL;
  ep_placement pl;
  ep_plan plan;
  CHECK_EQ_INT(ep_router_init(&r, &hot, E, K), EP_OK);
  CHECK_EQ_INT(ep_placement_init(&pl, EP_PLACEMENT_CONTIGUOUS, E, R), EP_OK);
  ep_plan_cfg cfg = {T, 1.0, 7392, 14336, &ep_dispatch_direct};
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_OK);
  CHECK(plan.n_dropped > 0);
  ep_plan_free(&plan);
  cfg.capacity_factor = 0.0;
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_OK);
  CHECK_EQ_INT(plan.n_dropped, 0);
  CHECK_EQ_INT(plan.capacity_per_expert, INT64_MAX);
  ep_plan_free(&plan);

  /* Invalid arguments: *out holds nothing to free. */
  cfg.tokens_per_rank = 0;
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_ERR_INVALID);
  CHECK(plan.tokens_src_dst == NULL);
  cfg.tokens_per_rank = T;
  cfg.capacity_factor = NAN;
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_ERR_INVALID);
  cfg.capacity_factor = 1.0;
  cfg.dispatch_bytes_per_token = -1;
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_ERR_INVALID);
  cfg.dispatch_bytes_per_token = 7392;
  ep_placement other;
  CHECK_EQ_INT(ep_placement_init(&other, EP_PLACEMENT_CONTIGUOUS, 2 * E, R), EP_OK);
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &other, &plan), EP_ERR_INVALID);
  CHECK(plan.tokens_src_dst == NULL);
  CHECK_EQ_INT(ep_plan_build(&cfg, NULL, &pl, &plan), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, NULL), EP_ERR_INVALID);
  /* No algorithm, one that fails midway (its stage is freed), one that builds no stage. */
  cfg.dispatch = NULL;
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_ERR_INVALID);
  const ep_dispatch_algo_desc failing = {"failing", build_then_fail},
                              empty = {"empty", build_nothing};
  cfg.dispatch = &failing;
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_ERR_NOMEM);
  CHECK(plan.tokens_src_dst == NULL && plan.dispatch_stage[0].bytes_src_dst == NULL);
  cfg.dispatch = &empty;
  CHECK_EQ_INT(ep_plan_build(&cfg, r, &pl, &plan), EP_ERR_INVALID);
  CHECK(plan.tokens_src_dst == NULL);
  ep_plan_free(NULL);
  ep_placement_free(&other);
  ep_placement_free(&pl);
  ep_router_free(r);
}

int main(void)
{
  test_dtype();
  test_placement();
  test_expert_probs();
  test_router_properties();
  test_router_closed_forms();
  /* ~100k tokens each; the last two lean on the linear-scan path (chosen experts hold
   * most of the mass). */
  test_router_statistics(make_cfg(EP_ROUTING_ZIPF, 1.2, 1, 0.5, 11), 64, 6, 100000);
  test_router_statistics(make_cfg(EP_ROUTING_HOT, 1.0, 4, 0.6, 12), 64, 6, 100000);
  test_router_statistics(make_cfg(EP_ROUTING_HOT, 1.0, 3, 0.9, 13), 32, 5, 100000);
  test_router_statistics(make_cfg(EP_ROUTING_ZIPF, 1.5, 1, 0.5, 14), 12, 10, 100000);
  test_dispatch_table();
  test_plan();
  return check_exit_code("kernels");
}
