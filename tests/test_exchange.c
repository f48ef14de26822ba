/* Tests for kernels/ep_exchange: the per-rank exchange layout against a
 * brute-force all-to-all simulated from the plan (exact integers). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ep_dispatch.h"
#include "ep_exchange.h"

typedef struct case_cfg {
  int32_t n_ranks, n_experts, top_k;
  int64_t tokens_per_rank;
  double capacity_factor;
  ep_placement_kind placement;
  ep_routing_kind routing;
} case_cfg;

/* One (src rank, copy index) pair travelling through the exchange. */
typedef struct tag {
  int32_t src;
  int64_t copy;
} tag;

static int cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void check_case(const case_cfg *cc)
{
  ep_routing_cfg rcfg = EP_ROUTING_CFG_INIT;
  rcfg.kind = cc->routing;
  rcfg.hot_experts = 1;
  rcfg.hot_share = 0.6;
  rcfg.seed = 42 + (uint64_t)cc->n_ranks;
  ep_router *router = NULL;
  ep_placement pl = {0};
  ep_plan plan = {0};
  CHECK_EQ_INT(ep_router_init(&router, &rcfg, cc->n_experts, cc->top_k), EP_OK);
  CHECK_EQ_INT(ep_placement_init(&pl, cc->placement, cc->n_experts, cc->n_ranks), EP_OK);
  const ep_plan_cfg pcfg = {cc->tokens_per_rank, cc->capacity_factor, 256, 256,
                            &ep_dispatch_direct};
  CHECK_EQ_INT(ep_plan_build(&pcfg, router, &pl, &plan), EP_OK);
  if (!router || plan.n_ranks != cc->n_ranks) {
    ep_plan_free(&plan);
    ep_placement_free(&pl);
    ep_router_free(router);
    return;
  }
  const int32_t n = cc->n_ranks, k = cc->top_k, epr = cc->n_experts / n;
  const int64_t n_copies = cc->tokens_per_rank * k;
  int32_t *experts = malloc(sizeof(int32_t) * (size_t)(n * n_copies));
  int32_t *dest = malloc(sizeof(int32_t) * (size_t)(n * n_copies));
  ep_exchange_layout *lay = calloc((size_t)n, sizeof *lay);
  int64_t *counts = malloc(sizeof(int64_t) * (size_t)(n * epr));
  int64_t *from_plan = malloc(sizeof(int64_t) * (size_t)(n * epr));
  for (int32_t r = 0; r < n; r++) {
    CHECK_EQ_INT(
        ep_plan_rank_tokens(&plan, router, r, experts + r * n_copies, NULL, dest + r * n_copies),
        EP_OK);
    CHECK_EQ_INT(
        ep_exchange_send_init(&plan, r, experts + r * n_copies, dest + r * n_copies, &lay[r]),
        EP_OK);
  }
  /* The counts exchange, done by hand: rank r receives row r of every sender. */
  for (int32_t r = 0; r < n; r++) {
    for (int32_t src = 0; src < n; src++)
      memcpy(counts + src * epr, lay[src].send_slot_counts + (size_t)r * (size_t)epr,
             sizeof(int64_t) * (size_t)epr);
    ep_exchange_plan_recv_counts(&plan, r, from_plan);
    for (int32_t i = 0; i < n * epr; i++)
      CHECK_EQ_INT(counts[i], from_plan[i]);
    CHECK_EQ_INT(ep_exchange_recv_init(&lay[r], counts), EP_OK);
    CHECK_EQ_INT(lay[r].n_recv, plan.tokens_recv_rank[r]);
    for (int32_t s = 0; s < epr; s++)
      CHECK_EQ_INT(lay[r].expert_counts[s], plan.tokens_per_expert[pl.expert_of_slot[r * epr + s]]);
  }
  /* Send side vs the plan and the per-copy detail. */
  for (int32_t r = 0; r < n; r++) {
    int64_t kept = 0;
    for (int32_t d = 0; d < n; d++) {
      CHECK_EQ_INT(lay[r].send_counts[d], plan.tokens_src_dst[r * n + d]);
      kept += plan.tokens_src_dst[r * n + d];
    }
    CHECK_EQ_INT(lay[r].n_send, kept);
    int64_t prev_key = -1;
    for (int64_t row = 0; row < lay[r].n_send; row++) {
      const int64_t c = lay[r].send_copy[row];
      const int32_t e = experts[r * n_copies + c];
      CHECK_EQ_INT(lay[r].copy_send_row[c], row);
      /* Rows sorted by (dst, slot, copy): a strictly increasing key. */
      const int64_t key =
          ((int64_t)pl.rank_of_expert[e] * epr + pl.slot_of_expert[e]) * n_copies + c;
      CHECK(key > prev_key);
      prev_key = key;
      CHECK(row >= lay[r].send_displs[pl.rank_of_expert[e]] &&
            row < lay[r].send_displs[pl.rank_of_expert[e]] +
                      lay[r].send_counts[pl.rank_of_expert[e]]);
    }
    for (int64_t c = 0; c < n_copies; c++)
      CHECK((lay[r].copy_send_row[c] < 0) == (dest[r * n_copies + c] < 0));
  }
  /* Dispatch by brute force: move tags through the layouts as Alltoallv would. */
  tag **recv = calloc((size_t)n, sizeof *recv);
  for (int32_t r = 0; r < n; r++) {
    recv[r] = malloc(sizeof(tag) * (size_t)(lay[r].n_recv + 1));
    tag *em = malloc(sizeof(tag) * (size_t)(lay[r].n_recv + 1));
    int64_t at = 0;
    for (int32_t src = 0; src < n; src++) {
      CHECK_EQ_INT(lay[r].recv_displs[src], at);
      CHECK_EQ_INT(lay[r].recv_counts[src], lay[src].send_counts[r]);
      for (int64_t j = 0; j < lay[src].send_counts[r]; j++) {
        recv[r][at].src = src;
        recv[r][at].copy = lay[src].send_copy[lay[src].send_displs[r] + j];
        at++;
      }
    }
    CHECK_EQ_INT(at, lay[r].n_recv);
    for (int64_t i = 0; i < lay[r].n_recv; i++) {
      em[lay[r].recv_to_expert_row[i]] = recv[r][i];
      CHECK_EQ_INT(lay[r].expert_to_recv_row[lay[r].recv_to_expert_row[i]], i);
    }
    /* Expected expert-major order: every copy anywhere kept for rank r, sorted by
     * (slot, src, copy). Encode as one integer key and sort. */
    int64_t *want = malloc(sizeof(int64_t) * (size_t)(n * n_copies + 1));
    int64_t n_want = 0;
    for (int32_t src = 0; src < n; src++)
      for (int64_t c = 0; c < n_copies; c++)
        if (dest[src * n_copies + c] == r)
          want[n_want++] =
              ((int64_t)pl.slot_of_expert[experts[src * n_copies + c]] * n + src) * n_copies + c;
    qsort(want, (size_t)n_want, sizeof *want, cmp_i64);
    CHECK_EQ_INT(n_want, lay[r].n_recv);
    for (int64_t i = 0; i < n_want && i < lay[r].n_recv; i++) {
      const int64_t got =
          ((int64_t)pl.slot_of_expert[experts[em[i].src * n_copies + em[i].copy]] * n + em[i].src) *
              n_copies +
          em[i].copy;
      CHECK_EQ_INT(got, want[i]);
    }
    /* Each expert-major group holds exactly that slot's expert. */
    for (int32_t s = 0; s < epr; s++)
      for (int64_t i = lay[r].expert_offsets[s]; i < lay[r].expert_offsets[s + 1]; i++)
        CHECK_EQ_INT(experts[em[i].src * n_copies + em[i].copy], pl.expert_of_slot[r * epr + s]);
    free(want);
    free(em);
  }
  /* Combine by brute force: rank r returns its recv block from src, in recv order;
   * src receives the blocks rank by rank and must find copy c at send row
   * copy_send_row[c], i.e. the tag at each row is its own send_copy. */
  for (int32_t src = 0; src < n; src++) {
    int64_t at = 0;
    for (int32_t r = 0; r < n; r++) {
      CHECK_EQ_INT(lay[src].send_displs[r], at);
      for (int64_t j = 0; j < lay[r].recv_counts[src]; j++) {
        const tag t = recv[r][lay[r].recv_displs[src] + j];
        CHECK_EQ_INT(t.src, src);
        CHECK_EQ_INT(t.copy, lay[src].send_copy[at + j]);
      }
      at += lay[r].recv_counts[src];
    }
    CHECK_EQ_INT(at, lay[src].n_send);
  }
  for (int32_t r = 0; r < n; r++)
    free(recv[r]);
  free(recv);
  /* A detail that disagrees with the plan is refused. */
  if (n > 1 && n_copies > 0) {
    ep_exchange_layout bad;
    int32_t saved = dest[0];
    dest[0] = saved >= 0 ? (saved + 1) % n : pl.rank_of_expert[experts[0]];
    CHECK_EQ_INT(ep_exchange_send_init(&plan, 0, experts, dest, &bad), EP_ERR_INVALID);
    CHECK(bad.send_copy == NULL);
    dest[0] = saved;
  }
  for (int32_t r = 0; r < n; r++)
    ep_exchange_layout_free(&lay[r]);
  ep_exchange_layout_free(NULL);
  free(lay);
  free(counts);
  free(from_plan);
  free(experts);
  free(dest);
  ep_plan_free(&plan);
  ep_placement_free(&pl);
  ep_router_free(router);
}

int main(void)
{
  const case_cfg cases[] = {
      {1, 8, 2, 64, 0.0, EP_PLACEMENT_CONTIGUOUS, EP_ROUTING_UNIFORM},
      {2, 8, 2, 50, 0.0, EP_PLACEMENT_ROUND_ROBIN, EP_ROUTING_UNIFORM},
      {4, 8, 2, 64, 0.0, EP_PLACEMENT_CONTIGUOUS, EP_ROUTING_HOT},
      {4, 16, 4, 33, 1.0, EP_PLACEMENT_ROUND_ROBIN, EP_ROUTING_HOT}, /* drops */
      {8, 32, 8, 40, 0.5, EP_PLACEMENT_CONTIGUOUS, EP_ROUTING_ZIPF}, /* many drops */
      {3, 3, 1, 7, 0.0, EP_PLACEMENT_CONTIGUOUS, EP_ROUTING_UNIFORM},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_case(&cases[i]);
  return check_exit_code("exchange");
}
