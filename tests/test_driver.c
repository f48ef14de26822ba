/* The shared driver (sim/ep_driver) with a stub backend callback: load ->
 * plan -> callback -> summary and files, exit codes, the reporting switch
 * and the head hook, on tests/scenarios/real-small.yaml (run from the source
 * tree). Links neither SimGrid nor MPI. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ep_driver.h"

#define SCENARIO "tests/scenarios/real-small.yaml"
#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})

typedef struct stub {
  ep_status status; /* what run returns */
  int reporting;
  int calls, heads;
  int32_t n_ranks, tokens_per_rank; /* what run saw */
  int had_router;
} stub;

/* Every rank: dispatch 10 µs, expert 20 µs, combine 30 µs, back to back. */
static ep_status stub_run(void *user, ep_driver_run *run)
{
  stub *s = user;
  s->calls++;
  s->n_ranks = run->plan->n_ranks;
  s->tokens_per_rank = (int32_t)run->plan->tokens_per_rank;
  s->had_router = run->router != NULL && run->scenario->ep == run->plan->n_ranks;
  for (int32_t r = 0; r < run->plan->n_ranks; r++)
    for (int p = 0; p < EP_PHASE_COUNT; p++)
      run->timelines[r].phase[p] =
          (ep_timing){10.0 * p * (p + 1) / 2, 10.0 * (p + 1) * (p + 2) / 2};
  snprintf(run->backend, sizeof run->backend, "stub");
  run->reporting = s->reporting;
  run->also_wrote = "extra.bin";
  return s->status;
}

static void stub_head(void *user, const ep_driver_run *run, FILE *out)
{
  stub *s = user;
  s->heads++;
  fprintf(out, "stub head: %s, %d ranks\n\n", run->backend, (int)run->plan->n_ranks);
}

/* A backend that says it needs 1 TiB beyond the plan. */
static double stub_memory_bytes(void *user, const ep_scenario *scenario)
{
  (void)user;
  (void)scenario;
  return 1024.0 * 1024 * 1024 * 1024;
}

/* The last ep_log_error message. */
static char logged[1024];
static void keep_log(void *user, const char *message)
{
  (void)user;
  snprintf(logged, sizeof logged, "%s", message);
}

static const ep_driver_backend plain = {.run = stub_run};
static const ep_driver_backend greedy = {.run = stub_run, .memory_bytes = stub_memory_bytes};
static const ep_driver_backend with_head = {.run = stub_run, .print_head = stub_head};

static char out_text[16384], err_text[16384];

/* Parses argv with the flag table and runs the driver; the streams land in
 * out_text and err_text. Returns the exit code. */
static int drive(char **argv, const ep_driver_backend *backend, stub *s)
{
  int argc = 0;
  while (argv[argc])
    argc++;
  ep_cli_opts opts;
  CHECK_EQ_INT(ep_cli_parse(EP_CLI_EPSIM, argc, argv, &opts, stderr), EP_OK);
  char *ob = NULL, *eb = NULL;
  size_t on = 0, en = 0;
  FILE *out = open_memstream(&ob, &on), *err = open_memstream(&eb, &en);
  const ep_driver_cfg cfg = {
      .tool = "epsim", .opts = &opts, .argc = argc, .argv = argv, .err = err, .out = out};
  const int rc = ep_driver_main(&cfg, backend, s);
  CHECK(fclose(out) == 0 && fclose(err) == 0);
  snprintf(out_text, sizeof out_text, "%s", ob);
  snprintf(err_text, sizeof err_text, "%s", eb);
  free(ob);
  free(eb);
  ep_cli_opts_free(&opts);
  return rc;
}

static int exists(const char *dir, const char *name)
{
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  struct stat st;
  return stat(path, &st) == 0;
}

static void remove_outputs(const char *dir)
{
  const char *names[] = {"results.csv", "trace.json", "phases.png"};
  char path[512];
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

int main(void)
{
  char base[] = "/tmp/epsim-test-driver-XXXXXX";
  CHECK(mkdtemp(base) != NULL);
  char dir[256];
  snprintf(dir, sizeof dir, "%s/a/b", base); /* -o creates its parents */

  /* A good run: the callback sees the plan and its router, the driver
   * prints its head line, the summary, writes and names the files. */
  stub s = {.status = EP_OK, .reporting = 1};
  CHECK_EQ_INT(
      drive(ARGV("epsim", "run", SCENARIO, "-o", dir, "--set", "workload.seed=3"), &plain, &s),
      EP_EXIT_OK);
  CHECK_EQ_INT(s.calls, 1);
  CHECK_EQ_INT(s.n_ranks, 4);
  CHECK_EQ_INT(s.tokens_per_rank, 48);
  CHECK(s.had_router);
  CHECK(!strncmp(out_text, "epsim ", 6));
  CHECK_STR_CONTAINS(out_text, ": " SCENARIO ", backend stub\nmodel real-small: 8 experts");
  CHECK_STR_CONTAINS(out_text, "EP4, 48 tokens/GPU, seed 3\n");
  CHECK_STR_CONTAINS(out_text, "\nlayer time 60.00 µs, 800000 tokens/s per GPU\n");
  char wrote[1024];
  snprintf(wrote, sizeof wrote, "\nwrote %s/results.csv, %s/trace.json, %s/phases.png, extra.bin\n",
           dir, dir, dir);
  CHECK_STR_CONTAINS(out_text, wrote);
  CHECK(exists(dir, "results.csv") && exists(dir, "trace.json"));
  remove_outputs(dir);

  /* The head hook replaces the driver's line. */
  s = (stub){.status = EP_OK, .reporting = 1};
  CHECK_EQ_INT(drive(ARGV("epsim", "run", SCENARIO, "-o", dir), &with_head, &s), EP_EXIT_OK);
  CHECK_EQ_INT(s.heads, 1);
  CHECK(!strncmp(out_text, "stub head: stub, 4 ranks\n\nmodel real-small", 42));
  remove_outputs(dir);

  /* A process that does not report prints and writes nothing. */
  s = (stub){.status = EP_OK, .reporting = 0};
  CHECK_EQ_INT(drive(ARGV("epsim", "run", SCENARIO, "-o", dir), &with_head, &s), EP_EXIT_OK);
  CHECK_EQ_INT(s.heads, 0);
  CHECK(!strcmp(out_text, ""));
  CHECK(!exists(dir, "."));

  /* The callback's status: bad input 1, anything else 2; nothing written. */
  s = (stub){.status = EP_ERR_PARSE, .reporting = 1};
  CHECK_EQ_INT(drive(ARGV("epsim", "run", SCENARIO, "-o", dir), &plain, &s), EP_EXIT_BAD_INPUT);
  CHECK(!exists(dir, "."));
  s = (stub){.status = EP_ERR_BACKEND, .reporting = 1};
  CHECK_EQ_INT(drive(ARGV("epsim", "run", SCENARIO, "-o", dir), &plain, &s), EP_EXIT_INTERNAL);
  CHECK(!strcmp(out_text, ""));
  CHECK(!exists(dir, "."));

  /* A bad scenario never reaches the callback; its problem goes to cfg.err. */
  s = (stub){.status = EP_OK, .reporting = 1};
  CHECK_EQ_INT(
      drive(ARGV("epsim", "run", SCENARIO, "-o", dir, "--set", "workload.tokens_per_gpu=0"), &plain,
            &s),
      EP_EXIT_BAD_INPUT);
  CHECK_EQ_INT(s.calls, 0);
  CHECK_STR_CONTAINS(err_text, "workload.tokens_per_gpu");
  CHECK_EQ_INT(drive(ARGV("epsim", "run", "tests/scenarios/nope.yaml", "-o", dir), &plain, &s),
               EP_EXIT_BAD_INPUT);
  CHECK_EQ_INT(s.calls, 0);
  CHECK(!exists(dir, "."));

  /* Above the memory limit: bad input before the plan is built, the backend
   * never runs, nothing is written; the message gives the estimate and the limit. */
  s = (stub){.status = EP_OK, .reporting = 1};
  ep_log_set_sink(keep_log, NULL);
  CHECK_EQ_INT(drive(ARGV("epsim", "run", SCENARIO, "-o", dir), &greedy, &s), EP_EXIT_BAD_INPUT);
  ep_log_set_sink(NULL, NULL);
  CHECK_EQ_INT(s.calls, 0);
  CHECK(!exists(dir, "."));
  const char *need = "this run needs about 1024.00 GiB (plan 0.00 GiB, simgrid 1024.00 GiB), "
                     "above the limit of ";
  CHECK(!strncmp(logged, need, strlen(need)));
  CHECK_STR_CONTAINS(logged, "% of the machine's ");
  CHECK_STR_CONTAINS(logged, " GiB; set it with --max-memory-GiB)");
  CHECK_EQ_INT(
      drive(ARGV("epsim", "run", SCENARIO, "-o", dir, "--max-memory-GiB", "2048"), &greedy, &s),
      EP_EXIT_OK);
  CHECK_EQ_INT(s.calls, 1);
  remove_outputs(dir);
  s = (stub){.status = EP_OK, .reporting = 1};
  CHECK_EQ_INT(
      drive(ARGV("epsim", "run", SCENARIO, "-o", dir, "--max-memory-GiB", "1e-6"), &plain, &s),
      EP_EXIT_BAD_INPUT);
  CHECK_EQ_INT(s.calls, 0);
  CHECK(!exists(dir, "."));

  /* -o that cannot be created: bad input, after the run. */
  char file_dir[300];
  snprintf(file_dir, sizeof file_dir, "%s/file", base);
  FILE *f = fopen(file_dir, "w");
  CHECK(f != NULL && fclose(f) == 0);
  char under_file[320];
  snprintf(under_file, sizeof under_file, "%s/out", file_dir);
  s = (stub){.status = EP_OK, .reporting = 1};
  CHECK_EQ_INT(drive(ARGV("epsim", "run", SCENARIO, "-o", under_file), &plain, &s),
               EP_EXIT_BAD_INPUT);
  ep_output_stage stage;
  const char *tmp = NULL;
  CHECK_EQ_INT(ep_output_stage_init(&stage, under_file), EP_OK);
  CHECK_EQ_INT(ep_output_stage_file(&stage, "results.csv", &tmp), EP_ERR_IO);
  ep_output_stage_free(&stage);
  /* -o '': bad input before the run. */
  s = (stub){.status = EP_OK, .reporting = 1};
  CHECK_EQ_INT(drive(ARGV("epsim", "run", SCENARIO, "-o", ""), &plain, &s), EP_EXIT_BAD_INPUT);
  CHECK_EQ_INT(s.calls, 0);
  unlink(file_dir);

  /* ep_driver_load alone, as epsim check uses it. */
  ep_cli_opts opts;
  CHECK_EQ_INT(ep_cli_parse(EP_CLI_EPSIM, 3, ARGV("epsim", "check", SCENARIO), &opts, stderr),
               EP_OK);
  const ep_driver_cfg cfg = {.tool = "epsim", .opts = &opts};
  ep_scenario scenario;
  CHECK_EQ_INT(ep_driver_load(&cfg, &scenario), EP_EXIT_OK);
  CHECK_EQ_INT(scenario.ep, 4);
  /* The budget epsim check prints: the plan's part exactly as ep_memory has it. */
  ep_memory_budget mem;
  CHECK_EQ_INT(ep_driver_check_memory(&cfg, &greedy, NULL, &scenario, &mem), EP_EXIT_BAD_INPUT);
  CHECK(mem.plan_bytes == ep_memory_plan_bytes(&scenario) && mem.plan_bytes > 0);
  CHECK(mem.backend_bytes == stub_memory_bytes(NULL, &scenario));
  CHECK(!mem.limit_given && mem.limit_bytes == EP_MEMORY_DEFAULT_SHARE * mem.physical_bytes);
  CHECK_EQ_INT(ep_driver_check_memory(&cfg, NULL, NULL, &scenario, NULL), EP_EXIT_OK);
  ep_cli_opts_free(&opts);
  CHECK_EQ_INT(ep_driver_main(NULL, &plain, &s), EP_EXIT_INTERNAL);

  snprintf(dir, sizeof dir, "%s/a", base);
  rmdir(dir);
  rmdir(base);
  return check_exit_code("test_driver");
}
