/* bench_kernels: the MoE kernels (expert GEMMs, permute, combine, layout,
 * router) timed over a grid of local experts x tokens per expert, on one
 * implementation: the C references (ep_bench_kernels_ref.c, one thread) or the
 * CUDA launchers (ep_bench_kernels_cuda.c, CUDA events). Each implementation is
 * one table of ops; ep_bench_kernels.c (grid, timing harness, table and CSV,
 * command line) calls them and they call nothing of it.
 *
 * A grid point is L local experts with M tokens per expert:
 *   rows   = L * M             expert-major rows (token copies) the experts compute;
 *   tokens = ceil(rows / top_k) tokens routed, permuted and combined: copy c goes to
 *            local expert c % L, copies past rows are dropped, so every expert
 *            gets exactly M rows.
 * Kernels (EP_BENCH_KERNEL_TABLE, in CSV order):
 *   copy                  a plain copy, once per run: the '# copy_GBps:' line
 *   grouped_gemm          SwiGLU experts (gate+up GEMM, SwiGLU, down GEMM), the
 *                         layer's choice of GEMM (cuBLAS: EP_MOE_GEMM_AUTO)
 *   grouped_gemm_zipf     the same with Zipf-like rows per expert (expert e gets
 *                         about rows / (H_L (e + 1)), multiples of 8; same rows)
 *   grouped_gemm_batched, grouped_gemm_grouped, grouped_gemm_loop
 *                         one cuBLAS strategy forced (CUDA only, see ep_moe_cuda.h)
 *   permute               bf16 gather of tokens into expert-major rows
 *   permute_fp8           the same, quantising to e4m3 with per-128 scales (hidden % 128 == 0)
 *   combine               weighted sum of each token's rows back in token order
 *   layout                counting sort of the copies by local expert (slots)
 *   router                gate logits (tokens x n_experts GEMM), softmax, top-k
 *   router_dsv3           gate logits, DeepSeek-V3 selection (sigmoid, bias, 8 groups, top 4
 *                         groups, scale 2.5; when n_experts and top_k allow it)
 *   router_select, router_select_dsv3   the selection alone, from logits
 *
 * CSV columns (units in the names), after '#' provenance lines:
 *   kernel, impl (cpu | cuda), hidden, intermediate, n_experts, top_k, local_experts,
 *   tokens_per_expert (grouped_gemm_zipf: the mean), rows, tokens, repeats,
 *   median_us, min_us, max_us   time of one launch over the repeats
 *   flop                        grouped_gemm* 6*rows*hidden*intermediate,
 *                               router* 2*tokens*hidden*n_experts, combine 2*rows*hidden, else 0
 *   bytes                       memory floor: every input read once, every output written
 *                               once (grouped_gemm*: the non-empty experts' bf16 weights + rows
 *                               in + rows out; permute: tokens in + rows out; combine: rows in
 *                               + tokens out; layout: ids in + slots out; router: tokens in +
 *                               gate weights + ids and weights out; router_select: logits in
 *                               + ids and weights out; bias read where there is one)
 *   TFLOPs                      flop / median (1e12 flop/s)
 *   GBps                        bytes / median (1e9 B/s)
 *   floor_us                    bytes / copy_GBps: the time at the copy bandwidth measured
 *                               in the same run (bytes read + written per second)
 *   ratio_floor                 median / floor_us (1 = at the copy bandwidth) */
#ifndef EP_BENCH_KERNELS_H
#define EP_BENCH_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "ep_moe_ref.h"
#include "ep_status.h"

#define EP_BENCH_KERNEL_TABLE(X)                                                                   \
  X(EP_BENCH_COPY, "copy")                                                                         \
  X(EP_BENCH_GROUPED_GEMM, "grouped_gemm")                                                         \
  X(EP_BENCH_GROUPED_GEMM_ZIPF, "grouped_gemm_zipf")                                               \
  X(EP_BENCH_GROUPED_GEMM_BATCHED, "grouped_gemm_batched")                                         \
  X(EP_BENCH_GROUPED_GEMM_GROUPED, "grouped_gemm_grouped")                                         \
  X(EP_BENCH_GROUPED_GEMM_LOOP, "grouped_gemm_loop")                                               \
  X(EP_BENCH_PERMUTE, "permute")                                                                   \
  X(EP_BENCH_PERMUTE_FP8, "permute_fp8")                                                           \
  X(EP_BENCH_COMBINE, "combine")                                                                   \
  X(EP_BENCH_LAYOUT, "layout")                                                                     \
  X(EP_BENCH_ROUTER, "router")                                                                     \
  X(EP_BENCH_ROUTER_DSV3, "router_dsv3")                                                           \
  X(EP_BENCH_ROUTER_SELECT, "router_select")                                                       \
  X(EP_BENCH_ROUTER_SELECT_DSV3, "router_select_dsv3")

typedef enum {
#define EP__BENCH_ENUM(id, name) id,
  EP_BENCH_KERNEL_TABLE(EP__BENCH_ENUM)
#undef EP__BENCH_ENUM
      EP_BENCH_KERNEL_COUNT
} ep_bench_kernel;

#define EP_BENCH_BIT(kernel) (1u << (kernel))
#define EP_BENCH_GEMMS                                                                             \
  (EP_BENCH_BIT(EP_BENCH_GROUPED_GEMM) | EP_BENCH_BIT(EP_BENCH_GROUPED_GEMM_ZIPF) |                \
   EP_BENCH_BIT(EP_BENCH_GROUPED_GEMM_BATCHED) | EP_BENCH_BIT(EP_BENCH_GROUPED_GEMM_GROUPED) |     \
   EP_BENCH_BIT(EP_BENCH_GROUPED_GEMM_LOOP))
#define EP_BENCH_ROUTERS                                                                           \
  (EP_BENCH_BIT(EP_BENCH_ROUTER) | EP_BENCH_BIT(EP_BENCH_ROUTER_DSV3) |                            \
   EP_BENCH_BIT(EP_BENCH_ROUTER_SELECT) | EP_BENCH_BIT(EP_BENCH_ROUTER_SELECT_DSV3))

/* The seeded inputs, the same in every implementation: array A is
 * ep_moe_fill_uniform_*(seed + EP_BENCH_SEED_A, in [LO, HI)); expert e's
 * weights use seed + EP_BENCH_SEED_W13 + e and seed + EP_BENCH_SEED_W2 + e, in
 * +-1/sqrt(hidden) and +-1/sqrt(intermediate). */
enum {
  EP_BENCH_SEED_X = 0,       /* tokens, and the experts' input rows: bf16 in [-1, 1) */
  EP_BENCH_SEED_Y = 1,       /* expert output rows (combine): bf16 in [-1, 1) */
  EP_BENCH_SEED_WEIGHTS = 2, /* combine weights: float in [0, 1) */
  EP_BENCH_SEED_W_GATE = 3,  /* router gate: bf16 in [-0.1, 0.1) */
  EP_BENCH_SEED_BIAS = 4,    /* router bias (dsv3): float in [-0.05, 0.05) */
  EP_BENCH_SEED_LOGITS = 5,  /* router_select logits: float in [-4, 4) */
  EP_BENCH_SEED_W13 = 16,
  EP_BENCH_SEED_W2 = EP_BENCH_SEED_W13 + EP_MOE_MAX_EXPERTS
};
#define EP_BENCH_W_GATE_RANGE 0.1f
#define EP_BENCH_BIAS_RANGE 0.05f
#define EP_BENCH_LOGITS_RANGE 4.0f

/* One kernel at one grid point. The arrays belong to the caller and stay valid
 * until the implementation's teardown. */
typedef struct ep_bench_point {
  ep_bench_kernel kernel;
  const char *name; /* the kernel's, for messages */
  int32_t hidden, intermediate;
  int32_t n_experts; /* the router's */
  int32_t top_k;
  int32_t local_experts;
  int64_t tokens_per_expert; /* grouped_gemm_zipf: the mean */
  int64_t rows;              /* local_experts * tokens_per_expert */
  int64_t tokens;            /* ceil(rows / top_k) */
  int64_t copy_bytes;        /* copy: bytes copied */
  const int32_t *counts;     /* [local_experts] rows per expert, summing to rows */
  const int32_t *experts;    /* [tokens * top_k] local expert of each copy, -1 past rows */
  const int32_t *slot;       /* [tokens * top_k] its row (ep_moe_layout_ref), -1 if dropped */
  ep_moe_router_cfg router;  /* router kernels */
  int32_t router_bias;       /* router kernels: 1 when a seeded bias steers selection */
  uint64_t seed;
} ep_bench_point;

/* Clock marks per batch of timed launches: the harness queues up to
 * EP_BENCH_MARKS - 1 launches back to back between marks. */
#define EP_BENCH_MARKS 65

/* One implementation of the kernels. */
typedef struct ep_bench_kernels_ops {
  const char *name;              /* the -d value and the CSV's impl column */
  uint32_t kernels;              /* EP_BENCH_BIT(k) set: kernel k is offered */
  const char *copy_what;         /* how the copy kernel copies, for the '# copy_GBps:' line */
  int64_t copy_bytes;            /* the copy kernel's size */
  int32_t warmup, iters;         /* default -w and -n */
  int64_t max_tokens;            /* default -e */
  int32_t (*device_count)(void); /* usable devices; the host counts as one */
  /* Opens device (< device_count) into *out; writes '# ' lines describing the
   * device, its versions and the timing, newline-terminated, to provenance. */
  ep_status (*init)(void **out, int32_t device, char *provenance, size_t provenance_bytes);
  void (*free)(void *ctx); /* NULL-safe */
  /* Allocates and fills pt's seeded inputs, and where the implementation is not
   * the C reference checks one launch against it. EP_ERR_UNSUPPORTED: refused
   * here (e.g. by cuBLAS), the point is skipped. Call teardown after any outcome. */
  ep_status (*setup)(void *ctx, const ep_bench_point *pt);
  ep_status (*launch)(void *ctx); /* one launch of the point set up (may only be queued) */
  /* mark(i) records clock mark i (< EP_BENCH_MARKS) after the launches queued
   * so far; elapsed waits for them and sets times_us[j] = mark j+1 - mark j, j < n. */
  ep_status (*mark)(void *ctx, int32_t i);
  ep_status (*elapsed)(void *ctx, int32_t n, double *times_us);
  void (*teardown)(void *ctx); /* frees what setup made; no-op when nothing is set up */
} ep_bench_kernels_ops;

extern const ep_bench_kernels_ops ep_bench_kernels_ref;  /* C references, one thread */
extern const ep_bench_kernels_ops ep_bench_kernels_cuda; /* CUDA builds only */

#endif
