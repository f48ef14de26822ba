/* results.csv, trace.json and phases.png from per-rank timelines. The same
 * schema serves the simulator and the real backend, so calibration compares
 * like with like. Files go to a stage (a temporary directory inside -o) and
 * are renamed into place only once all of them are complete. */
#include "ep_output.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ep_config.h"

/* The stage holding files, for the signal and exit handlers; the pid that
 * owns it, so that a forked child's exit leaves it alone. */
static ep_output_stage *volatile g_stage;
static volatile pid_t g_stage_pid;
static volatile pid_t g_child; /* gnuplot, while it runs */
static const int g_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGABRT};
#define N_SIGNALS ((int)(sizeof g_signals / sizeof g_signals[0]))
static struct sigaction g_old_action[N_SIGNALS];
static int g_installed[N_SIGNALS];

/* Removes the temporaries and the directories the stage created (deepest
 * first; one that is not empty stays). Async-signal-safe: unlink, rmdir. */
static void stage_remove(ep_output_stage *s)
{
  for (int i = s->n_files - 1; i >= 0; i--)
    if (!s->files[i].direct)
      unlink(s->files[i].tmp_path);
  s->n_files = 0;
  if (s->tmp_dir[0])
    rmdir(s->tmp_dir);
  s->tmp_dir[0] = '\0';
  if (s->created_len == 0)
    return;
  char buf[EP_OUTPUT_PATH_MAX];
  size_t len = strlen(s->dir);
  memcpy(buf, s->dir, len + 1);
  while (len >= s->created_len) {
    buf[len] = '\0';
    rmdir(buf);
    while (len > 0 && buf[len - 1] == '/')
      len--;
    while (len > 0 && buf[len - 1] != '/')
      len--;
    while (len > 1 && buf[len - 1] == '/')
      len--;
    if (len == 0)
      break;
  }
  s->created_len = 0;
}

static void stage_release(void)
{
  g_stage = NULL;
  for (int i = 0; i < N_SIGNALS; i++)
    if (g_installed[i]) {
      sigaction(g_signals[i], &g_old_action[i], NULL);
      g_installed[i] = 0;
    }
}

static void on_signal(int sig)
{
  const int saved_errno = errno;
  ep_output_stage *s = g_stage;
  if (g_child > 0) {
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
  }
  if (s && g_stage_pid == getpid())
    stage_remove(s);
  stage_release();
  errno = saved_errno;
  raise(sig); /* the previous disposition, now restored */
}

static void on_exit_cleanup(void)
{
  ep_output_stage *s = g_stage;
  if (s && g_stage_pid == getpid()) {
    stage_remove(s);
    g_stage = NULL;
  }
}

/* The first file: handlers on (a signal ignored stays ignored). */
static void stage_hold(ep_output_stage *s)
{
  static int exit_registered;
  if (g_stage == s)
    return;
  if (!exit_registered && atexit(on_exit_cleanup) == 0)
    exit_registered = 1;
  g_stage_pid = getpid();
  g_stage = s;
  for (int i = 0; i < N_SIGNALS; i++) {
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigemptyset(&act.sa_mask);
    if (sigaction(g_signals[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN &&
        sigaction(g_signals[i], &act, &g_old_action[i]) == 0)
      g_installed[i] = 1;
  }
}

/* out = a followed by b (out must not be a or b). */
static ep_status path_join(char *out, const char *a, const char *b, const char *what)
{
  const size_t na = strlen(a), nb = strlen(b);
  if (na + nb >= EP_OUTPUT_PATH_MAX) {
    ep_log_error("%s %s%s: %s", what, a, b, strerror(ENAMETOOLONG));
    return EP_ERR_IO;
  }
  memcpy(out, a, na);
  memcpy(out + na, b, nb + 1);
  return EP_OK;
}

ep_status ep_output_stage_init(ep_output_stage *s, const char *dir)
{
  if (!s || !dir)
    return EP_ERR_INVALID;
  s->dir[0] = s->tmp_dir[0] = '\0';
  s->created_len = 0;
  s->n_files = 0;
  if (!dir[0]) {
    ep_log_error("the output directory name is empty (-o '')");
    return EP_ERR_IO;
  }
  const size_t n = strlen(dir);
  if (n >= sizeof s->dir - sizeof "/.epsim-tmp-XXXXXX/platform.xml") {
    ep_log_error("output directory %s: %s", dir, strerror(ENAMETOOLONG));
    return EP_ERR_IO;
  }
  memcpy(s->dir, dir, n + 1);
  return EP_OK;
}

/* mkdir -p s->dir, noting in s->created_len the first directory it created;
 * undoes what it created on failure. */
static ep_status make_dirs(ep_output_stage *s)
{
  char buf[EP_OUTPUT_PATH_MAX];
  const size_t n = strlen(s->dir);
  memcpy(buf, s->dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    const char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0777) == 0) {
      if (s->created_len == 0)
        s->created_len = i;
    } else if (errno != EEXIST) {
      const int e = errno;
      if (i == n)
        ep_log_error("cannot create output directory %s: %s", s->dir, strerror(e));
      else
        ep_log_error("cannot create output directory %s: %s: %s", s->dir, buf, strerror(e));
      stage_remove(s);
      return EP_ERR_IO;
    }
    buf[i] = saved;
  }
  struct stat st;
  if (stat(s->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    ep_log_error("cannot create output directory %s: %s", s->dir,
                 strerror(errno == 0 || S_ISDIR(st.st_mode) ? errno : ENOTDIR));
    stage_remove(s);
    return EP_ERR_IO;
  }
  return EP_OK;
}

static ep_status stage_slot(ep_output_stage *s, ep_output_file **f)
{
  if (s->n_files >= EP_OUTPUT_MAX_FILES) {
    ep_log_error("output stage full (%d files)", EP_OUTPUT_MAX_FILES);
    return EP_ERR_INVALID;
  }
  *f = &s->files[s->n_files];
  memset(*f, 0, sizeof **f);
  return EP_OK;
}

/* Publishes the slot filled by stage_slot to the handlers. */
static void stage_push(ep_output_stage *s)
{
  atomic_signal_fence(memory_order_seq_cst);
  s->n_files++;
}

ep_status ep_output_stage_file(ep_output_stage *s, const char *name, const char **tmp_path)
{
  if (!s || !s->dir[0] || !name || !name[0] || strchr(name, '/') || !tmp_path)
    return EP_ERR_INVALID;
  ep_output_file *f;
  ep_status st = stage_slot(s, &f);
  if (st != EP_OK)
    return st;
  if (!s->tmp_dir[0]) {
    char tmpl[EP_OUTPUT_PATH_MAX];
    if ((st = path_join(tmpl, s->dir, "/.epsim-tmp-XXXXXX", "output directory")) != EP_OK)
      return st;
    stage_hold(s);
    if ((st = make_dirs(s)) != EP_OK)
      return st;
    if (!mkdtemp(tmpl)) {
      ep_log_error("cannot write in output directory %s: %s", s->dir, strerror(errno));
      stage_remove(s);
      return EP_ERR_IO;
    }
    memcpy(s->tmp_dir, tmpl, strlen(tmpl) + 1);
  }
  char slash_name[EP_OUTPUT_PATH_MAX];
  if ((st = path_join(slash_name, "/", name, "output file")) != EP_OK ||
      (st = path_join(f->tmp_path, s->tmp_dir, slash_name, "output file")) != EP_OK ||
      (st = path_join(f->final_path, s->dir, slash_name, "output file")) != EP_OK)
    return st;
  stage_push(s);
  *tmp_path = f->tmp_path;
  return EP_OK;
}

ep_status ep_output_stage_extra(ep_output_stage *s, const char *path, const char **tmp_path)
{
  if (!s || !path || !tmp_path)
    return EP_ERR_INVALID;
  ep_output_file *f;
  ep_status st = stage_slot(s, &f);
  if (st != EP_OK)
    return st;
  const size_t n = strlen(path);
  if (n + sizeof ".tmp-XXXXXX" > sizeof f->final_path) {
    ep_log_error("output file %s: %s", path, strerror(ENAMETOOLONG));
    return EP_ERR_IO;
  }
  memcpy(f->final_path, path, n + 1);
  struct stat sb;
  if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
    /* A device or FIFO: no temporary can stand in for it. */
    memcpy(f->tmp_path, f->final_path, sizeof f->tmp_path);
    f->direct = 1;
  } else {
    if ((st = path_join(f->tmp_path, path, ".tmp-XXXXXX", "output file")) != EP_OK)
      return st;
    stage_hold(s);
    const mode_t mask = umask(0);
    umask(mask);
    const int fd = mkstemp(f->tmp_path);
    if (fd < 0) {
      ep_log_error("cannot write %s: %s", path, strerror(errno));
      return EP_ERR_IO;
    }
    /* mkstemp makes 0600; the file gets the mode fopen would give it. */
    const int chmod_failed = fchmod(fd, 0666 & ~mask) != 0;
    const int e = errno;
    stage_push(s);
    if (close(fd) != 0 || chmod_failed) {
      ep_log_error("cannot write %s: %s", f->tmp_path, strerror(chmod_failed ? e : errno));
      return EP_ERR_IO;
    }
  }
  stage_hold(s);
  if (f->direct)
    stage_push(s);
  *tmp_path = f->tmp_path;
  return EP_OK;
}

ep_status ep_output_stage_commit(ep_output_stage *s)
{
  if (!s)
    return EP_ERR_INVALID;
  sigset_t block, old;
  sigemptyset(&block);
  for (int i = 0; i < N_SIGNALS; i++)
    if (g_signals[i] != SIGABRT)
      sigaddset(&block, g_signals[i]);
  const int blocked = pthread_sigmask(SIG_BLOCK, &block, &old) == 0;
  ep_status st = EP_OK;
  for (int i = 0; i < s->n_files && st == EP_OK; i++) {
    ep_output_file *f = &s->files[i];
    if (f->direct)
      continue;
    if (rename(f->tmp_path, f->final_path) != 0) {
      ep_log_error("cannot move %s to %s: %s", f->tmp_path, f->final_path, strerror(errno));
      st = EP_ERR_IO;
      break;
    }
    f->direct = 1; /* in place: nothing left to remove */
  }
  if (st == EP_OK)
    s->created_len = 0; /* the directories it created now hold the results */
  stage_remove(s);
  stage_release();
  if (blocked)
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  return st;
}

void ep_output_stage_free(ep_output_stage *s)
{
  if (!s)
    return;
  stage_remove(s);
  if (g_stage == s)
    stage_release();
}

ep_status ep_output_close(FILE *f, const char *path)
{
  if (!f)
    return EP_OK;
  errno = 0;
  int e = fflush(f) != 0 || ferror(f) ? (errno ? errno : EIO) : 0;
  if (fclose(f) != 0 && !e)
    e = errno ? errno : EIO;
  if (e) {
    ep_log_error("writing %s failed: %s", path, strerror(e));
    return EP_ERR_IO;
  }
  return EP_OK;
}

static ep_status open_out(const char *path, FILE **f)
{
  *f = fopen(path, "w");
  if (!*f) {
    ep_log_error("cannot write %s: %s", path, strerror(errno));
    return EP_ERR_IO;
  }
  return EP_OK;
}

/* A '#' line's text with C escapes: \\ \n \t \r and \xNN for the other
 * control bytes (UTF-8 passes), and \" too when quoted. */
static void comment_escaped(FILE *f, const char *s, int quoted)
{
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"':
      fputs(quoted ? "\\\"" : "\"", f);
      break;
    case '\\':
      fputs("\\\\", f);
      break;
    case '\n':
      fputs("\\n", f);
      break;
    case '\t':
      fputs("\\t", f);
      break;
    case '\r':
      fputs("\\r", f);
      break;
    default:
      if (*p < ' ' || *p == 0x7f)
        fprintf(f, "\\x%02x", *p);
      else
        fputc(*p, f);
    }
  }
}

/* One argument of the argv line: as is when it holds only printable
 * characters other than space, quote, apostrophe, backslash and comma; else
 * in double quotes, escaped. */
static void comment_arg(FILE *f, const char *s)
{
  int plain = s[0] != '\0';
  for (const unsigned char *p = (const unsigned char *)s; *p && plain; p++)
    plain = *p > ' ' && *p != 0x7f && *p != '"' && *p != '\\' && *p != ',' && *p != '\'';
  if (plain) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  comment_escaped(f, s, 1);
  fputc('"', f);
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < ' ' || *p == 0x7f)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static void csv_provenance(FILE *f, const ep_provenance *prov)
{
  fprintf(f, "# tool: %s %s (git %s)\n", prov->tool, EP_VERSION, EP_GIT_SHA);
  fputs("# backend: ", f);
  comment_escaped(f, prov->backend, 0);
  fputs("\n# scenario: ", f);
  comment_escaped(f, prov->scenario_path, 0);
  fprintf(f, " (fnv1a64 %016" PRIx64 ")\n", prov->scenario_fnv1a64);
  fprintf(f, "# seed: %" PRIu64 "\n", prov->seed);
  fputs("# argv:", f);
  for (int i = 0; i < prov->argc; i++) {
    fputc(' ', f);
    comment_arg(f, prov->argv[i]);
  }
  fputc('\n', f);
  fputs("# units: µs since the layer began; bytes over the network (local copies excluded)\n", f);
}

static int64_t row_sum_remote(const int64_t *m, int32_t n, int32_t row)
{
  int64_t s = 0;
  for (int32_t c = 0; c < n; c++)
    if (c != row)
      s += m[(int64_t)row * n + c];
  return s;
}

static int64_t col_sum_remote(const int64_t *m, int32_t n, int32_t col)
{
  int64_t s = 0;
  for (int32_t r = 0; r < n; r++)
    if (r != col)
      s += m[(int64_t)r * n + col];
  return s;
}

static void write_csv(FILE *f, const ep_provenance *prov, const ep_fabric *fabric,
                      const ep_plan *plan, const ep_rank_timeline *timelines)
{
  const int32_t n = plan->n_ranks;
  csv_provenance(f, prov);
  fputs("rank,node,phase,start_us,end_us,time_us,tokens,send_bytes,recv_bytes\n", f);
  for (int32_t r = 0; r < n; r++) {
    const int node = (int)ep_cluster_node_of(&fabric->cluster, r);
    const int64_t *disp = plan->dispatch_bytes_src_dst, *comb = plan->combine_bytes_src_dst;
    const int64_t tokens[EP_PHASE_COUNT] = {plan->tokens_recv_rank[r], plan->tokens_recv_rank[r],
                                            plan->tokens_recv_rank[r]};
    const int64_t send[EP_PHASE_COUNT] = {row_sum_remote(disp, n, r), 0,
                                          row_sum_remote(comb, n, r)};
    const int64_t recv[EP_PHASE_COUNT] = {col_sum_remote(disp, n, r), 0,
                                          col_sum_remote(comb, n, r)};
    for (int p = 0; p < EP_PHASE_COUNT; p++) {
      const ep_timing *t = &timelines[r].phase[p];
      fprintf(f, "%d,%d,%s,%.3f,%.3f,%.3f,%" PRId64 ",%" PRId64 ",%" PRId64 "\n", (int)r, node,
              ep_phase_name((ep_phase)p), t->start_us, t->end_us, ep_timing_us(t), tokens[p],
              send[p], recv[p]);
    }
  }
}

static void write_trace(FILE *f, const ep_provenance *prov, const ep_fabric *fabric,
                        const ep_plan *plan, const ep_rank_timeline *timelines)
{
  fprintf(f, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"tool\":\"%s %s (git %s)\",\"backend\":",
          prov->tool, EP_VERSION, EP_GIT_SHA);
  json_string(f, prov->backend);
  fputs(",\"scenario\":", f);
  json_string(f, prov->scenario_path);
  fprintf(f, ",\"scenario_fnv1a64\":\"%016" PRIx64 "\",\"seed\":\"%" PRIu64 "\",\"argv\":[",
          prov->scenario_fnv1a64, prov->seed);
  for (int i = 0; i < prov->argc; i++) {
    if (i)
      fputc(',', f);
    json_string(f, prov->argv[i]);
  }
  fputs("]},\"traceEvents\":[\n", f);
  for (int32_t r = 0; r < plan->n_ranks; r++) {
    fprintf(f,
            "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
            "\"args\":{\"name\":\"gpu-%d (node %d)\"}},\n"
            "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
            "\"args\":{\"sort_index\":%d}},\n",
            (int)r, (int)r, (int)ep_cluster_node_of(&fabric->cluster, r), (int)r, (int)r);
    for (int p = 0; p < EP_PHASE_COUNT; p++) {
      const ep_timing *t = &timelines[r].phase[p];
      const int last = r == plan->n_ranks - 1 && p == EP_PHASE_COUNT - 1;
      fprintf(f,
              "{\"name\":\"%s\",\"cat\":\"moe\",\"ph\":\"X\",\"pid\":%d,\"tid\":0,"
              "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"tokens\":%" PRId64 "}}%s\n",
              ep_phase_name((ep_phase)p), (int)r, t->start_us, ep_timing_us(t),
              plan->tokens_recv_rank[r], last ? "" : ",");
    }
  }
  fputs("]}\n", f);
}

/* Runs gnuplot on plots/phases.gp in dir, which holds results.csv, making
 * dir/phases.png: relative names keep the user's path out of gnuplot's
 * syntax. EP_ERR_UNSUPPORTED when gnuplot is absent. */
static ep_status render_plot(const char *dir, const char *png_path, int32_t n_ranks)
{
  const char *gnuplot = EP_GNUPLOT;
  if (!gnuplot[0] || strstr(gnuplot, "NOTFOUND") || access(gnuplot, X_OK) != 0)
    return EP_ERR_UNSUPPORTED;
  char script[4096], defs[256];
  int ns = snprintf(script, sizeof script, "%s/phases.gp", EP_PLOTS_DIR);
  int nd = snprintf(defs, sizeof defs, "datafile='results.csv'; outfile='phases.png'; n_ranks=%d",
                    (int)n_ranks);
  if (ns < 0 || nd < 0 || (size_t)ns >= sizeof script || (size_t)nd >= sizeof defs)
    return EP_ERR_INVALID;
  pid_t pid = fork();
  if (pid < 0) {
    ep_log_error("fork for gnuplot failed: %s", strerror(errno));
    return EP_ERR_IO;
  }
  if (pid == 0) {
    if (chdir(dir) == 0)
      execl(gnuplot, "gnuplot", "-e", defs, script, (char *)NULL);
    _exit(127); /* the child only; chdir or exec failed */
  }
  g_child = pid;
  int wstatus = 0;
  pid_t w;
  while ((w = waitpid(pid, &wstatus, 0)) < 0 && errno == EINTR)
    ;
  g_child = 0;
  if (w < 0) {
    ep_log_error("waiting for gnuplot failed: %s", strerror(errno));
    return EP_ERR_IO;
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    /* Its own message is on stderr; a full disk is the usual cause. */
    ep_log_error("gnuplot %s failed writing %s (status %d)", script, png_path, wstatus);
    return EP_ERR_IO;
  }
  return EP_OK;
}

ep_status ep_output_write(ep_output_stage *stage, const ep_provenance *prov,
                          const ep_fabric *fabric, const ep_plan *plan,
                          const ep_rank_timeline *timelines)
{
  if (!stage || !prov || !fabric || !plan || !timelines || fabric->n_gpus != plan->n_ranks)
    return EP_ERR_INVALID;
  const char *csv_path, *trace_path, *png_path;
  FILE *f = NULL;
  ep_status st;
  if ((st = ep_output_stage_file(stage, "results.csv", &csv_path)) != EP_OK ||
      (st = open_out(csv_path, &f)) != EP_OK)
    return st;
  write_csv(f, prov, fabric, plan, timelines);
  if ((st = ep_output_close(f, csv_path)) != EP_OK ||
      (st = ep_output_stage_file(stage, "trace.json", &trace_path)) != EP_OK ||
      (st = open_out(trace_path, &f)) != EP_OK)
    return st;
  write_trace(f, prov, fabric, plan, timelines);
  if ((st = ep_output_close(f, trace_path)) != EP_OK ||
      (st = ep_output_stage_file(stage, "phases.png", &png_path)) != EP_OK)
    return st;
  st = render_plot(stage->tmp_dir, png_path, plan->n_ranks);
  if (st == EP_ERR_UNSUPPORTED) {
    fprintf(stderr, "%s: warning: gnuplot not found, %s/phases.png not written\n", prov->tool,
            stage->dir);
    /* Nothing to rename: the slot stays, pointing at a file that is not there. */
    stage->files[stage->n_files - 1].direct = 1;
    return EP_OK;
  }
  return st;
}
