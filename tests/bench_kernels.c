/* Kernel benchmark for the MoE layer (issue 3, part 4): router, dispatch
 * layout, permute (bf16, fp8), combine and the SwiGLU expert GEMMs at
 * DeepSeek-V3 shapes, each checked against the C reference before it is timed.
 *
 * How to run (needs an NVIDIA GPU; builds wherever nvcc exists):
 *   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target bench_kernels
 *   build/bench_kernels -o build/bench_kernels.csv
 *   python3 tests/bench_kernels_torch.py --ours build/bench_kernels.csv
 * The second command times the PyTorch equivalents on the same shapes, prints
 * the same columns and then one joined table with the targets
 * (permute <= 1.1x its floor, combine <= 1.3x, expert GEMMs >= 0.9x
 * torch._grouped_mm, router no slower than torch). About a minute each on an H100.
 *
 * Flags: -d device, -w warm-up runs, -n timed runs, -t tokens (4096), -k top_k (8),
 *   -H hidden (7168), -I intermediate (2048), -E router experts (256),
 *   -e local-expert counts ("8,32"), -m tokens per expert ("8,16,...,2048"),
 *   -o CSV file (with # provenance lines), -q quick (fewer GEMM shapes).
 * Times are medians of per-run CUDA events on one stream. A floor is the bytes
 * a kernel must move (each input row read once, each output row written once)
 * divided by the device-to-device cudaMemcpy bandwidth measured at the start of
 * the same run (bytes read + written per second); ratio_floor = time / floor. */
#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ep_config.h"
#include "ep_cuda_check.h"
#include "ep_moe_cuda.h"
#include "ep_rng.h"

#define MAX_LIST 16

typedef struct {
  int device, warmup, iters, quick;
  int64_t tokens;
  int32_t top_k, hidden, inter, router_experts;
  int32_t local_experts[MAX_LIST], n_local;
  int32_t tokens_per_expert[MAX_LIST], n_tpe;
  const char *csv_path;
} bench_opts;

typedef struct {
  FILE *csv;
  double d2d_GBps;
} bench_out;

/* ---- timing ------------------------------------------------------------- */

typedef ep_status (*bench_fn)(ep_moe_cuda *ctx, void *arg);

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median over iters runs of fn, each between two events on the context's stream. */
static ep_status time_median_us(ep_moe_cuda *ctx, const bench_opts *o, bench_fn fn, void *arg,
                                double *median_us)
{
  ep_status st = EP_OK;
  cudaStream_t stream = (cudaStream_t)ep_moe_cuda_stream(ctx);
  cudaEvent_t *ev = calloc((size_t)(2 * o->iters), sizeof(cudaEvent_t));
  double *us = calloc((size_t)o->iters, sizeof(double));
  int made = 0;
  if (!ev || !us) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  for (; made < 2 * o->iters; made++)
    EP_CUDA_TRY(cudaEventCreate(&ev[made]));
  for (int i = 0; i < o->warmup; i++)
    EP_TRY(fn(ctx, arg));
  for (int i = 0; i < o->iters; i++) {
    EP_CUDA_TRY(cudaEventRecord(ev[2 * i], stream));
    EP_TRY(fn(ctx, arg));
    EP_CUDA_TRY(cudaEventRecord(ev[2 * i + 1], stream));
  }
  EP_TRY(ep_moe_cuda_sync(ctx));
  for (int i = 0; i < o->iters; i++) {
    float ms = 0.0f;
    EP_CUDA_TRY(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    us[i] = 1000.0 * ms;
  }
  qsort(us, (size_t)o->iters, sizeof(double), cmp_double);
  *median_us = o->iters % 2 ? us[o->iters / 2] : 0.5 * (us[o->iters / 2 - 1] + us[o->iters / 2]);
fail:
  for (int i = 0; i < made; i++)
    cudaEventDestroy(ev[i]);
  free(ev);
  free(us);
  return st;
}

/* One table row: floor_bytes 0 means no memory floor, flops 0 no TFLOP/s. */
static void emit(const bench_out *out, const char *kernel, const char *shape, const char *impl,
                 double time_us, double floor_bytes, double flops)
{
  double floor_us = floor_bytes > 0 ? floor_bytes / (out->d2d_GBps * 1e3) : 0.0;
  double ratio = floor_us > 0 ? time_us / floor_us : 0.0;
  double tflops = flops > 0 ? flops / (time_us * 1e6) : 0.0;
  double gbps = floor_bytes > 0 ? floor_bytes / (time_us * 1e3) : 0.0;
  printf("%-14s %-34s %-16s %10.1f %10.1f %8.3f %8.1f %8.0f\n", kernel, shape, impl, time_us,
         floor_us, ratio, tflops, gbps);
  if (out->csv)
    fprintf(out->csv, "%s,%s,%s,%.3f,%.3f,%.4f,%.2f,%.1f\n", kernel, shape, impl, time_us, floor_us,
            ratio, tflops, gbps);
  fflush(stdout);
}

/* ---- device-to-device copy: the floor's bandwidth ----------------------- */

typedef struct {
  void *dst, *src;
  size_t bytes;
} copy_arg;

static ep_status run_copy(ep_moe_cuda *ctx, void *arg)
{
  ep_status st = EP_OK;
  copy_arg *a = arg;
  EP_CUDA_TRY(cudaMemcpyAsync(a->dst, a->src, a->bytes, cudaMemcpyDeviceToDevice,
                              (cudaStream_t)ep_moe_cuda_stream(ctx)));
fail:
  return st;
}

static ep_status bench_copy(ep_moe_cuda *ctx, const bench_opts *o, bench_out *out)
{
  ep_status st = EP_OK;
  copy_arg a = {NULL, NULL, (size_t)1 << 30}; /* 1 GiB: far beyond the L2 */
  double us = 0.0;
  char shape[64];
  EP_CUDA_TRY(cudaMalloc(&a.src, a.bytes));
  EP_CUDA_TRY(cudaMalloc(&a.dst, a.bytes));
  EP_CUDA_TRY(cudaMemsetAsync(a.src, 1, a.bytes, (cudaStream_t)ep_moe_cuda_stream(ctx)));
  EP_TRY(time_median_us(ctx, o, run_copy, &a, &us));
  out->d2d_GBps = 2.0 * (double)a.bytes / (us * 1e3);
  snprintf(shape, sizeof shape, "bytes=%zu", a.bytes);
  emit(out, "memcpy_d2d", shape, "cudaMemcpyAsync", us, 2.0 * (double)a.bytes, 0.0);
fail:
  cudaFree(a.src);
  cudaFree(a.dst);
  return st;
}

/* ---- router ------------------------------------------------------------- */

typedef struct {
  const ep_moe_router_cfg *cfg;
  int64_t tokens;
  int32_t hidden;
  const ep_bf16 *x, *w;
  const float *bias, *logits;
  int32_t *experts;
  float *weights;
} router_arg;

static ep_status run_router(ep_moe_cuda *ctx, void *arg)
{
  router_arg *a = arg;
  return ep_moe_cuda_router(ctx, a->cfg, a->tokens, a->hidden, EP_DTYPE_BF16, a->x, a->w, a->bias,
                            NULL, NULL, a->experts, a->weights);
}

static ep_status run_router_select(ep_moe_cuda *ctx, void *arg)
{
  router_arg *a = arg;
  return ep_moe_cuda_router_select(ctx, a->cfg, a->tokens, a->logits, a->bias, NULL, a->experts,
                                   a->weights);
}

static ep_status bench_router(ep_moe_cuda *ctx, const bench_opts *o, const bench_out *out)
{
  ep_status st = EP_OK;
  const int64_t T = o->tokens;
  const int32_t H = o->hidden, E = o->router_experts, K = o->top_k;
  const ep_moe_router_cfg softmax_cfg = {E, K, 1, 1, EP_MOE_SCORE_SOFTMAX, 0, 1.0f};
  ep_moe_router_cfg dsv3 = EP_MOE_ROUTER_CFG_INIT;
  dsv3.n_experts = E;
  dsv3.top_k = K;
  ep_bf16 *d_x = NULL, *d_w = NULL;
  float *d_bias = NULL, *d_logits = NULL, *d_scores = NULL, *d_weights = NULL;
  int32_t *d_ex = NULL;
  float *h_scores = malloc(sizeof(float) * (size_t)(T * E)),
        *h_bias = malloc(sizeof(float) * (size_t)E);
  int32_t *g_ex = malloc(sizeof(int32_t) * (size_t)(T * K)),
          *r_ex = malloc(sizeof(int32_t) * (size_t)(T * K));
  if (!h_scores || !h_bias || !g_ex || !r_ex) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  EP_CUDA_TRY(cudaMalloc((void **)&d_x, sizeof(ep_bf16) * (size_t)(T * H)));
  EP_CUDA_TRY(cudaMalloc((void **)&d_w, sizeof(ep_bf16) * (size_t)E * H));
  EP_CUDA_TRY(cudaMalloc((void **)&d_bias, sizeof(float) * (size_t)E));
  EP_CUDA_TRY(cudaMalloc((void **)&d_logits, sizeof(float) * (size_t)(T * E)));
  EP_CUDA_TRY(cudaMalloc((void **)&d_scores, sizeof(float) * (size_t)(T * E)));
  EP_CUDA_TRY(cudaMalloc((void **)&d_weights, sizeof(float) * (size_t)(T * K)));
  EP_CUDA_TRY(cudaMalloc((void **)&d_ex, sizeof(int32_t) * (size_t)(T * K)));
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(ctx, d_x, T * H, 1, -1.0f, 1.0f));
  const float ws = 3.0f / sqrtf((float)H);
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(ctx, d_w, (int64_t)E * H, 2, -ws, ws));
  EP_TRY(ep_moe_cuda_fill_uniform_f32(ctx, d_bias, E, 3, -0.05f, 0.05f));
  ep_moe_fill_uniform_f32(h_bias, E, 3, -0.05f, 0.05f);
  for (int c = 0; c < 2; c++) {
    const ep_moe_router_cfg *cfg = c == 0 ? &softmax_cfg : &dsv3;
    const float *bias = c == 0 ? NULL : d_bias;
    char shape[96];
    snprintf(shape, sizeof shape, "T=%lld H=%d E=%d k=%d %s", (long long)T, (int)H, (int)E, (int)K,
             c == 0 ? "softmax" : "sigmoid-g8/4-bias");
    /* Check: selection from the GPU's own scores equals the reference. */
    EP_TRY(ep_moe_cuda_router(ctx, cfg, T, H, EP_DTYPE_BF16, d_x, d_w, bias, d_logits, d_scores,
                              d_ex, d_weights));
    EP_TRY(ep_moe_cuda_sync(ctx));
    EP_CUDA_TRY(
        cudaMemcpy(h_scores, d_scores, sizeof(float) * (size_t)(T * E), cudaMemcpyDeviceToHost));
    EP_CUDA_TRY(cudaMemcpy(g_ex, d_ex, sizeof(int32_t) * (size_t)(T * K), cudaMemcpyDeviceToHost));
    EP_TRY(ep_moe_router_topk_ref(cfg, T, h_scores, c == 0 ? NULL : h_bias, r_ex, NULL));
    if (memcmp(g_ex, r_ex, sizeof(int32_t) * (size_t)(T * K)) != 0) {
      ep_log_error("bench router: experts differ from the reference (%s)", shape);
      st = EP_ERR_BACKEND;
      goto fail;
    }
    router_arg a = {cfg, T, H, d_x, d_w, bias, d_logits, d_ex, d_weights};
    double us = 0.0;
    EP_TRY(time_median_us(ctx, o, run_router, &a, &us));
    emit(out, "router", shape, "cublas+select", us, 0.0, 2.0 * (double)T * E * H);
    EP_TRY(time_median_us(ctx, o, run_router_select, &a, &us));
    emit(out, "router_select", shape, "ours", us, 0.0, 0.0);
  }
fail:
  cudaFree(d_x);
  cudaFree(d_w);
  cudaFree(d_bias);
  cudaFree(d_logits);
  cudaFree(d_scores);
  cudaFree(d_weights);
  cudaFree(d_ex);
  free(h_scores);
  free(h_bias);
  free(g_ex);
  free(r_ex);
  return st;
}

/* ---- layout, permute, combine ------------------------------------------- */

typedef struct {
  int64_t tokens, n_slots;
  int32_t top_k, hidden, n_experts;
  const int32_t *experts;
  int32_t *counts, *offsets, *slot, *slot_copy;
  const ep_bf16 *x, *y;
  ep_bf16 *x_perm, *out;
  ep_fp8 *q;
  float *scales;
  const float *weights;
} move_arg;

static ep_status run_layout(ep_moe_cuda *ctx, void *arg)
{
  move_arg *a = arg;
  return ep_moe_cuda_layout(ctx, a->tokens * a->top_k, a->n_experts, a->experts, a->counts,
                            a->offsets, a->slot, a->slot_copy);
}

static ep_status run_permute(ep_moe_cuda *ctx, void *arg)
{
  move_arg *a = arg;
  return ep_moe_cuda_permute(ctx, a->tokens, a->top_k, a->hidden, a->n_slots, a->x, a->slot,
                             a->x_perm);
}

static ep_status run_permute_fp8(ep_moe_cuda *ctx, void *arg)
{
  move_arg *a = arg;
  return ep_moe_cuda_permute_fp8(ctx, a->tokens, a->top_k, a->hidden, a->n_slots, a->x, a->slot,
                                 a->q, a->scales);
}

static ep_status run_combine(ep_moe_cuda *ctx, void *arg)
{
  move_arg *a = arg;
  return ep_moe_cuda_combine(ctx, a->tokens, a->top_k, a->hidden, a->n_slots, a->y, a->slot,
                             a->weights, a->out);
}

/* Host copy of row r of a device-filled uniform bf16 matrix. */
static void regen_row(ep_bf16 *row, uint64_t seed, int64_t r, int32_t cols, float lo, float hi)
{
  for (int32_t i = 0; i < cols; i++)
    row[i] = ep_f32_to_bf16(ep_moe_uniform_at(seed, (uint64_t)(r * cols + i), lo, hi));
}

/* Samples tokens and checks their permuted rows (bf16, and fp8 when hidden is
 * a multiple of 128) and their combined row. */
static ep_status check_moves(const move_arg *a, const int32_t *h_slot, const float *h_w, int fp8)
{
  ep_status st = EP_OK;
  const int32_t H = a->hidden, K = a->top_k, nsb = H / EP_FP8_BLOCK;
  ep_bf16 *xr = malloc(sizeof(ep_bf16) * (size_t)H), *row = malloc(sizeof(ep_bf16) * (size_t)H);
  ep_bf16 *yk = malloc(sizeof(ep_bf16) * (size_t)K * H),
          *outr = malloc(sizeof(ep_bf16) * (size_t)H);
  ep_fp8 *qr = malloc((size_t)H), *qg = malloc((size_t)H);
  float *sr = malloc(sizeof(float) * (size_t)(nsb ? nsb : 1)),
        *sg = malloc(sizeof(float) * (size_t)(nsb ? nsb : 1));
  int32_t local_slot[EP_MOE_MAX_TOP_K];
  if (!xr || !row || !yk || !outr || !qr || !qg || !sr || !sg) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  for (int64_t t = 0; t < a->tokens; t += 1 + a->tokens / 256) {
    regen_row(xr, 11, t, H, -4.0f, 4.0f);
    int32_t zero = 0;
    if (fp8)
      EP_TRY(ep_moe_permute_fp8_ref(1, 1, H, 1, xr, &zero, qr, sr));
    for (int32_t j = 0; j < K; j++) {
      const int32_t s = h_slot[t * K + j];
      local_slot[j] = s < 0 ? -1 : j;
      if (s < 0)
        continue;
      EP_CUDA_TRY(cudaMemcpy(row, a->x_perm + (int64_t)s * H, sizeof(ep_bf16) * (size_t)H,
                             cudaMemcpyDeviceToHost));
      if (fp8) {
        EP_CUDA_TRY(cudaMemcpy(qg, a->q + (int64_t)s * H, (size_t)H, cudaMemcpyDeviceToHost));
        EP_CUDA_TRY(cudaMemcpy(sg, a->scales + (int64_t)s * nsb, sizeof(float) * (size_t)nsb,
                               cudaMemcpyDeviceToHost));
      }
      if (memcmp(row, xr, sizeof(ep_bf16) * (size_t)H) ||
          (fp8 && (memcmp(qg, qr, (size_t)H) || memcmp(sg, sr, sizeof(float) * (size_t)nsb)))) {
        ep_log_error("bench permute: token %lld copy %d differs from the reference", (long long)t,
                     (int)j);
        st = EP_ERR_BACKEND;
        goto fail;
      }
      regen_row(yk + (int64_t)j * H, 12, s, H, -2.0f, 2.0f);
    }
    EP_TRY(ep_moe_combine_ref(1, K, H, K, yk, local_slot, h_w + t * K, outr));
    EP_CUDA_TRY(
        cudaMemcpy(row, a->out + t * H, sizeof(ep_bf16) * (size_t)H, cudaMemcpyDeviceToHost));
    double err = 0.0, scale = 0.0;
    for (int32_t i = 0; i < H; i++) {
      err = fmax(err, fabs((double)ep_bf16_to_f32(row[i]) - ep_bf16_to_f32(outr[i])));
      scale = fmax(scale, fabs((double)ep_bf16_to_f32(outr[i])));
    }
    if (!(err <= 1e-2 * scale)) {
      ep_log_error("bench combine: token %lld off by %g (row max %g)", (long long)t, err, scale);
      st = EP_ERR_BACKEND;
      goto fail;
    }
  }
fail:
  free(xr);
  free(row);
  free(yk);
  free(outr);
  free(qr);
  free(qg);
  free(sr);
  free(sg);
  return st;
}

static ep_status bench_moves(ep_moe_cuda *ctx, const bench_opts *o, const bench_out *out)
{
  ep_status st = EP_OK;
  const int64_t T = o->tokens, C = T * o->top_k;
  const int32_t H = o->hidden, K = o->top_k, E = o->router_experts;
  const int fp8 = H % EP_FP8_BLOCK == 0;
  int32_t *h_ex = malloc(sizeof(int32_t) * (size_t)C),
          *h_slot = malloc(sizeof(int32_t) * (size_t)C);
  float *h_w = malloc(sizeof(float) * (size_t)C);
  move_arg a;
  memset(&a, 0, sizeof a);
  int32_t *d_ex = NULL;
  float *d_w = NULL;
  if (!h_ex || !h_slot || !h_w) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  /* Uniform routing: each token picks top_k distinct experts of E. */
  ep_rng rng;
  ep_rng_seed(&rng, 5, 0);
  for (int64_t t = 0; t < T; t++)
    for (int32_t j = 0; j < K; j++) {
      int fresh;
      do {
        h_ex[t * K + j] = (int32_t)(ep_rng_next_u64(&rng) % (uint64_t)E);
        fresh = 1;
        for (int32_t i = 0; i < j; i++)
          fresh &= h_ex[t * K + i] != h_ex[t * K + j];
      } while (!fresh);
    }
  ep_moe_fill_uniform_f32(h_w, C, 13, 0.0f, 0.25f);
  a.tokens = T;
  a.top_k = K;
  a.hidden = H;
  a.n_experts = E;
  a.n_slots = C;
  EP_CUDA_TRY(cudaMalloc((void **)&d_ex, sizeof(int32_t) * (size_t)C));
  EP_CUDA_TRY(cudaMalloc((void **)&d_w, sizeof(float) * (size_t)C));
  EP_CUDA_TRY(cudaMalloc((void **)&a.counts, sizeof(int32_t) * (size_t)E));
  EP_CUDA_TRY(cudaMalloc((void **)&a.offsets, sizeof(int32_t) * (size_t)(E + 1)));
  EP_CUDA_TRY(cudaMalloc((void **)&a.slot, sizeof(int32_t) * (size_t)C));
  EP_CUDA_TRY(cudaMalloc((void **)&a.slot_copy, sizeof(int32_t) * (size_t)C));
  EP_CUDA_TRY(cudaMalloc((void **)&a.x, sizeof(ep_bf16) * (size_t)(T * H)));
  EP_CUDA_TRY(cudaMalloc((void **)&a.y, sizeof(ep_bf16) * (size_t)(C * H)));
  EP_CUDA_TRY(cudaMalloc((void **)&a.x_perm, sizeof(ep_bf16) * (size_t)(C * H)));
  EP_CUDA_TRY(cudaMalloc((void **)&a.out, sizeof(ep_bf16) * (size_t)(T * H)));
  EP_CUDA_TRY(cudaMalloc((void **)&a.q, (size_t)(C * H)));
  EP_CUDA_TRY(cudaMalloc((void **)&a.scales, sizeof(float) * (size_t)(C * (H / EP_FP8_BLOCK + 1))));
  /* On the context's stream, which does not wait for the legacy default stream
   * (a plain cudaMemcpy from pageable memory may return before its DMA is done). */
  cudaStream_t stream = (cudaStream_t)ep_moe_cuda_stream(ctx);
  EP_CUDA_TRY(
      cudaMemcpyAsync(d_ex, h_ex, sizeof(int32_t) * (size_t)C, cudaMemcpyHostToDevice, stream));
  EP_CUDA_TRY(cudaMemcpyAsync(d_w, h_w, sizeof(float) * (size_t)C, cudaMemcpyHostToDevice, stream));
  a.experts = d_ex;
  a.weights = d_w;
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(ctx, (ep_bf16 *)a.x, T * H, 11, -4.0f, 4.0f));
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(ctx, (ep_bf16 *)a.y, C * H, 12, -2.0f, 2.0f));

  /* Layout, checked exactly against the reference. */
  {
    int32_t *r_counts = malloc(sizeof(int32_t) * (size_t)E),
            *r_off = malloc(sizeof(int32_t) * (size_t)(E + 1));
    int32_t *r_slot = malloc(sizeof(int32_t) * (size_t)C);
    int ok = r_counts && r_off && r_slot;
    if (ok) {
      st = ep_moe_layout_ref(C, E, h_ex, r_counts, r_off, r_slot, NULL);
      if (st == EP_OK)
        st = run_layout(ctx, &a);
      if (st == EP_OK)
        st = ep_moe_cuda_sync(ctx);
      if (st == EP_OK && cudaMemcpy(h_slot, a.slot, sizeof(int32_t) * (size_t)C,
                                    cudaMemcpyDeviceToHost) != cudaSuccess)
        st = EP_ERR_BACKEND;
      if (st == EP_OK && memcmp(h_slot, r_slot, sizeof(int32_t) * (size_t)C) != 0) {
        ep_log_error("bench layout: slots differ from the reference");
        st = EP_ERR_BACKEND;
      }
    }
    free(r_counts);
    free(r_off);
    free(r_slot);
    if (!ok)
      st = EP_ERR_NOMEM;
    if (st != EP_OK)
      goto fail;
  }
  char shape[96];
  double us = 0.0;
  snprintf(shape, sizeof shape, "copies=%lld E=%d", (long long)C, (int)E);
  EP_TRY(time_median_us(ctx, o, run_layout, &a, &us));
  emit(out, "layout", shape, "ours", us, 0.0, 0.0);

  /* Check permute (both formats) and combine on sampled tokens, then time them. */
  EP_TRY(run_permute(ctx, &a));
  if (fp8)
    EP_TRY(run_permute_fp8(ctx, &a));
  EP_TRY(run_combine(ctx, &a));
  EP_TRY(ep_moe_cuda_sync(ctx));
  EP_TRY(check_moves(&a, h_slot, h_w, fp8));
  snprintf(shape, sizeof shape, "T=%lld k=%d H=%d", (long long)T, (int)K, (int)H);
  const double row_bf16 = 2.0 * H;
  EP_TRY(time_median_us(ctx, o, run_permute, &a, &us));
  emit(out, "permute_bf16", shape, "ours", us, (double)T * row_bf16 + (double)C * row_bf16, 0.0);
  if (fp8) {
    const double row_fp8 = (double)H + 4.0 * (H / EP_FP8_BLOCK);
    EP_TRY(time_median_us(ctx, o, run_permute_fp8, &a, &us));
    emit(out, "permute_fp8", shape, "ours", us, (double)T * row_bf16 + (double)C * row_fp8, 0.0);
  }
  EP_TRY(time_median_us(ctx, o, run_combine, &a, &us));
  emit(out, "combine", shape, "ours", us, (double)C * row_bf16 + (double)T * row_bf16, 0.0);
fail:
  cudaFree(d_ex);
  cudaFree(d_w);
  cudaFree(a.counts);
  cudaFree(a.offsets);
  cudaFree(a.slot);
  cudaFree(a.slot_copy);
  cudaFree((void *)a.x);
  cudaFree((void *)a.y);
  cudaFree(a.x_perm);
  cudaFree(a.out);
  cudaFree(a.q);
  cudaFree(a.scales);
  free(h_ex);
  free(h_slot);
  free(h_w);
  return st;
}

/* ---- expert GEMMs ------------------------------------------------------- */

typedef struct {
  ep_moe_gemm_impl impl;
  int32_t n_experts, hidden, inter;
  const int32_t *counts;
  const ep_bf16 *x, *w13, *w2;
  ep_bf16 *y;
} ffn_arg;

static ep_status run_ffn(ep_moe_cuda *ctx, void *arg)
{
  ffn_arg *a = arg;
  return ep_moe_cuda_expert_ffn(ctx, a->impl, a->n_experts, a->counts, a->hidden, a->inter, a->x,
                                a->w13, a->w2, a->y);
}

#define SEED_X 21
#define SEED_W13 22
#define SEED_W2 23

/* Checks the first row of the first expert and the last row of the last one. */
static ep_status check_ffn(const ffn_arg *a, const ep_bf16 *w13_first, const ep_bf16 *w2_first,
                           const ep_bf16 *w13_last, const ep_bf16 *w2_last)
{
  ep_status st = EP_OK;
  const int32_t H = a->hidden, E = a->n_experts;
  int64_t rows = 0;
  for (int32_t e = 0; e < E; e++)
    rows += a->counts[e];
  ep_bf16 *xr = malloc(sizeof(ep_bf16) * (size_t)H), *yr = malloc(sizeof(ep_bf16) * (size_t)H);
  ep_bf16 *yg = malloc(sizeof(ep_bf16) * (size_t)H);
  if (!xr || !yr || !yg) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  for (int which = 0; which < 2; which++) {
    const int64_t r = which == 0 ? 0 : rows - 1;
    if ((which == 0 && a->counts[0] == 0) || (which == 1 && a->counts[E - 1] == 0))
      continue;
    regen_row(xr, SEED_X, r, H, -1.0f, 1.0f);
    EP_TRY(ep_moe_expert_ffn_row_ref(H, a->inter, xr, which ? w13_last : w13_first,
                                     which ? w2_last : w2_first, yr));
    EP_CUDA_TRY(cudaMemcpy(yg, a->y + r * H, sizeof(ep_bf16) * (size_t)H, cudaMemcpyDeviceToHost));
    double err = 0.0, scale = 0.0;
    for (int32_t i = 0; i < H; i++) {
      err = fmax(err, fabs((double)ep_bf16_to_f32(yg[i]) - ep_bf16_to_f32(yr[i])));
      scale = fmax(scale, fabs((double)ep_bf16_to_f32(yr[i])));
    }
    if (!(err <= 1e-2 * scale)) {
      ep_log_error("bench expert_ffn (%s): row %lld off by %g (row max %g)",
                   ep_moe_gemm_impl_name(a->impl), (long long)r, err, scale);
      st = EP_ERR_BACKEND;
      goto fail;
    }
  }
fail:
  free(xr);
  free(yr);
  free(yg);
  return st;
}

static ep_status bench_ffn(ep_moe_cuda *ctx, const bench_opts *o, const bench_out *out)
{
  ep_status st = EP_OK;
  const int32_t H = o->hidden, I = o->inter;
  int32_t max_e = 0, max_m = 0;
  for (int i = 0; i < o->n_local; i++)
    max_e = o->local_experts[i] > max_e ? o->local_experts[i] : max_e;
  for (int i = 0; i < o->n_tpe; i++)
    max_m = o->tokens_per_expert[i] > max_m ? o->tokens_per_expert[i] : max_m;
  const int64_t max_rows = (int64_t)max_e * max_m;
  const int64_t n13 = (int64_t)2 * I * H, n2 = (int64_t)H * I;
  const float b13 = 2.0f / sqrtf((float)H), b2 = 2.0f / sqrtf((float)I);
  ep_bf16 *d_x = NULL, *d_w13 = NULL, *d_w2 = NULL, *d_y = NULL;
  ep_bf16 *w13_first = malloc(sizeof(ep_bf16) * (size_t)n13),
          *w2_first = malloc(sizeof(ep_bf16) * (size_t)n2);
  ep_bf16 *w13_last = malloc(sizeof(ep_bf16) * (size_t)n13),
          *w2_last = malloc(sizeof(ep_bf16) * (size_t)n2);
  int32_t *counts = malloc(sizeof(int32_t) * (size_t)max_e);
  if (!w13_first || !w2_first || !w13_last || !w2_last || !counts) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  EP_CUDA_TRY(cudaMalloc((void **)&d_x, sizeof(ep_bf16) * (size_t)max_rows * H));
  EP_CUDA_TRY(cudaMalloc((void **)&d_y, sizeof(ep_bf16) * (size_t)max_rows * H));
  EP_CUDA_TRY(cudaMalloc((void **)&d_w13, sizeof(ep_bf16) * (size_t)(max_e * n13)));
  EP_CUDA_TRY(cudaMalloc((void **)&d_w2, sizeof(ep_bf16) * (size_t)(max_e * n2)));
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(ctx, d_x, max_rows * H, SEED_X, -1.0f, 1.0f));
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(ctx, d_w13, max_e * n13, SEED_W13, -b13, b13));
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(ctx, d_w2, max_e * n2, SEED_W2, -b2, b2));
  for (int64_t i = 0; i < n13; i++)
    w13_first[i] = ep_f32_to_bf16(ep_moe_uniform_at(SEED_W13, (uint64_t)i, -b13, b13));
  for (int64_t i = 0; i < n2; i++)
    w2_first[i] = ep_f32_to_bf16(ep_moe_uniform_at(SEED_W2, (uint64_t)i, -b2, b2));
  for (int li = 0; li < o->n_local; li++) {
    const int32_t E = o->local_experts[li];
    for (int64_t i = 0; i < n13; i++)
      w13_last[i] =
          ep_f32_to_bf16(ep_moe_uniform_at(SEED_W13, (uint64_t)((E - 1) * n13 + i), -b13, b13));
    for (int64_t i = 0; i < n2; i++)
      w2_last[i] =
          ep_f32_to_bf16(ep_moe_uniform_at(SEED_W2, (uint64_t)((E - 1) * n2 + i), -b2, b2));
    /* Uniform tokens per expert, then one skewed case (Zipf-like, multiples of 8,
     * same total as 512 per expert); bench_kernels_torch.py builds the same counts. */
    for (int mi = 0; mi <= o->n_tpe; mi++) {
      char shape[96];
      int64_t rows = 0;
      if (mi < o->n_tpe) {
        for (int32_t e = 0; e < E; e++)
          counts[e] = o->tokens_per_expert[mi];
        snprintf(shape, sizeof shape, "E=%d M=%d H=%d I=%d", (int)E, (int)counts[0], (int)H,
                 (int)I);
      } else {
        if (512 > max_m)
          continue;
        double norm = 0.0;
        for (int32_t e = 0; e < E; e++)
          norm += 1.0 / (e + 1);
        int64_t total = (int64_t)512 * E, rem = total;
        for (int32_t e = 0; e < E; e++) {
          counts[e] = (int32_t)(8 * floor(total / norm / (e + 1) / 8.0));
          if (counts[e] > max_m)
            counts[e] = max_m;
          rem -= counts[e];
        }
        /* Hand the remainder out 8 rows at a time from the last expert down,
         * skipping experts at max_m; 512 <= max_m so it always fits. */
        for (int32_t e = E - 1; rem > 0; e = e > 0 ? e - 1 : E - 1)
          if (counts[e] + 8 <= max_m) {
            counts[e] += 8;
            rem -= 8;
          }
        snprintf(shape, sizeof shape, "E=%d M=zipf512 H=%d I=%d", (int)E, (int)H, (int)I);
      }
      int uniform = 1;
      for (int32_t e = 0; e < E; e++) {
        rows += counts[e];
        uniform &= counts[e] == counts[0];
      }
      const double flops = 6.0 * (double)rows * H * I; /* 2*rows*(2I*H) + 2*rows*(H*I) */
      const ep_moe_gemm_impl impls[4] = {EP_MOE_GEMM_AUTO, EP_MOE_GEMM_GROUPED, EP_MOE_GEMM_LOOP,
                                         EP_MOE_GEMM_BATCHED};
      for (int k = 0; k < 4; k++) {
        if (impls[k] == EP_MOE_GEMM_BATCHED && !uniform)
          continue;
        ffn_arg a = {impls[k], E, H, I, counts, d_x, d_w13, d_w2, d_y};
        double us = 0.0;
        /* Poison on the GEMMs' stream, so it lands before they write. */
        EP_CUDA_TRY(cudaMemsetAsync(d_y, 0xff, sizeof(ep_bf16) * (size_t)rows * H,
                                    (cudaStream_t)ep_moe_cuda_stream(ctx)));
        st = run_ffn(ctx, &a);
        if (st == EP_ERR_UNSUPPORTED && impls[k] == EP_MOE_GEMM_GROUPED) {
          /* cuBLAS refused the grouped GEMM (logged); auto falls back, so go on. */
          printf("%-14s %-34s %-16s skipped: not supported by this cuBLAS\n", "expert_ffn", shape,
                 ep_moe_gemm_impl_name(impls[k]));
          st = EP_OK;
          continue;
        }
        if (st != EP_OK)
          goto fail;
        EP_TRY(ep_moe_cuda_sync(ctx));
        EP_TRY(check_ffn(&a, w13_first, w2_first, w13_last, w2_last));
        EP_TRY(time_median_us(ctx, o, run_ffn, &a, &us));
        emit(out, "expert_ffn", shape, ep_moe_gemm_impl_name(impls[k]), us, 0.0, flops);
      }
    }
  }
fail:
  cudaFree(d_x);
  cudaFree(d_y);
  cudaFree(d_w13);
  cudaFree(d_w2);
  free(w13_first);
  free(w2_first);
  free(w13_last);
  free(w2_last);
  free(counts);
  return st;
}

/* ---- main --------------------------------------------------------------- */

static int parse_list(const char *s, int32_t *out, int *n)
{
  *n = 0;
  while (*s && *n < MAX_LIST) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 1 || v > (1 << 20))
      return -1;
    out[(*n)++] = (int32_t)v;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',')
      return -1;
  }
  return *n > 0 ? 0 : -1;
}

static void usage(void)
{
  fprintf(stderr,
          "usage: bench_kernels [-d device] [-w warmup] [-n iters] [-t tokens] [-k top_k]\n"
          "  [-H hidden] [-I inter] [-E router_experts] [-e 8,32] [-m 8,16,...] [-q] [-o csv]\n");
}

int main(int argc, char **argv)
{
  bench_opts o = {0,    3,    20,  0,       4096, 8,
                  7168, 2048, 256, {8, 32}, 2,    {8, 16, 32, 64, 128, 256, 512, 1024, 2048},
                  9,    NULL};
  bench_out out = {NULL, 0.0};
  ep_moe_cuda *ctx = NULL;
  ep_status st = EP_OK;
  int opt;
  while ((opt = getopt(argc, argv, "d:w:n:t:k:H:I:E:e:m:qo:h")) != -1) {
    switch (opt) {
    case 'd':
      o.device = atoi(optarg);
      break;
    case 'w':
      o.warmup = atoi(optarg);
      break;
    case 'n':
      o.iters = atoi(optarg);
      break;
    case 't':
      o.tokens = atoll(optarg);
      break;
    case 'k':
      o.top_k = atoi(optarg);
      break;
    case 'H':
      o.hidden = atoi(optarg);
      break;
    case 'I':
      o.inter = atoi(optarg);
      break;
    case 'E':
      o.router_experts = atoi(optarg);
      break;
    case 'e':
      if (parse_list(optarg, o.local_experts, &o.n_local)) {
        usage();
        return 2;
      }
      break;
    case 'm':
      if (parse_list(optarg, o.tokens_per_expert, &o.n_tpe)) {
        usage();
        return 2;
      }
      break;
    case 'q':
      o.quick = 1;
      break;
    case 'o':
      o.csv_path = optarg;
      break;
    default:
      usage();
      return opt == 'h' ? 0 : 2;
    }
  }
  if (o.warmup < 0 || o.iters < 1 || o.tokens < 1 || o.top_k < 1 || o.top_k > EP_MOE_MAX_TOP_K ||
      o.hidden < 8 || o.inter < 8 || o.router_experts < o.top_k || o.router_experts % 8 != 0) {
    fprintf(stderr, "bench_kernels: bad sizes (router experts must be a multiple of 8 groups)\n");
    usage();
    return 2;
  }
  if (o.quick) {
    const int32_t quick_m[3] = {8, 512, 2048};
    memcpy(o.tokens_per_expert, quick_m, sizeof quick_m);
    o.n_tpe = 3;
  }
  if (ep_moe_cuda_device_count() <= o.device) {
    fprintf(stderr, "bench_kernels: no CUDA device %d\n", o.device);
    return 77;
  }
  struct cudaDeviceProp prop;
  int driver = 0, runtime = 0, cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  EP_CUDA_TRY(cudaGetDeviceProperties(&prop, o.device));
  EP_CUDA_TRY(cudaDriverGetVersion(&driver));
  EP_CUDA_TRY(cudaRuntimeGetVersion(&runtime));
  EP_CUBLAS_TRY(cublasGetProperty(MAJOR_VERSION, &cublas_major));
  EP_CUBLAS_TRY(cublasGetProperty(MINOR_VERSION, &cublas_minor));
  EP_CUBLAS_TRY(cublasGetProperty(PATCH_LEVEL, &cublas_patch));
  EP_TRY(ep_moe_cuda_init(&ctx, o.device, NULL));
  if (o.csv_path) {
    out.csv = fopen(o.csv_path, "w");
    if (!out.csv) {
      ep_log_error("bench_kernels: cannot write %s", o.csv_path);
      st = EP_ERR_IO;
      goto fail;
    }
    fprintf(out.csv, "# epsim %s bench_kernels, git %s\n# device: %s, %d SMs, cc %d.%d\n",
            EP_VERSION, EP_GIT_SHA, prop.name, prop.multiProcessorCount, prop.major, prop.minor);
    fprintf(out.csv, "# cuda driver %d, runtime %d, cublas %d.%d.%d\n# argv:", driver, runtime,
            cublas_major, cublas_minor, cublas_patch);
    for (int i = 0; i < argc; i++)
      fprintf(out.csv, " %s", argv[i]);
    fprintf(out.csv,
            "\n# time_us: median of %d runs after %d warm-up; floor_us: bytes / measured "
            "d2d bandwidth (read + write)\n",
            o.iters, o.warmup);
    fprintf(out.csv, "kernel,shape,impl,time_us,floor_us,ratio_floor,TFLOPs,GBps\n");
  }
  printf("bench_kernels: %s, %d SMs, driver %d, runtime %d, cublas %d.%d.%d, git %s\n", prop.name,
         prop.multiProcessorCount, driver, runtime, cublas_major, cublas_minor, cublas_patch,
         EP_GIT_SHA);
  printf("%-14s %-34s %-16s %10s %10s %8s %8s %8s\n", "kernel", "shape", "impl", "time_us",
         "floor_us", "ratio", "TFLOPs", "GBps");
  EP_TRY(bench_copy(ctx, &o, &out));
  EP_TRY(bench_router(ctx, &o, &out));
  EP_TRY(bench_moves(ctx, &o, &out));
  EP_TRY(bench_ffn(ctx, &o, &out));
  if (out.csv && fclose(out.csv) != 0) {
    out.csv = NULL;
    ep_log_error("bench_kernels: error writing %s", o.csv_path);
    st = EP_ERR_IO;
    goto fail;
  }
  ep_moe_cuda_free(ctx);
  return 0;
fail:
  if (out.csv)
    fclose(out.csv);
  ep_moe_cuda_free(ctx);
  fprintf(stderr, "bench_kernels: failed: %s\n", ep_status_str(st));
  return 1;
}
