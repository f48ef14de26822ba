/* CUDA MoE kernels (kernels/ep_moe_cuda.h) against their C references on
 * fresh random inputs. Every output buffer is poisoned before each run, twice
 * with different bytes, so a kernel that skips an element cannot pass.
 * Integers (expert ids, counts, offsets, slots, fp8 codes) must match exactly;
 * floats by the relative error stated at each check (bf16: 1e-2). Exits 77
 * (skipped) when there is no CUDA device.
 *   build/tests/test_moe_cuda        (or: ctest -R moe_cuda --output-on-failure) */
#include <cuda_runtime_api.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ep_cuda_check.h"
#include "ep_moe_cuda.h"
#include "ep_rng.h"

static const unsigned char poisons[2] = {0xff, 0x5a};

/* ---- device buffer helpers (stream-ordered on the context's stream) ----- */

static cudaStream_t stream_of(ep_moe_cuda *ctx)
{
  return (cudaStream_t)ep_moe_cuda_stream(ctx);
}

static ep_status upload(ep_moe_cuda *ctx, void *d, const void *h, size_t bytes)
{
  ep_status st = EP_OK;
  if (bytes == 0)
    return EP_OK;
  EP_CUDA_TRY(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream_of(ctx)));
  EP_CUDA_TRY(cudaStreamSynchronize(stream_of(ctx)));
fail:
  return st;
}

/* Waits for the kernels (reporting their errors), then copies back. */
static ep_status download(ep_moe_cuda *ctx, void *h, const void *d, size_t bytes)
{
  ep_status st = EP_OK;
  EP_TRY(ep_moe_cuda_sync(ctx));
  if (bytes == 0)
    return EP_OK;
  EP_CUDA_TRY(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, stream_of(ctx)));
  EP_CUDA_TRY(cudaStreamSynchronize(stream_of(ctx)));
fail:
  return st;
}

static ep_status poison(ep_moe_cuda *ctx, void *d, size_t bytes, unsigned char byte)
{
  ep_status st = EP_OK;
  if (bytes == 0)
    return EP_OK;
  EP_CUDA_TRY(cudaMemsetAsync(d, byte, bytes, stream_of(ctx)));
fail:
  return st;
}

static ep_status dev_alloc(void **d, size_t bytes)
{
  ep_status st = EP_OK;
  *d = NULL;
  EP_CUDA_TRY(cudaMalloc(d, bytes ? bytes : 16));
fail:
  return st;
}

/* Host allocation that the caller frees; NULL only when out of memory. */
static void *host_alloc(size_t bytes)
{
  return malloc(bytes ? bytes : 16);
}

/* Number of differing 32-bit words (exact comparison of integer outputs). */
static int64_t count_diff_i32(const int32_t *a, const int32_t *b, int64_t n, const char *what)
{
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++)
    if (a[i] != b[i]) {
      if (bad == 0)
        fprintf(stderr, "%s: first mismatch at %lld: gpu %d, ref %d\n", what, (long long)i,
                (int)a[i], (int)b[i]);
      bad++;
    }
  return bad;
}

static int64_t count_diff_bytes(const void *a, const void *b, size_t n, const char *what)
{
  const unsigned char *x = a, *y = b;
  int64_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (x[i] != y[i]) {
      if (bad == 0)
        fprintf(stderr, "%s: first mismatch at byte %zu: gpu %02x, ref %02x\n", what, i, x[i],
                y[i]);
      bad++;
    }
  return bad;
}

/* Worst over rows of max_i |a_i - b_i| / max_i |b_i| (b is the reference). */
static double rows_rel_err_bf16(const ep_bf16 *a, const ep_bf16 *b, int64_t rows, int64_t cols)
{
  double worst = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    double err = 0.0, scale = 0.0;
    for (int64_t i = 0; i < cols; i++) {
      double x = ep_bf16_to_f32(a[r * cols + i]), y = ep_bf16_to_f32(b[r * cols + i]);
      err = (x == x) ? fmax(err, fabs(x - y)) : INFINITY; /* NaN: poison left behind */
      scale = fmax(scale, fabs(y));
    }
    worst = fmax(worst, scale > 0.0 ? err / scale : err);
  }
  return worst;
}

static double rows_rel_err_f32(const float *a, const float *b, int64_t rows, int64_t cols)
{
  double worst = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    double err = 0.0, scale = 0.0;
    for (int64_t i = 0; i < cols; i++) {
      err = (a[r * cols + i] == a[r * cols + i])
                ? fmax(err, fabs((double)a[r * cols + i] - b[r * cols + i]))
                : INFINITY;
      scale = fmax(scale, fabs((double)b[r * cols + i]));
    }
    worst = fmax(worst, scale > 0.0 ? err / scale : err);
  }
  return worst;
}

/* Worst elementwise |a - b| / |b|; an exact zero reference needs an exact zero. */
static double elem_rel_err_f32(const float *a, const float *b, int64_t n)
{
  double worst = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    double e = b[i] != 0.0f ? d / fabs((double)b[i]) : (d == 0.0 ? 0.0 : INFINITY);
    worst = (a[i] == a[i]) ? fmax(worst, e) : INFINITY;
  }
  return worst;
}

/* Distinct random experts for each token, some copies dropped (-1). */
static void random_routing(ep_rng *rng, int64_t n_tokens, int32_t top_k, int32_t n_experts,
                           double drop, int32_t *experts)
{
  for (int64_t t = 0; t < n_tokens; t++)
    for (int32_t j = 0; j < top_k; j++) {
      int32_t e;
      int fresh;
      do {
        e = (int32_t)(ep_rng_next_u64(rng) % (uint64_t)n_experts);
        fresh = 1;
        for (int32_t i = 0; i < j; i++)
          fresh &= experts[t * top_k + i] != e;
      } while (!fresh);
      experts[t * top_k + j] = e;
    }
  for (int64_t c = 0; c < n_tokens * top_k; c++)
    if (ep_rng_uniform(rng) < drop)
      experts[c] = -1;
}

/* ---- random fill -------------------------------------------------------- */

static ep_status test_fill(ep_moe_cuda *ctx)
{
  ep_status st = EP_OK;
  const int64_t n = 100003;
  float *d_f = NULL, *h_f = host_alloc(sizeof(float) * n), *r_f = host_alloc(sizeof(float) * n);
  ep_bf16 *d_b = NULL, *h_b = host_alloc(sizeof(ep_bf16) * n),
          *r_b = host_alloc(sizeof(ep_bf16) * n);
  if (!h_f || !r_f || !h_b || !r_b) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  EP_TRY(dev_alloc((void **)&d_f, sizeof(float) * n));
  EP_TRY(dev_alloc((void **)&d_b, sizeof(ep_bf16) * n));
  EP_TRY(ep_moe_cuda_fill_uniform_f32(ctx, d_f, n, 77, -3.0f, 5.0f));
  EP_TRY(ep_moe_cuda_fill_uniform_bf16(ctx, d_b, n, 78, -1.0f, 1.0f));
  EP_TRY(download(ctx, h_f, d_f, sizeof(float) * n));
  EP_TRY(download(ctx, h_b, d_b, sizeof(ep_bf16) * n));
  ep_moe_fill_uniform_f32(r_f, n, 77, -3.0f, 5.0f);
  ep_moe_fill_uniform_bf16(r_b, n, 78, -1.0f, 1.0f);
  CHECK_EQ_INT(count_diff_bytes(h_f, r_f, sizeof(float) * n, "fill f32"), 0);
  CHECK_EQ_INT(count_diff_bytes(h_b, r_b, sizeof(ep_bf16) * n, "fill bf16"), 0);
fail:
  cudaFree(d_f);
  cudaFree(d_b);
  free(h_f);
  free(r_f);
  free(h_b);
  free(r_b);
  return st;
}

/* ---- router ------------------------------------------------------------- */

static ep_status test_router_case(ep_moe_cuda *ctx, const ep_moe_router_cfg *cfg, int64_t T,
                                  int32_t H, ep_dtype dtype, int with_bias, uint64_t seed)
{
  ep_status st = EP_OK;
  const int32_t E = cfg->n_experts, K = cfg->top_k;
  const size_t esz = dtype == EP_DTYPE_BF16 ? sizeof(ep_bf16) : sizeof(float);
  void *h_x = host_alloc(esz * (size_t)(T * H)), *h_w = host_alloc(esz * (size_t)E * H);
  float *h_bias = host_alloc(sizeof(float) * (size_t)E);
  float *g_logits = host_alloc(sizeof(float) * (size_t)(T * E)),
        *r_logits = host_alloc(sizeof(float) * (size_t)(T * E));
  float *g_scores = host_alloc(sizeof(float) * (size_t)(T * E)),
        *r_scores = host_alloc(sizeof(float) * (size_t)(T * E));
  int32_t *g_ex = host_alloc(sizeof(int32_t) * (size_t)(T * K)),
          *r_ex = host_alloc(sizeof(int32_t) * (size_t)(T * K)),
          *g_ex2 = host_alloc(sizeof(int32_t) * (size_t)(T * K)),
          *c_ex = host_alloc(sizeof(int32_t) * (size_t)(T * K));
  float *g_w = host_alloc(sizeof(float) * (size_t)(T * K)),
        *r_w = host_alloc(sizeof(float) * (size_t)(T * K));
  void *d_x = NULL, *d_w = NULL;
  float *d_bias = NULL, *d_logits = NULL, *d_scores = NULL, *d_weights = NULL;
  int32_t *d_ex = NULL;
  if (!h_x || !h_w || !h_bias || !g_logits || !r_logits || !g_scores || !r_scores || !g_ex ||
      !r_ex || !g_ex2 || !c_ex || !g_w || !r_w) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  /* Logit spread of a few units, like a trained gate. */
  const float wscale = 3.0f / sqrtf((float)H);
  if (dtype == EP_DTYPE_BF16) {
    ep_moe_fill_uniform_bf16(h_x, T * H, seed, -1.0f, 1.0f);
    ep_moe_fill_uniform_bf16(h_w, (int64_t)E * H, seed + 1, -wscale, wscale);
  } else {
    ep_moe_fill_uniform_f32(h_x, T * H, seed, -1.0f, 1.0f);
    ep_moe_fill_uniform_f32(h_w, (int64_t)E * H, seed + 1, -wscale, wscale);
  }
  ep_moe_fill_uniform_f32(h_bias, E, seed + 2, -0.05f, 0.05f);
  EP_TRY(dev_alloc(&d_x, esz * (size_t)(T * H)));
  EP_TRY(dev_alloc(&d_w, esz * (size_t)E * H));
  EP_TRY(dev_alloc((void **)&d_bias, sizeof(float) * (size_t)E));
  EP_TRY(dev_alloc((void **)&d_logits, sizeof(float) * (size_t)(T * E)));
  EP_TRY(dev_alloc((void **)&d_scores, sizeof(float) * (size_t)(T * E)));
  EP_TRY(dev_alloc((void **)&d_weights, sizeof(float) * (size_t)(T * K)));
  EP_TRY(dev_alloc((void **)&d_ex, sizeof(int32_t) * (size_t)(T * K)));
  EP_TRY(upload(ctx, d_x, h_x, esz * (size_t)(T * H)));
  EP_TRY(upload(ctx, d_w, h_w, esz * (size_t)E * H));
  EP_TRY(upload(ctx, d_bias, h_bias, sizeof(float) * (size_t)E));
  const float *bias = with_bias ? h_bias : NULL;
  EP_TRY(ep_moe_gate_logits_ref(T, H, E, dtype, h_x, h_w, r_logits));

  for (int pass = 0; pass < 2; pass++) {
    EP_TRY(poison(ctx, d_logits, sizeof(float) * (size_t)(T * E), poisons[pass]));
    EP_TRY(poison(ctx, d_scores, sizeof(float) * (size_t)(T * E), poisons[pass]));
    EP_TRY(poison(ctx, d_ex, sizeof(int32_t) * (size_t)(T * K), poisons[pass]));
    EP_TRY(poison(ctx, d_weights, sizeof(float) * (size_t)(T * K), poisons[pass]));
    EP_TRY(ep_moe_cuda_router(ctx, cfg, T, H, dtype, d_x, d_w, with_bias ? d_bias : NULL, d_logits,
                              d_scores, d_ex, d_weights));
    EP_TRY(download(ctx, g_logits, d_logits, sizeof(float) * (size_t)(T * E)));
    EP_TRY(download(ctx, g_scores, d_scores, sizeof(float) * (size_t)(T * E)));
    EP_TRY(download(ctx, g_ex, d_ex, sizeof(int32_t) * (size_t)(T * K)));
    EP_TRY(download(ctx, g_w, d_weights, sizeof(float) * (size_t)(T * K)));
    /* cuBLAS fp32 accumulation (no TF32) vs double: 1e-4 of each row's largest logit. */
    double logit_err = rows_rel_err_f32(g_logits, r_logits, T, E);
    CHECK(logit_err <= 1e-4);
    /* Scores from the GPU's own logits: expf and summation order differ by ulps. */
    EP_TRY(ep_moe_router_scores_ref(cfg->score_fn, T, E, g_logits, r_scores));
    double score_err = elem_rel_err_f32(g_scores, r_scores, T * E);
    CHECK(score_err <= 1e-5);
    /* Selection from the GPU's own scores: exact ids; weights bit-exact by design,
     * checked to 1e-6. */
    EP_TRY(ep_moe_router_topk_ref(cfg, T, g_scores, bias, r_ex, r_w));
    CHECK_EQ_INT(count_diff_i32(g_ex, r_ex, T * K, "router experts"), 0);
    CHECK(elem_rel_err_f32(g_w, r_w, T * K) <= 1e-6);
    if (pass == 0)
      printf("router E=%d k=%d groups %d/%d %s %s%s: logits err %.1e, scores err %.1e\n", (int)E,
             (int)K, (int)cfg->topk_groups, (int)cfg->n_groups,
             cfg->score_fn == EP_MOE_SCORE_SIGMOID ? "sigmoid" : "softmax",
             dtype == EP_DTYPE_BF16 ? "bf16" : "f32", with_bias ? " bias" : "", logit_err,
             score_err);
  }
  /* Workspace path (no logits or scores out) selects the same experts. */
  EP_TRY(poison(ctx, d_ex, sizeof(int32_t) * (size_t)(T * K), 0xff));
  EP_TRY(ep_moe_cuda_router(ctx, cfg, T, H, dtype, d_x, d_w, with_bias ? d_bias : NULL, NULL, NULL,
                            d_ex, NULL));
  EP_TRY(download(ctx, g_ex2, d_ex, sizeof(int32_t) * (size_t)(T * K)));
  CHECK_EQ_INT(count_diff_i32(g_ex2, g_ex, T * K, "router experts (workspace path)"), 0);
  /* Against the all-CPU router only near-ties can differ: reported, not checked. */
  EP_TRY(ep_moe_router_ref(cfg, T, H, dtype, h_x, h_w, bias, NULL, NULL, c_ex, NULL));
  {
    int64_t same = 0;
    for (int64_t i = 0; i < T * K; i++)
      same += c_ex[i] == g_ex[i];
    printf("  ids equal to the all-CPU router: %lld of %lld\n", (long long)same,
           (long long)(T * K));
  }
fail:
  free(h_x);
  free(h_w);
  free(h_bias);
  free(g_logits);
  free(r_logits);
  free(g_scores);
  free(r_scores);
  free(g_ex);
  free(r_ex);
  free(g_ex2);
  free(c_ex);
  free(g_w);
  free(r_w);
  cudaFree(d_x);
  cudaFree(d_w);
  cudaFree(d_bias);
  cudaFree(d_logits);
  cudaFree(d_scores);
  cudaFree(d_weights);
  cudaFree(d_ex);
  return st;
}

static ep_status test_router(ep_moe_cuda *ctx)
{
  ep_status st = EP_OK;
  const ep_moe_router_cfg dsv3 = EP_MOE_ROUTER_CFG_INIT;
  const ep_moe_router_cfg plain = {64, 6, 1, 1, EP_MOE_SCORE_SOFTMAX, 0, 1.0f};
  const ep_moe_router_cfg g10 = {60, 4, 6, 2, EP_MOE_SCORE_SOFTMAX, 1, 1.0f};
  const ep_moe_router_cfg single = {16, 8, 16, 8, EP_MOE_SCORE_SIGMOID, 1, 1.0f};
  const ep_moe_router_cfg wide = {1024, 8, 32, 4, EP_MOE_SCORE_SIGMOID, 1, 2.5f};
  /* EP_MOE_MAX_EXPERTS and EP_MOE_MAX_GROUPS: one warp per block, 33 KB of shared memory. */
  const ep_moe_router_cfg huge = {4096, 8, 64, 8, EP_MOE_SCORE_SIGMOID, 1, 2.5f};
  /* top_k = EP_MOE_MAX_TOP_K; softmax over 128 experts stays within the 1e-5 score bound. */
  const ep_moe_router_cfg top64 = {128, 64, 4, 4, EP_MOE_SCORE_SOFTMAX, 1, 1.0f};
  EP_TRY(test_router_case(ctx, &dsv3, 333, 512, EP_DTYPE_BF16, 1, 100));
  EP_TRY(test_router_case(ctx, &dsv3, 97, 256, EP_DTYPE_F32, 0, 110));
  EP_TRY(test_router_case(ctx, &plain, 257, 96, EP_DTYPE_F32, 0, 120));
  EP_TRY(test_router_case(ctx, &g10, 100, 64, EP_DTYPE_F32, 1, 130));
  EP_TRY(test_router_case(ctx, &single, 65, 32, EP_DTYPE_BF16, 1, 140));
  EP_TRY(test_router_case(ctx, &wide, 70, 128, EP_DTYPE_BF16, 1, 150));
  EP_TRY(test_router_case(ctx, &huge, 9, 64, EP_DTYPE_BF16, 1, 160));
  EP_TRY(test_router_case(ctx, &top64, 33, 64, EP_DTYPE_F32, 0, 170));
  EP_TRY(test_router_case(ctx, &dsv3, 1, 64, EP_DTYPE_BF16, 1, 180)); /* 3 idle warps */
fail:
  return st;
}

/* ---- dispatch layout ---------------------------------------------------- */

static ep_status test_layout_case(ep_moe_cuda *ctx, int64_t n, int32_t E, int skew, uint64_t seed)
{
  ep_status st = EP_OK;
  ep_rng rng;
  ep_rng_seed(&rng, seed, 0);
  int32_t *h_ex = host_alloc(sizeof(int32_t) * (size_t)n),
          *clean = host_alloc(sizeof(int32_t) * (size_t)n);
  int32_t *g_counts = host_alloc(sizeof(int32_t) * (size_t)E),
          *r_counts = host_alloc(sizeof(int32_t) * (size_t)E);
  int32_t *g_off = host_alloc(sizeof(int32_t) * (size_t)(E + 1)),
          *r_off = host_alloc(sizeof(int32_t) * (size_t)(E + 1));
  int32_t *g_slot = host_alloc(sizeof(int32_t) * (size_t)n),
          *r_slot = host_alloc(sizeof(int32_t) * (size_t)n);
  int32_t *g_sc = host_alloc(sizeof(int32_t) * (size_t)n),
          *r_sc = host_alloc(sizeof(int32_t) * (size_t)n);
  int32_t *d_ex = NULL, *d_counts = NULL, *d_off = NULL, *d_slot = NULL, *d_sc = NULL;
  if (!h_ex || !clean || !g_counts || !r_counts || !g_off || !r_off || !g_slot || !r_slot ||
      !g_sc || !r_sc) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  for (int64_t c = 0; c < n; c++) {
    uint64_t u = ep_rng_next_u64(&rng);
    int32_t e = skew ? (int32_t)((u >> 8) % 3) : (int32_t)((u >> 8) % (uint64_t)E);
    if (u % 13 == 0)
      e = -1; /* dropped */
    if (u % 101 == 0)
      e = (u & 256) ? E + 5 : -7; /* invalid: the GPU must treat it as dropped */
    h_ex[c] = e;
    clean[c] = (e < -1 || e >= E) ? -1 : e;
  }
  EP_TRY(ep_moe_layout_ref(n, E, clean, r_counts, r_off, r_slot, r_sc));
  EP_TRY(dev_alloc((void **)&d_ex, sizeof(int32_t) * (size_t)n));
  EP_TRY(dev_alloc((void **)&d_counts, sizeof(int32_t) * (size_t)E));
  EP_TRY(dev_alloc((void **)&d_off, sizeof(int32_t) * (size_t)(E + 1)));
  EP_TRY(dev_alloc((void **)&d_slot, sizeof(int32_t) * (size_t)n));
  EP_TRY(dev_alloc((void **)&d_sc, sizeof(int32_t) * (size_t)n));
  EP_TRY(upload(ctx, d_ex, h_ex, sizeof(int32_t) * (size_t)n));
  for (int pass = 0; pass < 2; pass++) {
    EP_TRY(poison(ctx, d_counts, sizeof(int32_t) * (size_t)E, poisons[pass]));
    EP_TRY(poison(ctx, d_off, sizeof(int32_t) * (size_t)(E + 1), poisons[pass]));
    EP_TRY(poison(ctx, d_slot, sizeof(int32_t) * (size_t)n, poisons[pass]));
    EP_TRY(poison(ctx, d_sc, sizeof(int32_t) * (size_t)n, poisons[pass]));
    EP_TRY(ep_moe_cuda_layout(ctx, n, E, d_ex, d_counts, d_off, d_slot, d_sc));
    EP_TRY(download(ctx, g_counts, d_counts, sizeof(int32_t) * (size_t)E));
    EP_TRY(download(ctx, g_off, d_off, sizeof(int32_t) * (size_t)(E + 1)));
    EP_TRY(download(ctx, g_slot, d_slot, sizeof(int32_t) * (size_t)n));
    EP_TRY(download(ctx, g_sc, d_sc, sizeof(int32_t) * (size_t)n));
    CHECK_EQ_INT(count_diff_i32(g_counts, r_counts, E, "layout counts"), 0);
    CHECK_EQ_INT(count_diff_i32(g_off, r_off, E + 1, "layout offsets"), 0);
    CHECK_EQ_INT(count_diff_i32(g_slot, r_slot, n, "layout slot"), 0);
    CHECK_EQ_INT(count_diff_i32(g_sc, r_sc, r_off[E], "layout slot_copy"), 0);
  }
fail:
  free(h_ex);
  free(clean);
  free(g_counts);
  free(r_counts);
  free(g_off);
  free(r_off);
  free(g_slot);
  free(r_slot);
  free(g_sc);
  free(r_sc);
  cudaFree(d_ex);
  cudaFree(d_counts);
  cudaFree(d_off);
  cudaFree(d_slot);
  cudaFree(d_sc);
  return st;
}

static ep_status test_layout(ep_moe_cuda *ctx)
{
  ep_status st = EP_OK;
  EP_TRY(test_layout_case(ctx, 0, 8, 0, 1));
  EP_TRY(test_layout_case(ctx, 1, 1, 0, 2));
  EP_TRY(test_layout_case(ctx, 1000, 8, 0, 3));
  EP_TRY(test_layout_case(ctx, 1025, 5, 1, 8)); /* one full block and one copy */
  EP_TRY(test_layout_case(ctx, 5000, 37, 0, 4));
  EP_TRY(test_layout_case(ctx, 5000, 37, 1, 5)); /* three hot experts: long runs */
  EP_TRY(test_layout_case(ctx, 32768, 256, 0, 6));
  EP_TRY(test_layout_case(ctx, 70001, 4096, 0, 7));
fail:
  return st;
}

/* ---- permute and combine ------------------------------------------------ */

/* drop: fraction of copies dropped (1.0: none kept). misalign: the four bf16
 * buffers start 2 bytes past a 16-byte boundary, so permute and combine must
 * take their scalar paths and the fp8 permute must refuse (it has no unaligned
 * path). The last token always has all its copies dropped. */
static ep_status test_permute_combine_case(ep_moe_cuda *ctx, int64_t T, int32_t K, int32_t H,
                                           int32_t E, double drop, int misalign, uint64_t seed)
{
  ep_status st = EP_OK;
  ep_rng rng;
  ep_rng_seed(&rng, seed, 0);
  const int64_t C = T * K;
  const int fp8 = H % EP_FP8_BLOCK == 0;
  int32_t *ex = host_alloc(sizeof(int32_t) * (size_t)C),
          *slot = host_alloc(sizeof(int32_t) * (size_t)C);
  int32_t *counts = host_alloc(sizeof(int32_t) * (size_t)E),
          *off = host_alloc(sizeof(int32_t) * (size_t)(E + 1));
  ep_bf16 *x = host_alloc(sizeof(ep_bf16) * (size_t)(T * H));
  float *w = host_alloc(sizeof(float) * (size_t)C);
  ep_bf16 *g_perm = NULL, *r_perm = NULL, *y = NULL, *g_out = NULL, *r_out = NULL;
  ep_fp8 *g_q = NULL, *r_q = NULL;
  float *g_sc = NULL, *r_sc = NULL;
  ep_bf16 *d_x = NULL, *d_perm = NULL, *d_y = NULL, *d_out = NULL;
  ep_fp8 *d_q = NULL;
  float *d_sc = NULL, *d_w = NULL;
  int32_t *d_slot = NULL;
  if (!ex || !slot || !counts || !off || !x || !w) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  random_routing(&rng, T, K, E, drop, ex);
  for (int32_t j = 0; j < K; j++)
    ex[(T - 1) * K + j] = -1; /* a token with no kept copy: combine gives zeros */
  EP_TRY(ep_moe_layout_ref(C, E, ex, counts, off, slot, NULL));
  /* Three spare rows that no copy maps to: they must keep their poison. */
  const int64_t S = off[E] + 3;
  const int64_t nsb = H / EP_FP8_BLOCK;
  g_perm = host_alloc(sizeof(ep_bf16) * (size_t)(S * H));
  r_perm = host_alloc(sizeof(ep_bf16) * (size_t)(S * H));
  y = host_alloc(sizeof(ep_bf16) * (size_t)(S * H));
  g_out = host_alloc(sizeof(ep_bf16) * (size_t)(T * H));
  r_out = host_alloc(sizeof(ep_bf16) * (size_t)(T * H));
  g_q = host_alloc((size_t)(S * H));
  r_q = host_alloc((size_t)(S * H));
  g_sc = host_alloc(sizeof(float) * (size_t)(S * nsb));
  r_sc = host_alloc(sizeof(float) * (size_t)(S * nsb));
  if (!g_perm || !r_perm || !y || !g_out || !r_out || !g_q || !r_q || !g_sc || !r_sc) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  ep_moe_fill_uniform_bf16(x, T * H, seed + 1, -4.0f, 4.0f);
  for (int64_t i = 0; i < H && i < EP_FP8_BLOCK; i++)
    x[i] = 0; /* token 0's first block is all zero (fp8 amax floor) */
  ep_moe_fill_uniform_bf16(y, S * H, seed + 2, -2.0f, 2.0f);
  ep_moe_fill_uniform_f32(w, C, seed + 3, 0.0f, 1.0f);
  /* One spare element in front of each bf16 buffer for the misaligned runs. */
  EP_TRY(dev_alloc((void **)&d_x, sizeof(ep_bf16) * (size_t)(T * H + 1)));
  EP_TRY(dev_alloc((void **)&d_perm, sizeof(ep_bf16) * (size_t)(S * H + 1)));
  EP_TRY(dev_alloc((void **)&d_y, sizeof(ep_bf16) * (size_t)(S * H + 1)));
  EP_TRY(dev_alloc((void **)&d_out, sizeof(ep_bf16) * (size_t)(T * H + 1)));
  EP_TRY(dev_alloc((void **)&d_q, (size_t)(S * H)));
  EP_TRY(dev_alloc((void **)&d_sc, sizeof(float) * (size_t)(S * nsb)));
  EP_TRY(dev_alloc((void **)&d_w, sizeof(float) * (size_t)C));
  EP_TRY(dev_alloc((void **)&d_slot, sizeof(int32_t) * (size_t)C));
  const int64_t mis = misalign ? 1 : 0;
  ep_bf16 *px = d_x + mis, *pperm = d_perm + mis, *py = d_y + mis, *pout = d_out + mis;
  EP_TRY(upload(ctx, px, x, sizeof(ep_bf16) * (size_t)(T * H)));
  EP_TRY(upload(ctx, py, y, sizeof(ep_bf16) * (size_t)(S * H)));
  EP_TRY(upload(ctx, d_w, w, sizeof(float) * (size_t)C));
  EP_TRY(upload(ctx, d_slot, slot, sizeof(int32_t) * (size_t)C));
  for (int pass = 0; pass < 2; pass++) {
    const unsigned char p = poisons[pass];
    /* permute (bf16): the whole buffer, spare rows included, equals the reference
     * applied to an identically poisoned buffer. */
    memset(r_perm, p, sizeof(ep_bf16) * (size_t)(S * H));
    EP_TRY(ep_moe_permute_ref(T, K, H, S, x, slot, r_perm));
    EP_TRY(poison(ctx, pperm, sizeof(ep_bf16) * (size_t)(S * H), p));
    EP_TRY(ep_moe_cuda_permute(ctx, T, K, H, S, px, d_slot, pperm));
    EP_TRY(download(ctx, g_perm, pperm, sizeof(ep_bf16) * (size_t)(S * H)));
    CHECK_EQ_INT(count_diff_bytes(g_perm, r_perm, sizeof(ep_bf16) * (size_t)(S * H), "permute"), 0);
    if (fp8 && misalign) {
      CHECK_EQ_INT(ep_moe_cuda_permute_fp8(ctx, T, K, H, S, px, d_slot, d_q, d_sc),
                   EP_ERR_UNSUPPORTED);
    } else if (fp8) {
      memset(r_q, p, (size_t)(S * H));
      memset(r_sc, p, sizeof(float) * (size_t)(S * nsb));
      EP_TRY(ep_moe_permute_fp8_ref(T, K, H, S, x, slot, r_q, r_sc));
      EP_TRY(poison(ctx, d_q, (size_t)(S * H), p));
      EP_TRY(poison(ctx, d_sc, sizeof(float) * (size_t)(S * nsb), p));
      EP_TRY(ep_moe_cuda_permute_fp8(ctx, T, K, H, S, px, d_slot, d_q, d_sc));
      EP_TRY(download(ctx, g_q, d_q, (size_t)(S * H)));
      EP_TRY(download(ctx, g_sc, d_sc, sizeof(float) * (size_t)(S * nsb)));
      CHECK_EQ_INT(count_diff_bytes(g_q, r_q, (size_t)(S * H), "permute fp8 codes"), 0);
      /* Scales are bit-exact by design (IEEE amax / 448); checked to 1e-6. */
      CHECK(elem_rel_err_f32(g_sc, r_sc, off[E] * nsb) <= 1e-6);
      CHECK_EQ_INT(count_diff_bytes(g_sc + off[E] * nsb, r_sc + off[E] * nsb,
                                    sizeof(float) * (size_t)(3 * nsb), "fp8 spare scales"),
                   0);
    }
    /* combine: bf16 out, relative to each token row's largest value. */
    EP_TRY(ep_moe_combine_ref(T, K, H, S, y, slot, w, r_out));
    EP_TRY(poison(ctx, pout, sizeof(ep_bf16) * (size_t)(T * H), p));
    EP_TRY(ep_moe_cuda_combine(ctx, T, K, H, S, py, d_slot, d_w, pout));
    EP_TRY(download(ctx, g_out, pout, sizeof(ep_bf16) * (size_t)(T * H)));
    double err = rows_rel_err_bf16(g_out, r_out, T, H);
    CHECK(err <= 1e-2);
    if (pass == 0) {
      int64_t same = 0;
      for (int64_t i = 0; i < T * H; i++)
        same += g_out[i] == r_out[i];
      printf("permute/combine T=%lld k=%d H=%d kept %d%s: combine err %.1e, %lld of %lld "
             "bit-identical\n",
             (long long)T, (int)K, (int)H, (int)off[E], misalign ? " misaligned" : "", err,
             (long long)same, (long long)(T * H));
    }
  }
fail:
  free(ex);
  free(slot);
  free(counts);
  free(off);
  free(x);
  free(w);
  free(g_perm);
  free(r_perm);
  free(y);
  free(g_out);
  free(r_out);
  free(g_q);
  free(r_q);
  free(g_sc);
  free(r_sc);
  cudaFree(d_x);
  cudaFree(d_perm);
  cudaFree(d_y);
  cudaFree(d_out);
  cudaFree(d_q);
  cudaFree(d_sc);
  cudaFree(d_w);
  cudaFree(d_slot);
  return st;
}

static ep_status test_permute_combine(ep_moe_cuda *ctx)
{
  ep_status st = EP_OK;
  /* 16-byte paths, fp8 */
  EP_TRY(test_permute_combine_case(ctx, 300, 8, 512, 32, 0.05, 0, 1));
  /* DeepSeek-V3 hidden */
  EP_TRY(test_permute_combine_case(ctx, 64, 8, 7168, 256, 0.05, 0, 2));
  /* scalar paths: odd hidden */
  EP_TRY(test_permute_combine_case(ctx, 77, 3, 100, 7, 0.05, 0, 3));
  /* top-1, 9 fp8 blocks */
  EP_TRY(test_permute_combine_case(ctx, 50, 1, 1152, 4, 0.05, 0, 4));
  /* scalar paths: hidden % 8 == 0 but rows not 16-byte aligned; fp8 refuses */
  EP_TRY(test_permute_combine_case(ctx, 300, 8, 512, 32, 0.05, 1, 5));
  /* 1024-thread blocks (combine_vec_kernel's register budget); fp8 rows of 2 passes */
  EP_TRY(test_permute_combine_case(ctx, 20, 8, 16384, 16, 0.05, 0, 6));
  /* top_k = EP_MOE_MAX_TOP_K = the smallest block; one 16-byte vector per row */
  EP_TRY(test_permute_combine_case(ctx, 10, 64, 8, 64, 0.05, 0, 7));
  /* every copy dropped: only the spare rows exist, combine writes zeros */
  EP_TRY(test_permute_combine_case(ctx, 40, 4, 256, 8, 1.0, 0, 8));
fail:
  return st;
}

/* fp8 rows with scales -> bf16 rows at permuted positions, bit for bit. */
static ep_status test_fp8_rows_case(ep_moe_cuda *ctx, int64_t n_rows, int32_t hidden, uint64_t seed)
{
  ep_status st = EP_OK;
  const size_t nq = (size_t)n_rows * (size_t)hidden,
               nb = (size_t)n_rows * (size_t)(hidden / EP_FP8_BLOCK);
  ep_fp8 *q = host_alloc(nq);
  float *sc = host_alloc(sizeof(float) * nb), *u = host_alloc(sizeof(float) * nq);
  int32_t *slot = host_alloc(sizeof(int32_t) * (size_t)n_rows);
  ep_bf16 *want = host_alloc(sizeof(ep_bf16) * nq), *got = host_alloc(sizeof(ep_bf16) * nq);
  ep_fp8 *d_q = NULL;
  float *d_sc = NULL;
  int32_t *d_slot = NULL;
  ep_bf16 *d_out = NULL;
  if (!q || !sc || !u || !slot || !want || !got) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  ep_moe_fill_uniform_f32(u, (int64_t)nq, seed, -448.0f, 448.0f);
  for (size_t i = 0; i < nq; i++)
    q[i] = ep_f32_to_fp8(u[i]);
  ep_moe_fill_uniform_f32(sc, (int64_t)nb, seed + 1, 1e-4f, 1e-2f);
  for (int64_t i = 0; i < n_rows; i++)
    slot[i] = (int32_t)((i * 7 + 3) % n_rows); /* a permutation: 7 is coprime with the sizes */
  EP_TRY(dev_alloc((void **)&d_q, nq));
  EP_TRY(dev_alloc((void **)&d_sc, sizeof(float) * nb));
  EP_TRY(dev_alloc((void **)&d_slot, sizeof(int32_t) * (size_t)n_rows));
  EP_TRY(dev_alloc((void **)&d_out, sizeof(ep_bf16) * nq));
  EP_TRY(upload(ctx, d_q, q, nq));
  EP_TRY(upload(ctx, d_sc, sc, sizeof(float) * nb));
  EP_TRY(upload(ctx, d_slot, slot, sizeof(int32_t) * (size_t)n_rows));
  for (int pass = 0; pass < 2; pass++) {
    memset(want, poisons[pass], sizeof(ep_bf16) * nq);
    ep_moe_fp8_to_bf16_rows_ref(n_rows, hidden, q, sc, slot, want);
    EP_TRY(poison(ctx, d_out, sizeof(ep_bf16) * nq, poisons[pass]));
    EP_TRY(ep_moe_cuda_fp8_to_bf16_rows(ctx, n_rows, hidden, d_q, d_sc, d_slot, d_out));
    EP_TRY(download(ctx, got, d_out, sizeof(ep_bf16) * nq));
    CHECK_EQ_INT(count_diff_bytes(got, want, sizeof(ep_bf16) * nq, "fp8_to_bf16_rows"), 0);
  }
fail:
  free(q);
  free(sc);
  free(u);
  free(slot);
  free(want);
  free(got);
  cudaFree(d_q);
  cudaFree(d_sc);
  cudaFree(d_slot);
  cudaFree(d_out);
  return st;
}

/* The shared experts' sum and the layer output: acc = a (first), acc += a2,
 * out = a + acc, bit for bit. */
static ep_status test_sums_case(ep_moe_cuda *ctx, int64_t n, uint64_t seed)
{
  ep_status st = EP_OK;
  const size_t nz = (size_t)n;
  ep_bf16 *a = host_alloc(sizeof(ep_bf16) * nz), *a2 = host_alloc(sizeof(ep_bf16) * nz);
  float *acc = host_alloc(sizeof(float) * nz), *out = host_alloc(sizeof(float) * nz),
        *got = host_alloc(sizeof(float) * nz);
  ep_bf16 *d_a = NULL, *d_a2 = NULL;
  float *d_acc = NULL, *d_out = NULL;
  if (!a || !a2 || !acc || !out || !got) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  ep_moe_fill_uniform_bf16(a, n, seed, -3.0f, 3.0f);
  ep_moe_fill_uniform_bf16(a2, n, seed + 1, -3.0f, 3.0f);
  ep_moe_accumulate_bf16_ref(n, a, acc, 1);
  ep_moe_accumulate_bf16_ref(n, a2, acc, 0);
  ep_moe_add_bf16_f32_ref(n, a, acc, out);
  EP_TRY(dev_alloc((void **)&d_a, sizeof(ep_bf16) * nz));
  EP_TRY(dev_alloc((void **)&d_a2, sizeof(ep_bf16) * nz));
  EP_TRY(dev_alloc((void **)&d_acc, sizeof(float) * nz));
  EP_TRY(dev_alloc((void **)&d_out, sizeof(float) * nz));
  EP_TRY(upload(ctx, d_a, a, sizeof(ep_bf16) * nz));
  EP_TRY(upload(ctx, d_a2, a2, sizeof(ep_bf16) * nz));
  for (int pass = 0; pass < 2; pass++) {
    EP_TRY(poison(ctx, d_acc, sizeof(float) * nz, poisons[pass]));
    EP_TRY(poison(ctx, d_out, sizeof(float) * nz, poisons[pass]));
    EP_TRY(ep_moe_cuda_accumulate_bf16(ctx, n, d_a, d_acc, 1));
    EP_TRY(ep_moe_cuda_accumulate_bf16(ctx, n, d_a2, d_acc, 0));
    EP_TRY(ep_moe_cuda_add_bf16_f32(ctx, n, d_a, d_acc, d_out));
    EP_TRY(download(ctx, got, d_acc, sizeof(float) * nz));
    CHECK_EQ_INT(count_diff_bytes(got, acc, sizeof(float) * nz, "accumulate_bf16"), 0);
    EP_TRY(download(ctx, got, d_out, sizeof(float) * nz));
    CHECK_EQ_INT(count_diff_bytes(got, out, sizeof(float) * nz, "add_bf16_f32"), 0);
  }
fail:
  free(a);
  free(a2);
  free(acc);
  free(out);
  free(got);
  cudaFree(d_a);
  cudaFree(d_a2);
  cudaFree(d_acc);
  cudaFree(d_out);
  return st;
}

static ep_status test_rows(ep_moe_cuda *ctx)
{
  ep_status st = EP_OK;
  EP_TRY(test_fp8_rows_case(ctx, 1, 128, 1));
  EP_TRY(test_fp8_rows_case(ctx, 37, 7168, 2));
  EP_TRY(test_fp8_rows_case(ctx, 257, 384, 3));
  EP_TRY(test_sums_case(ctx, 1, 4));
  EP_TRY(test_sums_case(ctx, 100003, 5));
  /* Bad arguments are refused, empty work is fine. */
  CHECK_EQ_INT(ep_moe_cuda_fp8_to_bf16_rows(ctx, 4, 100, NULL, NULL, NULL, NULL), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_moe_cuda_fp8_to_bf16_rows(ctx, 0, 128, NULL, NULL, NULL, NULL), EP_OK);
  CHECK_EQ_INT(ep_moe_cuda_add_bf16_f32(ctx, -1, NULL, NULL, NULL), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_moe_cuda_accumulate_bf16(ctx, -1, NULL, NULL, 1), EP_ERR_INVALID);
fail:
  return st;
}

/* ---- SwiGLU experts ----------------------------------------------------- */

/* misalign: both buffers start 2 bytes past a 16-byte boundary (scalar path). */
static ep_status test_swiglu(ep_moe_cuda *ctx, int64_t rows, int32_t I, int misalign, uint64_t seed)
{
  ep_status st = EP_OK;
  ep_bf16 *h13 = host_alloc(sizeof(ep_bf16) * (size_t)(rows * 2 * I));
  ep_bf16 *g = host_alloc(sizeof(ep_bf16) * (size_t)(rows * I)),
          *r = host_alloc(sizeof(ep_bf16) * (size_t)(rows * I));
  float *gf = host_alloc(sizeof(float) * (size_t)(rows * I)),
        *rf = host_alloc(sizeof(float) * (size_t)(rows * I));
  ep_bf16 *d_h13 = NULL, *d_h = NULL;
  if (!h13 || !g || !r || !gf || !rf) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  ep_moe_fill_uniform_bf16(h13, rows * 2 * I, seed, -8.0f, 8.0f);
  EP_TRY(ep_moe_swiglu_ref(rows, I, h13, r));
  EP_TRY(dev_alloc((void **)&d_h13, sizeof(ep_bf16) * (size_t)(rows * 2 * I + 1)));
  EP_TRY(dev_alloc((void **)&d_h, sizeof(ep_bf16) * (size_t)(rows * I + 1)));
  ep_bf16 *ph13 = d_h13 + (misalign ? 1 : 0), *ph = d_h + (misalign ? 1 : 0);
  EP_TRY(upload(ctx, ph13, h13, sizeof(ep_bf16) * (size_t)(rows * 2 * I)));
  for (int pass = 0; pass < 2; pass++) {
    EP_TRY(poison(ctx, ph, sizeof(ep_bf16) * (size_t)(rows * I), poisons[pass]));
    EP_TRY(ep_moe_cuda_swiglu(ctx, rows, I, ph13, ph));
    EP_TRY(download(ctx, g, ph, sizeof(ep_bf16) * (size_t)(rows * I)));
    for (int64_t i = 0; i < rows * I; i++) {
      gf[i] = ep_bf16_to_f32(g[i]);
      rf[i] = ep_bf16_to_f32(r[i]);
    }
    /* Elementwise: expf differs by ulps, so at most one bf16 rounding step. */
    CHECK(elem_rel_err_f32(gf, rf, rows * I) <= 1e-2);
  }
fail:
  free(h13);
  free(g);
  free(r);
  free(gf);
  free(rf);
  cudaFree(d_h13);
  cudaFree(d_h);
  return st;
}

static ep_status test_gemm_case(ep_moe_cuda *ctx, ep_moe_gemm_impl impl, int32_t E,
                                const int32_t *counts, int32_t H, int32_t I, uint64_t seed)
{
  ep_status st = EP_OK;
  int64_t rows = 0;
  for (int32_t e = 0; e < E; e++)
    rows += counts[e];
  const int64_t n_w13 = (int64_t)E * 2 * I * H, n_w2 = (int64_t)E * H * I;
  ep_bf16 *x = host_alloc(sizeof(ep_bf16) * (size_t)(rows * H));
  ep_bf16 *w13 = host_alloc(sizeof(ep_bf16) * (size_t)n_w13),
          *w2 = host_alloc(sizeof(ep_bf16) * (size_t)n_w2);
  ep_bf16 *g_c = host_alloc(sizeof(ep_bf16) * (size_t)(rows * 2 * I)),
          *r_c = host_alloc(sizeof(ep_bf16) * (size_t)(rows * 2 * I));
  ep_bf16 *g_y = host_alloc(sizeof(ep_bf16) * (size_t)(rows * H)),
          *r_y = host_alloc(sizeof(ep_bf16) * (size_t)(rows * H));
  ep_bf16 *d_x = NULL, *d_w13 = NULL, *d_w2 = NULL, *d_c = NULL, *d_y = NULL;
  if (!x || !w13 || !w2 || !g_c || !r_c || !g_y || !r_y) {
    st = EP_ERR_NOMEM;
    goto fail;
  }
  ep_moe_fill_uniform_bf16(x, rows * H, seed, -1.0f, 1.0f);
  ep_moe_fill_uniform_bf16(w13, n_w13, seed + 1, -2.0f / sqrtf((float)H), 2.0f / sqrtf((float)H));
  ep_moe_fill_uniform_bf16(w2, n_w2, seed + 2, -2.0f / sqrtf((float)I), 2.0f / sqrtf((float)I));
  EP_TRY(ep_moe_grouped_gemm_ref(E, counts, 2 * I, H, x, w13, r_c));
  EP_TRY(ep_moe_expert_ffn_ref(E, counts, H, I, x, w13, w2, r_y));
  EP_TRY(dev_alloc((void **)&d_x, sizeof(ep_bf16) * (size_t)(rows * H)));
  EP_TRY(dev_alloc((void **)&d_w13, sizeof(ep_bf16) * (size_t)n_w13));
  EP_TRY(dev_alloc((void **)&d_w2, sizeof(ep_bf16) * (size_t)n_w2));
  EP_TRY(dev_alloc((void **)&d_c, sizeof(ep_bf16) * (size_t)(rows * 2 * I)));
  EP_TRY(dev_alloc((void **)&d_y, sizeof(ep_bf16) * (size_t)(rows * H)));
  EP_TRY(upload(ctx, d_x, x, sizeof(ep_bf16) * (size_t)(rows * H)));
  EP_TRY(upload(ctx, d_w13, w13, sizeof(ep_bf16) * (size_t)n_w13));
  EP_TRY(upload(ctx, d_w2, w2, sizeof(ep_bf16) * (size_t)n_w2));
  for (int pass = 0; pass < 2; pass++) {
    EP_TRY(poison(ctx, d_c, sizeof(ep_bf16) * (size_t)(rows * 2 * I), poisons[pass]));
    EP_TRY(poison(ctx, d_y, sizeof(ep_bf16) * (size_t)(rows * H), poisons[pass]));
    st = ep_moe_cuda_grouped_gemm(ctx, impl, E, counts, 2 * I, H, d_x, d_w13, d_c);
    if (st == EP_ERR_UNSUPPORTED && impl == EP_MOE_GEMM_GROUPED) {
      /* This cuBLAS refuses bf16 grouped GEMMs: AUTO falls back, nothing to check. */
      printf("expert ffn cublas_grouped: not supported by this cuBLAS, case skipped\n");
      st = EP_OK;
      goto fail;
    }
    if (st != EP_OK)
      goto fail;
    EP_TRY(ep_moe_cuda_expert_ffn(ctx, impl, E, counts, H, I, d_x, d_w13, d_w2, d_y));
    EP_TRY(download(ctx, g_c, d_c, sizeof(ep_bf16) * (size_t)(rows * 2 * I)));
    EP_TRY(download(ctx, g_y, d_y, sizeof(ep_bf16) * (size_t)(rows * H)));
    /* fp32 vs double accumulation, both rounded to bf16; relative to each row's max. */
    double gemm_err = rows_rel_err_bf16(g_c, r_c, rows, 2 * I);
    double ffn_err = rows_rel_err_bf16(g_y, r_y, rows, H);
    CHECK(gemm_err <= 1e-2);
    CHECK(ffn_err <= 1e-2);
    if (pass == 0)
      printf("expert ffn %-14s E=%d rows=%lld H=%d I=%d: gemm err %.1e, ffn err %.1e\n",
             ep_moe_gemm_impl_name(impl), (int)E, (long long)rows, (int)H, (int)I, gemm_err,
             ffn_err);
  }
fail:
  free(x);
  free(w13);
  free(w2);
  free(g_c);
  free(r_c);
  free(g_y);
  free(r_y);
  cudaFree(d_x);
  cudaFree(d_w13);
  cudaFree(d_w2);
  cudaFree(d_c);
  cudaFree(d_y);
  return st;
}

static ep_status test_experts(ep_moe_cuda *ctx)
{
  ep_status st = EP_OK;
  const int32_t uneven[6] = {17, 0, 64, 1, 40, 9};
  const int32_t even[4] = {33, 33, 33, 33};
  const int32_t edges[5] = {0, 3, 0, 130, 0}; /* empty first and last experts */
  const int32_t none[3] = {0, 0, 0};
  int32_t many[300]; /* 300 non-empty experts: two grouped calls (EP__GEMM_CHUNK 256) */
  for (int32_t e = 0; e < 300; e++)
    many[e] = 1 + e % 2;
  const ep_moe_gemm_impl impls[3] = {EP_MOE_GEMM_GROUPED, EP_MOE_GEMM_LOOP, EP_MOE_GEMM_AUTO};
  EP_TRY(test_swiglu(ctx, 77, 256, 0, 1));
  EP_TRY(test_swiglu(ctx, 31, 100, 0, 2));
  EP_TRY(test_swiglu(ctx, 9, 64, 1, 3)); /* inter % 8 == 0 but misaligned: scalar path */
  for (int i = 0; i < 3; i++) {
    EP_TRY(test_gemm_case(ctx, impls[i], 6, uneven, 256, 128, 10 + (uint64_t)i));
    EP_TRY(test_gemm_case(ctx, impls[i], 5, edges, 128, 64, 30 + (uint64_t)i));
    EP_TRY(test_gemm_case(ctx, impls[i], 3, none, 64, 32, 40 + (uint64_t)i));
  }
  EP_TRY(test_gemm_case(ctx, EP_MOE_GEMM_GROUPED, 300, many, 64, 32, 50));
  EP_TRY(test_gemm_case(ctx, EP_MOE_GEMM_BATCHED, 4, even, 256, 128, 20));
  EP_TRY(test_gemm_case(ctx, EP_MOE_GEMM_AUTO, 4, even, 192, 64, 21));
  EP_TRY(test_gemm_case(ctx, EP_MOE_GEMM_AUTO, 2, uneven + 2, 7168, 256, 22)); /* DSv3 hidden */
  /* The batched GEMM refuses unequal rows (before touching any pointer). */
  CHECK_EQ_INT(ep_moe_cuda_grouped_gemm(ctx, EP_MOE_GEMM_BATCHED, 6, uneven, 8, 8,
                                        (const ep_bf16 *)16, (const ep_bf16 *)16, (ep_bf16 *)16),
               EP_ERR_INVALID);
fail:
  return st;
}

int main(void)
{
  int32_t n_devices = ep_moe_cuda_device_count();
  if (n_devices <= 0) {
    printf("test_moe_cuda: no CUDA device, skipping\n");
    return 77;
  }
  ep_moe_cuda *ctx = NULL;
  ep_status st = EP_OK;
  struct cudaDeviceProp prop;
  EP_CUDA_TRY(cudaGetDeviceProperties(&prop, 0));
  printf("test_moe_cuda: %s, %d SMs, compute capability %d.%d\n", prop.name,
         prop.multiProcessorCount, prop.major, prop.minor);
  EP_TRY(ep_moe_cuda_init(&ctx, 0, NULL));
  CHECK_EQ_INT(test_fill(ctx), EP_OK);
  CHECK_EQ_INT(test_router(ctx), EP_OK);
  CHECK_EQ_INT(test_layout(ctx), EP_OK);
  CHECK_EQ_INT(test_permute_combine(ctx), EP_OK);
  CHECK_EQ_INT(test_rows(ctx), EP_OK);
  CHECK_EQ_INT(test_experts(ctx), EP_OK);
  ep_moe_cuda_free(ctx);
  return check_exit_code("test_moe_cuda");
fail:
  ep_moe_cuda_free(ctx);
  fprintf(stderr, "test_moe_cuda: setup failed: %s\n", ep_status_str(st));
  return 1;
}
