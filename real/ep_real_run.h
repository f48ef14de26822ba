/* epsim-real's backend for the shared driver (sim/ep_driver.h): the run and
 * print_head callbacks of an ep_driver_backend, which every MPI rank passes to
 * ep_driver_main with the same command line and its own ep_real_run_state. */
#ifndef EP_REAL_RUN_H
#define EP_REAL_RUN_H

#include <stdint.h>
#include <stdio.h>

#include "ep_cli.h"
#include "ep_driver.h"
#include "ep_dtype.h"
#include "ep_real_backends.h"
#include "ep_status.h"

typedef struct ep_real_run_state {
  /* [in] */
  const ep_cli_opts *opts; /* --backend, --max-mem, --warmup, --check-tokens, --dump-output */
  ep_real_ranks where;     /* this process among MPI_COMM_WORLD's ranks */
  /* [out] the output check, for ep_real_print_head */
  ep_dtype wire;          /* the dispatch rows' dtype */
  int64_t n_checked;      /* sampled tokens per rank; 0: skipped */
  double worst_rel_error; /* the worst per-token relative L2 error over all ranks */
} ep_real_run_state;

/* The run callback (user: ep_real_run_state), collective over MPI_COMM_WORLD.
 * Refuses as bad input (EP_ERR_PARSE, nothing created, rank 0 says why) a
 * combine dtype other than bf16, an unknown or unbuilt --backend or a GPU
 * backend without a GPU, parallel.ep != ranks, ranks the backend refuses and
 * experts that do not fit in memory. Then runs this rank's layer through the
 * engine, --warmup untimed times first, checks --check-tokens sampled tokens
 * against the double reference, stages --dump-output on rank 0 (named in
 * also_wrote; one rank 0 cannot write is EP_ERR_PARSE on every rank, exit 1)
 * and gathers every rank's timeline into run->timelines on rank 0, the only
 * reporting rank. A failed output check is EP_ERR_BACKEND. A setup or layer
 * failure that may leave peers in a collective aborts the job. Every rank
 * returns the same status where MPI still works. */
ep_status ep_real_run(void *user, ep_driver_run *run);

/* epsim-real's first line ("epsim-real VERSION: SCENARIO, backend B, N ranks,
 * dispatch D rows"), the output check line and a blank line. */
void ep_real_print_head(void *user, const ep_driver_run *run, FILE *out);

#endif
