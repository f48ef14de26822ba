/* Roofline cost of the expert GroupGEMM phase. */
#include "ep_cost.h"

/* One SwiGLU expert's roofline terms for n tokens: FLOPs and HBM bytes. */
static void swiglu_terms(const ep_expert_shape *shape, int64_t n_tokens, double *flops,
                         double *bytes)
{
  const double h = shape->hidden, inter = shape->moe_intermediate, n = (double)n_tokens;
  const double eb = ep_dtype_element_bytes(shape->dtype);
  *flops += 2.0 * n * h * (2.0 * inter) + 2.0 * n * inter * h;
  /* Weights (gate+up and down) once per expert, the token inputs in the GEMM
   * dtype, the 2*I activations written and read back in bf16, outputs in bf16. */
  *bytes += 3.0 * h * inter * eb + n * h * eb + n * 2.0 * inter * 2.0 * 2.0 + n * h * 2.0;
}

double ep_expert_phase_us(const ep_gemm_cost_params *params, const ep_gpu_spec *gpu,
                          const ep_expert_shape *shape, const int64_t *tokens, int32_t n_local,
                          int32_t n_shared, int64_t shared_tokens)
{
  double flops = 0.0, bytes = 0.0;
  for (int32_t e = 0; e < n_local; e++)
    if (tokens[e] > 0)
      swiglu_terms(shape, tokens[e], &flops, &bytes);
  for (int32_t s = 0; s < n_shared; s++)
    if (shared_tokens > 0)
      swiglu_terms(shape, shared_tokens, &flops, &bytes);
  if (flops == 0.0)
    return 0.0;
  const double peak_tflops =
      shape->dtype == EP_DTYPE_FP8 ? gpu->fp8_dense_tflops : gpu->bf16_dense_tflops;
  const double compute_us = flops / (params->mma_efficiency * peak_tflops * 1e12) * 1e6;
  const double memory_us = bytes / (params->hbm_efficiency * gpu->hbm_GBps * 1e9) * 1e6;
  return params->launch_us + (compute_us > memory_us ? compute_us : memory_us);
}
