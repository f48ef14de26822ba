/* Deterministic inputs of the real backend, and the reference it is checked against.
 *
 * Values come from ep_moe_uniform_at (kernels/ep_moe_ref.h), which the GPU fill
 * kernels reproduce bit for bit, rounded to bf16:
 *   token t (global id, rank-major): hidden values U(-1, 1) from ep_real_token_seed(t),
 *     so it depends only on (seed, t);
 *   expert e: w13 U(-1, 1)/sqrt(hidden) from ep_real_w13_seed(e), w2 U(-1, 1)/sqrt(I)
 *     from ep_real_w2_seed(e), so any placement and any EP size compute with the
 *     same numbers. Shared expert s is expert n_experts + s.
 * Expert e is a SwiGLU MLP, y = W2 (silu(Wg x) * (Wu x)), in ep_moe_ref.h's layout:
 *   w13 [2 * intermediate * hidden] row-major, rows 0..I-1 = Wg, I..2I-1 = Wu;
 *   w2  [hidden * intermediate] row-major (out x in). */
#ifndef EP_REAL_DATA_H
#define EP_REAL_DATA_H

#include <stdint.h>

#include "ep_moe_ref.h"
#include "ep_status.h"

typedef struct ep_real_shape {
  int32_t n_experts;
  int32_t n_shared;
  int32_t top_k;
  int32_t hidden;
  int32_t intermediate;
  uint64_t seed;
} ep_real_shape;

uint64_t ep_real_token_seed(const ep_real_shape *shape, int64_t global_token);
uint64_t ep_real_w13_seed(const ep_real_shape *shape, int32_t expert);
uint64_t ep_real_w2_seed(const ep_real_shape *shape, int32_t expert);
float ep_real_w13_bound(const ep_real_shape *shape); /* 1/sqrt(hidden) */
float ep_real_w2_bound(const ep_real_shape *shape);  /* 1/sqrt(intermediate) */

/* x: [out] [n_tokens * hidden] bf16, tokens first_token .. first_token + n_tokens - 1. */
void ep_real_tokens_fill(const ep_real_shape *shape, int64_t first_token, int64_t n_tokens,
                         ep_bf16 *x);

/* w13: [out] [2 * I * hidden] bf16; w2: [out] [hidden * I] bf16;
 * expert in 0 .. n_experts + n_shared - 1. */
void ep_real_expert_fill(const ep_real_shape *shape, int32_t expert, ep_bf16 *w13, ep_bf16 *w2);

/* The layer's output for n tokens, in double, from freshly generated weights
 * (each needed expert generated once), with no rounding beyond the inputs':
 *   out[i] = sum_k kept(i,k) * weight(i,k) * expert_{experts(i,k)}(fp8(x_i))
 *            + sum_s shared_s(x_i),
 * where fp8(x) is x itself, or with fp8_dispatch the token as the experts see it
 * after fp8 dispatch: quantised as ep_moe_permute_fp8_ref does and dequantised
 * (q * scale, in double). Shared experts always see the bf16 token.
 * global_tokens: [in] [n]; experts, weights: [in] [n * top_k]; kept: [in] [n * top_k] 0/1;
 * out: [out] [n * hidden]. */
ep_status ep_real_reference(const ep_real_shape *shape, int fp8_dispatch, int64_t n,
                            const int64_t *global_tokens, const int32_t *experts,
                            const float *weights, const uint8_t *kept, double *out);

/* Relative error of got against ref over n rows of hidden: the largest
 * per-token ||got - ref||_2 / ||ref||_2 (||ref|| floored at 1e-30); NaN if any is NaN. */
double ep_real_rel_error(const float *got, const double *ref, int64_t n, int32_t hidden);

#endif
