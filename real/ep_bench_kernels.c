/* bench_kernels: the grid, the timing harness, the table and the CSV, and the
 * command line (nccl-tests' flags). The kernels come from one implementation
 * table (ep_bench_kernels.h), picked with -d; this file calls them and they
 * call nothing here.
 *   bench_kernels [-d cpu|cuda] [-b 8] [-e 2048] [-f 2] [-l 8,32] [-n 20] [-w 3] [-o FILE]
 * Exit codes: 0 ok, 1 bad input (usage, shapes, no such device), 2 internal
 * error (a kernel failed or disagreed with the C reference). */
#include "ep_bench_kernels.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ep_config.h"

enum { EXIT_OK = 0, EXIT_BAD_INPUT = 1, EXIT_INTERNAL = 2 };
enum { EP__MAX_LIST = 64 }; /* local-expert counts, and grid points per run */
#define EP__SEED 1          /* every input is ep_moe_uniform_at(EP__SEED + offset, i) */

static const char *const kernel_names[EP_BENCH_KERNEL_COUNT] = {
#define EP__BENCH_NAME(id, name) name,
    EP_BENCH_KERNEL_TABLE(EP__BENCH_NAME)
#undef EP__BENCH_NAME
};

/* The implementations built into this program, the default first. */
static const ep_bench_kernels_ops *const impls[] = {
#if EP_HAVE_CUDA
    &ep_bench_kernels_cuda,
#endif
    &ep_bench_kernels_ref,
};
#define EP__N_IMPLS ((int)(sizeof impls / sizeof impls[0]))

typedef struct bench_opts {
  const ep_bench_kernels_ops *ops; /* NULL: the default */
  int64_t gpu;
  int64_t min_tokens, max_tokens, factor; /* max_tokens 0: the implementation's default */
  int64_t iters, warmup;                  /* -1: the implementation's default */
  int64_t hidden, intermediate, n_experts, top_k;
  int64_t local_experts[EP__MAX_LIST];
  int32_t n_local;
  const char *csv_path;
} bench_opts;

/* The integer flags: their range, and the field of bench_opts each sets. */
static const struct int_flag {
  int flag;
  int64_t lo, hi;
  size_t offset; /* of an int64_t */
} int_flags[] = {
    {'g', 0, 1023, offsetof(bench_opts, gpu)},
    {'b', 1, 1 << 24, offsetof(bench_opts, min_tokens)},
    {'e', 1, 1 << 24, offsetof(bench_opts, max_tokens)},
    {'f', 2, 1 << 24, offsetof(bench_opts, factor)},
    {'n', 1, 1000000, offsetof(bench_opts, iters)},
    {'w', 0, 1000000, offsetof(bench_opts, warmup)},
    {'H', 1, 1 << 20, offsetof(bench_opts, hidden)},
    {'I', 1, 1 << 20, offsetof(bench_opts, intermediate)},
    {'E', 1, EP_MOE_MAX_EXPERTS, offsetof(bench_opts, n_experts)},
    {'k', 1, EP_MOE_MAX_TOP_K, offsetof(bench_opts, top_k)},
};

static void usage(FILE *f)
{
  fputs("usage: bench_kernels [options]\n"
        "\n"
        "Times the MoE kernels (expert GEMMs, permute, combine, layout, router) over a grid of\n"
        "local experts x tokens per expert, each checked against the C reference first; prints\n"
        "one row per (kernel, shape) and writes the same rows as CSV (real/ep_bench_kernels.h).\n"
        "\n"
        "  -d cpu|cuda   the kernels: C references on one thread, or the CUDA launchers\n"
        "                (default cuda where built and a GPU is visible)\n"
        "  -g N          CUDA device (default 0)\n"
        "  -b M          smallest tokens per expert (default 8)\n"
        "  -e M          largest (default 2048 on cuda, 64 on cpu)\n"
        "  -f F          grid b, b*F, b*F^2, ... <= e (default 2)\n"
        "  -l LIST       local-expert counts, comma-separated (default 8,32)\n"
        "  -n N          timed launches per row (default 20 on cuda, 3 on cpu)\n"
        "  -w N          untimed launches first (default 3 on cuda, 1 on cpu)\n"
        "  -H N          hidden size (default 7168, DeepSeek-V3)\n"
        "  -I N          expert intermediate size (default 2048)\n"
        "  -E N          router experts (default 256)\n"
        "  -k N          experts per token (default 8)\n"
        "  -o FILE       write the CSV there (with '#' provenance lines)\n"
        "  -h, --help\n"
        "\n"
        "Exit: 0 ok, 1 bad input, 2 a kernel failed or disagreed with the C reference.\n",
        f);
}

/* Strict integer in lo..hi; -1 (with a message) when it is not. */
static int parse_int(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
  char *end = NULL;
  errno = 0;
  const long long n = strtoll(v, &end, 10);
  if (errno || end == v || *end || n < lo || n > hi) {
    fprintf(stderr, "bench_kernels: %s wants an integer in %lld..%lld, got '%s'\n", flag,
            (long long)lo, (long long)hi, v);
    return -1;
  }
  *out = n;
  return 0;
}

static int parse_list(const char *flag, const char *v, int64_t hi, int64_t *values, int32_t *n)
{
  char buf[32];
  *n = 0;
  for (const char *p = v;; p++) {
    const size_t len = strcspn(p, ",");
    if (len == 0 || len >= sizeof buf || *n >= EP__MAX_LIST) {
      fprintf(stderr, "bench_kernels: %s wants up to %d comma-separated integers, got '%s'\n", flag,
              EP__MAX_LIST, v);
      return -1;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    if (parse_int(flag, buf, 1, hi, &values[(*n)++]) != 0)
      return -1;
    p += len;
    if (!*p)
      return 0;
  }
}

/* Fills *o from argv; -1 bad usage (printed), 1 --help (printed), 0 run. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
  static const struct option longs[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int opt;
  opterr = 1;
  while ((opt = getopt_long(argc, argv, "d:g:b:e:f:l:n:w:H:I:E:k:o:h", longs, NULL)) != -1) {
    const char flag[3] = {'-', (char)opt, '\0'};
    const struct int_flag *f = NULL;
    for (size_t i = 0; i < sizeof int_flags / sizeof int_flags[0]; i++)
      if (int_flags[i].flag == opt)
        f = &int_flags[i];
    if (f) {
      if (parse_int(flag, optarg, f->lo, f->hi, (int64_t *)(void *)((char *)o + f->offset)) != 0)
        return -1;
      continue;
    }
    switch (opt) {
    case 'd':
      o->ops = NULL;
      for (int i = 0; i < EP__N_IMPLS; i++)
        if (!strcmp(optarg, impls[i]->name))
          o->ops = impls[i];
      if (!o->ops) {
        fprintf(stderr, "bench_kernels: -d %s: %s\n", optarg,
                strcmp(optarg, "cuda") ? "not an implementation (cpu or cuda)"
                                       : "this bench_kernels was built without CUDA");
        return -1;
      }
      break;
    case 'l':
      if (parse_list(flag, optarg, EP_MOE_MAX_EXPERTS, o->local_experts, &o->n_local) != 0)
        return -1;
      break;
    case 'o':
      o->csv_path = optarg;
      break;
    case 'h':
      usage(stdout);
      return 1;
    default: /* getopt_long printed what is wrong */
      fputs("bench_kernels: see --help\n", stderr);
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "bench_kernels: unexpected argument '%s' (see --help)\n", argv[optind]);
    return -1;
  }
  if (o->top_k > o->n_experts) {
    fprintf(stderr, "bench_kernels: top_k %d exceeds the router's %d experts\n", (int)o->top_k,
            (int)o->n_experts);
    return -1;
  }
  return 0;
}

/* Zipf-like rows per expert with the same total as M each: expert e gets
 * rows / (H_L (e + 1)) (H_L = 1 + 1/2 + ... + 1/L) rounded down to a multiple
 * of 8, the remainder handed out 8 rows at a time from the last expert down.
 * tests/bench_kernels_torch.py builds the same counts. */
static void zipf_counts(int32_t n_experts, int64_t per_expert, int32_t *counts)
{
  double norm = 0.0;
  for (int32_t e = 0; e < n_experts; e++)
    norm += 1.0 / (e + 1);
  const int64_t total = per_expert * n_experts;
  int64_t rem = total;
  for (int32_t e = 0; e < n_experts; e++) {
    counts[e] = (int32_t)(8 * (int64_t)((double)total / norm / (e + 1) / 8.0));
    rem -= counts[e];
  }
  for (int32_t e = n_experts - 1; rem > 0; e = e > 0 ? e - 1 : n_experts - 1) {
    const int64_t add = rem < 8 ? rem : 8;
    counts[e] += (int32_t)add;
    rem -= add;
  }
}

/* Flop and memory-floor bytes of one launch (see ep_bench_kernels.h). */
static void point_work(const ep_bench_point *pt, double *flop, double *bytes)
{
  const double h = pt->hidden, im = pt->intermediate, rows = (double)pt->rows;
  const double tok = (double)pt->tokens, e = pt->n_experts, k = pt->top_k;
  const double copies = tok * k, bias = pt->router_bias ? e * 4 : 0;
  int32_t busy = 0; /* experts with rows: their weights are read */
  for (int32_t i = 0; pt->counts && i < pt->local_experts; i++)
    busy += pt->counts[i] > 0;
  *flop = 0;
  *bytes = 0;
  switch (pt->kernel) {
  case EP_BENCH_COPY:
    *bytes = 2.0 * (double)pt->copy_bytes;
    break;
  case EP_BENCH_GROUPED_GEMM:
  case EP_BENCH_GROUPED_GEMM_ZIPF:
  case EP_BENCH_GROUPED_GEMM_BATCHED:
  case EP_BENCH_GROUPED_GEMM_GROUPED:
  case EP_BENCH_GROUPED_GEMM_LOOP:
    *flop = 6.0 * rows * h * im;
    *bytes = busy * 3.0 * h * im * 2 + 2.0 * rows * h * 2;
    break;
  case EP_BENCH_PERMUTE:
    *bytes = tok * h * 2 + rows * h * 2;
    break;
  case EP_BENCH_PERMUTE_FP8:
    *bytes = tok * h * 2 + rows * (h + h / EP_FP8_BLOCK * 4);
    break;
  case EP_BENCH_COMBINE:
    *flop = 2.0 * rows * h;
    *bytes = rows * h * 2 + tok * h * 2;
    break;
  case EP_BENCH_LAYOUT:
    *bytes = copies * 4 * 2 + (2.0 * pt->local_experts + 1) * 4;
    break;
  case EP_BENCH_ROUTER:
  case EP_BENCH_ROUTER_DSV3:
    *flop = 2.0 * tok * h * e;
    *bytes = tok * h * 2 + e * h * 2 + copies * 8 + bias;
    break;
  case EP_BENCH_ROUTER_SELECT:
  case EP_BENCH_ROUTER_SELECT_DSV3:
    *bytes = tok * e * 4 + copies * 8 + bias;
    break;
  case EP_BENCH_KERNEL_COUNT:
    break;
  }
}

/* Why kernel does not run at these shapes, or NULL when it does. */
static const char *not_run(ep_bench_kernel kernel, const bench_opts *o)
{
  if (kernel == EP_BENCH_PERMUTE_FP8 && o->hidden % EP_FP8_BLOCK != 0)
    return "hidden is not a multiple of 128";
  if ((kernel == EP_BENCH_ROUTER_DSV3 || kernel == EP_BENCH_ROUTER_SELECT_DSV3) &&
      (o->n_experts % 8 != 0 || o->top_k > o->n_experts / 2))
    return "needs router experts in 8 groups and top_k <= experts / 2";
  return NULL;
}

static int cmp_double(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sets up pt, checks it (inside setup), runs the warm-up, then the timed
 * launches in batches between clock marks; times_us: [out] [iters]. */
static ep_status measure(const ep_bench_kernels_ops *ops, void *ctx, const ep_bench_point *pt,
                         int32_t warmup, int32_t iters, double *times_us)
{
  ep_status st = ops->setup(ctx, pt);
  for (int32_t i = 0; i < warmup && st == EP_OK; i++)
    st = ops->launch(ctx);
  for (int32_t done = 0; done < iters && st == EP_OK;) {
    const int32_t n = iters - done < EP_BENCH_MARKS - 1 ? iters - done : EP_BENCH_MARKS - 1;
    st = ops->mark(ctx, 0);
    for (int32_t i = 0; i < n && st == EP_OK; i++)
      if ((st = ops->launch(ctx)) == EP_OK)
        st = ops->mark(ctx, i + 1);
    if (st == EP_OK)
      st = ops->elapsed(ctx, n, times_us + done);
    done += n;
  }
  ops->teardown(ctx);
  qsort(times_us, (size_t)iters, sizeof *times_us, cmp_double);
  return st;
}

static double median_of_sorted(const double *v, int32_t n)
{
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct run_info {
  const bench_opts *o;
  const char *provenance; /* the implementation's '# ' lines */
  double copy_GBps;
  const int64_t *tokens_per_expert;
  int32_t n_tokens_per_expert;
  int argc;
  char **argv;
} run_info;

static void write_provenance(FILE *f, const run_info *r)
{
  const bench_opts *o = r->o;
  fprintf(f, "# tool: bench_kernels %s (git %s)\n# impl: %s\n", EP_VERSION, EP_GIT_SHA,
          o->ops->name);
  fputs(r->provenance, f);
  fprintf(f, "# copy_GBps: %.1f (%s, %" PRId64 " MiB, bytes read + written, median of %d)\n",
          r->copy_GBps, o->ops->copy_what, o->ops->copy_bytes >> 20, (int)o->iters);
  fprintf(f, "# shapes: hidden %d, intermediate %d, router experts %d, top_k %d; local experts",
          (int)o->hidden, (int)o->intermediate, (int)o->n_experts, (int)o->top_k);
  for (int32_t i = 0; i < o->n_local; i++)
    fprintf(f, "%s%" PRId64, i ? "," : " ", o->local_experts[i]);
  fputs("; tokens per expert", f);
  for (int32_t i = 0; i < r->n_tokens_per_expert; i++)
    fprintf(f, "%s%" PRId64, i ? "," : " ", r->tokens_per_expert[i]);
  fprintf(f, "\n# repeats: %d timed launches per row after %d warm-up\n# argv:", (int)o->iters,
          (int)o->warmup);
  for (int i = 0; i < r->argc; i++)
    fprintf(f, " %s", r->argv[i]);
  char date[64] = "unknown";
  const time_t now = time(NULL);
  struct tm utc;
  if (gmtime_r(&now, &utc))
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &utc);
  fprintf(f, "\n# date: %s\n", date);
  fputs("# units: µs per launch (median/min/max over repeats); flop; bytes = memory floor; "
        "TFLOPs = flop/median; GBps = bytes/median (1e9 B/s); floor_us = bytes/copy_GBps; "
        "ratio_floor = median/floor_us; see real/ep_bench_kernels.h\n",
        f);
}

static const char csv_header[] =
    "kernel,impl,hidden,intermediate,n_experts,top_k,local_experts,tokens_per_expert,rows,tokens,"
    "repeats,median_us,min_us,max_us,flop,bytes,TFLOPs,GBps,floor_us,ratio_floor\n";

/* The grid: every offered kernel over local experts x tokens per expert. */
static ep_status run_grid(const run_info *r, void *ctx, double *times, FILE *csv)
{
  const bench_opts *o = r->o;
  const ep_bench_kernels_ops *ops = o->ops;
  int64_t max_l = 0;
  for (int32_t i = 0; i < o->n_local; i++)
    max_l = o->local_experts[i] > max_l ? o->local_experts[i] : max_l;
  const int64_t max_rows = max_l * r->tokens_per_expert[r->n_tokens_per_expert - 1];
  const size_t max_copies = (size_t)((max_rows + o->top_k - 1) / o->top_k * o->top_k);
  /* The host layout of a point: counts, offsets, each copy's expert and slot. */
  int32_t *counts = malloc(sizeof(int32_t) * (size_t)(2 * max_l + 1 + 2 * (int64_t)max_copies));
  if (!counts) {
    ep_log_error("bench_kernels: out of host memory for the layout of %" PRId64 " rows", max_rows);
    return EP_ERR_NOMEM;
  }
  int32_t *offsets = counts + max_l, *experts = offsets + max_l + 1, *slot = experts + max_copies;
  ep_status st = EP_OK;
  printf("#%-20s %5s %7s %9s %9s %11s %11s %11s %8s %8s %11s %8s\n", "kernel", "L", "M", "rows",
         "tokens", "median_us", "min_us", "max_us", "TFLOPs", "GBps", "floor_us", "ratio");
  /* From the first kernel after copy, which ran once before the grid. */
  for (int kk = EP_BENCH_COPY + 1; kk < EP_BENCH_KERNEL_COUNT && st == EP_OK; kk++) {
    const ep_bench_kernel kernel = (ep_bench_kernel)kk;
    const char *why = not_run(kernel, o);
    if (!(ops->kernels & EP_BENCH_BIT(kernel)))
      continue;
    if (why) {
      printf("# %s: not run (%s)\n", kernel_names[kernel], why);
      continue;
    }
    for (int32_t i = 0; i < o->n_local && st == EP_OK; i++) {
      for (int32_t j = 0; j < r->n_tokens_per_expert && st == EP_OK; j++) {
        ep_bench_point pt = {.kernel = kernel,
                             .name = kernel_names[kernel],
                             .hidden = (int32_t)o->hidden,
                             .intermediate = (int32_t)o->intermediate,
                             .n_experts = (int32_t)o->n_experts,
                             .top_k = (int32_t)o->top_k,
                             .local_experts = (int32_t)o->local_experts[i],
                             .tokens_per_expert = r->tokens_per_expert[j],
                             .counts = counts,
                             .experts = experts,
                             .slot = slot,
                             .seed = EP__SEED};
        pt.rows = pt.local_experts * pt.tokens_per_expert;
        pt.tokens = (pt.rows + pt.top_k - 1) / pt.top_k;
        const int64_t copies = pt.tokens * pt.top_k;
        if (kernel == EP_BENCH_ROUTER_DSV3 || kernel == EP_BENCH_ROUTER_SELECT_DSV3) {
          const ep_moe_router_cfg dsv3 = EP_MOE_ROUTER_CFG_INIT;
          pt.router = dsv3;
          pt.router_bias = 1;
        } else {
          const ep_moe_router_cfg softmax = {0, 0, 1, 1, EP_MOE_SCORE_SOFTMAX, 1, 1.0f};
          pt.router = softmax;
        }
        pt.router.n_experts = pt.n_experts;
        pt.router.top_k = pt.top_k;
        for (int64_t c = 0; c < copies; c++)
          experts[c] = c < pt.rows ? (int32_t)(c % pt.local_experts) : -1;
        if ((st = ep_moe_layout_ref(copies, pt.local_experts, experts, counts, offsets, slot,
                                    NULL)) != EP_OK)
          break;
        if (kernel == EP_BENCH_GROUPED_GEMM_ZIPF)
          zipf_counts(pt.local_experts, pt.tokens_per_expert, counts);
        st = measure(ops, ctx, &pt, (int32_t)o->warmup, (int32_t)o->iters, times);
        if (st == EP_ERR_UNSUPPORTED) {
          printf("# %s L=%d M=%" PRId64 ": skipped (not supported here)\n", pt.name,
                 (int)pt.local_experts, pt.tokens_per_expert);
          st = EP_OK;
          continue;
        }
        if (st != EP_OK) {
          ep_log_error("bench_kernels: %s at %d experts x %" PRId64 " tokens per expert: %s",
                       pt.name, (int)pt.local_experts, pt.tokens_per_expert, ep_status_str(st));
          break;
        }
        double flop, bytes;
        point_work(&pt, &flop, &bytes);
        const double med = median_of_sorted(times, (int32_t)o->iters);
        const double floor_us = r->copy_GBps > 0 ? bytes / (r->copy_GBps * 1e3) : 0.0;
        const double tflops = med > 0 ? flop / (med * 1e6) : 0.0;
        const double gbps = med > 0 ? bytes / (med * 1e3) : 0.0;
        const double ratio = floor_us > 0 ? med / floor_us : 0.0;
        printf(" %-20s %5d %7" PRId64 " %9" PRId64 " %9" PRId64
               " %11.2f %11.2f %11.2f %8.3f %8.1f %11.2f %8.3f\n",
               pt.name, (int)pt.local_experts, pt.tokens_per_expert, pt.rows, pt.tokens, med,
               times[0], times[o->iters - 1], tflops, gbps, floor_us, ratio);
        fflush(stdout);
        if (csv)
          fprintf(csv,
                  "%s,%s,%d,%d,%d,%d,%d,%" PRId64 ",%" PRId64 ",%" PRId64
                  ",%d,%.3f,%.3f,%.3f,%.0f,%.0f,%.4f,%.3f,%.3f,%.4f\n",
                  pt.name, ops->name, (int)pt.hidden, (int)pt.intermediate, (int)pt.n_experts,
                  (int)pt.top_k, (int)pt.local_experts, pt.tokens_per_expert, pt.rows, pt.tokens,
                  (int)o->iters, med, times[0], times[o->iters - 1], flop, bytes, tflops, gbps,
                  floor_us, ratio);
      }
    }
  }
  free(counts);
  return st;
}

/* Opens the implementation, measures the copy bandwidth, runs the grid and
 * writes the CSV (through a temporary, renamed when complete). */
static int run(bench_opts *o, const int64_t *tokens_per_expert, int32_t n_tokens_per_expert,
               int argc, char **argv)
{
  char provenance[2048] = "", tmp[4096] = "";
  void *ctx = NULL;
  FILE *csv = NULL;
  int rc = EXIT_INTERNAL;
  run_info r = {o, provenance, 0.0, tokens_per_expert, n_tokens_per_expert, argc, argv};
  const ep_bench_point copy = {.kernel = EP_BENCH_COPY,
                               .name = kernel_names[EP_BENCH_COPY],
                               .copy_bytes = o->ops->copy_bytes,
                               .seed = EP__SEED};
  double *times = malloc(sizeof(double) * (size_t)o->iters);
  if (!times) {
    ep_log_error("bench_kernels: out of memory");
    return EXIT_INTERNAL;
  }
  if (o->ops->init(&ctx, (int32_t)o->gpu, provenance, sizeof provenance) != EP_OK)
    goto done;
  if (measure(o->ops, ctx, &copy, (int32_t)o->warmup, (int32_t)o->iters, times) != EP_OK)
    goto done;
  const double copy_us = median_of_sorted(times, (int32_t)o->iters);
  r.copy_GBps = copy_us > 0 ? 2.0 * (double)copy.copy_bytes / (copy_us * 1e3) : 0.0;
  if (o->csv_path) {
    const int n = snprintf(tmp, sizeof tmp, "%s.tmp", o->csv_path);
    if (n < 0 || (size_t)n >= sizeof tmp) {
      ep_log_error("bench_kernels: output path too long: %s", o->csv_path);
      rc = EXIT_BAD_INPUT;
      goto done;
    }
    if (!(csv = fopen(tmp, "w"))) {
      ep_log_error("bench_kernels: cannot write %s: %s", tmp, strerror(errno));
      rc = EXIT_BAD_INPUT;
      goto done;
    }
    write_provenance(csv, &r);
    fputs(csv_header, csv);
  }
  write_provenance(stdout, &r);
  if (run_grid(&r, ctx, times, csv) != EP_OK)
    goto done;
  if (csv) {
    const int write_failed = ferror(csv);
    const int close_failed = fclose(csv) != 0;
    csv = NULL;
    if (write_failed || close_failed || rename(tmp, o->csv_path) != 0) {
      ep_log_error("bench_kernels: writing %s failed: %s", o->csv_path, strerror(errno));
      goto done;
    }
    tmp[0] = '\0';
    printf("# wrote %s\n", o->csv_path);
  }
  rc = EXIT_OK;
done:
  if (csv)
    fclose(csv);
  if (tmp[0] && rc != EXIT_OK)
    unlink(tmp);
  o->ops->free(ctx);
  free(times);
  return rc;
}

int main(int argc, char **argv)
{
  bench_opts o = {.min_tokens = 8,
                  .factor = 2,
                  .iters = -1,
                  .warmup = -1,
                  .local_experts = {8, 32},
                  .n_local = 2,
                  .hidden = 7168,
                  .intermediate = 2048,
                  .n_experts = 256,
                  .top_k = 8};
  const int pa = parse_args(argc, argv, &o);
  if (pa != 0)
    return pa > 0 ? EXIT_OK : EXIT_BAD_INPUT;
  for (int i = 0; !o.ops && i < EP__N_IMPLS; i++)
    if (impls[i]->device_count() > 0)
      o.ops = impls[i];
  if (o.gpu >= o.ops->device_count()) {
    fprintf(stderr, "bench_kernels: -d %s: no device %d (%d visible)\n", o.ops->name, (int)o.gpu,
            (int)o.ops->device_count());
    return EXIT_BAD_INPUT;
  }
  if (o.iters < 0)
    o.iters = o.ops->iters;
  if (o.warmup < 0)
    o.warmup = o.ops->warmup;
  if (o.max_tokens == 0)
    o.max_tokens = o.ops->max_tokens;
  if (o.min_tokens > o.max_tokens) {
    fprintf(stderr, "bench_kernels: -b %" PRId64 " exceeds -e %" PRId64 "\n", o.min_tokens,
            o.max_tokens);
    return EXIT_BAD_INPUT;
  }
  int64_t tokens[EP__MAX_LIST];
  int32_t n_tokens = 0;
  for (int64_t m = o.min_tokens; m <= o.max_tokens && n_tokens < EP__MAX_LIST; m *= o.factor) {
    tokens[n_tokens++] = m;
    if (m > o.max_tokens / o.factor)
      break;
  }
  for (int32_t i = 0; i < o.n_local; i++) {
    if (o.local_experts[i] * tokens[n_tokens - 1] > INT32_MAX / 2) {
      fprintf(stderr,
              "bench_kernels: %" PRId64 " experts x %" PRId64 " tokens exceed the kernels' "
              "int32 rows\n",
              o.local_experts[i], tokens[n_tokens - 1]);
      return EXIT_BAD_INPUT;
    }
  }
  return run(&o, tokens, n_tokens, argc, argv);
}
