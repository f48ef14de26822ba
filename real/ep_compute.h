/* The compute table of the real backend's layer program (ep_layer.h): buffers
 * and the kernels one rank runs, on the host (the C references of
 * kernels/ep_moe_ref.h and real/ep_real_data.h) or on a GPU (the launchers of
 * kernels/ep_moe_cuda.h and kernels/ep_moe_cuda.h). Pointers marked "compute
 * memory" come from alloc (device memory on a GPU); shapes and the other
 * arguments are those of the C reference each op names. Ops may only queue
 * their work (one stream, in order): sync waits for it and reports its
 * failures. Implementations: ep_compute_ref.c, ep_compute_cuda.c. */
#ifndef EP_COMPUTE_H
#define EP_COMPUTE_H

#include <stdint.h>

#include "ep_moe_ref.h"
#include "ep_real_data.h"
#include "ep_status.h"

/* The device a GPU compute runs on, queried before anything is allocated. */
typedef struct ep_compute_device {
  int32_t device; /* local_rank % device count */
  int64_t free_bytes;
  int64_t total_bytes;
  char name[256];    /* cudaDeviceProp.name */
  char versions[64]; /* "driver 12.4, runtime 12.4" */
} ep_compute_device;

typedef struct ep_compute_ops {
  const char *name;
  int on_gpu; /* 1: compute memory is GPU memory; device_count and device_query are set */
  int32_t (*device_count)(void);
  /* Picks and describes this rank's device (rank: for messages);
   * EP_ERR_UNSUPPORTED when there is none. */
  ep_status (*device_query)(int32_t rank, int32_t local_rank, ep_compute_device *out);

  ep_status (*init)(void **out, int32_t device); /* device: from device_query, else -1 */
  void (*free)(void *ctx);                       /* NULL-safe; waits for queued work */
  void *(*stream)(void *ctx); /* the cudaStream_t the transports queue on, or NULL */
  ep_status (*sync)(void *ctx);

  /* Compute memory of bytes (> 0); buf_free is NULL-safe. */
  ep_status (*alloc)(void *ctx, int64_t bytes, void **out);
  void (*buf_free)(void *ctx, void *p);
  /* bytes from src to dst, each host or compute memory (a host dst is ready after sync). */
  ep_status (*copy)(void *ctx, void *dst, const void *src, int64_t bytes);
  ep_status (*zero)(void *ctx, void *p, int64_t bytes);

  /* ep_real_tokens_fill and ep_real_expert_fill into compute memory, bit for bit. */
  ep_status (*fill_tokens)(void *ctx, const ep_real_shape *shape, int64_t first_token,
                           int64_t n_tokens, ep_bf16 *x);
  ep_status (*fill_expert)(void *ctx, const ep_real_shape *shape, int32_t expert, ep_bf16 *w13,
                           ep_bf16 *w2);

  /* ep_moe_permute_ref, ep_moe_permute_fp8_ref, ep_moe_fp8_to_bf16_rows_ref. */
  ep_status (*permute)(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden, int64_t n_slots,
                       const ep_bf16 *x, const int32_t *slot, ep_bf16 *x_perm);
  ep_status (*permute_fp8)(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden,
                           int64_t n_slots, const ep_bf16 *x, const int32_t *slot, ep_fp8 *x_perm,
                           float *scales);
  ep_status (*fp8_to_bf16_rows)(void *ctx, int64_t n_rows, int32_t hidden, const ep_fp8 *q,
                                const float *scales, const int32_t *slot, ep_bf16 *out);
  /* ep_moe_expert_ffn_ref; counts: [in] [n_experts] HOST array. */
  ep_status (*expert_ffn)(void *ctx, int32_t n_experts, const int32_t *counts, int32_t hidden,
                          int32_t inter, const ep_bf16 *x, const ep_bf16 *w13, const ep_bf16 *w2,
                          ep_bf16 *y);
  /* ep_moe_combine_ref. */
  ep_status (*combine)(void *ctx, int64_t n_tokens, int32_t top_k, int32_t hidden, int64_t n_slots,
                       const ep_bf16 *y, const int32_t *slot, const float *weights, ep_bf16 *out);
  /* acc[i] = (first ? 0 : acc[i]) + f32(a[i]), i < n: the shared experts' sum. */
  ep_status (*accumulate_bf16)(void *ctx, int64_t n, const ep_bf16 *a, float *acc, int first);
  /* out[i] = f32(a[i]) + b[i]: routed combine plus shared experts. */
  ep_status (*add_bf16_f32)(void *ctx, int64_t n, const ep_bf16 *a, const float *b, float *out);
} ep_compute_ops;

extern const ep_compute_ops ep_compute_ref;  /* C references, host memory, one thread */
extern const ep_compute_ops ep_compute_cuda; /* CUDA launchers on one stream (CUDA builds) */

#endif
