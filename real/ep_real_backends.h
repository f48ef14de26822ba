/* The backends of epsim-real by --backend name: each is a (transport, compute)
 * pair for the layer program (ep_layer.h), with the checks of where it may run.
 * This registry is the one place that knows which backends this build has
 * (ep_config.h's EP_HAVE_CUDA and EP_HAVE_NCCL). */
#ifndef EP_REAL_BACKENDS_H
#define EP_REAL_BACKENDS_H

#include <stdint.h>

#include "ep_compute.h"
#include "ep_engine.h"
#include "ep_status.h"
#include "ep_transport.h"

/* What a backend runs on: the impl of its registry row. */
typedef struct ep_real_backend {
  const ep_transport_ops *transport;
  const ep_compute_ops *compute;
  int one_gpu_per_rank; /* NCCL refuses two ranks of one communicator on one GPU */
  int one_node;         /* CUDA IPC maps memory of processes on one machine only */
} ep_real_backend;

/* epsim-real's backend registry, for ep_backend_find, ep_backend_names and
 * ep_cli_usage: every backend this program knows, built or not, in --help
 * order, NULL-terminated. A row's impl is its ep_real_backend, NULL where this
 * build lacks it. "auto" is not a row: see ep_real_backend_pick. */
extern const ep_backend_entry *const ep_real_backends[];

/* --backend name on this machine: "auto" is the first built GPU backend with a
 * visible device, else cpu. *out is the row, its impl non-NULL. A backend
 * that is not built, or a GPU backend with no visible device, is
 * EP_ERR_UNSUPPORTED (with a message when loud); an unknown name
 * EP_ERR_INVALID. */
ep_status ep_real_backend_pick(const char *name, int loud, const ep_backend_entry **out);

/* Where this process runs among the MPI ranks. */
typedef struct ep_real_ranks {
  int32_t rank, n_ranks;
  int32_t local_rank, n_local; /* among the ranks on this node */
} ep_real_ranks;

/* What one rank runs a backend on, from ep_real_backend_setup. */
typedef struct ep_real_site {
  int32_t device;           /* the compute's device, -1 on the host */
  double mem_limit_bytes;   /* what the rank's buffers may take */
  char mem_limit_what[512]; /* where the limit comes from, for the does-not-fit message */
  char description[512];    /* results.csv's "# backend:" line: "cpu", "nccl (GPU 0 ...)" */
} ep_real_site;

/* Checks that the ranks suit be (a row with an impl: GPUs per rank, one node), queries this rank's
 * device, and sets the memory limit: max_mem_bytes (> 0) or physical RAM / ranks
 * on the node on the host; free device memory / ranks sharing it, less 1.5 GiB
 * for CUDA and NCCL, on a GPU. EP_ERR_INVALID for ranks the backend refuses
 * (the message printed by one rank), EP_ERR_UNSUPPORTED or EP_ERR_BACKEND when
 * the device query fails. Not collective: the caller agrees on the outcome. */
ep_status ep_real_backend_setup(const ep_backend_entry *be, const ep_real_ranks *where,
                                double max_mem_bytes, ep_real_site *out);

#endif
