/* The summary of a layer run from its per-rank timelines, the plan's byte
 * matrices and the fabric's ports: phase statistics, layer time, tokens/s,
 * imbalance, drops, bandwidths; and the table epsim and epsim-real print. */
#include "ep_report.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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

ep_status ep_report_summarize(const ep_fabric *fabric, const ep_plan *plan,
                              const ep_rank_timeline *timelines, ep_summary *out)
{
  if (!fabric || !plan || !timelines || !out || plan->n_ranks < 1 ||
      fabric->n_gpus != plan->n_ranks)
    return EP_ERR_INVALID;
  const int32_t n = plan->n_ranks;
  double *durations = malloc(sizeof(double) * (size_t)n);
  if (!durations)
    return EP_ERR_NOMEM;
  memset(out, 0, sizeof *out);
  for (int p = 0; p < EP_PHASE_COUNT; p++) {
    for (int32_t r = 0; r < n; r++)
      durations[r] = ep_timing_us(&timelines[r].phase[p]);
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
  int64_t *port_bytes = malloc(2 * (size_t)fabric->n_ports * sizeof *port_bytes);
  if (!port_bytes)
    return EP_ERR_NOMEM;
  a2a_bandwidth(fabric, plan, timelines, EP_PHASE_DISPATCH, plan->dispatch_bytes_src_dst,
                port_bytes, &out->algbw_GBps[0], &out->busbw_GBps[0], &out->bottleneck_GBps[0],
                &out->bottleneck_link[0]);
  a2a_bandwidth(fabric, plan, timelines, EP_PHASE_COMBINE, plan->combine_bytes_src_dst, port_bytes,
                &out->algbw_GBps[1], &out->busbw_GBps[1], &out->bottleneck_GBps[1],
                &out->bottleneck_link[1]);
  free(port_bytes);
  return EP_OK;
}

void ep_report_print(const ep_report_header *h, const ep_fabric *fabric, const ep_plan *plan,
                     const ep_summary *s, FILE *out)
{
  const ep_cluster *c = &fabric->cluster;
  fprintf(out,
          "model %s: %d experts, top-%d, hidden %d, intermediate %d, dispatch %s, combine %s\n",
          h->model_name, (int)h->n_experts, (int)h->top_k, (int)h->hidden, (int)h->moe_intermediate,
          h->dispatch_dtype, h->combine_dtype);
  fprintf(out,
          "cluster %s: %d x %d %s, NVLink %.0f GB/s, NIC %.0f GB/s; EP%d, %" PRId64
          " tokens/GPU, seed %" PRIu64 "\n\n",
          c->preset[0] ? c->preset : "explicit", (int)c->n_nodes, (int)c->gpus_per_node,
          c->gpu->name, c->nvlink_GBps, c->nic_GBps, (int)plan->n_ranks, plan->tokens_per_rank,
          h->seed);
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
