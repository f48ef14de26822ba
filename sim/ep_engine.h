/* The per-rank MoE layer program, written once for every backend:
 * dispatch all-to-all -> expert GroupGEMM -> combine all-to-all.
 * Backends (SimGrid in sim/, CUDA+NCCL or CPU+MPI in real/) implement the ops
 * table; the engine links neither SimGrid nor CUDA. */
#ifndef EP_ENGINE_H
#define EP_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "ep_plan.h"
#include "ep_status.h"

typedef enum {
  EP_PHASE_DISPATCH,
  EP_PHASE_EXPERT, /* routed experts' GroupGEMM plus shared experts */
  EP_PHASE_COMBINE,
  EP_PHASE_COUNT
} ep_phase;

/* "dispatch", "expert_gemm", "combine". */
const char *ep_phase_name(ep_phase phase);

/* One phase on one rank, on the backend's clock (µs since the layer began). */
typedef struct ep_timing {
  double start_us;
  double end_us;
} ep_timing;

/* The phase's duration, µs. */
static inline double ep_timing_us(const ep_timing *t)
{
  return t->end_us - t->start_us;
}

typedef struct ep_rank_timeline {
  ep_timing phase[EP_PHASE_COUNT];
} ep_rank_timeline;

/* The backend table. Each phase op runs one phase for one rank and fills *out.
 * Ops may block (SimGrid actors, NCCL). A phase starts when the rank's previous
 * phase ended; the all-to-all ops include any wait for peers, as a CUDA-event
 * timing would. begin, end and output may be NULL (nothing to do):
 *   begin   before the layer: synchronise the ranks and zero the rank's clock;
 *   end     after combine: wait for the backend's queued work to finish;
 *   output  the rank's layer output, copied to the host:
 *           out: [out] [tokens_per_rank * hidden] float, token order. */
typedef struct ep_backend_ops {
  const char *name;
  ep_status (*begin)(void *ctx, const ep_plan *plan, int32_t rank);
  ep_status (*dispatch)(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out);
  ep_status (*expert_compute)(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out);
  ep_status (*combine)(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out);
  ep_status (*end)(void *ctx, const ep_plan *plan, int32_t rank);
  ep_status (*output)(void *ctx, float *out);
  void (*free)(void *ctx);
} ep_backend_ops;

/* One row of a tool's backend registry: the tool picks its backend by name
 * (--backend) and lists the names in its messages. The engine keeps the row
 * generic; what starting the backend takes is the tool's own (impl): epsim's
 * driver callbacks (ep_driver_backend), epsim-real's (transport, compute) pair
 * and init. Registries are NULL-terminated arrays of pointers to static rows. */
typedef struct ep_backend_entry {
  const char *name;        /* "simgrid", "cpu", "nccl", "cuda-ipc" */
  const char *description; /* one line, for --help */
  const void *impl;        /* the tool's own description of the backend, static;
                            * NULL: a backend this build of the tool lacks */
} ep_backend_entry;

/* The entry of table named name; NULL when there is none (or name is NULL). */
const ep_backend_entry *ep_backend_find(const ep_backend_entry *const *table, const char *name);

/* The table's names joined by ", " into buf ("cpu, nccl, cuda-ipc"), for
 * "valid: ..." messages; cut to size - 1 characters (size > 0). Returns buf. */
const char *ep_backend_names(const ep_backend_entry *const *table, char *buf, size_t size);

/* Runs the layer for one rank: begin, the three phase ops in order, end,
 * stopping at the first failure. out->phase[] is filled for the phases that ran. */
ep_status ep_engine_run_rank(const ep_backend_ops *ops, void *ctx, const ep_plan *plan,
                             int32_t rank, ep_rank_timeline *out);

#endif
