/* Scenario files (YAML): model, cluster, parallel layout, workload, policy and
 * simulator settings, validated into plain structs. scenarios/README.md is the
 * reference for every key and default. */
#ifndef EP_SCENARIO_H
#define EP_SCENARIO_H

#include <stdint.h>
#include <stdio.h>

#include "ep_cost.h"
#include "ep_dispatch.h"
#include "ep_dtype.h"
#include "ep_placement.h"
#include "ep_plan.h"
#include "ep_report.h"
#include "ep_routing.h"
#include "ep_status.h"
#include "ep_topology.h"

typedef struct ep_model_cfg {
  char name[64];
  int32_t n_experts;
  int32_t top_k;
  int32_t hidden;
  int32_t moe_intermediate;
  int32_t n_shared_experts;
  ep_dtype dispatch_dtype; /* also the GroupGEMM dtype */
  ep_dtype combine_dtype;
} ep_model_cfg;

/* The optional keys' defaults (scenarios/README.md); the required ones are 0. */
#define EP_MODEL_CFG_INIT                                                                          \
  {                                                                                                \
    .name = "", .n_shared_experts = 0, .dispatch_dtype = EP_DTYPE_BF16,                            \
    .combine_dtype = EP_DTYPE_BF16                                                                 \
  }

/* How the SimGrid backend turns the plan into network flows. */
typedef enum {
  EP_FLOWS_AUTO, /* pair up to EP_FLOWS_AUTO_MAX_PAIR_GPUS GPUs, port above */
  EP_FLOWS_PAIR, /* one flow per (src GPU, dst GPU): exact max-min contention */
  EP_FLOWS_PORT, /* one flow per GPU and link direction: exact busiest-port times */
} ep_flow_mode;

#define EP_FLOWS_AUTO_MAX_PAIR_GPUS 32

typedef struct ep_scenario {
  ep_model_cfg model;
  ep_cluster cluster;
  int32_t ep; /* EP ranks = GPUs used (the first ep GPUs) */
  ep_placement_kind placement;
  int64_t tokens_per_gpu;
  ep_routing_cfg routing; /* includes the seed */
  double capacity_factor; /* <= 0: none */
  /* policy.dispatch: a static ep_dispatch table entry */
  const ep_dispatch_algo_desc *dispatch;
  ep_flow_mode flows;
  uint64_t content_hash; /* FNV-1a of the file bytes and the overrides */
} ep_scenario;

/* Every default of scenarios/README.md; required keys are 0, and the cluster
 * is filled from its preset or its explicit keys. */
#define EP_SCENARIO_INIT                                                                           \
  {                                                                                                \
    .model = EP_MODEL_CFG_INIT, .cluster = {.fabric = EP_FABRIC_NONBLOCKING},                      \
    .placement = EP_PLACEMENT_CONTIGUOUS, .routing = EP_ROUTING_CFG_INIT,                          \
    .capacity_factor = 0.0 /* none */, .dispatch = &ep_dispatch_direct, .flows = EP_FLOWS_AUTO     \
  }

/* Loads and validates path, then applies overrides ("section.key=value", as
 * given to --set; NULL when n_overrides is 0). Every problem is printed to err
 * as "file:line:col: key: message (valid: ...)" and counted; the call returns
 * EP_ERR_PARSE if there was any, EP_ERR_IO if the file cannot be read. */
ep_status ep_scenario_load(const char *path, const char *const *overrides, int n_overrides,
                           ep_scenario *out, FILE *err);

/* Builds the scenario's dispatch plan with the kernels/ router and placement:
 * the one way the simulator and the real backend both get their plan.
 * router: [out] the router the plan was built with (the caller frees it with
 * ep_router_free; needed by ep_plan_rank_tokens), or NULL to have it freed here.
 * Logs and returns a failure status; *plan then holds nothing to free. */
ep_status ep_scenario_build_plan(const ep_scenario *scenario, ep_router **router, ep_plan *plan);

/* The model lines of the summary; the strings point into scenario. */
void ep_scenario_report_header(const ep_scenario *scenario, ep_report_header *out);

#endif
