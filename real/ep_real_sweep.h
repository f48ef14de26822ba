/* Kernel sweep for calibration: times the MoE kernels over a grid of shapes and
 * writes one CSV row per (kernel, shape) with '#' provenance lines.
 *
 * Grid: local experts L (--sweep-experts) x tokens per expert M (--sweep-tokens);
 * hidden, intermediate, n_experts and top_k come from the scenario. At each point
 *   rows   = L * M     expert-major rows (token copies) the experts compute;
 *   tokens = ceil(rows / top_k) tokens permuted, combined and routed (copies past
 *            rows are dropped, so every expert gets exactly M rows).
 * Kernels (the C references on the cpu backend, the CUDA launchers on nccl):
 *   grouped_gemm  SwiGLU experts: gate+up GEMM, SwiGLU, down GEMM (expert_ffn)
 *   permute       bf16 gather of tokens into expert-major rows
 *   permute_fp8   the same, quantising to e4m3 with per-128 scales (hidden % 128 == 0)
 *   combine       weighted sum of each token's rows back in token order
 *   router        gate logits (tokens x n_experts GEMM), softmax, top-k
 *
 * CSV columns (units in the names):
 *   kernel, backend, hidden, intermediate, n_experts, top_k, local_experts,
 *   tokens_per_expert, rows, tokens, repeats,
 *   median_us, min_us, max_us   time of one launch over the repeats
 *   flop                        grouped_gemm 6*rows*hidden*intermediate,
 *                               router 2*tokens*hidden*n_experts, combine 2*rows*hidden, permute 0
 *   bytes                       memory floor: every input read once, every output written once
 *                               (grouped_gemm: L experts' bf16 weights + rows in + rows out;
 *                               permute: tokens in + rows out; combine: rows in + tokens out;
 *                               router: tokens in + gate weights + ids and weights out)
 *   TFLOPs                      flop / median (1e12 flop/s)
 *   GBps                        bytes / median (1e9 B/s); over the '# copy_GBps:' line
 *                               (the device's copy bandwidth, bytes read + written,
 *                               measured in the same run) it is the fraction of the memory
 *                               floor reached, the inverse of bench_kernels' ratio_floor */
#ifndef EP_REAL_SWEEP_H
#define EP_REAL_SWEEP_H

#include <stdint.h>
#include <stdio.h>

#include "ep_scenario.h"
#include "ep_status.h"

typedef enum {
  EP_SWEEP_GROUPED_GEMM,
  EP_SWEEP_PERMUTE,
  EP_SWEEP_PERMUTE_FP8,
  EP_SWEEP_COMBINE,
  EP_SWEEP_ROUTER,
  EP_SWEEP_KERNEL_COUNT
} ep_sweep_kernel;

const char *ep_sweep_kernel_name(ep_sweep_kernel kernel);

typedef struct ep_sweep_point {
  ep_sweep_kernel kernel;
  int32_t hidden, intermediate, n_experts, top_k;
  int32_t local_experts;
  int64_t tokens_per_expert;
  int64_t rows;   /* local_experts * tokens_per_expert */
  int64_t tokens; /* ceil(rows / top_k) */
  uint64_t seed;
} ep_sweep_point;

/* One backend's kernels. measure prepares seeded inputs for pt, checks the
 * kernel's output against the C reference where it is not the reference, runs
 * warmup untimed launches, then fills times_us[repeats] with one time per launch. */
typedef struct ep_sweep_impl {
  const char *backend;   /* "cpu" or "nccl" */
  char provenance[1024]; /* "# ..." lines describing the device, newline-terminated */
  int32_t warmup;
  void *ctx;
  ep_status (*measure)(void *ctx, const ep_sweep_point *pt, int32_t warmup, int32_t repeats,
                       double *times_us);
  void (*free)(void *ctx);
} ep_sweep_impl;

/* The C reference kernels, one thread, clock_gettime(CLOCK_MONOTONIC). */
ep_status ep_sweep_cpu_impl(ep_sweep_impl *out);

/* Flop and memory-floor bytes of one launch (see the column notes above). */
void ep_sweep_point_work(const ep_sweep_point *pt, double *flop, double *bytes);

/* Parses "8,16,32" into values[*n] (at most max_n, each in 1..max_value);
 * EP_ERR_PARSE with a message naming what on failure. */
ep_status ep_sweep_parse_list(const char *what, const char *list, int64_t max_value,
                              int64_t *values, int32_t max_n, int32_t *n);

typedef struct ep_sweep_cfg {
  const int64_t *local_experts;
  int32_t n_local_experts;
  const int64_t *tokens_per_expert;
  int32_t n_tokens_per_expert;
  int32_t repeats;
} ep_sweep_cfg;

/* Runs the grid with impl and writes the CSV (provenance, header, rows) to csv.
 * tool_argv: argc/argv for the provenance; scenario_path for its line. */
ep_status ep_sweep_run(const ep_scenario *s, const char *scenario_path, const ep_sweep_cfg *cfg,
                       const ep_sweep_impl *impl, int argc, char **argv, FILE *csv);

/* Sets up one backend's kernels (ep_sweep_cpu_impl's or ep_sweep_cuda_impl's). */
typedef ep_status (*ep_sweep_impl_init)(ep_sweep_impl *out, int32_t local_rank);

/* epsim-real --sweep: sets up the kernels with impl_init (use_nccl: the GPU's,
 * for the defaults), parses the lists, writes DIR/sweep.csv (through a
 * temporary, renamed when complete) and prints where. Returns an exit code:
 * 0 ok, 1 bad input, 2 internal error. */
int ep_real_sweep_main(const ep_scenario *s, const char *scenario_path, const char *out_dir,
                       int use_nccl, ep_sweep_impl_init impl_init, const char *tokens_list,
                       const char *experts_list, int32_t repeats, int32_t local_rank, int argc,
                       char **argv);

/* The CUDA launchers of ep_moe_cuda.h on GPU local_rank % device count, timed
 * with CUDA events. Built with CUDA and NCCL only (ep_real_backends.c). */
ep_status ep_sweep_cuda_impl(ep_sweep_impl *out, int32_t local_rank);

#endif
