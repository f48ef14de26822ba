/* The command lines of epsim and epsim-real: one flag table, parsed with
 * getopt_long into one options struct, with the usage text generated from it.
 *   epsim run SCENARIO [options]     epsim check SCENARIO [options]
 *   mpirun -np EP epsim-real SCENARIO [options]
 * Each row of the table (ep_cli.c) names its long and short spelling, its
 * argument, its help and the commands it applies to; a flag given to a command
 * it does not apply to is refused with the commands it is for. Messages go to
 * the caller's stream as "TOOL: message". */
#ifndef EP_CLI_H
#define EP_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "ep_engine.h"
#include "ep_status.h"

typedef enum {
  EP_CLI_EPSIM,      /* epsim run|check SCENARIO [options] */
  EP_CLI_EPSIM_REAL, /* epsim-real SCENARIO [options] */
} ep_cli_tool;

/* The commands a flag applies to (bits of ep_cli_flag.commands). */
enum {
  EP_CLI_RUN = 1u << 0,   /* epsim run */
  EP_CLI_CHECK = 1u << 1, /* epsim check */
  EP_CLI_REAL = 1u << 2,  /* epsim-real */
};

/* What the command line asked for. Strings point into argv unless marked owned;
 * ep_cli_opts_free releases what the struct owns. */
typedef struct ep_cli_opts {
  unsigned command; /* EP_CLI_RUN, EP_CLI_CHECK or EP_CLI_REAL; 0 with --help or --version alone */
  int help;         /* --help: print ep_cli_usage to stdout, exit 0 */
  int version;      /* --version: print the tool's version, exit 0 */
  const char *scenario_path;
  const char *out_dir; /* -o; default "epsim-out", "epsim-real-out" */
  const char *backend; /* --backend; default "simgrid", "auto": the tool checks the name */
  const char **sets;   /* --set section.key=value, [n_sets] in order; array owned */
  int n_sets;
  /* --cfg=KEY:VALUE and --log=SPEC in order, spelled as SimGrid's argv takes
   * them ("--cfg=network/optim:Full"); array and strings owned. */
  char **simgrid_args;
  int n_simgrid_args;
  /* epsim-real */
  const char *dump_path; /* --dump-output FILE; NULL: none */
  int64_t check_tokens;  /* --check-tokens N, default 8 */
  int64_t warmup;        /* --warmup N, default 1 */
  double max_mem_bytes;  /* --max-mem BYTES (K/M/G/T suffixes); 0: the backend's default */
  /* epsim run and check */
  double max_memory_GiB; /* --max-memory-GiB X; 0: EP_MEMORY_DEFAULT_SHARE of physical memory */
} ep_cli_opts;

/* Parses argv (argv[0] is the program) into *out, which it initialises. On
 * --help or --version it stops there and returns EP_OK with help or version
 * set. A bad command line prints one message to err (NULL: silent, as on MPI
 * ranks other than 0) and returns EP_ERR_PARSE; also EP_ERR_NOMEM. Free *out
 * with ep_cli_opts_free whatever the status. */
ep_status ep_cli_parse(ep_cli_tool tool, int argc, char **argv, ep_cli_opts *out, FILE *err);

/* Frees what *o owns and zeroes it; NULL is a no-op. */
void ep_cli_opts_free(ep_cli_opts *o);

/* Prints the tool's usage and the help of every flag it takes; under
 * --backend, each row of backends (the tool's registry, NULL-terminated; NULL:
 * none) with its description, marked "*" where its impl is NULL (a backend
 * this build of the tool lacks). */
void ep_cli_usage(ep_cli_tool tool, const ep_backend_entry *const *backends, FILE *out);

/* "12", "64M", "1.5G", "8GiB" -> bytes (binary suffixes K, M, G, T); -1 when
 * malformed or not positive. */
double ep_cli_parse_bytes(const char *s);

#endif
