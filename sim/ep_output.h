/* The files of a layer run: results.csv, trace.json and phases.png, from the
 * per-rank timelines, for the simulator and the real backend alike. Knows no
 * scenario: provenance comes in an ep_provenance, nodes from the fabric. */
#ifndef EP_OUTPUT_H
#define EP_OUTPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ep_engine.h"
#include "ep_fabric.h"
#include "ep_plan.h"

/* Provenance written as '#' lines at the top of results.csv; strings borrowed. */
typedef struct ep_provenance {
  const char *tool;    /* "epsim" or "epsim-real" */
  const char *backend; /* "simgrid/pair", "simgrid/port", "nccl", "cpu" ... */
  const char *scenario_path;
  int argc;
  char **argv;
  uint64_t scenario_fnv1a64; /* the scenario's content hash (file and overrides) */
  uint64_t seed;             /* the routing seed */
} ep_provenance;

#define EP_OUTPUT_PATH_MAX 4096 /* bytes of any path the stage handles, '\0' included */
#define EP_OUTPUT_MAX_FILES 8   /* files one stage can hold */

/* The files of one run, staged so that they appear all together or not at all.
 * A file in the output directory DIR is written in a fresh temporary directory
 * DIR/.epsim-tmp-XXXXXX (inside DIR, so each rename into place stays on one
 * file system, even when DIR is a mount point); DIR and its missing parents
 * are created with the first such file. A file elsewhere (epsim-real's
 * --dump-output) is written to a temporary beside it, or to itself when it
 * exists and is not a regular file (/dev/null, a FIFO). ep_output_stage_commit
 * renames every file into place; ep_output_stage_free before a commit, at
 * exit(), or on SIGINT, SIGTERM, SIGHUP or SIGABRT while a stage holds files
 * (handlers installed with its first file, restored by commit or free) removes
 * the temporaries and the directories the stage created, so previous results
 * in DIR stay untouched. One stage at a time per process. Every failure is
 * logged with the path and errno's reason and returned as EP_ERR_IO (the
 * user's environment: a bad path, no permission, a full disk), EP_ERR_INVALID
 * for a misuse. */
typedef struct ep_output_file {
  char tmp_path[EP_OUTPUT_PATH_MAX];   /* where it is written */
  char final_path[EP_OUTPUT_PATH_MAX]; /* where commit puts it */
  int direct;                          /* 1: tmp_path is final_path, nothing to rename */
} ep_output_file;

typedef struct ep_output_stage {
  char dir[EP_OUTPUT_PATH_MAX];     /* DIR */
  char tmp_dir[EP_OUTPUT_PATH_MAX]; /* DIR/.epsim-tmp-XXXXXX; "" until the first file in DIR */
  size_t created_len;               /* > 0: DIR's prefix of this length and everything below it
                                     * up to DIR were created by the stage */
  int n_files;
  ep_output_file files[EP_OUTPUT_MAX_FILES];
} ep_output_stage;

/* An empty stage for output directory dir (borrowed only during the call);
 * creates nothing. EP_ERR_IO when dir is empty or too long. */
ep_status ep_output_stage_init(ep_output_stage *s, const char *dir);

/* *tmp_path = where to write the file NAME of DIR (a plain name: no '/');
 * the pointer lives as long as the stage. Creates DIR and the temporary
 * directory on the first call. */
ep_status ep_output_stage_file(ep_output_stage *s, const char *name, const char **tmp_path);

/* *tmp_path = where to write the file at path, outside DIR. */
ep_status ep_output_stage_extra(ep_output_stage *s, const char *path, const char **tmp_path);

/* Renames every file into place (SIGINT/SIGTERM held off meanwhile), removes
 * the temporary directory and leaves the stage empty. EP_ERR_IO when a rename
 * fails (what was not yet renamed is removed). */
ep_status ep_output_stage_commit(ep_output_stage *s);

/* Removes what the stage still holds (nothing after a commit). s may be NULL. */
void ep_output_stage_free(ep_output_stage *s);

/* Writes results.csv, trace.json and (when gnuplot is available) phases.png
 * into the stage. fabric: the plan's ranks' fabric (fabric->n_gpus ==
 * plan->n_ranks), for each rank's node. timelines: [in] [plan->n_ranks].
 * gnuplot absent: a warning, no phases.png. Every write, flush and close is
 * checked: EP_ERR_IO with the path, as a failing gnuplot. The '#' lines and
 * trace.json's "otherData" hold the provenance, escaped as README.md says. */
ep_status ep_output_write(ep_output_stage *stage, const ep_provenance *prov,
                          const ep_fabric *fabric, const ep_plan *plan,
                          const ep_rank_timeline *timelines);

/* Flushes and closes f, written at path, checking both and the stream's error
 * flag: EP_ERR_IO logged as "writing PATH failed: REASON". f may be NULL (EP_OK). */
ep_status ep_output_close(FILE *f, const char *path);

#endif
