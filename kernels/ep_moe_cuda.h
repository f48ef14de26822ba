/* CUDA versions of the MoE kernels in ep_moe_ref.h, behind extern "C"
 * launchers that C code can call (this header needs no CUDA header).
 *
 * Every launcher takes the same arguments as its C reference, with device
 * pointers (d_ prefix) instead of host ones, and enqueues its work on the
 * context's stream: EP_OK means the work was enqueued; a failure while it runs
 * shows up at the next ep_moe_cuda_sync. Kernels never write outside the
 * buffers described in ep_moe_ref.h: bad ids and slots in device data are
 * treated as dropped copies instead of reported.
 *
 * Where each piece runs: router logits and the expert GEMMs are cuBLAS
 * (cublasGemmEx, cublasGemmGroupedBatchedEx, cublasGemmStridedBatchedEx); the
 * router selection, layout, permute, SwiGLU and combine are kernels of ours in
 * ep_moe_cuda.cu. */
#ifndef EP_MOE_CUDA_H
#define EP_MOE_CUDA_H

#include <stdint.h>

#include "ep_moe_ref.h" /* and ep_status.h, with C linkage */

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque per-device, per-stream context: cuBLAS handle, device workspace. Not
 * thread-safe; use one per host thread, with its device current. Calls that
 * need scratch (router without d_logits, layout, expert FFN) share one
 * workspace; growing it waits for the stream. */
typedef struct ep_moe_cuda ep_moe_cuda;

/* How the expert GEMMs are issued (all cuBLAS, bf16 in/out, fp32 accumulate). */
typedef enum {
  EP_MOE_GEMM_AUTO,    /* BATCHED when all experts have the same rows, else GROUPED
                          (falling back to LOOP if cuBLAS does not support GROUPED) */
  EP_MOE_GEMM_GROUPED, /* one cublasGemmGroupedBatchedEx, one group per non-empty expert */
  EP_MOE_GEMM_LOOP,    /* one cublasGemmEx per non-empty expert */
  EP_MOE_GEMM_BATCHED, /* one cublasGemmStridedBatchedEx; equal rows per expert only */
} ep_moe_gemm_impl;

const char *ep_moe_gemm_impl_name(ep_moe_gemm_impl impl);

/* Number of usable CUDA devices: 0 when there is no driver or no device. */
int32_t ep_moe_cuda_device_count(void);

/* Creates a context on device. stream is a cudaStream_t, or NULL for a new
 * non-blocking stream the context owns. *out is freed with ep_moe_cuda_free. */
ep_status ep_moe_cuda_init(ep_moe_cuda **out, int32_t device, void *stream);
/* NULL-safe; waits for the stream, so free it before destroying a stream you passed in. */
void ep_moe_cuda_free(ep_moe_cuda *ctx);

void *ep_moe_cuda_stream(const ep_moe_cuda *ctx); /* the cudaStream_t in use */
int32_t ep_moe_cuda_device(const ep_moe_cuda *ctx);
ep_status ep_moe_cuda_sync(ep_moe_cuda *ctx); /* waits for the stream, reports errors */

/* Device fills matching ep_moe_fill_uniform_f32/bf16 bit for bit.
 * d_out: [out] [n] float or bf16 on the device. */
ep_status ep_moe_cuda_fill_uniform_f32(ep_moe_cuda *ctx, float *d_out, int64_t n, uint64_t seed,
                                       float lo, float hi);
ep_status ep_moe_cuda_fill_uniform_bf16(ep_moe_cuda *ctx, ep_bf16 *d_out, int64_t n, uint64_t seed,
                                        float lo, float hi);

/* ---- router ------------------------------------------------------------- */

/* Scores and selection from logits, one warp per token (ep_moe_router_scores_ref
 * followed by ep_moe_router_topk_ref). Given the scores this kernel wrote, the
 * selected experts and the weights equal the reference's bit for bit.
 * d_logits:  [in]  [n_tokens * n_experts] float
 * d_bias:    [in]  [n_experts] float, or NULL
 * d_scores:  [out] [n_tokens * n_experts] float, or NULL
 * d_experts: [out] [n_tokens * top_k] int32
 * d_weights: [out] [n_tokens * top_k] float, or NULL */
ep_status ep_moe_cuda_router_select(ep_moe_cuda *ctx, const ep_moe_router_cfg *cfg,
                                    int64_t n_tokens, const float *d_logits, const float *d_bias,
                                    float *d_scores, int32_t *d_experts, float *d_weights);

/* The whole router: logits = x · w_gate^T by cublasGemmEx (fp32 or bf16
 * inputs, fp32 accumulate and output), then ep_moe_cuda_router_select.
 * d_x: [in] [n_tokens * hidden] dtype; d_w_gate: [in] [n_experts * hidden] dtype;
 * d_logits: [out] [n_tokens * n_experts] float, or NULL (context workspace);
 * the rest as ep_moe_cuda_router_select. */
ep_status ep_moe_cuda_router(ep_moe_cuda *ctx, const ep_moe_router_cfg *cfg, int64_t n_tokens,
                             int32_t hidden, ep_dtype dtype, const void *d_x, const void *d_w_gate,
                             const float *d_bias, float *d_logits, float *d_scores,
                             int32_t *d_experts, float *d_weights);

/* ---- dispatch layout ---------------------------------------------------- */

/* ep_moe_layout_ref on the device: per-block counts, one scan, then each copy's
 * slot from its block's base and its rank among earlier copies of the same
 * expert in the block (no global atomics, so the result is exactly the
 * reference's). Ids outside -1..n_experts-1 count as dropped.
 * d_experts: [in] [n_copies] int32; d_counts: [out] [n_experts] int32;
 * d_offsets: [out] [n_experts + 1] int32; d_slot: [out] [n_copies] int32;
 * d_slot_copy: [out] [n_copies] int32 (first offsets[n_experts] written), or NULL. */
ep_status ep_moe_cuda_layout(ep_moe_cuda *ctx, int64_t n_copies, int32_t n_experts,
                             const int32_t *d_experts, int32_t *d_counts, int32_t *d_offsets,
                             int32_t *d_slot, int32_t *d_slot_copy);

/* ---- permute ------------------------------------------------------------ */

/* One block per token reads the token's row once and writes it to each of its
 * kept slots (16-byte accesses when hidden is a multiple of 8). Arguments as
 * ep_moe_permute_ref; slots >= n_slots are skipped. */
ep_status ep_moe_cuda_permute(ep_moe_cuda *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                              int64_t n_slots, const ep_bf16 *d_x, const int32_t *d_slot,
                              ep_bf16 *d_x_perm);

/* As ep_moe_permute_fp8_ref (bit for bit): 16 threads per 128-element block.
 * d_x_perm: [out] [n_slots * hidden] fp8; d_scales: [out] [n_slots * hidden / 128] float.
 * There is no unaligned path: d_x must be 16-byte, d_x_perm 8-byte and d_scales
 * 4-byte aligned (cudaMalloc gives 256), else EP_ERR_UNSUPPORTED, nothing written. */
ep_status ep_moe_cuda_permute_fp8(ep_moe_cuda *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                                  int64_t n_slots, const ep_bf16 *d_x, const int32_t *d_slot,
                                  ep_fp8 *d_x_perm, float *d_scales);

/* ep_moe_fp8_to_bf16_rows_ref on the device, bit for bit: one block per row, 8
 * values per thread (8-byte fp8 loads, 16-byte bf16 stores; cudaMalloc bases).
 * hidden a multiple of EP_FP8_BLOCK and n_rows <= INT32_MAX, else EP_ERR_INVALID. */
ep_status ep_moe_cuda_fp8_to_bf16_rows(ep_moe_cuda *ctx, int64_t n_rows, int32_t hidden,
                                       const ep_fp8 *d_q, const float *d_scales,
                                       const int32_t *d_slot, ep_bf16 *d_out);

/* ---- SwiGLU experts ----------------------------------------------------- */

/* C_e = A_e · W_e^T per expert (ep_moe_grouped_gemm_ref), bf16 in and out,
 * fp32 accumulate. counts is a HOST array [n_experts] (cuBLAS takes the shapes
 * on the host); d_a [rows * k], d_w [n_experts * n * k], d_c [rows * n] are device
 * bf16. EP_MOE_GEMM_BATCHED with unequal counts is EP_ERR_INVALID. */
ep_status ep_moe_cuda_grouped_gemm(ep_moe_cuda *ctx, ep_moe_gemm_impl impl, int32_t n_experts,
                                   const int32_t *counts, int32_t n, int32_t k, const ep_bf16 *d_a,
                                   const ep_bf16 *d_w, ep_bf16 *d_c);

/* ep_moe_swiglu_ref on the device. d_h13: [in] [n_rows * 2 * inter] bf16;
 * d_h: [out] [n_rows * inter] bf16. */
ep_status ep_moe_cuda_swiglu(ep_moe_cuda *ctx, int64_t n_rows, int32_t inter, const ep_bf16 *d_h13,
                             ep_bf16 *d_h);

/* The SwiGLU experts (ep_moe_expert_ffn_ref): gate+up grouped GEMM into a
 * [rows, 2*inter] workspace, SwiGLU, down grouped GEMM. counts is a HOST array;
 * intermediates live in the context's workspace (rows * 3 * inter * 2 bytes). */
ep_status ep_moe_cuda_expert_ffn(ep_moe_cuda *ctx, ep_moe_gemm_impl impl, int32_t n_experts,
                                 const int32_t *counts, int32_t hidden, int32_t inter,
                                 const ep_bf16 *d_x, const ep_bf16 *d_w13, const ep_bf16 *d_w2,
                                 ep_bf16 *d_y);

/* ---- combine ------------------------------------------------------------ */

/* One block per token gathers its kept copies' rows and writes the weighted
 * sum once (no atomics): each expert output row is read once, each token row
 * written once. Bit for bit ep_moe_combine_ref; slots >= n_slots are skipped. */
ep_status ep_moe_cuda_combine(ep_moe_cuda *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                              int64_t n_slots, const ep_bf16 *d_y, const int32_t *d_slot,
                              const float *d_weights, ep_bf16 *d_out);

/* ep_moe_accumulate_bf16_ref and ep_moe_add_bf16_f32_ref on the device, bit for
 * bit (device arrays of n elements; n < 0 is EP_ERR_INVALID). */
ep_status ep_moe_cuda_accumulate_bf16(ep_moe_cuda *ctx, int64_t n, const ep_bf16 *d_a, float *d_acc,
                                      int first);
ep_status ep_moe_cuda_add_bf16_f32(ep_moe_cuda *ctx, int64_t n, const ep_bf16 *d_a,
                                   const float *d_b, float *d_out);

#ifdef __cplusplus
}
#endif

#endif
