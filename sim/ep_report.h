/* The summary of one layer run: per-phase statistics over ranks, layer time,
 * tokens/s, load imbalance, drops and the all-to-all bandwidths in the tools'
 * own definitions, from the per-rank timelines; and the printed table. The same
 * for the simulator and the real backend. Knows no scenario: what it prints
 * about the model comes in an ep_report_header, the cluster from the fabric. */
#ifndef EP_REPORT_H
#define EP_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "ep_engine.h"
#include "ep_fabric.h"
#include "ep_plan.h"

/* What the summary's first line says about the model; strings are borrowed. */
typedef struct ep_report_header {
  const char *model_name;
  int32_t n_experts;
  int32_t top_k;
  int32_t hidden;
  int32_t moe_intermediate;
  const char *dispatch_dtype; /* dtype names: "bf16", "fp8" */
  const char *combine_dtype;
  uint64_t seed; /* the routing seed */
} ep_report_header;

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

/* Summarises one layer. fabric: the plan's ranks' fabric (fabric->n_gpus ==
 * plan->n_ranks), for the ports each byte count loads. timelines: [in]
 * [plan->n_ranks]. EP_ERR_INVALID on a missing or mismatched input, EP_ERR_NOMEM. */
ep_status ep_report_summarize(const ep_fabric *fabric, const ep_plan *plan,
                              const ep_rank_timeline *timelines, ep_summary *out);

/* Prints the summary table: model and cluster lines, phases, layer time,
 * bandwidths, imbalance and drops. */
void ep_report_print(const ep_report_header *header, const ep_fabric *fabric, const ep_plan *plan,
                     const ep_summary *s, FILE *out);

#endif
