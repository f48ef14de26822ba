/* Cost models the simulator uses for compute. Every tunable lives in
 * ep_gemm_cost_params so calibration can replace them in one place. */
#ifndef EP_COST_H
#define EP_COST_H

#include <stdint.h>

#include "ep_dtype.h"
#include "ep_topology.h"

typedef struct ep_gemm_cost_params {
  double mma_efficiency; /* achieved / dense peak TFLOPS of the GEMM dtype */
  double hbm_efficiency; /* achieved / peak HBM bandwidth */
  double launch_us;      /* fixed cost per GroupGEMM launch (one per layer phase) */
} ep_gemm_cost_params;

/* Defaults: DeepGEMM's grouped FP8 GEMM reaches 1214-1346 of 1979 TFLOPS on
 * H800 (0.61-0.68, shared/research/data/deepgemm_grouped.csv); HBM reaches about
 * 0.8 of peak in streaming kernels. */
#define EP_GEMM_COST_PARAMS_INIT                                                                   \
  {                                                                                                \
    0.65, 0.80, 5.0                                                                                \
  }

typedef struct ep_expert_shape {
  int32_t hidden;
  int32_t moe_intermediate;
  ep_dtype dtype; /* GEMM input and weight dtype: a payload dtype (bf16 or fp8) */
} ep_expert_shape;

/* Time of one rank's expert phase: a SwiGLU GroupGEMM (gate+up: 2*I x H, down:
 * H x I) over n_local experts with tokens[e] tokens each, plus n_shared shared
 * experts over shared_tokens tokens. Roofline: max(FLOPs / (eff * peak),
 * bytes / (eff * HBM)), where bytes are the weights of experts with at least one
 * token plus activations in and out; plus launch_us. */
double ep_expert_phase_us(const ep_gemm_cost_params *params, const ep_gpu_spec *gpu,
                          const ep_expert_shape *shape, const int64_t *tokens, int32_t n_local,
                          int32_t n_shared, int64_t shared_tokens);

#endif
