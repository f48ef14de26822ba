/* Results: summary table, results.csv, trace.json and phases.png, all from the
 * same per-rank timelines, for the simulator and the real backend alike. */
#ifndef EP_OUTPUT_H
#define EP_OUTPUT_H

#include <stdint.h>
#include <stdio.h>

#include "ep_engine.h"
#include "ep_plan.h"
#include "ep_scenario.h"

/* Provenance written as '#' lines at the top of results.csv. */
typedef struct ep_provenance {
  const char *tool;    /* "epsim" or "epsim-real" */
  const char *backend; /* "simgrid/pair", "simgrid/port", "nccl", "cpu" ... */
  const char *scenario_path;
  int argc;
  char **argv;
} ep_provenance;

typedef struct ep_phase_stats {
  double min_us, median_us, max_us; /* phase duration over ranks */
} ep_phase_stats;

typedef struct ep_summary {
  ep_phase_stats phase[EP_PHASE_COUNT];
  double layer_us;             /* max over ranks of combine end */
  double tokens_per_s_per_gpu; /* tokens_per_rank / layer time */
  double load_imbalance;       /* max / mean copies computed per rank */
  double drop_rate;            /* dropped / routed copies */
  /* Bandwidths per all-to-all, over its makespan (max end - min start), GB/s = 1e9 B/s:
   * algbw = mean bytes per rank, local copies included, / makespan and
   * busbw = algbw * (n-1)/n, as nccl-tests defines them for all-to-all;
   * bottleneck = bytes through the bottleneck port (the fabric port of a GPU,
   * NVLink or NIC, in either direction, with the largest bytes / port
   * bandwidth) / makespan, as DeepEP's normal kernels report. */
  double algbw_GBps[2], busbw_GBps[2], bottleneck_GBps[2]; /* [0] dispatch, [1] combine */
  const char *bottleneck_link[2]; /* ep_port_class_name: "NVLink" or "NIC" */
} ep_summary;

ep_status ep_summary_compute(const ep_scenario *scenario, const ep_plan *plan,
                             const ep_rank_timeline *timelines, ep_summary *out);
void ep_summary_print(const ep_scenario *scenario, const ep_plan *plan, const ep_summary *s,
                      FILE *out);

/* mkdir -p: creates path and its missing parents. Returns 0, or -1 with errno set. */
int ep_make_dirs(const char *path);

/* Writes results.csv, trace.json and (when gnuplot is available) phases.png in
 * dir, which must exist. Files are written to temporaries and renamed, so a
 * failure leaves no half-written file. */
ep_status ep_output_write(const char *dir, const ep_provenance *prov, const ep_scenario *scenario,
                          const ep_plan *plan, const ep_rank_timeline *timelines);

#endif
