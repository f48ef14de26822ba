/* Reference compute: host memory and the C reference kernels, one thread, so
 * every row's math is the same wherever it runs (outputs are bit-identical on
 * any rank count). Work is done when an op returns; sync has nothing to wait for. */
#include "ep_compute.h"

#include <stdlib.h>
#include <string.h>

#include "ep_real.h"

static ep_status ref_init(void **out, int32_t device)
{
  (void)device;
  *out = NULL; /* no state */
  return EP_OK;
}

static void ref_free(void *ctx)
{
  (void)ctx;
}

static void *ref_stream(void *ctx)
{
  (void)ctx;
  return NULL;
}

static ep_status ref_sync(void *ctx)
{
  (void)ctx;
  return EP_OK;
}

static ep_status ref_alloc(void *ctx, int64_t bytes, void **out)
{
  (void)ctx;
  if (!(*out = malloc((size_t)bytes))) {
    ep_log_error("out of memory for a buffer of %lld bytes", (long long)bytes);
    return EP_ERR_NOMEM;
  }
  return EP_OK;
}

static void ref_buf_free(void *ctx, void *p)
{
  (void)ctx;
  free(p);
}

static ep_status ref_copy(void *ctx, void *dst, const void *src, int64_t bytes)
{
  (void)ctx;
  if (bytes > 0)
    memcpy(dst, src, (size_t)bytes);
  return EP_OK;
}

static ep_status ref_zero(void *ctx, void *p, int64_t bytes)
{
  (void)ctx;
  memset(p, 0, (size_t)bytes);
  return EP_OK;
}

static ep_status ref_fill_tokens(void *ctx, const ep_real_shape *shape, int64_t first_token,
                                 int64_t n_tokens, ep_bf16 *x)
{
  (void)ctx;
  ep_real_tokens_fill(shape, first_token, n_tokens, x);
  return EP_OK;
}

static ep_status ref_fill_expert(void *ctx, const ep_real_shape *shape, int32_t expert,
                                 ep_bf16 *w13, ep_bf16 *w2)
{
  (void)ctx;
  ep_real_expert_fill(shape, expert, w13, w2);
  return EP_OK;
}

static ep_status ref_permute(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                             int64_t n_slots, const ep_bf16 *x, const int32_t *slot,
                             ep_bf16 *x_perm)
{
  (void)ctx;
  return ep_moe_permute_ref(n_tokens, top_k, hidden, n_slots, x, slot, x_perm);
}

static ep_status ref_permute_fp8(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                                 int64_t n_slots, const ep_bf16 *x, const int32_t *slot,
                                 ep_fp8 *x_perm, float *scales)
{
  (void)ctx;
  return ep_moe_permute_fp8_ref(n_tokens, top_k, hidden, n_slots, x, slot, x_perm, scales);
}

static ep_status ref_fp8_to_bf16_rows(void *ctx, int64_t n_rows, int32_t hidden, const ep_fp8 *q,
                                      const float *scales, const int32_t *slot, ep_bf16 *out)
{
  (void)ctx;
  ep_moe_fp8_to_bf16_rows_ref(n_rows, hidden, q, scales, slot, out);
  return EP_OK;
}

static ep_status ref_expert_ffn(void *ctx, int32_t n_experts, const int32_t *counts, int32_t hidden,
                                int32_t inter, const ep_bf16 *x, const ep_bf16 *w13,
                                const ep_bf16 *w2, ep_bf16 *y)
{
  (void)ctx;
  return ep_moe_expert_ffn_ref(n_experts, counts, hidden, inter, x, w13, w2, y);
}

static ep_status ref_combine(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                             int64_t n_slots, const ep_bf16 *y, const int32_t *slot,
                             const float *weights, ep_bf16 *out)
{
  (void)ctx;
  return ep_moe_combine_ref(n_tokens, top_k, hidden, n_slots, y, slot, weights, out);
}

static ep_status ref_accumulate_bf16(void *ctx, int64_t n, const ep_bf16 *a, float *acc, int first)
{
  (void)ctx;
  for (int64_t i = 0; i < n; i++)
    acc[i] = (first ? 0.0f : acc[i]) + ep_bf16_to_f32(a[i]);
  return EP_OK;
}

static ep_status ref_add_bf16_f32(void *ctx, int64_t n, const ep_bf16 *a, const float *b,
                                  float *out)
{
  (void)ctx;
  for (int64_t i = 0; i < n; i++)
    out[i] = ep_bf16_to_f32(a[i]) + b[i];
  return EP_OK;
}

/* In ep_compute_ops order. */
const ep_compute_ops ep_compute_ref = {"ref",
                                       0,
                                       NULL,
                                       NULL,
                                       ref_init,
                                       ref_free,
                                       ref_stream,
                                       ref_sync,
                                       ref_alloc,
                                       ref_buf_free,
                                       ref_copy,
                                       ref_zero,
                                       ref_fill_tokens,
                                       ref_fill_expert,
                                       ref_permute,
                                       ref_permute_fp8,
                                       ref_fp8_to_bf16_rows,
                                       ref_expert_ffn,
                                       ref_combine,
                                       ref_accumulate_bf16,
                                       ref_add_bf16_f32};
