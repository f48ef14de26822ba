/* Per-rank setup shared by the real backends: routing detail, send layout,
 * the plan's recv prediction, and the memory estimate. */
#include "ep_real.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_alloc.h"

void ep_real_rank_free(ep_real_rank *rk)
{
  if (!rk)
    return;
  EP__FREE_ALL(rk->experts, rk->weights, rk->dest_rank, rk->copy_send_slot,
               rk->plan_recv_slot_counts, rk->recv_expert_slot, rk->expert_recv_slot,
               rk->expert_counts);
  ep_exchange_layout_free(&rk->layout);
  memset(rk, 0, sizeof *rk);
}

ep_status ep_real_rank_init(const ep_plan *plan, const ep_router *router,
                            const ep_real_shape *shape, int32_t rank, ep_dtype wire,
                            ep_real_rank *out)
{
  if (!out)
    return EP_ERR_INVALID;
  memset(out, 0, sizeof *out);
  if (!plan || !router || !shape || rank < 0 || rank >= plan->n_ranks) {
    ep_log_error("ep_real_rank_init: null argument or rank %d out of range", (int)rank);
    return EP_ERR_INVALID;
  }
  if ((int)wire < 0 || (int)wire >= EP_DTYPE_PAYLOAD_COUNT) {
    ep_log_error("rank %d: dispatch dtype %s is not a payload dtype (bf16 or fp8)", (int)rank,
                 ep_dtype_name(wire));
    return EP_ERR_INVALID;
  }
  const int64_t row_bytes = ep_dtype_bytes_per_token(wire, shape->hidden);
  if (row_bytes < 0 || row_bytes != plan->dispatch_bytes_per_token) {
    ep_log_error("rank %d: a %s dispatch row of hidden %d is %lld bytes, the plan says %lld%s",
                 (int)rank, ep_dtype_name(wire), (int)shape->hidden, (long long)row_bytes,
                 (long long)plan->dispatch_bytes_per_token,
                 wire == EP_DTYPE_FP8 ? " (fp8 needs hidden a multiple of 128)" : "");
    return EP_ERR_INVALID;
  }
  const int32_t epr = plan->placement.experts_per_rank;
  const int64_t n_copies = plan->tokens_per_rank * plan->top_k;
  const int64_t n_recv = plan->tokens_recv_rank[rank];
  /* The kernels index rows with int32. */
  if (n_copies > INT32_MAX || n_recv > INT32_MAX) {
    ep_log_error("rank %d: %lld copies sent or %lld received exceed the kernels' int32 rows",
                 (int)rank, (long long)n_copies, (long long)n_recv);
    return EP_ERR_INVALID;
  }
  out->plan = plan;
  out->shape = *shape;
  out->rank = rank;
  out->wire = wire;
  out->n_copies = n_copies;
  out->n_recv_planned = n_recv;
  const size_t nc = (size_t)(n_copies > 0 ? n_copies : 1), nr = (size_t)(n_recv > 0 ? n_recv : 1);
  out->experts = malloc(nc * sizeof(int32_t));
  out->weights = malloc(nc * sizeof(float));
  out->dest_rank = malloc(nc * sizeof(int32_t));
  out->copy_send_slot = malloc(nc * sizeof(int32_t));
  out->plan_recv_slot_counts = malloc((size_t)plan->n_ranks * (size_t)epr * sizeof(int64_t));
  out->recv_expert_slot = malloc(nr * sizeof(int32_t));
  out->expert_recv_slot = malloc(nr * sizeof(int32_t));
  out->expert_counts = calloc((size_t)epr, sizeof(int32_t));
  if (!out->experts || !out->weights || !out->dest_rank || !out->copy_send_slot ||
      !out->plan_recv_slot_counts || !out->recv_expert_slot || !out->expert_recv_slot ||
      !out->expert_counts) {
    ep_log_error("rank %d: out of memory for %lld copies", (int)rank, (long long)n_copies);
    ep_real_rank_free(out);
    return EP_ERR_NOMEM;
  }
  ep_status st =
      ep_plan_rank_tokens(plan, router, rank, out->experts, out->weights, out->dest_rank);
  if (st == EP_OK)
    st = ep_exchange_send_init(plan, rank, out->experts, out->dest_rank, &out->layout);
  if (st != EP_OK) {
    ep_real_rank_free(out);
    return st;
  }
  for (int64_t c = 0; c < n_copies; c++)
    out->copy_send_slot[c] = (int32_t)out->layout.copy_send_row[c];
  ep_exchange_plan_recv_counts(plan, rank, out->plan_recv_slot_counts);
  return EP_OK;
}

ep_status ep_real_rank_set_recv(ep_real_rank *rk, const int64_t *recv_slot_counts)
{
  if (!rk || !rk->plan || !recv_slot_counts)
    return EP_ERR_INVALID;
  const int32_t n = rk->plan->n_ranks, epr = rk->layout.experts_per_rank;
  for (int32_t i = 0; i < n * epr; i++) {
    if (recv_slot_counts[i] != rk->plan_recv_slot_counts[i]) {
      ep_log_error("rank %d: counts exchange delivered %lld copies from rank %d for local "
                   "expert %d, the plan says %lld",
                   (int)rk->rank, (long long)recv_slot_counts[i], (int)(i / epr), (int)(i % epr),
                   (long long)rk->plan_recv_slot_counts[i]);
      return EP_ERR_BACKEND;
    }
  }
  ep_status st = ep_exchange_recv_init(&rk->layout, recv_slot_counts);
  if (st != EP_OK)
    return st;
  if (rk->layout.n_recv != rk->n_recv_planned) {
    ep_log_error("rank %d: %lld copies to compute, the plan says %lld", (int)rk->rank,
                 (long long)rk->layout.n_recv, (long long)rk->n_recv_planned);
    return EP_ERR_BACKEND;
  }
  for (int64_t i = 0; i < rk->layout.n_recv; i++) {
    rk->recv_expert_slot[i] = (int32_t)rk->layout.recv_to_expert_row[i];
    rk->expert_recv_slot[i] = (int32_t)rk->layout.expert_to_recv_row[i];
  }
  for (int32_t s = 0; s < epr; s++)
    rk->expert_counts[s] = (int32_t)rk->layout.expert_counts[s];
  return EP_OK;
}

ep_real_mem ep_real_mem_estimate(const ep_plan *plan, const ep_real_shape *shape, int32_t rank,
                                 ep_dtype wire, int on_gpu)
{
  ep_real_mem m = {0, 0, 0, 0};
  const int64_t h = shape->hidden, im = shape->intermediate, bf = 2;
  const int64_t tpr = plan->tokens_per_rank, n_copies = tpr * plan->top_k;
  int64_t n_send = 0;
  for (int32_t d = 0; d < plan->n_ranks; d++)
    n_send += plan->tokens_src_dst[(size_t)rank * (size_t)plan->n_ranks + (size_t)d];
  const int64_t n_recv = plan->tokens_recv_rank[rank];
  int64_t row = ep_dtype_bytes_per_token(wire, shape->hidden);
  if (row < 0)
    row = bf * h;
  m.local_experts = plan->placement.experts_per_rank + shape->n_shared;
  m.weights_bytes = (int64_t)m.local_experts * 3 * h * im * bf;
  int64_t b = 0;
  b += tpr * h * bf;            /* tokens */
  b += (n_send + n_recv) * row; /* dispatch send and recv rows */
  b += 3 * n_recv * h * bf;     /* expert-major in, out, combine send */
  b += n_send * h * bf;         /* combine recv */
  b += 2 * tpr * h * bf;        /* routed combine output, shared-expert output */
  b += 2 * tpr * h * 4;         /* float layer output and shared accumulator */
  b += n_copies * 16;           /* routing detail and slots */
  b += n_recv * 8;              /* recv / expert-major slot maps */
  if (on_gpu) {
    const int64_t rows = n_recv > tpr ? n_recv : tpr;
    b += rows * (2 * im + im) * bf; /* gate/up product and activation */
  } else {
    /* The layer's own router weights, send slots and slot maps in compute
     * memory, beside the rank's (on a GPU the two lines above count them). */
    b += n_copies * 8 + n_recv * 8;
  }
  m.buffers_bytes = b;
  m.total_bytes = m.weights_bytes + m.buffers_bytes;
  return m;
}

const char *ep_real_format_bytes(double bytes, char *buf, int buf_len)
{
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    u++;
  }
  snprintf(buf, (size_t)buf_len, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}
