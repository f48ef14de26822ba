/* CUDA compute: device memory and the launchers of kernels/ep_moe_cuda.h (the
 * context's cuBLAS handle and its own non-blocking stream) and
 * kernels/ep_moe_cuda.h, all queued on that one stream. ctx is the ep_moe_cuda. */
#include <cuda_runtime.h>

#include "ep_compute.h"

#include <stdio.h>
#include <stdlib.h>

#include "ep_cuda_check.h"
#include "ep_moe_cuda.h"

static ep_status cuda_device_query(int32_t rank, int32_t local_rank, ep_compute_device *out)
{
  ep_status st = EP_OK;
  int count = 0, driver = 0, runtime = 0;
  size_t free_b = 0, total_b = 0;
  struct cudaDeviceProp prop;
  out->device = -1;
  EP_CUDA_TRY(cudaGetDeviceCount(&count));
  if (count <= 0) {
    ep_log_error("rank %d: no CUDA device", (int)rank);
    return EP_ERR_UNSUPPORTED;
  }
  out->device = local_rank % count;
  EP_CUDA_TRY(cudaSetDevice(out->device));
  EP_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
  EP_CUDA_TRY(cudaGetDeviceProperties(&prop, out->device));
  EP_CUDA_TRY(cudaDriverGetVersion(&driver));
  EP_CUDA_TRY(cudaRuntimeGetVersion(&runtime));
  out->free_bytes = (int64_t)free_b;
  out->total_bytes = (int64_t)total_b;
  snprintf(out->name, sizeof out->name, "%s", prop.name);
  snprintf(out->versions, sizeof out->versions, "driver %d.%d, runtime %d.%d", driver / 1000,
           driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
  return EP_OK;
fail:
  ep_log_error("rank %d: querying CUDA device %d failed", (int)rank, (int)out->device);
  return st;
}

static ep_status cuda_init(void **out, int32_t device)
{
  return ep_moe_cuda_init((ep_moe_cuda **)out, device, NULL);
}

static void cuda_free(void *ctx)
{
  ep_moe_cuda_free(ctx);
}

static void *cuda_stream(void *ctx)
{
  return ep_moe_cuda_stream(ctx);
}

static ep_status cuda_sync(void *ctx)
{
  return ep_moe_cuda_sync(ctx);
}

static ep_status cuda_alloc(void *ctx, int64_t bytes, void **out)
{
  ep_status st = EP_OK;
  (void)ctx;
  EP_CUDA_TRY(cudaMalloc(out, (size_t)bytes));
  return EP_OK;
fail:
  ep_log_error("could not allocate %lld bytes of device memory", (long long)bytes);
  *out = NULL;
  return st;
}

static void cuda_buf_free(void *ctx, void *p)
{
  (void)ctx;
  if (p)
    cudaFree(p);
}

/* On the context's stream: it does not wait for the legacy default stream. */
static ep_status cuda_copy(void *ctx, void *dst, const void *src, int64_t bytes)
{
  ep_status st = EP_OK;
  if (bytes > 0)
    EP_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDefault,
                                (cudaStream_t)ep_moe_cuda_stream(ctx)));
  return EP_OK;
fail:
  return st;
}

static ep_status cuda_zero(void *ctx, void *p, int64_t bytes)
{
  ep_status st = EP_OK;
  EP_CUDA_TRY(cudaMemsetAsync(p, 0, (size_t)bytes, (cudaStream_t)ep_moe_cuda_stream(ctx)));
  return EP_OK;
fail:
  return st;
}

/* Tokens come from the host generator (one seed per token), then one copy. */
static ep_status cuda_fill_tokens(void *ctx, const ep_real_shape *shape, int64_t first_token,
                                  int64_t n_tokens, ep_bf16 *x)
{
  const size_t bytes = sizeof(ep_bf16) * (size_t)n_tokens * (size_t)shape->hidden;
  ep_bf16 *hx = malloc(bytes > 0 ? bytes : 1);
  if (!hx) {
    ep_log_error("out of memory for %lld tokens", (long long)n_tokens);
    return EP_ERR_NOMEM;
  }
  ep_real_tokens_fill(shape, first_token, n_tokens, hx);
  ep_status st = cuda_copy(ctx, x, hx, (int64_t)bytes);
  if (st == EP_OK)
    st = ep_moe_cuda_sync(ctx); /* hx is read until the copy completes */
  free(hx);
  return st;
}

/* Weights by the device fill that reproduces ep_real_expert_fill bit for bit. */
static ep_status cuda_fill_expert(void *ctx, const ep_real_shape *shape, int32_t expert,
                                  ep_bf16 *w13, ep_bf16 *w2)
{
  const int64_t w13_elems = 2 * (int64_t)shape->intermediate * shape->hidden;
  const int64_t w2_elems = (int64_t)shape->hidden * shape->intermediate;
  const float b13 = ep_real_w13_bound(shape), b2 = ep_real_w2_bound(shape);
  ep_status st = ep_moe_cuda_fill_uniform_bf16(ctx, w13, w13_elems, ep_real_w13_seed(shape, expert),
                                               -b13, b13);
  if (st == EP_OK)
    st = ep_moe_cuda_fill_uniform_bf16(ctx, w2, w2_elems, ep_real_w2_seed(shape, expert), -b2, b2);
  return st;
}

static ep_status cuda_permute(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                              int64_t n_slots, const ep_bf16 *x, const int32_t *slot,
                              ep_bf16 *x_perm)
{
  return ep_moe_cuda_permute(ctx, n_tokens, top_k, hidden, n_slots, x, slot, x_perm);
}

static ep_status cuda_permute_fp8(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                                  int64_t n_slots, const ep_bf16 *x, const int32_t *slot,
                                  ep_fp8 *x_perm, float *scales)
{
  return ep_moe_cuda_permute_fp8(ctx, n_tokens, top_k, hidden, n_slots, x, slot, x_perm, scales);
}

static ep_status cuda_fp8_to_bf16_rows(void *ctx, int64_t n_rows, int32_t hidden, const ep_fp8 *q,
                                       const float *scales, const int32_t *slot, ep_bf16 *out)
{
  return ep_moe_cuda_fp8_to_bf16_rows(ctx, n_rows, hidden, q, scales, slot, out);
}

static ep_status cuda_expert_ffn(void *ctx, int32_t n_experts, const int32_t *counts,
                                 int32_t hidden, int32_t inter, const ep_bf16 *x,
                                 const ep_bf16 *w13, const ep_bf16 *w2, ep_bf16 *y)
{
  return ep_moe_cuda_expert_ffn(ctx, EP_MOE_GEMM_AUTO, n_experts, counts, hidden, inter, x, w13, w2,
                                y);
}

static ep_status cuda_combine(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                              int64_t n_slots, const ep_bf16 *y, const int32_t *slot,
                              const float *weights, ep_bf16 *out)
{
  return ep_moe_cuda_combine(ctx, n_tokens, top_k, hidden, n_slots, y, slot, weights, out);
}

static ep_status cuda_accumulate_bf16(void *ctx, int64_t n, const ep_bf16 *a, float *acc, int first)
{
  return ep_moe_cuda_accumulate_bf16(ctx, n, a, acc, first);
}

static ep_status cuda_add_bf16_f32(void *ctx, int64_t n, const ep_bf16 *a, const float *b,
                                   float *out)
{
  return ep_moe_cuda_add_bf16_f32(ctx, n, a, b, out);
}

/* In ep_compute_ops order. */
const ep_compute_ops ep_compute_cuda = {"cuda",
                                        1,
                                        ep_moe_cuda_device_count,
                                        cuda_device_query,
                                        cuda_init,
                                        cuda_free,
                                        cuda_stream,
                                        cuda_sync,
                                        cuda_alloc,
                                        cuda_buf_free,
                                        cuda_copy,
                                        cuda_zero,
                                        cuda_fill_tokens,
                                        cuda_fill_expert,
                                        cuda_permute,
                                        cuda_permute_fp8,
                                        cuda_fp8_to_bf16_rows,
                                        cuda_expert_ffn,
                                        cuda_combine,
                                        cuda_accumulate_bf16,
                                        cuda_add_bf16_f32};
