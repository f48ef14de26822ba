/* The per-rank layer program: dispatch, expert compute, combine; and the
 * lookups of backend registries. */
#include "ep_engine.h"

#include <stdio.h>
#include <string.h>

const char *ep_phase_name(ep_phase phase)
{
  switch (phase) {
  case EP_PHASE_DISPATCH:
    return "dispatch";
  case EP_PHASE_EXPERT:
    return "expert_gemm";
  case EP_PHASE_COMBINE:
    return "combine";
  case EP_PHASE_COUNT:
    break;
  }
  return "unknown";
}

ep_status ep_engine_run_rank(const ep_backend_ops *ops, void *ctx, const ep_plan *plan,
                             int32_t rank, ep_rank_timeline *out)
{
  if (!ops || !plan || !out || rank < 0 || rank >= plan->n_ranks)
    return EP_ERR_INVALID;
  ep_status (*const steps[EP_PHASE_COUNT])(void *, const ep_plan *, int32_t, ep_timing *) = {
      ops->dispatch, ops->expert_compute, ops->combine};
  for (int p = 0; p < EP_PHASE_COUNT; p++)
    if (!steps[p])
      return EP_ERR_INVALID;
  ep_status st = ops->begin ? ops->begin(ctx, plan, rank) : EP_OK;
  if (st != EP_OK) {
    ep_log_error("%s backend: begin failed on rank %d: %s", ops->name, (int)rank,
                 ep_status_str(st));
    return st;
  }
  for (int p = 0; p < EP_PHASE_COUNT; p++) {
    st = steps[p](ctx, plan, rank, &out->phase[p]);
    if (st != EP_OK) {
      ep_log_error("%s backend: %s failed on rank %d: %s", ops->name, ep_phase_name((ep_phase)p),
                   (int)rank, ep_status_str(st));
      return st;
    }
  }
  st = ops->end ? ops->end(ctx, plan, rank) : EP_OK;
  if (st != EP_OK)
    ep_log_error("%s backend: end failed on rank %d: %s", ops->name, (int)rank, ep_status_str(st));
  return st;
}

const ep_backend_entry *ep_backend_find(const ep_backend_entry *const *table, const char *name)
{
  if (!table || !name)
    return NULL;
  for (; *table; table++)
    if (!strcmp((*table)->name, name))
      return *table;
  return NULL;
}

const char *ep_backend_names(const ep_backend_entry *const *table, char *buf, size_t size)
{
  size_t used = 0;
  buf[0] = '\0';
  for (; table && *table && used + 1 < size; table++) {
    const int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", (*table)->name);
    if (n < 0)
      break;
    used += (size_t)n < size - used ? (size_t)n : size - used - 1;
  }
  return buf;
}
