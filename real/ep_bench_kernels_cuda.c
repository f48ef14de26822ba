/* bench_kernels on a GPU: the launchers of kernels/ep_moe_cuda.h on one
 * stream, inputs from the device fills (which the host regenerates bit for
 * bit), each kernel's first launch checked against the C reference before it
 * is timed, CUDA events between launches queued back to back. */
#include <cublas_api.h>
#include <cuda_runtime.h>

#include "ep_bench_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_cuda_check.h"
#include "ep_moe_cuda.h"

/* Relative L2 bound for one expert-GEMM row: cuBLAS accumulates bf16 products
 * in fp32, the reference in double; both round the same three stages to bf16. */
#define EP__GEMM_ROW_TOL 1e-2
/* Tokens whose rows the permute and combine checks compare (spread over all). */
#define EP__CHECK_TOKENS 256

typedef struct cuda_bench {
  int32_t device;
  ep_moe_cuda *moe;
  cudaStream_t stream;
  cudaEvent_t ev[EP_BENCH_MARKS]; /* NULL until made */
  const ep_bench_point *pt;       /* NULL: nothing set up */
  ep_moe_gemm_impl gemm;
  /* Device buffers of the point set up. */
  ep_bf16 *x, *y, *w13, *w2, *w_gate, *out;
  ep_fp8 *q;
  float *scales, *weights, *bias, *logits, *scores;
  int32_t *experts, *counts, *offsets, *slot, *routed;
  void *src, *dst;
  /* Host weights of two experts for the GEMM check, kept across points. */
  ep_bf16 *h_w13[2], *h_w2[2];
  int32_t h_expert[2]; /* which expert each holds, -1 none */
  void *scratch;       /* host buffers of the checks */
  size_t scratch_bytes;
} cuda_bench;

static int32_t cuda_device_count(void)
{
  return ep_moe_cuda_device_count();
}

static void cuda_teardown(void *ctx)
{
  cuda_bench *c = ctx;
  void *p[] = {c->x,       c->y,       c->w13,    c->w2,     c->w_gate, c->out,     c->q,
               c->scales,  c->weights, c->bias,   c->logits, c->scores, c->experts, c->counts,
               c->offsets, c->slot,    c->routed, c->src,    c->dst};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    if (p[i])
      cudaFree(p[i]);
  c->x = c->y = c->w13 = c->w2 = c->w_gate = c->out = NULL;
  c->q = NULL;
  c->scales = c->weights = c->bias = c->logits = c->scores = NULL;
  c->experts = c->counts = c->offsets = c->slot = c->routed = NULL;
  c->src = c->dst = NULL;
  c->pt = NULL;
}

static void cuda_free(void *ctx)
{
  cuda_bench *c = ctx;
  if (!c)
    return;
  cuda_teardown(c);
  for (int i = 0; i < EP_BENCH_MARKS; i++)
    if (c->ev[i])
      cudaEventDestroy(c->ev[i]);
  ep_moe_cuda_free(c->moe);
  if (c->stream)
    cudaStreamDestroy(c->stream);
  for (int i = 0; i < 2; i++) {
    free(c->h_w13[i]);
    free(c->h_w2[i]);
  }
  free(c->scratch);
  free(c);
}

static ep_status cuda_init(void **out, int32_t device, char *provenance, size_t provenance_bytes)
{
  ep_status st = EP_OK;
  struct cudaDeviceProp prop;
  int driver = 0, runtime = 0, cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  cuda_bench *c = calloc(1, sizeof *c);
  if (!c)
    return EP_ERR_NOMEM;
  c->device = device;
  c->h_expert[0] = c->h_expert[1] = -1;
  EP_CUDA_TRY(cudaSetDevice(device));
  EP_CUDA_TRY(cudaGetDeviceProperties(&prop, device));
  EP_CUDA_TRY(cudaDriverGetVersion(&driver));
  EP_CUDA_TRY(cudaRuntimeGetVersion(&runtime));
  EP_CUBLAS_TRY(cublasGetProperty(MAJOR_VERSION, &cublas_major));
  EP_CUBLAS_TRY(cublasGetProperty(MINOR_VERSION, &cublas_minor));
  EP_CUBLAS_TRY(cublasGetProperty(PATCH_LEVEL, &cublas_patch));
  EP_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  EP_TRY(ep_moe_cuda_init(&c->moe, device, c->stream));
  for (int i = 0; i < EP_BENCH_MARKS; i++)
    EP_CUDA_TRY(cudaEventCreate(&c->ev[i]));
  snprintf(provenance, provenance_bytes,
           "# device: GPU %d %s, %d SMs, cc %d.%d, %.1f GiB\n"
           "# versions: CUDA driver %d.%d, runtime %d.%d, cuBLAS %d.%d.%d\n"
           "# kernels: kernels/ep_moe_cuda.h (expert GEMMs: cuBLAS; grouped_gemm: %s)\n"
           "# timing: CUDA events between launches queued back to back on one stream; each "
           "kernel's output checked against the C reference before timing\n",
           (int)device, prop.name, prop.multiProcessorCount, prop.major, prop.minor,
           (double)prop.totalGlobalMem / (1024.0 * 1024 * 1024), driver / 1000, driver % 1000 / 10,
           runtime / 1000, runtime % 1000 / 10, cublas_major, cublas_minor, cublas_patch,
           ep_moe_gemm_impl_name(EP_MOE_GEMM_AUTO));
  *out = c;
  return EP_OK;
fail:
  cuda_free(c);
  return st;
}

/* One launch; scores: where the router writes its scores (for the check), or NULL. */
static ep_status launch_with(cuda_bench *c, float *scores)
{
  ep_status st = EP_OK;
  const ep_bench_point *pt = c->pt;
  switch (pt->kernel) {
  case EP_BENCH_COPY:
    EP_CUDA_TRY(cudaMemcpyAsync(c->dst, c->src, (size_t)pt->copy_bytes, cudaMemcpyDeviceToDevice,
                                c->stream));
    return EP_OK;
  case EP_BENCH_GROUPED_GEMM:
  case EP_BENCH_GROUPED_GEMM_ZIPF:
  case EP_BENCH_GROUPED_GEMM_BATCHED:
  case EP_BENCH_GROUPED_GEMM_GROUPED:
  case EP_BENCH_GROUPED_GEMM_LOOP:
    return ep_moe_cuda_expert_ffn(c->moe, c->gemm, pt->local_experts, pt->counts, pt->hidden,
                                  pt->intermediate, c->x, c->w13, c->w2, c->y);
  case EP_BENCH_PERMUTE:
    return ep_moe_cuda_permute(c->moe, pt->tokens, pt->top_k, pt->hidden, pt->rows, c->x, c->slot,
                               c->y);
  case EP_BENCH_PERMUTE_FP8:
    return ep_moe_cuda_permute_fp8(c->moe, pt->tokens, pt->top_k, pt->hidden, pt->rows, c->x,
                                   c->slot, c->q, c->scales);
  case EP_BENCH_COMBINE:
    return ep_moe_cuda_combine(c->moe, pt->tokens, pt->top_k, pt->hidden, pt->rows, c->y, c->slot,
                               c->weights, c->out);
  case EP_BENCH_LAYOUT:
    return ep_moe_cuda_layout(c->moe, pt->tokens * pt->top_k, pt->local_experts, c->experts,
                              c->counts, c->offsets, c->slot, NULL);
  case EP_BENCH_ROUTER:
  case EP_BENCH_ROUTER_DSV3:
    return ep_moe_cuda_router(c->moe, &pt->router, pt->tokens, pt->hidden, EP_DTYPE_BF16, c->x,
                              c->w_gate, c->bias, NULL, scores, c->routed, c->weights);
  case EP_BENCH_ROUTER_SELECT:
  case EP_BENCH_ROUTER_SELECT_DSV3:
    return ep_moe_cuda_router_select(c->moe, &pt->router, pt->tokens, c->logits, c->bias, scores,
                                     c->routed, c->weights);
  case EP_BENCH_KERNEL_COUNT:
    break;
  }
  return EP_ERR_INVALID;
fail:
  return st;
}

static ep_status cuda_launch(void *ctx)
{
  return launch_with(ctx, NULL);
}

/* Host copy of row r of a device-filled uniform bf16 matrix of cols columns. */
static void regen_row(ep_bf16 *row, uint64_t seed, int64_t r, int32_t cols, float lo, float hi)
{
  for (int32_t i = 0; i < cols; i++)
    row[i] = ep_f32_to_bf16(ep_moe_uniform_at(seed, (uint64_t)(r * cols + i), lo, hi));
}

static ep_status fetch(void *dst, const void *src, size_t bytes)
{
  ep_status st = EP_OK;
  EP_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
fail:
  return st;
}

/* Host scratch of at least bytes for the checks, kept across points; NULL
 * (logged) when out of memory. */
static void *scratch(cuda_bench *c, size_t bytes)
{
  if (bytes > c->scratch_bytes) {
    void *p = realloc(c->scratch, bytes);
    if (!p) {
      ep_log_error("bench_kernels: out of host memory checking %s", c->pt->name);
      return NULL;
    }
    c->scratch = p;
    c->scratch_bytes = bytes;
  }
  return c->scratch;
}

/* permute, permute_fp8, combine: the rows of sampled tokens against the
 * reference on those tokens alone (bit for bit, see ep_moe_cuda.h). */
static ep_status check_moves(cuda_bench *c)
{
  ep_status st = EP_OK;
  const ep_bench_point *pt = c->pt;
  const int32_t h = pt->hidden, k = pt->top_k, nsb = h / EP_FP8_BLOCK;
  /* Floats first, then bf16 rows, then fp8 rows: each part stays aligned. */
  float *sr = scratch(c, sizeof(float) * 2 * (size_t)nsb + sizeof(ep_bf16) * (size_t)(3 + k) * h +
                             2 * (size_t)h);
  if (!sr)
    return EP_ERR_NOMEM;
  float *sg = sr + nsb;
  ep_bf16 *xr = (ep_bf16 *)(sg + nsb), *row = xr + h, *ref = row + h, *yk = ref + h;
  ep_fp8 *qr = (ep_fp8 *)(yk + (size_t)k * h), *qg = qr + h;
  float w[EP_MOE_MAX_TOP_K];
  int32_t local_slot[EP_MOE_MAX_TOP_K], zero = 0;
  for (int64_t t = 0; t < pt->tokens; t += 1 + pt->tokens / EP__CHECK_TOKENS) {
    regen_row(xr, pt->seed + EP_BENCH_SEED_X, t, h, -1.0f, 1.0f);
    if (pt->kernel == EP_BENCH_PERMUTE_FP8)
      EP_TRY(ep_moe_permute_fp8_ref(1, 1, h, 1, xr, &zero, qr, sr));
    int differ = 0;
    for (int32_t j = 0; j < k && !differ; j++) {
      const int32_t s = pt->slot[t * k + j];
      local_slot[j] = s < 0 ? -1 : j;
      w[j] = ep_moe_uniform_at(pt->seed + EP_BENCH_SEED_WEIGHTS, (uint64_t)(t * k + j), 0.0f, 1.0f);
      if (s < 0)
        continue;
      if (pt->kernel == EP_BENCH_PERMUTE) {
        EP_TRY(fetch(row, c->y + (int64_t)s * h, sizeof(ep_bf16) * (size_t)h));
        differ = memcmp(row, xr, sizeof(ep_bf16) * (size_t)h) != 0;
      } else if (pt->kernel == EP_BENCH_PERMUTE_FP8) {
        EP_TRY(fetch(qg, c->q + (int64_t)s * h, (size_t)h));
        EP_TRY(fetch(sg, c->scales + (int64_t)s * nsb, sizeof(float) * (size_t)nsb));
        differ = memcmp(qg, qr, (size_t)h) != 0 || memcmp(sg, sr, sizeof(float) * (size_t)nsb) != 0;
      } else {
        regen_row(yk + (int64_t)j * h, pt->seed + EP_BENCH_SEED_Y, s, h, -1.0f, 1.0f);
      }
    }
    if (pt->kernel == EP_BENCH_COMBINE) {
      EP_TRY(ep_moe_combine_ref(1, k, h, k, yk, local_slot, w, ref));
      EP_TRY(fetch(row, c->out + t * h, sizeof(ep_bf16) * (size_t)h));
      differ = memcmp(row, ref, sizeof(ep_bf16) * (size_t)h) != 0;
    }
    if (differ) {
      ep_log_error("bench_kernels: %s: token %lld differs from the C reference", pt->name,
                   (long long)t);
      return EP_ERR_BACKEND;
    }
  }
fail:
  return st;
}

/* layout: counts, offsets and every slot exactly. */
static ep_status check_layout(cuda_bench *c)
{
  ep_status st = EP_OK;
  const ep_bench_point *pt = c->pt;
  const size_t le = (size_t)pt->local_experts, copies = (size_t)(pt->tokens * pt->top_k);
  const size_t half = 2 * le + 1 + copies; /* counts, offsets, slots */
  int32_t *got = scratch(c, sizeof(int32_t) * 2 * half);
  if (!got)
    return EP_ERR_NOMEM;
  int32_t *want = got + half;
  EP_TRY(ep_moe_layout_ref((int64_t)copies, pt->local_experts, pt->experts, want, want + le,
                           want + 2 * le + 1, NULL));
  EP_TRY(fetch(got, c->counts, sizeof(int32_t) * le));
  EP_TRY(fetch(got + le, c->offsets, sizeof(int32_t) * (le + 1)));
  EP_TRY(fetch(got + 2 * le + 1, c->slot, sizeof(int32_t) * copies));
  if (memcmp(got, want, sizeof(int32_t) * half) != 0) {
    ep_log_error("bench_kernels: layout: counts, offsets or slots differ from the C reference");
    st = EP_ERR_BACKEND;
  }
fail:
  return st;
}

/* router*: the selection from the device's own scores equals the reference's. */
static ep_status check_router(cuda_bench *c)
{
  ep_status st = EP_OK;
  const ep_bench_point *pt = c->pt;
  const size_t copies = (size_t)(pt->tokens * pt->top_k), e = (size_t)pt->n_experts;
  const size_t n_scores = (size_t)pt->tokens * e;
  float *scores = scratch(c, sizeof(float) * (n_scores + e) + sizeof(int32_t) * 2 * copies);
  if (!scores)
    return EP_ERR_NOMEM;
  float *bias = scores + n_scores;
  int32_t *got = (int32_t *)(bias + e), *want = got + copies;
  if (pt->router_bias)
    ep_moe_fill_uniform_f32(bias, pt->n_experts, pt->seed + EP_BENCH_SEED_BIAS,
                            -EP_BENCH_BIAS_RANGE, EP_BENCH_BIAS_RANGE);
  EP_TRY(fetch(scores, c->scores, sizeof(float) * n_scores));
  EP_TRY(fetch(got, c->routed, sizeof(int32_t) * copies));
  EP_TRY(ep_moe_router_topk_ref(&pt->router, pt->tokens, scores, pt->router_bias ? bias : NULL,
                                want, NULL));
  if (memcmp(got, want, sizeof(int32_t) * copies) != 0) {
    ep_log_error("bench_kernels: %s: selected experts differ from the C reference", pt->name);
    st = EP_ERR_BACKEND;
  }
fail:
  return st;
}

/* Host weights of expert e in cache entry i (regenerated when it holds another). */
static ep_status host_weights(cuda_bench *c, int i, int32_t e)
{
  const ep_bench_point *pt = c->pt;
  const size_t n13 = 2 * (size_t)pt->intermediate * (size_t)pt->hidden;
  const size_t n2 = (size_t)pt->hidden * (size_t)pt->intermediate;
  if (c->h_expert[i] == e)
    return EP_OK;
  if (!c->h_w13[i] && !(c->h_w13[i] = malloc(sizeof(ep_bf16) * n13)))
    return EP_ERR_NOMEM;
  if (!c->h_w2[i] && !(c->h_w2[i] = malloc(sizeof(ep_bf16) * n2)))
    return EP_ERR_NOMEM;
  const float b13 = 1.0f / sqrtf((float)pt->hidden), b2 = 1.0f / sqrtf((float)pt->intermediate);
  ep_moe_fill_uniform_bf16(c->h_w13[i], (int64_t)n13, pt->seed + EP_BENCH_SEED_W13 + (uint64_t)e,
                           -b13, b13);
  ep_moe_fill_uniform_bf16(c->h_w2[i], (int64_t)n2, pt->seed + EP_BENCH_SEED_W2 + (uint64_t)e, -b2,
                           b2);
  c->h_expert[i] = e;
  return EP_OK;
}

/* grouped_gemm*: the first row of the first non-empty expert and the last row
 * of the last one against the row reference. */
static ep_status check_gemm(cuda_bench *c)
{
  ep_status st = EP_OK;
  const ep_bench_point *pt = c->pt;
  const int32_t h = pt->hidden;
  ep_bf16 *xr = scratch(c, sizeof(ep_bf16) * 3 * (size_t)h);
  if (!xr)
    return EP_ERR_NOMEM;
  ep_bf16 *ref = xr + h, *got = ref + h;
  int32_t first = -1, last = -1;
  for (int32_t e = 0; e < pt->local_experts; e++) {
    if (pt->counts[e] > 0) {
      last = e;
      if (first < 0)
        first = e;
    }
  }
  for (int i = 0; i < 2 && first >= 0; i++) {
    const int32_t e = i == 0 ? first : last;
    const int64_t r = i == 0 ? 0 : pt->rows - 1;
    if (host_weights(c, i, e) != EP_OK) {
      ep_log_error("bench_kernels: out of host memory for expert %d's weights", (int)e);
      return EP_ERR_NOMEM;
    }
    regen_row(xr, pt->seed + EP_BENCH_SEED_X, r, h, -1.0f, 1.0f);
    EP_TRY(ep_moe_expert_ffn_row_ref(h, pt->intermediate, xr, c->h_w13[i], c->h_w2[i], ref));
    EP_TRY(fetch(got, c->y + r * h, sizeof(ep_bf16) * (size_t)h));
    double num = 0, den = 0;
    for (int32_t j = 0; j < h; j++) {
      const double d = (double)ep_bf16_to_f32(got[j]) - ep_bf16_to_f32(ref[j]);
      num += d * d;
      den += (double)ep_bf16_to_f32(ref[j]) * ep_bf16_to_f32(ref[j]);
    }
    const double err = den > 0 ? sqrt(num / den) : sqrt(num);
    if (!(err <= EP__GEMM_ROW_TOL)) {
      ep_log_error("bench_kernels: %s (%s) at %d experts x %lld tokens: row %lld has relative "
                   "error %.3e against the C reference (bound %.0e)",
                   pt->name, ep_moe_gemm_impl_name(c->gemm), (int)pt->local_experts,
                   (long long)pt->tokens_per_expert, (long long)r, err, EP__GEMM_ROW_TOL);
      return EP_ERR_BACKEND;
    }
  }
fail:
  return st;
}

static ep_status cuda_setup(void *ctx, const ep_bench_point *pt)
{
  ep_status st = EP_OK;
  cuda_bench *c = ctx;
  const size_t h = (size_t)pt->hidden, im = (size_t)pt->intermediate, rows = (size_t)pt->rows;
  const size_t tok = (size_t)pt->tokens, le = (size_t)pt->local_experts;
  const size_t e = (size_t)pt->n_experts, copies = tok * (size_t)pt->top_k;
  const int select =
      pt->kernel == EP_BENCH_ROUTER_SELECT || pt->kernel == EP_BENCH_ROUTER_SELECT_DSV3;
  const int gemm = (EP_BENCH_GEMMS & EP_BENCH_BIT(pt->kernel)) != 0;
  const int router = (EP_BENCH_ROUTERS & EP_BENCH_BIT(pt->kernel)) != 0;
  c->pt = pt;
  c->gemm = pt->kernel == EP_BENCH_GROUPED_GEMM_BATCHED   ? EP_MOE_GEMM_BATCHED
            : pt->kernel == EP_BENCH_GROUPED_GEMM_GROUPED ? EP_MOE_GEMM_GROUPED
            : pt->kernel == EP_BENCH_GROUPED_GEMM_LOOP    ? EP_MOE_GEMM_LOOP
                                                          : EP_MOE_GEMM_AUTO;
  if (pt->kernel == EP_BENCH_COPY) {
    EP_CUDA_TRY(cudaMalloc(&c->src, (size_t)pt->copy_bytes));
    EP_CUDA_TRY(cudaMalloc(&c->dst, (size_t)pt->copy_bytes));
    EP_CUDA_TRY(cudaMemsetAsync(c->src, 1, (size_t)pt->copy_bytes, c->stream));
    return launch_with(c, NULL);
  }
  /* Inputs: tokens (or the experts' rows), filled on the device. */
  if (gemm || pt->kernel == EP_BENCH_PERMUTE || pt->kernel == EP_BENCH_PERMUTE_FP8 ||
      (router && !select)) {
    const size_t n_x = (gemm ? rows : tok) * h;
    EP_CUDA_TRY(cudaMalloc((void **)&c->x, sizeof(ep_bf16) * n_x));
    EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, c->x, (int64_t)n_x, pt->seed + EP_BENCH_SEED_X,
                                         -1.0f, 1.0f));
  }
  if (gemm || pt->kernel == EP_BENCH_PERMUTE || pt->kernel == EP_BENCH_COMBINE)
    EP_CUDA_TRY(cudaMalloc((void **)&c->y, sizeof(ep_bf16) * rows * h));
  if (pt->kernel == EP_BENCH_PERMUTE || pt->kernel == EP_BENCH_PERMUTE_FP8 ||
      pt->kernel == EP_BENCH_COMBINE || pt->kernel == EP_BENCH_LAYOUT) {
    /* On the kernels' stream: a non-blocking stream does not wait for the
     * legacy default stream, where a plain cudaMemcpy may still run. */
    EP_CUDA_TRY(cudaMalloc((void **)&c->slot, sizeof(int32_t) * copies));
    EP_CUDA_TRY(cudaMemcpyAsync(c->slot, pt->slot, sizeof(int32_t) * copies, cudaMemcpyHostToDevice,
                                c->stream));
  }
  if (gemm) {
    const size_t n13 = 2 * im * h, n2 = h * im;
    const float b13 = 1.0f / sqrtf((float)h), b2 = 1.0f / sqrtf((float)im);
    EP_CUDA_TRY(cudaMalloc((void **)&c->w13, sizeof(ep_bf16) * le * n13));
    EP_CUDA_TRY(cudaMalloc((void **)&c->w2, sizeof(ep_bf16) * le * n2));
    for (size_t i = 0; i < le; i++) {
      EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, c->w13 + i * n13, (int64_t)n13,
                                           pt->seed + EP_BENCH_SEED_W13 + i, -b13, b13));
      EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, c->w2 + i * n2, (int64_t)n2,
                                           pt->seed + EP_BENCH_SEED_W2 + i, -b2, b2));
    }
    /* Poisoned, so a row the GEMMs do not write fails the check. */
    EP_CUDA_TRY(cudaMemsetAsync(c->y, 0xff, sizeof(ep_bf16) * rows * h, c->stream));
  } else if (pt->kernel == EP_BENCH_PERMUTE) {
    EP_CUDA_TRY(cudaMemsetAsync(c->y, 0xff, sizeof(ep_bf16) * rows * h, c->stream));
  } else if (pt->kernel == EP_BENCH_PERMUTE_FP8) {
    EP_CUDA_TRY(cudaMalloc((void **)&c->q, rows * h));
    EP_CUDA_TRY(cudaMalloc((void **)&c->scales, sizeof(float) * rows * (h / EP_FP8_BLOCK)));
    EP_CUDA_TRY(cudaMemsetAsync(c->q, 0xff, rows * h, c->stream));
  } else if (pt->kernel == EP_BENCH_COMBINE) {
    EP_CUDA_TRY(cudaMalloc((void **)&c->weights, sizeof(float) * copies));
    EP_CUDA_TRY(cudaMalloc((void **)&c->out, sizeof(ep_bf16) * tok * h));
    EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, c->y, (int64_t)(rows * h),
                                         pt->seed + EP_BENCH_SEED_Y, -1.0f, 1.0f));
    EP_TRY(ep_moe_cuda_fill_uniform_f32(c->moe, c->weights, (int64_t)copies,
                                        pt->seed + EP_BENCH_SEED_WEIGHTS, 0.0f, 1.0f));
    EP_CUDA_TRY(cudaMemsetAsync(c->out, 0xff, sizeof(ep_bf16) * tok * h, c->stream));
  } else if (pt->kernel == EP_BENCH_LAYOUT) {
    EP_CUDA_TRY(cudaMalloc((void **)&c->experts, sizeof(int32_t) * copies));
    EP_CUDA_TRY(cudaMalloc((void **)&c->counts, sizeof(int32_t) * le));
    EP_CUDA_TRY(cudaMalloc((void **)&c->offsets, sizeof(int32_t) * (le + 1)));
    EP_CUDA_TRY(cudaMemcpyAsync(c->experts, pt->experts, sizeof(int32_t) * copies,
                                cudaMemcpyHostToDevice, c->stream));
    EP_CUDA_TRY(cudaMemsetAsync(c->slot, 0x7f, sizeof(int32_t) * copies, c->stream));
  } else if (router) {
    EP_CUDA_TRY(cudaMalloc((void **)&c->scores, sizeof(float) * tok * e));
    EP_CUDA_TRY(cudaMalloc((void **)&c->routed, sizeof(int32_t) * copies));
    EP_CUDA_TRY(cudaMalloc((void **)&c->weights, sizeof(float) * copies));
    if (pt->router_bias) {
      EP_CUDA_TRY(cudaMalloc((void **)&c->bias, sizeof(float) * e));
      EP_TRY(ep_moe_cuda_fill_uniform_f32(c->moe, c->bias, (int64_t)e,
                                          pt->seed + EP_BENCH_SEED_BIAS, -EP_BENCH_BIAS_RANGE,
                                          EP_BENCH_BIAS_RANGE));
    }
    if (select) {
      EP_CUDA_TRY(cudaMalloc((void **)&c->logits, sizeof(float) * tok * e));
      EP_TRY(ep_moe_cuda_fill_uniform_f32(c->moe, c->logits, (int64_t)(tok * e),
                                          pt->seed + EP_BENCH_SEED_LOGITS, -EP_BENCH_LOGITS_RANGE,
                                          EP_BENCH_LOGITS_RANGE));
    } else {
      EP_CUDA_TRY(cudaMalloc((void **)&c->w_gate, sizeof(ep_bf16) * e * h));
      EP_TRY(ep_moe_cuda_fill_uniform_bf16(c->moe, c->w_gate, (int64_t)(e * h),
                                           pt->seed + EP_BENCH_SEED_W_GATE, -EP_BENCH_W_GATE_RANGE,
                                           EP_BENCH_W_GATE_RANGE));
    }
    EP_CUDA_TRY(cudaMemsetAsync(c->routed, 0x7f, sizeof(int32_t) * copies, c->stream));
  }
  /* Correctness first: one launch against the C reference. */
  st = launch_with(c, c->scores);
  if (st == EP_ERR_UNSUPPORTED)
    return st; /* cuBLAS refused this GEMM strategy (logged) */
  if (st != EP_OK)
    goto fail;
  EP_TRY(ep_moe_cuda_sync(c->moe));
  if (gemm)
    EP_TRY(check_gemm(c));
  else if (router)
    EP_TRY(check_router(c));
  else if (pt->kernel == EP_BENCH_LAYOUT)
    EP_TRY(check_layout(c));
  else
    EP_TRY(check_moves(c));
  return EP_OK;
fail:
  return st;
}

static ep_status cuda_mark(void *ctx, int32_t i)
{
  ep_status st = EP_OK;
  cuda_bench *c = ctx;
  EP_CUDA_TRY(cudaEventRecord(c->ev[i], c->stream));
fail:
  return st;
}

static ep_status cuda_elapsed(void *ctx, int32_t n, double *times_us)
{
  ep_status st = EP_OK;
  cuda_bench *c = ctx;
  EP_CUDA_TRY(cudaEventSynchronize(c->ev[n]));
  EP_TRY(ep_moe_cuda_sync(c->moe));
  for (int32_t j = 0; j < n; j++) {
    float ms = 0;
    EP_CUDA_TRY(cudaEventElapsedTime(&ms, c->ev[j], c->ev[j + 1]));
    times_us[j] = 1e3 * (double)ms;
  }
fail:
  return st;
}

/* In ep_bench_kernels_ops order: name, kernels (all), the copy (1 GiB: far
 * beyond the L2), default -w -n -e, then the ops. */
const ep_bench_kernels_ops ep_bench_kernels_cuda = {"cuda",
                                                    ((1u << EP_BENCH_KERNEL_COUNT) - 1),
                                                    "cudaMemcpyAsync device to device",
                                                    (int64_t)1 << 30,
                                                    3,
                                                    20,
                                                    2048,
                                                    cuda_device_count,
                                                    cuda_init,
                                                    cuda_free,
                                                    cuda_setup,
                                                    cuda_launch,
                                                    cuda_mark,
                                                    cuda_elapsed,
                                                    cuda_teardown};
