/* The files of a layer run: results.csv, trace.json and phases.png, from the
 * per-rank timelines, for the simulator and the real backend alike. Knows no
 * scenario: provenance comes in an ep_provenance, nodes from the fabric. */
#ifndef EP_OUTPUT_H
#define EP_OUTPUT_H

#include <stdint.h>

#include "ep_engine.h"
#include "ep_fabric.h"
#include "ep_plan.h"

/* Provenance written as '#' lines at the top of results.csv; strings borrowed. */
typedef struct ep_provenance {
  const char *tool;    /* "epsim" or "epsim-real" */
  const char *backend; /* "simgrid/pair", "simgrid/port", "nccl", "cpu" ... */
  const char *scenario_path;
  int argc;
  char **argv;
  uint64_t scenario_fnv1a64; /* the scenario's content hash (file and overrides) */
  uint64_t seed;             /* the routing seed */
} ep_provenance;

/* mkdir -p: creates path and its missing parents. Returns 0, or -1 with errno set. */
int ep_make_dirs(const char *path);

/* Writes results.csv, trace.json and (when gnuplot is available) phases.png in
 * dir, which must exist. fabric: the plan's ranks' fabric (fabric->n_gpus ==
 * plan->n_ranks), for each rank's node. timelines: [in] [plan->n_ranks]. Files
 * are written to temporaries and renamed, so a failure leaves no half-written file. */
ep_status ep_output_write_dir(const char *dir, const ep_provenance *prov, const ep_fabric *fabric,
                              const ep_plan *plan, const ep_rank_timeline *timelines);

#endif
