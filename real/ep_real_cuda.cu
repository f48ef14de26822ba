/* Small elementwise kernels of the NCCL backend. Conversions use the CUDA
 * intrinsics whose rounding the C references reproduce: fp8 -> float is exact,
 * one __fmul_rn, then __float2bfloat16_rn. */
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "ep_cuda_check.h"
#include "ep_real_cuda.h"

__device__ static float bf16_to_f32(ep_bf16 v)
{
  return __uint_as_float((unsigned)v << 16);
}

/* One row per block, 8 values per thread: an 8-byte load of fp8 and a 16-byte
 * store of bf16 (hidden % 128 == 0 keeps both aligned, cudaMalloc the bases),
 * so the kernel runs at copy speed inside the timed dispatch. */
__global__ static void fp8_to_bf16_rows_kernel(int64_t n_rows, int32_t hidden, const ep_fp8 *q,
                                               const float *scales, const int32_t *slot,
                                               ep_bf16 *out)
{
  const int64_t row = blockIdx.x;
  if (row >= n_rows)
    return;
  const int32_t nb = hidden / EP_FP8_BLOCK;
  const uint2 *qi = reinterpret_cast<const uint2 *>(q + row * hidden);
  const float *si = scales + row * nb;
  uint4 *dst = reinterpret_cast<uint4 *>(out + (int64_t)slot[row] * hidden);
  for (int32_t v = threadIdx.x; v < hidden / 8; v += blockDim.x) {
    const uint2 in = qi[v];
    const float scale = si[v * 8 / EP_FP8_BLOCK];
    unsigned bytes[2] = {in.x, in.y};
    unsigned packed[4];
    for (int i = 0; i < 8; i++) {
      __nv_fp8_e4m3 e;
      e.__x = (unsigned char)(bytes[i / 4] >> (8 * (i % 4)));
      const __nv_bfloat16 bv = __float2bfloat16_rn(__fmul_rn(static_cast<float>(e), scale));
      const unsigned bits = *reinterpret_cast<const unsigned short *>(&bv);
      packed[i / 2] = i % 2 ? packed[i / 2] | bits << 16 : bits;
    }
    dst[v] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
  }
}

__global__ static void accumulate_kernel(int64_t n, const ep_bf16 *a, float *acc, int first)
{
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    acc[i] = first ? bf16_to_f32(a[i]) : __fadd_rn(acc[i], bf16_to_f32(a[i]));
}

__global__ static void add_kernel(int64_t n, const ep_bf16 *a, const float *b, float *out)
{
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = __fadd_rn(bf16_to_f32(a[i]), b[i]);
}

extern "C" ep_status ep_real_cuda_fp8_to_bf16_rows(void *stream, int64_t n_rows, int32_t hidden,
                                                   const ep_fp8 *d_q, const float *d_scales,
                                                   const int32_t *d_slot, ep_bf16 *d_out)
{
  ep_status st = EP_OK;
  if (n_rows < 0 || hidden <= 0 || hidden % EP_FP8_BLOCK != 0 || n_rows > 2147483647)
    return EP_ERR_INVALID;
  if (n_rows == 0)
    return EP_OK;
  /* 7168 / 8 = 896 vectors: 128 threads take 7 each. */
  fp8_to_bf16_rows_kernel<<<(unsigned)n_rows, 128, 0, (cudaStream_t)stream>>>(
      n_rows, hidden, d_q, d_scales, d_slot, d_out);
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

extern "C" ep_status ep_real_cuda_accumulate_bf16(void *stream, int64_t n, const ep_bf16 *d_a,
                                                  float *d_acc, int first)
{
  ep_status st = EP_OK;
  if (n < 0)
    return EP_ERR_INVALID;
  if (n == 0)
    return EP_OK;
  accumulate_kernel<<<(unsigned)((n + 255) / 256), 256, 0, (cudaStream_t)stream>>>(n, d_a, d_acc,
                                                                                   first);
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

extern "C" ep_status ep_real_cuda_add_bf16_f32(void *stream, int64_t n, const ep_bf16 *d_a,
                                               const float *d_b, float *d_out)
{
  ep_status st = EP_OK;
  if (n < 0)
    return EP_ERR_INVALID;
  if (n == 0)
    return EP_OK;
  add_kernel<<<(unsigned)((n + 255) / 256), 256, 0, (cudaStream_t)stream>>>(n, d_a, d_b, d_out);
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}
