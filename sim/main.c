/* epsim: simulate one expert-parallel MoE layer from a scenario file.
 *   epsim run SCENARIO [-o DIR] [--set key=value ...]
 *   epsim check SCENARIO [--set key=value ...]
 * Exit codes: 0 ok, 1 bad input (usage, scenario), 2 internal error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_config.h"
#include "ep_cost.h"
#include "ep_plan.h"
#include "ep_scenario.h"
#include "ep_sg_backend.h"

enum { EXIT_OK = 0, EXIT_BAD_INPUT = 1, EXIT_INTERNAL = 2 };

static void usage(FILE *f)
{
  fputs("usage: epsim run SCENARIO [-o DIR] [--set section.key=value ...]\n"
        "       epsim check SCENARIO [--set section.key=value ...]\n"
        "       epsim --help | --version\n"
        "\n"
        "run    simulates one MoE layer (dispatch all-to-all, expert GroupGEMM, combine\n"
        "       all-to-all) on the scenario's cluster with SimGrid, prints a summary and\n"
        "       writes DIR/results.csv, DIR/trace.json (Perfetto), DIR/phases.png and\n"
        "       DIR/platform.xml (DIR defaults to epsim-out).\n"
        "check  validates the scenario and prints what it resolves to.\n"
        "--set  overrides one scenario key, e.g. --set workload.seed=7 (repeatable).\n"
        "\n"
        "Scenario keys: scenarios/README.md. Exit: 0 ok, 1 bad input, 2 internal error.\n",
        f);
}

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

static void print_check(const char *path, const ep_scenario *s)
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
}

static int cmd_run(const char *path, const char *out_dir, const char *const *sets, int n_sets,
                   int argc, char **argv)
{
  ep_scenario scenario;
  ep_status st = ep_scenario_load(path, sets, n_sets, &scenario, stderr);
  if (st == EP_ERR_PARSE || st == EP_ERR_IO)
    return EXIT_BAD_INPUT;
  if (st != EP_OK)
    return EXIT_INTERNAL;

  if (ep_make_dirs(out_dir) != 0) {
    ep_log_error("cannot create output directory %s: %s", out_dir, strerror(errno));
    return EXIT_BAD_INPUT;
  }
  char platform_path[4096];
  int n = snprintf(platform_path, sizeof platform_path, "%s/platform.xml", out_dir);
  if (n < 0 || (size_t)n >= sizeof platform_path) {
    ep_log_error("output directory path too long: %s", out_dir);
    return EXIT_BAD_INPUT;
  }

  ep_plan plan = {0};
  if (ep_scenario_build_plan(&scenario, NULL, &plan) != EP_OK)
    return EXIT_INTERNAL;

  int rc = EXIT_INTERNAL;
  ep_fabric fabric = {0};
  ep_rank_timeline *timelines = calloc((size_t)plan.n_ranks, sizeof *timelines);
  if (!timelines) {
    ep_log_error("out of memory for %d timelines", (int)plan.n_ranks);
    goto done;
  }
  const ep_flow_mode flows = resolve_flows(&scenario);
  const ep_sim_cfg sim_cfg = {
      .flows = flows, .gemm = EP_GEMM_COST_PARAMS_INIT, .platform_xml_path = platform_path};
  if ((st = ep_sim_run(&scenario, &plan, &sim_cfg, timelines)) != EP_OK) {
    ep_log_error("simulation failed: %s", ep_status_str(st));
    goto done;
  }

  ep_summary summary;
  if ((st = ep_fabric_init(&fabric, &scenario.cluster, plan.n_ranks)) != EP_OK ||
      (st = ep_report_summarize(&fabric, &plan, timelines, &summary)) != EP_OK) {
    ep_log_error("summary failed: %s", ep_status_str(st));
    goto done;
  }
  char backend[32];
  snprintf(backend, sizeof backend, "simgrid/%s", flows_name(flows));
  printf("epsim %s: %s, backend %s\n", EP_VERSION, path, backend);
  ep_report_header header;
  ep_scenario_report_header(&scenario, &header);
  ep_report_print(&header, &fabric, &plan, &summary, stdout);

  const ep_provenance prov = {.tool = "epsim",
                              .backend = backend,
                              .scenario_path = path,
                              .argc = argc,
                              .argv = argv,
                              .scenario_fnv1a64 = scenario.content_hash,
                              .seed = scenario.routing.seed};
  if ((st = ep_output_write_dir(out_dir, &prov, &fabric, &plan, timelines)) != EP_OK) {
    ep_log_error("writing outputs to %s failed: %s", out_dir, ep_status_str(st));
    goto done;
  }
  printf("\nwrote %s/results.csv, %s/trace.json, %s/phases.png, %s\n", out_dir, out_dir, out_dir,
         platform_path);
  rc = EXIT_OK;
done:
  ep_fabric_free(&fabric);
  free(timelines);
  ep_plan_free(&plan);
  return rc;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    usage(stderr);
    return EXIT_BAD_INPUT;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return EXIT_OK;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("epsim %s (git %s)\n", EP_VERSION, EP_GIT_SHA);
    return EXIT_OK;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0) {
    fprintf(stderr, "epsim: unknown command '%s' (valid: run, check, --help, --version)\n", cmd);
    return EXIT_BAD_INPUT;
  }

  const char *path = NULL, *out_dir = "epsim-out";
  const char **sets = calloc((size_t)argc, sizeof *sets);
  int n_sets = 0;
  if (!sets) {
    fputs("epsim: out of memory\n", stderr);
    return EXIT_INTERNAL;
  }
  int rc = EXIT_BAD_INPUT;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      rc = EXIT_OK;
      goto done;
    } else if (!strcmp(a, "-o") || !strcmp(a, "--set")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "epsim: %s needs a value\n", a);
        goto done;
      }
      if (!strcmp(a, "-o")) {
        if (!strcmp(cmd, "check")) {
          fputs("epsim: check writes nothing; -o is for run\n", stderr);
          goto done;
        }
        out_dir = argv[++i];
      } else {
        sets[n_sets++] = argv[++i];
      }
    } else if (a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "epsim: unknown option '%s' (valid: -o DIR, --set key=value, --help)\n", a);
      goto done;
    } else if (!path) {
      path = a;
    } else {
      fprintf(stderr, "epsim: one scenario at a time ('%s' and '%s')\n", path, a);
      goto done;
    }
  }
  if (!path) {
    fprintf(stderr, "epsim: %s needs a SCENARIO file\n", cmd);
    usage(stderr);
    goto done;
  }
  if (!strcmp(cmd, "check")) {
    ep_scenario scenario;
    ep_status st = ep_scenario_load(path, sets, n_sets, &scenario, stderr);
    rc = st == EP_OK                               ? EXIT_OK
         : (st == EP_ERR_PARSE || st == EP_ERR_IO) ? EXIT_BAD_INPUT
                                                   : EXIT_INTERNAL;
    if (rc == EXIT_OK)
      print_check(path, &scenario);
  } else {
    rc = cmd_run(path, out_dir, sets, n_sets, argc, argv);
  }
done:
  free(sets);
  return rc;
}
