/* Dispatch "direct": one stage per direction on the fabric's route. Dispatch
 * moves each kept copy from the token's rank to the expert's rank, combine
 * brings it back; one message per copy (no de-duplication per rank). */
#include "ep_dispatch.h"

#include <string.h>

static ep_status build_stages(ep_plan *plan)
{
  const int32_t n = plan->n_ranks;
  const size_t n_rr = (size_t)n * (size_t)n;
  ep_stage *disp = &plan->dispatch_stage[0], *comb = &plan->combine_stage[0];
  ep_status st = ep_stage_init(disp, EP_LINK_ROUTE, n);
  if (st == EP_OK)
    st = ep_stage_init(comb, EP_LINK_ROUTE, n);
  if (st != EP_OK)
    return st;
  plan->n_dispatch_stages = 1;
  plan->n_combine_stages = 1;
  memcpy(disp->bytes_src_dst, plan->dispatch_bytes_src_dst, n_rr * sizeof(int64_t));
  memcpy(disp->messages_src_dst, plan->tokens_src_dst, n_rr * sizeof(int64_t));
  memcpy(comb->bytes_src_dst, plan->combine_bytes_src_dst, n_rr * sizeof(int64_t));
  /* Combine runs from the expert's rank (row) back to the token's rank. */
  for (int32_t src = 0; src < n; src++)
    for (int32_t dst = 0; dst < n; dst++)
      comb->messages_src_dst[(size_t)dst * (size_t)n + (size_t)src] =
          plan->tokens_src_dst[(size_t)src * (size_t)n + (size_t)dst];
  return EP_OK;
}

const ep_dispatch_algo_desc ep_dispatch_direct = {"direct", build_stages};
