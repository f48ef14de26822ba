/* Peak-memory estimates of a run, from its scenario alone, made before the
 * plan is built, and the limit a run is held to: a run whose estimate is above
 * the limit is refused with both numbers (bad input, exit 1) instead of being
 * killed by the kernel's OOM killer halfway. The plan's part is here; a
 * backend adds its own (the SimGrid backend's: ep_sim_memory_bytes, where the
 * sum's error against measured peak RSS is given: -6.5%..+10% from EP16 to
 * EP8192). Memory grows as ep^2 (the plan's rank-to-rank matrices, pair flows). */
#ifndef EP_MEMORY_H
#define EP_MEMORY_H

#include "ep_scenario.h"

/* The default limit: this share of the machine's physical memory. */
#define EP_MEMORY_DEFAULT_SHARE 0.8

/* One run's estimate against its limit, bytes. */
typedef struct ep_memory_budget {
  double plan_bytes;     /* ep_memory_plan_bytes */
  double backend_bytes;  /* the backend's own (its process base included); 0: none known */
  double limit_bytes;    /* what the run may use */
  double physical_bytes; /* the machine's; 0 when unknown */
  int limit_given;       /* the limit came from --max-memory-GiB, not the default share */
} ep_memory_budget;

/* The plan's peak bytes: its rank-to-rank and rank-to-expert int64 matrices
 * (4 * ep^2 + 2 * ep * n_experts for dispatch direct), the router's tables and
 * routing scratch, the placement, the per-rank timelines and report tables. */
double ep_memory_plan_bytes(const ep_scenario *scenario);

/* The machine's physical memory (sysconf), bytes; 0 when unknown. */
double ep_memory_physical_bytes(void);

/* Fills out's limit: limit_GiB when > 0, else EP_MEMORY_DEFAULT_SHARE of the
 * physical memory (no limit, HUGE_VAL, when that is unknown). */
void ep_memory_set_limit(double limit_GiB, ep_memory_budget *out);

/* EP_OK when plan + backend bytes fit the limit; else logs "this run needs
 * about X GiB (plan P GiB, BACKEND B GiB), above the limit of L GiB (...)"
 * and returns EP_ERR_PARSE. backend names the backend's part. */
ep_status ep_memory_check(const ep_memory_budget *budget, const char *backend);

#endif
