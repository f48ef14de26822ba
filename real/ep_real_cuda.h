/* The NCCL backend's own small CUDA kernels (everything else comes from
 * kernels/ep_moe_cuda.h). extern "C" launchers that enqueue on stream (a
 * cudaStream_t); each matches a C reference bit for bit. */
#ifndef EP_REAL_CUDA_H
#define EP_REAL_CUDA_H

#include <stdint.h>

#include "ep_moe_ref.h"
#include "ep_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ep_real_fp8_to_bf16_rows_ref on the device (device pointers). */
ep_status ep_real_cuda_fp8_to_bf16_rows(void *stream, int64_t n_rows, int32_t hidden,
                                        const ep_fp8 *d_q, const float *d_scales,
                                        const int32_t *d_slot, ep_bf16 *d_out);

/* d_acc[i] = (first ? 0 : d_acc[i]) + f32(d_a[i]) for i < n: the shared experts' sum. */
ep_status ep_real_cuda_accumulate_bf16(void *stream, int64_t n, const ep_bf16 *d_a, float *d_acc,
                                       int first);

/* d_out[i] = f32(d_a[i]) + d_b[i]: routed combine plus shared experts. */
ep_status ep_real_cuda_add_bf16_f32(void *stream, int64_t n, const ep_bf16 *d_a, const float *d_b,
                                    float *d_out);

#ifdef __cplusplus
}
#endif

#endif
