/* MoE layer kernels, plain C references: router (gate GEMM, softmax or
 * sigmoid, DeepSeek-V3 group-limited top-k), dispatch layout, permute (bf16,
 * or fp8 e4m3 with per-128 scales), SwiGLU experts over variable tokens per
 * expert, and combine. The CUDA launchers in ep_moe_cuda.h take the same
 * arguments and are tested against these functions; the references round to
 * bf16 exactly where the GPU stores bf16, so the two agree to bf16 precision.
 *
 * Conventions: all matrices are row-major and dense (leading dimension = row
 * length). bf16 and fp8 values are passed as their bit patterns (ep_bf16,
 * ep_fp8). A "copy" is one (token, choice) pair: copy c = token * top_k + j.
 * The expert-major buffer holds one row per kept copy ("slot"); expert e owns
 * slots offsets[e] .. offsets[e+1]-1, in token order. */
#ifndef EP_MOE_REF_H
#define EP_MOE_REF_H

#include <stdint.h>

#include "ep_dtype.h"
#include "ep_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t ep_bf16; /* bfloat16 bit pattern */
typedef uint8_t ep_fp8;   /* fp8 e4m3 ("e4m3fn": bias 7, no inf, 0x7f/0xff are NaN) */

#define EP_MOE_MAX_EXPERTS 4096   /* per router or per layout call */
#define EP_MOE_MAX_GROUPS 64      /* router expert groups */
#define EP_MOE_MAX_TOP_K 64       /* experts per token */
#define EP_MOE_FP8_MAX 448.0f     /* largest finite e4m3 value */
#define EP_MOE_FP8_AMAX_MIN 1e-4f /* a block's amax is clamped up to this (all-zero rows) */

/* ---- number formats (bit-exact with the CUDA intrinsics) ---------------- */

float ep_bf16_to_f32(ep_bf16 v);
/* Round to nearest even, as __float2bfloat16_rn; NaN stays a (quiet) NaN. */
ep_bf16 ep_f32_to_bf16(float v);
float ep_fp8_to_f32(ep_fp8 v);
/* Round to nearest even, saturating to +-448, any NaN -> 0x7f: the same
 * result as __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3). */
ep_fp8 ep_f32_to_fp8(float v);

/* Deterministic test data: a value in [lo, hi) that depends only on
 * (seed, index), so the host can regenerate any element the GPU filled with
 * ep_moe_cuda_fill_uniform_*. Computed as lo + (hi - lo) * u with u a
 * multiple of 2^-24, rounded separately (no fused multiply-add). */
float ep_moe_uniform_at(uint64_t seed, uint64_t index, float lo, float hi);
/* out: [out] [n] float or bf16; element i = ep_moe_uniform_at(seed, i, lo, hi). */
void ep_moe_fill_uniform_f32(float *out, int64_t n, uint64_t seed, float lo, float hi);
void ep_moe_fill_uniform_bf16(ep_bf16 *out, int64_t n, uint64_t seed, float lo, float hi);

/* ---- router ------------------------------------------------------------- */

typedef enum {
  EP_MOE_SCORE_SOFTMAX, /* softmax over all experts (Mixtral, DeepSeek-V2) */
  EP_MOE_SCORE_SIGMOID, /* independent sigmoid per expert (DeepSeek-V3) */
} ep_moe_score_fn;

/* Routing of one token:
 *   score[e] = softmax(logits)[e] or sigmoid(logits[e])
 *   key[e]   = score[e] + bias[e] (bias only steers selection: DeepSeek-V3's
 *              auxiliary-loss-free balancing; NaN keys count as -inf)
 *   group g (n_experts / n_groups consecutive experts) scores the sum of its two
 *   largest keys (its largest alone if a group has one expert); the topk_groups
 *   best groups stay eligible (ties: lower group id);
 *   the top_k eligible experts by key, in decreasing key order (ties: lower
 *   expert id), are the token's experts;
 *   weight_j = score[expert_j] (without bias), divided by the sum of the k
 *   chosen scores (summed in j order) when normalize and that sum is > 0,
 *   then multiplied by scaling.
 * n_groups = topk_groups = 1 is plain top-k. */
typedef struct ep_moe_router_cfg {
  int32_t n_experts;   /* 1..EP_MOE_MAX_EXPERTS */
  int32_t top_k;       /* 1..min(EP_MOE_MAX_TOP_K, topk_groups * n_experts / n_groups) */
  int32_t n_groups;    /* 1..EP_MOE_MAX_GROUPS, divides n_experts */
  int32_t topk_groups; /* 1..n_groups */
  ep_moe_score_fn score_fn;
  int32_t normalize; /* nonzero: weights divided by their sum over the k chosen */
  float scaling;     /* routed scaling factor, applied last */
} ep_moe_router_cfg;

/* DeepSeek-V3: 256 experts, top-8 of the 4 best of 8 groups, sigmoid, scale 2.5. */
#define EP_MOE_ROUTER_CFG_INIT                                                                     \
  {                                                                                                \
    256, 8, 8, 4, EP_MOE_SCORE_SIGMOID, 1, 2.5f                                                    \
  }

/* EP_OK if cfg satisfies the limits above, else EP_ERR_INVALID with a message. */
ep_status ep_moe_router_cfg_check(const ep_moe_router_cfg *cfg);

/* logits = x · w_gate^T, accumulated in double, stored as float; dtype is
 * EP_DTYPE_F32 (float) or EP_DTYPE_BF16 (ep_bf16), anything else EP_ERR_INVALID.
 * x:      [in]  [n_tokens * hidden] dtype
 * w_gate: [in]  [n_experts * hidden] dtype (row e = expert e's gate vector)
 * logits: [out] [n_tokens * n_experts] float */
ep_status ep_moe_gate_logits_ref(int64_t n_tokens, int32_t hidden, int32_t n_experts,
                                 ep_dtype dtype, const void *x, const void *w_gate, float *logits);

/* scores: [out] [n_tokens * n_experts] float from logits [in] (same shape).
 * Softmax: exp(l - max) / sum, summed in expert order; sigmoid: 1 / (1 + exp(-l)). */
ep_status ep_moe_router_scores_ref(ep_moe_score_fn score_fn, int64_t n_tokens, int32_t n_experts,
                                   const float *logits, float *scores);

/* Selection from scores (see ep_moe_router_cfg).
 * scores:  [in]  [n_tokens * n_experts] float
 * bias:    [in]  [n_experts] float, or NULL for none
 * experts: [out] [n_tokens * top_k] int32, token-major
 * weights: [out] [n_tokens * top_k] float, or NULL */
ep_status ep_moe_router_topk_ref(const ep_moe_router_cfg *cfg, int64_t n_tokens,
                                 const float *scores, const float *bias, int32_t *experts,
                                 float *weights);

/* The whole router: gate logits, scores, selection. logits and scores are
 * [out] [n_tokens * n_experts] float, or NULL to use (and free) scratch. */
ep_status ep_moe_router_ref(const ep_moe_router_cfg *cfg, int64_t n_tokens, int32_t hidden,
                            ep_dtype dtype, const void *x, const void *w_gate, const float *bias,
                            float *logits, float *scores, int32_t *experts, float *weights);

/* ---- dispatch layout ---------------------------------------------------- */

/* Counting sort of copies by expert, stable in copy order.
 * experts:   [in]  [n_copies] int32 in -1..n_experts-1 (-1: dropped copy)
 * counts:    [out] [n_experts] int32, kept copies per expert
 * offsets:   [out] [n_experts + 1] int32, exclusive prefix sum; offsets[n_experts] = kept
 * slot:      [out] [n_copies] int32, the copy's row in the expert-major buffer, -1 if dropped
 * slot_copy: [out] [n_copies] int32 or NULL: entries 0..kept-1 get the copy held by
 *            each slot (the inverse of slot); the rest are left untouched.
 * n_copies <= INT32_MAX. An id outside -1..n_experts-1 is EP_ERR_INVALID here
 * (the GPU treats it as dropped instead, so it never writes out of bounds). */
ep_status ep_moe_layout_ref(int64_t n_copies, int32_t n_experts, const int32_t *experts,
                            int32_t *counts, int32_t *offsets, int32_t *slot, int32_t *slot_copy);

/* ---- permute ------------------------------------------------------------ */

/* x_perm[slot[c]] = x[c / top_k] for every kept copy c; rows of x_perm that no
 * copy maps to are untouched.
 * x:      [in]  [n_tokens * hidden] bf16
 * slot:   [in]  [n_tokens * top_k] int32, -1 or 0..n_slots-1 (from ep_moe_layout_ref)
 * x_perm: [out] [n_slots * hidden] bf16
 * A slot >= n_slots is EP_ERR_INVALID here (skipped as dropped on the GPU). */
ep_status ep_moe_permute_ref(int64_t n_tokens, int32_t top_k, int32_t hidden, int64_t n_slots,
                             const ep_bf16 *x, const int32_t *slot, ep_bf16 *x_perm);

/* As ep_moe_permute_ref, quantising to fp8 e4m3 on the way (DeepEP's dispatch
 * format): per block of EP_FP8_BLOCK elements, amax = max(max |x|,
 * EP_MOE_FP8_AMAX_MIN), scale = amax / 448, q = ep_f32_to_fp8(x / scale), so
 * x ~= q * scale. hidden must be a multiple of EP_FP8_BLOCK.
 * x_perm: [out] [n_slots * hidden] fp8
 * scales: [out] [n_slots * hidden / 128] float, row-major per slot */
ep_status ep_moe_permute_fp8_ref(int64_t n_tokens, int32_t top_k, int32_t hidden, int64_t n_slots,
                                 const ep_bf16 *x, const int32_t *slot, ep_fp8 *x_perm,
                                 float *scales);

/* fp8 rows with their block scales (as ep_moe_permute_fp8_ref writes them, or
 * as dispatch delivers them) -> bf16 rows at new positions:
 * out[slot[i]][j] = bf16(fp8_to_f32(q[i][j]) * scales[i][j / 128]) (one float
 * multiply, round to nearest even). hidden must be a multiple of EP_FP8_BLOCK.
 * q: [in] [n_rows * hidden] fp8; scales: [in] [n_rows * hidden / 128] float;
 * slot: [in] [n_rows] distinct rows of out; out: [out] [.. * hidden] bf16. */
void ep_moe_fp8_to_bf16_rows_ref(int64_t n_rows, int32_t hidden, const ep_fp8 *q,
                                 const float *scales, const int32_t *slot, ep_bf16 *out);

/* ---- SwiGLU experts ----------------------------------------------------- */

/* Grouped GEMM: for each expert e, the counts[e] rows of a starting at row
 * sum(counts[0..e-1]) are multiplied by w[e]^T; accumulated in double, rounded
 * to bf16.
 * counts: [in]  [n_experts] int32 >= 0, rows per expert
 * a:      [in]  [rows * k] bf16, rows = sum(counts)
 * w:      [in]  [n_experts * n * k] bf16 (expert e: n rows of k)
 * c:      [out] [rows * n] bf16 */
ep_status ep_moe_grouped_gemm_ref(int32_t n_experts, const int32_t *counts, int32_t n, int32_t k,
                                  const ep_bf16 *a, const ep_bf16 *w, ep_bf16 *c);

/* h[r, i] = silu(h13[r, i]) * h13[r, inter + i], silu(g) = g / (1 + exp(-g)),
 * in float, rounded to bf16.
 * h13: [in]  [n_rows * 2 * inter] bf16 (gate half, then up half)
 * h:   [out] [n_rows * inter] bf16 */
ep_status ep_moe_swiglu_ref(int64_t n_rows, int32_t inter, const ep_bf16 *h13, ep_bf16 *h);

/* One row through one expert: y = (silu(x·Wg^T) * (x·Wu^T)) · W2^T, with the
 * gate/up product and the activation rounded to bf16 as the GPU stores them.
 * x_row: [in]  [hidden] bf16
 * w13_e: [in]  [2 * inter * hidden] bf16: rows 0..inter-1 = Wg, inter..2*inter-1 = Wu
 * w2_e:  [in]  [hidden * inter] bf16 (down projection)
 * y_row: [out] [hidden] bf16 */
ep_status ep_moe_expert_ffn_row_ref(int32_t hidden, int32_t inter, const ep_bf16 *x_row,
                                    const ep_bf16 *w13_e, const ep_bf16 *w2_e, ep_bf16 *y_row);

/* Every expert's rows (grouped as in ep_moe_grouped_gemm_ref) through its FFN.
 * x:   [in]  [rows * hidden] bf16, expert-major
 * w13: [in]  [n_experts * 2 * inter * hidden] bf16
 * w2:  [in]  [n_experts * hidden * inter] bf16
 * y:   [out] [rows * hidden] bf16 */
ep_status ep_moe_expert_ffn_ref(int32_t n_experts, const int32_t *counts, int32_t hidden,
                                int32_t inter, const ep_bf16 *x, const ep_bf16 *w13,
                                const ep_bf16 *w2, ep_bf16 *y);

/* ---- combine ------------------------------------------------------------ */

/* out[t] = sum over j of weights[t*top_k + j] * y[slot[t*top_k + j]], in j
 * order, in float (each product and sum rounded separately), rounded to bf16;
 * dropped copies (slot -1) contribute nothing, a token with none gets zeros.
 * y:       [in]  [n_slots * hidden] bf16, expert outputs in expert-major order
 * slot:    [in]  [n_tokens * top_k] int32
 * weights: [in]  [n_tokens * top_k] float
 * out:     [out] [n_tokens * hidden] bf16 */
ep_status ep_moe_combine_ref(int64_t n_tokens, int32_t top_k, int32_t hidden, int64_t n_slots,
                             const ep_bf16 *y, const int32_t *slot, const float *weights,
                             ep_bf16 *out);

/* The shared experts' sum: acc[i] = (first ? f32(a[i]) : acc[i] + f32(a[i]))
 * for i < n, one float add. a: [in] [n] bf16; acc: [in/out] [n] float. */
void ep_moe_accumulate_bf16_ref(int64_t n, const ep_bf16 *a, float *acc, int first);

/* The layer output, routed combine plus shared experts: out[i] = f32(a[i]) +
 * b[i], one float add. a: [in] [n] bf16; b: [in] [n] float; out: [out] [n] float. */
void ep_moe_add_bf16_f32_ref(int64_t n, const ep_bf16 *a, const float *b, float *out);

#ifdef __cplusplus
}
#endif

#endif
