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

/* ---- legacy calls of real/main.c (see the header) ---- */

ep_status ep_summary_compute(const ep_scenario *s, const ep_plan *plan,
                             const ep_rank_timeline *timelines, ep_summary *out)
{
  ep_fabric fabric;
  ep_status st = ep_fabric_init(&fabric, &s->cluster, plan->n_ranks);
  if (st == EP_OK)
    st = ep_report_summarize(&fabric, plan, timelines, out);
  ep_fabric_free(&fabric);
  return st;
}

void ep_summary_print(const ep_scenario *s, const ep_plan *plan, const ep_summary *summary,
                      FILE *out)
{
  ep_fabric fabric;
  ep_report_header header;
  ep_scenario_report_header(s, &header);
  if (ep_fabric_init(&fabric, &s->cluster, plan->n_ranks) == EP_OK)
    ep_report_print(&header, &fabric, plan, summary, out);
  ep_fabric_free(&fabric);
}

ep_status ep_output_write(const char *dir, const ep_provenance *prov, const ep_scenario *s,
                          const ep_plan *plan, const ep_rank_timeline *timelines)
{
  ep_provenance p = *prov;
  p.scenario_fnv1a64 = s->content_hash;
  p.seed = s->routing.seed;
  ep_fabric fabric;
  ep_status st = ep_fabric_init(&fabric, &s->cluster, plan->n_ranks);
  if (st == EP_OK)
    st = ep_output_write_dir(dir, &p, &fabric, plan, timelines);
  ep_fabric_free(&fabric);
  return st;
}
