/* results.csv, trace.json and phases.png from per-rank timelines. The same
 * schema serves the simulator and the real backend, so calibration compares
 * like with like. Files go to temporaries first and are renamed only once all
 * of them are complete. */
#include "ep_output.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ep_config.h"

int ep_make_dirs(const char *path)
{
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    const char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return -1;
    buf[i] = saved;
  }
  struct stat st;
  if (stat(path, &st) != 0)
    return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

typedef struct pending_file {
  char final_path[4096];
  char tmp_path[4096];
} pending_file;

static ep_status pending_open(pending_file *pf, const char *dir, const char *name, FILE **f)
{
  int n1 = snprintf(pf->final_path, sizeof pf->final_path, "%s/%s", dir, name);
  int n2 = snprintf(pf->tmp_path, sizeof pf->tmp_path, "%s/.%s.tmp", dir, name);
  if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof pf->final_path ||
      (size_t)n2 >= sizeof pf->tmp_path) {
    ep_log_error("output path too long: %s/%s", dir, name);
    return EP_ERR_INVALID;
  }
  *f = fopen(pf->tmp_path, "w");
  if (!*f) {
    ep_log_error("cannot write %s: %s", pf->tmp_path, strerror(errno));
    return EP_ERR_IO;
  }
  return EP_OK;
}

static ep_status pending_close(pending_file *pf, FILE *f)
{
  const int write_failed = ferror(f);
  if (fclose(f) != 0 || write_failed) {
    ep_log_error("writing %s failed: %s", pf->tmp_path, strerror(errno));
    return EP_ERR_IO;
  }
  return EP_OK;
}

static void csv_provenance(FILE *f, const ep_provenance *prov)
{
  fprintf(f, "# tool: %s %s (git %s)\n", prov->tool, EP_VERSION, EP_GIT_SHA);
  fprintf(f, "# backend: %s\n", prov->backend);
  fprintf(f, "# scenario: %s (fnv1a64 %016" PRIx64 ")\n", prov->scenario_path,
          prov->scenario_fnv1a64);
  fprintf(f, "# seed: %" PRIu64 "\n", prov->seed);
  fputs("# argv:", f);
  for (int i = 0; i < prov->argc; i++)
    fprintf(f, " %s", prov->argv[i]);
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

static void write_trace(FILE *f, const ep_fabric *fabric, const ep_plan *plan,
                        const ep_rank_timeline *timelines)
{
  fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", f);
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

/* Runs gnuplot on plots/phases.gp; EP_ERR_UNSUPPORTED when gnuplot is absent. */
static ep_status render_plot(const char *csv_path, const char *png_path, int32_t n_ranks)
{
  const char *gnuplot = EP_GNUPLOT;
  if (!gnuplot[0] || strstr(gnuplot, "NOTFOUND") || access(gnuplot, X_OK) != 0)
    return EP_ERR_UNSUPPORTED;
  char script[4096], defs[8192];
  int ns = snprintf(script, sizeof script, "%s/phases.gp", EP_PLOTS_DIR);
  int nd = snprintf(defs, sizeof defs, "datafile='%s'; outfile='%s'; n_ranks=%d", csv_path,
                    png_path, (int)n_ranks);
  if (ns < 0 || nd < 0 || (size_t)ns >= sizeof script || (size_t)nd >= sizeof defs ||
      strchr(csv_path, '\'') || strchr(png_path, '\''))
    return EP_ERR_INVALID;
  pid_t pid = fork();
  if (pid < 0) {
    ep_log_error("fork for gnuplot failed: %s", strerror(errno));
    return EP_ERR_IO;
  }
  if (pid == 0) {
    execl(gnuplot, "gnuplot", "-e", defs, script, (char *)NULL);
    _exit(127); /* the child only; exec failed */
  }
  int wstatus = 0;
  if (waitpid(pid, &wstatus, 0) < 0) {
    ep_log_error("waiting for gnuplot failed: %s", strerror(errno));
    return EP_ERR_IO;
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    ep_log_error("gnuplot %s failed (status %d)", script, wstatus);
    return EP_ERR_IO;
  }
  return EP_OK;
}

ep_status ep_output_write_dir(const char *dir, const ep_provenance *prov, const ep_fabric *fabric,
                              const ep_plan *plan, const ep_rank_timeline *timelines)
{
  if (!dir || !prov || !fabric || !plan || !timelines || fabric->n_gpus != plan->n_ranks)
    return EP_ERR_INVALID;
  pending_file csv, trace, png;
  FILE *f = NULL;
  ep_status st;
  int have_png = 0;

  if ((st = pending_open(&csv, dir, "results.csv", &f)) != EP_OK)
    return st;
  write_csv(f, prov, fabric, plan, timelines);
  if ((st = pending_close(&csv, f)) != EP_OK)
    goto fail_csv;

  if ((st = pending_open(&trace, dir, "trace.json", &f)) != EP_OK)
    goto fail_csv;
  write_trace(f, fabric, plan, timelines);
  if ((st = pending_close(&trace, f)) != EP_OK)
    goto fail_trace;

  int np = snprintf(png.final_path, sizeof png.final_path, "%s/phases.png", dir);
  int nt = snprintf(png.tmp_path, sizeof png.tmp_path, "%s/.phases.png.tmp", dir);
  if (np < 0 || nt < 0 || (size_t)np >= sizeof png.final_path ||
      (size_t)nt >= sizeof png.tmp_path) {
    st = EP_ERR_INVALID;
    goto fail_trace;
  }
  st = render_plot(csv.tmp_path, png.tmp_path, plan->n_ranks);
  if (st == EP_ERR_UNSUPPORTED) {
    fprintf(stderr, "epsim: warning: gnuplot not found, %s not written\n", png.final_path);
  } else if (st != EP_OK) {
    unlink(png.tmp_path);
    goto fail_trace;
  } else {
    have_png = 1;
  }

  if (rename(csv.tmp_path, csv.final_path) != 0 || rename(trace.tmp_path, trace.final_path) != 0 ||
      (have_png && rename(png.tmp_path, png.final_path) != 0)) {
    ep_log_error("renaming outputs in %s failed: %s", dir, strerror(errno));
    if (have_png)
      unlink(png.tmp_path);
    st = EP_ERR_IO;
    goto fail_trace;
  }
  return EP_OK;

fail_trace:
  unlink(trace.tmp_path);
fail_csv:
  unlink(csv.tmp_path);
  return st;
}
