/* Exchange layout from the dispatch plan: counting sorts over (dst, slot) on
 * the send side and (slot, src) on the recv side, so every order is fixed by
 * the plan alone and identical on every backend. */
#include "ep_exchange.h"

#include <stdlib.h>
#include <string.h>

#include "ep_alloc.h"

/* Frees the recv side and leaves it empty: ep_exchange_recv_init replaces it. */
static void recv_side_free(ep_exchange_layout *layout)
{
  EP__FREE_ALL(layout->recv_counts, layout->recv_displs, layout->recv_slot_counts,
               layout->expert_counts, layout->expert_offsets, layout->recv_to_expert_row,
               layout->expert_to_recv_row);
  layout->n_recv = 0;
  layout->recv_counts = layout->recv_displs = layout->recv_slot_counts = NULL;
  layout->expert_counts = layout->expert_offsets = NULL;
  layout->recv_to_expert_row = layout->expert_to_recv_row = NULL;
}

void ep_exchange_layout_free(ep_exchange_layout *layout)
{
  if (!layout)
    return;
  recv_side_free(layout);
  EP__FREE_ALL(layout->send_counts, layout->send_displs, layout->send_slot_counts,
               layout->send_copy, layout->copy_send_row);
  memset(layout, 0, sizeof *layout);
}

void ep_exchange_plan_recv_counts(const ep_plan *plan, int32_t rank, int64_t *out)
{
  const int32_t epr = plan->placement.experts_per_rank;
  const int32_t *slots = plan->placement.expert_of_slot + (size_t)rank * (size_t)epr;
  for (int32_t src = 0; src < plan->n_ranks; src++)
    for (int32_t s = 0; s < epr; s++)
      out[(size_t)src * (size_t)epr + (size_t)s] =
          plan->kept_src_expert[(size_t)src * (size_t)plan->n_experts + (size_t)slots[s]];
}

ep_status ep_exchange_send_init(const ep_plan *plan, int32_t rank, const int32_t *experts,
                                const int32_t *dest_rank, ep_exchange_layout *out)
{
  if (!out)
    return EP_ERR_INVALID;
  memset(out, 0, sizeof *out);
  if (!plan || !experts || !dest_rank || !plan->kept_src_expert || rank < 0 ||
      rank >= plan->n_ranks) {
    ep_log_error("ep_exchange_send_init: null argument, plan not built, or rank %d out of range",
                 (int)rank);
    return EP_ERR_INVALID;
  }
  const int32_t n = plan->n_ranks, epr = plan->placement.experts_per_rank;
  const int32_t n_experts = plan->n_experts;
  const int64_t n_copies = plan->tokens_per_rank * plan->top_k;
  out->n_ranks = n;
  out->rank = rank;
  out->experts_per_rank = epr;
  out->top_k = plan->top_k;
  out->tokens_per_rank = plan->tokens_per_rank;

  const size_t n_ds = (size_t)n * (size_t)epr;
  ep_status st = EP_ERR_NOMEM;
  int64_t *kept_seen = calloc((size_t)n_experts, sizeof *kept_seen);
  int64_t *cursor = malloc((n_ds + 1) * sizeof *cursor);
  out->send_counts = calloc((size_t)n, sizeof(int64_t));
  out->send_displs = calloc((size_t)n, sizeof(int64_t));
  out->send_slot_counts = calloc(n_ds, sizeof(int64_t));
  out->copy_send_row = malloc((size_t)n_copies * sizeof(int64_t));
  if (!kept_seen || !cursor || !out->send_counts || !out->send_displs || !out->send_slot_counts ||
      !out->copy_send_row) {
    ep_log_error("ep_exchange_send_init: out of memory for %lld copies", (long long)n_copies);
    goto fail;
  }

  /* Count copies per (dst, slot), checking each against the placement. */
  for (int64_t c = 0; c < n_copies; c++) {
    const int32_t e = experts[c], d = dest_rank[c];
    if (e < 0 || e >= n_experts || (d != -1 && d != plan->placement.rank_of_expert[e])) {
      ep_log_error("exchange layout, rank %d: copy %lld has expert %d, rank %d; the placement "
                   "puts that expert on rank %d",
                   (int)rank, (long long)c, (int)e, (int)d,
                   e >= 0 && e < n_experts ? (int)plan->placement.rank_of_expert[e] : -1);
      st = EP_ERR_INVALID;
      goto fail;
    }
    if (d < 0)
      continue;
    kept_seen[e]++;
    out->send_slot_counts[(size_t)d * (size_t)epr + (size_t)plan->placement.slot_of_expert[e]]++;
  }
  for (int32_t e = 0; e < n_experts; e++) {
    const int64_t want = plan->kept_src_expert[(size_t)rank * (size_t)n_experts + (size_t)e];
    if (kept_seen[e] != want) {
      ep_log_error("exchange layout, rank %d: %lld copies kept for expert %d, the plan says %lld",
                   (int)rank, (long long)kept_seen[e], (int)e, (long long)want);
      st = EP_ERR_INVALID;
      goto fail;
    }
  }

  /* Exclusive prefix sums over (dst, slot) give each block's first send row. */
  int64_t row = 0;
  for (int32_t d = 0; d < n; d++) {
    out->send_displs[d] = row;
    for (int32_t s = 0; s < epr; s++) {
      const size_t i = (size_t)d * (size_t)epr + (size_t)s;
      cursor[i] = row;
      row += out->send_slot_counts[i];
    }
    out->send_counts[d] = row - out->send_displs[d];
    if (out->send_counts[d] != plan->tokens_src_dst[(size_t)rank * (size_t)n + (size_t)d]) {
      ep_log_error("exchange layout, rank %d: %lld copies to rank %d, the plan says %lld",
                   (int)rank, (long long)out->send_counts[d], (int)d,
                   (long long)plan->tokens_src_dst[(size_t)rank * (size_t)n + (size_t)d]);
      st = EP_ERR_INVALID;
      goto fail;
    }
  }
  out->n_send = row;
  out->send_copy = malloc((size_t)(row > 0 ? row : 1) * sizeof(int64_t));
  if (!out->send_copy) {
    ep_log_error("ep_exchange_send_init: out of memory for %lld send rows", (long long)row);
    goto fail;
  }
  /* Stable scatter in copy order keeps each block in token order. */
  for (int64_t c = 0; c < n_copies; c++) {
    const int32_t d = dest_rank[c];
    if (d < 0) {
      out->copy_send_row[c] = -1;
      continue;
    }
    const size_t i = (size_t)d * (size_t)epr + (size_t)plan->placement.slot_of_expert[experts[c]];
    const int64_t r = cursor[i]++;
    out->send_copy[r] = c;
    out->copy_send_row[c] = r;
  }
  EP__FREE_ALL(kept_seen, cursor);
  return EP_OK;

fail:
  EP__FREE_ALL(kept_seen, cursor);
  ep_exchange_layout_free(out);
  return st;
}

ep_status ep_exchange_recv_init(ep_exchange_layout *layout, const int64_t *recv_slot_counts)
{
  if (!layout || !recv_slot_counts || layout->n_ranks <= 0 || layout->experts_per_rank <= 0)
    return EP_ERR_INVALID;
  const int32_t n = layout->n_ranks, epr = layout->experts_per_rank;
  const size_t n_ds = (size_t)n * (size_t)epr;
  recv_side_free(layout);
  layout->recv_counts = calloc((size_t)n, sizeof(int64_t));
  layout->recv_displs = calloc((size_t)n, sizeof(int64_t));
  layout->recv_slot_counts = malloc(n_ds * sizeof(int64_t));
  layout->expert_counts = calloc((size_t)epr, sizeof(int64_t));
  layout->expert_offsets = calloc((size_t)epr + 1, sizeof(int64_t));
  int64_t *cursor = malloc(n_ds * sizeof *cursor); /* expert-major row of each (src, slot) block */
  if (!layout->recv_counts || !layout->recv_displs || !layout->recv_slot_counts ||
      !layout->expert_counts || !layout->expert_offsets || !cursor) {
    free(cursor);
    ep_log_error("ep_exchange_recv_init: out of memory for %d ranks x %d experts", (int)n,
                 (int)epr);
    return EP_ERR_NOMEM;
  }
  memcpy(layout->recv_slot_counts, recv_slot_counts, n_ds * sizeof(int64_t));

  int64_t total = 0;
  for (int32_t src = 0; src < n; src++) {
    layout->recv_displs[src] = total;
    for (int32_t s = 0; s < epr; s++) {
      const int64_t c = recv_slot_counts[(size_t)src * (size_t)epr + (size_t)s];
      if (c < 0) {
        free(cursor);
        ep_log_error("exchange layout, rank %d: negative count %lld from rank %d",
                     (int)layout->rank, (long long)c, (int)src);
        return EP_ERR_INVALID;
      }
      layout->recv_counts[src] += c;
      layout->expert_counts[s] += c;
      total += c;
    }
  }
  layout->n_recv = total;
  for (int32_t s = 0; s < epr; s++)
    layout->expert_offsets[s + 1] = layout->expert_offsets[s] + layout->expert_counts[s];
  /* Expert-major: slot, then src; each (src, slot) block is contiguous in both orders. */
  for (int32_t s = 0; s < epr; s++) {
    int64_t row = layout->expert_offsets[s];
    for (int32_t src = 0; src < n; src++) {
      cursor[(size_t)src * (size_t)epr + (size_t)s] = row;
      row += recv_slot_counts[(size_t)src * (size_t)epr + (size_t)s];
    }
  }
  layout->recv_to_expert_row = malloc((size_t)(total > 0 ? total : 1) * sizeof(int64_t));
  layout->expert_to_recv_row = malloc((size_t)(total > 0 ? total : 1) * sizeof(int64_t));
  if (!layout->recv_to_expert_row || !layout->expert_to_recv_row) {
    free(cursor);
    ep_log_error("ep_exchange_recv_init: out of memory for %lld recv rows", (long long)total);
    return EP_ERR_NOMEM;
  }
  int64_t r = 0;
  for (int32_t src = 0; src < n; src++)
    for (int32_t s = 0; s < epr; s++) {
      const size_t i = (size_t)src * (size_t)epr + (size_t)s;
      for (int64_t j = 0; j < recv_slot_counts[i]; j++, r++) {
        layout->recv_to_expert_row[r] = cursor[i] + j;
        layout->expert_to_recv_row[cursor[i] + j] = r;
      }
    }
  free(cursor);
  return EP_OK;
}
