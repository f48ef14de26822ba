/* epsim-real: run one expert-parallel MoE layer for real, one MPI rank per EP
 * rank, with the simulator's engine, dispatch plan and result schema.
 *   mpirun -np EP epsim-real SCENARIO [-o DIR] [--backend auto|cpu|nccl|cuda-ipc] [--set k=v ...]
 * The flags are ep_cli's table; every rank runs ep_driver_main with
 * ep_real_run's callbacks, and rank 0 alone speaks. Exit codes: 0 ok, 1 bad
 * input (usage, scenario, EP != ranks, does not fit), 2 internal error
 * (including a layer output that fails the reference check). */
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "ep_cli.h"
#include "ep_config.h"
#include "ep_driver.h"
#include "ep_real_backends.h"
#include "ep_real_run.h"

/* No backend estimate: ep_real_run checks each rank's buffers against its own limit. */
static const ep_driver_backend real_driver = {ep_real_run, ep_real_print_head, NULL};

/* The version and the backends this build has. */
static void print_version(void)
{
  printf("epsim-real %s (git %s), backends:", EP_VERSION, EP_GIT_SHA);
  for (const ep_backend_entry *const *be = ep_real_backends; *be; be++)
    if ((*be)->impl)
      printf(" %s", (*be)->name);
  putchar('\n');
}

/* Library errors carry the tool's name, as the CLI's own messages do. */
static void log_to_stderr(void *user, const char *message)
{
  (void)user;
  fprintf(stderr, "epsim-real: error: %s\n", message);
}

int main(int argc, char **argv)
{
  ep_log_set_sink(log_to_stderr, NULL);
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    fputs("epsim-real: error: MPI_Init failed\n", stderr);
    return EP_EXIT_INTERNAL;
  }
  /* Errors come back as return codes, so each call can name itself and the rank. */
  int rank = 0, n_ranks = 1, n_local = 1, local_rank = 0;
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN) != MPI_SUCCESS ||
      MPI_Comm_rank(MPI_COMM_WORLD, &rank) != MPI_SUCCESS ||
      MPI_Comm_size(MPI_COMM_WORLD, &n_ranks) != MPI_SUCCESS ||
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) !=
          MPI_SUCCESS ||
      MPI_Comm_size(node, &n_local) != MPI_SUCCESS ||
      MPI_Comm_rank(node, &local_rank) != MPI_SUCCESS || MPI_Comm_free(&node) != MPI_SUCCESS) {
    fprintf(stderr,
            "epsim-real: error: rank %d: MPI setup (MPI_Comm_set_errhandler, "
            "MPI_Comm_rank/size, MPI_Comm_split_type) failed\n",
            rank);
    MPI_Abort(MPI_COMM_WORLD, EP_EXIT_INTERNAL);
    return EP_EXIT_INTERNAL;
  }

  /* Rank 0 speaks; the others' messages, the same ones, go nowhere. */
  FILE *err = rank == 0 ? stderr : fopen("/dev/null", "w");
  ep_cli_opts opts;
  const ep_status st =
      ep_cli_parse(EP_CLI_EPSIM_REAL, argc, argv, &opts, rank == 0 ? stderr : NULL);
  int rc = EP_EXIT_OK;
  if (st != EP_OK) {
    rc = st == EP_ERR_PARSE ? EP_EXIT_BAD_INPUT : EP_EXIT_INTERNAL;
  } else if (opts.help) {
    if (rank == 0)
      ep_cli_usage(EP_CLI_EPSIM_REAL, ep_real_backends, stdout);
  } else if (opts.version) {
    if (rank == 0)
      print_version();
  } else if (strcmp(opts.backend, "auto") && !ep_backend_find(ep_real_backends, opts.backend)) {
    char names[256];
    if (rank == 0)
      fprintf(stderr, "epsim-real: unknown backend '%s' (valid: auto, %s)\n", opts.backend,
              ep_backend_names(ep_real_backends, names, sizeof names));
    rc = EP_EXIT_BAD_INPUT;
  } else {
    const ep_driver_cfg cfg = {
        .tool = "epsim-real", .opts = &opts, .argc = argc, .argv = argv, .err = err};
    ep_real_run_state state = {.opts = &opts, .where = {rank, n_ranks, local_rank, n_local}};
    rc = ep_driver_main(&cfg, &real_driver, &state);
  }
  ep_cli_opts_free(&opts);
  if (err && err != stderr)
    fclose(err);
  /* What was printed must have reached stdout (--help > /dev/full is an error). */
  errno = 0;
  if ((fflush(stdout) != 0 || ferror(stdout)) && rc == EP_EXIT_OK) {
    ep_log_error("cannot write standard output: %s", strerror(errno ? errno : EIO));
    rc = EP_EXIT_BAD_INPUT;
  }
  if (MPI_Finalize() != MPI_SUCCESS && rc == EP_EXIT_OK) {
    fprintf(stderr, "epsim-real: error: rank %d: MPI_Finalize failed\n", rank);
    rc = EP_EXIT_INTERNAL;
  }
  return rc;
}
