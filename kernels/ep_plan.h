/* The dispatch plan: the one contract between the simulator and the real
 * backend. Built from the router and the placement by the same code in both.
 *
 * The logical traffic: dispatch sends one copy of a token per selected expert
 * (no de-duplication per destination rank); copies whose expert sits on the
 * sending rank stay local (the diagonal of the matrices). Combine sends every
 * kept copy back to the token's rank.
 *
 * Capacity: with capacity_factor c > 0 every expert accepts at most
 * ceil(c * n_ranks * tokens_per_rank * top_k / n_experts) copies; copies are
 * admitted in global token order (rank-major, then token index), the rest are
 * dropped (the token keeps its other experts).
 *
 * Stages: the plan's matrices above are the logical traffic (token copies and
 * payload bytes from the token's rank to the expert's rank). The dispatch
 * algorithm (ep_dispatch.h) turns them into stages, the traffic as it moves:
 * each stage is one link class and a per (src, dst) byte and message matrix.
 * The simulator turns stages into flows; the real backend runs them through
 * its transport. */
#ifndef EP_PLAN_H
#define EP_PLAN_H

#include <stdint.h>

#include "ep_placement.h"
#include "ep_routing.h"
#include "ep_stage.h"
#include "ep_status.h"

struct ep_plan;

/* A dispatch algorithm, as ep_dispatch.h's table lists them. */
typedef struct ep_dispatch_algo_desc {
  const char *name; /* as a scenario names it ("direct") */
  /* Fills plan's n_*_stages and *_stage[] from its logical matrices (which
   * are complete when it runs). On failure it logs, returns the status and
   * leaves the stages for ep_plan_free to release. */
  ep_status (*build_stages)(struct ep_plan *plan);
} ep_dispatch_algo_desc;

typedef struct ep_plan_cfg {
  int64_t tokens_per_rank;          /* > 0 */
  double capacity_factor;           /* <= 0: no capacity limit */
  int64_t dispatch_bytes_per_token; /* payload per token copy, dispatch direction */
  int64_t combine_bytes_per_token;  /* payload per token copy, combine direction */
  /* Builds the stages; required (&ep_dispatch_direct for today's behaviour). */
  const ep_dispatch_algo_desc *dispatch;
} ep_plan_cfg;

typedef struct ep_plan {
  int32_t n_ranks;
  int32_t n_experts;
  int32_t top_k;
  int64_t tokens_per_rank;
  int64_t capacity_per_expert; /* INT64_MAX without a capacity limit */
  int64_t dispatch_bytes_per_token;
  int64_t combine_bytes_per_token;
  ep_placement placement; /* owned copy */

  int64_t
      *routed_src_expert;   /* [n_ranks * n_experts] row = src rank: copies routed, before drops */
  int64_t *kept_src_expert; /* [n_ranks * n_experts] row = src rank: copies kept after capacity */
  int64_t
      *tokens_src_dst; /* [n_ranks * n_ranks] row = src rank: copies sent (kept), diagonal local */
  int64_t *dispatch_bytes_src_dst; /* [n_ranks * n_ranks] row = src rank: tokens_src_dst * dispatch
                                      bytes */
  int64_t *combine_bytes_src_dst;  /* [n_ranks * n_ranks] row = expert rank (combine sender), col =
                                      token rank */
  int64_t *tokens_per_expert;      /* [n_experts] copies each expert computes (kept) */
  int64_t
      *tokens_recv_rank; /* [n_ranks] copies each rank computes (column sums of tokens_src_dst) */
  int64_t n_routed;      /* n_ranks * tokens_per_rank * top_k */
  int64_t n_dropped;     /* n_routed - kept */

  const ep_dispatch_algo_desc *dispatch;       /* the algorithm that built the stages */
  int32_t n_dispatch_stages, n_combine_stages; /* 1..EP_MAX_STAGES each */
  ep_stage dispatch_stage[EP_MAX_STAGES];      /* in order; entries past n_*_stages are empty */
  ep_stage combine_stage[EP_MAX_STAGES];
} ep_plan;

/* Routes every rank's tokens with router and builds the plan, then its stages
 * with cfg->dispatch. The plan owns its arrays; free with ep_plan_free. On
 * failure nothing needs freeing. */
ep_status ep_plan_build(const ep_plan_cfg *cfg, const ep_router *router,
                        const ep_placement *placement, ep_plan *out);
void ep_plan_free(ep_plan *plan); /* NULL-safe */

/* Regenerates one rank's per-token detail, consistent with the plan:
 * experts, weights: [out] [tokens_per_rank * top_k] as ep_router_route (weights may be NULL);
 * dest_rank:        [out] [tokens_per_rank * top_k] rank computing the copy, -1 if dropped. */
ep_status ep_plan_rank_tokens(const ep_plan *plan, const ep_router *router, int32_t rank,
                              int32_t *experts, float *weights, int32_t *dest_rank);

#endif
