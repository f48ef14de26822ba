/* C references of the MoE kernels (kernels/ep_moe_ref.h) against hand-computed
 * results and independent brute-force versions: number formats, router (incl.
 * DeepSeek-V3 group-limited top-k), dispatch layout, permute, SwiGLU experts,
 * combine. Integers are compared exactly; floats with the tolerance stated at
 * each check. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ep_moe_ref.h"
#include "ep_rng.h"

/* max_i |a_i - b_i| / max_i |b_i| over one row (b is the reference). */
static double row_rel_err_bf16(const ep_bf16 *a, const ep_bf16 *b, int64_t n)
{
  double err = 0.0, scale = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double x = ep_bf16_to_f32(a[i]), y = ep_bf16_to_f32(b[i]);
    err = fmax(err, fabs(x - y));
    scale = fmax(scale, fabs(y));
  }
  return scale > 0.0 ? err / scale : err;
}

/* ---- number formats ----------------------------------------------------- */

static void test_bf16(void)
{
  CHECK_EQ_INT(ep_f32_to_bf16(1.0f), 0x3f80);
  CHECK_EQ_INT(ep_f32_to_bf16(-2.0f), 0xc000);
  CHECK_EQ_INT(ep_f32_to_bf16(0.0f), 0x0000);
  CHECK_EQ_INT(ep_f32_to_bf16(-0.0f), 0x8000);
  /* Halfway cases round to even: 1 + 2^-8 -> 1.0; 1 + 3*2^-8 -> 1 + 2^-6. */
  CHECK_EQ_INT(ep_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  CHECK_EQ_INT(ep_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  CHECK_EQ_INT(ep_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81); /* above half: up */
  CHECK_EQ_INT(ep_f32_to_bf16(INFINITY), 0x7f80);
  CHECK_EQ_INT(ep_f32_to_bf16(3.4e38f), 0x7f80); /* rounds past the largest bf16 */
  CHECK_EQ_INT(ep_f32_to_bf16(NAN), 0x7fff);
  CHECK(ep_bf16_to_f32(0x3f80) == 1.0f);
  CHECK(ep_bf16_to_f32(0x4049) == 3.140625f);
  /* Every bf16 value survives the round trip. */
  int bad = 0;
  for (uint32_t b = 0; b <= 0xffff; b++) {
    float f = ep_bf16_to_f32((ep_bf16)b);
    if (f == f && ep_f32_to_bf16(f) != b)
      bad++;
  }
  CHECK_EQ_INT(bad, 0);
}

/* Independent fp8 encoder: the nearest of all finite codes by decoded value,
 * ties to the even code, saturating. */
static ep_fp8 fp8_nearest(float v)
{
  if (v != v)
    return 0x7f;
  int best = -1;
  double best_err = 0.0;
  for (int c = 0; c < 256; c++) {
    if ((c & 0x7f) == 0x7f)
      continue;
    if (c == 0x80)
      continue; /* -0 is chosen below only for negative inputs */
    double err = fabs((double)ep_fp8_to_f32((ep_fp8)c) - (double)v);
    if (best < 0 || err < best_err || (err == best_err && (c & 1) == 0 && (best & 1))) {
      best = c;
      best_err = err;
    }
  }
  if (best == 0 && signbit(v))
    best = 0x80; /* negative values that round to zero keep their sign */
  return (ep_fp8)best;
}

static void test_fp8(void)
{
  CHECK_EQ_INT(ep_f32_to_fp8(1.0f), 0x38);
  CHECK_EQ_INT(ep_f32_to_fp8(-1.0f), 0xb8);
  CHECK_EQ_INT(ep_f32_to_fp8(448.0f), 0x7e);
  CHECK_EQ_INT(ep_f32_to_fp8(464.0f), 0x7e);  /* halfway to 480 (not a value): even */
  CHECK_EQ_INT(ep_f32_to_fp8(1000.0f), 0x7e); /* saturates */
  CHECK_EQ_INT(ep_f32_to_fp8(-INFINITY), 0xfe);
  CHECK_EQ_INT(ep_f32_to_fp8(NAN), 0x7f);
  CHECK_EQ_INT(ep_f32_to_fp8(240.0f), 0x77);         /* 1.875 * 2^7 */
  CHECK_EQ_INT(ep_f32_to_fp8(0x1p-6f), 0x08);        /* smallest normal */
  CHECK_EQ_INT(ep_f32_to_fp8(0x1p-9f), 0x01);        /* smallest subnormal */
  CHECK_EQ_INT(ep_f32_to_fp8(0x1p-10f), 0x00);       /* half of it: ties to even (0) */
  CHECK_EQ_INT(ep_f32_to_fp8(1.5f * 0x1p-9f), 0x02); /* 1.5 ulp: ties to even (2) */
  CHECK_EQ_INT(ep_f32_to_fp8(-0.0f), 0x80);
  CHECK(ep_fp8_to_f32(0x7e) == 448.0f);
  CHECK(ep_fp8_to_f32(0x01) == 0x1p-9f);
  CHECK(ep_fp8_to_f32(0xb8) == -1.0f);
  CHECK(isnan(ep_fp8_to_f32(0x7f)) && isnan(ep_fp8_to_f32(0xff)));
  int bad_roundtrip = 0;
  for (int c = 0; c < 256; c++)
    if ((c & 0x7f) != 0x7f && ep_f32_to_fp8(ep_fp8_to_f32((ep_fp8)c)) != c)
      bad_roundtrip++;
  CHECK_EQ_INT(bad_roundtrip, 0);
  /* Random values over the whole range, and every midpoint between codes. */
  ep_rng rng;
  ep_rng_seed(&rng, 7, 0);
  int bad = 0;
  for (int i = 0; i < 20000; i++) {
    double mag = ldexp(ep_rng_uniform(&rng), (int)(ep_rng_next_u64(&rng) % 24) - 14);
    float v = (float)((ep_rng_next_u64(&rng) & 1) ? -mag : mag);
    if (ep_f32_to_fp8(v) != fp8_nearest(v))
      bad++;
  }
  for (int c = 0; c < 0x7e; c++) {
    float mid = (ep_fp8_to_f32((ep_fp8)c) + ep_fp8_to_f32((ep_fp8)(c + 1))) / 2.0f;
    if (ep_f32_to_fp8(mid) != fp8_nearest(mid) || ep_f32_to_fp8(-mid) != fp8_nearest(-mid))
      bad++;
  }
  CHECK_EQ_INT(bad, 0);
}

static void test_uniform(void)
{
  float a[1000], b[1000];
  ep_moe_fill_uniform_f32(a, 1000, 42, -1.0f, 1.0f);
  int in_range = 1;
  double mean = 0.0;
  for (int i = 0; i < 1000; i++) {
    in_range &= a[i] >= -1.0f && a[i] <= 1.0f;
    mean += a[i] / 1000.0;
    b[i] = ep_moe_uniform_at(42, (uint64_t)i, -1.0f, 1.0f);
  }
  CHECK(in_range);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(fabs(mean) < 0.1); /* 1000 draws: sd of the mean is 0.018 */
  CHECK(ep_moe_uniform_at(43, 0, -1.0f, 1.0f) != a[0]);
}

/* ---- router ------------------------------------------------------------- */

static void test_router_scores(void)
{
  const float logits[6] = {0.0f, logf(2.0f), logf(4.0f), 0.0f, logf(3.0f), -logf(3.0f)};
  float s[6];
  CHECK_EQ_INT(ep_moe_router_scores_ref(EP_MOE_SCORE_SOFTMAX, 2, 3, logits, s), EP_OK);
  CHECK_REL(s[0], 1.0 / 7.0, 1e-6);
  CHECK_REL(s[1], 2.0 / 7.0, 1e-6);
  CHECK_REL(s[2], 4.0 / 7.0, 1e-6);
  CHECK_REL(s[3], 3.0 / 13.0, 1e-6); /* {0, ln 3, -ln 3}: {1, 3, 1/3} / (13/3) */
  CHECK_REL(s[4], 9.0 / 13.0, 1e-6);
  CHECK_REL(s[5], 1.0 / 13.0, 1e-6);
  CHECK_EQ_INT(ep_moe_router_scores_ref(EP_MOE_SCORE_SIGMOID, 2, 3, logits, s), EP_OK);
  CHECK_REL(s[0], 0.5, 1e-6);
  CHECK_REL(s[4], 0.75, 1e-6);
  CHECK_REL(s[5], 0.25, 1e-6);
}

static void test_gate_logits(void)
{
  /* 2 tokens, hidden 3, 2 experts, small integers: exact in f32 and bf16. */
  const float x[6] = {1, 2, 3, -1, 0, 4};
  const float w[6] = {1, 0, -1, 2, 2, 2};
  ep_bf16 xb[6], wb[6];
  for (int i = 0; i < 6; i++) {
    xb[i] = ep_f32_to_bf16(x[i]);
    wb[i] = ep_f32_to_bf16(w[i]);
  }
  const float want[4] = {-2, 12, -5, 6};
  float got[4];
  CHECK_EQ_INT(ep_moe_gate_logits_ref(2, 3, 2, EP_DTYPE_F32, x, w, got), EP_OK);
  for (int i = 0; i < 4; i++)
    CHECK(got[i] == want[i]);
  memset(got, 0, sizeof got);
  CHECK_EQ_INT(ep_moe_gate_logits_ref(2, 3, 2, EP_DTYPE_BF16, xb, wb, got), EP_OK);
  for (int i = 0; i < 4; i++)
    CHECK(got[i] == want[i]);
}

/* One token's top-3 selection: exactly experts want_ex, weights want_w within 1e-6. */
static void check_top3(const ep_moe_router_cfg *cfg, const float *s, const float *bias,
                       const int32_t want_ex[3], const double want_w[3])
{
  int32_t ex[3];
  float w[3];
  CHECK_EQ_INT(ep_moe_router_topk_ref(cfg, 1, s, bias, ex, w), EP_OK);
  for (int j = 0; j < 3; j++) {
    CHECK_EQ_INT(ex[j], want_ex[j]);
    CHECK_REL(w[j], want_w[j], 1e-6);
  }
}

/* The hand-made DeepSeek-V3-style example: 8 experts in 4 groups of 2. */
static void test_router_groups_hand(void)
{
  const float s[8] = {0.9f, 0.1f, 0.5f, 0.45f, 0.8f, 0.05f, 0.3f, 0.6f};
  ep_moe_router_cfg cfg = {8, 3, 4, 2, EP_MOE_SCORE_SIGMOID, 1, 2.5f};
  /* Group scores (top-2 sums): 1.0, 0.95, 0.85, 0.9 -> groups 0 and 1 stay; the
   * best three of experts 0..3 are 0, 2, 3 (plain top-3 would be 0, 4, 7). */
  check_top3(&cfg, s, NULL, (const int32_t[]){0, 2, 3},
             (const double[]){0.9 / 1.85 * 2.5, 0.5 / 1.85 * 2.5, 0.45 / 1.85 * 2.5});

  /* Bias 0.3 on expert 6 lifts group 3 to 0.6 + 0.6 = 1.2: groups 3 and 0 stay.
   * Keys 0.9, 0.1, 0.6, 0.6: experts 0, then the tie 6 and 7 by id. Weights use
   * the unbiased scores 0.9, 0.3, 0.6. */
  const float bias[8] = {0, 0, 0, 0, 0, 0, 0.3f, 0};
  check_top3(&cfg, s, bias, (const int32_t[]){0, 6, 7},
             (const double[]){0.9 / 1.8 * 2.5, 0.3 / 1.8 * 2.5, 0.6 / 1.8 * 2.5});

  /* No group limit, no normalisation: plain top-3 with raw scores. */
  ep_moe_router_cfg plain = {8, 3, 1, 1, EP_MOE_SCORE_SOFTMAX, 0, 1.0f};
  int32_t ex[3];
  float w[3];
  CHECK_EQ_INT(ep_moe_router_topk_ref(&plain, 1, s, NULL, ex, w), EP_OK);
  CHECK_EQ_INT(ex[0], 0);
  CHECK_EQ_INT(ex[1], 4);
  CHECK_EQ_INT(ex[2], 7);
  CHECK(w[0] == 0.9f && w[1] == 0.8f && w[2] == 0.6f);

  /* Tied group scores go to the lower group id: groups {1,1}, {1,1}, {0.5,1.5}
   * all sum to 2; with topk_groups 1 only group 0 stays. */
  const float tie[6] = {1, 1, 1, 1, 0.5f, 1.5f};
  ep_moe_router_cfg tcfg = {6, 2, 3, 1, EP_MOE_SCORE_SIGMOID, 0, 1.0f};
  CHECK_EQ_INT(ep_moe_router_topk_ref(&tcfg, 1, tie, NULL, ex, w), EP_OK);
  CHECK_EQ_INT(ex[0], 0);
  CHECK_EQ_INT(ex[1], 1);
}

typedef struct {
  float v;
  int32_t id;
} keyed;

static int keyed_desc(const void *pa, const void *pb)
{
  const keyed *a = pa, *b = pb;
  if (a->v != b->v)
    return a->v > b->v ? -1 : 1;
  return (a->id > b->id) - (a->id < b->id);
}

/* Brute force by sorting: group scores from sorted groups, groups sorted,
 * eligible experts sorted. */
static void router_brute(const ep_moe_router_cfg *cfg, const float *s, const float *bias,
                         int32_t *ex, float *w)
{
  const int E = cfg->n_experts, G = E / cfg->n_groups;
  keyed *k = malloc(sizeof(keyed) * (size_t)E);
  keyed *groups = malloc(sizeof(keyed) * (size_t)cfg->n_groups);
  int *chosen_group = calloc((size_t)cfg->n_groups, sizeof(int));
  float *key = malloc(sizeof(float) * (size_t)E);
  for (int e = 0; e < E; e++) {
    key[e] = bias ? s[e] + bias[e] : s[e];
    if (key[e] != key[e])
      key[e] = -INFINITY;
  }
  for (int g = 0; g < cfg->n_groups; g++) {
    for (int i = 0; i < G; i++)
      k[i] = (keyed){key[g * G + i], i};
    qsort(k, (size_t)G, sizeof(keyed), keyed_desc);
    groups[g] = (keyed){G >= 2 ? k[0].v + k[1].v : k[0].v, g};
  }
  qsort(groups, (size_t)cfg->n_groups, sizeof(keyed), keyed_desc);
  for (int r = 0; r < cfg->topk_groups; r++)
    chosen_group[groups[r].id] = 1;
  if (cfg->n_groups == 1)
    chosen_group[0] = 1;
  int n = 0;
  for (int e = 0; e < E; e++)
    if (chosen_group[e / G])
      k[n++] = (keyed){key[e], e};
  qsort(k, (size_t)n, sizeof(keyed), keyed_desc);
  float sum = 0.0f;
  for (int j = 0; j < cfg->top_k; j++) {
    ex[j] = k[j].id;
    sum += s[k[j].id];
  }
  for (int j = 0; j < cfg->top_k; j++) {
    float v = s[ex[j]];
    if (cfg->normalize && sum > 0.0f)
      v = v / sum;
    w[j] = v * cfg->scaling;
  }
  free(k);
  free(groups);
  free(chosen_group);
  free(key);
}

static void test_router_brute(void)
{
  const ep_moe_router_cfg cfgs[] = {
      EP_MOE_ROUTER_CFG_INIT,                        /* DeepSeek-V3 */
      {64, 6, 1, 1, EP_MOE_SCORE_SOFTMAX, 0, 1.0f},  /* plain top-6 */
      {60, 4, 6, 2, EP_MOE_SCORE_SIGMOID, 1, 1.0f},  /* groups of 10 */
      {16, 8, 16, 8, EP_MOE_SCORE_SIGMOID, 1, 1.0f}, /* groups of one expert */
      {96, 8, 3, 2, EP_MOE_SCORE_SOFTMAX, 1, 2.0f},  /* groups of 32 */
  };
  ep_rng rng;
  ep_rng_seed(&rng, 11, 0);
  int bad_ids = 0, bad_w = 0;
  for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
    const ep_moe_router_cfg *cfg = &cfgs[c];
    const int E = cfg->n_experts, K = cfg->top_k, T = 50;
    float *s = malloc(sizeof(float) * (size_t)(T * E));
    float *bias = malloc(sizeof(float) * (size_t)E);
    int32_t *ex = malloc(sizeof(int32_t) * (size_t)(T * K)), bex[EP_MOE_MAX_TOP_K];
    float *w = malloc(sizeof(float) * (size_t)(T * K)), bw[EP_MOE_MAX_TOP_K];
    /* Scores on a coarse grid (multiples of 1/16) so ties are common. */
    for (int i = 0; i < T * E; i++)
      s[i] = (float)(ep_rng_next_u64(&rng) % 17) / 16.0f;
    for (int e = 0; e < E; e++)
      bias[e] = (float)(ep_rng_next_u64(&rng) % 5) / 16.0f - 0.125f;
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      const float *b = with_bias ? bias : NULL;
      CHECK_EQ_INT(ep_moe_router_topk_ref(cfg, T, s, b, ex, w), EP_OK);
      for (int t = 0; t < T; t++) {
        router_brute(cfg, s + t * E, b, bex, bw);
        for (int j = 0; j < K; j++) {
          bad_ids += ex[t * K + j] != bex[j];
          bad_w += !(fabsf(w[t * K + j] - bw[j]) <= 1e-6f * fabsf(bw[j]));
        }
      }
    }
    free(s);
    free(bias);
    free(ex);
    free(w);
  }
  CHECK_EQ_INT(bad_ids, 0);
  CHECK_EQ_INT(bad_w, 0);
}

static void test_router_full_and_cfg(void)
{
  /* ep_moe_router_ref = logits, then scores, then top-k. */
  ep_moe_router_cfg cfg = {32, 4, 4, 2, EP_MOE_SCORE_SIGMOID, 1, 2.5f};
  const int T = 9, H = 24, E = 32;
  float x[9 * 24], wg[32 * 24], bias[32], logits[9 * 32], scores[9 * 32], s2[9 * 32];
  int32_t ex[9 * 4], ex2[9 * 4];
  float w[9 * 4], w2[9 * 4];
  ep_moe_fill_uniform_f32(x, T * H, 1, -1.0f, 1.0f);
  ep_moe_fill_uniform_f32(wg, E * H, 2, -0.5f, 0.5f);
  ep_moe_fill_uniform_f32(bias, E, 3, -0.05f, 0.05f);
  CHECK_EQ_INT(ep_moe_router_ref(&cfg, T, H, EP_DTYPE_F32, x, wg, bias, logits, scores, ex, w),
               EP_OK);
  CHECK_EQ_INT(ep_moe_router_scores_ref(cfg.score_fn, T, E, logits, s2), EP_OK);
  CHECK(memcmp(scores, s2, sizeof s2) == 0);
  CHECK_EQ_INT(ep_moe_router_topk_ref(&cfg, T, scores, bias, ex2, w2), EP_OK);
  CHECK(memcmp(ex, ex2, sizeof ex) == 0 && memcmp(w, w2, sizeof w) == 0);
  /* NULL scratch gives the same answer. */
  memset(ex2, 0xff, sizeof ex2);
  CHECK_EQ_INT(ep_moe_router_ref(&cfg, T, H, EP_DTYPE_F32, x, wg, bias, NULL, NULL, ex2, NULL),
               EP_OK);
  CHECK(memcmp(ex, ex2, sizeof ex) == 0);

  ep_moe_router_cfg bad = cfg;
  bad.n_groups = 5; /* does not divide 32 */
  CHECK_EQ_INT(ep_moe_router_cfg_check(&bad), EP_ERR_INVALID);
  bad = cfg;
  bad.top_k = 17; /* only 2 groups of 8 eligible */
  CHECK_EQ_INT(ep_moe_router_cfg_check(&bad), EP_ERR_INVALID);
  bad = cfg;
  bad.topk_groups = 0;
  CHECK_EQ_INT(ep_moe_router_cfg_check(&bad), EP_ERR_INVALID);
  bad = cfg;
  bad.scaling = NAN;
  CHECK_EQ_INT(ep_moe_router_cfg_check(&bad), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_moe_router_cfg_check(NULL), EP_ERR_INVALID);
}

/* ---- dispatch layout ---------------------------------------------------- */

static void test_layout_hand(void)
{
  /* 4 tokens x top-2 over 3 experts; copy 5 dropped. */
  const int32_t ex[8] = {2, 0, 0, 1, 2, -1, 0, 2};
  int32_t counts[3], offsets[4], slot[8], slot_copy[8];
  CHECK_EQ_INT(ep_moe_layout_ref(8, 3, ex, counts, offsets, slot, slot_copy), EP_OK);
  const int32_t want_counts[3] = {3, 1, 3}, want_offsets[4] = {0, 3, 4, 7};
  /* Expert 0 gets copies 1, 2, 6 -> slots 0, 1, 2; expert 1 copy 3 -> 3;
   * expert 2 copies 0, 4, 7 -> 4, 5, 6. */
  const int32_t want_slot[8] = {4, 0, 1, 3, 5, -1, 2, 6};
  const int32_t want_copy[7] = {1, 2, 6, 3, 0, 4, 7};
  for (int e = 0; e < 3; e++)
    CHECK_EQ_INT(counts[e], want_counts[e]);
  for (int e = 0; e < 4; e++)
    CHECK_EQ_INT(offsets[e], want_offsets[e]);
  for (int c = 0; c < 8; c++)
    CHECK_EQ_INT(slot[c], want_slot[c]);
  for (int s = 0; s < 7; s++)
    CHECK_EQ_INT(slot_copy[s], want_copy[s]);

  const int32_t bad[2] = {0, 3};
  CHECK_EQ_INT(ep_moe_layout_ref(2, 3, bad, counts, offsets, slot, NULL), EP_ERR_INVALID);
  /* No copies: zero counts and offsets. */
  CHECK_EQ_INT(ep_moe_layout_ref(0, 3, NULL, counts, offsets, NULL, NULL), EP_OK);
  CHECK(counts[0] == 0 && counts[2] == 0 && offsets[3] == 0);
}

static void test_layout_random(void)
{
  ep_rng rng;
  ep_rng_seed(&rng, 5, 0);
  const int64_t n = 5000;
  const int32_t E = 37;
  int32_t *ex = malloc(sizeof(int32_t) * n), *slot = malloc(sizeof(int32_t) * n);
  int32_t *slot_copy = malloc(sizeof(int32_t) * n), *seen = calloc((size_t)n, sizeof(int32_t));
  int32_t counts[37], offsets[38];
  for (int64_t c = 0; c < n; c++) /* skewed, about 10% dropped, expert 36 never used */
    ex[c] = (ep_rng_next_u64(&rng) % 10 == 0)
                ? -1
                : (int32_t)(ep_rng_next_u64(&rng) % 6 == 0 ? ep_rng_next_u64(&rng) % 3
                                                           : ep_rng_next_u64(&rng) % 36);
  CHECK_EQ_INT(ep_moe_layout_ref(n, E, ex, counts, offsets, slot, slot_copy), EP_OK);
  /* Brute force: count, then hand out slots expert by expert in copy order. */
  int bad_counts = 0, bad_slot = 0, bad_inverse = 0, bad_order = 0, bad_range = 0;
  int32_t next = 0;
  for (int32_t e = 0; e < E; e++) {
    int32_t cnt = 0;
    bad_counts += offsets[e] != next;
    for (int64_t c = 0; c < n; c++)
      if (ex[c] == e) {
        bad_slot += slot[c] != next + cnt;
        cnt++;
      }
    bad_counts += counts[e] != cnt;
    next += cnt;
  }
  CHECK_EQ_INT(counts[36], 0);
  CHECK_EQ_INT(offsets[E], next);
  /* Invariants: a bijection from kept copies onto 0..kept-1, inside the expert's
   * range, increasing in copy order within an expert. */
  int32_t last_slot[37];
  for (int e = 0; e < E; e++)
    last_slot[e] = -1;
  for (int64_t c = 0; c < n; c++) {
    if (ex[c] < 0) {
      bad_slot += slot[c] != -1;
      continue;
    }
    int32_t s = slot[c], e = ex[c];
    if (s < offsets[e] || s >= offsets[e + 1]) {
      bad_range++;
      continue;
    }
    seen[s]++;
    bad_inverse += slot_copy[s] != c;
    bad_order += s <= last_slot[e];
    last_slot[e] = s;
  }
  for (int32_t s = 0; s < offsets[E]; s++)
    bad_inverse += seen[s] != 1;
  CHECK_EQ_INT(bad_counts, 0);
  CHECK_EQ_INT(bad_slot, 0);
  CHECK_EQ_INT(bad_range, 0);
  CHECK_EQ_INT(bad_inverse, 0);
  CHECK_EQ_INT(bad_order, 0);
  free(ex);
  free(slot);
  free(slot_copy);
  free(seen);
}

/* ---- permute ------------------------------------------------------------ */

static void test_permute(void)
{
  const int64_t T = 33;
  const int32_t K = 3, H = 256, E = 5;
  ep_rng rng;
  ep_rng_seed(&rng, 9, 0);
  int32_t ex[33 * 3], slot[33 * 3], counts[5], offsets[6];
  for (int64_t t = 0; t < T; t++)
    for (int j = 0; j < K; j++)
      ex[t * K + j] = (ep_rng_next_u64(&rng) % 8 == 0) ? -1 : (int32_t)((t + j) % E);
  CHECK_EQ_INT(ep_moe_layout_ref(T * K, E, ex, counts, offsets, slot, NULL), EP_OK);
  const int64_t kept = offsets[E], n_slots = kept + 2; /* two spare rows stay untouched */
  ep_bf16 *x = malloc(sizeof(ep_bf16) * (size_t)(T * H));
  ep_bf16 *xp = malloc(sizeof(ep_bf16) * (size_t)(n_slots * H));
  ep_fp8 *q = malloc((size_t)(n_slots * H));
  float *sc = malloc(sizeof(float) * (size_t)(n_slots * H / 128));
  ep_moe_fill_uniform_bf16(x, T * H, 3, -3.0f, 3.0f);
  for (int i = 0; i < 128; i++)
    x[128 + i] = 0; /* token 0's second block all zero: amax clamps to 1e-4 */
  memset(xp, 0xee, sizeof(ep_bf16) * (size_t)(n_slots * H));
  CHECK_EQ_INT(ep_moe_permute_ref(T, K, H, n_slots, x, slot, xp), EP_OK);
  int bad = 0;
  for (int64_t c = 0; c < T * K; c++)
    if (slot[c] >= 0)
      bad += memcmp(xp + (int64_t)slot[c] * H, x + (c / K) * H, sizeof(ep_bf16) * H) != 0;
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(xp[kept * H], 0xeeee);
  CHECK_EQ_INT(xp[n_slots * H - 1], 0xeeee);

  /* fp8: every element within half an fp8 ulp of its block's scale grid. */
  CHECK_EQ_INT(ep_moe_permute_fp8_ref(T, K, H, n_slots, x, slot, q, sc), EP_OK);
  int bad_q = 0;
  for (int64_t c = 0; c < T * K; c++) {
    if (slot[c] < 0)
      continue;
    const ep_bf16 *xr = x + (c / K) * H;
    const ep_fp8 *qr = q + (int64_t)slot[c] * H;
    const float *sr = sc + (int64_t)slot[c] * (H / 128);
    for (int b = 0; b < H / 128; b++) {
      float amax = 0.0f;
      for (int i = 0; i < 128; i++)
        amax = fmaxf(amax, fabsf(ep_bf16_to_f32(xr[b * 128 + i])));
      const float want_scale = fmaxf(amax, 1e-4f) / 448.0f;
      bad_q += sr[b] != want_scale;
      for (int i = 0; i < 128; i++) {
        double v = ep_bf16_to_f32(xr[b * 128 + i]);
        double deq = (double)ep_fp8_to_f32(qr[b * 128 + i]) * sr[b];
        /* e4m3 keeps 4 significant bits: relative error <= 2^-4 for normals,
         * absolute <= 2^-10 * scale in the subnormal range. */
        if (fabs(deq - v) > fmax(fabs(v) * 0x1p-4, 0x1p-10 * sr[b]))
          bad_q++;
      }
    }
  }
  CHECK_EQ_INT(bad_q, 0);
  /* Token 0's zero block: scale 1e-4/448, codes 0. */
  for (int j = 0; j < K; j++)
    if (slot[j] >= 0) {
      CHECK(sc[(int64_t)slot[j] * 2 + 1] == 1e-4f / 448.0f);
      CHECK_EQ_INT(q[(int64_t)slot[j] * H + 128], 0);
    }
  /* A block holding 448 * k values maps to exact codes: scale = amax / 448. */
  {
    ep_bf16 row[128];
    int32_t one_slot[1] = {0};
    ep_fp8 qq[128];
    float s1;
    for (int i = 0; i < 128; i++)
      row[i] = ep_f32_to_bf16(i == 0 ? 8.0f : (i == 1 ? -2.0f : (i == 2 ? 1.0f : 0.0f)));
    CHECK_EQ_INT(ep_moe_permute_fp8_ref(1, 1, 128, 1, row, one_slot, qq, &s1), EP_OK);
    CHECK(s1 == 8.0f / 448.0f);
    CHECK_EQ_INT(qq[0], 0x7e);                                   /* 448 */
    CHECK_EQ_INT(qq[1], ep_f32_to_fp8(-2.0f / (8.0f / 448.0f))); /* -112 */
    CHECK_EQ_INT(qq[1], 0xee);                                   /* -1.75 * 2^6 */
    CHECK_EQ_INT(qq[2], 0x66);                                   /* 56 = 1.75 * 2^5 */
    CHECK_EQ_INT(qq[3], 0);
  }
  int32_t bad_slot[3] = {0, (int32_t)n_slots, -1};
  CHECK_EQ_INT(ep_moe_permute_ref(1, 3, H, n_slots, x, bad_slot, xp), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_moe_permute_fp8_ref(1, 3, 100, n_slots, x, slot, q, sc), EP_ERR_INVALID);
  free(x);
  free(xp);
  free(q);
  free(sc);
}

/* fp8 rows back to bf16 at their slots (hand values with exact products), and
 * the layer sums. */
static void test_fp8_rows_and_sums(void)
{
  enum { H = 256 };
  ep_fp8 q[2 * H];
  float sc[2 * (H / 128)] = {0.5f, 2.0f, 0.25f, 1.0f};
  int32_t slot[2] = {1, 0}; /* rows swap */
  ep_bf16 out[2 * H];
  for (int i = 0; i < 2 * H; i++)
    q[i] = i % 3 == 0 ? 0x7e : (i % 3 == 1 ? 0x38 : 0xb8); /* 448, 1, -1 */
  memset(out, 0xee, sizeof out);
  ep_moe_fp8_to_bf16_rows_ref(2, H, q, sc, slot, out);
  int bad = 0;
  for (int r = 0; r < 2; r++)
    for (int j = 0; j < H; j++) {
      const int i = r * H + j;
      const float v = (i % 3 == 0 ? 448.0f : (i % 3 == 1 ? 1.0f : -1.0f)) * sc[r * 2 + j / 128];
      bad += out[slot[r] * H + j] != ep_f32_to_bf16(v);
    }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(out[H], 0x4360); /* row 0 lands at slot 1: 448 * 0.5 = 224 */

  const ep_bf16 a[3] = {ep_f32_to_bf16(1.5f), ep_f32_to_bf16(-2.0f), ep_f32_to_bf16(0.0f)};
  const ep_bf16 a2[3] = {ep_f32_to_bf16(-0.25f), ep_f32_to_bf16(4.0f), ep_f32_to_bf16(-0.0f)};
  float acc[3] = {99.0f, 99.0f, 99.0f}, sum[3];
  ep_moe_accumulate_bf16_ref(3, a, acc, 1); /* first: acc's old values are ignored */
  CHECK(acc[0] == 1.5f && acc[1] == -2.0f && acc[2] == 0.0f);
  ep_moe_accumulate_bf16_ref(3, a2, acc, 0);
  CHECK(acc[0] == 1.25f && acc[1] == 2.0f && acc[2] == 0.0f);
  ep_moe_add_bf16_f32_ref(3, a, acc, sum);
  CHECK(sum[0] == 2.75f && sum[1] == 0.0f && sum[2] == 0.0f);
}

/* ---- SwiGLU experts ----------------------------------------------------- */

static void test_grouped_gemm_hand(void)
{
  /* 2 experts (1 and 2 rows), n 2, k 3, small integers: exact. */
  const int32_t counts[3] = {1, 0, 2};
  const float a[9] = {1, 2, 3, 0, 1, 0, -1, 1, 2};
  const float w[18] = {1, 0, 0, 0, 1, 1,  /* expert 0: rows (1,0,0), (0,1,1) */
                       9, 9, 9, 9, 9, 9,  /* expert 1: unused */
                       2, 0, 1, 1, 1, 1}; /* expert 2 */
  const float want[6] = {1, 5, 0, 1, 0, 2};
  ep_bf16 ab[9], wb[18], c[6];
  for (int i = 0; i < 9; i++)
    ab[i] = ep_f32_to_bf16(a[i]);
  for (int i = 0; i < 18; i++)
    wb[i] = ep_f32_to_bf16(w[i]);
  CHECK_EQ_INT(ep_moe_grouped_gemm_ref(3, counts, 2, 3, ab, wb, c), EP_OK);
  for (int i = 0; i < 6; i++)
    CHECK(ep_bf16_to_f32(c[i]) == want[i]);
  const int32_t neg[1] = {-1};
  CHECK_EQ_INT(ep_moe_grouped_gemm_ref(1, neg, 2, 3, ab, wb, c), EP_ERR_INVALID);
}

static void test_swiglu(void)
{
  const float g[4] = {0.0f, 1.0f, -2.0f, 20.0f}, u[4] = {3.0f, 2.0f, 1.0f, 0.5f};
  ep_bf16 h13[8], h[4];
  for (int i = 0; i < 4; i++) {
    h13[i] = ep_f32_to_bf16(g[i]);
    h13[4 + i] = ep_f32_to_bf16(u[i]);
  }
  CHECK_EQ_INT(ep_moe_swiglu_ref(1, 4, h13, h), EP_OK);
  for (int i = 0; i < 4; i++) {
    double want = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    if (want == 0.0)
      CHECK(ep_bf16_to_f32(h[i]) == 0.0f);
    else
      CHECK_REL(ep_bf16_to_f32(h[i]), want, 0x1p-8); /* one bf16 rounding */
  }
}

static void test_expert_ffn(void)
{
  const int32_t E = 3, H = 64, I = 32;
  const int32_t counts[3] = {4, 0, 3};
  const int64_t rows = 7;
  ep_bf16 *x = malloc(sizeof(ep_bf16) * (size_t)(rows * H));
  ep_bf16 *w13 = malloc(sizeof(ep_bf16) * (size_t)(E * 2 * I * H));
  ep_bf16 *w2 = malloc(sizeof(ep_bf16) * (size_t)(E * H * I));
  ep_bf16 *y = malloc(sizeof(ep_bf16) * (size_t)(rows * H));
  ep_bf16 *y_row = malloc(sizeof(ep_bf16) * (size_t)H);
  ep_bf16 *y_ref = malloc(sizeof(ep_bf16) * (size_t)H);
  ep_moe_fill_uniform_bf16(x, rows * H, 1, -1.0f, 1.0f);
  ep_moe_fill_uniform_bf16(w13, (int64_t)E * 2 * I * H, 2, -0.25f, 0.25f);
  ep_moe_fill_uniform_bf16(w2, (int64_t)E * H * I, 3, -0.25f, 0.25f);
  CHECK_EQ_INT(ep_moe_expert_ffn_ref(E, counts, H, I, x, w13, w2, y), EP_OK);
  int64_t r = 0;
  double worst = 0.0, worst_row = 0.0;
  for (int32_t e = 0; e < E; e++)
    for (int32_t m = 0; m < counts[e]; m++, r++) {
      const ep_bf16 *w13e = w13 + (int64_t)e * 2 * I * H, *w2e = w2 + (int64_t)e * H * I;
      /* The per-row reference is the same computation. */
      CHECK_EQ_INT(ep_moe_expert_ffn_row_ref(H, I, x + r * H, w13e, w2e, y_row), EP_OK);
      worst_row = fmax(worst_row, row_rel_err_bf16(y_row, y + r * H, H));
      /* Independent double-precision SwiGLU without intermediate rounding. */
      double hbuf[32];
      for (int i = 0; i < I; i++) {
        double gs = 0.0, us = 0.0;
        for (int k = 0; k < H; k++) {
          double xv = ep_bf16_to_f32(x[r * H + k]);
          gs += xv * ep_bf16_to_f32(w13e[(int64_t)i * H + k]);
          us += xv * ep_bf16_to_f32(w13e[(int64_t)(I + i) * H + k]);
        }
        hbuf[i] = gs / (1.0 + exp(-gs)) * us;
      }
      for (int n = 0; n < H; n++) {
        double acc = 0.0;
        for (int i = 0; i < I; i++)
          acc += hbuf[i] * ep_bf16_to_f32(w2e[(int64_t)n * I + i]);
        y_ref[n] = ep_f32_to_bf16((float)acc);
      }
      worst = fmax(worst, row_rel_err_bf16(y + r * H, y_ref, H));
    }
  CHECK(worst_row == 0.0);
  CHECK(worst <= 1e-2); /* bf16 intermediates vs none; relative to each row's max */
  printf("expert ffn: row max-relative error vs unrounded double %.2e (tol 1e-2)\n", worst);
  free(x);
  free(w13);
  free(w2);
  free(y);
  free(y_row);
  free(y_ref);
}

/* ---- combine ------------------------------------------------------------ */

static void test_combine(void)
{
  /* 3 tokens x top-2, hidden 2. Token 1 has one dropped copy, token 2 both. */
  const float yv[8] = {1, 2, 0.5f, -4, 3, 0, 8, 1};
  ep_bf16 y[8], out[6];
  for (int i = 0; i < 8; i++)
    y[i] = ep_f32_to_bf16(yv[i]);
  const int32_t slot[6] = {2, 0, -1, 3, -1, -1};
  const float w[6] = {0.25f, 0.5f, 100.0f, 2.0f, 1.0f, 1.0f};
  memset(out, 0xff, sizeof out);
  CHECK_EQ_INT(ep_moe_combine_ref(3, 2, 2, 4, y, slot, w, out), EP_OK);
  /* token 0: 0.25 * (3, 0) + 0.5 * (1, 2) = (1.25, 1); token 1: 2 * (8, 1). */
  const float want[6] = {1.25f, 1.0f, 16.0f, 2.0f, 0.0f, 0.0f};
  for (int i = 0; i < 6; i++)
    CHECK(ep_bf16_to_f32(out[i]) == want[i]);
  const int32_t bad[2] = {4, 0};
  CHECK_EQ_INT(ep_moe_combine_ref(1, 2, 2, 4, y, bad, w, out), EP_ERR_INVALID);

  /* Random: against a double sum rounded once. */
  const int64_t T = 40, K = 4, H = 96, S = T * K;
  ep_bf16 *yr = malloc(sizeof(ep_bf16) * (size_t)(S * H)),
          *o = malloc(sizeof(ep_bf16) * (size_t)(T * H));
  ep_bf16 *oref = malloc(sizeof(ep_bf16) * (size_t)H);
  int32_t *sl = malloc(sizeof(int32_t) * (size_t)S);
  float *wr = malloc(sizeof(float) * (size_t)S);
  ep_moe_fill_uniform_bf16(yr, S * H, 4, -2.0f, 2.0f);
  ep_moe_fill_uniform_f32(wr, S, 5, 0.0f, 1.0f);
  for (int64_t c = 0; c < S; c++)
    sl[c] = (c % 7 == 3) ? -1 : (int32_t)((c * 37) % S); /* a permutation, some dropped */
  CHECK_EQ_INT(ep_moe_combine_ref(T, (int32_t)K, (int32_t)H, S, yr, sl, wr, o), EP_OK);
  double worst = 0.0;
  for (int64_t t = 0; t < T; t++) {
    for (int64_t i = 0; i < H; i++) {
      double acc = 0.0;
      for (int64_t j = 0; j < K; j++)
        if (sl[t * K + j] >= 0)
          acc += (double)wr[t * K + j] * ep_bf16_to_f32(yr[(int64_t)sl[t * K + j] * H + i]);
      oref[i] = ep_f32_to_bf16((float)acc);
    }
    worst = fmax(worst, row_rel_err_bf16(o + t * H, oref, H));
  }
  CHECK(worst <= 1e-2);
  free(yr);
  free(o);
  free(oref);
  free(sl);
  free(wr);
}

int main(void)
{
  test_bf16();
  test_fp8();
  test_uniform();
  test_router_scores();
  test_gate_logits();
  test_router_groups_hand();
  test_router_brute();
  test_router_full_and_cfg();
  test_layout_hand();
  test_layout_random();
  test_permute();
  test_fp8_rows_and_sums();
  test_grouped_gemm_hand();
  test_swiglu();
  test_expert_ffn();
  test_combine();
  return check_exit_code("test_moe_ref");
}
