/* The SimGrid backend: runs the engine's per-rank program as one SimGrid actor
 * per GPU on a generated platform. The only module that includes SimGrid. */
#ifndef EP_SG_BACKEND_H
#define EP_SG_BACKEND_H

#include "ep_cost.h"
#include "ep_engine.h"
#include "ep_plan.h"
#include "ep_scenario.h"

typedef struct ep_sim_cfg {
  ep_flow_mode flows; /* never EP_FLOWS_AUTO here: resolve it first */
  ep_gemm_cost_params gemm;
  const char *platform_xml_path; /* where to write the generated platform */
  /* SimGrid's own settings as its command line takes them ("--cfg=key:value",
   * "--log=spec"), [n_simgrid_args], borrowed; NULL when none. simgrid_init
   * gets them after epsim's (network/model:CM02, network/crosstraffic:0,
   * network/TCP-gamma:0, network/optim, contexts/stack-size and guard-size,
   * xbt_cfg.thres:warning), so where both set a key the caller's wins. */
  char *const *simgrid_args;
  int n_simgrid_args;
} ep_sim_cfg;

/* Tries SimGrid settings (as ep_sim_cfg.simgrid_args) in a child process,
 * through simgrid_init and a platform load, where SimGrid checks keys, values,
 * log specs and model names. EP_OK, or EP_ERR_PARSE with SimGrid's reason
 * logged ("SimGrid rejects --cfg=nonsense:1: ... Bad config key: nonsense");
 * EP_ERR_IO when the trial cannot run. No settings: EP_OK at once. */
ep_status ep_sim_check_settings(char *const *args, int n_args);

/* Simulates one layer. timelines: [out] [plan->n_ranks]. SimGrid can be
 * initialised once per process, so call this at most once per process.
 * SimGrid aborts the process on a setting of cfg->simgrid_args it rejects (an
 * uncaught C++ exception or xbt_die, which C cannot catch): check them with
 * ep_sim_check_settings first. */
ep_status ep_sim_run(const ep_scenario *scenario, const ep_plan *plan, const ep_sim_cfg *cfg,
                     ep_rank_timeline *timelines);

/* The backend's peak bytes for the scenario with these flows (not
 * EP_FLOWS_AUTO), beyond the plan's (ep_memory_plan_bytes): the process with
 * SimGrid, its actors (ranks and flow helpers), pair flows, the platform's
 * routes. An estimate from measured runs; its error is stated where it is
 * computed. 0 when the scenario's fabric cannot be built. */
double ep_sim_memory_bytes(const ep_scenario *scenario, ep_flow_mode flows);

#endif
