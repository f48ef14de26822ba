/* epsim: simulate one expert-parallel MoE layer from a scenario file.
 *   epsim run SCENARIO [-o DIR] [--set key=value ...] [--cfg=k:v ...] [--log=spec ...]
 *   epsim check SCENARIO [--set key=value ...]
 * The flags are ep_cli's table, the run is ep_driver's with the SimGrid
 * backend's callback. Exit codes: 0 ok, 1 bad input or the user's
 * environment (usage, scenario, a SimGrid setting SimGrid rejects, an unusable
 * -o, a full disk, standard output unwritable), 2 internal error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ep_cli.h"
#include "ep_config.h"
#include "ep_cost.h"
#include "ep_driver.h"
#include "ep_engine.h"
#include "ep_output.h"
#include "ep_scenario.h"
#include "ep_sg_backend.h"

static const char *flows_name(ep_flow_mode m)
{
  return m == EP_FLOWS_PAIR ? "pair" : m == EP_FLOWS_PORT ? "port" : "auto";
}

static ep_flow_mode resolve_flows(const ep_scenario *s)
{
  if (s->flows != EP_FLOWS_AUTO)
    return s->flows;
  return s->ep <= EP_FLOWS_AUTO_MAX_PAIR_GPUS ? EP_FLOWS_PAIR : EP_FLOWS_PORT;
}

static void print_check(const char *path, const ep_scenario *s, const ep_memory_budget *mem)
{
  const ep_cluster *c = &s->cluster;
  printf("%s: ok\n", path);
  printf("model      %s: %d experts, top-%d, hidden %d, intermediate %d, %d shared, dispatch %s, "
         "combine %s\n",
         s->model.name, (int)s->model.n_experts, (int)s->model.top_k, (int)s->model.hidden,
         (int)s->model.moe_intermediate, (int)s->model.n_shared_experts,
         ep_dtype_name(s->model.dispatch_dtype), ep_dtype_name(s->model.combine_dtype));
  printf("cluster    %s: %d nodes x %d %s, NVLink %.1f GB/s %.2f µs, NIC %.1f GB/s %.2f µs\n",
         c->preset[0] ? c->preset : "explicit", (int)c->n_nodes, (int)c->gpus_per_node,
         c->gpu->name, c->nvlink_GBps, c->nvlink_latency_us, c->nic_GBps, c->nic_latency_us);
  printf("parallel   ep %d, placement %s\n", (int)s->ep,
         s->placement == EP_PLACEMENT_CONTIGUOUS ? "contiguous" : "round_robin");
  const char *routing = s->routing.kind == EP_ROUTING_UNIFORM ? "uniform"
                        : s->routing.kind == EP_ROUTING_ZIPF  ? "zipf"
                                                              : "hot";
  printf("workload   %lld tokens/GPU, routing %s, seed %llu\n", (long long)s->tokens_per_gpu,
         routing, (unsigned long long)s->routing.seed);
  if (s->capacity_factor > 0)
    printf("policy     capacity_factor %g, dispatch direct\n", s->capacity_factor);
  else
    printf("policy     capacity_factor none, dispatch direct\n");
  printf("sim        flows %s (resolves to %s)\n", flows_name(s->flows),
         flows_name(resolve_flows(s)));
  const double GiB = 1024.0 * 1024.0 * 1024.0;
  printf("memory     about %.3f GiB at peak (plan %.3f GiB), limit %.1f GiB\n",
         (mem->plan_bytes + mem->backend_bytes) / GiB, mem->plan_bytes / GiB,
         mem->limit_bytes / GiB);
}

/* The SimGrid callback's state: the flags, and the platform's final path,
 * which the "wrote" line names after the run. */
typedef struct sim_state {
  const ep_cli_opts *opts;
  char platform_path[EP_OUTPUT_PATH_MAX];
} sim_state;

/* Checks the SimGrid settings, stages DIR/platform.xml and simulates every
 * rank; nothing is created when a setting is bad, and the driver removes the
 * staged platform when anything later fails. */
static ep_status simgrid_run(void *user, ep_driver_run *run)
{
  sim_state *state = user;
  const char *platform = NULL;
  ep_status st = ep_sim_check_settings(state->opts->simgrid_args, state->opts->n_simgrid_args);
  if (st == EP_OK)
    st = ep_output_stage_file(run->stage, "platform.xml", &platform);
  if (st != EP_OK)
    return st;
  /* The stage took DIR/platform.xml, so it fits. */
  snprintf(state->platform_path, sizeof state->platform_path, "%s/platform.xml",
           state->opts->out_dir);
  const ep_flow_mode flows = resolve_flows(run->scenario);
  const ep_sim_cfg sim_cfg = {.flows = flows,
                              .gemm = EP_GEMM_COST_PARAMS_INIT,
                              .platform_xml_path = platform,
                              .simgrid_args = state->opts->simgrid_args,
                              .n_simgrid_args = state->opts->n_simgrid_args};
  if ((st = ep_sim_run(run->scenario, run->plan, &sim_cfg, run->timelines)) != EP_OK) {
    ep_log_error("simulation failed: %s", ep_status_str(st));
    return st;
  }
  snprintf(run->backend, sizeof run->backend, "simgrid/%s", flows_name(flows));
  run->also_wrote = state->platform_path;
  return EP_OK;
}

static double simgrid_memory_bytes(void *user, const ep_scenario *scenario)
{
  (void)user;
  return ep_sim_memory_bytes(scenario, resolve_flows(scenario));
}

/* epsim's backend registry. */
static const ep_driver_backend simgrid_driver = {.run = simgrid_run,
                                                 .memory_bytes = simgrid_memory_bytes};
static const ep_backend_entry simgrid_entry = {
    "simgrid", "SimGrid 3.32: flow-level network, one actor per GPU", &simgrid_driver};
static const ep_backend_entry *const backends[] = {&simgrid_entry, NULL};

int main(int argc, char **argv)
{
  ep_cli_opts opts;
  ep_status st = ep_cli_parse(EP_CLI_EPSIM, argc, argv, &opts, stderr);
  int rc = EP_EXIT_OK;
  if (st != EP_OK) {
    rc = st == EP_ERR_PARSE ? EP_EXIT_BAD_INPUT : EP_EXIT_INTERNAL;
  } else if (opts.help) {
    ep_cli_usage(EP_CLI_EPSIM, backends, stdout);
  } else if (opts.version) {
    printf("epsim %s (git %s)\n", EP_VERSION, EP_GIT_SHA);
  } else {
    const ep_driver_cfg cfg = {.tool = "epsim", .opts = &opts, .argc = argc, .argv = argv};
    const ep_backend_entry *backend = ep_backend_find(backends, opts.backend);
    ep_scenario scenario;
    if (opts.command == EP_CLI_CHECK) {
      ep_memory_budget mem;
      if ((rc = ep_driver_load(&cfg, &scenario)) == EP_EXIT_OK &&
          (rc = ep_driver_check_memory(&cfg, backend ? backend->impl : NULL, NULL, &scenario,
                                       &mem)) == EP_EXIT_OK)
        print_check(opts.scenario_path, &scenario, &mem);
    } else if (!backend) {
      char names[256];
      fprintf(stderr, "epsim: unknown backend '%s' (valid: %s)\n", opts.backend,
              ep_backend_names(backends, names, sizeof names));
      rc = EP_EXIT_BAD_INPUT;
    } else {
      sim_state state = {.opts = &opts};
      rc = ep_driver_main(&cfg, backend->impl, &state);
    }
  }
  ep_cli_opts_free(&opts);
  /* What was printed must have reached stdout (check > /dev/full is an error). */
  errno = 0;
  if ((fflush(stdout) != 0 || ferror(stdout)) && rc == EP_EXIT_OK) {
    ep_log_error("cannot write standard output: %s", strerror(errno ? errno : EIO));
    rc = EP_EXIT_BAD_INPUT;
  }
  return rc;
}
