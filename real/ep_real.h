/* What one rank of the real backend knows before the layer runs, whatever the
 * backend (the layer program, ep_layer.h): its tokens' routing (regenerated from the plan), the
 * send side of the exchange layout, the plan's prediction of what it will
 * receive, and the memory estimate checked before any buffer is allocated.
 * No MPI, CUDA or NCCL here. */
#ifndef EP_REAL_H
#define EP_REAL_H

#include <stdint.h>

#include "ep_dtype.h"
#include "ep_exchange.h"
#include "ep_plan.h"
#include "ep_real_data.h"
#include "ep_routing.h"
#include "ep_status.h"

typedef struct ep_real_rank {
  const ep_plan *plan; /* borrowed; outlives the rank */
  ep_real_shape shape;
  int32_t rank;
  ep_dtype wire;      /* dispatch payload: bf16 or fp8 rows of plan->dispatch_bytes_per_token */
  int64_t n_copies;   /* tokens_per_rank * top_k */
  int32_t *experts;   /* [n_copies] global expert of each copy */
  float *weights;     /* [n_copies] router weight */
  int32_t *dest_rank; /* [n_copies] computing rank, -1 if dropped */
  int32_t
      *copy_send_slot; /* [n_copies] send row of each copy, -1 if dropped (int32 for the kernels) */
  ep_exchange_layout layout;      /* send side from init; recv side from ep_real_rank_set_recv */
  int64_t *plan_recv_slot_counts; /* [n_ranks * experts_per_rank] what the plan says arrives */
  int64_t n_recv_planned;         /* plan->tokens_recv_rank[rank] */
  int32_t *recv_expert_slot;      /* [n_recv_planned] expert-major row of each recv row */
  int32_t *expert_recv_slot;      /* [n_recv_planned] recv row of each expert-major row */
  int32_t *expert_counts;         /* [experts_per_rank] rows per local expert */
} ep_real_rank;

/* Sets up rank for plan (built from router): regenerates its tokens' routing
 * with ep_plan_rank_tokens and builds the send layout. Refuses (EP_ERR_INVALID,
 * with a message) a wire that is not a payload dtype or whose row size
 * (ep_dtype_bytes_per_token) differs from the plan's dispatch bytes,
 * or sizes beyond the kernels' int32 indices. *out owns its arrays; free with
 * ep_real_rank_free. */
ep_status ep_real_rank_init(const ep_plan *plan, const ep_router *router,
                            const ep_real_shape *shape, int32_t rank, ep_dtype wire,
                            ep_real_rank *out);

/* Recv side from the counts exchange's result (recv_slot_counts: [in]
 * [n_ranks * experts_per_rank], row = src rank). Counts that differ from the
 * plan's are EP_ERR_BACKEND: the exchange delivered something else. */
ep_status ep_real_rank_set_recv(ep_real_rank *rk, const int64_t *recv_slot_counts);

void ep_real_rank_free(ep_real_rank *rk); /* NULL-safe */

/* Memory one rank needs, by the buffers of ep_layer.c. */
typedef struct ep_real_mem {
  int32_t local_experts; /* routed experts on the rank, plus shared ones */
  int64_t weights_bytes; /* bf16 w13 + w2 of those experts */
  int64_t buffers_bytes; /* tokens, send/recv rows, expert-major in/out, GEMM scratch, outputs */
  int64_t total_bytes;
} ep_real_mem;

/* on_gpu: 1 for a GPU compute's device memory (adds the GEMM intermediates
 * it keeps), 0 for the reference compute's host memory. */
ep_real_mem ep_real_mem_estimate(const ep_plan *plan, const ep_real_shape *shape, int32_t rank,
                                 ep_dtype wire, int on_gpu);

/* "1.50 GiB" style, into buf. Returns buf. */
const char *ep_real_format_bytes(double bytes, char *buf, int buf_len);

#endif
