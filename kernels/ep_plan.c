/* Dispatch plan: route every rank's tokens in bounded chunks (never all tokens at
 * once), count copies per (src rank, expert), admit them against the expert capacity
 * in global token order, derive the rank-to-rank token and byte matrices, then let
 * the dispatch algorithm build the stages.
 * ep_plan_rank_tokens regenerates one rank's tokens and marks the same drops. */
#include "ep_plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ep_alloc.h"

/* Defined in ep_routing.c: ep_router_route's expert sets without the weights. */
void ep__router_route_sets(const ep_router *router, int64_t first_token, int64_t n_tokens,
                           int32_t *experts);

/* Tokens routed per call while building: bounds scratch memory at any tokens_per_rank. */
#define EP__PLAN_CHUNK_TOKENS 8192

static ep_status check_placement(const ep_placement *pl, const ep_router *router)
{
  if (!pl->rank_of_expert || !pl->slot_of_expert || !pl->expert_of_slot || pl->n_ranks <= 0 ||
      pl->experts_per_rank <= 0) {
    ep_log_error("plan: placement is not initialised");
    return EP_ERR_INVALID;
  }
  if (pl->n_experts != ep_router_n_experts(router)) {
    ep_log_error("plan: placement has %d experts, router %d", (int)pl->n_experts,
                 (int)ep_router_n_experts(router));
    return EP_ERR_INVALID;
  }
  for (int32_t e = 0; e < pl->n_experts; e++) {
    if (pl->rank_of_expert[e] < 0 || pl->rank_of_expert[e] >= pl->n_ranks) {
      ep_log_error("plan: expert %d placed on rank %d of %d", (int)e, (int)pl->rank_of_expert[e],
                   (int)pl->n_ranks);
      return EP_ERR_INVALID;
    }
  }
  return EP_OK;
}

static ep_status copy_placement(const ep_placement *src, ep_placement *dst)
{
  size_t n_e = (size_t)src->n_experts;
  size_t n_slots = (size_t)src->n_ranks * (size_t)src->experts_per_rank;
  memset(dst, 0, sizeof *dst);
  dst->rank_of_expert = malloc(n_e * sizeof *dst->rank_of_expert);
  dst->slot_of_expert = malloc(n_e * sizeof *dst->slot_of_expert);
  dst->expert_of_slot = malloc(n_slots * sizeof *dst->expert_of_slot);
  if (!dst->rank_of_expert || !dst->slot_of_expert || !dst->expert_of_slot) {
    ep_placement_free(dst);
    return EP_ERR_NOMEM;
  }
  memcpy(dst->rank_of_expert, src->rank_of_expert, n_e * sizeof *dst->rank_of_expert);
  memcpy(dst->slot_of_expert, src->slot_of_expert, n_e * sizeof *dst->slot_of_expert);
  memcpy(dst->expert_of_slot, src->expert_of_slot, n_slots * sizeof *dst->expert_of_slot);
  dst->n_experts = src->n_experts;
  dst->n_ranks = src->n_ranks;
  dst->experts_per_rank = src->experts_per_rank;
  return EP_OK;
}

ep_status ep_plan_build(const ep_plan_cfg *cfg, const ep_router *router,
                        const ep_placement *placement, ep_plan *out)
{
  if (!out)
    return EP_ERR_INVALID;
  memset(out, 0, sizeof *out);
  if (!cfg || !router || !placement || !cfg->dispatch || !cfg->dispatch->build_stages) {
    ep_log_error("ep_plan_build: null argument or no dispatch algorithm");
    return EP_ERR_INVALID;
  }
  ep_status st = check_placement(placement, router);
  if (st != EP_OK)
    return st;
  int32_t n_ranks = placement->n_ranks;
  int32_t n_experts = placement->n_experts;
  int32_t top_k = ep_router_top_k(router);
  int64_t tpr = cfg->tokens_per_rank;
  if (tpr <= 0 || cfg->dispatch_bytes_per_token < 0 || cfg->combine_bytes_per_token < 0 ||
      isnan(cfg->capacity_factor) || isinf(cfg->capacity_factor)) {
    ep_log_error("ep_plan_build: need tokens_per_rank > 0, bytes per token >= 0 and a finite "
                 "capacity_factor");
    return EP_ERR_INVALID;
  }
  /* Total copies, and their bytes, must fit in int64; token ids must stay >= 0. */
  if (tpr > INT64_MAX / n_ranks / top_k) {
    ep_log_error("ep_plan_build: %d ranks x %lld tokens x top-%d overflows", (int)n_ranks,
                 (long long)tpr, (int)top_k);
    return EP_ERR_INVALID;
  }
  int64_t n_routed = (int64_t)n_ranks * tpr * top_k;
  int64_t max_bytes = cfg->dispatch_bytes_per_token > cfg->combine_bytes_per_token
                          ? cfg->dispatch_bytes_per_token
                          : cfg->combine_bytes_per_token;
  if (max_bytes > 0 && n_routed > INT64_MAX / max_bytes) {
    ep_log_error("ep_plan_build: byte counts overflow int64");
    return EP_ERR_INVALID;
  }

  int64_t capacity = INT64_MAX;
  if (cfg->capacity_factor > 0.0) {
    double cap = ceil(cfg->capacity_factor * (double)n_routed / (double)n_experts);
    capacity = cap >= 9.2e18 ? INT64_MAX : (int64_t)cap;
  }

  size_t n_re = (size_t)n_ranks * (size_t)n_experts;
  size_t n_rr = (size_t)n_ranks * (size_t)n_ranks;
  int64_t chunk = tpr < EP__PLAN_CHUNK_TOKENS ? tpr : EP__PLAN_CHUNK_TOKENS;
  int32_t *scratch = malloc((size_t)chunk * (size_t)top_k * sizeof *scratch);
  out->routed_src_expert = calloc(n_re, sizeof(int64_t));
  out->kept_src_expert = calloc(n_re, sizeof(int64_t));
  out->tokens_src_dst = calloc(n_rr, sizeof(int64_t));
  out->dispatch_bytes_src_dst = calloc(n_rr, sizeof(int64_t));
  out->combine_bytes_src_dst = calloc(n_rr, sizeof(int64_t));
  out->tokens_per_expert = calloc((size_t)n_experts, sizeof(int64_t));
  out->tokens_recv_rank = calloc((size_t)n_ranks, sizeof(int64_t));
  if (!scratch || !out->routed_src_expert || !out->kept_src_expert || !out->tokens_src_dst ||
      !out->dispatch_bytes_src_dst || !out->combine_bytes_src_dst || !out->tokens_per_expert ||
      !out->tokens_recv_rank || copy_placement(placement, &out->placement) != EP_OK) {
    ep_log_error("ep_plan_build: out of memory for %d ranks x %d experts", (int)n_ranks,
                 (int)n_experts);
    free(scratch);
    ep_plan_free(out);
    return EP_ERR_NOMEM;
  }
  out->n_ranks = n_ranks;
  out->n_experts = n_experts;
  out->top_k = top_k;
  out->tokens_per_rank = tpr;
  out->capacity_per_expert = capacity;
  out->dispatch_bytes_per_token = cfg->dispatch_bytes_per_token;
  out->combine_bytes_per_token = cfg->combine_bytes_per_token;
  out->n_routed = n_routed;

  for (int32_t r = 0; r < n_ranks; r++) {
    int64_t *routed = out->routed_src_expert + (size_t)r * (size_t)n_experts;
    for (int64_t t0 = 0; t0 < tpr; t0 += chunk) {
      int64_t n_tok = tpr - t0 < chunk ? tpr - t0 : chunk;
      ep__router_route_sets(router, (int64_t)r * tpr + t0, n_tok, scratch);
      size_t n_copies = (size_t)n_tok * (size_t)top_k;
      for (size_t i = 0; i < n_copies; i++)
        routed[scratch[i]]++;
    }
  }
  free(scratch);

  /* Admission in global token order: tokens_per_expert is the running kept count, so
   * src gets min(routed, capacity - kept by earlier ranks). */
  int64_t n_kept = 0;
  const int32_t *rank_of = out->placement.rank_of_expert;
  for (int32_t src = 0; src < n_ranks; src++) {
    const int64_t *routed = out->routed_src_expert + (size_t)src * (size_t)n_experts;
    int64_t *kept = out->kept_src_expert + (size_t)src * (size_t)n_experts;
    int64_t *row = out->tokens_src_dst + (size_t)src * (size_t)n_ranks;
    for (int32_t e = 0; e < n_experts; e++) {
      int64_t room = capacity - out->tokens_per_expert[e];
      int64_t k = routed[e] < room ? routed[e] : room;
      kept[e] = k;
      out->tokens_per_expert[e] += k;
      row[rank_of[e]] += k;
      n_kept += k;
    }
  }
  out->n_dropped = n_routed - n_kept;

  for (int32_t src = 0; src < n_ranks; src++) {
    for (int32_t dst = 0; dst < n_ranks; dst++) {
      int64_t tok = out->tokens_src_dst[(size_t)src * (size_t)n_ranks + (size_t)dst];
      out->tokens_recv_rank[dst] += tok;
      out->dispatch_bytes_src_dst[(size_t)src * (size_t)n_ranks + (size_t)dst] =
          tok * cfg->dispatch_bytes_per_token;
      /* Combine returns each kept copy from the expert's rank to the token's rank. */
      out->combine_bytes_src_dst[(size_t)dst * (size_t)n_ranks + (size_t)src] =
          tok * cfg->combine_bytes_per_token;
    }
  }

  out->dispatch = cfg->dispatch;
  st = cfg->dispatch->build_stages(out);
  if (st == EP_OK && (out->n_dispatch_stages < 1 || out->n_dispatch_stages > EP_MAX_STAGES ||
                      out->n_combine_stages < 1 || out->n_combine_stages > EP_MAX_STAGES)) {
    ep_log_error("ep_plan_build: dispatch %s built %d dispatch and %d combine stages (1..%d)",
                 cfg->dispatch->name, (int)out->n_dispatch_stages, (int)out->n_combine_stages,
                 EP_MAX_STAGES);
    st = EP_ERR_INVALID;
  }
  if (st != EP_OK)
    ep_plan_free(out);
  return st;
}

void ep_plan_free(ep_plan *plan)
{
  if (!plan)
    return;
  ep_placement_free(&plan->placement);
  EP__FREE_ALL(plan->routed_src_expert, plan->kept_src_expert, plan->tokens_src_dst,
               plan->dispatch_bytes_src_dst, plan->combine_bytes_src_dst, plan->tokens_per_expert,
               plan->tokens_recv_rank);
  for (int32_t s = 0; s < EP_MAX_STAGES; s++) {
    ep_stage_free(&plan->dispatch_stage[s]);
    ep_stage_free(&plan->combine_stage[s]);
  }
  memset(plan, 0, sizeof *plan);
}

ep_status ep_plan_rank_tokens(const ep_plan *plan, const ep_router *router, int32_t rank,
                              int32_t *experts, float *weights, int32_t *dest_rank)
{
  if (!plan || !router || !experts || !dest_rank || !plan->kept_src_expert ||
      !plan->placement.rank_of_expert) {
    ep_log_error("ep_plan_rank_tokens: null argument or plan not built");
    return EP_ERR_INVALID;
  }
  if (rank < 0 || rank >= plan->n_ranks || ep_router_n_experts(router) != plan->n_experts ||
      ep_router_top_k(router) != plan->top_k) {
    ep_log_error("ep_plan_rank_tokens: rank %d of %d, or router (%d experts, top-%d) does not "
                 "match the plan (%d, top-%d)",
                 (int)rank, (int)plan->n_ranks, (int)ep_router_n_experts(router),
                 (int)ep_router_top_k(router), (int)plan->n_experts, (int)plan->top_k);
    return EP_ERR_INVALID;
  }
  int32_t n_experts = plan->n_experts;
  int64_t *seen = calloc((size_t)n_experts, sizeof *seen);
  if (!seen) {
    ep_log_error("ep_plan_rank_tokens: out of memory for %d experts", (int)n_experts);
    return EP_ERR_NOMEM;
  }
  ep_router_route(router, (int64_t)rank * plan->tokens_per_rank, plan->tokens_per_rank, experts,
                  weights);
  /* Within (rank, expert) admission is in token order: the first kept copies stay. */
  const int64_t *kept = plan->kept_src_expert + (size_t)rank * (size_t)n_experts;
  size_t n_copies = (size_t)plan->tokens_per_rank * (size_t)plan->top_k;
  for (size_t i = 0; i < n_copies; i++) {
    int32_t e = experts[i];
    dest_rank[i] = seen[e] < kept[e] ? plan->placement.rank_of_expert[e] : -1;
    seen[e]++;
  }
  free(seen);
  return EP_OK;
}
