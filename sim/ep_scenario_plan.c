/* What epsim and epsim-real derive from a scenario: its dispatch plan and the
 * summary's header. */
#include "ep_scenario.h"

#include <stddef.h>

ep_status ep_scenario_build_plan(const ep_scenario *s, ep_router **router_out, ep_plan *plan)
{
  ep_router *router = NULL;
  ep_placement placement = {0};
  ep_status st = ep_router_init(&router, &s->routing, s->model.n_experts, s->model.top_k);
  if (st == EP_OK)
    st = ep_placement_init(&placement, s->placement, s->model.n_experts, s->ep);
  if (st == EP_OK) {
    const ep_plan_cfg cfg = {
        .tokens_per_rank = s->tokens_per_gpu,
        .capacity_factor = s->capacity_factor,
        .dispatch_bytes_per_token =
            ep_dtype_bytes_per_token(s->model.dispatch_dtype, s->model.hidden),
        .combine_bytes_per_token =
            ep_dtype_bytes_per_token(s->model.combine_dtype, s->model.hidden),
        .dispatch = s->dispatch,
    };
    st = ep_plan_build(&cfg, router, &placement, plan);
  }
  if (st != EP_OK)
    ep_log_error("building the dispatch plan failed: %s", ep_status_str(st));
  ep_placement_free(&placement);
  if (st == EP_OK && router_out)
    *router_out = router;
  else
    ep_router_free(router);
  return st;
}

void ep_scenario_report_header(const ep_scenario *s, ep_report_header *out)
{
  *out = (ep_report_header){.model_name = s->model.name,
                            .n_experts = s->model.n_experts,
                            .top_k = s->model.top_k,
                            .hidden = s->model.hidden,
                            .moe_intermediate = s->model.moe_intermediate,
                            .dispatch_dtype = ep_dtype_name(s->model.dispatch_dtype),
                            .combine_dtype = ep_dtype_name(s->model.combine_dtype),
                            .seed = s->routing.seed};
}
