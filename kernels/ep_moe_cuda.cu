/* CUDA MoE kernels and their extern "C" launchers (see ep_moe_cuda.h); each
 * mirrors a C reference in ep_moe_ref.c. Where the reference rounds a product
 * and a sum separately, the kernels use __fmul_rn/__fadd_rn so nvcc cannot fuse
 * them into an FMA, and divisions are IEEE (__fdiv_rn): layout, permute, fp8
 * permute, combine and the router's selection then match the reference bit for
 * bit. Memory-bound kernels move 16 bytes per thread access. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <climits>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ep_cuda_check.h"
#include "ep_moe_cuda.h"

#define EP__FULL_MASK 0xffffffffu
/* Groups per cublasGemmGroupedBatchedEx call; their offsets travel as a kernel
 * parameter (well under the 4 KB limit). */
#define EP__GEMM_CHUNK 256
#define EP__LAYOUT_CHUNK 1024 /* copies per layout block (32 warps) */
#define EP__ROUTER_MAX_WARPS 4
#define EP__ROUTER_SMEM_BYTES (48 * 1024)
/* Largest block of the one-block-per-token kernels (permute, combine). Their
 * __launch_bounds__ caps registers at 64 so such a block fits an SM's 64K
 * registers; without it combine_vec_kernel used 72 and failed to launch with
 * 1024 threads (hidden > 14336). */
#define EP__ROW_MAX_THREADS 1024

struct ep_moe_cuda {
  int32_t device;
  cudaStream_t stream;
  int own_stream;
  cublasHandle_t cublas;
  void *d_ws; /* workspace: logits, layout scratch, FFN intermediates */
  size_t ws_bytes;
  void **d_ptrs;           /* [3 * EP__GEMM_CHUNK] pointer arrays of one grouped GEMM call */
  int grouped_unsupported; /* cuBLAS refused the grouped GEMM once: AUTO uses LOOP */
};

/* ---- device helpers ----------------------------------------------------- */

__device__ __forceinline__ float bf16_lo(uint32_t w)
{
  return __uint_as_float(w << 16);
}
__device__ __forceinline__ float bf16_hi(uint32_t w)
{
  return __uint_as_float(w & 0xffff0000u);
}

__device__ __forceinline__ uint32_t f32_to_bf16_bits(float f)
{
  return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(f));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi)
{
  return f32_to_bf16_bits(lo) | (f32_to_bf16_bits(hi) << 16);
}

/* Unpacks 8 bf16 values held in 16 bytes. */
__device__ __forceinline__ void unpack8(uint4 v, float f[8])
{
  f[0] = bf16_lo(v.x);
  f[1] = bf16_hi(v.x);
  f[2] = bf16_lo(v.y);
  f[3] = bf16_hi(v.y);
  f[4] = bf16_lo(v.z);
  f[5] = bf16_hi(v.z);
  f[6] = bf16_lo(v.w);
  f[7] = bf16_hi(v.w);
}

__device__ __forceinline__ uint4 pack8(const float f[8])
{
  return make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]),
                    pack_bf16x2(f[6], f[7]));
}

static int is_aligned(const void *p, size_t bytes)
{
  return ((uintptr_t)p % bytes) == 0;
}

static unsigned int round_up32(int64_t v)
{
  return (unsigned int)((v + 31) / 32 * 32);
}

/* Threads per block for a row of row_vecs vectors, each thread taking `per`. */
static unsigned int row_threads(int64_t row_vecs, int per)
{
  int64_t want = round_up32((row_vecs + per - 1) / per);
  if (want < 64)
    want = 64; /* at least EP_MOE_MAX_TOP_K threads load the slots */
  return (unsigned int)(want > EP__ROW_MAX_THREADS ? EP__ROW_MAX_THREADS : want);
}

static unsigned int token_grid(int64_t n_tokens)
{
  const int64_t max_grid = 1 << 20; /* blocks loop over further tokens */
  return (unsigned int)(n_tokens < max_grid ? n_tokens : max_grid);
}

/* ---- context ------------------------------------------------------------ */

extern "C" const char *ep_moe_gemm_impl_name(ep_moe_gemm_impl impl)
{
  switch (impl) {
  case EP_MOE_GEMM_AUTO:
    return "auto";
  case EP_MOE_GEMM_GROUPED:
    return "cublas_grouped";
  case EP_MOE_GEMM_LOOP:
    return "cublas_loop";
  case EP_MOE_GEMM_BATCHED:
    return "cublas_batched";
  }
  return "unknown";
}

extern "C" int32_t ep_moe_cuda_device_count(void)
{
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError(); /* clear the sticky "no driver" error */
    return 0;
  }
  return n;
}

extern "C" void ep_moe_cuda_free(ep_moe_cuda *ctx)
{
  if (!ctx)
    return;
  /* No stream yet (init failed early): nothing was enqueued, nothing to wait for. */
  cudaError_t err = ctx->stream ? cudaStreamSynchronize(ctx->stream) : cudaSuccess;
  if (err != cudaSuccess)
    ep_log_error("ep_moe_cuda_free: cudaStreamSynchronize: %s", cudaGetErrorString(err));
  if (ctx->d_ws)
    (void)cudaFree(ctx->d_ws);
  if (ctx->d_ptrs)
    (void)cudaFree(ctx->d_ptrs);
  if (ctx->cublas)
    (void)cublasDestroy(ctx->cublas);
  if (ctx->own_stream && ctx->stream)
    (void)cudaStreamDestroy(ctx->stream);
  free(ctx);
}

extern "C" ep_status ep_moe_cuda_init(ep_moe_cuda **out, int32_t device, void *stream)
{
  ep_status st = EP_OK;
  ep_moe_cuda *ctx = NULL;
  if (!out) {
    ep_log_error("ep_moe_cuda_init: null out");
    return EP_ERR_INVALID;
  }
  *out = NULL;
  ctx = (ep_moe_cuda *)calloc(1, sizeof *ctx);
  if (!ctx) {
    ep_log_error("ep_moe_cuda_init: out of memory");
    return EP_ERR_NOMEM;
  }
  ctx->device = device;
  EP_CUDA_TRY(cudaSetDevice(device));
  if (stream) {
    ctx->stream = (cudaStream_t)stream;
  } else {
    EP_CUDA_TRY(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    ctx->own_stream = 1;
  }
  EP_CUBLAS_TRY(cublasCreate(&ctx->cublas));
  EP_CUBLAS_TRY(cublasSetStream(ctx->cublas, ctx->stream));
  EP_CUDA_TRY(cudaMalloc((void **)&ctx->d_ptrs, 3 * EP__GEMM_CHUNK * sizeof(void *)));
  *out = ctx;
  return EP_OK;
fail:
  ep_moe_cuda_free(ctx);
  return st;
}

extern "C" void *ep_moe_cuda_stream(const ep_moe_cuda *ctx)
{
  return ctx ? (void *)ctx->stream : NULL;
}

extern "C" int32_t ep_moe_cuda_device(const ep_moe_cuda *ctx)
{
  return ctx ? ctx->device : -1;
}

extern "C" ep_status ep_moe_cuda_sync(ep_moe_cuda *ctx)
{
  ep_status st = EP_OK;
  if (!ctx)
    return EP_ERR_INVALID;
  EP_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

/* Grows the workspace to at least `bytes` (waiting for work that may use it). */
static ep_status ws_reserve(ep_moe_cuda *ctx, size_t bytes, void **ws)
{
  ep_status st = EP_OK;
  if (bytes > ctx->ws_bytes) {
    size_t want = bytes + bytes / 4;
    EP_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    if (ctx->d_ws) {
      EP_CUDA_TRY(cudaFree(ctx->d_ws));
      ctx->d_ws = NULL;
      ctx->ws_bytes = 0;
    }
    EP_CUDA_TRY(cudaMalloc(&ctx->d_ws, want));
    ctx->ws_bytes = want;
  }
  *ws = ctx->d_ws;
  return EP_OK;
fail:
  *ws = NULL;
  return st;
}

static ep_status check_ctx(const ep_moe_cuda *ctx, const char *who)
{
  if (!ctx) {
    ep_log_error("%s: null context", who);
    return EP_ERR_INVALID;
  }
  return EP_OK;
}

/* ---- random fill -------------------------------------------------------- */

__device__ __forceinline__ float uniform_at(uint64_t seed, uint64_t index, float lo, float hi)
{
  uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  float u = (float)(z >> 40) * 0x1p-24f;
  return __fadd_rn(lo, __fmul_rn(__fsub_rn(hi, lo), u));
}

__global__ void fill_f32_kernel(float *out, int64_t n, uint64_t seed, float lo, float hi)
{
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = uniform_at(seed, (uint64_t)i, lo, hi);
}

__global__ void fill_bf16_kernel(uint16_t *out, int64_t n, uint64_t seed, float lo, float hi)
{
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = (uint16_t)f32_to_bf16_bits(uniform_at(seed, (uint64_t)i, lo, hi));
}

static unsigned int elementwise_grid(int64_t n)
{
  int64_t blocks = (n + 255) / 256;
  return (unsigned int)(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

extern "C" ep_status ep_moe_cuda_fill_uniform_f32(ep_moe_cuda *ctx, float *d_out, int64_t n,
                                                  uint64_t seed, float lo, float hi)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_fill_uniform_f32");
  if (st != EP_OK || n <= 0)
    return st;
  fill_f32_kernel<<<elementwise_grid(n), 256, 0, ctx->stream>>>(d_out, n, seed, lo, hi);
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

extern "C" ep_status ep_moe_cuda_fill_uniform_bf16(ep_moe_cuda *ctx, ep_bf16 *d_out, int64_t n,
                                                   uint64_t seed, float lo, float hi)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_fill_uniform_bf16");
  if (st != EP_OK || n <= 0)
    return st;
  fill_bf16_kernel<<<elementwise_grid(n), 256, 0, ctx->stream>>>(d_out, n, seed, lo, hi);
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

/* ---- router ------------------------------------------------------------- */

struct router_params {
  int64_t n_tokens;
  int32_t n_experts, n_groups, topk_groups, top_k;
  int32_t score_fn, normalize;
  float scaling;
};

/* Warp-wide argmax: larger value wins, ties to the lower index. The order is
 * total, so every lane ends with the same pair. */
__device__ __forceinline__ void warp_argmax(float &v, int &i)
{
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    float ov = __shfl_xor_sync(EP__FULL_MASK, v, off);
    int oi = __shfl_xor_sync(EP__FULL_MASK, i, off);
    if (ov > v || (ov == v && oi < i)) {
      v = ov;
      i = oi;
    }
  }
}

/* One warp per token. Shared memory per warp: scores [E], keys [E], group
 * scores [n_groups], chosen experts [top_k]. NaN marks "not eligible / taken". */
__global__ void router_select_kernel(router_params p, const float *__restrict__ logits,
                                     const float *__restrict__ bias, float *__restrict__ scores_out,
                                     int32_t *__restrict__ experts_out,
                                     float *__restrict__ weights_out)
{
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  const int E = p.n_experts;
  float *s = smem + (size_t)warp * (2 * E + p.n_groups + p.top_k);
  float *key = s + E;
  float *gscore = key + E;
  int *chosen = (int *)(gscore + p.n_groups);
  const int64_t t = (int64_t)blockIdx.x * warps + warp;
  if (t >= p.n_tokens)
    return; /* whole warps leave; only warp-level barriers follow */
  const float *l = logits + t * E;

  /* Scores (each lane owns experts lane, lane+32, ...). */
  if (p.score_fn == EP_MOE_SCORE_SIGMOID) {
    for (int e = lane; e < E; e += 32)
      s[e] = __fdiv_rn(1.0f, 1.0f + expf(-l[e]));
  } else {
    float max = -INFINITY;
    for (int e = lane; e < E; e += 32)
      max = fmaxf(max, l[e]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
      max = fmaxf(max, __shfl_xor_sync(EP__FULL_MASK, max, off));
    float sum = 0.0f;
    for (int e = lane; e < E; e += 32) {
      float v = expf(l[e] - max);
      s[e] = v;
      sum += v;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
      sum += __shfl_xor_sync(EP__FULL_MASK, sum, off);
    for (int e = lane; e < E; e += 32)
      s[e] = __fdiv_rn(s[e], sum);
  }
  for (int e = lane; e < E; e += 32) {
    float v = s[e];
    if (scores_out)
      scores_out[t * E + e] = v;
    float k = bias ? __fadd_rn(v, bias[e]) : v;
    key[e] = (k != k) ? -INFINITY : k;
  }
  __syncwarp();

  if (p.n_groups > 1) {
    const int G = E / p.n_groups;
    for (int g = 0; g < p.n_groups; g++) {
      float t1 = -INFINITY, t2 = -INFINITY; /* this lane's two largest keys */
      for (int i = lane; i < G; i += 32) {
        float v = key[g * G + i];
        if (v > t1) {
          t2 = t1;
          t1 = v;
        } else if (v > t2) {
          t2 = v;
        }
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) {
        float o1 = __shfl_xor_sync(EP__FULL_MASK, t1, off);
        float o2 = __shfl_xor_sync(EP__FULL_MASK, t2, off);
        float n1 = fmaxf(t1, o1);
        float n2 = fmaxf(fminf(t1, o1), fmaxf(t2, o2));
        t1 = n1;
        t2 = n2;
      }
      if (lane == 0) {
        float gs = G >= 2 ? __fadd_rn(t1, t2) : t1;
        gscore[g] = (gs != gs) ? -INFINITY : gs;
      }
    }
    __syncwarp();
    for (int r = 0; r < p.topk_groups; r++) {
      float bv = -INFINITY;
      int bi = INT_MAX;
      for (int g = lane; g < p.n_groups; g += 32) {
        float v = gscore[g];
        if (v != v)
          continue;
        if (v > bv || (v == bv && g < bi)) {
          bv = v;
          bi = g;
        }
      }
      warp_argmax(bv, bi);
      if (lane == 0)
        gscore[bi] = NAN; /* chosen */
      __syncwarp();
    }
    for (int e = lane; e < E; e += 32) {
      float g = gscore[e / G];
      if (g == g)
        key[e] = NAN; /* group not chosen */
    }
    __syncwarp();
  }

  for (int j = 0; j < p.top_k; j++) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int e = lane; e < E; e += 32) {
      float v = key[e];
      if (v != v)
        continue;
      if (v > bv || (v == bv && e < bi)) {
        bv = v;
        bi = e;
      }
    }
    warp_argmax(bv, bi);
    if (lane == 0) {
      experts_out[t * p.top_k + j] = bi;
      chosen[j] = bi;
      key[bi] = NAN;
    }
    __syncwarp();
  }

  if (weights_out && lane == 0) {
    float sum = 0.0f;
    for (int j = 0; j < p.top_k; j++)
      sum = __fadd_rn(sum, s[chosen[j]]);
    for (int j = 0; j < p.top_k; j++) {
      float w = s[chosen[j]];
      if (p.normalize && sum > 0.0f)
        w = __fdiv_rn(w, sum);
      weights_out[t * p.top_k + j] = __fmul_rn(w, p.scaling);
    }
  }
}

extern "C" ep_status ep_moe_cuda_router_select(ep_moe_cuda *ctx, const ep_moe_router_cfg *cfg,
                                               int64_t n_tokens, const float *d_logits,
                                               const float *d_bias, float *d_scores,
                                               int32_t *d_experts, float *d_weights)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_router_select");
  if (st != EP_OK)
    return st;
  if ((st = ep_moe_router_cfg_check(cfg)) != EP_OK)
    return st;
  if (n_tokens < 0 || (n_tokens > 0 && (!d_logits || !d_experts))) {
    ep_log_error("ep_moe_cuda_router_select: bad argument (n_tokens %lld)", (long long)n_tokens);
    return EP_ERR_INVALID;
  }
  if (n_tokens == 0)
    return EP_OK;
  {
    router_params p;
    p.n_tokens = n_tokens;
    p.n_experts = cfg->n_experts;
    p.n_groups = cfg->n_groups;
    p.topk_groups = cfg->topk_groups;
    p.top_k = cfg->top_k;
    p.score_fn = (int32_t)cfg->score_fn;
    p.normalize = cfg->normalize;
    p.scaling = cfg->scaling;
    size_t warp_bytes = sizeof(float) * (size_t)(2 * cfg->n_experts + cfg->n_groups + cfg->top_k);
    int warps = (int)(EP__ROUTER_SMEM_BYTES / warp_bytes);
    if (warps > EP__ROUTER_MAX_WARPS)
      warps = EP__ROUTER_MAX_WARPS;
    if (warps < 1) {
      ep_log_error("ep_moe_cuda_router_select: %d experts need %zu bytes of shared memory per "
                   "token",
                   (int)cfg->n_experts, warp_bytes);
      return EP_ERR_UNSUPPORTED;
    }
    int64_t blocks = (n_tokens + warps - 1) / warps;
    if (blocks > INT_MAX) {
      ep_log_error("ep_moe_cuda_router_select: too many tokens (%lld)", (long long)n_tokens);
      return EP_ERR_UNSUPPORTED;
    }
    router_select_kernel<<<(unsigned int)blocks, 32 * warps, warp_bytes * warps, ctx->stream>>>(
        p, d_logits, d_bias, d_scores, d_experts, d_weights);
    EP_CUDA_TRY(cudaGetLastError());
  }
fail:
  return st;
}

extern "C" ep_status ep_moe_cuda_router(ep_moe_cuda *ctx, const ep_moe_router_cfg *cfg,
                                        int64_t n_tokens, int32_t hidden, ep_dtype dtype,
                                        const void *d_x, const void *d_w_gate, const float *d_bias,
                                        float *d_logits, float *d_scores, int32_t *d_experts,
                                        float *d_weights)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_router");
  if (st != EP_OK)
    return st;
  if ((st = ep_moe_router_cfg_check(cfg)) != EP_OK)
    return st;
  if (n_tokens < 0 || n_tokens > INT_MAX || hidden < 1 ||
      (dtype != EP_DTYPE_F32 && dtype != EP_DTYPE_BF16) ||
      (n_tokens > 0 && (!d_x || !d_w_gate || !d_experts))) {
    ep_log_error("ep_moe_cuda_router: bad argument (n_tokens %lld, hidden %d)", (long long)n_tokens,
                 (int)hidden);
    return EP_ERR_INVALID;
  }
  if (n_tokens == 0)
    return EP_OK;
  {
    float *logits = d_logits;
    if (!logits) {
      void *ws = NULL;
      EP_TRY(ws_reserve(ctx, sizeof(float) * (size_t)n_tokens * (size_t)cfg->n_experts, &ws));
      logits = (float *)ws;
    }
    const float one = 1.0f, zero = 0.0f;
    cudaDataType_t in_type = dtype == EP_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    /* Row-major logits[t, e] = sum_i x[t, i] w[e, i] is the column-major
     * product W^T(T) · X(N) of shape [n_experts, n_tokens]. */
    EP_CUBLAS_TRY(cublasGemmEx(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, cfg->n_experts, (int)n_tokens,
                               hidden, &one, d_w_gate, in_type, hidden, d_x, in_type, hidden, &zero,
                               logits, CUDA_R_32F, cfg->n_experts, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
    EP_TRY(ep_moe_cuda_router_select(ctx, cfg, n_tokens, logits, d_bias, d_scores, d_experts,
                                     d_weights));
  }
fail:
  return st;
}

/* ---- dispatch layout ---------------------------------------------------- */

__device__ __forceinline__ int clean_expert(int e, int n_experts)
{
  return (e < -1 || e >= n_experts) ? -1 : e;
}

/* Per block of EP__LAYOUT_CHUNK copies: each copy's rank among the block's
 * earlier copies of the same expert, and the block's per-expert counts. Warps
 * take turns (one barrier each) so ranks follow copy order exactly. */
__global__ void __launch_bounds__(EP__LAYOUT_CHUNK)
    layout_rank_kernel(int64_t n, int n_experts, const int32_t *__restrict__ experts,
                       int32_t *__restrict__ rank, int32_t *__restrict__ block_counts)
{
  extern __shared__ int hist[];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  for (int e = threadIdx.x; e < n_experts; e += blockDim.x)
    hist[e] = 0;
  __syncthreads();
  const int64_t i = (int64_t)blockIdx.x * EP__LAYOUT_CHUNK + threadIdx.x;
  const int e = i < n ? clean_expert(experts[i], n_experts) : -1;
  const unsigned int peers = __match_any_sync(EP__FULL_MASK, e);
  const int leader = __ffs(peers) - 1;
  const int lane_rank = __popc(peers & ((1u << lane) - 1u));
  int my_rank = 0;
  for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
    if (warp == w) {
      int base = 0;
      if (e >= 0 && lane == leader) {
        base = hist[e];
        hist[e] = base + __popc(peers);
      }
      base = __shfl_sync(EP__FULL_MASK, base, leader);
      my_rank = base + lane_rank;
    }
    __syncthreads();
  }
  if (i < n)
    rank[i] = my_rank;
  for (int x = threadIdx.x; x < n_experts; x += blockDim.x)
    block_counts[(int64_t)blockIdx.x * n_experts + x] = hist[x];
}

/* Exclusive scan of one int per thread over the block; *total gets the sum. */
__device__ int block_exclusive_scan(int v, int *warp_sums, int *total)
{
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int n_warps = (int)((blockDim.x + 31) >> 5);
  int incl = v;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    int o = __shfl_up_sync(EP__FULL_MASK, incl, off);
    if (lane >= off)
      incl += o;
  }
  if (lane == 31)
    warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int w = lane < n_warps ? warp_sums[lane] : 0;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      int o = __shfl_up_sync(EP__FULL_MASK, w, off);
      if (lane >= off)
        w += o;
    }
    __syncwarp();
    if (lane < n_warps)
      warp_sums[lane] = w; /* inclusive over warps */
  }
  __syncthreads();
  *total = warp_sums[n_warps - 1];
  return (warp > 0 ? warp_sums[warp - 1] : 0) + incl - v;
}

/* One block: per-expert totals, offsets, and each (block, expert) base slot,
 * written over block_counts. */
__global__ void __launch_bounds__(1024)
    layout_scan_kernel(int64_t n_blocks, int n_experts, int32_t *__restrict__ block_counts,
                       int32_t *__restrict__ counts, int32_t *__restrict__ offsets)
{
  extern __shared__ int sh[]; /* [n_experts] counts, then offsets; then [32] warp sums */
  int *warp_sums = sh + n_experts;
  for (int e = threadIdx.x; e < n_experts; e += blockDim.x) {
    int run = 0;
#pragma unroll 8
    for (int64_t b = 0; b < n_blocks; b++) {
      int v = block_counts[b * n_experts + e];
      block_counts[b * n_experts + e] = run;
      run += v;
    }
    counts[e] = run;
    sh[e] = run;
  }
  __syncthreads();
  const int per = (n_experts + (int)blockDim.x - 1) / (int)blockDim.x;
  const int beg = min(n_experts, (int)threadIdx.x * per);
  const int end = min(n_experts, beg + per);
  int local = 0;
  for (int e = beg; e < end; e++)
    local += sh[e];
  int total = 0;
  int run = block_exclusive_scan(local, warp_sums, &total);
  for (int e = beg; e < end; e++) {
    int c = sh[e];
    offsets[e] = run;
    sh[e] = run; /* only this thread reads sh[e] in this loop */
    run += c;
  }
  if (threadIdx.x == 0)
    offsets[n_experts] = total;
  __syncthreads();
  for (int e = threadIdx.x; e < n_experts; e += blockDim.x) {
    const int off = sh[e];
    for (int64_t b = 0; b < n_blocks; b++)
      block_counts[b * n_experts + e] += off;
  }
}

__global__ void __launch_bounds__(EP__LAYOUT_CHUNK)
    layout_slot_kernel(int64_t n, int n_experts, const int32_t *__restrict__ experts,
                       const int32_t *__restrict__ rank, const int32_t *__restrict__ block_base,
                       int32_t *__restrict__ slot, int32_t *__restrict__ slot_copy)
{
  const int64_t i = (int64_t)blockIdx.x * EP__LAYOUT_CHUNK + threadIdx.x;
  if (i >= n)
    return;
  const int e = clean_expert(experts[i], n_experts);
  if (e < 0) {
    slot[i] = -1;
    return;
  }
  const int s = block_base[(int64_t)blockIdx.x * n_experts + e] + rank[i];
  slot[i] = s;
  if (slot_copy)
    slot_copy[s] = (int32_t)i;
}

extern "C" ep_status ep_moe_cuda_layout(ep_moe_cuda *ctx, int64_t n_copies, int32_t n_experts,
                                        const int32_t *d_experts, int32_t *d_counts,
                                        int32_t *d_offsets, int32_t *d_slot, int32_t *d_slot_copy)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_layout");
  if (st != EP_OK)
    return st;
  if (n_copies < 0 || n_copies > INT32_MAX || n_experts < 1 || n_experts > EP_MOE_MAX_EXPERTS ||
      !d_counts || !d_offsets || (n_copies > 0 && (!d_experts || !d_slot))) {
    ep_log_error("ep_moe_cuda_layout: bad argument (n_copies %lld, n_experts %d)",
                 (long long)n_copies, (int)n_experts);
    return EP_ERR_INVALID;
  }
  {
    const int64_t n_blocks = (n_copies + EP__LAYOUT_CHUNK - 1) / EP__LAYOUT_CHUNK;
    const size_t rank_bytes = sizeof(int32_t) * (size_t)n_copies;
    const size_t rank_padded = (rank_bytes + 255) / 256 * 256;
    const size_t counts_bytes = sizeof(int32_t) * (size_t)(n_blocks * n_experts);
    void *ws = NULL;
    EP_TRY(ws_reserve(ctx, rank_padded + counts_bytes + 256, &ws));
    int32_t *rank = (int32_t *)ws;
    int32_t *block_counts = (int32_t *)((char *)ws + rank_padded);
    const size_t hist_bytes = sizeof(int) * (size_t)n_experts;
    if (n_blocks > 0) {
      layout_rank_kernel<<<(unsigned int)n_blocks, EP__LAYOUT_CHUNK, hist_bytes, ctx->stream>>>(
          n_copies, n_experts, d_experts, rank, block_counts);
      EP_CUDA_TRY(cudaGetLastError());
    }
    layout_scan_kernel<<<1, 1024, hist_bytes + 32 * sizeof(int), ctx->stream>>>(
        n_blocks, n_experts, block_counts, d_counts, d_offsets);
    EP_CUDA_TRY(cudaGetLastError());
    if (n_blocks > 0) {
      layout_slot_kernel<<<(unsigned int)n_blocks, EP__LAYOUT_CHUNK, 0, ctx->stream>>>(
          n_copies, n_experts, d_experts, rank, block_counts, d_slot, d_slot_copy);
      EP_CUDA_TRY(cudaGetLastError());
    }
  }
fail:
  return st;
}

/* ---- permute ------------------------------------------------------------ */

#define EP__PERMUTE_UNROLL 4

/* Loads the token's slots into shared memory (-1 for dropped or out of range). */
__device__ __forceinline__ void load_slots(int *sl, const int32_t *slot, int64_t t, int top_k,
                                           int64_t n_slots)
{
  if ((int)threadIdx.x < top_k) {
    int s = slot[t * top_k + threadIdx.x];
    sl[threadIdx.x] = (s >= 0 && s < n_slots) ? s : -1;
  }
}

/* V is the access unit: uint4 (8 bf16) or unsigned short (1 bf16). */
template <typename V>
__global__ void __launch_bounds__(EP__ROW_MAX_THREADS)
    permute_kernel(int64_t n_tokens, int top_k, int row_vecs, int64_t n_slots,
                   const V *__restrict__ x, const int32_t *__restrict__ slot, V *__restrict__ out)
{
  __shared__ int sl[EP_MOE_MAX_TOP_K];
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    load_slots(sl, slot, t, top_k, n_slots);
    __syncthreads();
    const V *src = x + t * row_vecs;
    for (int base = threadIdx.x; base < row_vecs; base += blockDim.x * EP__PERMUTE_UNROLL) {
      V v[EP__PERMUTE_UNROLL] = {};
#pragma unroll
      for (int u = 0; u < EP__PERMUTE_UNROLL; u++) {
        const int idx = base + u * (int)blockDim.x;
        if (idx < row_vecs)
          v[u] = __ldg(src + idx);
      }
      for (int j = 0; j < top_k; j++) {
        const int s = sl[j];
        if (s < 0)
          continue;
        V *dst = out + (int64_t)s * row_vecs;
#pragma unroll
        for (int u = 0; u < EP__PERMUTE_UNROLL; u++) {
          const int idx = base + u * (int)blockDim.x;
          if (idx < row_vecs)
            dst[idx] = v[u];
        }
      }
    }
    __syncthreads(); /* sl is reused by the next token */
  }
}

static ep_status check_permute_args(const char *who, const ep_moe_cuda *ctx, int64_t n_tokens,
                                    int32_t top_k, int32_t hidden, int64_t n_slots, const void *x,
                                    const int32_t *slot, const void *out)
{
  ep_status st = check_ctx(ctx, who);
  if (st != EP_OK)
    return st;
  if (n_tokens < 0 || top_k < 1 || top_k > EP_MOE_MAX_TOP_K || hidden < 1 || n_slots < 0 ||
      (n_tokens > 0 && (!x || !slot || (n_slots > 0 && !out)))) {
    ep_log_error("%s: bad argument (n_tokens %lld, top_k %d, hidden %d)", who, (long long)n_tokens,
                 (int)top_k, (int)hidden);
    return EP_ERR_INVALID;
  }
  return EP_OK;
}

extern "C" ep_status ep_moe_cuda_permute(ep_moe_cuda *ctx, int64_t n_tokens, int32_t top_k,
                                         int32_t hidden, int64_t n_slots, const ep_bf16 *d_x,
                                         const int32_t *d_slot, ep_bf16 *d_x_perm)
{
  ep_status st = check_permute_args("ep_moe_cuda_permute", ctx, n_tokens, top_k, hidden, n_slots,
                                    d_x, d_slot, d_x_perm);
  if (st != EP_OK || n_tokens == 0 || n_slots == 0)
    return st;
  if (hidden % 8 == 0 && is_aligned(d_x, 16) && is_aligned(d_x_perm, 16)) {
    const int row_vecs = hidden / 8;
    permute_kernel<uint4>
        <<<token_grid(n_tokens), row_threads(row_vecs, EP__PERMUTE_UNROLL), 0, ctx->stream>>>(
            n_tokens, top_k, row_vecs, n_slots, (const uint4 *)d_x, d_slot, (uint4 *)d_x_perm);
  } else {
    permute_kernel<unsigned short>
        <<<token_grid(n_tokens), row_threads(hidden, EP__PERMUTE_UNROLL), 0, ctx->stream>>>(
            n_tokens, top_k, hidden, n_slots, (const unsigned short *)d_x, d_slot,
            (unsigned short *)d_x_perm);
  }
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

/* 16 consecutive threads own one 128-element block: 8 bf16 each (16 bytes in,
 * 8 fp8 bytes out). The trip count is uniform over the block so whole warps
 * take part in the shuffles. */
__global__ void __launch_bounds__(EP__ROW_MAX_THREADS)
    permute_fp8_kernel(int64_t n_tokens, int top_k, int row_vecs, int64_t n_slots,
                       const uint4 *__restrict__ x, const int32_t *__restrict__ slot,
                       uint2 *__restrict__ q, float *__restrict__ scales)
{
  __shared__ int sl[EP_MOE_MAX_TOP_K];
  const int n_blocks = row_vecs / 16;
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    load_slots(sl, slot, t, top_k, n_slots);
    __syncthreads();
    for (int base = 0; base < row_vecs; base += blockDim.x) {
      const int idx = base + threadIdx.x;
      const bool active = idx < row_vecs; /* whole 16-thread groups, row_vecs % 16 == 0 */
      float f[8];
      unpack8(active ? __ldg(x + t * row_vecs + idx) : make_uint4(0, 0, 0, 0), f);
      float amax = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; i++)
        amax = fmaxf(amax, fabsf(f[i]));
#pragma unroll
      for (int off = 8; off > 0; off >>= 1)
        amax = fmaxf(amax, __shfl_xor_sync(EP__FULL_MASK, amax, off));
      amax = fmaxf(amax, EP_MOE_FP8_AMAX_MIN);
      const float scale = __fdiv_rn(amax, EP_MOE_FP8_MAX);
      uint32_t pair[4];
#pragma unroll
      for (int i = 0; i < 4; i++)
        pair[i] = __nv_cvt_float2_to_fp8x2(
            make_float2(__fdiv_rn(f[2 * i], scale), __fdiv_rn(f[2 * i + 1], scale)), __NV_SATFINITE,
            __NV_E4M3);
      const uint2 packed = make_uint2(pair[0] | (pair[1] << 16), pair[2] | (pair[3] << 16));
      if (active) {
        for (int j = 0; j < top_k; j++) {
          const int s = sl[j];
          if (s < 0)
            continue;
          q[(int64_t)s * row_vecs + idx] = packed;
          if ((idx & 15) == 0)
            scales[(int64_t)s * n_blocks + idx / 16] = scale;
        }
      }
    }
    __syncthreads();
  }
}

extern "C" ep_status ep_moe_cuda_permute_fp8(ep_moe_cuda *ctx, int64_t n_tokens, int32_t top_k,
                                             int32_t hidden, int64_t n_slots, const ep_bf16 *d_x,
                                             const int32_t *d_slot, ep_fp8 *d_x_perm,
                                             float *d_scales)
{
  ep_status st = check_permute_args("ep_moe_cuda_permute_fp8", ctx, n_tokens, top_k, hidden,
                                    n_slots, d_x, d_slot, d_x_perm);
  if (st != EP_OK)
    return st;
  if (hidden % EP_FP8_BLOCK != 0 || (n_tokens > 0 && n_slots > 0 && !d_scales)) {
    ep_log_error("ep_moe_cuda_permute_fp8: hidden %d must be a multiple of %d, scales non-NULL",
                 (int)hidden, EP_FP8_BLOCK);
    return EP_ERR_INVALID;
  }
  if (n_tokens == 0 || n_slots == 0)
    return EP_OK;
  if (!is_aligned(d_x, 16) || !is_aligned(d_x_perm, 8) || !is_aligned(d_scales, 4)) {
    ep_log_error("ep_moe_cuda_permute_fp8: x must be 16-byte, x_perm 8-byte and scales 4-byte "
                 "aligned");
    return EP_ERR_UNSUPPORTED;
  }
  {
    const int row_vecs = hidden / 8;
    permute_fp8_kernel<<<token_grid(n_tokens), row_threads(row_vecs, 1), 0, ctx->stream>>>(
        n_tokens, top_k, row_vecs, n_slots, (const uint4 *)d_x, d_slot, (uint2 *)d_x_perm,
        d_scales);
    EP_CUDA_TRY(cudaGetLastError());
  }
fail:
  return st;
}

/* One row per block, 8 values per thread: an 8-byte load of fp8 and a 16-byte
 * store of bf16 (hidden % 128 == 0 keeps both aligned, cudaMalloc the bases),
 * so the kernel runs at copy speed inside the timed dispatch. fp8 -> float is
 * exact, then one __fmul_rn and __float2bfloat16_rn, as the reference. */
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

extern "C" ep_status ep_moe_cuda_fp8_to_bf16_rows(ep_moe_cuda *ctx, int64_t n_rows, int32_t hidden,
                                                  const ep_fp8 *d_q, const float *d_scales,
                                                  const int32_t *d_slot, ep_bf16 *d_out)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_fp8_to_bf16_rows");
  if (st != EP_OK)
    return st;
  if (n_rows < 0 || hidden <= 0 || hidden % EP_FP8_BLOCK != 0 || n_rows > INT_MAX) {
    ep_log_error("ep_moe_cuda_fp8_to_bf16_rows: bad argument (n_rows %lld, hidden %d a multiple "
                 "of %d)",
                 (long long)n_rows, (int)hidden, EP_FP8_BLOCK);
    return EP_ERR_INVALID;
  }
  if (n_rows == 0)
    return EP_OK;
  /* 7168 / 8 = 896 vectors: 128 threads take 7 each. */
  fp8_to_bf16_rows_kernel<<<(unsigned)n_rows, 128, 0, ctx->stream>>>(n_rows, hidden, d_q, d_scales,
                                                                     d_slot, d_out);
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

/* ---- combine ------------------------------------------------------------ */

#define EP__COMBINE_UNROLL 2 /* 16-byte vectors per thread per pass */
#define EP__COMBINE_BATCH 4  /* copies whose loads are issued together */

/* Loads the token's slots and weights into shared memory. */
__device__ __forceinline__ void load_slots_weights(int *sl, float *sw, const int32_t *slot,
                                                   const float *w, int64_t t, int top_k,
                                                   int64_t n_slots)
{
  if ((int)threadIdx.x < top_k) {
    int s = slot[t * top_k + threadIdx.x];
    sl[threadIdx.x] = (s >= 0 && s < n_slots) ? s : -1;
    sw[threadIdx.x] = w[t * top_k + threadIdx.x];
  }
}

__global__ void __launch_bounds__(EP__ROW_MAX_THREADS)
    combine_vec_kernel(int64_t n_tokens, int top_k, int row_vecs, int64_t n_slots,
                       const uint4 *__restrict__ y, const int32_t *__restrict__ slot,
                       const float *__restrict__ w, uint4 *__restrict__ out)
{
  __shared__ int sl[EP_MOE_MAX_TOP_K];
  __shared__ float sw[EP_MOE_MAX_TOP_K];
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    load_slots_weights(sl, sw, slot, w, t, top_k, n_slots);
    __syncthreads();
    for (int base = threadIdx.x; base < row_vecs; base += blockDim.x * EP__COMBINE_UNROLL) {
      float acc[EP__COMBINE_UNROLL][8];
#pragma unroll
      for (int u = 0; u < EP__COMBINE_UNROLL; u++)
#pragma unroll
        for (int i = 0; i < 8; i++)
          acc[u][i] = 0.0f;
      for (int j0 = 0; j0 < top_k; j0 += EP__COMBINE_BATCH) {
        uint4 v[EP__COMBINE_BATCH][EP__COMBINE_UNROLL];
#pragma unroll
        for (int jj = 0; jj < EP__COMBINE_BATCH; jj++) {
          const int s = j0 + jj < top_k ? sl[j0 + jj] : -1;
#pragma unroll
          for (int u = 0; u < EP__COMBINE_UNROLL; u++) {
            const int idx = base + u * (int)blockDim.x;
            v[jj][u] = (s >= 0 && idx < row_vecs) ? __ldg(y + (int64_t)s * row_vecs + idx)
                                                  : make_uint4(0, 0, 0, 0);
          }
        }
        /* Accumulate in j order, skipping dropped copies, as the reference. */
#pragma unroll
        for (int jj = 0; jj < EP__COMBINE_BATCH; jj++) {
          if (j0 + jj >= top_k || sl[j0 + jj] < 0)
            continue;
          const float wj = sw[j0 + jj];
#pragma unroll
          for (int u = 0; u < EP__COMBINE_UNROLL; u++) {
            float f[8];
            unpack8(v[jj][u], f);
#pragma unroll
            for (int i = 0; i < 8; i++)
              acc[u][i] = __fadd_rn(acc[u][i], __fmul_rn(wj, f[i]));
          }
        }
      }
#pragma unroll
      for (int u = 0; u < EP__COMBINE_UNROLL; u++) {
        const int idx = base + u * (int)blockDim.x;
        if (idx < row_vecs)
          out[t * row_vecs + idx] = pack8(acc[u]);
      }
    }
    __syncthreads();
  }
}

/* Any hidden size or alignment: one bf16 per thread access. */
__global__ void __launch_bounds__(EP__ROW_MAX_THREADS)
    combine_scalar_kernel(int64_t n_tokens, int top_k, int hidden, int64_t n_slots,
                          const uint16_t *__restrict__ y, const int32_t *__restrict__ slot,
                          const float *__restrict__ w, uint16_t *__restrict__ out)
{
  __shared__ int sl[EP_MOE_MAX_TOP_K];
  __shared__ float sw[EP_MOE_MAX_TOP_K];
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    load_slots_weights(sl, sw, slot, w, t, top_k, n_slots);
    __syncthreads();
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
      float acc = 0.0f;
      for (int j = 0; j < top_k; j++) {
        if (sl[j] < 0)
          continue;
        const float v = __uint_as_float((uint32_t)y[(int64_t)sl[j] * hidden + i] << 16);
        acc = __fadd_rn(acc, __fmul_rn(sw[j], v));
      }
      out[t * hidden + i] = (uint16_t)f32_to_bf16_bits(acc);
    }
    __syncthreads();
  }
}

extern "C" ep_status ep_moe_cuda_combine(ep_moe_cuda *ctx, int64_t n_tokens, int32_t top_k,
                                         int32_t hidden, int64_t n_slots, const ep_bf16 *d_y,
                                         const int32_t *d_slot, const float *d_weights,
                                         ep_bf16 *d_out)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_combine");
  if (st != EP_OK)
    return st;
  if (n_tokens < 0 || top_k < 1 || top_k > EP_MOE_MAX_TOP_K || hidden < 1 || n_slots < 0 ||
      (n_tokens > 0 && (!d_slot || !d_weights || !d_out || (n_slots > 0 && !d_y)))) {
    ep_log_error("ep_moe_cuda_combine: bad argument (n_tokens %lld, top_k %d, hidden %d)",
                 (long long)n_tokens, (int)top_k, (int)hidden);
    return EP_ERR_INVALID;
  }
  if (n_tokens == 0)
    return EP_OK;
  if (hidden % 8 == 0 && is_aligned(d_y, 16) && is_aligned(d_out, 16)) {
    const int row_vecs = hidden / 8;
    combine_vec_kernel<<<token_grid(n_tokens), row_threads(row_vecs, EP__COMBINE_UNROLL), 0,
                         ctx->stream>>>(n_tokens, top_k, row_vecs, n_slots, (const uint4 *)d_y,
                                        d_slot, d_weights, (uint4 *)d_out);
  } else {
    combine_scalar_kernel<<<token_grid(n_tokens), row_threads(hidden, 1), 0, ctx->stream>>>(
        n_tokens, top_k, hidden, n_slots, d_y, d_slot, d_weights, d_out);
  }
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

__global__ static void accumulate_kernel(int64_t n, const ep_bf16 *a, float *acc, int first)
{
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    acc[i] = first ? bf16_lo(a[i]) : __fadd_rn(acc[i], bf16_lo(a[i]));
}

__global__ static void add_kernel(int64_t n, const ep_bf16 *a, const float *b, float *out)
{
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = __fadd_rn(bf16_lo(a[i]), b[i]);
}

extern "C" ep_status ep_moe_cuda_accumulate_bf16(ep_moe_cuda *ctx, int64_t n, const ep_bf16 *d_a,
                                                 float *d_acc, int first)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_accumulate_bf16");
  if (st != EP_OK)
    return st;
  if (n < 0) {
    ep_log_error("ep_moe_cuda_accumulate_bf16: n %lld < 0", (long long)n);
    return EP_ERR_INVALID;
  }
  if (n == 0)
    return EP_OK;
  accumulate_kernel<<<(unsigned)((n + 255) / 256), 256, 0, ctx->stream>>>(n, d_a, d_acc, first);
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

extern "C" ep_status ep_moe_cuda_add_bf16_f32(ep_moe_cuda *ctx, int64_t n, const ep_bf16 *d_a,
                                              const float *d_b, float *d_out)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_add_bf16_f32");
  if (st != EP_OK)
    return st;
  if (n < 0) {
    ep_log_error("ep_moe_cuda_add_bf16_f32: n %lld < 0", (long long)n);
    return EP_ERR_INVALID;
  }
  if (n == 0)
    return EP_OK;
  add_kernel<<<(unsigned)((n + 255) / 256), 256, 0, ctx->stream>>>(n, d_a, d_b, d_out);
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

/* ---- SwiGLU experts ----------------------------------------------------- */

__device__ __forceinline__ float swiglu_f32(float g, float u)
{
  const float silu = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
  return __fmul_rn(silu, u);
}

/* inter % 8 == 0: 8 outputs per thread from two 16-byte loads. */
__global__ void swiglu_vec_kernel(int64_t n_rows, int inter_vecs, const uint4 *__restrict__ h13,
                                  uint4 *__restrict__ h)
{
  const int64_t total = n_rows * inter_vecs;
  for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < total;
       q += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = q / inter_vecs;
    const int c = (int)(q - r * inter_vecs);
    float g[8], u[8], o[8];
    unpack8(__ldg(h13 + r * 2 * inter_vecs + c), g);
    unpack8(__ldg(h13 + r * 2 * inter_vecs + inter_vecs + c), u);
#pragma unroll
    for (int i = 0; i < 8; i++)
      o[i] = swiglu_f32(g[i], u[i]);
    h[q] = pack8(o);
  }
}

__global__ void swiglu_scalar_kernel(int64_t n_rows, int inter, const uint16_t *__restrict__ h13,
                                     uint16_t *__restrict__ h)
{
  const int64_t total = n_rows * inter;
  for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < total;
       q += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = q / inter;
    const int c = (int)(q - r * inter);
    const float g = __uint_as_float((uint32_t)h13[r * 2 * inter + c] << 16);
    const float u = __uint_as_float((uint32_t)h13[r * 2 * inter + inter + c] << 16);
    h[q] = (uint16_t)f32_to_bf16_bits(swiglu_f32(g, u));
  }
}

extern "C" ep_status ep_moe_cuda_swiglu(ep_moe_cuda *ctx, int64_t n_rows, int32_t inter,
                                        const ep_bf16 *d_h13, ep_bf16 *d_h)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_swiglu");
  if (st != EP_OK)
    return st;
  if (n_rows < 0 || inter < 1 || (n_rows > 0 && (!d_h13 || !d_h))) {
    ep_log_error("ep_moe_cuda_swiglu: bad argument (n_rows %lld, inter %d)", (long long)n_rows,
                 (int)inter);
    return EP_ERR_INVALID;
  }
  if (n_rows == 0)
    return EP_OK;
  if (inter % 8 == 0 && is_aligned(d_h13, 16) && is_aligned(d_h, 16)) {
    const int inter_vecs = inter / 8;
    swiglu_vec_kernel<<<elementwise_grid(n_rows * inter_vecs), 256, 0, ctx->stream>>>(
        n_rows, inter_vecs, (const uint4 *)d_h13, (uint4 *)d_h);
  } else {
    swiglu_scalar_kernel<<<elementwise_grid(n_rows * inter), 256, 0, ctx->stream>>>(n_rows, inter,
                                                                                    d_h13, d_h);
  }
  EP_CUDA_TRY(cudaGetLastError());
fail:
  return st;
}

/* Device pointer arrays of one grouped call: group g is expert expert[g] with
 * its rows starting at row[g]. Passed by value (3 KB of parameters). */
struct gemm_groups {
  int32_t n_groups;
  int32_t expert[EP__GEMM_CHUNK];
  int64_t row[EP__GEMM_CHUNK];
};

__global__ void gemm_ptrs_kernel(gemm_groups groups, int n, int k, const uint16_t *a,
                                 const uint16_t *w, uint16_t *c, const void **ptr_a,
                                 const void **ptr_w, void **ptr_c)
{
  const int g = threadIdx.x;
  if (g >= groups.n_groups)
    return;
  ptr_a[g] = a + groups.row[g] * k;
  ptr_w[g] = w + (int64_t)groups.expert[g] * n * k;
  ptr_c[g] = c + groups.row[g] * n;
}

/* One cublasGemmGroupedBatchedEx per EP__GEMM_CHUNK non-empty experts. The
 * pointer arrays are rebuilt on the stream before each call, so reusing one
 * buffer is safe: the previous call has finished reading it by then. */
static ep_status gemm_grouped(ep_moe_cuda *ctx, int32_t n_experts, const int32_t *counts, int n,
                              int k, const ep_bf16 *a, const ep_bf16 *w, ep_bf16 *c,
                              cublasStatus_t *cublas_status)
{
  ep_status st = EP_OK;
  gemm_groups groups;
  cublasOperation_t trans_a[EP__GEMM_CHUNK], trans_b[EP__GEMM_CHUNK];
  int m_arr[EP__GEMM_CHUNK], n_arr[EP__GEMM_CHUNK], k_arr[EP__GEMM_CHUNK];
  int lda[EP__GEMM_CHUNK], ldb[EP__GEMM_CHUNK], ldc[EP__GEMM_CHUNK], size[EP__GEMM_CHUNK];
  float alpha[EP__GEMM_CHUNK], beta[EP__GEMM_CHUNK];
  const void **ptr_w = (const void **)ctx->d_ptrs;
  const void **ptr_a = (const void **)ctx->d_ptrs + EP__GEMM_CHUNK;
  void **ptr_c = ctx->d_ptrs + 2 * EP__GEMM_CHUNK;
  *cublas_status = CUBLAS_STATUS_SUCCESS;
  int64_t row = 0;
  int32_t e = 0;
  while (e < n_experts) {
    groups.n_groups = 0;
    for (; e < n_experts && groups.n_groups < EP__GEMM_CHUNK; e++) {
      if (counts[e] == 0)
        continue;
      const int g = groups.n_groups++;
      groups.expert[g] = e;
      groups.row[g] = row;
      row += counts[e];
      /* Column-major C^T[n, rows] = W_e(T) · A_e^T(N), as in the router. */
      trans_a[g] = CUBLAS_OP_T;
      trans_b[g] = CUBLAS_OP_N;
      m_arr[g] = n;
      n_arr[g] = counts[e];
      k_arr[g] = k;
      lda[g] = k;
      ldb[g] = k;
      ldc[g] = n;
      size[g] = 1;
      alpha[g] = 1.0f;
      beta[g] = 0.0f;
    }
    if (groups.n_groups == 0)
      break;
    gemm_ptrs_kernel<<<1, EP__GEMM_CHUNK, 0, ctx->stream>>>(groups, n, k, a, w, c, ptr_a, ptr_w,
                                                            ptr_c);
    EP_CUDA_TRY(cudaGetLastError());
    cublasStatus_t cs = cublasGemmGroupedBatchedEx(
        ctx->cublas, trans_a, trans_b, m_arr, n_arr, k_arr, alpha, ptr_w, CUDA_R_16BF, lda, ptr_a,
        CUDA_R_16BF, ldb, beta, ptr_c, CUDA_R_16BF, ldc, groups.n_groups, size, CUBLAS_COMPUTE_32F);
    if (cs != CUBLAS_STATUS_SUCCESS) {
      *cublas_status = cs;
      if (cs != CUBLAS_STATUS_NOT_SUPPORTED)
        ep_log_error("cublasGemmGroupedBatchedEx failed in %s at %s:%d: %s", __func__, __FILE__,
                     __LINE__, cublasGetStatusString(cs));
      st = EP_ERR_BACKEND;
      goto fail;
    }
  }
fail:
  return st;
}

static ep_status gemm_loop(ep_moe_cuda *ctx, int32_t n_experts, const int32_t *counts, int n, int k,
                           const ep_bf16 *a, const ep_bf16 *w, ep_bf16 *c)
{
  ep_status st = EP_OK;
  const float one = 1.0f, zero = 0.0f;
  int64_t row = 0;
  for (int32_t e = 0; e < n_experts; e++) {
    if (counts[e] == 0)
      continue;
    EP_CUBLAS_TRY(cublasGemmEx(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, counts[e], k, &one,
                               w + (int64_t)e * n * k, CUDA_R_16BF, k, a + row * k, CUDA_R_16BF, k,
                               &zero, c + row * n, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
    row += counts[e];
  }
fail:
  return st;
}

static ep_status gemm_batched(ep_moe_cuda *ctx, int32_t n_experts, int rows, int n, int k,
                              const ep_bf16 *a, const ep_bf16 *w, ep_bf16 *c)
{
  ep_status st = EP_OK;
  const float one = 1.0f, zero = 0.0f;
  EP_CUBLAS_TRY(cublasGemmStridedBatchedEx(
      ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &one, w, CUDA_R_16BF, k, (long long)n * k,
      a, CUDA_R_16BF, k, (long long)rows * k, &zero, c, CUDA_R_16BF, n, (long long)rows * n,
      n_experts, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
fail:
  return st;
}

extern "C" ep_status ep_moe_cuda_grouped_gemm(ep_moe_cuda *ctx, ep_moe_gemm_impl impl,
                                              int32_t n_experts, const int32_t *counts, int32_t n,
                                              int32_t k, const ep_bf16 *d_a, const ep_bf16 *d_w,
                                              ep_bf16 *d_c)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_grouped_gemm");
  if (st != EP_OK)
    return st;
  if (n_experts < 1 || !counts || n < 1 || k < 1 || !d_w) {
    ep_log_error("ep_moe_cuda_grouped_gemm: bad argument (n_experts %d, n %d, k %d)",
                 (int)n_experts, (int)n, (int)k);
    return EP_ERR_INVALID;
  }
  int64_t rows = 0;
  int uniform = 1;
  for (int32_t e = 0; e < n_experts; e++) {
    if (counts[e] < 0) {
      ep_log_error("ep_moe_cuda_grouped_gemm: expert %d has %d rows", (int)e, (int)counts[e]);
      return EP_ERR_INVALID;
    }
    rows += counts[e];
    uniform = uniform && counts[e] == counts[0];
  }
  if (rows == 0)
    return EP_OK;
  if (!d_a || !d_c) {
    ep_log_error("ep_moe_cuda_grouped_gemm: null a or c");
    return EP_ERR_INVALID;
  }
  if (impl == EP_MOE_GEMM_BATCHED && !uniform) {
    ep_log_error("ep_moe_cuda_grouped_gemm: the batched GEMM needs equal rows per expert");
    return EP_ERR_INVALID;
  }
  const int was_auto = impl == EP_MOE_GEMM_AUTO;
  if (was_auto)
    impl = uniform ? EP_MOE_GEMM_BATCHED
                   : (ctx->grouped_unsupported ? EP_MOE_GEMM_LOOP : EP_MOE_GEMM_GROUPED);
  switch (impl) {
  case EP_MOE_GEMM_BATCHED:
    return gemm_batched(ctx, n_experts, counts[0], n, k, d_a, d_w, d_c);
  case EP_MOE_GEMM_LOOP:
    return gemm_loop(ctx, n_experts, counts, n, k, d_a, d_w, d_c);
  case EP_MOE_GEMM_GROUPED: {
    cublasStatus_t cs;
    st = gemm_grouped(ctx, n_experts, counts, n, k, d_a, d_w, d_c, &cs);
    if (st == EP_OK || cs != CUBLAS_STATUS_NOT_SUPPORTED)
      return st;
    if (!was_auto) {
      ep_log_error("ep_moe_cuda_grouped_gemm: cublasGemmGroupedBatchedEx does not support "
                   "bf16 with fp32 compute here (%s)",
                   cublasGetStatusString(cs));
      return EP_ERR_UNSUPPORTED;
    }
    /* AUTO: remember the refusal and use one cublasGemmEx per expert from now on. */
    ctx->grouped_unsupported = 1;
    ep_log_error("ep_moe_cuda_grouped_gemm: cublasGemmGroupedBatchedEx not supported (%s); "
                 "falling back to one cublasGemmEx per expert",
                 cublasGetStatusString(cs));
    return gemm_loop(ctx, n_experts, counts, n, k, d_a, d_w, d_c);
  }
  default:
    break;
  }
  ep_log_error("ep_moe_cuda_grouped_gemm: unknown implementation %d", (int)impl);
  return EP_ERR_INVALID;
}

extern "C" ep_status ep_moe_cuda_expert_ffn(ep_moe_cuda *ctx, ep_moe_gemm_impl impl,
                                            int32_t n_experts, const int32_t *counts,
                                            int32_t hidden, int32_t inter, const ep_bf16 *d_x,
                                            const ep_bf16 *d_w13, const ep_bf16 *d_w2, ep_bf16 *d_y)
{
  ep_status st = check_ctx(ctx, "ep_moe_cuda_expert_ffn");
  if (st != EP_OK)
    return st;
  if (n_experts < 1 || !counts || hidden < 1 || inter < 1 || inter > INT_MAX / 2) {
    ep_log_error("ep_moe_cuda_expert_ffn: bad argument (n_experts %d, hidden %d, inter %d)",
                 (int)n_experts, (int)hidden, (int)inter);
    return EP_ERR_INVALID;
  }
  {
    int64_t rows = 0;
    for (int32_t e = 0; e < n_experts; e++)
      rows += counts[e] > 0 ? counts[e] : 0;
    void *ws = NULL;
    const size_t h13_bytes =
        ((sizeof(ep_bf16) * (size_t)rows * 2 * (size_t)inter) + 255) / 256 * 256;
    EP_TRY(ws_reserve(ctx, h13_bytes + sizeof(ep_bf16) * (size_t)rows * (size_t)inter + 256, &ws));
    ep_bf16 *h13 = (ep_bf16 *)ws;
    ep_bf16 *h = (ep_bf16 *)((char *)ws + h13_bytes);
    EP_TRY(
        ep_moe_cuda_grouped_gemm(ctx, impl, n_experts, counts, 2 * inter, hidden, d_x, d_w13, h13));
    EP_TRY(ep_moe_cuda_swiglu(ctx, rows, inter, h13, h));
    EP_TRY(ep_moe_cuda_grouped_gemm(ctx, impl, n_experts, counts, hidden, inter, h, d_w2, d_y));
  }
fail:
  return st;
}
