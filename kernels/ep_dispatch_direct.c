/* Dispatch "direct": one stage per direction on the fabric's route. Dispatch
 * moves each kept copy from the token's rank to the expert's rank, combine
 * brings it back; one message per copy (no de-duplication per rank). */
#include "ep_dispatch.h"

#include <stdlib.h>

static ep_status build_stages(ep_plan *plan)
{
  const int32_t n = plan->n_ranks;
  /* Dispatch is exactly the plan's matrices (one message per kept copy), so
   * the stage borrows them; combine's messages run the other way. */
  ep_stage *comb = &plan->combine_stage[0];
  ep_status st = ep_stage_init(comb, EP_LINK_ROUTE, n);
  if (st != EP_OK)
    return st;
  free(comb->bytes_src_dst);
  comb->bytes_src_dst = plan->combine_bytes_src_dst;
  comb->owns_bytes = 0;
  plan->dispatch_stage[0] = (ep_stage){.link = EP_LINK_ROUTE,
                                       .bytes_src_dst = plan->dispatch_bytes_src_dst,
                                       .messages_src_dst = plan->tokens_src_dst};
  plan->n_dispatch_stages = 1;
  plan->n_combine_stages = 1;
  /* Combine runs from the expert's rank (row) back to the token's rank. */
  for (int32_t src = 0; src < n; src++)
    for (int32_t dst = 0; dst < n; dst++)
      comb->messages_src_dst[(size_t)dst * (size_t)n + (size_t)src] =
          plan->tokens_src_dst[(size_t)src * (size_t)n + (size_t)dst];
  return EP_OK;
}

const ep_dispatch_algo_desc ep_dispatch_direct = {"direct", build_stages};
