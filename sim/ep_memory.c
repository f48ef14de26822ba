/* The plan's memory estimate and the limit check (ep_memory.h). The terms
 * follow kernels/ep_plan.c, ep_routing.c and ep_placement.c allocation by
 * allocation; small per-rank tables of the driver and the report are one
 * per-rank term. */
#include "ep_memory.h"

#include <math.h>
#include <unistd.h>

#define GiB (1024.0 * 1024.0 * 1024.0)

/* Tokens the plan routes per call (EP__PLAN_CHUNK_TOKENS in ep_plan.c). */
#define PLAN_CHUNK_TOKENS 8192.0
/* Per rank: a timeline, the fabric's GPU, ports and links, the report's port
 * bytes and durations, the SimGrid-free part of every per-rank array. */
#define PER_RANK_BYTES 1024.0

double ep_memory_plan_bytes(const ep_scenario *s)
{
  const double n = s->ep, e = s->model.n_experts, k = s->model.top_k;
  /* tokens_src_dst, dispatch and combine bytes, and direct's combine messages
   * (its other stage matrices borrow the plan's); routed and kept per expert. */
  const double matrices = 8.0 * (4.0 * n * n + 2.0 * n * e);
  /* Four alias tables (16 B per expert), popularity, permutation, alias scratch;
   * the placement and its copy in the plan (3 int32 per expert each). */
  const double router = e * (4 * 16.0 + 8.0 + 4.0 + 20.0) + 2.0 * 3.0 * 4.0 * e;
  const double chunk =
      PLAN_CHUNK_TOKENS < (double)s->tokens_per_gpu ? PLAN_CHUNK_TOKENS : (double)s->tokens_per_gpu;
  const double scratch = chunk * k * 4.0; /* int32 experts per routed chunk */
  return matrices + router + scratch + n * PER_RANK_BYTES;
}

double ep_memory_physical_bytes(void)
{
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
}

void ep_memory_set_limit(double limit_GiB, ep_memory_budget *out)
{
  out->physical_bytes = ep_memory_physical_bytes();
  out->limit_given = limit_GiB > 0;
  if (out->limit_given)
    out->limit_bytes = limit_GiB * GiB;
  else
    out->limit_bytes =
        out->physical_bytes > 0 ? EP_MEMORY_DEFAULT_SHARE * out->physical_bytes : HUGE_VAL;
}

ep_status ep_memory_check(const ep_memory_budget *b, const char *backend)
{
  const double need = b->plan_bytes + b->backend_bytes;
  if (need <= b->limit_bytes)
    return EP_OK;
  char why[128];
  if (b->limit_given)
    snprintf(why, sizeof why, "--max-memory-GiB");
  else
    snprintf(why, sizeof why, "%.0f%% of the machine's %.1f GiB; set it with --max-memory-GiB",
             100.0 * EP_MEMORY_DEFAULT_SHARE, b->physical_bytes / GiB);
  ep_log_error("this run needs about %.2f GiB (plan %.2f GiB, %s %.2f GiB), above the limit of "
               "%.2f GiB (%s)",
               need / GiB, b->plan_bytes / GiB, backend, b->backend_bytes / GiB,
               b->limit_bytes / GiB, why);
  return EP_ERR_PARSE;
}
