/* Seeded inputs and the double-precision reference layer.
 * Each (domain, id) stream gets its own 64-bit seed for ep_moe_uniform_at; the
 * domain constants keep tokens, w13 and w2 apart from each other and from the
 * router's (seed, global token id) streams. */
#include "ep_real_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ep_alloc.h"
#include "ep_rng.h"

#define TOKEN_DOMAIN 0x746f6b656e73ULL /* "tokens" */
#define W13_DOMAIN 0x77313300000000ULL /* "w13" */
#define W2_DOMAIN 0x77320000000000ULL  /* "w2" */

/* A 64-bit seed for one (domain, id) stream of the scenario seed. */
static uint64_t derive(uint64_t seed, uint64_t domain, uint64_t id)
{
  uint64_t state = seed ^ domain;
  const uint64_t base = ep_splitmix64(&state);
  state = base ^ (id * 0xd1b54a32d192ed03ULL);
  return ep_splitmix64(&state);
}

uint64_t ep_real_token_seed(const ep_real_shape *shape, int64_t global_token)
{
  return derive(shape->seed, TOKEN_DOMAIN, (uint64_t)global_token);
}
uint64_t ep_real_w13_seed(const ep_real_shape *shape, int32_t expert)
{
  return derive(shape->seed, W13_DOMAIN, (uint64_t)expert);
}
uint64_t ep_real_w2_seed(const ep_real_shape *shape, int32_t expert)
{
  return derive(shape->seed, W2_DOMAIN, (uint64_t)expert);
}
float ep_real_w13_bound(const ep_real_shape *shape)
{
  return (float)(1.0 / sqrt(shape->hidden));
}
float ep_real_w2_bound(const ep_real_shape *shape)
{
  return (float)(1.0 / sqrt(shape->intermediate));
}

void ep_real_tokens_fill(const ep_real_shape *shape, int64_t first_token, int64_t n_tokens,
                         ep_bf16 *x)
{
  for (int64_t t = 0; t < n_tokens; t++)
    ep_moe_fill_uniform_bf16(x + (size_t)t * (size_t)shape->hidden, shape->hidden,
                             ep_real_token_seed(shape, first_token + t), -1.0f, 1.0f);
}

void ep_real_expert_fill(const ep_real_shape *shape, int32_t expert, ep_bf16 *w13, ep_bf16 *w2)
{
  const int64_t h = shape->hidden, im = shape->intermediate;
  const float b13 = ep_real_w13_bound(shape), b2 = ep_real_w2_bound(shape);
  ep_moe_fill_uniform_bf16(w13, 2 * im * h, ep_real_w13_seed(shape, expert), -b13, b13);
  ep_moe_fill_uniform_bf16(w2, h * im, ep_real_w2_seed(shape, expert), -b2, b2);
}

/* out[hidden] += scale * expert(x), in double. mid: scratch [intermediate]. */
static void expert_apply(const float *w13, const float *w2, int32_t hidden, int32_t inter,
                         const float *x, double scale, double *mid, double *out)
{
  for (int32_t i = 0; i < inter; i++) {
    const float *g = w13 + (size_t)i * (size_t)hidden;
    const float *u = w13 + (size_t)(inter + i) * (size_t)hidden;
    double sg = 0.0, su = 0.0;
    for (int32_t j = 0; j < hidden; j++) {
      sg += (double)g[j] * x[j];
      su += (double)u[j] * x[j];
    }
    mid[i] = sg / (1.0 + exp(-sg)) * su;
  }
  for (int32_t j = 0; j < hidden; j++) {
    const float *d = w2 + (size_t)j * (size_t)inter;
    double s = 0.0;
    for (int32_t i = 0; i < inter; i++)
      s += (double)d[i] * mid[i];
    out[j] += scale * s;
  }
}

ep_status ep_real_reference(const ep_real_shape *shape, int fp8_dispatch, int64_t n,
                            const int64_t *global_tokens, const int32_t *experts,
                            const float *weights, const uint8_t *kept, double *out)
{
  if (!shape || n < 0 || (n > 0 && (!global_tokens || !experts || !weights || !kept || !out)))
    return EP_ERR_INVALID;
  const int32_t h = shape->hidden, im = shape->intermediate, k = shape->top_k;
  const size_t w_gu = (size_t)2 * (size_t)im * (size_t)h, w_d = (size_t)h * (size_t)im;
  const size_t n_x = (size_t)(n > 0 ? n : 1) * (size_t)h;
  float *x = malloc(sizeof(float) * n_x);
  float *xq = malloc(sizeof(float) * n_x); /* what routed experts see */
  ep_fp8 *q = malloc((size_t)h);
  float *scales = malloc(sizeof(float) * (size_t)(h / EP_FP8_BLOCK + 1));
  float *gu = malloc(sizeof(float) * w_gu);
  float *dn = malloc(sizeof(float) * w_d);
  double *mid = malloc(sizeof(double) * (size_t)im);
  /* bf16 staging for one token row or one expert's weights. */
  ep_bf16 *stage = malloc(sizeof(ep_bf16) * (w_gu > (size_t)h ? w_gu : (size_t)h));
  ep_bf16 *stage2 = malloc(sizeof(ep_bf16) * w_d);
  ep_status st = EP_OK;
  if (!x || !xq || !q || !scales || !gu || !dn || !mid || !stage || !stage2) {
    ep_log_error("reference: out of memory for %lld tokens, hidden %d, intermediate %d",
                 (long long)n, (int)h, (int)im);
    st = EP_ERR_NOMEM;
    goto done;
  }
  for (int64_t i = 0; i < n && st == EP_OK; i++) {
    ep_real_tokens_fill(shape, global_tokens[i], 1, stage);
    float *xi = x + (size_t)i * (size_t)h, *xqi = xq + (size_t)i * (size_t)h;
    for (int32_t j = 0; j < h; j++)
      xi[j] = xqi[j] = ep_bf16_to_f32(stage[j]);
    if (fp8_dispatch) {
      const int32_t zero = 0;
      st = ep_moe_permute_fp8_ref(1, 1, h, 1, stage, &zero, q, scales);
      for (int32_t j = 0; j < h && st == EP_OK; j++)
        xqi[j] = ep_fp8_to_f32(q[j]) * scales[j / EP_FP8_BLOCK];
    }
  }
  memset(out, 0, sizeof(double) * (size_t)n * (size_t)h);
  /* One generation per expert that any sampled copy uses. */
  for (int32_t e = 0; st == EP_OK && e < shape->n_experts + shape->n_shared; e++) {
    const int shared = e >= shape->n_experts;
    int used = shared && n > 0;
    for (int64_t c = 0; !used && c < n * k; c++)
      used = kept[c] && experts[c] == e;
    if (!used)
      continue;
    ep_real_expert_fill(shape, e, stage, stage2);
    for (size_t i = 0; i < w_gu; i++)
      gu[i] = ep_bf16_to_f32(stage[i]);
    for (size_t i = 0; i < w_d; i++)
      dn[i] = ep_bf16_to_f32(stage2[i]);
    for (int64_t i = 0; i < n; i++) {
      if (shared) {
        expert_apply(gu, dn, h, im, x + (size_t)i * (size_t)h, 1.0, mid,
                     out + (size_t)i * (size_t)h);
        continue;
      }
      for (int32_t j = 0; j < k; j++) {
        const int64_t c = i * k + j;
        if (kept[c] && experts[c] == e)
          expert_apply(gu, dn, h, im, xq + (size_t)i * (size_t)h, (double)weights[c], mid,
                       out + (size_t)i * (size_t)h);
      }
    }
  }
done:
  EP__FREE_ALL(x, xq, q, scales, gu, dn, mid, stage, stage2);
  return st;
}

double ep_real_rel_error(const float *got, const double *ref, int64_t n, int32_t hidden)
{
  double worst = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double num = 0.0, den = 0.0;
    for (int32_t j = 0; j < hidden; j++) {
      const double r = ref[(size_t)i * (size_t)hidden + (size_t)j];
      const double d = (double)got[(size_t)i * (size_t)hidden + (size_t)j] - r;
      num += d * d;
      den += r * r;
    }
    const double rel = sqrt(num) / (den > 1e-60 ? sqrt(den) : 1e-30);
    if (!(rel <= worst)) /* NaN propagates as the worst */
      worst = rel;
  }
  return worst;
}
