/* Dispatch algorithms: each turns a plan's logical traffic (tokens_src_dst and
 * its byte matrices) into the stages of ep_plan.h, one file per algorithm
 * (ep_dispatch_<name>.c) behind one table looked up by name; the entry type,
 * ep_dispatch_algo_desc, is in ep_plan.h, whose ep_plan_cfg holds one. Adding an
 * algorithm touches kernels/ only: its file, its line in ep_dispatch.c's list,
 * its extern below, CMake, and a test in tests/test_kernels.c.
 *
 *   direct  one stage per direction on EP_LINK_ROUTE: every token copy goes
 *           straight from the token's rank to the expert's rank and back; the
 *           stage's bytes are the plan's dispatch/combine_bytes_src_dst and its
 *           messages the token copies. */
#ifndef EP_DISPATCH_H
#define EP_DISPATCH_H

#include <stdint.h>

#include "ep_plan.h"
#include "ep_status.h"

/* The algorithms, one per file (ep_dispatch_<name>.c defines ep_dispatch_<name>);
 * static objects, so a config default can name one (.dispatch = &ep_dispatch_direct). */
extern const ep_dispatch_algo_desc ep_dispatch_direct;

/* The entry named name, or NULL (also for NULL). */
const ep_dispatch_algo_desc *ep_dispatch_find(const char *name);

/* All entries, in table order; *n = their count (n may be NULL). */
const ep_dispatch_algo_desc *const *ep_dispatch_table(int32_t *n);

/* The entries' names in table order, NULL-terminated: the valid values of a
 * scenario's policy.dispatch. */
extern const char *const ep_dispatch_names[];

#endif
