/* The one driver of epsim and epsim-real:
 *   load the scenario (with the --set overrides) -> build its dispatch plan ->
 *   run the tool's backend through a callback -> on the reporting process,
 *   the summary (ep_report), the printed table and the files in -o (ep_output).
 * The tool parses its command line with ep_cli, picks its backend from its
 * registry (ep_backend_find on its table of ep_backend_entry rows, whose impl
 * is an ep_driver_backend or the tool's own) and calls ep_driver_main.
 *
 * epsim (sim/main.c): one process; the SimGrid callback stages
 * platform.xml in -o (run->stage), simulates every rank and names
 * DIR/platform.xml in also_wrote; the driver prints "epsim VERSION: SCENARIO, backend
 * simgrid/pair".
 *
 * epsim-real: one MPI rank per process, every rank calls ep_driver_main with
 * the same command line:
 *   MPI_Init; ep_cli_parse(EP_CLI_EPSIM_REAL, argc, argv, &opts, rank ? NULL : stderr);
 *   cfg = {.tool = "epsim-real", .opts = &opts, .argc, .argv,
 *          .err = rank ? a /dev/null stream : stderr};
 *   rc = ep_driver_main(&cfg, &real_backend, &real_state);
 *   MPI_Finalize; return rc.
 * Its run callback checks what only it can (dtypes, parallel.ep == ranks,
 * memory fit, GPU presence: EP_ERR_PARSE, nothing created), runs its own rank
 * through ep_engine_run_rank, checks the output, MPI_Gathers every rank's
 * timeline into run->timelines on rank 0 and sets run->reporting = (rank == 0);
 * all ranks return the same status (an MPI_Allreduce of it); a failed output
 * check is logged by rank 0 and returned as EP_ERR_BACKEND, so nothing is
 * written. Its print_head prints "epsim-real VERSION: SCENARIO, backend B,
 * N ranks, dispatch D rows", the output check line and a blank line;
 * --dump-output's file is staged by rank 0 (ep_output_stage_extra) and goes
 * in also_wrote. The driver then reports and writes -o on rank 0 only. real/main.c and
 * real/ep_real_run.c do this. */
#ifndef EP_DRIVER_H
#define EP_DRIVER_H

#include <stdio.h>

#include "ep_cli.h"
#include "ep_engine.h"
#include "ep_memory.h"
#include "ep_output.h"
#include "ep_plan.h"
#include "ep_routing.h"
#include "ep_scenario.h"

/* Exit codes of both tools. */
enum { EP_EXIT_OK = 0, EP_EXIT_BAD_INPUT = 1, EP_EXIT_INTERNAL = 2 };

typedef struct ep_driver_cfg {
  const char *tool;        /* "epsim", "epsim-real": the first line, results.csv's "# tool:" */
  const ep_cli_opts *opts; /* scenario_path, sets, out_dir */
  int argc;                /* the command line, for results.csv's "# argv:" */
  char **argv;
  FILE *err; /* the scenario's problems; NULL: stderr */
  FILE *out; /* the first line, summary and "wrote" line; NULL: stdout */
} ep_driver_cfg;

/* One run, as the backend callback sees it. */
typedef struct ep_driver_run {
  /* [in] */
  const ep_driver_cfg *cfg;
  const ep_scenario *scenario;
  const ep_plan *plan;
  const ep_router *router;     /* the plan's router, for ep_plan_rank_tokens */
  ep_rank_timeline *timelines; /* [plan->n_ranks], zeroed: fill all where reporting */
  ep_output_stage *stage;      /* -o's stage: a file the run writes itself goes through
                                * ep_output_stage_file (in -o) or ep_output_stage_extra
                                * (elsewhere), on the reporting process only; the driver
                                * commits it with its own files, or removes it */
  /* [out] */
  int reporting;          /* preset 1: this process reports (epsim-real: rank 0 only) */
  char backend[320];      /* preset "": the backend as the first line and "# backend:" name it */
  const char *also_wrote; /* a file the run wrote itself, named last in the "wrote"
                           * line; NULL: none. Must live until ep_driver_main returns. */
} ep_driver_run;

/* A tool's backend as the driver runs it. */
typedef struct ep_driver_backend {
  /* Runs the layer and fills *run. Returns EP_OK; EP_ERR_PARSE for bad input
   * (exit 1, e.g. a SimGrid setting SimGrid rejects, experts that do not fit);
   * EP_ERR_IO for the user's environment (exit 1, e.g. a file it cannot
   * write); any other status for an internal failure (exit 2). Logs its own
   * errors. Every process of the tool returns the same status. */
  ep_status (*run)(void *user, ep_driver_run *run);
  /* Prints the lines above the summary on the reporting process; NULL: the
   * driver prints "TOOL VERSION: SCENARIO, backend BACKEND". */
  void (*print_head)(void *user, const ep_driver_run *run, FILE *out);
  /* The backend's own peak bytes for the scenario, beyond the plan's
   * (ep_memory_plan_bytes), its process base included; NULL: none counted. */
  double (*memory_bytes)(void *user, const ep_scenario *scenario);
} ep_driver_backend;

/* Loads and validates cfg->opts->scenario_path with the --set overrides,
 * problems to cfg->err. Returns EP_EXIT_OK, EP_EXIT_BAD_INPUT (the file cannot
 * be read, or a problem in it) or EP_EXIT_INTERNAL. */
int ep_driver_load(const ep_driver_cfg *cfg, ep_scenario *out);

/* Estimates the run's peak memory (the plan's and backend->memory_bytes; backend
 * may be NULL) against cfg->opts->max_memory_GiB or the default share of
 * physical memory (ep_memory.h), into *out (may be NULL). Returns EP_EXIT_OK,
 * or EP_EXIT_BAD_INPUT with the estimate and the limit logged. ep_driver_main
 * calls it before building the plan; epsim check calls it too, so that check
 * and run agree. */
int ep_driver_check_memory(const ep_driver_cfg *cfg, const ep_driver_backend *backend, void *user,
                           const ep_scenario *scenario, ep_memory_budget *out);

/* Load -> memory check -> plan -> backend->run(user, ...) -> on the reporting process: the
 * head (backend->print_head or the driver's line), the summary, results.csv,
 * trace.json and phases.png staged beside the run's own files, standard
 * output flushed, every file renamed into place (ep_output_stage), then
 * "\nwrote DIR/results.csv, DIR/trace.json, DIR/phases.png[, ALSO]". Returns an
 * exit code: EP_EXIT_BAD_INPUT also for the user's environment (an empty or
 * unusable -o, no permission, a full disk, standard output unwritable), with
 * the path and errno's reason logged. On any failure, and on SIGINT/SIGTERM,
 * nothing new is left in -o: what was there before stays as it was. */
int ep_driver_main(const ep_driver_cfg *cfg, const ep_driver_backend *backend, void *user);

#endif
