/* Structure-aware fuzzing of `epsim run`: random scenarios built from the
 * schema (every key, values at and near the ends of their ranges and far past
 * them, log-uniform in between, random EP/expert/top_k/flows combinations, EP
 * and tokens capped so a run takes about a second), each given to
 * `epsim check` and then `epsim run -o DIR`, each with a timeout. A finding is:
 * a crash (a signal, sanitizer reports included), a hang (the timeout), an
 * exit other than 0 or 1, check and run disagreeing, after exit 0 a file the
 * "wrote" line names missing or a results.csv with a bad row or a non-finite
 * number (or nan/inf in the summary or trace.json), and after a failed run
 * anything left in -o or beside it. Each finding's scenario is saved, with the
 * reason, for replay with `epsim run FILE` or --replay.
 * Case I of seed S is the same scenario on every machine (--seed S --first I
 * --runs 1 regenerates it); --time-s bounds the whole run.
 *   fuzz_epsim_run --epsim PATH [--seed S] [--time-s T] [--runs N] [--first I]
 *                  [--timeout-s T] [--findings DIR] [--max-saved N] [--verbose]
 *   fuzz_epsim_run --epsim PATH --replay FILE...
 * Exit: 0 no finding, 1 findings, 2 usage or setup error. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ep_rng.h"

/* Run-time caps: pair flows re-solve per GPU pair, so fewer ranks. */
#define MAX_EP_PAIR 32
#define MAX_EP_PORT 64
#define MAX_TOKENS 4096
#define MAX_COPIES 1000000 /* tokens_per_gpu * ep * top_k */

typedef struct opts {
  const char *epsim;
  uint64_t seed;
  double time_s;    /* the whole run; 0: no limit */
  int64_t runs;     /* cases; 0: until time_s */
  int64_t first;    /* the first case's index */
  double timeout_s; /* per epsim call */
  const char *findings;
  int max_saved;
  int verbose;
  char **replay; /* [n_replay] scenario files, or NULL */
  int n_replay;
} opts;

/* ---- growing text ---- */

typedef struct text {
  char *s;
  size_t len, cap;
} text;

__attribute__((format(printf, 2, 3))) static void text_add(text *t, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    abort();
  if (t->len + (size_t)n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->len + (size_t)n + 1)
      cap *= 2;
    char *grown = realloc(t->s, cap);
    if (!grown) {
      fprintf(stderr, "fuzz_epsim_run: out of memory\n");
      exit(2);
    }
    t->s = grown;
    t->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
  va_end(ap);
  t->len += (size_t)n;
}

/* dir/name into buf; a path that does not fit is a setup error. */
static void join(char *buf, size_t n, const char *dir, const char *name)
{
  const int w = snprintf(buf, n, "%s/%s", dir, name);
  if (w < 0 || (size_t)w >= n) {
    fprintf(stderr, "fuzz_epsim_run: path too long: %s/%s\n", dir, name);
    exit(2);
  }
}

/* ---- random values ---- */

static int64_t irange(ep_rng *r, int64_t lo, int64_t hi) /* uniform in [lo, hi] */
{
  if (hi <= lo)
    return lo;
  return lo + (int64_t)(ep_rng_next_u64(r) % (uint64_t)(hi - lo + 1));
}

static int chance(ep_rng *r, double p)
{
  return ep_rng_uniform(r) < p;
}

static double dlog(ep_rng *r, double lo, double hi) /* log-uniform in [lo, hi], lo > 0 */
{
  return exp(log(lo) + ep_rng_uniform(r) * (log(hi) - log(lo)));
}

static int64_t ilog(ep_rng *r, int64_t lo, int64_t hi) /* log-uniform integer, lo >= 1 */
{
  if (hi <= lo)
    return lo;
  int64_t v = (int64_t)floor(dlog(r, (double)lo, (double)hi + 1.0));
  return v < lo ? lo : v > hi ? hi : v;
}

/* An integer at an end of [lo, hi], next to one, or log-uniform inside. */
static int64_t ivalue(ep_rng *r, int64_t lo, int64_t hi)
{
  const double u = ep_rng_uniform(r);
  if (u < 0.1)
    return lo;
  if (u < 0.2)
    return hi;
  if (u < 0.25)
    return lo + 1 <= hi ? lo + 1 : hi;
  if (u < 0.3)
    return hi - 1 >= lo ? hi - 1 : lo;
  return ilog(r, lo < 1 ? 1 : lo, hi);
}

#define PICK(r, arr) (arr)[irange((r), 0, (int64_t)(sizeof(arr) / sizeof((arr)[0])) - 1)]

/* A physical quantity: usually plausible (nice_lo..nice_hi), else an extreme. */
static double extreme(ep_rng *r, double nice_lo, double nice_hi)
{
  static const double edges[] = {4.9406564584124654e-324,
                                 2.2250738585072014e-308,
                                 1e-300,
                                 1e-100,
                                 1e-20,
                                 1e-12,
                                 1e-9,
                                 1e-6,
                                 1e-3,
                                 1e3,
                                 1e6,
                                 2e11,
                                 1e15,
                                 1e100,
                                 1e300,
                                 1e305,
                                 1e307,
                                 1.7976931348623157e308};
  const double u = ep_rng_uniform(r);
  if (u < 0.7) /* most scenarios should pass check and reach the run */
    return dlog(r, nice_lo, nice_hi);
  if (u < 0.8)
    return PICK(r, edges);
  return dlog(r, 1e-300, 1e308);
}

/* "%.17g" (exact), or a short spelling of a plausible value. */
static void add_number(text *t, ep_rng *r, double v)
{
  if (chance(r, 0.5))
    text_add(t, "%.17g", v);
  else
    text_add(t, "%.6g", v);
}

/* ---- the scenario ---- */

static const char *const names[] = {
    "m",
    "DeepSeek-V3",
    "'a, \"quoted\" name'",
    "'tab\there'",
    "'semi;colon,comma'",
    "\"line\\nbreak\"",
    "'µ-модель 专家'",
    "'x'",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
static const char *const gpus[] = {"H100", "H800", "H200", "B200", "GB200", "h100"};

static int64_t ceil_div(int64_t a, int64_t b)
{
  return (a + b - 1) / b;
}

/* Case `index` of seed `seed` as a scenario file's text. */
static void gen_scenario(uint64_t seed, int64_t index, text *t)
{
  ep_rng rng, *r = &rng;
  ep_rng_seed(r, seed, (uint64_t)index);
  text_add(t, "# fuzz_epsim_run --seed %" PRIu64 " --first %" PRId64 " --runs 1\n", seed, index);

  static const char *const flows_words[] = {NULL, "auto", "pair", "port"};
  const char *flows = PICK(r, flows_words);
  const int64_t ep_cap = flows && strcmp(flows, "port") == 0 ? MAX_EP_PORT : MAX_EP_PAIR;
  static const int64_t eps[] = {1, 2, 4, 8, 16, 32, 64, 3, 6, 12, 24, 48, 72};
  int64_t ep = chance(r, 0.6) ? PICK(r, eps) : irange(r, 1, ep_cap);
  if (ep > ep_cap)
    ep = ep_cap;
  const int64_t n_experts = ep * ivalue(r, 1, 65536 / ep);
  int64_t top_k;
  const double u = ep_rng_uniform(r);
  if (u < 0.1)
    top_k = 1024;
  else if (u < 0.15)
    top_k = 1025;
  else
    top_k = ivalue(r, 1, n_experts < 4096 ? n_experts : 4096);
  if (top_k > n_experts)
    top_k = n_experts;

  /* model */
  static const char *const dtypes[] = {"bf16", "fp8"};
  const char *dispatch = chance(r, 0.6) ? PICK(r, dtypes) : NULL;
  const char *combine = chance(r, 0.4) ? PICK(r, dtypes) : NULL;
  const int fp8 = (dispatch && !strcmp(dispatch, "fp8")) || (combine && !strcmp(combine, "fp8"));
  int64_t hidden = fp8 && !chance(r, 0.05) ? 128 * ivalue(r, 1, 8192) : ivalue(r, 1, 1048576);
  text_add(t, "model:\n  name: %s\n  n_experts: %" PRId64 "\n  top_k: %" PRId64 "\n",
           PICK(r, names), n_experts, top_k);
  text_add(t, "  hidden: %" PRId64 "\n  moe_intermediate: %" PRId64 "\n", hidden,
           ivalue(r, 1, 1048576));
  if (chance(r, 0.5))
    text_add(t, "  n_shared_experts: %" PRId64 "\n", ivalue(r, 0, 1024));
  if (dispatch)
    text_add(t, "  dispatch_dtype: %s\n", dispatch);
  if (combine)
    text_add(t, "  combine_dtype: %s\n", combine);

  /* cluster: a preset with some fields replaced, or an explicit description */
  static const char *const link_keys[] = {"nvlink_GBps", "nvlink_latency_us", "nic_GBps",
                                          "nic_latency_us"};
  text_add(t, "cluster:\n");
  const int explicit_cluster = chance(r, 0.4);
  int64_t gpn;
  if (!explicit_cluster) {
    static const char *const presets[] = {"hgx-h100", "hgx-h800", "gb200-nvl72"};
    const char *preset = PICK(r, presets);
    const int racks = strcmp(preset, "gb200-nvl72") == 0;
    gpn = racks ? 72 : 8;
    if (chance(r, 0.15)) {
      gpn = ivalue(r, 1, 1024);
      text_add(t, "  gpus_per_node: %" PRId64 "\n", gpn);
    }
    text_add(t, "  preset: %s\n", preset);
    int64_t count = ceil_div(ep, gpn);
    if (chance(r, 0.15))
      count = count + ivalue(r, 0, 65536 - count);
    text_add(t, "  %s: %" PRId64 "\n", racks ? "racks" : "nodes", count);
    if (chance(r, 0.2))
      text_add(t, "  gpu: %s\n", PICK(r, gpus));
  } else {
    static const int64_t gpns[] = {1, 2, 4, 8, 72, 1024};
    gpn = chance(r, 0.5) ? PICK(r, gpns) : ivalue(r, 1, 1024);
    int64_t nodes = ceil_div(ep, gpn);
    if (chance(r, 0.15))
      nodes = nodes + ivalue(r, 0, 65536 - nodes);
    text_add(t, "  gpu: %s\n  gpus_per_node: %" PRId64 "\n  nodes: %" PRId64 "\n", PICK(r, gpus),
             gpn, nodes);
    if (chance(r, 0.2))
      text_add(t, "  fabric: nonblocking\n");
  }
  for (size_t i = 0; i < sizeof link_keys / sizeof link_keys[0]; i++) {
    if (!explicit_cluster && !chance(r, 0.35))
      continue;
    const int latency = strstr(link_keys[i], "latency") != NULL;
    text_add(t, "  %s: ", link_keys[i]);
    if (latency && chance(r, 0.1))
      text_add(t, "0");
    else
      add_number(t, r, latency ? extreme(r, 0.1, 100) : extreme(r, 1, 2000));
    text_add(t, "\n");
  }

  /* parallel */
  static const char *const placements[] = {"contiguous", "round_robin"};
  text_add(t, "parallel:\n  ep: %" PRId64 "\n", ep);
  if (chance(r, 0.5))
    text_add(t, "  placement: %s\n", PICK(r, placements));
  if (chance(r, 0.1))
    text_add(t, "  tp: 1\n  dp: 1\n");

  /* workload */
  int64_t max_tokens = MAX_COPIES / (ep * top_k);
  if (max_tokens > MAX_TOKENS)
    max_tokens = MAX_TOKENS;
  if (max_tokens < 1)
    max_tokens = 1;
  text_add(t, "workload:\n  tokens_per_gpu: %" PRId64 "\n", ivalue(r, 1, max_tokens));
  const double routing = ep_rng_uniform(r);
  if (routing < 0.3) {
    if (chance(r, 0.5))
      text_add(t, "  routing: uniform\n");
  } else if (routing < 0.65 || n_experts < 2) {
    static const double zipf_edges[] = {149, 150, 151, 1e3};
    text_add(t, "  routing: zipf\n");
    if (chance(r, 0.9)) {
      text_add(t, "  zipf_exponent: ");
      add_number(t, r, chance(r, 0.1) ? PICK(r, zipf_edges) : extreme(r, 0.05, 4));
      text_add(t, "\n");
    }
  } else {
    static const double share_edges[] = {1e-300, 1e-16, 0.5, 0.99999999999999989};
    const double share = chance(r, 0.2)   ? PICK(r, share_edges)
                         : chance(r, 0.5) ? 0.05 + 0.9 * ep_rng_uniform(r)
                                          : dlog(r, 1e-300, 0.99999999999999989);
    text_add(t, "  routing: hot\n  hot_experts: %" PRId64 "\n  hot_share: %.17g\n",
             ivalue(r, 1, n_experts - 1), share);
  }
  const double seed_kind = ep_rng_uniform(r);
  if (seed_kind < 0.1)
    text_add(t, "  seed: 0\n");
  else if (seed_kind < 0.2)
    text_add(t, "  seed: 18446744073709551615\n");
  else if (seed_kind < 0.7)
    text_add(t, "  seed: %" PRIu64 "\n", ep_rng_next_u64(r));

  /* policy, sim */
  if (chance(r, 0.5)) {
    text_add(t, "policy:\n");
    if (chance(r, 0.8)) {
      text_add(t, "  capacity_factor: ");
      if (chance(r, 0.2))
        text_add(t, "none");
      else
        add_number(t, r, extreme(r, 0.5, 4));
      text_add(t, "\n");
    }
    if (chance(r, 0.3))
      text_add(t, "  dispatch: direct\n");
  }
  if (flows)
    text_add(t, "sim:\n  flows: %s\n", flows);
}

/* ---- processes ---- */

typedef struct proc {
  int timed_out;
  int sig;  /* the signal that ended it, or 0 */
  int code; /* its exit code when it exited */
} proc;

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs argv in cwd with stdout and stderr to files, killed (with everything
 * it started) after timeout_s. Returns 0, or -1 when it could not start. */
static int run_proc(char *const argv[], const char *cwd, const char *out_path, const char *err_path,
                    double timeout_s, proc *p)
{
  memset(p, 0, sizeof *p);
  const pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    setpgid(0, 0);
    FILE *o = freopen(out_path, "w", stdout), *e = freopen(err_path, "w", stderr);
    if (!o || !e || chdir(cwd) != 0)
      _exit(126);
    execv(argv[0], argv);
    _exit(127);
  }
  setpgid(pid, pid);
  const double deadline = now_s() + timeout_s;
  int status = 0;
  for (;;) {
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR)
      return -1;
    if (now_s() > deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      p->timed_out = 1;
      return 0;
    }
    nanosleep(&(struct timespec){0, 5000000}, NULL);
  }
  kill(-pid, SIGKILL); /* anything it left running */
  if (WIFSIGNALED(status))
    p->sig = WTERMSIG(status);
  else
    p->code = WEXITSTATUS(status);
  return 0;
}

static void describe(const char *what, const proc *p, char *buf, size_t n)
{
  if (p->timed_out)
    snprintf(buf, n, "%s hung (timeout)", what);
  else if (p->sig)
    snprintf(buf, n, "%s crashed (signal %d, %s)", what, p->sig, strsignal(p->sig));
  else
    snprintf(buf, n, "%s exit %d", what, p->code);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void rm_rf(const char *path)
{
  nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- checking the outputs ---- */

/* The whole file, NUL-terminated (*len without the NUL); NULL on error. */
static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t used = 0, cap = 65536;
  char *buf = malloc(cap);
  for (size_t got; buf; used += got) {
    if (cap - used < 2) {
      char *grown = realloc(buf, cap * 2);
      if (!grown) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = grown;
      cap *= 2;
    }
    if ((got = fread(buf + used, 1, cap - used - 1, f)) == 0)
      break;
  }
  fclose(f);
  if (!buf)
    return NULL;
  buf[used] = '\0';
  if (len)
    *len = used;
  return buf;
}

/* A word "nan", "inf" or "infinity" (any case) in s; NUL bytes end s early. */
static int has_nonfinite_word(const char *s)
{
  for (const char *p = s; *p;) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
      p++;
      continue;
    }
    const char *start = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
      p++;
    const size_t n = (size_t)(p - start);
    char w[9] = {0};
    if (n > 8)
      continue;
    for (size_t i = 0; i < n; i++)
      w[i] = (char)(start[i] | 0x20);
    if (!strcmp(w, "nan") || !strcmp(w, "inf") || !strcmp(w, "infinity"))
      return 1;
  }
  return 0;
}

/* results.csv: "#" lines, the header, then rows of as many fields, every one
 * but phase a finite number, end_us >= start_us, time_us >= 0. */
static int check_csv(const char *path, char *why, size_t n)
{
  char *s = read_file(path, NULL);
  if (!s) {
    snprintf(why, n, "cannot read %.200s", path);
    return 0;
  }
  int ok = 1, n_cols = 0, rows = 0, line_no = 0;
  int col_phase = -1, col_start = -1, col_end = -1, col_time = -1;
  char *save = NULL;
  for (char *line = strtok_r(s, "\n", &save); line && ok; line = strtok_r(NULL, "\n", &save)) {
    line_no++;
    if (line[0] == '#' && n_cols == 0)
      continue;
    char *fsave = NULL;
    int col = 0;
    double start = 0, end = 0;
    for (char *f = strtok_r(line, ",", &fsave); f; f = strtok_r(NULL, ",", &fsave), col++) {
      if (n_cols == 0) {
        col_phase = !strcmp(f, "phase") ? col : col_phase;
        col_start = !strcmp(f, "start_us") ? col : col_start;
        col_end = !strcmp(f, "end_us") ? col : col_end;
        col_time = !strcmp(f, "time_us") ? col : col_time;
        continue;
      }
      if (col == col_phase)
        continue;
      char *endp = NULL;
      const double v = strtod(f, &endp);
      if (endp == f || *endp != '\0' || !isfinite(v)) {
        snprintf(why, n, "results.csv line %d column %d: '%.40s' is not a finite number", line_no,
                 col + 1, f);
        ok = 0;
        break;
      }
      if (col == col_start)
        start = v;
      if (col == col_end)
        end = v;
      if (col == col_time && v < 0) {
        snprintf(why, n, "results.csv line %d: time_us %g < 0", line_no, v);
        ok = 0;
        break;
      }
    }
    if (!ok)
      break;
    if (n_cols == 0) {
      n_cols = col;
      if (col_phase < 0 || col_start < 0 || col_end < 0 || col_time < 0) {
        snprintf(why, n, "results.csv line %d: header without phase, start_us, end_us, time_us",
                 line_no);
        ok = 0;
      }
      continue;
    }
    rows++;
    if (col != n_cols) {
      snprintf(why, n, "results.csv line %d: %d fields, the header has %d", line_no, col, n_cols);
      ok = 0;
    } else if (end < start) {
      snprintf(why, n, "results.csv line %d: end_us %g before start_us %g", line_no, end, start);
      ok = 0;
    }
  }
  if (ok && rows == 0) {
    snprintf(why, n, "results.csv has no rows");
    ok = 0;
  }
  free(s);
  return ok;
}

/* After exit 0: every file of stdout's "wrote" line exists and is not empty,
 * results.csv and trace.json among them; no nan/inf in the summary or trace. */
static int check_outputs(const char *run_out, const char *out_dir, char *why, size_t n)
{
  char *s = read_file(run_out, NULL);
  if (!s) {
    snprintf(why, n, "cannot read run's stdout");
    return 0;
  }
  int ok = 1;
  char *wrote = NULL;
  for (char *p = s; (p = strstr(p, "wrote ")); p++)
    if (p == s || p[-1] == '\n')
      wrote = p + 6;
  if (has_nonfinite_word(s)) {
    snprintf(why, n, "nan or inf in the summary");
    ok = 0;
  } else if (!wrote) {
    snprintf(why, n, "no \"wrote\" line after exit 0");
    ok = 0;
  } else {
    wrote[strcspn(wrote, "\n")] = '\0';
    int seen_csv = 0, seen_trace = 0;
    char *save = NULL;
    for (char *f = strtok_r(wrote, ",", &save); f && ok; f = strtok_r(NULL, ",", &save)) {
      while (*f == ' ')
        f++;
      struct stat st;
      if (stat(f, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        snprintf(why, n, "exit 0, but %s is missing or empty", f);
        ok = 0;
      }
      const char *base = strrchr(f, '/') ? strrchr(f, '/') + 1 : f;
      seen_csv |= !strcmp(base, "results.csv");
      seen_trace |= !strcmp(base, "trace.json");
    }
    if (ok && (!seen_csv || !seen_trace)) {
      snprintf(why, n, "the \"wrote\" line lacks results.csv or trace.json");
      ok = 0;
    }
  }
  free(s);
  char path[4096];
  if (ok) {
    join(path, sizeof path, out_dir, "results.csv");
    ok = check_csv(path, why, n);
  }
  if (ok) {
    join(path, sizeof path, out_dir, "trace.json");
    char *trace = read_file(path, NULL);
    if (trace && has_nonfinite_word(trace)) {
      snprintf(why, n, "nan or inf in trace.json");
      ok = 0;
    }
    free(trace);
  }
  return ok;
}

/* Entries of dir other than the runner's own files (and "out" when allowed):
 * what a run left beside -o. */
static int stray_entries(const char *dir, int allow_out, char *why, size_t n)
{
  static const char *const own[] = {"case.yaml", "check.out", "check.err", "run.out", "run.err"};
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  int stray = 0;
  for (struct dirent *e; !stray && (e = readdir(d));) {
    const char *name = e->d_name;
    int mine = !strcmp(name, ".") || !strcmp(name, "..") || (allow_out && !strcmp(name, "out"));
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
      mine |= !strcmp(name, own[i]);
    if (!mine) {
      snprintf(why, n, "left '%.200s' beside -o", name);
      stray = 1;
    }
  }
  closedir(d);
  return stray;
}

/* ---- one case ---- */

typedef enum { F_NONE, F_CRASH, F_HANG, F_EXIT, F_DISAGREE, F_OUTPUT, F_COUNT } finding;
static const char *const finding_names[F_COUNT] = {"none",     "crash",     "hang",
                                                   "exit > 1", "check/run", "output"};

static finding classify(const proc *p)
{
  return p->timed_out ? F_HANG : p->sig ? F_CRASH : p->code > 1 ? F_EXIT : F_NONE;
}

/* Runs check and run on work/case.yaml; the reason of a finding in why. */
static finding run_case(const opts *o, const char *work, char *why, size_t n)
{
  char yaml[4096], out_dir[4096], files[4][4096];
  join(yaml, sizeof yaml, work, "case.yaml");
  join(out_dir, sizeof out_dir, work, "out");
  static const char *const file_names[4] = {"check.out", "check.err", "run.out", "run.err"};
  for (int i = 0; i < 4; i++)
    join(files[i], sizeof files[i], work, file_names[i]);
  rm_rf(out_dir);

  char *check_argv[] = {(char *)o->epsim, "check", yaml, NULL};
  char *run_argv[] = {(char *)o->epsim, "run", yaml, "-o", out_dir, NULL};
  proc check, run;
  if (run_proc(check_argv, work, files[0], files[1], o->timeout_s, &check) != 0 ||
      run_proc(run_argv, work, files[2], files[3], o->timeout_s, &run) != 0) {
    fprintf(stderr, "fuzz_epsim_run: cannot start %s: %s\n", o->epsim, strerror(errno));
    exit(2);
  }
  char a[128], b[128];
  describe("check", &check, a, sizeof a);
  describe("run", &run, b, sizeof b);
  finding f = classify(&check);
  if (f != F_NONE) {
    snprintf(why, n, "%s", a);
    return f;
  }
  if ((f = classify(&run)) != F_NONE) {
    snprintf(why, n, "%s (check exit %d)", b, check.code);
    return f;
  }
  if (check.code != run.code) {
    snprintf(why, n, "check exit %d, run exit %d", check.code, run.code);
    return F_DISAGREE;
  }
  if (run.code == 0)
    return check_outputs(files[2], out_dir, why, n) && !stray_entries(work, 1, why, n) ? F_NONE
                                                                                       : F_OUTPUT;
  struct stat st;
  if (stat(out_dir, &st) == 0) {
    snprintf(why, n, "run exit %d, but -o exists", run.code);
    return F_OUTPUT;
  }
  return stray_entries(work, 0, why, n) ? F_OUTPUT : F_NONE;
}

/* Copies the case and the tails of both calls' stderr into the findings. */
static void save_finding(const opts *o, const char *work, const char *name, finding f,
                         const char *why)
{
  char path[4096], src[4096];
  char file[600];
  snprintf(file, sizeof file, "%s.yaml", name);
  join(path, sizeof path, o->findings, file);
  join(src, sizeof src, work, "case.yaml");
  char *yaml = read_file(src, NULL);
  FILE *out = fopen(path, "w");
  if (!yaml || !out) {
    fprintf(stderr, "fuzz_epsim_run: cannot save %s: %s\n", path, strerror(errno));
    free(yaml);
    if (out)
      fclose(out);
    return;
  }
  fprintf(out, "# finding (%s): %s\n# replay: epsim run %s.yaml -o out\n%s", finding_names[f], why,
          name, yaml);
  free(yaml);
  static const char *const logs[] = {"check.err", "run.err"};
  for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
    join(src, sizeof src, work, logs[i]);
    size_t len = 0;
    char *log = read_file(src, &len);
    if (!log)
      continue;
    const size_t tail = len > 2000 ? len - 2000 : 0;
    fprintf(out, "# --- %s (last %zu bytes) ---\n", logs[i], len - tail);
    for (char *line = log + tail; *line;) {
      const size_t l = strcspn(line, "\n");
      fprintf(out, "# %.*s\n", (int)l, line);
      line += l + (line[l] == '\n');
    }
    free(log);
  }
  fclose(out);
}

/* ---- main ---- */

static void usage(FILE *f)
{
  fprintf(f, "usage: fuzz_epsim_run --epsim PATH [--seed S] [--time-s T] [--runs N] [--first I]\n"
             "                      [--timeout-s T] [--findings DIR] [--max-saved N] [--verbose]\n"
             "       fuzz_epsim_run --epsim PATH --replay FILE...\n"
             "Runs epsim check and epsim run on random valid scenarios with extreme numbers\n"
             "(case I of seed S is always the same scenario) until --time-s (default 60) or\n"
             "--runs; saves each finding's scenario in --findings (default fuzz-findings).\n"
             "--timeout-s: per epsim call (default 30). Exit: 0 none, 1 findings, 2 error.\n");
}

static int parse_args(int argc, char **argv, opts *o)
{
  *o = (opts){
      .seed = 1, .time_s = 60, .timeout_s = 30, .findings = "fuzz-findings", .max_saved = 50};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (!strcmp(a, "--verbose")) {
      o->verbose = 1;
      continue;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    }
    if (!strcmp(a, "--replay")) {
      o->replay = argv + i + 1;
      o->n_replay = argc - i - 1;
      break;
    }
    if (!v) {
      fprintf(stderr, "fuzz_epsim_run: %s needs a value\n", a);
      return -1;
    }
    errno = 0;
    if (!strcmp(a, "--epsim"))
      o->epsim = v;
    else if (!strcmp(a, "--findings"))
      o->findings = v;
    else if (!strcmp(a, "--seed"))
      o->seed = strtoull(v, &end, 10);
    else if (!strcmp(a, "--time-s"))
      o->time_s = strtod(v, &end);
    else if (!strcmp(a, "--timeout-s"))
      o->timeout_s = strtod(v, &end);
    else if (!strcmp(a, "--runs"))
      o->runs = strtoll(v, &end, 10);
    else if (!strcmp(a, "--first"))
      o->first = strtoll(v, &end, 10);
    else if (!strcmp(a, "--max-saved"))
      o->max_saved = (int)strtol(v, &end, 10);
    else {
      fprintf(stderr, "fuzz_epsim_run: unknown option '%s'\n", a);
      return -1;
    }
    if (end && (*end != '\0' || end == v || errno)) {
      fprintf(stderr, "fuzz_epsim_run: bad value for %s: '%s'\n", a, v);
      return -1;
    }
    i++;
  }
  if (!o->epsim) {
    fprintf(stderr, "fuzz_epsim_run: --epsim PATH is required\n");
    return -1;
  }
  if (o->timeout_s <= 0 || o->time_s < 0 || o->runs < 0 || o->first < 0 || o->max_saved < 0) {
    fprintf(stderr, "fuzz_epsim_run: --timeout-s must be > 0; --time-s, --runs, --first, "
                    "--max-saved >= 0\n");
    return -1;
  }
  return 0;
}

/* Sanitized epsim builds: a report must end in a signal, not in exit 1 (bad
 * input); appended last so it wins over the caller's settings. */
static void sanitizers_abort(void)
{
  static const char *const vars[][2] = {{"ASAN_OPTIONS", "abort_on_error=1"},
                                        {"UBSAN_OPTIONS", "halt_on_error=1:abort_on_error=1"}};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *old = getenv(vars[i][0]);
    text t = {0};
    text_add(&t, "%s%s%s", old && *old ? old : "", old && *old ? ":" : "", vars[i][1]);
    setenv(vars[i][0], t.s, 1);
    free(t.s);
  }
}

int main(int argc, char **argv)
{
  opts o;
  if (parse_args(argc, argv, &o) != 0) {
    usage(stderr);
    return 2;
  }
  char epsim[PATH_MAX];
  if (!realpath(o.epsim, epsim) || access(epsim, X_OK) != 0) {
    fprintf(stderr, "fuzz_epsim_run: %s is not an executable\n", o.epsim);
    return 2;
  }
  o.epsim = epsim;
  sanitizers_abort();
  const char *tmp = getenv("TMPDIR");
  char work[4096];
  snprintf(work, sizeof work, "%s/fuzz-epsim-run-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(work)) {
    fprintf(stderr, "fuzz_epsim_run: mkdtemp %s: %s\n", work, strerror(errno));
    return 2;
  }

  const double t0 = now_s();
  int64_t done = 0, count[F_COUNT] = {0};
  int saved = 0;
  for (int64_t i = o.first;; i++) {
    const int64_t k = i - o.first;
    if (o.replay ? k >= o.n_replay
                 : (o.runs > 0 && k >= o.runs) || (o.time_s > 0 && now_s() - t0 >= o.time_s))
      break;
    text t = {0};
    char name[512];
    if (o.replay) {
      size_t len = 0;
      t.s = read_file(o.replay[k], &len);
      if (!t.s) {
        fprintf(stderr, "fuzz_epsim_run: cannot read %s: %s\n", o.replay[k], strerror(errno));
        rm_rf(work);
        return 2;
      }
      t.len = len;
      const char *base = strrchr(o.replay[k], '/') ? strrchr(o.replay[k], '/') + 1 : o.replay[k];
      snprintf(name, sizeof name, "replay-%.400s", base);
      name[strcspn(name, ".")] = '\0';
    } else {
      gen_scenario(o.seed, i, &t);
      snprintf(name, sizeof name, "s%" PRIu64 "-c%" PRId64, o.seed, i);
    }
    char yaml[4200];
    join(yaml, sizeof yaml, work, "case.yaml");
    FILE *f = fopen(yaml, "w");
    if (!f || fwrite(t.s, 1, t.len, f) != t.len || fclose(f) != 0) {
      fprintf(stderr, "fuzz_epsim_run: cannot write %s\n", yaml);
      free(t.s);
      rm_rf(work);
      return 2;
    }
    free(t.s);
    char why[1024] = "";
    const double c0 = now_s();
    const finding fd = run_case(&o, work, why, sizeof why);
    done++;
    count[fd]++;
    if (o.verbose)
      printf("%s: %s %.2f s%s%s\n", name, finding_names[fd], now_s() - c0, fd ? ": " : "", why);
    if (fd != F_NONE) {
      printf("FINDING %s (%s): %s\n", name, finding_names[fd], why);
      if (saved < o.max_saved) {
        if (mkdir(o.findings, 0777) != 0 && errno != EEXIST)
          fprintf(stderr, "fuzz_epsim_run: mkdir %s: %s\n", o.findings, strerror(errno));
        save_finding(&o, work, name, fd, why);
        saved++;
      }
    }
    fflush(stdout);
  }
  rm_rf(work);

  int64_t n_findings = done - count[F_NONE];
  printf("fuzz_epsim_run: %" PRId64 " cases in %.0f s (seed %" PRIu64 "), %" PRId64 " findings",
         done, now_s() - t0, o.seed, n_findings);
  for (int f = 1; f < F_COUNT; f++)
    if (count[f])
      printf(", %s %" PRId64, finding_names[f], count[f]);
  if (saved)
    printf("; %d saved in %s/", saved, o.findings);
  printf("\n");
  return n_findings ? 1 : 0;
}
