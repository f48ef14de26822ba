/* The driver both CLIs share: scenario -> plan -> the tool's backend ->
 * summary, table and files. Everything tool-specific comes through the
 * backend's callbacks. */
#include "ep_driver.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ep_config.h"
#include "ep_fabric.h"
#include "ep_output.h"
#include "ep_report.h"

static int exit_code(ep_status st)
{
  return st == EP_OK                             ? EP_EXIT_OK
         : st == EP_ERR_PARSE || st == EP_ERR_IO ? EP_EXIT_BAD_INPUT
                                                 : EP_EXIT_INTERNAL;
}

int ep_driver_load(const ep_driver_cfg *cfg, ep_scenario *out)
{
  const ep_cli_opts *o = cfg->opts;
  const ep_status st =
      ep_scenario_load(o->scenario_path, o->sets, o->n_sets, out, cfg->err ? cfg->err : stderr);
  return exit_code(st);
}

int ep_driver_check_memory(const ep_driver_cfg *cfg, const ep_driver_backend *backend, void *user,
                           const ep_scenario *s, ep_memory_budget *out)
{
  ep_memory_budget b = {.plan_bytes = ep_memory_plan_bytes(s)};
  if (backend && backend->memory_bytes)
    b.backend_bytes = backend->memory_bytes(user, s);
  ep_memory_set_limit(cfg->opts->max_memory_GiB, &b);
  if (out)
    *out = b;
  return ep_memory_check(&b, cfg->opts->backend) == EP_OK ? EP_EXIT_OK : EP_EXIT_BAD_INPUT;
}

/* Flushes out, checking it and its error flag: EP_EXIT_BAD_INPUT (a full
 * disk, a closed pipe) logged. */
static int flush_out(FILE *out)
{
  errno = 0;
  if (fflush(out) != 0 || ferror(out)) {
    ep_log_error("cannot write standard output: %s", strerror(errno ? errno : EIO));
    return EP_EXIT_BAD_INPUT;
  }
  return EP_EXIT_OK;
}

/* The reporting process's part: summary, head, table, the files staged and
 * committed once the table is out, then the "wrote" line. */
static int report(const ep_driver_cfg *cfg, const ep_driver_backend *backend, void *user,
                  const ep_driver_run *run, FILE *out)
{
  const ep_scenario *s = run->scenario;
  const ep_plan *plan = run->plan;
  const char *dir = cfg->opts->out_dir;
  ep_fabric fabric;
  ep_summary summary;
  ep_status st = ep_fabric_init(&fabric, &s->cluster, plan->n_ranks);
  if (st == EP_OK)
    st = ep_report_summarize(&fabric, plan, run->timelines, &summary);
  if (st != EP_OK) {
    ep_log_error("summary failed: %s", ep_status_str(st));
    ep_fabric_free(&fabric);
    return EP_EXIT_INTERNAL;
  }
  if (backend->print_head)
    backend->print_head(user, run, out);
  else
    fprintf(out, "%s %s: %s, backend %s\n", cfg->tool, EP_VERSION, cfg->opts->scenario_path,
            run->backend);
  ep_report_header header;
  ep_scenario_report_header(s, &header);
  ep_report_print(&header, &fabric, plan, &summary, out);

  const ep_provenance prov = {.tool = cfg->tool,
                              .backend = run->backend,
                              .scenario_path = cfg->opts->scenario_path,
                              .argc = cfg->argc,
                              .argv = cfg->argv,
                              .scenario_fnv1a64 = s->content_hash,
                              .seed = s->routing.seed};
  st = ep_output_write(run->stage, &prov, &fabric, plan, run->timelines);
  ep_fabric_free(&fabric);
  int rc = exit_code(st);
  /* The table must be out before the files go into place. */
  if (rc == EP_EXIT_OK && (rc = flush_out(out)) == EP_EXIT_OK &&
      (rc = exit_code(ep_output_stage_commit(run->stage))) == EP_EXIT_OK) {
    fprintf(out, "\nwrote %s/results.csv, %s/trace.json, %s/phases.png%s%s\n", dir, dir, dir,
            run->also_wrote ? ", " : "", run->also_wrote ? run->also_wrote : "");
    rc = flush_out(out);
  }
  return rc;
}

int ep_driver_main(const ep_driver_cfg *cfg, const ep_driver_backend *backend, void *user)
{
  if (!cfg || !cfg->opts || !cfg->tool || !backend || !backend->run)
    return EP_EXIT_INTERNAL;
  ep_scenario scenario;
  int rc = ep_driver_load(cfg, &scenario);
  if (rc == EP_EXIT_OK)
    rc = ep_driver_check_memory(cfg, backend, user, &scenario, NULL);
  if (rc != EP_EXIT_OK)
    return rc;
  /* The stage is large (paths); a bad -o is refused before the run. */
  ep_output_stage *stage = malloc(sizeof *stage);
  if (!stage) {
    ep_log_error("out of memory for the output stage");
    return EP_EXIT_INTERNAL;
  }
  if ((rc = exit_code(ep_output_stage_init(stage, cfg->opts->out_dir))) != EP_EXIT_OK) {
    free(stage);
    return rc;
  }
  ep_router *router = NULL;
  ep_plan plan = {0};
  if (ep_scenario_build_plan(&scenario, &router, &plan) != EP_OK) {
    free(stage);
    return EP_EXIT_INTERNAL;
  }

  rc = EP_EXIT_INTERNAL;
  ep_driver_run run = {.cfg = cfg,
                       .scenario = &scenario,
                       .plan = &plan,
                       .router = router,
                       .timelines = calloc((size_t)plan.n_ranks, sizeof *run.timelines),
                       .stage = stage,
                       .reporting = 1};
  if (!run.timelines) {
    ep_log_error("out of memory for %d timelines", (int)plan.n_ranks);
    goto done;
  }
  const ep_status st = backend->run(user, &run);
  if (st != EP_OK) {
    rc = exit_code(st);
    goto done;
  }
  rc = run.reporting ? report(cfg, backend, user, &run, cfg->out ? cfg->out : stdout) : EP_EXIT_OK;
done:
  ep_output_stage_free(stage); /* what was not committed */
  free(stage);
  free(run.timelines);
  ep_plan_free(&plan);
  ep_router_free(router);
  return rc;
}
