/* The flag table of epsim and epsim-real and its getopt_long parser. A row
 * fills one field of ep_cli_opts by its kind, so a new flag is one row here
 * and one field there. getopt_long runs in order ("-" first in the short
 * options: positionals come back as code 1 where they stand) and silent (":"
 * next: a missing value comes back as ':'), so every message is ours. */
#include "ep_cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
  KIND_SWITCH,  /* int field set to 1 */
  KIND_STRING,  /* const char * field = the value */
  KIND_INT,     /* int64_t field, in [min, max] */
  KIND_BYTES,   /* double field, ep_cli_parse_bytes */
  KIND_NUMBER,  /* double field, a finite number > 0 */
  KIND_SET,     /* appended to sets */
  KIND_SIMGRID, /* appended to simgrid_args as "--NAME=VALUE" */
} flag_kind;

typedef struct flag_row {
  const char *name;  /* long name without "--"; NULL: short only */
  char short_name;   /* 0: long only */
  const char *arg;   /* the value's name in the help; NULL: takes none */
  unsigned commands; /* EP_CLI_RUN | EP_CLI_CHECK | EP_CLI_REAL */
  flag_kind kind;
  size_t field; /* offsetof(ep_cli_opts, ...) for SWITCH, STRING, INT, BYTES */
  int64_t min, max;
  const char *help; /* lines after the first begin after a '\n' */
} flag_row;

#define EP_CLI_ALL (EP_CLI_RUN | EP_CLI_CHECK | EP_CLI_REAL)
#define FIELD(f) offsetof(ep_cli_opts, f)

/* Rows of one spelling differ per tool where their help does (-o, --backend). */
static const flag_row rows[] = {
    {NULL, 'o', "DIR", EP_CLI_RUN, KIND_STRING, FIELD(out_dir), 0, 0,
     "output directory (default epsim-out)"},
    {NULL, 'o', "DIR", EP_CLI_REAL, KIND_STRING, FIELD(out_dir), 0, 0,
     "output directory (default epsim-real-out)"},
    {"set", 0, "KEY=VALUE", EP_CLI_ALL, KIND_SET, 0, 0, 0,
     "override one scenario key (repeatable),\ne.g. --set workload.seed=7"},
    {"backend", 0, "NAME", EP_CLI_RUN, KIND_STRING, FIELD(backend), 0, 0,
     "the simulator backend (default simgrid), one of:"},
    {"backend", 0, "NAME", EP_CLI_REAL, KIND_STRING, FIELD(backend), 0, 0,
     "auto: the first GPU backend built with a visible GPU, else cpu;\n"
     "or one of (* not built into this epsim-real):"},
    {"cfg", 0, "KEY:VALUE", EP_CLI_RUN, KIND_SIMGRID, 0, 0, 0,
     "a SimGrid setting in SimGrid's syntax (repeatable), e.g.\n"
     "--cfg=network/optim:Full. Given after epsim's own settings\n"
     "(network/model:CM02, network/crosstraffic:0, network/TCP-gamma:0,\n"
     "network/optim, contexts/...), so it wins. A key or value SimGrid\n"
     "rejects is bad input (exit 1)"},
    {"log", 0, "SPEC", EP_CLI_RUN, KIND_SIMGRID, 0, 0, 0,
     "a SimGrid log setting in SimGrid's syntax (repeatable), e.g.\n"
     "--log=root.thres:critical"},
    {"max-memory-GiB", 0, "X", EP_CLI_RUN | EP_CLI_CHECK, KIND_NUMBER, FIELD(max_memory_GiB), 0, 0,
     "refuse a run whose estimated peak memory is above X GiB\n"
     "(default 80% of physical memory); check refuses it too"},
    {"dump-output", 0, "FILE", EP_CLI_REAL, KIND_STRING, FIELD(dump_path), 0, 0,
     "write the layer output: float32, native byte order,\n"
     "[ep * tokens_per_gpu * hidden], global token order (rank-major)"},
    {"check-tokens", 0, "N", EP_CLI_REAL, KIND_INT, FIELD(check_tokens), 0, 1000000,
     "tokens per rank checked against the reference (default 8, 0: none)"},
    {"warmup", 0, "N", EP_CLI_REAL, KIND_INT, FIELD(warmup), 0, 1000000,
     "untimed layers before the timed one (default 1): the first\n"
     "pays for NCCL/MPI connection setup and GPU workspaces"},
    {"max-mem", 0, "BYTES", EP_CLI_REAL, KIND_BYTES, FIELD(max_mem_bytes), 0, 0,
     "cpu backend: memory limit per rank, suffix K/M/G/T allowed\n"
     "(default: physical RAM / ranks on the node)"},
    {"help", 'h', NULL, EP_CLI_ALL, KIND_SWITCH, FIELD(help), 0, 0, "print this help"},
    {"version", 0, NULL, EP_CLI_ALL, KIND_SWITCH, FIELD(version), 0, 0, "print the version"},
};

enum { N_ROWS = sizeof rows / sizeof rows[0], LONG_VAL = 256 /* above every short letter */ };

typedef struct tool_desc {
  const char *name;
  unsigned commands;   /* the commands the tool has */
  const char *head;    /* usage lines and prose, before the flags */
  const char *tail;    /* after the flags */
  const char *out_dir; /* defaults */
  const char *backend;
} tool_desc;

static const tool_desc tools[] = {
    [EP_CLI_EPSIM] =
        {"epsim", EP_CLI_RUN | EP_CLI_CHECK,
         "usage: epsim run SCENARIO [options]\n"
         "       epsim check SCENARIO [options]\n"
         "       epsim --help | --version\n"
         "\n"
         "run    simulates one MoE layer (dispatch all-to-all, expert GroupGEMM, combine\n"
         "       all-to-all) on the scenario's cluster with SimGrid, prints a summary and\n"
         "       writes DIR/results.csv, DIR/trace.json (Perfetto), DIR/phases.png and\n"
         "       DIR/platform.xml.\n"
         "check  validates the scenario and prints what it resolves to.\n"
         "\n"
         "options (\"run:\" for run only):\n",
         "\n"
         "Scenario keys: scenarios/README.md. Exit: 0 ok, 1 bad input, 2 internal error.\n",
         "epsim-out", "simgrid"},
    [EP_CLI_EPSIM_REAL] =
        {"epsim-real", EP_CLI_REAL,
         "usage: mpirun -np EP epsim-real SCENARIO [options]\n"
         "       epsim-real --help | --version\n"
         "\n"
         "Runs one MoE layer (dispatch all-to-all, expert SwiGLU GEMM, combine all-to-all)\n"
         "for real, one MPI rank per EP rank, with the simulator's routing, placement and\n"
         "dispatch plan; checks the output against a CPU reference on sampled tokens;\n"
         "writes DIR/results.csv, DIR/trace.json and DIR/phases.png in the simulator's\n"
         "schema. The scenario's parallel.ep must equal the number of ranks.\n"
         "\n",
         "\n"
         "Exit: 0 ok, 1 bad input, 2 internal error (or a failed output check).\n",
         "epsim-real-out", "auto"},
};

#define HELP_COLUMN 20 /* width of the flag column in the help */

/* "-o DIR", "-h, --help", "--set KEY=VALUE", "--cfg=KEY:VALUE". */
static void spelling(const flag_row *r, char *buf, size_t size)
{
  int n = 0;
  if (r->short_name)
    n = snprintf(buf, size, "-%c%s", r->short_name, r->name ? ", " : "");
  if (r->name && n >= 0 && (size_t)n < size)
    n += snprintf(buf + n, size - (size_t)n, "--%s", r->name);
  if (r->arg && n >= 0 && (size_t)n < size)
    snprintf(buf + n, size - (size_t)n, "%c%s", r->kind == KIND_SIMGRID ? '=' : ' ', r->arg);
}

/* How messages name a flag: its long spelling, else its short one. */
static void flag_name(const flag_row *r, char *buf, size_t size)
{
  if (r->name)
    snprintf(buf, size, "--%s", r->name);
  else
    snprintf(buf, size, "-%c", r->short_name);
}

static const char *command_name(unsigned command)
{
  return command == EP_CLI_RUN     ? "epsim run"
         : command == EP_CLI_CHECK ? "epsim check"
                                   : "epsim-real";
}

void ep_cli_usage(ep_cli_tool tool, const ep_backend_entry *const *backends, FILE *out)
{
  const tool_desc *t = &tools[tool];
  fputs(t->head, out);
  for (int i = 0; i < N_ROWS; i++) {
    const flag_row *r = &rows[i];
    if (!(r->commands & t->commands))
      continue;
    char spell[64];
    spelling(r, spell, sizeof spell);
    /* A flag for only some of the tool's commands says which. */
    const unsigned mine = r->commands & t->commands;
    fprintf(out, "  %-*s %s", HELP_COLUMN, spell,
            mine != t->commands && mine == EP_CLI_RUN ? "run: " : "");
    for (const char *h = r->help; *h; h++) {
      fputc(*h, out);
      if (*h == '\n')
        fprintf(out, "%*s", HELP_COLUMN + 3, "");
    }
    fputc('\n', out);
    for (int b = 0; r->field == FIELD(backend) && backends && backends[b]; b++)
      fprintf(out, "%*s%-9s%s%s\n", HELP_COLUMN + 3, "", backends[b]->name,
              backends[b]->impl ? "" : "* ", backends[b]->description);
  }
  fputs(t->tail, out);
}

double ep_cli_parse_bytes(const char *s)
{
  char *end = NULL;
  errno = 0;
  const double v = strtod(s, &end);
  if (errno || end == s || !(v > 0))
    return -1;
  double mult = 1;
  switch (*end) {
  case '\0':
    break;
  case 'k':
  case 'K':
    mult = 1024.0;
    end++;
    break;
  case 'm':
  case 'M':
    mult = 1024.0 * 1024;
    end++;
    break;
  case 'g':
  case 'G':
    mult = 1024.0 * 1024 * 1024;
    end++;
    break;
  case 't':
  case 'T':
    mult = 1024.0 * 1024 * 1024 * 1024;
    end++;
    break;
  default:
    return -1;
  }
  if (*end == 'i') /* "GiB", "GB", "G" */
    end++;
  if (*end == 'B')
    end++;
  return *end ? -1 : v * mult;
}

/* Stores one flag's value in *o; EP_ERR_PARSE (message to err) for a bad value. */
static ep_status apply(const tool_desc *t, const flag_row *r, const char *value, ep_cli_opts *o,
                       FILE *err)
{
  char *field = (char *)o + r->field;
  char name[32];
  flag_name(r, name, sizeof name);
  switch (r->kind) {
  case KIND_SWITCH:
    *(int *)(void *)field = 1;
    return EP_OK;
  case KIND_STRING:
    *(const char **)(void *)field = value;
    return EP_OK;
  case KIND_INT: {
    char *end = NULL;
    errno = 0;
    const long long n = strtoll(value, &end, 10);
    if (errno || !*value || *end || n < r->min || n > r->max) {
      if (err)
        fprintf(err, "%s: %s wants an integer in %lld..%lld, got '%s'\n", t->name, name,
                (long long)r->min, (long long)r->max, value);
      return EP_ERR_PARSE;
    }
    *(int64_t *)(void *)field = n;
    return EP_OK;
  }
  case KIND_BYTES: {
    const double bytes = ep_cli_parse_bytes(value);
    if (bytes <= 0) {
      if (err)
        fprintf(err, "%s: %s wants bytes like 8G or 512M, got '%s'\n", t->name, name, value);
      return EP_ERR_PARSE;
    }
    *(double *)(void *)field = bytes;
    return EP_OK;
  }
  case KIND_NUMBER: {
    char *end = NULL;
    errno = 0;
    const double x = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(x) || !(x > 0)) {
      if (err)
        fprintf(err, "%s: %s wants a number > 0, got '%s'\n", t->name, name, value);
      return EP_ERR_PARSE;
    }
    *(double *)(void *)field = x;
    return EP_OK;
  }
  case KIND_SET:
    o->sets[o->n_sets++] = value;
    return EP_OK;
  case KIND_SIMGRID: {
    const size_t n = strlen(name) + 1 + strlen(value) + 1;
    char *arg = malloc(n);
    if (!arg)
      return EP_ERR_NOMEM;
    snprintf(arg, n, "%s=%s", name, value);
    o->simgrid_args[o->n_simgrid_args++] = arg;
    return EP_OK;
  }
  }
  return EP_ERR_INVALID;
}

/* A word that is not a flag: epsim's command, then the scenario. */
static ep_status positional(const tool_desc *t, const char *word, ep_cli_opts *o, FILE *err)
{
  if (!o->command) {
    if (!strcmp(word, "run") || !strcmp(word, "check")) {
      o->command = !strcmp(word, "run") ? EP_CLI_RUN : EP_CLI_CHECK;
      return EP_OK;
    }
    if (err)
      fprintf(err, "%s: unknown command '%s' (valid: run, check, --help, --version)\n", t->name,
              word);
    return EP_ERR_PARSE;
  }
  if (o->scenario_path) {
    if (err)
      fprintf(err, "%s: one scenario at a time ('%s' and '%s')\n", t->name, o->scenario_path, word);
    return EP_ERR_PARSE;
  }
  o->scenario_path = word;
  return EP_OK;
}

/* The tool's flags, for "unknown option" messages. */
static void valid_flags(const tool_desc *t, char *buf, size_t size)
{
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < N_ROWS && used < size; i++) {
    char name[32];
    if (!(rows[i].commands & t->commands))
      continue;
    flag_name(&rows[i], name, sizeof name);
    if (strstr(buf, name)) /* a spelling with one row per tool's command */
      continue;
    const int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", name);
    if (n < 0)
      break;
    used += (size_t)n;
  }
}

ep_status ep_cli_parse(ep_cli_tool tool, int argc, char **argv, ep_cli_opts *o, FILE *err)
{
  const tool_desc *t = &tools[tool];
  memset(o, 0, sizeof *o);
  o->out_dir = t->out_dir;
  o->backend = t->backend;
  o->check_tokens = 8;
  o->warmup = 1;
  if (!(t->commands & (EP_CLI_RUN | EP_CLI_CHECK)))
    o->command = t->commands; /* a tool of one command takes no command word */
  o->sets = calloc((size_t)argc + 1, sizeof *o->sets);
  o->simgrid_args = calloc((size_t)argc + 1, sizeof *o->simgrid_args);
  if (!o->sets || !o->simgrid_args) {
    if (err)
      fprintf(err, "%s: out of memory\n", t->name);
    return EP_ERR_NOMEM;
  }

  /* getopt_long's tables from the tool's rows: long ones return LONG_VAL + row. */
  struct option longopts[N_ROWS + 1];
  char shorts[2 * N_ROWS + 3] = "-:";
  size_t n_long = 0, n_short = 2;
  for (int i = 0; i < N_ROWS; i++) {
    const flag_row *r = &rows[i];
    if (!(r->commands & t->commands))
      continue;
    if (r->name)
      longopts[n_long++] =
          (struct option){r->name, r->arg ? required_argument : no_argument, NULL, LONG_VAL + i};
    if (r->short_name) {
      shorts[n_short++] = r->short_name;
      if (r->arg)
        shorts[n_short++] = ':';
    }
  }
  longopts[n_long] = (struct option){NULL, 0, NULL, 0};
  shorts[n_short] = '\0';

  int seen[N_ROWS] = {0};
  ep_status st = EP_OK;
  optind = 0; /* glibc: a full restart, so the parser can run more than once */
  opterr = 0;
  int c;
  while (st == EP_OK && (c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
    if (c == 1) {
      st = positional(t, optarg, o, err);
      continue;
    }
    if (c == '?' || c == ':') {
      /* optopt: LONG_VAL + row for a long flag, the letter for a short one, 0 for an unknown long.
       */
      int row = -1;
      for (int i = 0; i < N_ROWS && optopt > 0; i++)
        if ((optopt >= LONG_VAL && i == optopt - LONG_VAL) ||
            (optopt < LONG_VAL && rows[i].short_name == optopt && (rows[i].commands & t->commands)))
          row = i;
      char name[32];
      if (row >= 0)
        flag_name(&rows[row], name, sizeof name);
      if (err && c == ':') {
        fprintf(err, "%s: %s needs a value\n", t->name, name);
      } else if (err && row >= 0) {
        fprintf(err, "%s: %s takes no value\n", t->name, name);
      } else if (err) {
        char valid[512], letter[3] = {'-', (char)optopt, '\0'};
        valid_flags(t, valid, sizeof valid);
        fprintf(err, "%s: unknown option '%s' (valid: %s)\n", t->name,
                optopt > 0 && optopt < LONG_VAL ? letter : argv[optind - 1], valid);
      }
      st = EP_ERR_PARSE;
      break;
    }
    int row = c - LONG_VAL;
    if (c < LONG_VAL)
      for (row = 0; rows[row].short_name != c || !(rows[row].commands & t->commands); row++) {
      }
    seen[row] = 1;
    st = apply(t, &rows[row], optarg, o, err);
    if (o->help || o->version)
      return st; /* --help and --version answer at once, as the flags before them allow */
  }
  for (int i = optind; st == EP_OK && i < argc; i++) /* the words after "--" */
    st = positional(t, argv[i], o, err);
  if (st != EP_OK)
    return st;

  if (!o->command) {
    if (err && argc < 2)
      ep_cli_usage(tool, NULL, err); /* "epsim" alone */
    else if (err)
      fprintf(err, "%s: which command? (valid: run, check, --help, --version)\n", t->name);
    return EP_ERR_PARSE;
  }
  for (int i = 0; i < N_ROWS; i++)
    if (seen[i] && !(rows[i].commands & o->command)) {
      char name[32];
      flag_name(&rows[i], name, sizeof name);
      if (err)
        fprintf(err, "%s: %s is for %s, not %s\n", t->name, name,
                command_name(rows[i].commands & t->commands), command_name(o->command));
      return EP_ERR_PARSE;
    }
  if (!o->scenario_path) {
    if (err) {
      if (t->commands == EP_CLI_REAL)
        fprintf(err, "%s: needs a SCENARIO file\n", t->name);
      else
        fprintf(err, "%s: %s needs a SCENARIO file\n", t->name,
                o->command == EP_CLI_RUN ? "run" : "check");
      ep_cli_usage(tool, NULL, err);
    }
    return EP_ERR_PARSE;
  }
  return EP_OK;
}

void ep_cli_opts_free(ep_cli_opts *o)
{
  if (!o)
    return;
  for (int i = 0; i < o->n_simgrid_args; i++)
    free(o->simgrid_args[i]);
  free(o->simgrid_args);
  free(o->sets);
  memset(o, 0, sizeof *o);
}
