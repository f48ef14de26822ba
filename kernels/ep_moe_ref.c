/* Plain C references for the MoE kernels (see ep_moe_ref.h). Written for
 * clarity, not speed: the CUDA versions in ep_moe_cuda.cu are checked against
 * them. Float products and sums are rounded one at a time (the build is ISO
 * C11, where GCC does not contract a*b+c into an FMA), matching the GPU code,
 * which uses __fmul_rn/__fadd_rn where bit equality matters. */
#include "ep_moe_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- number formats ----------------------------------------------------- */

static uint32_t f32_bits(float v)
{
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  return u;
}

static float f32_from_bits(uint32_t u)
{
  float v;
  memcpy(&v, &u, sizeof v);
  return v;
}

float ep_bf16_to_f32(ep_bf16 v)
{
  return f32_from_bits((uint32_t)v << 16);
}

ep_bf16 ep_f32_to_bf16(float v)
{
  uint32_t u = f32_bits(v);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return 0x7fff; /* canonical NaN, as cvt.rn.bf16.f32 */
  /* Round to nearest even on the 16 dropped bits; overflow carries into inf. */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (ep_bf16)(u >> 16);
}

float ep_fp8_to_f32(ep_fp8 v)
{
  int exp_field = (v >> 3) & 0xf;
  int mant = v & 0x7;
  float mag;
  if (exp_field == 0xf && mant == 0x7)
    return NAN;
  if (exp_field == 0)
    mag = ldexpf((float)mant, -9); /* subnormal: m * 2^-9 */
  else
    mag = ldexpf((float)(8 + mant), exp_field - 7 - 3);
  return (v & 0x80) ? -mag : mag;
}

ep_fp8 ep_f32_to_fp8(float v)
{
  uint32_t u = f32_bits(v);
  uint32_t abs_bits = u & 0x7fffffffu;
  uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
  if (abs_bits > 0x7f800000u)
    return 0x7f; /* NaN (sign dropped, as the CUDA conversion does) */
  if (abs_bits > 0x43e80000u)
    return (uint8_t)(sign | 0x7e); /* beyond 448 + half an ulp (464): saturate */
  if (abs_bits >= 0x3c800000u) {
    /* Normal e4m3 (>= 2^-6): keep 3 mantissa bits, round the other 20 to even. */
    uint32_t exp_field = (abs_bits >> 23) - 127 + 7;
    uint32_t res = (exp_field << 3) | ((abs_bits >> 20) & 0x7u);
    uint32_t rem = abs_bits & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (res & 1u)))
      res++; /* a mantissa carry moves into the exponent, as it should */
    return (uint8_t)(sign | res);
  }
  /* Subnormal e4m3: q = round_even(|v| * 2^9) in 0..8 (8 is the smallest normal). */
  uint32_t biased_exp = abs_bits >> 23;
  uint32_t mant = abs_bits & 0x7fffffu;
  if (biased_exp == 0)
    biased_exp = 1; /* float subnormal: no implicit bit */
  else
    mant |= 0x800000u;
  /* |v| * 2^9 = mant * 2^(biased_exp - 150 + 9) = mant >> (141 - biased_exp). */
  uint32_t shift = 141 - biased_exp; /* >= 21 here */
  if (shift >= 25)
    return sign; /* below half the smallest subnormal (or exactly half: even = 0) */
  uint32_t q = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u)))
    q++;
  return (uint8_t)(sign | q);
}

float ep_moe_uniform_at(uint64_t seed, uint64_t index, float lo, float hi)
{
  /* splitmix64 finaliser of a per-element counter; the GPU fill repeats this. */
  uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  float u = (float)(z >> 40) * 0x1p-24f; /* exact: 24 bits */
  float span = hi - lo;
  float scaled = span * u;
  return lo + scaled;
}

void ep_moe_fill_uniform_f32(float *out, int64_t n, uint64_t seed, float lo, float hi)
{
  for (int64_t i = 0; i < n; i++)
    out[i] = ep_moe_uniform_at(seed, (uint64_t)i, lo, hi);
}

void ep_moe_fill_uniform_bf16(ep_bf16 *out, int64_t n, uint64_t seed, float lo, float hi)
{
  for (int64_t i = 0; i < n; i++)
    out[i] = ep_f32_to_bf16(ep_moe_uniform_at(seed, (uint64_t)i, lo, hi));
}

/* ---- router ------------------------------------------------------------- */

ep_status ep_moe_router_cfg_check(const ep_moe_router_cfg *cfg)
{
  if (!cfg) {
    ep_log_error("moe router: null config");
    return EP_ERR_INVALID;
  }
  if (cfg->n_experts < 1 || cfg->n_experts > EP_MOE_MAX_EXPERTS) {
    ep_log_error("moe router: n_experts %d not in 1..%d", (int)cfg->n_experts, EP_MOE_MAX_EXPERTS);
    return EP_ERR_INVALID;
  }
  if (cfg->n_groups < 1 || cfg->n_groups > EP_MOE_MAX_GROUPS ||
      cfg->n_experts % cfg->n_groups != 0) {
    ep_log_error("moe router: n_groups %d must be in 1..%d and divide n_experts %d",
                 (int)cfg->n_groups, EP_MOE_MAX_GROUPS, (int)cfg->n_experts);
    return EP_ERR_INVALID;
  }
  if (cfg->topk_groups < 1 || cfg->topk_groups > cfg->n_groups) {
    ep_log_error("moe router: topk_groups %d not in 1..n_groups (%d)", (int)cfg->topk_groups,
                 (int)cfg->n_groups);
    return EP_ERR_INVALID;
  }
  int32_t eligible = cfg->topk_groups * (cfg->n_experts / cfg->n_groups);
  if (cfg->top_k < 1 || cfg->top_k > EP_MOE_MAX_TOP_K || cfg->top_k > eligible) {
    ep_log_error("moe router: top_k %d not in 1..min(%d, %d eligible experts)", (int)cfg->top_k,
                 EP_MOE_MAX_TOP_K, (int)eligible);
    return EP_ERR_INVALID;
  }
  if (cfg->score_fn != EP_MOE_SCORE_SOFTMAX && cfg->score_fn != EP_MOE_SCORE_SIGMOID) {
    ep_log_error("moe router: unknown score function %d", (int)cfg->score_fn);
    return EP_ERR_INVALID;
  }
  if (!isfinite(cfg->scaling)) {
    ep_log_error("moe router: scaling %g is not finite", (double)cfg->scaling);
    return EP_ERR_INVALID;
  }
  return EP_OK;
}

static float load_as_f32(ep_dtype dtype, const void *base, int64_t i)
{
  if (dtype == EP_DTYPE_BF16)
    return ep_bf16_to_f32(((const ep_bf16 *)base)[i]);
  return ((const float *)base)[i];
}

ep_status ep_moe_gate_logits_ref(int64_t n_tokens, int32_t hidden, int32_t n_experts,
                                 ep_dtype dtype, const void *x, const void *w_gate, float *logits)
{
  if (n_tokens < 0 || hidden < 1 || n_experts < 1 || !logits || (n_tokens > 0 && (!x || !w_gate)) ||
      (dtype != EP_DTYPE_F32 && dtype != EP_DTYPE_BF16)) {
    ep_log_error("ep_moe_gate_logits_ref: bad argument (n_tokens %lld, hidden %d, n_experts %d)",
                 (long long)n_tokens, (int)hidden, (int)n_experts);
    return EP_ERR_INVALID;
  }
  for (int64_t t = 0; t < n_tokens; t++)
    for (int32_t e = 0; e < n_experts; e++) {
      double acc = 0.0;
      for (int32_t i = 0; i < hidden; i++)
        acc += (double)load_as_f32(dtype, x, t * hidden + i) *
               (double)load_as_f32(dtype, w_gate, (int64_t)e * hidden + i);
      logits[t * n_experts + e] = (float)acc;
    }
  return EP_OK;
}

ep_status ep_moe_router_scores_ref(ep_moe_score_fn score_fn, int64_t n_tokens, int32_t n_experts,
                                   const float *logits, float *scores)
{
  if (n_tokens < 0 || n_experts < 1 || (n_tokens > 0 && (!logits || !scores)) ||
      (score_fn != EP_MOE_SCORE_SOFTMAX && score_fn != EP_MOE_SCORE_SIGMOID)) {
    ep_log_error("ep_moe_router_scores_ref: bad argument");
    return EP_ERR_INVALID;
  }
  for (int64_t t = 0; t < n_tokens; t++) {
    const float *l = logits + t * n_experts;
    float *s = scores + t * n_experts;
    if (score_fn == EP_MOE_SCORE_SIGMOID) {
      for (int32_t e = 0; e < n_experts; e++)
        s[e] = 1.0f / (1.0f + expf(-l[e]));
      continue;
    }
    float max = l[0];
    for (int32_t e = 1; e < n_experts; e++)
      max = fmaxf(max, l[e]);
    float sum = 0.0f;
    for (int32_t e = 0; e < n_experts; e++) {
      s[e] = expf(l[e] - max);
      sum += s[e];
    }
    for (int32_t e = 0; e < n_experts; e++)
      s[e] = s[e] / sum;
  }
  return EP_OK;
}

/* One token's selection; key [n_experts] and group_score [n_groups] are scratch. */
static void router_topk_token(const ep_moe_router_cfg *cfg, const float *s, const float *bias,
                              float *key, float *group_score, int32_t *experts, float *weights)
{
  const int32_t n_experts = cfg->n_experts;
  const int32_t group_size = n_experts / cfg->n_groups;
  float chosen_score[EP_MOE_MAX_TOP_K];

  for (int32_t e = 0; e < n_experts; e++) {
    float k = bias ? s[e] + bias[e] : s[e];
    key[e] = (k != k) ? -INFINITY : k;
  }
  if (cfg->n_groups > 1) {
    for (int32_t g = 0; g < cfg->n_groups; g++) {
      float top1 = -INFINITY, top2 = -INFINITY;
      for (int32_t i = 0; i < group_size; i++) {
        float v = key[g * group_size + i];
        if (v > top1) {
          top2 = top1;
          top1 = v;
        } else if (v > top2) {
          top2 = v;
        }
      }
      float gs = group_size >= 2 ? top1 + top2 : top1;
      group_score[g] = (gs != gs) ? -INFINITY : gs;
    }
    /* Chosen groups are marked NaN; the best remaining one wins, ties to lower id. */
    for (int32_t r = 0; r < cfg->topk_groups; r++) {
      int32_t best = -1;
      for (int32_t g = 0; g < cfg->n_groups; g++) {
        if (group_score[g] != group_score[g])
          continue;
        if (best < 0 || group_score[g] > group_score[best])
          best = g;
      }
      group_score[best] = NAN;
    }
    /* Experts of groups not chosen become ineligible (NaN key). */
    for (int32_t e = 0; e < n_experts; e++)
      if (group_score[e / group_size] == group_score[e / group_size])
        key[e] = NAN;
  }
  for (int32_t j = 0; j < cfg->top_k; j++) {
    int32_t best = -1;
    for (int32_t e = 0; e < n_experts; e++) {
      if (key[e] != key[e])
        continue;
      if (best < 0 || key[e] > key[best])
        best = e;
    }
    experts[j] = best;
    chosen_score[j] = s[best];
    key[best] = NAN;
  }
  if (!weights)
    return;
  float sum = 0.0f;
  for (int32_t j = 0; j < cfg->top_k; j++)
    sum += chosen_score[j];
  for (int32_t j = 0; j < cfg->top_k; j++) {
    float w = chosen_score[j];
    if (cfg->normalize && sum > 0.0f)
      w = w / sum;
    weights[j] = w * cfg->scaling;
  }
}

ep_status ep_moe_router_topk_ref(const ep_moe_router_cfg *cfg, int64_t n_tokens,
                                 const float *scores, const float *bias, int32_t *experts,
                                 float *weights)
{
  ep_status st = ep_moe_router_cfg_check(cfg);
  if (st != EP_OK)
    return st;
  if (n_tokens < 0 || (n_tokens > 0 && (!scores || !experts))) {
    ep_log_error("ep_moe_router_topk_ref: bad argument (n_tokens %lld)", (long long)n_tokens);
    return EP_ERR_INVALID;
  }
  float *key = malloc(sizeof(float) * (size_t)cfg->n_experts);
  float *group_score = malloc(sizeof(float) * (size_t)cfg->n_groups);
  if (!key || !group_score) {
    free(key);
    free(group_score);
    ep_log_error("ep_moe_router_topk_ref: out of memory");
    return EP_ERR_NOMEM;
  }
  for (int64_t t = 0; t < n_tokens; t++)
    router_topk_token(cfg, scores + t * cfg->n_experts, bias, key, group_score,
                      experts + t * cfg->top_k, weights ? weights + t * cfg->top_k : NULL);
  free(key);
  free(group_score);
  return EP_OK;
}

ep_status ep_moe_router_ref(const ep_moe_router_cfg *cfg, int64_t n_tokens, int32_t hidden,
                            ep_dtype dtype, const void *x, const void *w_gate, const float *bias,
                            float *logits, float *scores, int32_t *experts, float *weights)
{
  ep_status st = ep_moe_router_cfg_check(cfg);
  if (st != EP_OK)
    return st;
  if (n_tokens < 0) {
    ep_log_error("ep_moe_router_ref: n_tokens %lld < 0", (long long)n_tokens);
    return EP_ERR_INVALID;
  }
  size_t n = (size_t)n_tokens * (size_t)cfg->n_experts;
  float *own_logits = NULL, *own_scores = NULL;
  if (!logits)
    logits = own_logits = malloc(sizeof(float) * (n ? n : 1));
  if (!scores)
    scores = own_scores = malloc(sizeof(float) * (n ? n : 1));
  if (!logits || !scores) {
    ep_log_error("ep_moe_router_ref: out of memory");
    st = EP_ERR_NOMEM;
    goto done;
  }
  st = ep_moe_gate_logits_ref(n_tokens, hidden, cfg->n_experts, dtype, x, w_gate, logits);
  if (st == EP_OK)
    st = ep_moe_router_scores_ref(cfg->score_fn, n_tokens, cfg->n_experts, logits, scores);
  if (st == EP_OK)
    st = ep_moe_router_topk_ref(cfg, n_tokens, scores, bias, experts, weights);
done:
  free(own_logits);
  free(own_scores);
  return st;
}

/* ---- dispatch layout ---------------------------------------------------- */

ep_status ep_moe_layout_ref(int64_t n_copies, int32_t n_experts, const int32_t *experts,
                            int32_t *counts, int32_t *offsets, int32_t *slot, int32_t *slot_copy)
{
  if (n_copies < 0 || n_copies > INT32_MAX || n_experts < 1 || n_experts > EP_MOE_MAX_EXPERTS ||
      !counts || !offsets || (n_copies > 0 && (!experts || !slot))) {
    ep_log_error("ep_moe_layout_ref: bad argument (n_copies %lld, n_experts %d)",
                 (long long)n_copies, (int)n_experts);
    return EP_ERR_INVALID;
  }
  for (int64_t c = 0; c < n_copies; c++)
    if (experts[c] < -1 || experts[c] >= n_experts) {
      ep_log_error("ep_moe_layout_ref: copy %lld has expert %d, not in -1..%d", (long long)c,
                   (int)experts[c], (int)n_experts - 1);
      return EP_ERR_INVALID;
    }
  int32_t *cursor = malloc(sizeof(int32_t) * (size_t)n_experts);
  if (!cursor) {
    ep_log_error("ep_moe_layout_ref: out of memory");
    return EP_ERR_NOMEM;
  }
  memset(counts, 0, sizeof(int32_t) * (size_t)n_experts);
  for (int64_t c = 0; c < n_copies; c++)
    if (experts[c] >= 0)
      counts[experts[c]]++;
  int32_t running = 0;
  for (int32_t e = 0; e < n_experts; e++) {
    offsets[e] = running;
    cursor[e] = running;
    running += counts[e];
  }
  offsets[n_experts] = running;
  for (int64_t c = 0; c < n_copies; c++) {
    int32_t e = experts[c];
    if (e < 0) {
      slot[c] = -1;
      continue;
    }
    slot[c] = cursor[e]++;
    if (slot_copy)
      slot_copy[slot[c]] = (int32_t)c;
  }
  free(cursor);
  return EP_OK;
}

/* ---- permute ------------------------------------------------------------ */

static ep_status check_slots(const char *who, int64_t n_copies, const int32_t *slot,
                             int64_t n_slots)
{
  for (int64_t c = 0; c < n_copies; c++)
    if (slot[c] < -1 || slot[c] >= n_slots) {
      ep_log_error("%s: copy %lld has slot %d, not in -1..%lld", who, (long long)c, (int)slot[c],
                   (long long)n_slots - 1);
      return EP_ERR_INVALID;
    }
  return EP_OK;
}

ep_status ep_moe_permute_ref(int64_t n_tokens, int32_t top_k, int32_t hidden, int64_t n_slots,
                             const ep_bf16 *x, const int32_t *slot, ep_bf16 *x_perm)
{
  if (n_tokens < 0 || top_k < 1 || top_k > EP_MOE_MAX_TOP_K || hidden < 1 || n_slots < 0 ||
      (n_tokens > 0 && (!x || !slot || (n_slots > 0 && !x_perm)))) {
    ep_log_error("ep_moe_permute_ref: bad argument");
    return EP_ERR_INVALID;
  }
  ep_status st = check_slots("ep_moe_permute_ref", n_tokens * top_k, slot, n_slots);
  if (st != EP_OK)
    return st;
  for (int64_t c = 0; c < n_tokens * top_k; c++)
    if (slot[c] >= 0)
      memcpy(x_perm + (int64_t)slot[c] * hidden, x + (c / top_k) * hidden,
             sizeof(ep_bf16) * (size_t)hidden);
  return EP_OK;
}

/* One row to fp8 with one scale per EP_FP8_BLOCK elements. */
static void quantize_row_fp8(int32_t hidden, const ep_bf16 *x, ep_fp8 *q, float *scales)
{
  for (int32_t b = 0; b < hidden / EP_FP8_BLOCK; b++) {
    const ep_bf16 *xb = x + b * EP_FP8_BLOCK;
    float amax = 0.0f;
    for (int32_t i = 0; i < EP_FP8_BLOCK; i++)
      amax = fmaxf(amax, fabsf(ep_bf16_to_f32(xb[i])));
    amax = fmaxf(amax, EP_MOE_FP8_AMAX_MIN);
    float scale = amax / EP_MOE_FP8_MAX;
    for (int32_t i = 0; i < EP_FP8_BLOCK; i++)
      q[b * EP_FP8_BLOCK + i] = ep_f32_to_fp8(ep_bf16_to_f32(xb[i]) / scale);
    scales[b] = scale;
  }
}

ep_status ep_moe_permute_fp8_ref(int64_t n_tokens, int32_t top_k, int32_t hidden, int64_t n_slots,
                                 const ep_bf16 *x, const int32_t *slot, ep_fp8 *x_perm,
                                 float *scales)
{
  if (n_tokens < 0 || top_k < 1 || top_k > EP_MOE_MAX_TOP_K || hidden < EP_FP8_BLOCK ||
      hidden % EP_FP8_BLOCK != 0 || n_slots < 0 ||
      (n_tokens > 0 && (!x || !slot || (n_slots > 0 && (!x_perm || !scales))))) {
    ep_log_error("ep_moe_permute_fp8_ref: bad argument (hidden %d must be a multiple of %d)",
                 (int)hidden, EP_FP8_BLOCK);
    return EP_ERR_INVALID;
  }
  ep_status st = check_slots("ep_moe_permute_fp8_ref", n_tokens * top_k, slot, n_slots);
  if (st != EP_OK)
    return st;
  const int32_t n_blocks = hidden / EP_FP8_BLOCK;
  for (int64_t c = 0; c < n_tokens * top_k; c++)
    if (slot[c] >= 0)
      quantize_row_fp8(hidden, x + (c / top_k) * hidden, x_perm + (int64_t)slot[c] * hidden,
                       scales + (int64_t)slot[c] * n_blocks);
  return EP_OK;
}

void ep_moe_fp8_to_bf16_rows_ref(int64_t n_rows, int32_t hidden, const ep_fp8 *q,
                                 const float *scales, const int32_t *slot, ep_bf16 *out)
{
  const int32_t nb = hidden / EP_FP8_BLOCK;
  for (int64_t i = 0; i < n_rows; i++) {
    const ep_fp8 *qi = q + (size_t)i * (size_t)hidden;
    const float *si = scales + (size_t)i * (size_t)nb;
    ep_bf16 *dst = out + (size_t)slot[i] * (size_t)hidden;
    for (int32_t j = 0; j < hidden; j++)
      dst[j] = ep_f32_to_bf16(ep_fp8_to_f32(qi[j]) * si[j / EP_FP8_BLOCK]);
  }
}

/* ---- SwiGLU experts ----------------------------------------------------- */

static float swiglu_f32(float g, float u)
{
  float silu = g / (1.0f + expf(-g));
  return silu * u;
}

static ep_status check_counts(const char *who, int32_t n_experts, const int32_t *counts,
                              int64_t *rows)
{
  *rows = 0;
  if (n_experts < 1 || !counts) {
    ep_log_error("%s: n_experts %d < 1 or no counts", who, (int)n_experts);
    return EP_ERR_INVALID;
  }
  for (int32_t e = 0; e < n_experts; e++) {
    if (counts[e] < 0) {
      ep_log_error("%s: expert %d has %d rows", who, (int)e, (int)counts[e]);
      return EP_ERR_INVALID;
    }
    *rows += counts[e];
  }
  return EP_OK;
}

ep_status ep_moe_grouped_gemm_ref(int32_t n_experts, const int32_t *counts, int32_t n, int32_t k,
                                  const ep_bf16 *a, const ep_bf16 *w, ep_bf16 *c)
{
  int64_t rows;
  ep_status st = check_counts("ep_moe_grouped_gemm_ref", n_experts, counts, &rows);
  if (st != EP_OK)
    return st;
  if (n < 1 || k < 1 || !w || (rows > 0 && (!a || !c))) {
    ep_log_error("ep_moe_grouped_gemm_ref: bad argument (n %d, k %d)", (int)n, (int)k);
    return EP_ERR_INVALID;
  }
  int64_t r = 0;
  for (int32_t e = 0; e < n_experts; e++) {
    const ep_bf16 *we = w + (int64_t)e * n * k;
    for (int32_t m = 0; m < counts[e]; m++, r++)
      for (int32_t j = 0; j < n; j++) {
        double acc = 0.0;
        for (int32_t i = 0; i < k; i++)
          acc +=
              (double)ep_bf16_to_f32(a[r * k + i]) * (double)ep_bf16_to_f32(we[(int64_t)j * k + i]);
        c[r * n + j] = ep_f32_to_bf16((float)acc);
      }
  }
  return EP_OK;
}

ep_status ep_moe_swiglu_ref(int64_t n_rows, int32_t inter, const ep_bf16 *h13, ep_bf16 *h)
{
  if (n_rows < 0 || inter < 1 || (n_rows > 0 && (!h13 || !h))) {
    ep_log_error("ep_moe_swiglu_ref: bad argument");
    return EP_ERR_INVALID;
  }
  for (int64_t r = 0; r < n_rows; r++)
    for (int32_t i = 0; i < inter; i++) {
      float g = ep_bf16_to_f32(h13[r * 2 * inter + i]);
      float u = ep_bf16_to_f32(h13[r * 2 * inter + inter + i]);
      h[r * inter + i] = ep_f32_to_bf16(swiglu_f32(g, u));
    }
  return EP_OK;
}

/* h13 [2 * inter] and h [inter] are scratch. */
static void ffn_row(int32_t hidden, int32_t inter, const ep_bf16 *x_row, const ep_bf16 *w13_e,
                    const ep_bf16 *w2_e, ep_bf16 *y_row, ep_bf16 *h13, ep_bf16 *h)
{
  for (int32_t j = 0; j < 2 * inter; j++) {
    double acc = 0.0;
    for (int32_t i = 0; i < hidden; i++)
      acc +=
          (double)ep_bf16_to_f32(x_row[i]) * (double)ep_bf16_to_f32(w13_e[(int64_t)j * hidden + i]);
    h13[j] = ep_f32_to_bf16((float)acc);
  }
  for (int32_t i = 0; i < inter; i++)
    h[i] = ep_f32_to_bf16(swiglu_f32(ep_bf16_to_f32(h13[i]), ep_bf16_to_f32(h13[inter + i])));
  for (int32_t j = 0; j < hidden; j++) {
    double acc = 0.0;
    for (int32_t i = 0; i < inter; i++)
      acc += (double)ep_bf16_to_f32(h[i]) * (double)ep_bf16_to_f32(w2_e[(int64_t)j * inter + i]);
    y_row[j] = ep_f32_to_bf16((float)acc);
  }
}

ep_status ep_moe_expert_ffn_row_ref(int32_t hidden, int32_t inter, const ep_bf16 *x_row,
                                    const ep_bf16 *w13_e, const ep_bf16 *w2_e, ep_bf16 *y_row)
{
  if (hidden < 1 || inter < 1 || !x_row || !w13_e || !w2_e || !y_row) {
    ep_log_error("ep_moe_expert_ffn_row_ref: bad argument");
    return EP_ERR_INVALID;
  }
  ep_bf16 *scratch = malloc(sizeof(ep_bf16) * 3 * (size_t)inter);
  if (!scratch) {
    ep_log_error("ep_moe_expert_ffn_row_ref: out of memory");
    return EP_ERR_NOMEM;
  }
  ffn_row(hidden, inter, x_row, w13_e, w2_e, y_row, scratch, scratch + 2 * inter);
  free(scratch);
  return EP_OK;
}

ep_status ep_moe_expert_ffn_ref(int32_t n_experts, const int32_t *counts, int32_t hidden,
                                int32_t inter, const ep_bf16 *x, const ep_bf16 *w13,
                                const ep_bf16 *w2, ep_bf16 *y)
{
  int64_t rows;
  ep_status st = check_counts("ep_moe_expert_ffn_ref", n_experts, counts, &rows);
  if (st != EP_OK)
    return st;
  if (hidden < 1 || inter < 1 || !w13 || !w2 || (rows > 0 && (!x || !y))) {
    ep_log_error("ep_moe_expert_ffn_ref: bad argument (hidden %d, inter %d)", (int)hidden,
                 (int)inter);
    return EP_ERR_INVALID;
  }
  ep_bf16 *scratch = malloc(sizeof(ep_bf16) * 3 * (size_t)inter);
  if (!scratch) {
    ep_log_error("ep_moe_expert_ffn_ref: out of memory");
    return EP_ERR_NOMEM;
  }
  int64_t r = 0;
  for (int32_t e = 0; e < n_experts; e++)
    for (int32_t m = 0; m < counts[e]; m++, r++)
      ffn_row(hidden, inter, x + r * hidden, w13 + (int64_t)e * 2 * inter * hidden,
              w2 + (int64_t)e * hidden * inter, y + r * hidden, scratch, scratch + 2 * inter);
  free(scratch);
  return EP_OK;
}

/* ---- combine ------------------------------------------------------------ */

ep_status ep_moe_combine_ref(int64_t n_tokens, int32_t top_k, int32_t hidden, int64_t n_slots,
                             const ep_bf16 *y, const int32_t *slot, const float *weights,
                             ep_bf16 *out)
{
  if (n_tokens < 0 || top_k < 1 || top_k > EP_MOE_MAX_TOP_K || hidden < 1 || n_slots < 0 ||
      (n_tokens > 0 && (!slot || !weights || !out || (n_slots > 0 && !y)))) {
    ep_log_error("ep_moe_combine_ref: bad argument");
    return EP_ERR_INVALID;
  }
  ep_status st = check_slots("ep_moe_combine_ref", n_tokens * top_k, slot, n_slots);
  if (st != EP_OK)
    return st;
  for (int64_t t = 0; t < n_tokens; t++) {
    const int32_t *s = slot + t * top_k;
    const float *w = weights + t * top_k;
    for (int32_t i = 0; i < hidden; i++) {
      float acc = 0.0f;
      for (int32_t j = 0; j < top_k; j++) {
        if (s[j] < 0)
          continue;
        float prod = w[j] * ep_bf16_to_f32(y[(int64_t)s[j] * hidden + i]);
        acc = acc + prod;
      }
      out[t * hidden + i] = ep_f32_to_bf16(acc);
    }
  }
  return EP_OK;
}

void ep_moe_accumulate_bf16_ref(int64_t n, const ep_bf16 *a, float *acc, int first)
{
  for (int64_t i = 0; i < n; i++)
    acc[i] = first ? ep_bf16_to_f32(a[i]) : acc[i] + ep_bf16_to_f32(a[i]);
}

void ep_moe_add_bf16_f32_ref(int64_t n, const ep_bf16 *a, const float *b, float *out)
{
  for (int64_t i = 0; i < n; i++)
    out[i] = ep_bf16_to_f32(a[i]) + b[i];
}
