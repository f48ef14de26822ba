/* bench_kernels on the host: the C references of kernels/ep_moe_ref.h on one
 * thread, timed with clock_gettime(CLOCK_MONOTONIC) around each call. They are
 * the reference, so nothing is checked. */
#include "ep_bench_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct ref_bench {
  const ep_bench_point *pt; /* NULL: nothing set up */
  ep_bf16 *x, *y, *w13, *w2, *w_gate, *out;
  ep_fp8 *q;
  float *scales, *weights, *bias, *logits, *scores;
  int32_t *counts, *offsets, *slot, *routed;
  char *src, *dst;
  double mark_us[EP_BENCH_MARKS];
} ref_bench;

static double mono_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int32_t ref_device_count(void)
{
  return 1;
}

static ep_status ref_init(void **out, int32_t device, char *provenance, size_t provenance_bytes)
{
  (void)device;
  ref_bench *b = calloc(1, sizeof *b);
  if (!b)
    return EP_ERR_NOMEM;
  char host[128] = "unknown", cpu[160] = "unknown";
  if (gethostname(host, sizeof host) != 0)
    snprintf(host, sizeof host, "unknown");
  host[sizeof host - 1] = '\0';
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      const char *v = strchr(line, ':');
      if (!strncmp(line, "model name", 10) && v) {
        snprintf(cpu, sizeof cpu, "%s", v + 2);
        cpu[strcspn(cpu, "\n")] = '\0';
        break;
      }
    }
    fclose(f);
  }
  snprintf(provenance, provenance_bytes,
           "# device: CPU %s (host %s), C reference kernels (kernels/ep_moe_ref.h), one thread\n"
           "# timing: clock_gettime(CLOCK_MONOTONIC) around each call\n",
           cpu, host);
  *out = b;
  return EP_OK;
}

static void ref_teardown(void *ctx)
{
  ref_bench *b = ctx;
  void *p[] = {b->x,      b->y,       b->w13,     b->w2,     b->w_gate, b->out,
               b->q,      b->scales,  b->weights, b->bias,   b->logits, b->scores,
               b->counts, b->offsets, b->slot,    b->routed, b->src,    b->dst};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
  memset(b, 0, sizeof *b);
}

static void ref_free(void *ctx)
{
  if (!ctx)
    return;
  ref_teardown(ctx);
  free(ctx);
}

/* n elements of size bytes (at least one byte, so empty shapes are not failures). */
static void *alloc(size_t n, size_t size)
{
  return malloc(n * size > 0 ? n * size : 1);
}

static ep_status ref_setup(void *ctx, const ep_bench_point *pt)
{
  ref_bench *b = ctx;
  const size_t h = (size_t)pt->hidden, im = (size_t)pt->intermediate, rows = (size_t)pt->rows;
  const size_t tok = (size_t)pt->tokens, le = (size_t)pt->local_experts;
  const size_t e = (size_t)pt->n_experts, copies = tok * (size_t)pt->top_k;
  int ok = 1;
  b->pt = pt;
  switch (pt->kernel) {
  case EP_BENCH_COPY:
    ok = (b->src = alloc((size_t)pt->copy_bytes, 1)) && (b->dst = alloc((size_t)pt->copy_bytes, 1));
    if (ok) {
      memset(b->src, 1, (size_t)pt->copy_bytes);
      memset(b->dst, 0, (size_t)pt->copy_bytes);
    }
    break;
  case EP_BENCH_GROUPED_GEMM:
  case EP_BENCH_GROUPED_GEMM_ZIPF:
    ok = (b->x = alloc(rows * h, sizeof(ep_bf16))) && (b->y = alloc(rows * h, sizeof(ep_bf16))) &&
         (b->w13 = alloc(le * 2 * im * h, sizeof(ep_bf16))) &&
         (b->w2 = alloc(le * h * im, sizeof(ep_bf16)));
    if (ok) {
      const float b13 = 1.0f / sqrtf((float)h), b2 = 1.0f / sqrtf((float)im);
      ep_moe_fill_uniform_bf16(b->x, (int64_t)(rows * h), pt->seed + EP_BENCH_SEED_X, -1.0f, 1.0f);
      for (size_t i = 0; i < le; i++) {
        ep_moe_fill_uniform_bf16(b->w13 + i * 2 * im * h, (int64_t)(2 * im * h),
                                 pt->seed + EP_BENCH_SEED_W13 + i, -b13, b13);
        ep_moe_fill_uniform_bf16(b->w2 + i * h * im, (int64_t)(h * im),
                                 pt->seed + EP_BENCH_SEED_W2 + i, -b2, b2);
      }
    }
    break;
  case EP_BENCH_PERMUTE:
  case EP_BENCH_PERMUTE_FP8:
    ok = (b->x = alloc(tok * h, sizeof(ep_bf16))) != NULL;
    if (pt->kernel == EP_BENCH_PERMUTE)
      ok = ok && (b->y = alloc(rows * h, sizeof(ep_bf16)));
    else
      ok = ok && (b->q = alloc(rows * h, 1)) &&
           (b->scales = alloc(rows * (h / EP_FP8_BLOCK), sizeof(float)));
    if (ok)
      ep_moe_fill_uniform_bf16(b->x, (int64_t)(tok * h), pt->seed + EP_BENCH_SEED_X, -1.0f, 1.0f);
    break;
  case EP_BENCH_COMBINE:
    ok = (b->y = alloc(rows * h, sizeof(ep_bf16))) && (b->weights = alloc(copies, sizeof(float))) &&
         (b->out = alloc(tok * h, sizeof(ep_bf16)));
    if (ok) {
      ep_moe_fill_uniform_bf16(b->y, (int64_t)(rows * h), pt->seed + EP_BENCH_SEED_Y, -1.0f, 1.0f);
      ep_moe_fill_uniform_f32(b->weights, (int64_t)copies, pt->seed + EP_BENCH_SEED_WEIGHTS, 0.0f,
                              1.0f);
    }
    break;
  case EP_BENCH_LAYOUT:
    ok = (b->counts = alloc(le, sizeof(int32_t))) &&
         (b->offsets = alloc(le + 1, sizeof(int32_t))) &&
         (b->slot = alloc(copies, sizeof(int32_t)));
    break;
  case EP_BENCH_ROUTER:
  case EP_BENCH_ROUTER_DSV3:
  case EP_BENCH_ROUTER_SELECT:
  case EP_BENCH_ROUTER_SELECT_DSV3: {
    const int select =
        pt->kernel == EP_BENCH_ROUTER_SELECT || pt->kernel == EP_BENCH_ROUTER_SELECT_DSV3;
    ok = (b->routed = alloc(copies, sizeof(int32_t))) &&
         (b->weights = alloc(copies, sizeof(float))) &&
         (!pt->router_bias || (b->bias = alloc(e, sizeof(float))));
    if (select)
      ok = ok && (b->logits = alloc(tok * e, sizeof(float))) &&
           (b->scores = alloc(tok * e, sizeof(float)));
    else
      ok = ok && (b->x = alloc(tok * h, sizeof(ep_bf16))) &&
           (b->w_gate = alloc(e * h, sizeof(ep_bf16)));
    if (!ok)
      break;
    if (pt->router_bias)
      ep_moe_fill_uniform_f32(b->bias, (int64_t)e, pt->seed + EP_BENCH_SEED_BIAS,
                              -EP_BENCH_BIAS_RANGE, EP_BENCH_BIAS_RANGE);
    if (select) {
      ep_moe_fill_uniform_f32(b->logits, (int64_t)(tok * e), pt->seed + EP_BENCH_SEED_LOGITS,
                              -EP_BENCH_LOGITS_RANGE, EP_BENCH_LOGITS_RANGE);
    } else {
      ep_moe_fill_uniform_bf16(b->x, (int64_t)(tok * h), pt->seed + EP_BENCH_SEED_X, -1.0f, 1.0f);
      ep_moe_fill_uniform_bf16(b->w_gate, (int64_t)(e * h), pt->seed + EP_BENCH_SEED_W_GATE,
                               -EP_BENCH_W_GATE_RANGE, EP_BENCH_W_GATE_RANGE);
    }
    break;
  }
  default:
    return EP_ERR_UNSUPPORTED; /* the forced cuBLAS strategies */
  }
  if (!ok) {
    ep_log_error("bench_kernels: out of host memory at %d experts x %lld tokens per expert",
                 (int)pt->local_experts, (long long)pt->tokens_per_expert);
    return EP_ERR_NOMEM;
  }
  return EP_OK;
}

static ep_status ref_launch(void *ctx)
{
  ref_bench *b = ctx;
  const ep_bench_point *pt = b->pt;
  const int64_t copies = pt->tokens * pt->top_k;
  switch (pt->kernel) {
  case EP_BENCH_COPY: {
    /* Through a volatile pointer, so the compiler cannot drop the copy. */
    void *(*volatile copy)(void *, const void *, size_t) = memcpy;
    copy(b->dst, b->src, (size_t)pt->copy_bytes);
    return EP_OK;
  }
  case EP_BENCH_GROUPED_GEMM:
  case EP_BENCH_GROUPED_GEMM_ZIPF:
    return ep_moe_expert_ffn_ref(pt->local_experts, pt->counts, pt->hidden, pt->intermediate, b->x,
                                 b->w13, b->w2, b->y);
  case EP_BENCH_PERMUTE:
    return ep_moe_permute_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, b->x, pt->slot, b->y);
  case EP_BENCH_PERMUTE_FP8:
    return ep_moe_permute_fp8_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, b->x, pt->slot, b->q,
                                  b->scales);
  case EP_BENCH_COMBINE:
    return ep_moe_combine_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, b->y, pt->slot,
                              b->weights, b->out);
  case EP_BENCH_LAYOUT:
    return ep_moe_layout_ref(copies, pt->local_experts, pt->experts, b->counts, b->offsets, b->slot,
                             NULL);
  case EP_BENCH_ROUTER:
  case EP_BENCH_ROUTER_DSV3:
    return ep_moe_router_ref(&pt->router, pt->tokens, pt->hidden, EP_DTYPE_BF16, b->x, b->w_gate,
                             b->bias, NULL, NULL, b->routed, b->weights);
  case EP_BENCH_ROUTER_SELECT:
  case EP_BENCH_ROUTER_SELECT_DSV3: {
    ep_status st = ep_moe_router_scores_ref(pt->router.score_fn, pt->tokens, pt->n_experts,
                                            b->logits, b->scores);
    return st != EP_OK ? st
                       : ep_moe_router_topk_ref(&pt->router, pt->tokens, b->scores, b->bias,
                                                b->routed, b->weights);
  }
  default:
    return EP_ERR_UNSUPPORTED;
  }
}

static ep_status ref_mark(void *ctx, int32_t i)
{
  ref_bench *b = ctx;
  b->mark_us[i] = mono_us();
  return EP_OK;
}

static ep_status ref_elapsed(void *ctx, int32_t n, double *times_us)
{
  const ref_bench *b = ctx;
  for (int32_t j = 0; j < n; j++)
    times_us[j] = b->mark_us[j + 1] - b->mark_us[j];
  return EP_OK;
}

/* In ep_bench_kernels_ops order: name, kernels (all but the forced cuBLAS
 * strategies), the copy, default -w -n -e, then the ops. */
const ep_bench_kernels_ops ep_bench_kernels_ref = {
    "cpu",
    ((1u << EP_BENCH_KERNEL_COUNT) - 1) &
        ~(EP_BENCH_BIT(EP_BENCH_GROUPED_GEMM_BATCHED) |
          EP_BENCH_BIT(EP_BENCH_GROUPED_GEMM_GROUPED) | EP_BENCH_BIT(EP_BENCH_GROUPED_GEMM_LOOP)),
    "memcpy on one thread",
    (int64_t)64 << 20,
    1,
    3,
    64,
    ref_device_count,
    ref_init,
    ref_free,
    ref_setup,
    ref_launch,
    ref_mark,
    ref_elapsed,
    ref_teardown};
