/* Kernel sweep on the GPU: the ep_moe_cuda.h launchers, inputs from the device
 * fills (which the host regenerates bit for bit), each kernel's output checked
 * against the C reference before it is timed, CUDA events around every launch. */
#include <cuda_runtime.h>

#include "ep_real_sweep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_compute.h"
#include "ep_cuda_check.h"
#include "ep_moe_cuda.h"
#include "ep_real.h"

/* Relative L2 bound for one grouped-GEMM row: cuBLAS accumulates bf16 products
 * in fp32, the reference in double; both round the same three stages to bf16. */
#define EP_SWEEP_GEMM_ROW_TOL 1e-2

/* Timed launches are queued back to back between events, EP__SWEEP_EVENTS - 1
 * at a time, so small kernels are not timed with the host's launch latency. */
#define EP__SWEEP_EVENTS 65

typedef struct cuda_sweep {
  int32_t device;
  ep_moe_cuda *moe;
  cudaStream_t stream;
  cudaEvent_t ev[EP__SWEEP_EVENTS]; /* NULL until made */
} cuda_sweep;

static void cuda_sweep_free(void *ctx)
{
  cuda_sweep *c = ctx;
  if (!c)
    return;
  for (int i = 0; i < EP__SWEEP_EVENTS; i++)
    if (c->ev[i])
      cudaEventDestroy(c->ev[i]);
  ep_moe_cuda_free(c->moe);
  if (c->stream)
    cudaStreamDestroy(c->stream);
  free(c);
}

typedef struct dev_bufs {
  ep_bf16 *x, *y, *w13, *w2, *w_gate, *out;
  ep_fp8 *q;
  float *scales, *weights, *scores;
  int32_t *slot, *routed;
} dev_bufs;

static void dev_bufs_free(dev_bufs *d)
{
  void *p[] = {d->x, d->y,      d->w13,     d->w2,     d->w_gate, d->out,
               d->q, d->scales, d->weights, d->scores, d->slot,   d->routed};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    if (p[i])
      cudaFree(p[i]);
  memset(d, 0, sizeof *d);
}

static ep_status launch(cuda_sweep *c, const ep_sweep_point *pt, dev_bufs *d, const int32_t *counts,
                        const ep_moe_router_cfg *rc)
{
  switch (pt->kernel) {
  case EP_SWEEP_GROUPED_GEMM:
    return ep_moe_cuda_expert_ffn(c->moe, EP_MOE_GEMM_AUTO, pt->local_experts, counts, pt->hidden,
                                  pt->intermediate, d->x, d->w13, d->w2, d->y);
  case EP_SWEEP_PERMUTE:
    return ep_moe_cuda_permute(c->moe, pt->tokens, pt->top_k, pt->hidden, pt->rows, d->x, d->slot,
                               d->y);
  case EP_SWEEP_PERMUTE_FP8:
    return ep_moe_cuda_permute_fp8(c->moe, pt->tokens, pt->top_k, pt->hidden, pt->rows, d->x,
                                   d->slot, d->q, d->scales);
  case EP_SWEEP_COMBINE:
    return ep_moe_cuda_combine(c->moe, pt->tokens, pt->top_k, pt->hidden, pt->rows, d->y, d->slot,
                               d->weights, d->out);
  case EP_SWEEP_ROUTER:
    return ep_moe_cuda_router(c->moe, rc, pt->tokens, pt->hidden, EP_DTYPE_BF16, d->x, d->w_gate,
                              NULL, NULL, d->scores, d->routed, d->weights);
  case EP_SWEEP_KERNEL_COUNT:
    break;
  }
  return EP_ERR_INVALID;
}

/* Compares the first launch's output with the C reference on the same inputs. */
static ep_status check_point(cuda_sweep *c, const ep_sweep_point *pt, const dev_bufs *d,
                             const int32_t *slot, const ep_moe_router_cfg *rc)
{
  ep_status st = EP_OK;
  const size_t h = (size_t)pt->hidden, im = (size_t)pt->intermediate, rows = (size_t)pt->rows;
  const size_t tok = (size_t)pt->tokens, n_copies = tok * (size_t)pt->top_k;
  const size_t n_x = (rows > tok ? rows : tok) * h;
  ep_bf16 *x = malloc(sizeof(ep_bf16) * n_x), *want = NULL, *got = NULL;
  ep_fp8 *q_want = NULL, *q_got = NULL;
  float *w = malloc(sizeof(float) * n_copies), *f_want = NULL, *f_got = NULL;
  int32_t *i_want = NULL, *i_got = NULL;
  int64_t mismatches = 0;
  if (!x || !w)
    goto nomem;
  ep_moe_fill_uniform_bf16(x, (int64_t)n_x, pt->seed, -1.0f, 1.0f);
  ep_moe_fill_uniform_f32(w, (int64_t)n_copies, pt->seed + 2, 0.0f, 1.0f);
  EP_CUDA_TRY(cudaStreamSynchronize(c->stream));
  switch (pt->kernel) {
  case EP_SWEEP_PERMUTE:
  case EP_SWEEP_COMBINE: {
    const size_t n_out = pt->kernel == EP_SWEEP_PERMUTE ? rows * h : tok * h;
    want = malloc(sizeof(ep_bf16) * n_out);
    got = malloc(sizeof(ep_bf16) * n_out);
    ep_bf16 *y = NULL;
    if (!want || !got)
      goto nomem;
    if (pt->kernel == EP_SWEEP_PERMUTE) {
      memset(want, 0, sizeof(ep_bf16) * n_out);
      st = ep_moe_permute_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, x, slot, want);
      EP_CUDA_TRY(cudaMemcpy(got, d->y, sizeof(ep_bf16) * n_out, cudaMemcpyDeviceToHost));
    } else {
      y = malloc(sizeof(ep_bf16) * rows * h);
      if (!y)
        goto nomem;
      ep_moe_fill_uniform_bf16(y, (int64_t)(rows * h), pt->seed + 1, -1.0f, 1.0f);
      st = ep_moe_combine_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, y, slot, w, want);
      free(y);
      EP_CUDA_TRY(cudaMemcpy(got, d->out, sizeof(ep_bf16) * n_out, cudaMemcpyDeviceToHost));
    }
    for (size_t i = 0; i < n_out; i++)
      mismatches += want[i] != got[i];
    break;
  }
  case EP_SWEEP_PERMUTE_FP8: {
    const size_t nb = rows * (h / EP_FP8_BLOCK);
    q_want = malloc(rows * h);
    q_got = malloc(rows * h);
    f_want = malloc(sizeof(float) * nb);
    f_got = malloc(sizeof(float) * nb);
    if (!q_want || !q_got || !f_want || !f_got)
      goto nomem;
    st = ep_moe_permute_fp8_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, x, slot, q_want,
                                f_want);
    EP_CUDA_TRY(cudaMemcpy(q_got, d->q, rows * h, cudaMemcpyDeviceToHost));
    EP_CUDA_TRY(cudaMemcpy(f_got, d->scales, sizeof(float) * nb, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < rows * h; i++)
      mismatches += q_want[i] != q_got[i];
    for (size_t i = 0; i < nb; i++)
      mismatches += memcmp(&f_want[i], &f_got[i], sizeof(float)) != 0;
    break;
  }
  case EP_SWEEP_ROUTER: {
    /* Selection is exact given the device's scores (ep_moe_cuda.h). */
    const size_t n_sc = tok * (size_t)pt->n_experts;
    f_want = malloc(sizeof(float) * n_sc);
    i_want = malloc(sizeof(int32_t) * n_copies);
    i_got = malloc(sizeof(int32_t) * n_copies);
    if (!f_want || !i_want || !i_got)
      goto nomem;
    EP_CUDA_TRY(cudaMemcpy(f_want, d->scores, sizeof(float) * n_sc, cudaMemcpyDeviceToHost));
    EP_CUDA_TRY(cudaMemcpy(i_got, d->routed, sizeof(int32_t) * n_copies, cudaMemcpyDeviceToHost));
    st = ep_moe_router_topk_ref(rc, pt->tokens, f_want, NULL, i_want, NULL);
    for (size_t i = 0; i < n_copies; i++)
      mismatches += i_want[i] != i_got[i];
    break;
  }
  case EP_SWEEP_GROUPED_GEMM: {
    /* First and last row of the first and last expert, against the row reference. */
    const size_t w13_elems = 2 * im * h, w2_elems = h * im;
    ep_bf16 *w13 = malloc(sizeof(ep_bf16) * w13_elems), *w2 = malloc(sizeof(ep_bf16) * w2_elems);
    ep_bf16 *ref_row = malloc(sizeof(ep_bf16) * h), *dev_row = malloc(sizeof(ep_bf16) * h);
    float *fr = malloc(sizeof(float) * h);
    double *dr = malloc(sizeof(double) * h);
    if (!w13 || !w2 || !ref_row || !dev_row || !fr || !dr) {
      free(w13);
      free(w2);
      free(ref_row);
      free(dev_row);
      free(fr);
      free(dr);
      goto nomem;
    }
    const int32_t experts_to_check[2] = {0, pt->local_experts - 1};
    double worst = 0;
    for (int ei = 0; ei < 2 && st == EP_OK; ei++) {
      const int32_t e = experts_to_check[ei];
      const float b13 = 1.0f / sqrtf((float)h), b2 = 1.0f / sqrtf((float)im);
      ep_moe_fill_uniform_bf16(w13, (int64_t)w13_elems, pt->seed + 100 + (uint64_t)e, -b13, b13);
      ep_moe_fill_uniform_bf16(w2, (int64_t)w2_elems, pt->seed + 200 + (uint64_t)e, -b2, b2);
      const int64_t rws[2] = {e * pt->tokens_per_expert, (e + 1) * pt->tokens_per_expert - 1};
      for (int ri = 0; ri < 2 && st == EP_OK; ri++) {
        st = ep_moe_expert_ffn_row_ref(pt->hidden, pt->intermediate, x + (size_t)rws[ri] * h, w13,
                                       w2, ref_row);
        cudaError_t e2 = cudaMemcpy(dev_row, d->y + (size_t)rws[ri] * h, sizeof(ep_bf16) * h,
                                    cudaMemcpyDeviceToHost);
        if (e2 != cudaSuccess) {
          ep_log_error("sweep: cudaMemcpy of a GEMM row failed: %s", cudaGetErrorString(e2));
          st = EP_ERR_BACKEND;
          break;
        }
        for (size_t j = 0; j < h; j++) {
          fr[j] = ep_bf16_to_f32(dev_row[j]);
          dr[j] = ep_bf16_to_f32(ref_row[j]);
        }
        const double err = ep_real_rel_error(fr, dr, 1, pt->hidden);
        if (!(err <= worst))
          worst = err;
      }
    }
    free(w13);
    free(w2);
    free(ref_row);
    free(dev_row);
    free(fr);
    free(dr);
    if (st == EP_OK && !(worst <= EP_SWEEP_GEMM_ROW_TOL)) {
      ep_log_error("sweep: grouped_gemm at %d experts x %lld tokens: relative error %.3e against "
                   "the C reference exceeds %.0e",
                   (int)pt->local_experts, (long long)pt->tokens_per_expert, worst,
                   EP_SWEEP_GEMM_ROW_TOL);
      st = EP_ERR_BACKEND;
    }
    break;
  }
  case EP_SWEEP_KERNEL_COUNT:
    break;
  }
  if (st == EP_OK && mismatches > 0) {
    ep_log_error("sweep: %s at %d experts x %lld tokens: %lld values differ from the C reference",
                 ep_sweep_kernel_name(pt->kernel), (int)pt->local_experts,
                 (long long)pt->tokens_per_expert, (long long)mismatches);
    st = EP_ERR_BACKEND;
  }
  goto fail;
nomem:
  ep_log_error("sweep: out of host memory for the reference check");
  st = EP_ERR_NOMEM;
fail:
  free(x);
  free(w);
  free(want);
  free(got);
  free(q_want);
  free(q_got);
  free(f_want);
  free(f_got);
  free(i_want);
  free(i_got);
  return st;
}

static ep_status cuda_measure(void *ctx, const ep_sweep_point *pt, int32_t warmup, int32_t repeats,
                              double *times_us)
{
  cuda_sweep *c = ctx;
  ep_status st = EP_OK;
  dev_bufs d = {0};
  const size_t h = (size_t)pt->hidden, im = (size_t)pt->intermediate, rows = (size_t)pt->rows;
  const size_t tok = (size_t)pt->tokens, le = (size_t)pt->local_experts;
  const size_t n_copies = tok * (size_t)pt->top_k, n_x = (rows > tok ? rows : tok) * h;
  const ep_moe_router_cfg rc = {pt->n_experts, pt->top_k, 1, 1, EP_MOE_SCORE_SOFTMAX, 1, 1.0f};
  int32_t *experts = malloc(sizeof(int32_t) * n_copies), *slot = malloc(sizeof(int32_t) * n_copies);
  int32_t *counts = malloc(sizeof(int32_t) * le), *offsets = malloc(sizeof(int32_t) * (le + 1));
  if (!experts || !slot || !counts || !offsets) {
    ep_log_error("sweep: out of host memory");
    st = EP_ERR_NOMEM;
    goto fail;
  }
  for (size_t i = 0; i < n_copies; i++)
    experts[i] = i < rows ? (int32_t)(i % le) : -1;
  if ((st = ep_moe_layout_ref((int64_t)n_copies, pt->local_experts, experts, counts, offsets, slot,
                              NULL)) != EP_OK)
    goto fail;
  EP_CUDA_TRY(cudaMalloc((void **)&d.x, sizeof(ep_bf16) * n_x));
  EP_CUDA_TRY(cudaMalloc((void **)&d.y, sizeof(ep_bf16) * rows * h));
  EP_CUDA_TRY(cudaMalloc((void **)&d.out, sizeof(ep_bf16) * tok * h));
  EP_CUDA_TRY(cudaMalloc((void **)&d.weights, sizeof(float) * n_copies));
  EP_CUDA_TRY(cudaMalloc((void **)&d.slot, sizeof(int32_t) * n_copies));
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, d.x, (int64_t)n_x, pt->seed, -1.0f, 1.0f));
  EP_TRY(
      ep_moe_cuda_fill_uniform_bf16(c->moe, d.y, (int64_t)(rows * h), pt->seed + 1, -1.0f, 1.0f));
  EP_TRY(
      ep_moe_cuda_fill_uniform_f32(c->moe, d.weights, (int64_t)n_copies, pt->seed + 2, 0.0f, 1.0f));
  /* On the kernels' stream: a non-blocking stream does not wait for the legacy
   * default stream, where a plain cudaMemcpy/cudaMemset may still run. */
  EP_CUDA_TRY(
      cudaMemcpyAsync(d.slot, slot, sizeof(int32_t) * n_copies, cudaMemcpyHostToDevice, c->stream));
  if (pt->kernel == EP_SWEEP_PERMUTE)
    EP_CUDA_TRY(
        cudaMemsetAsync(d.y, 0, sizeof(ep_bf16) * rows * h, c->stream)); /* every row is written */
  if (pt->kernel == EP_SWEEP_GROUPED_GEMM) {
    const size_t w13_elems = 2 * im * h, w2_elems = h * im;
    const float b13 = 1.0f / sqrtf((float)h), b2 = 1.0f / sqrtf((float)im);
    EP_CUDA_TRY(cudaMalloc((void **)&d.w13, sizeof(ep_bf16) * le * w13_elems));
    EP_CUDA_TRY(cudaMalloc((void **)&d.w2, sizeof(ep_bf16) * le * w2_elems));
    for (size_t e = 0; e < le; e++) {
      EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, d.w13 + e * w13_elems, (int64_t)w13_elems,
                                           pt->seed + 100 + e, -b13, b13));
      EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, d.w2 + e * w2_elems, (int64_t)w2_elems,
                                           pt->seed + 200 + e, -b2, b2));
    }
    /* The input is x's first rows rows; y is the output. */
  } else if (pt->kernel == EP_SWEEP_PERMUTE_FP8) {
    EP_CUDA_TRY(cudaMalloc((void **)&d.q, rows * h));
    EP_CUDA_TRY(cudaMalloc((void **)&d.scales, sizeof(float) * rows * (h / EP_FP8_BLOCK)));
  } else if (pt->kernel == EP_SWEEP_ROUTER) {
    EP_CUDA_TRY(cudaMalloc((void **)&d.w_gate, sizeof(ep_bf16) * (size_t)pt->n_experts * h));
    EP_CUDA_TRY(cudaMalloc((void **)&d.scores, sizeof(float) * tok * (size_t)pt->n_experts));
    EP_CUDA_TRY(cudaMalloc((void **)&d.routed, sizeof(int32_t) * n_copies));
    EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, d.w_gate, (int64_t)((size_t)pt->n_experts * h),
                                         pt->seed + 5, -0.1f, 0.1f));
  }
  /* Correctness first, then warm-up and timed launches. */
  EP_TRY(launch(c, pt, &d, counts, &rc));
  EP_TRY(ep_moe_cuda_sync(c->moe));
  EP_TRY(check_point(c, pt, &d, slot, &rc));
  for (int32_t i = 0; i < warmup; i++)
    EP_TRY(launch(c, pt, &d, counts, &rc));
  for (int32_t done = 0; done < repeats;) {
    const int32_t n = repeats - done < EP__SWEEP_EVENTS - 1 ? repeats - done : EP__SWEEP_EVENTS - 1;
    EP_CUDA_TRY(cudaEventRecord(c->ev[0], c->stream));
    for (int32_t i = 0; i < n; i++) {
      EP_TRY(launch(c, pt, &d, counts, &rc));
      EP_CUDA_TRY(cudaEventRecord(c->ev[i + 1], c->stream));
    }
    EP_CUDA_TRY(cudaEventSynchronize(c->ev[n]));
    for (int32_t i = 0; i < n; i++) {
      float ms = 0;
      EP_CUDA_TRY(cudaEventElapsedTime(&ms, c->ev[i], c->ev[i + 1]));
      times_us[done + i] = 1e3 * (double)ms;
    }
    done += n;
  }
  EP_TRY(ep_moe_cuda_sync(c->moe));
fail:
  if (st != EP_OK)
    ep_log_error("sweep: %s at %d experts x %lld tokens per expert failed: %s",
                 ep_sweep_kernel_name(pt->kernel), (int)pt->local_experts,
                 (long long)pt->tokens_per_expert, ep_status_str(st));
  dev_bufs_free(&d);
  free(experts);
  free(slot);
  free(counts);
  free(offsets);
  return st;
}

/* The device's copy bandwidth (bytes read + written per second), the memory
 * floor's yardstick, measured in the same run as the kernels. */
#define EP__COPY_MIB 512
#define EP__COPY_REPEATS 10

static int cmp_float(const void *a, const void *b)
{
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static ep_status copy_bandwidth(cuda_sweep *c, double *GBps)
{
  ep_status st = EP_OK;
  const size_t bytes = (size_t)EP__COPY_MIB << 20;
  void *src = NULL, *dst = NULL;
  float ms[EP__COPY_REPEATS];
  EP_CUDA_TRY(cudaMalloc(&src, bytes));
  EP_CUDA_TRY(cudaMalloc(&dst, bytes));
  EP_CUDA_TRY(cudaMemsetAsync(src, 1, bytes, c->stream));
  for (int i = 0; i < 3; i++) /* warm-up */
    EP_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
  EP_CUDA_TRY(cudaEventRecord(c->ev[0], c->stream));
  for (int i = 0; i < EP__COPY_REPEATS; i++) {
    EP_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    EP_CUDA_TRY(cudaEventRecord(c->ev[i + 1], c->stream));
  }
  EP_CUDA_TRY(cudaEventSynchronize(c->ev[EP__COPY_REPEATS]));
  for (int i = 0; i < EP__COPY_REPEATS; i++)
    EP_CUDA_TRY(cudaEventElapsedTime(&ms[i], c->ev[i], c->ev[i + 1]));
  qsort(ms, EP__COPY_REPEATS, sizeof ms[0], cmp_float);
  const double med_ms =
      0.5 * ((double)ms[EP__COPY_REPEATS / 2 - 1] + (double)ms[EP__COPY_REPEATS / 2]);
  *GBps = med_ms > 0 ? 2.0 * (double)bytes / (med_ms * 1e6) : 0.0;
fail:
  if (src)
    cudaFree(src);
  if (dst)
    cudaFree(dst);
  return st;
}

ep_status ep_sweep_cuda_impl(ep_sweep_impl *out, int32_t local_rank)
{
  ep_status st = EP_OK;
  memset(out, 0, sizeof *out);
  cuda_sweep *c = calloc(1, sizeof *c);
  if (!c)
    return EP_ERR_NOMEM;
  ep_compute_device dev;
  EP_TRY(ep_compute_cuda.device_query(0, local_rank, &dev));
  c->device = dev.device;
  EP_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  EP_TRY(ep_moe_cuda_init(&c->moe, c->device, c->stream));
  for (int i = 0; i < EP__SWEEP_EVENTS; i++)
    EP_CUDA_TRY(cudaEventCreate(&c->ev[i]));
  double copy_GBps = 0;
  EP_TRY(copy_bandwidth(c, &copy_GBps));
  out->backend = "nccl";
  out->warmup = 3;
  out->ctx = c;
  out->measure = cuda_measure;
  out->free = cuda_sweep_free;
  snprintf(out->provenance, sizeof out->provenance,
           "# device: GPU %d %s, %.1f GiB, %s; kernels kernels/ep_moe_cuda.h (grouped GEMM: "
           "cuBLAS, %s)\n"
           "# timing: CUDA events between launches queued back to back on one stream, %d "
           "warm-up launches; outputs checked against the C reference before timing\n"
           "# copy_GBps: %.1f (cudaMemcpyAsync device to device of %d MiB, bytes read + written "
           "over the median of %d)\n",
           (int)c->device, dev.name, (double)dev.total_bytes / (1024.0 * 1024 * 1024), dev.versions,
           ep_moe_gemm_impl_name(EP_MOE_GEMM_AUTO), out->warmup, copy_GBps, EP__COPY_MIB,
           EP__COPY_REPEATS);
  return EP_OK;
fail:
  cuda_sweep_free(c);
  return st;
}
