/* The shared flag table (sim/ep_cli): good and bad command lines of epsim and
 * epsim-real, the options they fill and the exact messages of the bad ones. */
#include <stdlib.h>

#include "check.h"
#include "ep_cli.h"

/* A NULL-terminated, writable argv. */
#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})

static char err_text[4096];

/* Parses argv; the messages land in err_text. */
static ep_status parse(ep_cli_tool tool, char **argv, ep_cli_opts *o)
{
  int argc = 0;
  while (argv[argc])
    argc++;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CHECK(f != NULL);
  const ep_status st = ep_cli_parse(tool, argc, argv, o, f);
  CHECK(fclose(f) == 0);
  snprintf(err_text, sizeof err_text, "%s", buf ? buf : "");
  free(buf);
  return st;
}

static int starts_with(const char *s, const char *prefix)
{
  return !strncmp(s, prefix, strlen(prefix));
}

/* Parses a bad command line and checks its one message, start to end. */
static void bad(ep_cli_tool tool, char **argv, const char *message)
{
  ep_cli_opts o;
  CHECK_EQ_INT(parse(tool, argv, &o), EP_ERR_PARSE);
  if (strcmp(err_text, message) != 0) {
    fprintf(stderr, "wanted: %sgot:    %s", message, err_text);
    CHECK(strcmp(err_text, message) == 0);
  }
  ep_cli_opts_free(&o);
}

static void test_epsim_good(void)
{
  ep_cli_opts o;
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml"), &o), EP_OK);
  CHECK_EQ_INT(o.command, EP_CLI_RUN);
  CHECK(!strcmp(o.scenario_path, "x.yaml"));
  CHECK(!strcmp(o.out_dir, "epsim-out"));
  CHECK(!strcmp(o.backend, "simgrid"));
  CHECK_EQ_INT(o.n_sets + o.n_simgrid_args + o.help + o.version, 0);
  CHECK(!strcmp(err_text, ""));
  ep_cli_opts_free(&o);

  /* Flags before and after the scenario, repeatable ones in order, SimGrid's
   * own spelling whichever way the value was given. */
  CHECK_EQ_INT(parse(EP_CLI_EPSIM,
                     ARGV("epsim", "run", "-o", "d", "--set", "a.b=1", "x.yaml", "--set=c.d=2",
                          "--cfg=network/optim:Full", "--log=root.thres:critical", "--cfg",
                          "network/TCP-gamma:5", "-oe", "--backend", "simgrid"),
                     &o),
               EP_OK);
  CHECK(!strcmp(o.scenario_path, "x.yaml"));
  CHECK(!strcmp(o.out_dir, "e"));
  CHECK_EQ_INT(o.n_sets, 2);
  CHECK(!strcmp(o.sets[0], "a.b=1") && !strcmp(o.sets[1], "c.d=2"));
  CHECK_EQ_INT(o.n_simgrid_args, 3);
  CHECK(!strcmp(o.simgrid_args[0], "--cfg=network/optim:Full"));
  CHECK(!strcmp(o.simgrid_args[1], "--log=root.thres:critical"));
  CHECK(!strcmp(o.simgrid_args[2], "--cfg=network/TCP-gamma:5"));
  ep_cli_opts_free(&o);
  CHECK(o.sets == NULL && o.n_simgrid_args == 0);
  ep_cli_opts_free(&o); /* twice, and NULL: no-ops */
  ep_cli_opts_free(NULL);

  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "check", "x.yaml", "--set", "a=1"), &o), EP_OK);
  CHECK_EQ_INT(o.command, EP_CLI_CHECK);
  CHECK_EQ_INT(o.n_sets, 1);
  CHECK(o.max_memory_GiB == 0); /* the default share of physical memory */
  ep_cli_opts_free(&o);
  /* The memory limit, for run and check alike. */
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "--max-memory-GiB", "1.5"), &o),
               EP_OK);
  CHECK(o.max_memory_GiB == 1.5);
  ep_cli_opts_free(&o);
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "check", "x.yaml", "--max-memory-GiB=64"), &o),
               EP_OK);
  CHECK(o.max_memory_GiB == 64);
  ep_cli_opts_free(&o);
  /* Flags may come before the command; words after "--" are never flags. */
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "-o", "d", "run", "--", "-x.yaml"), &o), EP_OK);
  CHECK_EQ_INT(o.command, EP_CLI_RUN);
  CHECK(!strcmp(o.scenario_path, "-x.yaml"));
  CHECK(!strcmp(o.out_dir, "d"));
  ep_cli_opts_free(&o);

  /* --help and --version answer at once, command or not. */
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "--help"), &o), EP_OK);
  CHECK_EQ_INT(o.help, 1);
  ep_cli_opts_free(&o);
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "-h"), &o), EP_OK);
  CHECK_EQ_INT(o.help, 1);
  ep_cli_opts_free(&o);
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "--help", "--bogus"), &o), EP_OK);
  CHECK_EQ_INT(o.help, 1);
  ep_cli_opts_free(&o);
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "--version"), &o), EP_OK);
  CHECK_EQ_INT(o.version, 1);
  CHECK_EQ_INT(o.command, 0);
  ep_cli_opts_free(&o);
}

static void test_epsim_bad(void)
{
  const char *valid =
      "(valid: -o, --set, --backend, --cfg, --log, --max-memory-GiB, --help, --version)\n";
  char msg[512];
  snprintf(msg, sizeof msg, "epsim: unknown option '--bogus' %s", valid);
  bad(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "--bogus"), msg);
  snprintf(msg, sizeof msg, "epsim: unknown option '-x' %s", valid);
  bad(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "-x"), msg);
  /* epsim-real's flags are not epsim's. */
  snprintf(msg, sizeof msg, "epsim: unknown option '--dump-output' %s", valid);
  bad(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "--dump-output", "f"), msg);
  bad(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "--set"), "epsim: --set needs a value\n");
  char *bad_gib[] = {"0", "-1", "inf", "nan", "1e400", "2G", ""};
  for (size_t i = 0; i < sizeof bad_gib / sizeof bad_gib[0]; i++) {
    snprintf(msg, sizeof msg, "epsim: --max-memory-GiB wants a number > 0, got '%s'\n", bad_gib[i]);
    bad(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "--max-memory-GiB", bad_gib[i]), msg);
  }
  bad(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "-o"), "epsim: -o needs a value\n");
  bad(EP_CLI_EPSIM, ARGV("epsim", "run", "x.yaml", "--cfg"), "epsim: --cfg needs a value\n");
  bad(EP_CLI_EPSIM, ARGV("epsim", "--help=3"), "epsim: --help takes no value\n");
  bad(EP_CLI_EPSIM, ARGV("epsim", "check", "x.yaml", "-o", "d"),
      "epsim: -o is for epsim run, not epsim check\n");
  bad(EP_CLI_EPSIM, ARGV("epsim", "check", "x.yaml", "--log=root.thres:debug"),
      "epsim: --log is for epsim run, not epsim check\n");
  bad(EP_CLI_EPSIM, ARGV("epsim", "frobnicate"),
      "epsim: unknown command 'frobnicate' (valid: run, check, --help, --version)\n");
  bad(EP_CLI_EPSIM, ARGV("epsim", "-o", "d"),
      "epsim: which command? (valid: run, check, --help, --version)\n");
  bad(EP_CLI_EPSIM, ARGV("epsim", "run", "a.yaml", "b.yaml"),
      "epsim: one scenario at a time ('a.yaml' and 'b.yaml')\n");
  /* A missing scenario, or no arguments at all, print the usage after the message. */
  ep_cli_opts o;
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim", "run"), &o), EP_ERR_PARSE);
  CHECK(starts_with(err_text, "epsim: run needs a SCENARIO file\nusage: epsim run SCENARIO"));
  ep_cli_opts_free(&o);
  CHECK_EQ_INT(parse(EP_CLI_EPSIM, ARGV("epsim"), &o), EP_ERR_PARSE);
  CHECK(starts_with(err_text, "usage: epsim run SCENARIO [options]\n"));
  ep_cli_opts_free(&o);
  /* Silent without a stream (MPI ranks other than 0). */
  CHECK_EQ_INT(ep_cli_parse(EP_CLI_EPSIM, 2, ARGV("epsim", "--bogus"), &o, NULL), EP_ERR_PARSE);
  ep_cli_opts_free(&o);
}

static void test_real(void)
{
  ep_cli_opts o;
  CHECK_EQ_INT(parse(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml"), &o), EP_OK);
  CHECK_EQ_INT(o.command, EP_CLI_REAL);
  CHECK(!strcmp(o.scenario_path, "x.yaml"));
  CHECK(!strcmp(o.out_dir, "epsim-real-out"));
  CHECK(!strcmp(o.backend, "auto"));
  CHECK_EQ_INT(o.check_tokens, 8);
  CHECK_EQ_INT(o.warmup, 1);
  CHECK(o.max_mem_bytes == 0 && !o.dump_path);
  ep_cli_opts_free(&o);

  CHECK_EQ_INT(parse(EP_CLI_EPSIM_REAL,
                     ARGV("epsim-real", "--backend", "cpu", "x.yaml", "-o", "d", "--dump-output",
                          "o.bin", "--check-tokens", "40", "--warmup", "0", "--max-mem", "64K",
                          "--set", "parallel.ep=1"),
                     &o),
               EP_OK);
  CHECK(!strcmp(o.backend, "cpu"));
  CHECK(!strcmp(o.out_dir, "d"));
  CHECK(!strcmp(o.dump_path, "o.bin"));
  CHECK_EQ_INT(o.check_tokens, 40);
  CHECK_EQ_INT(o.warmup, 0);
  CHECK(o.max_mem_bytes == 64 * 1024);
  CHECK_EQ_INT(o.n_sets, 1);
  ep_cli_opts_free(&o);

  /* epsim-real takes no command word: "run" is its scenario. */
  CHECK_EQ_INT(parse(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "run"), &o), EP_OK);
  CHECK(!strcmp(o.scenario_path, "run"));
  ep_cli_opts_free(&o);

  const char *valid = "(valid: -o, --set, --backend, --dump-output, --check-tokens, --warmup, "
                      "--max-mem, --help, --version)\n";
  char msg[512];
  snprintf(msg, sizeof msg, "epsim-real: unknown option '--bogus' %s", valid);
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--bogus"), msg);
  snprintf(msg, sizeof msg, "epsim-real: unknown option '--cfg=a:b' %s", valid);
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--cfg=a:b"), msg);
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--backend"),
      "epsim-real: --backend needs a value\n");
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--check-tokens", "-1"),
      "epsim-real: --check-tokens wants an integer in 0..1000000, got '-1'\n");
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--warmup", "2x"),
      "epsim-real: --warmup wants an integer in 0..1000000, got '2x'\n");
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--check-tokens", "1000001"),
      "epsim-real: --check-tokens wants an integer in 0..1000000, got '1000001'\n");
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--warmup", ""),
      "epsim-real: --warmup wants an integer in 0..1000000, got ''\n");
  /* The kernel benchmark's flags are bench_kernels', not epsim-real's. */
  snprintf(msg, sizeof msg, "epsim-real: unknown option '--sweep' %s", valid);
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--sweep"), msg);
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "x.yaml", "--max-mem", "12Q"),
      "epsim-real: --max-mem wants bytes like 8G or 512M, got '12Q'\n");
  bad(EP_CLI_EPSIM_REAL, ARGV("epsim-real", "a.yaml", "b.yaml"),
      "epsim-real: one scenario at a time ('a.yaml' and 'b.yaml')\n");
  CHECK_EQ_INT(parse(EP_CLI_EPSIM_REAL, ARGV("epsim-real"), &o), EP_ERR_PARSE);
  CHECK(starts_with(err_text, "epsim-real: needs a SCENARIO file\n"
                              "usage: mpirun -np EP epsim-real SCENARIO"));
  ep_cli_opts_free(&o);
}

static void test_bytes(void)
{
  CHECK(ep_cli_parse_bytes("12") == 12);
  CHECK(ep_cli_parse_bytes("64M") == 64.0 * 1024 * 1024);
  CHECK(ep_cli_parse_bytes("1.5G") == 1.5 * 1024 * 1024 * 1024);
  CHECK(ep_cli_parse_bytes("8GiB") == 8.0 * 1024 * 1024 * 1024);
  CHECK(ep_cli_parse_bytes("8GB") == 8.0 * 1024 * 1024 * 1024);
  CHECK(ep_cli_parse_bytes("2k") == 2048);
  CHECK(ep_cli_parse_bytes("1T") == 1024.0 * 1024 * 1024 * 1024);
  const char *bad_values[] = {"0", "-1", "12Q", "1Gx", "", "12B", "K", "1GiBB"};
  for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++)
    CHECK(ep_cli_parse_bytes(bad_values[i]) == -1);
}

/* The help lists each tool's flags from the table, and only those. */
static void test_usage(void)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  static const ep_backend_entry sim = {"simgrid", "the simulator", &sim};
  const ep_backend_entry *const sims[] = {&sim, NULL};
  ep_cli_usage(EP_CLI_EPSIM, sims, f);
  CHECK(fclose(f) == 0);
  CHECK(starts_with(buf, "usage: epsim run SCENARIO [options]\n"));
  CHECK_STR_CONTAINS(buf, "\n  -o DIR               run: output directory (default epsim-out)\n");
  CHECK_STR_CONTAINS(buf, "\n  --set KEY=VALUE      override one scenario key (repeatable)");
  CHECK_STR_CONTAINS(buf, "\n  --cfg=KEY:VALUE      run: a SimGrid setting in SimGrid's syntax");
  CHECK_STR_CONTAINS(buf, "(repeatable), e.g.\n                       --cfg=network/optim:Full.");
  CHECK_STR_CONTAINS(buf, "\n  -h, --help           print this help\n");
  CHECK_STR_CONTAINS(buf, "\n  --max-memory-GiB X   refuse a run whose estimated peak memory");
  CHECK_STR_CONTAINS(buf, "\n  --backend NAME       run: the simulator backend (default simgrid), "
                          "one of:\n                       simgrid  the simulator\n");
  CHECK(!strstr(buf, "--dump-output"));
  free(buf);
  f = open_memstream(&buf, &len);
  /* A row without impl is a backend this build lacks. */
  static const ep_backend_entry cpu = {"cpu", "host", &cpu}, nccl = {"nccl", "GPUs", NULL};
  const ep_backend_entry *const reals[] = {&cpu, &nccl, NULL};
  ep_cli_usage(EP_CLI_EPSIM_REAL, reals, f);
  CHECK(fclose(f) == 0);
  CHECK(starts_with(buf, "usage: mpirun -np EP epsim-real SCENARIO [options]\n"));
  CHECK_STR_CONTAINS(buf, "\n  -o DIR               output directory (default epsim-real-out)\n");
  CHECK_STR_CONTAINS(buf, "\n  --max-mem BYTES      cpu backend: memory limit per rank");
  CHECK_STR_CONTAINS(buf, "\n  --version            print the version\n");
  CHECK_STR_CONTAINS(buf,
                     "(* not built into this epsim-real):\n                       cpu      host\n"
                     "                       nccl     * GPUs\n  --dump-output FILE");
  CHECK(!strstr(buf, "--cfg") && !strstr(buf, "run:") && !strstr(buf, "--max-memory-GiB"));
  free(buf);
}

int main(void)
{
  test_epsim_good();
  test_epsim_bad();
  test_real();
  test_bytes();
  test_usage();
  return check_exit_code("test_cli_flags");
}
