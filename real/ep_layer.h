/* The real backend's layer program, written once over a transport table
 * (ep_transport.h) and a compute table (ep_compute.h); it is the engine's
 * backend (sim/ep_engine.h) for every --backend:
 *   begin     wait for the setup's queued work, barrier, the clock's zero;
 *   dispatch  counts exchange (one row of per-local-expert counts to and from
 *             every rank), permute into dst-major rows (bf16, or fp8 + block
 *             scales, sent together), all-to-all of the rows, rows into
 *             expert-major order;
 *   expert    SwiGLU grouped GEMM over the local experts, plus the shared
 *             experts over the rank's own tokens;
 *   combine   rows back to recv order, all-to-all back, weighted sum in token
 *             order, plus the shared experts' output;
 *   end       wait for the queued work (kernel faults are reported here);
 *   output    the layer output, copied to the host.
 * The send/recv counts and displacements of every all-to-all are the
 * ep_exchange layout of the rank (real/ep_real.h). Timings are the transport's
 * clock in µs since begin's barrier; each phase ends with a wait for its work. */
#ifndef EP_LAYER_H
#define EP_LAYER_H

#include <mpi.h>
#include <stdint.h>

#include "ep_compute.h"
#include "ep_engine.h"
#include "ep_real.h"
#include "ep_transport.h"

typedef struct ep_layer_cfg {
  const char *name; /* the backend's name, for the engine's messages */
  const ep_transport_ops *transport;
  const ep_compute_ops *compute;
  MPI_Comm comm;  /* plan->n_ranks ranks, this process being rk->rank */
  int32_t device; /* the compute's device (ep_compute_device.device), -1 on the host */
} ep_layer_cfg;

typedef struct ep_layer ep_layer;

/* Sets up the compute, allocates the rank's buffers, fills its tokens and its
 * local and shared experts' weights, then sets up the transport (last, so that
 * NCCL's communicator only exists once the rest has worked). Collective: a
 * rank that fails may leave its peers waiting in a collective (no timeout),
 * so the caller aborts the job. rk is borrowed and must outlive the layer;
 * *out is freed by ep_layer_free (or its ops' free). */
ep_status ep_layer_init(ep_layer **out, ep_real_rank *rk, const ep_layer_cfg *cfg);

/* The engine's table for layer (ctx = layer), named cfg->name; owned by layer. */
const ep_backend_ops *ep_layer_ops(const ep_layer *layer);

/* NULL-safe. Frees the transport first (after a failure without waiting for
 * peers), then the compute's buffers and the compute. */
void ep_layer_free(void *layer);

#endif
