/* Expert placement: which EP rank holds each expert, and in which local slot. */
#ifndef EP_PLACEMENT_H
#define EP_PLACEMENT_H

#include <stdint.h>

#include "ep_status.h"

typedef enum {
  EP_PLACEMENT_CONTIGUOUS,  /* rank r holds experts r*E/ep .. (r+1)*E/ep-1 */
  EP_PLACEMENT_ROUND_ROBIN, /* expert e lives on rank e % ep */
} ep_placement_kind;

typedef struct ep_placement {
  int32_t n_experts;
  int32_t n_ranks;
  int32_t experts_per_rank;
  int32_t *rank_of_expert; /* [n_experts] owning rank */
  int32_t *slot_of_expert; /* [n_experts] local slot on that rank, 0..experts_per_rank-1 */
  int32_t *expert_of_slot; /* [n_ranks * experts_per_rank] row = rank: global expert id */
} ep_placement;

/* n_experts must be a positive multiple of n_ranks. Arrays are owned by *out;
 * release them with ep_placement_free. On failure *out holds nothing to free. */
ep_status ep_placement_init(ep_placement *out, ep_placement_kind kind, int32_t n_experts,
                            int32_t n_ranks);
void ep_placement_free(ep_placement *placement); /* NULL-safe; leaves zeroed struct */

#endif
