/* Exchange layout: where every token copy sits in the buffers of one rank's
 * dispatch and combine all-to-alls. One function, computed from the dispatch
 * plan, serves the CPU (MPI_Alltoallv) and NCCL (grouped ncclSend/ncclRecv)
 * backends, so the multi-rank logic the CPU tests exercise is the GPU's too.
 *
 * Row orders (a "copy" is token t's k-th routed expert, index t * top_k + k):
 *   send buffer   dst-rank-major, then the expert's local slot on dst, then copy index;
 *   recv buffer   src-rank-major, then local slot, then the src's copy index
 *                 (exactly the senders' blocks, concatenated by MPI/NCCL);
 *   expert-major  local slot-major, then src rank, then copy index: the grouped
 *                 GEMM input, i.e. each expert's copies in global token order.
 * Combine reverses the path: expert-major -> recv order -> back to the senders,
 * who receive their copies in send-buffer order. */
#ifndef EP_EXCHANGE_H
#define EP_EXCHANGE_H

#include <stdint.h>

#include "ep_plan.h"
#include "ep_status.h"

typedef struct ep_exchange_layout {
  int32_t n_ranks;
  int32_t rank;
  int32_t experts_per_rank;
  int32_t top_k;
  int64_t tokens_per_rank;

  /* Dispatch send side: this rank's token copies. */
  int64_t n_send;            /* kept copies of this rank's tokens */
  int64_t *send_counts;      /* [n_ranks] rows to each dst rank */
  int64_t *send_displs;      /* [n_ranks] first send row of each dst block */
  int64_t *send_slot_counts; /* [n_ranks * experts_per_rank] row = dst rank, col = slot on dst */
  int64_t *send_copy;        /* [n_send] copy index (t * top_k + k) of each send row */
  int64_t *copy_send_row;    /* [tokens_per_rank * top_k] send row of each copy, -1 if dropped */

  /* Dispatch recv side: the copies this rank's experts compute. */
  int64_t n_recv;
  int64_t *recv_counts;        /* [n_ranks] rows from each src rank */
  int64_t *recv_displs;        /* [n_ranks] first recv row of each src block */
  int64_t *recv_slot_counts;   /* [n_ranks * experts_per_rank] row = src rank, col = local slot */
  int64_t *expert_counts;      /* [experts_per_rank] rows per local expert (GEMM group sizes) */
  int64_t *expert_offsets;     /* [experts_per_rank + 1] first expert-major row of each slot */
  int64_t *recv_to_expert_row; /* [n_recv] expert-major row of each recv row */
  int64_t *expert_to_recv_row; /* [n_recv] its inverse: recv row of each expert-major row */
} ep_exchange_layout;

/* Send side from this rank's per-copy detail (ep_plan_rank_tokens):
 * experts, dest_rank: [in] [tokens_per_rank * top_k] global expert, computing rank or -1.
 * Checks every copy against the plan's placement and its per-(src, expert) kept
 * counts, so a detail that disagrees with the plan is EP_ERR_INVALID.
 * *out owns its arrays (free with ep_exchange_layout_free); on failure it holds
 * nothing to free. The recv side is left empty. */
ep_status ep_exchange_send_init(const ep_plan *plan, int32_t rank, const int32_t *experts,
                                const int32_t *dest_rank, ep_exchange_layout *out);

/* Recv side from the counts exchange's result:
 * recv_slot_counts: [in] [n_ranks * experts_per_rank] row = src rank, col = local slot,
 * the copies src sends to each of this rank's experts (what src put in its
 * send_slot_counts row for this rank). Replaces any previous recv side. */
ep_status ep_exchange_recv_init(ep_exchange_layout *layout, const int64_t *recv_slot_counts);

/* The recv counts the plan predicts for rank: kept_src_expert of its local experts.
 * out: [out] [n_ranks * experts_per_rank] row = src rank, col = local slot. */
void ep_exchange_plan_recv_counts(const ep_plan *plan, int32_t rank, int64_t *out);

void ep_exchange_layout_free(ep_exchange_layout *layout); /* NULL-safe; leaves it zeroed */

#endif
