/* Token routing: which top_k experts each token goes to, and with what weight.
 *
 * The router's gate logits are log(p_e) + Gumbel noise, where p is the expert
 * popularity of the workload (uniform, Zipf, or a few hot experts); each token
 * keeps the top_k logits and softmax-normalises them. Top-k of Gumbel-perturbed
 * log-probabilities is exactly sampling top_k experts without replacement in
 * proportion to p (the Gumbel-top-k identity), so the router draws that directly
 * in O(top_k) per token instead of O(n_experts). Each token's draws come from its
 * own stream (seed, global token id): any rank can regenerate any token. */
#ifndef EP_ROUTING_H
#define EP_ROUTING_H

#include <stdint.h>

#include "ep_status.h"

typedef enum {
  EP_ROUTING_UNIFORM, /* every expert equally likely */
  EP_ROUTING_ZIPF,    /* p ∝ 1 / rank^zipf_exponent over a seeded popularity order */
  EP_ROUTING_HOT,     /* hot_experts share hot_share of the mass; the rest uniform */
} ep_routing_kind;

typedef struct ep_routing_cfg {
  ep_routing_kind kind;
  double zipf_exponent; /* > 0, used by EP_ROUTING_ZIPF */
  int32_t hot_experts;  /* 1..n_experts-1, used by EP_ROUTING_HOT */
  double hot_share;     /* (0, 1), used by EP_ROUTING_HOT */
  uint64_t seed;
} ep_routing_cfg;

#define EP_ROUTING_CFG_INIT                                                                        \
  {                                                                                                \
    EP_ROUTING_UNIFORM, 1.0, 1, 0.5, 1                                                             \
  }

/* Fills probs[n_experts] (sums to 1) with the workload's expert popularity.
 * Which experts are popular is a permutation drawn from cfg->seed. */
ep_status ep_routing_expert_probs(const ep_routing_cfg *cfg, int32_t n_experts, double *probs);

/* The most experts per token the router takes (its per-token scratch is on the
 * stack); ep_router_init refuses more with EP_ERR_UNSUPPORTED. */
#define EP_ROUTER_MAX_TOP_K 1024

/* The largest Zipf exponent s for which every popularity stays > 0 in double
 * with up to 65536 experts: p_min <= 65536^-s = 2^-16s, and 2^-1024 at s = 64
 * is above the smallest double, 2^-1074 (the real limit there is s = 67.1; for
 * n experts it is 1074 / log2(n), 134 at 256). ep_routing_expert_probs refuses
 * an s whose popularity underflows. Well before 64 the routing is already
 * deterministic: at s = 20 the second expert gets 2^-20 of the first's share. */
#define EP_ROUTING_MAX_ZIPF_EXPONENT 64.0

typedef struct ep_router ep_router;

/* Creates a router for n_experts and top_k (1 <= top_k <= n_experts and
 * EP_ROUTER_MAX_TOP_K). *out is
 * owned by the caller and freed with ep_router_free. */
ep_status ep_router_init(ep_router **out, const ep_routing_cfg *cfg, int32_t n_experts,
                         int32_t top_k);
void ep_router_free(ep_router *router);

/* Routes tokens first_token .. first_token+n_tokens-1 (global ids).
 * experts: [out] [n_tokens * top_k] int32, token-major, distinct per token,
 *          ordered by decreasing weight (ties by expert id).
 * weights: [out] [n_tokens * top_k] float, each token's weights sum to 1; may be NULL. */
void ep_router_route(const ep_router *router, int64_t first_token, int64_t n_tokens,
                     int32_t *experts, float *weights);

int32_t ep_router_n_experts(const ep_router *router);
int32_t ep_router_top_k(const ep_router *router);

#endif
