/* Summary table, results.csv, trace.json and phases.png from per-rank timelines.
 * The same schema serves the simulator and the real backend, so calibration
 * compares like with like. Files go to temporaries first and are renamed only
 * once all of them are complete. */
#include "ep_output.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ep_config.h"
#include "ep_fabric.h"

static double phase_us(const ep_timing *t)
{
  return t->end_us - t->start_us;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One all-to-all's bandwidths. port_bytes: [2 * fabric->n_ports] scratch. */
static void a2a_bandwidth(const ep_fabric *fabric, const ep_plan *plan,
                          const ep_rank_timeline *timelines, ep_phase phase,
                          const int64_t *bytes_src_dst, int64_t *port_bytes, double *algbw,
                          double *busbw, double *bottleneck, const char **link)
{
  const int32_t n = plan->n_ranks;
  double t0 = timelines[0].phase[phase].start_us, t1 = timelines[0].phase[phase].end_us;
  double total_bytes = 0.0, worst_port_us = -1.0, worst_port_bytes = 0.0;
  /* Per port the bytes leaving its GPU, then those entering it. */
  int64_t *port_out = port_bytes, *port_in = port_bytes + fabric->n_ports;
  ep_fabric_port_bytes(fabric, bytes_src_dst, port_out, port_in);
  *link = ep_port_class_name(EP_PORT_NVLINK);
  for (int32_t r = 0; r < n; r++) {
    const ep_timing *t = &timelines[r].phase[phase];
    if (t->start_us < t0)
      t0 = t->start_us;
    if (t->end_us > t1)
      t1 = t->end_us;
    for (int32_t d = 0; d < n; d++)
      total_bytes += (double)bytes_src_dst[(int64_t)r * n + d];
    const ep_fabric_gpu *gpu = &fabric->gpus[r];
    for (int32_t i = gpu->first_port; i < gpu->first_port + gpu->n_ports; i++) {
      const ep_fabric_port *p = &fabric->ports[i];
      const int64_t b = port_out[i] > port_in[i] ? port_out[i] : port_in[i];
      const double us = (double)b / (fabric->links[p->link].bw_GBps * 1e3);
      if (us > worst_port_us) {
        worst_port_us = us;
        worst_port_bytes = (double)b;
        *link = ep_port_class_name(p->port_class);
      }
    }
  }
  const double makespan_us = t1 - t0;
  if (makespan_us <= 0.0) {
    *algbw = *busbw = *bottleneck = 0.0;
    return;
  }
  *algbw = total_bytes / n / (makespan_us * 1e3); /* B/µs -> GB/s: / 1e3 */
  *busbw = *algbw * (n - 1) / n;
  *bottleneck = worst_port_bytes / (makespan_us * 1e3);
}

ep_status ep_summary_compute(const ep_scenario *scenario, const ep_plan *plan,
                             const ep_rank_timeline *timelines, ep_summary *out)
{
  if (!scenario || !plan || !timelines || !out || plan->n_ranks < 1)
    return EP_ERR_INVALID;
  const int32_t n = plan->n_ranks;
  double *durations = malloc(sizeof(double) * (size_t)n);
  if (!durations)
    return EP_ERR_NOMEM;
  memset(out, 0, sizeof *out);
  for (int p = 0; p < EP_PHASE_COUNT; p++) {
    for (int32_t r = 0; r < n; r++)
      durations[r] = phase_us(&timelines[r].phase[p]);
    qsort(durations, (size_t)n, sizeof(double), cmp_double);
    out->phase[p].min_us = durations[0];
    out->phase[p].max_us = durations[n - 1];
    out->phase[p].median_us =
        n % 2 ? durations[n / 2] : 0.5 * (durations[n / 2 - 1] + durations[n / 2]);
  }
  free(durations);

  int64_t max_tokens = 0, sum_tokens = 0;
  for (int32_t r = 0; r < n; r++) {
    if (timelines[r].phase[EP_PHASE_COMBINE].end_us > out->layer_us)
      out->layer_us = timelines[r].phase[EP_PHASE_COMBINE].end_us;
    if (plan->tokens_recv_rank[r] > max_tokens)
      max_tokens = plan->tokens_recv_rank[r];
    sum_tokens += plan->tokens_recv_rank[r];
  }
  out->tokens_per_s_per_gpu =
      out->layer_us > 0.0 ? (double)plan->tokens_per_rank / (out->layer_us * 1e-6) : 0.0;
  out->load_imbalance = sum_tokens > 0 ? (double)max_tokens * n / (double)sum_tokens : 0.0;
  out->drop_rate = plan->n_routed > 0 ? (double)plan->n_dropped / (double)plan->n_routed : 0.0;
  /* Which port each (src, dst) byte count loads, and that port's bandwidth. */
  ep_fabric fabric;
  ep_status st = ep_fabric_init(&fabric, &scenario->cluster, n);
  if (st != EP_OK)
    return st;
  int64_t *port_bytes = malloc(2 * (size_t)fabric.n_ports * sizeof *port_bytes);
  if (!port_bytes) {
    ep_fabric_free(&fabric);
    return EP_ERR_NOMEM;
  }
  a2a_bandwidth(&fabric, plan, timelines, EP_PHASE_DISPATCH, plan->dispatch_bytes_src_dst,
                port_bytes, &out->algbw_GBps[0], &out->busbw_GBps[0], &out->bottleneck_GBps[0],
                &out->bottleneck_link[0]);
  a2a_bandwidth(&fabric, plan, timelines, EP_PHASE_COMBINE, plan->combine_bytes_src_dst, port_bytes,
                &out->algbw_GBps[1], &out->busbw_GBps[1], &out->bottleneck_GBps[1],
                &out->bottleneck_link[1]);
  free(port_bytes);
  ep_fabric_free(&fabric);
  return EP_OK;
}

void ep_summary_print(const ep_scenario *scenario, const ep_plan *plan, const ep_summary *s,
                      FILE *out)
{
  const ep_cluster *c = &scenario->cluster;
  fprintf(
      out, "model %s: %d experts, top-%d, hidden %d, intermediate %d, dispatch %s, combine %s\n",
      scenario->model.name, (int)scenario->model.n_experts, (int)scenario->model.top_k,
      (int)scenario->model.hidden, (int)scenario->model.moe_intermediate,
      ep_dtype_name(scenario->model.dispatch_dtype), ep_dtype_name(scenario->model.combine_dtype));
  fprintf(out,
          "cluster %s: %d x %d %s, NVLink %.0f GB/s, NIC %.0f GB/s; EP%d, %" PRId64
          " tokens/GPU, seed %" PRIu64 "\n\n",
          c->preset[0] ? c->preset : "explicit", (int)c->n_nodes, (int)c->gpus_per_node,
          c->gpu->name, c->nvlink_GBps, c->nic_GBps, (int)plan->n_ranks, plan->tokens_per_rank,
          scenario->routing.seed);
  fprintf(out, "%-12s %12s %12s %12s   (µs over %d GPUs)\n", "phase", "min", "median", "max",
          (int)plan->n_ranks);
  for (int p = 0; p < EP_PHASE_COUNT; p++)
    fprintf(out, "%-12s %12.2f %12.2f %12.2f\n", ep_phase_name((ep_phase)p), s->phase[p].min_us,
            s->phase[p].median_us, s->phase[p].max_us);
  fprintf(out, "\nlayer time %.2f µs, %.0f tokens/s per GPU\n\n", s->layer_us,
          s->tokens_per_s_per_gpu);
  fprintf(out, "%-12s %12s %12s %16s   (GB/s; nccl-tests algbw/busbw; DeepEP bottleneck link)\n",
          "all-to-all", "algbw", "busbw", "bottleneck");
  const char *names[2] = {"dispatch", "combine"};
  for (int i = 0; i < 2; i++)
    fprintf(out, "%-12s %12.1f %12.1f %9.1f %s\n", names[i], s->algbw_GBps[i], s->busbw_GBps[i],
            s->bottleneck_GBps[i], s->bottleneck_link[i]);
  fprintf(out,
          "\nload imbalance (max/mean token copies per GPU) %.3f, dropped %" PRId64 " of %" PRId64
          " copies (%.2f%%)\n",
          s->load_imbalance, plan->n_dropped, plan->n_routed, 100.0 * s->drop_rate);
}

/* ---- files ---- */

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

static void csv_provenance(FILE *f, const ep_provenance *prov, const ep_scenario *scenario)
{
  fprintf(f, "# tool: %s %s (git %s)\n", prov->tool, EP_VERSION, EP_GIT_SHA);
  fprintf(f, "# backend: %s\n", prov->backend);
  fprintf(f, "# scenario: %s (fnv1a64 %016" PRIx64 ")\n", prov->scenario_path,
          scenario->content_hash);
  fprintf(f, "# seed: %" PRIu64 "\n", scenario->routing.seed);
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

static void write_csv(FILE *f, const ep_provenance *prov, const ep_scenario *scenario,
                      const ep_plan *plan, const ep_rank_timeline *timelines)
{
  const int32_t n = plan->n_ranks;
  csv_provenance(f, prov, scenario);
  fputs("rank,node,phase,start_us,end_us,time_us,tokens,send_bytes,recv_bytes\n", f);
  for (int32_t r = 0; r < n; r++) {
    const int node = (int)ep_cluster_node_of(&scenario->cluster, r);
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
              ep_phase_name((ep_phase)p), t->start_us, t->end_us, phase_us(t), tokens[p], send[p],
              recv[p]);
    }
  }
}

static void write_trace(FILE *f, const ep_scenario *scenario, const ep_plan *plan,
                        const ep_rank_timeline *timelines)
{
  fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", f);
  for (int32_t r = 0; r < plan->n_ranks; r++) {
    fprintf(f,
            "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
            "\"args\":{\"name\":\"gpu-%d (node %d)\"}},\n"
            "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
            "\"args\":{\"sort_index\":%d}},\n",
            (int)r, (int)r, (int)ep_cluster_node_of(&scenario->cluster, r), (int)r, (int)r);
    for (int p = 0; p < EP_PHASE_COUNT; p++) {
      const ep_timing *t = &timelines[r].phase[p];
      const int last = r == plan->n_ranks - 1 && p == EP_PHASE_COUNT - 1;
      fprintf(f,
              "{\"name\":\"%s\",\"cat\":\"moe\",\"ph\":\"X\",\"pid\":%d,\"tid\":0,"
              "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"tokens\":%" PRId64 "}}%s\n",
              ep_phase_name((ep_phase)p), (int)r, t->start_us, phase_us(t),
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

ep_status ep_output_write(const char *dir, const ep_provenance *prov, const ep_scenario *scenario,
                          const ep_plan *plan, const ep_rank_timeline *timelines)
{
  if (!dir || !prov || !scenario || !plan || !timelines)
    return EP_ERR_INVALID;
  pending_file csv, trace, png;
  FILE *f = NULL;
  ep_status st;
  int have_png = 0;

  if ((st = pending_open(&csv, dir, "results.csv", &f)) != EP_OK)
    return st;
  write_csv(f, prov, scenario, plan, timelines);
  if ((st = pending_close(&csv, f)) != EP_OK)
    goto fail_csv;

  if ((st = pending_open(&trace, dir, "trace.json", &f)) != EP_OK)
    goto fail_csv;
  write_trace(f, scenario, plan, timelines);
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
