/* Expert placement tables: contiguous blocks or round robin, one slot per expert. */
#include "ep_placement.h"

#include <stdlib.h>
#include <string.h>

#include "ep_alloc.h"

ep_status ep_placement_init(ep_placement *out, ep_placement_kind kind, int32_t n_experts,
                            int32_t n_ranks)
{
  if (!out)
    return EP_ERR_INVALID;
  memset(out, 0, sizeof *out);
  if (n_ranks <= 0 || n_experts <= 0 || n_experts % n_ranks != 0) {
    ep_log_error("placement: n_experts (%d) must be a positive multiple of n_ranks (%d)",
                 (int)n_experts, (int)n_ranks);
    return EP_ERR_INVALID;
  }
  if (kind != EP_PLACEMENT_CONTIGUOUS && kind != EP_PLACEMENT_ROUND_ROBIN) {
    ep_log_error("placement: unknown placement kind %d", (int)kind);
    return EP_ERR_INVALID;
  }
  int32_t per_rank = n_experts / n_ranks;
  int32_t *rank_of = malloc((size_t)n_experts * sizeof *rank_of);
  int32_t *slot_of = malloc((size_t)n_experts * sizeof *slot_of);
  int32_t *expert_of = malloc((size_t)n_experts * sizeof *expert_of); /* n_ranks * per_rank */
  if (!rank_of || !slot_of || !expert_of) {
    EP__FREE_ALL(rank_of, slot_of, expert_of);
    ep_log_error("placement: out of memory for %d experts", (int)n_experts);
    return EP_ERR_NOMEM;
  }
  for (int32_t e = 0; e < n_experts; e++) {
    int32_t rank, slot;
    if (kind == EP_PLACEMENT_CONTIGUOUS) {
      rank = e / per_rank;
      slot = e % per_rank;
    } else {
      rank = e % n_ranks;
      slot = e / n_ranks;
    }
    rank_of[e] = rank;
    slot_of[e] = slot;
    expert_of[(size_t)rank * (size_t)per_rank + (size_t)slot] = e;
  }
  out->n_experts = n_experts;
  out->n_ranks = n_ranks;
  out->experts_per_rank = per_rank;
  out->rank_of_expert = rank_of;
  out->slot_of_expert = slot_of;
  out->expert_of_slot = expert_of;
  return EP_OK;
}

void ep_placement_free(ep_placement *placement)
{
  if (!placement)
    return;
  EP__FREE_ALL(placement->rank_of_expert, placement->slot_of_expert, placement->expert_of_slot);
  memset(placement, 0, sizeof *placement);
}
