/* Kernel sweep: the grid loop, the CSV with provenance, and the CPU timing of
 * the C reference kernels. The CUDA timing lives in ep_real_sweep_cuda.c. */
#include "ep_real_sweep.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ep_config.h"
#include "ep_moe_ref.h"

const char *ep_sweep_kernel_name(ep_sweep_kernel kernel)
{
  switch (kernel) {
  case EP_SWEEP_GROUPED_GEMM:
    return "grouped_gemm";
  case EP_SWEEP_PERMUTE:
    return "permute";
  case EP_SWEEP_PERMUTE_FP8:
    return "permute_fp8";
  case EP_SWEEP_COMBINE:
    return "combine";
  case EP_SWEEP_ROUTER:
    return "router";
  case EP_SWEEP_KERNEL_COUNT:
    break;
  }
  return "unknown";
}

void ep_sweep_point_work(const ep_sweep_point *pt, double *flop, double *bytes)
{
  const double h = pt->hidden, im = pt->intermediate, rows = (double)pt->rows;
  const double tok = (double)pt->tokens, e = pt->n_experts, k = pt->top_k;
  *flop = 0;
  *bytes = 0;
  switch (pt->kernel) {
  case EP_SWEEP_GROUPED_GEMM:
    *flop = 6.0 * rows * h * im;
    *bytes = pt->local_experts * 3.0 * h * im * 2 + 2.0 * rows * h * 2;
    break;
  case EP_SWEEP_PERMUTE:
    *bytes = tok * h * 2 + rows * h * 2;
    break;
  case EP_SWEEP_PERMUTE_FP8:
    *bytes = tok * h * 2 + rows * (h + h / EP_FP8_BLOCK * 4);
    break;
  case EP_SWEEP_COMBINE:
    *flop = 2.0 * rows * h;
    *bytes = rows * h * 2 + tok * h * 2;
    break;
  case EP_SWEEP_ROUTER:
    *flop = 2.0 * tok * h * e;
    *bytes = tok * h * 2 + e * h * 2 + tok * k * 8;
    break;
  case EP_SWEEP_KERNEL_COUNT:
    break;
  }
}

ep_status ep_sweep_parse_list(const char *what, const char *list, int64_t max_value,
                              int64_t *values, int32_t max_n, int32_t *n)
{
  *n = 0;
  const char *p = list;
  while (*p) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p || v < 1 || v > max_value || (*end && *end != ',') || *n >= max_n) {
      ep_log_error("%s: '%s' is not a comma-separated list of at most %d integers in 1..%lld", what,
                   list, (int)max_n, (long long)max_value);
      return EP_ERR_PARSE;
    }
    values[(*n)++] = v;
    p = *end ? end + 1 : end;
  }
  if (*n == 0) {
    ep_log_error("%s: empty list", what);
    return EP_ERR_PARSE;
  }
  return EP_OK;
}

/* ---- CPU: the C references ---------------------------------------------- */

typedef struct cpu_bufs {
  ep_bf16 *x, *w13, *w2, *y, *w_gate, *out;
  ep_fp8 *q;
  float *scales, *weights;
  int32_t *experts, *slot, *counts, *offsets, *routed;
} cpu_bufs;

static void cpu_bufs_free(cpu_bufs *b)
{
  free(b->x);
  free(b->w13);
  free(b->w2);
  free(b->y);
  free(b->w_gate);
  free(b->out);
  free(b->q);
  free(b->scales);
  free(b->weights);
  free(b->experts);
  free(b->slot);
  free(b->counts);
  free(b->offsets);
  free(b->routed);
  memset(b, 0, sizeof *b);
}

static double mono_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* Copy c of the permute/combine layout goes to local expert c % L, copies past
 * rows are dropped: every expert gets exactly tokens_per_expert rows. */
static void sweep_copy_experts(const ep_sweep_point *pt, int32_t *experts)
{
  const int64_t n_copies = pt->tokens * pt->top_k;
  for (int64_t c = 0; c < n_copies; c++)
    experts[c] = c < pt->rows ? (int32_t)(c % pt->local_experts) : -1;
}

static ep_status cpu_run_once(const ep_sweep_point *pt, cpu_bufs *b, const ep_moe_router_cfg *rc)
{
  switch (pt->kernel) {
  case EP_SWEEP_GROUPED_GEMM:
    return ep_moe_expert_ffn_ref(pt->local_experts, b->counts, pt->hidden, pt->intermediate, b->x,
                                 b->w13, b->w2, b->y);
  case EP_SWEEP_PERMUTE:
    return ep_moe_permute_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, b->x, b->slot, b->y);
  case EP_SWEEP_PERMUTE_FP8:
    return ep_moe_permute_fp8_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, b->x, b->slot, b->q,
                                  b->scales);
  case EP_SWEEP_COMBINE:
    return ep_moe_combine_ref(pt->tokens, pt->top_k, pt->hidden, pt->rows, b->y, b->slot,
                              b->weights, b->out);
  case EP_SWEEP_ROUTER:
    return ep_moe_router_ref(rc, pt->tokens, pt->hidden, EP_DTYPE_BF16, b->x, b->w_gate, NULL, NULL,
                             NULL, b->routed, b->weights);
  case EP_SWEEP_KERNEL_COUNT:
    break;
  }
  return EP_ERR_INVALID;
}

static ep_status cpu_measure(void *ctx, const ep_sweep_point *pt, int32_t warmup, int32_t repeats,
                             double *times_us)
{
  (void)ctx;
  cpu_bufs b = {0};
  ep_status st = EP_ERR_NOMEM;
  const size_t h = (size_t)pt->hidden, im = (size_t)pt->intermediate;
  const size_t rows = (size_t)pt->rows, tok = (size_t)pt->tokens, le = (size_t)pt->local_experts;
  const size_t n_copies = tok * (size_t)pt->top_k;
  const ep_moe_router_cfg rc = {pt->n_experts, pt->top_k, 1, 1, EP_MOE_SCORE_SOFTMAX, 1, 1.0f};
  b.x = malloc(sizeof(ep_bf16) * (rows > tok ? rows : tok) * h);
  b.y = malloc(sizeof(ep_bf16) * rows * h);
  b.out = malloc(sizeof(ep_bf16) * tok * h);
  b.weights = malloc(sizeof(float) * n_copies);
  b.experts = malloc(sizeof(int32_t) * n_copies);
  b.slot = malloc(sizeof(int32_t) * n_copies);
  b.routed = malloc(sizeof(int32_t) * n_copies);
  b.counts = malloc(sizeof(int32_t) * (le > (size_t)pt->n_experts ? le : (size_t)pt->n_experts));
  b.offsets = malloc(sizeof(int32_t) * (le + 1));
  if (!b.x || !b.y || !b.out || !b.weights || !b.experts || !b.slot || !b.routed || !b.counts ||
      !b.offsets)
    goto fail;
  ep_moe_fill_uniform_bf16(b.x, (int64_t)((rows > tok ? rows : tok) * h), pt->seed, -1.0f, 1.0f);
  ep_moe_fill_uniform_bf16(b.y, (int64_t)(rows * h), pt->seed + 1, -1.0f, 1.0f);
  ep_moe_fill_uniform_f32(b.weights, (int64_t)n_copies, pt->seed + 2, 0.0f, 1.0f);
  sweep_copy_experts(pt, b.experts);
  if ((st = ep_moe_layout_ref((int64_t)n_copies, pt->local_experts, b.experts, b.counts, b.offsets,
                              b.slot, NULL)) != EP_OK)
    goto fail;
  st = EP_ERR_NOMEM;
  if (pt->kernel == EP_SWEEP_GROUPED_GEMM) {
    const float b13 = 1.0f / sqrtf((float)h), b2 = 1.0f / sqrtf((float)im);
    b.w13 = malloc(sizeof(ep_bf16) * le * 2 * im * h);
    b.w2 = malloc(sizeof(ep_bf16) * le * h * im);
    if (!b.w13 || !b.w2)
      goto fail;
    ep_moe_fill_uniform_bf16(b.w13, (int64_t)(le * 2 * im * h), pt->seed + 3, -b13, b13);
    ep_moe_fill_uniform_bf16(b.w2, (int64_t)(le * h * im), pt->seed + 4, -b2, b2);
    for (size_t e = 0; e < le; e++)
      b.counts[e] = (int32_t)pt->tokens_per_expert;
  } else if (pt->kernel == EP_SWEEP_PERMUTE_FP8) {
    b.q = malloc(rows * h);
    b.scales = malloc(sizeof(float) * rows * (h / EP_FP8_BLOCK));
    if (!b.q || !b.scales)
      goto fail;
  } else if (pt->kernel == EP_SWEEP_ROUTER) {
    b.w_gate = malloc(sizeof(ep_bf16) * (size_t)pt->n_experts * h);
    if (!b.w_gate)
      goto fail;
    ep_moe_fill_uniform_bf16(b.w_gate, (int64_t)((size_t)pt->n_experts * h), pt->seed + 5, -0.1f,
                             0.1f);
  }
  for (int32_t i = 0; i < warmup + repeats; i++) {
    const double t0 = mono_us();
    if ((st = cpu_run_once(pt, &b, &rc)) != EP_OK) {
      ep_log_error("sweep: %s failed at %d experts x %lld tokens: %s",
                   ep_sweep_kernel_name(pt->kernel), (int)pt->local_experts,
                   (long long)pt->tokens_per_expert, ep_status_str(st));
      goto fail;
    }
    const double t1 = mono_us();
    if (i >= warmup)
      times_us[i - warmup] = t1 - t0;
  }
  st = EP_OK;
fail:
  if (st == EP_ERR_NOMEM)
    ep_log_error("sweep: out of memory at %d experts x %lld tokens per expert",
                 (int)pt->local_experts, (long long)pt->tokens_per_expert);
  cpu_bufs_free(&b);
  return st;
}

/* One thread's memcpy bandwidth (bytes read + written per second): the memory
 * floor's yardstick, measured in the same run as the kernels. */
#define EP__CPU_COPY_MIB 64

static ep_status cpu_copy_bandwidth(double *GBps)
{
  const size_t bytes = (size_t)EP__CPU_COPY_MIB << 20;
  char *src = malloc(bytes), *dst = malloc(bytes);
  if (!src || !dst) {
    free(src);
    free(dst);
    return EP_ERR_NOMEM;
  }
  memset(src, 1, bytes);
  memset(dst, 0, bytes);
  /* Called through a volatile pointer so the compiler cannot drop the copies. */
  void *(*volatile copy)(void *, const void *, size_t) = memcpy;
  double best_us = 0;
  for (int i = 0; i < 4; i++) { /* the best of four */
    const double t0 = mono_us();
    copy(dst, src, bytes);
    const double t = mono_us() - t0;
    if (i == 0 || t < best_us)
      best_us = t;
  }
  *GBps = best_us > 0 ? 2.0 * (double)bytes / (best_us * 1e3) : 0.0;
  free(src);
  free(dst);
  return EP_OK;
}

ep_status ep_sweep_cpu_impl(ep_sweep_impl *out)
{
  memset(out, 0, sizeof *out);
  double copy_GBps = 0;
  ep_status st = cpu_copy_bandwidth(&copy_GBps);
  if (st != EP_OK)
    return st;
  out->backend = "cpu";
  out->warmup = 1;
  out->measure = cpu_measure;
  char host[128] = "unknown", cpu[160] = "unknown";
  if (gethostname(host, sizeof host) != 0)
    snprintf(host, sizeof host, "unknown");
  host[sizeof host - 1] = '\0';
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      if (!strncmp(line, "model name", 10)) {
        const char *v = strchr(line, ':');
        if (v) {
          snprintf(cpu, sizeof cpu, "%s", v + 2);
          cpu[strcspn(cpu, "\n")] = '\0';
        }
        break;
      }
    }
    fclose(f);
  }
  snprintf(out->provenance, sizeof out->provenance,
           "# device: CPU %s (host %s), C reference kernels, one thread\n"
           "# timing: clock_gettime(CLOCK_MONOTONIC) around each call, %d warm-up call\n"
           "# copy_GBps: %.1f (memcpy of %d MiB on one thread, bytes read + written over the "
           "best of 4)\n",
           cpu, host, out->warmup, copy_GBps, EP__CPU_COPY_MIB);
  return EP_OK;
}

/* ---- grid and CSV ------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

ep_status ep_sweep_run(const ep_scenario *s, const char *scenario_path, const ep_sweep_cfg *cfg,
                       const ep_sweep_impl *impl, int argc, char **argv, FILE *csv)
{
  double *times = malloc(sizeof(double) * (size_t)cfg->repeats);
  if (!times)
    return EP_ERR_NOMEM;
  fprintf(csv, "# tool: epsim-real %s (git %s) --sweep\n", EP_VERSION, EP_GIT_SHA);
  fprintf(csv, "# backend: %s\n", impl->backend);
  fputs(impl->provenance, csv);
  fprintf(csv, "# scenario: %s (fnv1a64 %016" PRIx64 ")\n", scenario_path, s->content_hash);
  fprintf(csv, "# seed: %" PRIu64 "\n", s->routing.seed);
  fputs("# argv:", csv);
  for (int i = 0; i < argc; i++)
    fprintf(csv, " %s", argv[i]);
  fputc('\n', csv);
  fputs("# units: µs per launch (median/min/max over repeats); flop; bytes = memory floor; "
        "TFLOPs = flop/median; GBps = bytes/median (1e9 B/s); see real/ep_real_sweep.h\n",
        csv);
  fputs("kernel,backend,hidden,intermediate,n_experts,top_k,local_experts,tokens_per_expert,rows,"
        "tokens,repeats,median_us,min_us,max_us,flop,bytes,TFLOPs,GBps\n",
        csv);
  ep_status st = EP_OK;
  for (int kk = 0; kk < EP_SWEEP_KERNEL_COUNT && st == EP_OK; kk++) {
    const ep_sweep_kernel kernel = (ep_sweep_kernel)kk;
    if (kernel == EP_SWEEP_PERMUTE_FP8 && s->model.hidden % EP_FP8_BLOCK != 0)
      continue;
    for (int32_t i = 0; i < cfg->n_local_experts && st == EP_OK; i++) {
      for (int32_t j = 0; j < cfg->n_tokens_per_expert && st == EP_OK; j++) {
        ep_sweep_point pt = {kernel,
                             s->model.hidden,
                             s->model.moe_intermediate,
                             s->model.n_experts,
                             s->model.top_k,
                             (int32_t)cfg->local_experts[i],
                             cfg->tokens_per_expert[j],
                             0,
                             0,
                             s->routing.seed};
        pt.rows = pt.local_experts * pt.tokens_per_expert;
        pt.tokens = (pt.rows + pt.top_k - 1) / pt.top_k;
        if ((st = impl->measure(impl->ctx, &pt, impl->warmup, cfg->repeats, times)) != EP_OK)
          break;
        qsort(times, (size_t)cfg->repeats, sizeof *times, cmp_double);
        const int32_t r = cfg->repeats;
        const double med = r % 2 ? times[r / 2] : 0.5 * (times[r / 2 - 1] + times[r / 2]);
        double flop, bytes;
        ep_sweep_point_work(&pt, &flop, &bytes);
        fprintf(csv,
                "%s,%s,%d,%d,%d,%d,%d,%" PRId64 ",%" PRId64 ",%" PRId64 ",%d,%.3f,%.3f,%.3f,%.0f,"
                "%.0f,%.4f,%.3f\n",
                ep_sweep_kernel_name(kernel), impl->backend, (int)pt.hidden, (int)pt.intermediate,
                (int)pt.n_experts, (int)pt.top_k, (int)pt.local_experts, pt.tokens_per_expert,
                pt.rows, pt.tokens, (int)r, med, times[0], times[r - 1], flop, bytes,
                med > 0 ? flop / (med * 1e6) : 0.0, med > 0 ? bytes / (med * 1e3) : 0.0);
        fprintf(stderr, "sweep: %-12s L=%-4d M=%-6" PRId64 " median %10.2f µs\n",
                ep_sweep_kernel_name(kernel), (int)pt.local_experts, pt.tokens_per_expert, med);
      }
    }
  }
  free(times);
  return st;
}

int ep_real_sweep_main(const ep_scenario *s, const char *scenario_path, const char *out_dir,
                       int use_nccl, ep_sweep_impl_init impl_init, const char *tokens_list,
                       const char *experts_list, int32_t repeats, int32_t local_rank, int argc,
                       char **argv)
{
  enum { MAX_POINTS = 64 };
  int64_t tokens[MAX_POINTS], experts[MAX_POINTS];
  int32_t n_tokens = 0, n_experts = 0;
  const char *def_tokens = use_nccl ? "8,16,32,64,128,256,512,1024,2048" : "8,16,32,64";
  char def_experts[32];
  snprintf(def_experts, sizeof def_experts, "%d", (int)(s->model.n_experts / s->ep));
  if (ep_sweep_parse_list("--sweep-tokens", tokens_list ? tokens_list : def_tokens, 1 << 24, tokens,
                          MAX_POINTS, &n_tokens) != EP_OK ||
      ep_sweep_parse_list("--sweep-experts", experts_list ? experts_list : def_experts,
                          EP_MOE_MAX_EXPERTS, experts, MAX_POINTS, &n_experts) != EP_OK)
    return 1;
  for (int32_t i = 0; i < n_tokens; i++) {
    for (int32_t j = 0; j < n_experts; j++) {
      if (tokens[i] * experts[j] > INT32_MAX / 2) {
        ep_log_error("--sweep: %lld experts x %lld tokens exceed the kernels' int32 rows",
                     (long long)experts[j], (long long)tokens[i]);
        return 1;
      }
    }
  }
  ep_sweep_impl impl;
  ep_status st = impl_init(&impl, local_rank);
  if (st != EP_OK)
    return 2;
  const ep_sweep_cfg cfg = {experts, n_experts, tokens, n_tokens,
                            repeats > 0 ? repeats : (use_nccl ? 20 : 3)};
  char path[4096], tmp[4096];
  int n1 = snprintf(path, sizeof path, "%s/sweep.csv", out_dir);
  int n2 = snprintf(tmp, sizeof tmp, "%s/.sweep.csv.tmp", out_dir);
  int rc = 2;
  FILE *f = NULL;
  if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof path || (size_t)n2 >= sizeof tmp) {
    ep_log_error("output path too long: %s", out_dir);
    rc = 1;
    goto done;
  }
  if (!(f = fopen(tmp, "w"))) {
    ep_log_error("cannot write %s: %s", tmp, strerror(errno));
    rc = 1;
    goto done;
  }
  st = ep_sweep_run(s, scenario_path, &cfg, &impl, argc, argv, f);
  const int write_failed = ferror(f);
  if (fclose(f) != 0 || write_failed) {
    ep_log_error("writing %s failed: %s", tmp, strerror(errno));
    st = EP_ERR_IO;
  }
  if (st != EP_OK || rename(tmp, path) != 0) {
    if (st == EP_OK)
      ep_log_error("renaming %s failed: %s", tmp, strerror(errno));
    unlink(tmp);
    goto done;
  }
  printf("wrote %s (%s backend, %d kernels x %d x %d shapes)\n", path, impl.backend,
         (int)EP_SWEEP_KERNEL_COUNT - (s->model.hidden % EP_FP8_BLOCK != 0), (int)n_experts,
         (int)n_tokens);
  rc = 0;
done:
  if (impl.free)
    impl.free(impl.ctx);
  return rc;
}
