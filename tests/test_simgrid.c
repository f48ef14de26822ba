/* SimGrid backend against closed forms, and pair flows against port flows.
 * SimGrid initialises once per process, so every simulation runs in a forked
 * child that sends its timelines back through a pipe; the executable takes the
 * case name and CTest registers one test per case. Plans are built by hand
 * here: the traffic matrices decide the closed-form times.
 * Closed forms on a non-blocking fabric (max-min sharing, CM02, no cross
 * traffic): a phase ends at latency + the busiest port's bytes / bandwidth. */
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ep_rng.h"
#include "ep_sg_backend.h"

#ifndef CLOSED_FORM_TOL
#define CLOSED_FORM_TOL 1e-3 /* closed forms within 0.1 % */
#endif
#define PAIR_PORT_TOL 1e-2 /* pair vs port flows on skewed traffic: 1 % */

static const char *case_name = "";
static int n_runs;

/* ---- hand-built scenarios and plans ---- */

static ep_scenario make_scenario(const char *preset, int32_t n_nodes, int32_t ep)
{
  ep_scenario sc;
  memset(&sc, 0, sizeof sc);
  strcpy(sc.model.name, "test");
  sc.model.top_k = 8;
  sc.model.hidden = 7168;
  sc.model.moe_intermediate = 2048;
  sc.model.n_shared_experts = 1;
  sc.model.dispatch_dtype = EP_DTYPE_FP8;
  sc.model.combine_dtype = EP_DTYPE_BF16;
  if (preset && ep_cluster_preset(preset, n_nodes, &sc.cluster) != EP_OK)
    fprintf(stderr, "unknown preset %s\n", preset);
  sc.ep = ep;
  sc.tokens_per_gpu = 4096;
  sc.capacity_factor = 0.0;
  return sc;
}

/* Zeroed matrices; contiguous placement of experts_per_rank experts per rank. */
static int plan_alloc(ep_plan *p, int32_t n, int32_t experts_per_rank)
{
  memset(p, 0, sizeof *p);
  const int32_t ne = n * experts_per_rank;
  p->n_ranks = n;
  p->n_experts = ne;
  p->top_k = 8;
  p->tokens_per_rank = 4096;
  p->capacity_per_expert = INT64_MAX;
  p->dispatch_bytes_per_token = 7392;
  p->combine_bytes_per_token = 14336;
  p->routed_src_expert = calloc((size_t)n * ne, sizeof(int64_t));
  p->kept_src_expert = calloc((size_t)n * ne, sizeof(int64_t));
  p->tokens_src_dst = calloc((size_t)n * n, sizeof(int64_t));
  p->dispatch_bytes_src_dst = calloc((size_t)n * n, sizeof(int64_t));
  p->combine_bytes_src_dst = calloc((size_t)n * n, sizeof(int64_t));
  p->tokens_per_expert = calloc((size_t)ne, sizeof(int64_t));
  p->tokens_recv_rank = calloc((size_t)n, sizeof(int64_t));
  if (!p->routed_src_expert || !p->kept_src_expert || !p->tokens_src_dst ||
      !p->dispatch_bytes_src_dst || !p->combine_bytes_src_dst || !p->tokens_per_expert ||
      !p->tokens_recv_rank ||
      ep_placement_init(&p->placement, EP_PLACEMENT_CONTIGUOUS, ne, n) != EP_OK) {
    ep_plan_free(p);
    CHECK(!"plan_alloc: out of memory");
    return 0;
  }
  return 1;
}

/* Every off-diagonal pair sends dispatch_bytes (dispatch) and combine_bytes
 * (combine); every expert computes tokens_per_expert copies. */
static int plan_uniform(ep_plan *p, int32_t n, int64_t dispatch_bytes, int64_t combine_bytes,
                        int64_t tokens_per_expert)
{
  if (!plan_alloc(p, n, 2))
    return 0;
  for (int32_t s = 0; s < n; s++)
    for (int32_t d = 0; d < n; d++) {
      p->dispatch_bytes_src_dst[(int64_t)s * n + d] = s == d ? 0 : dispatch_bytes;
      p->combine_bytes_src_dst[(int64_t)s * n + d] = s == d ? 0 : combine_bytes;
    }
  for (int32_t e = 0; e < p->n_experts; e++)
    p->tokens_per_expert[e] = tokens_per_expert;
  return 1;
}

/* Realistic skewed routing: every rank sends tokens_per_rank * top_k copies to
 * experts drawn from a Zipf(0.9) popularity over a seeded permutation (one draw
 * per copy; distinctness within a token does not matter for traffic). */
static int plan_skewed(ep_plan *p, int32_t n, int32_t experts_per_rank, uint64_t seed)
{
  if (!plan_alloc(p, n, experts_per_rank))
    return 0;
  const int32_t ne = p->n_experts;
  double *cdf = malloc((size_t)ne * sizeof *cdf);
  int32_t *perm = malloc((size_t)ne * sizeof *perm);
  if (!cdf || !perm) {
    free(cdf);
    free(perm);
    ep_plan_free(p);
    CHECK(!"plan_skewed: out of memory");
    return 0;
  }
  ep_rng rng;
  ep_rng_seed(&rng, seed, 0);
  for (int32_t e = 0; e < ne; e++)
    perm[e] = e;
  for (int32_t e = ne - 1; e > 0; e--) {
    const int32_t j = (int32_t)(ep_rng_uniform(&rng) * (e + 1));
    const int32_t t = perm[e];
    perm[e] = perm[j];
    perm[j] = t;
  }
  double total = 0.0;
  for (int32_t i = 0; i < ne; i++) {
    total += 1.0 / pow(i + 1.0, 0.9);
    cdf[i] = total;
  }
  const int64_t copies = p->tokens_per_rank * p->top_k;
  for (int32_t s = 0; s < n; s++) {
    ep_rng_seed(&rng, seed, 1 + (uint64_t)s);
    for (int64_t c = 0; c < copies; c++) {
      const double u = ep_rng_uniform(&rng) * total;
      int32_t lo = 0, hi = ne - 1;
      while (lo < hi) {
        const int32_t mid = (lo + hi) / 2;
        if (cdf[mid] > u)
          hi = mid;
        else
          lo = mid + 1;
      }
      const int32_t e = perm[lo];
      const int32_t d = p->placement.rank_of_expert[e];
      p->routed_src_expert[(int64_t)s * ne + e]++;
      p->kept_src_expert[(int64_t)s * ne + e]++;
      p->tokens_per_expert[e]++;
      p->tokens_src_dst[(int64_t)s * n + d]++;
      p->tokens_recv_rank[d]++;
    }
  }
  for (int32_t s = 0; s < n; s++)
    for (int32_t d = 0; d < n; d++) {
      const int64_t t = p->tokens_src_dst[(int64_t)s * n + d];
      p->dispatch_bytes_src_dst[(int64_t)s * n + d] = t * p->dispatch_bytes_per_token;
      p->combine_bytes_src_dst[(int64_t)d * n + s] = t * p->combine_bytes_per_token;
    }
  p->n_routed = (int64_t)n * copies;
  free(cdf);
  free(perm);
  return 1;
}

/* ---- running a simulation in a child process ---- */

static int read_all(int fd, void *buf, size_t len)
{
  char *p = buf;
  while (len > 0) {
    ssize_t k = read(fd, p, len);
    if (k <= 0)
      return 0;
    p += k;
    len -= (size_t)k;
  }
  return 1;
}

static int write_all(int fd, const void *buf, size_t len)
{
  const char *p = buf;
  while (len > 0) {
    ssize_t k = write(fd, p, len);
    if (k <= 0)
      return 0;
    p += k;
    len -= (size_t)k;
  }
  return 1;
}

/* Runs ep_sim_run in a fresh process with SimGrid settings args ([n_args],
 * NULL: none); returns its status (EP_ERR_BACKEND if the child died).
 * tl: [out] [plan->n_ranks]. */
static ep_status simulate_with(const ep_scenario *sc, const ep_plan *plan, ep_flow_mode mode,
                               char *const *args, int n_args, ep_rank_timeline *tl)
{
  char path[160];
  snprintf(path, sizeof path, "test_simgrid_%s_%d.xml", case_name, n_runs++);
  const size_t tl_bytes = (size_t)plan->n_ranks * sizeof *tl;
  int fds[2];
  if (pipe(fds) != 0)
    return EP_ERR_IO;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return EP_ERR_IO;
  }
  if (pid == 0) {
    close(fds[0]);
    const ep_sim_cfg cfg = {.flows = mode,
                            .gemm = EP_GEMM_COST_PARAMS_INIT,
                            .platform_xml_path = path,
                            .simgrid_args = args,
                            .n_simgrid_args = n_args};
    int32_t st = ep_sim_run(sc, plan, &cfg, tl);
    int ok = write_all(fds[1], &st, sizeof st) && write_all(fds[1], tl, tl_bytes);
    exit(ok ? 0 : 1); /* stdio was flushed before fork; LSan checks the child */
  }
  close(fds[1]);
  int32_t st = EP_ERR_BACKEND;
  if (!read_all(fds[0], &st, sizeof st) || !read_all(fds[0], tl, tl_bytes))
    st = EP_ERR_BACKEND;
  close(fds[0]);
  int wstatus = 0;
  if (waitpid(pid, &wstatus, 0) != pid || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
    st = EP_ERR_BACKEND;
  unlink(path);
  return (ep_status)st;
}

static ep_status simulate(const ep_scenario *sc, const ep_plan *plan, ep_flow_mode mode,
                          ep_rank_timeline *tl)
{
  return simulate_with(sc, plan, mode, NULL, 0, tl);
}

/* ---- helpers for expected values ---- */

static double phase_us(const ep_rank_timeline *t, ep_phase p)
{
  return t->phase[p].end_us - t->phase[p].start_us;
}

/* Latest end of phase p over all ranks (the slowest rank). */
static double max_end(const ep_rank_timeline *tl, int32_t n, ep_phase p)
{
  double m = 0.0;
  for (int32_t r = 0; r < n; r++)
    if (tl[r].phase[p].end_us > m)
      m = tl[r].phase[p].end_us;
  return m;
}

static double max_duration(const ep_rank_timeline *tl, int32_t n, ep_phase p)
{
  double m = 0.0;
  for (int32_t r = 0; r < n; r++)
    if (phase_us(&tl[r], p) > m)
      m = phase_us(&tl[r], p);
  return m;
}

static double us_of(int64_t bytes, double GBps)
{
  return (double)bytes / (GBps * 1e3);
}

/* n_msgs messages of bytes each, one after the other on one link, after its latency. */
static double serial_us(int32_t n_msgs, int64_t bytes, double GBps, double latency_us)
{
  return n_msgs * us_of(bytes, GBps) + latency_us;
}

/* Busiest-port time of rank r for a [n*n] matrix: max over its NVLink and NIC,
 * egress and ingress, of latency + bytes / bandwidth (0 without traffic). */
static double port_bound_us(const ep_cluster *c, const int64_t *m, int32_t n, int32_t r)
{
  int64_t nvl_out = 0, nvl_in = 0, nic_out = 0, nic_in = 0;
  for (int32_t p = 0; p < n; p++) {
    if (p == r)
      continue;
    const int same = ep_cluster_node_of(c, p) == ep_cluster_node_of(c, r);
    *(same ? &nvl_out : &nic_out) += m[(int64_t)r * n + p];
    *(same ? &nvl_in : &nic_in) += m[(int64_t)p * n + r];
  }
  double t = 0.0;
  const int64_t nvl = nvl_out > nvl_in ? nvl_out : nvl_in;
  const int64_t nic = nic_out > nic_in ? nic_out : nic_in;
  if (nvl > 0 && c->nvlink_latency_us + us_of(nvl, c->nvlink_GBps) > t)
    t = c->nvlink_latency_us + us_of(nvl, c->nvlink_GBps);
  if (nic > 0 && c->nic_latency_us + us_of(nic, c->nic_GBps) > t)
    t = c->nic_latency_us + us_of(nic, c->nic_GBps);
  return t;
}

static double expert_ref_us(const ep_scenario *sc, const ep_plan *p, int32_t r)
{
  const ep_gemm_cost_params gemm = EP_GEMM_COST_PARAMS_INIT;
  const ep_expert_shape shape = {sc->model.hidden, sc->model.moe_intermediate,
                                 sc->model.dispatch_dtype};
  const int32_t epr = p->placement.experts_per_rank;
  int64_t tokens[64];
  for (int32_t s = 0; s < epr && s < 64; s++)
    tokens[s] = p->tokens_per_expert[p->placement.expert_of_slot[r * epr + s]];
  return ep_expert_phase_us(&gemm, sc->cluster.gpu, &shape, tokens, epr, sc->model.n_shared_experts,
                            sc->tokens_per_gpu);
}

/* ---- cases ---- */

/* Uniform all-to-all on one NVSwitch crossbar: (N-1) S / B + latency for every
 * rank, in dispatch and (after a uniform expert phase) in combine. */
static void uniform_crossbar(const char *preset, int32_t n, ep_flow_mode mode)
{
  ep_scenario sc = make_scenario(preset, 1, n);
  ep_plan plan;
  const int64_t s_disp = 64 * 7392, s_comb = 64 * 14336;
  if (!plan_uniform(&plan, n, s_disp, s_comb, 512))
    return;
  ep_rank_timeline *tl = calloc((size_t)n, sizeof *tl);
  CHECK(tl != NULL);
  if (tl) {
    CHECK_EQ_INT(simulate(&sc, &plan, mode, tl), EP_OK);
    const ep_cluster *c = &sc.cluster;
    const double disp = serial_us(n - 1, s_disp, c->nvlink_GBps, c->nvlink_latency_us);
    const double comb = serial_us(n - 1, s_comb, c->nvlink_GBps, c->nvlink_latency_us);
    const double gemm = expert_ref_us(&sc, &plan, 0);
    CHECK(gemm > 0.0);
    for (int32_t r = 0; r < n; r++) {
      CHECK_REL(tl[r].phase[EP_PHASE_DISPATCH].start_us + 1.0, 1.0, 1e-12);
      CHECK_REL(tl[r].phase[EP_PHASE_DISPATCH].end_us, disp, CLOSED_FORM_TOL);
      CHECK_REL(phase_us(&tl[r], EP_PHASE_EXPERT), gemm, 1e-9);
      CHECK_REL(tl[r].phase[EP_PHASE_COMBINE].end_us, disp + gemm + comb, CLOSED_FORM_TOL);
    }
  }
  free(tl);
  ep_plan_free(&plan);
}

/* Two HGX nodes, uniform: the NIC is the bottleneck, (N - 8) S / B_nic + NIC
 * latency; the NVLink part, 7 S / B_nvl + its latency, ends earlier. */
static void uniform_two_nodes(ep_flow_mode mode)
{
  const int32_t n = 16;
  ep_scenario sc = make_scenario("hgx-h100", 2, n);
  ep_plan plan;
  const int64_t s_disp = 64 * 7392, s_comb = 64 * 14336;
  if (!plan_uniform(&plan, n, s_disp, s_comb, 512))
    return;
  ep_rank_timeline tl[16];
  CHECK_EQ_INT(simulate(&sc, &plan, mode, tl), EP_OK);
  const ep_cluster *c = &sc.cluster;
  const double disp = serial_us(n - 8, s_disp, c->nic_GBps, c->nic_latency_us);
  const double nvl = serial_us(7, s_disp, c->nvlink_GBps, c->nvlink_latency_us);
  CHECK(nvl < disp);
  const double comb = serial_us(n - 8, s_comb, c->nic_GBps, c->nic_latency_us);
  const double gemm = expert_ref_us(&sc, &plan, 0);
  for (int32_t r = 0; r < n; r++) {
    CHECK_REL(tl[r].phase[EP_PHASE_DISPATCH].end_us, disp, CLOSED_FORM_TOL);
    CHECK_REL(tl[r].phase[EP_PHASE_COMBINE].end_us, disp + gemm + comb, CLOSED_FORM_TOL);
  }
  ep_plan_free(&plan);
}

/* Random pair sizes from a seeded RNG: the slowest rank ends at the busiest
 * port's latency + bytes / bandwidth. In port mode every rank ends at its own
 * busiest port's time. */
static void skewed(const char *preset, int32_t n_nodes, int32_t n, ep_flow_mode mode)
{
  ep_scenario sc = make_scenario(preset, n_nodes, n);
  ep_plan plan;
  if (!plan_uniform(&plan, n, 0, 0, 256))
    return;
  ep_rng rng;
  ep_rng_seed(&rng, 42, 7);
  for (int64_t i = 0; i < (int64_t)n * n; i++) {
    if (i / n == i % n)
      continue;
    plan.dispatch_bytes_src_dst[i] = 7392 * (int64_t)(1 + ep_rng_uniform(&rng) * 200.0);
    plan.combine_bytes_src_dst[i] = 14336 * (int64_t)(1 + ep_rng_uniform(&rng) * 200.0);
  }
  ep_rank_timeline *tl = calloc((size_t)n, sizeof *tl);
  CHECK(tl != NULL);
  if (tl) {
    CHECK_EQ_INT(simulate(&sc, &plan, mode, tl), EP_OK);
    double disp = 0.0, comb = 0.0;
    for (int32_t r = 0; r < n; r++) {
      const double d = port_bound_us(&sc.cluster, plan.dispatch_bytes_src_dst, n, r);
      const double c = port_bound_us(&sc.cluster, plan.combine_bytes_src_dst, n, r);
      disp = d > disp ? d : disp;
      comb = c > comb ? c : comb;
      if (mode == EP_FLOWS_PORT)
        CHECK_REL(tl[r].phase[EP_PHASE_DISPATCH].end_us, d, CLOSED_FORM_TOL);
    }
    CHECK_REL(max_end(tl, n, EP_PHASE_DISPATCH), disp, CLOSED_FORM_TOL);
    /* Uniform expert phase: the combine starts together at disp + gemm. */
    const double gemm = expert_ref_us(&sc, &plan, 0);
    CHECK_REL(max_end(tl, n, EP_PHASE_COMBINE), disp + gemm + comb, CLOSED_FORM_TOL);
  }
  free(tl);
  ep_plan_free(&plan);
}

/* Expert phase = ep_expert_phase_us of the rank's own experts, and the
 * combine starts after the slowest rank's expert phase (barrier). */
static void expert_and_barrier(ep_flow_mode mode)
{
  const int32_t n = 8;
  ep_scenario sc = make_scenario("hgx-h100", 1, n);
  ep_plan plan;
  const int64_t s_disp = 32 * 7392, s_comb = 32 * 14336;
  if (!plan_uniform(&plan, n, s_disp, s_comb, 0))
    return;
  ep_rng rng;
  ep_rng_seed(&rng, 3, 0);
  for (int32_t e = 0; e < plan.n_experts; e++)
    plan.tokens_per_expert[e] = (int64_t)(ep_rng_uniform(&rng) * 2000.0);
  plan.tokens_per_expert[5] = 9000; /* rank 2 is the straggler */
  plan.tokens_per_expert[0] = 0;    /* an idle expert costs no weight traffic */
  ep_rank_timeline tl[8];
  CHECK_EQ_INT(simulate(&sc, &plan, mode, tl), EP_OK);
  const ep_cluster *c = &sc.cluster;
  const double disp = serial_us(n - 1, s_disp, c->nvlink_GBps, c->nvlink_latency_us);
  const double comb = serial_us(n - 1, s_comb, c->nvlink_GBps, c->nvlink_latency_us);
  double slowest = 0.0;
  int32_t slowest_rank = -1;
  for (int32_t r = 0; r < n; r++) {
    const double gemm = expert_ref_us(&sc, &plan, r);
    CHECK_REL(phase_us(&tl[r], EP_PHASE_EXPERT), gemm, 1e-9);
    CHECK_REL(tl[r].phase[EP_PHASE_EXPERT].start_us, tl[r].phase[EP_PHASE_DISPATCH].end_us, 1e-12);
    if (disp + gemm > slowest) {
      slowest = disp + gemm;
      slowest_rank = r;
    }
  }
  CHECK_EQ_INT(slowest_rank, 2);
  for (int32_t r = 0; r < n; r++) {
    /* The combine phase begins at the rank's own expert end ... */
    CHECK_REL(tl[r].phase[EP_PHASE_COMBINE].start_us, tl[r].phase[EP_PHASE_EXPERT].end_us, 1e-12);
    /* ... and its flows start when the straggler arrives. */
    CHECK_REL(tl[r].phase[EP_PHASE_COMBINE].end_us, slowest + comb, CLOSED_FORM_TOL);
    if (r != slowest_rank)
      CHECK(phase_us(&tl[r], EP_PHASE_COMBINE) > comb * (1.0 + 10 * CLOSED_FORM_TOL));
  }
  CHECK_REL(phase_us(&tl[slowest_rank], EP_PHASE_COMBINE), comb, CLOSED_FORM_TOL);
  ep_plan_free(&plan);
}

/* The slowest rank's time in each phase, measured from the phase's collective
 * start: dispatch from t = 0, the expert GEMMs per rank, the combine from the
 * barrier's release (the latest expert end). A rank's own combine phase also
 * holds its wait at the barrier, which differs between ranks by design. */
static void slowest_phases(const ep_rank_timeline *tl, int32_t n, double out[EP_PHASE_COUNT])
{
  out[EP_PHASE_DISPATCH] = max_end(tl, n, EP_PHASE_DISPATCH);
  out[EP_PHASE_EXPERT] = max_duration(tl, n, EP_PHASE_EXPERT);
  out[EP_PHASE_COMBINE] = max_end(tl, n, EP_PHASE_COMBINE) - max_end(tl, n, EP_PHASE_EXPERT);
}

/* Pair and port flows on a realistic skewed plan: layer time and the slowest
 * rank's time in each phase agree within 1 %. Per-rank times of the other ranks
 * differ: with pair flows a lightly loaded rank also waits for its flows into
 * busy peers, with port flows it ends at its own busiest port. */
static void pair_vs_port(const ep_cluster *c, int32_t n, int32_t experts_per_rank)
{
  ep_scenario sc = make_scenario(NULL, 0, n);
  sc.cluster = *c;
  ep_plan plan;
  if (!plan_skewed(&plan, n, experts_per_rank, 2024))
    return;
  ep_rank_timeline *pair = calloc((size_t)n, sizeof *pair);
  ep_rank_timeline *port = calloc((size_t)n, sizeof *port);
  CHECK(pair && port);
  if (pair && port) {
    CHECK_EQ_INT(simulate(&sc, &plan, EP_FLOWS_PAIR, pair), EP_OK);
    CHECK_EQ_INT(simulate(&sc, &plan, EP_FLOWS_PORT, port), EP_OK);
    const double layer_pair = max_end(pair, n, EP_PHASE_COMBINE);
    const double layer_port = max_end(port, n, EP_PHASE_COMBINE);
    printf("%s: layer: pair %.3f us, port %.3f us\n", case_name, layer_pair, layer_port);
    CHECK_REL(layer_pair, layer_port, PAIR_PORT_TOL);
    double t_pair[EP_PHASE_COUNT], t_port[EP_PHASE_COUNT];
    slowest_phases(pair, n, t_pair);
    slowest_phases(port, n, t_port);
    for (int p = 0; p < EP_PHASE_COUNT; p++) {
      printf("%s: slowest %s: pair %.3f us, port %.3f us\n", case_name, ep_phase_name((ep_phase)p),
             t_pair[p], t_port[p]);
      CHECK_REL(t_pair[p], t_port[p], PAIR_PORT_TOL);
    }
    /* Port flows are exact busiest-port times, the dispatch makespan too. */
    double bound = 0.0;
    for (int32_t r = 0; r < n; r++) {
      const double b = port_bound_us(&sc.cluster, plan.dispatch_bytes_src_dst, n, r);
      bound = b > bound ? b : bound;
    }
    CHECK_REL(t_port[EP_PHASE_DISPATCH], bound, CLOSED_FORM_TOL);
  }
  free(pair);
  free(port);
  ep_plan_free(&plan);
}

/* Same inputs, same times, bit for bit; and bad inputs are refused. */
static void deterministic_and_errors(void)
{
  const int32_t n = 16;
  ep_cluster c;
  CHECK_EQ_INT(ep_cluster_preset("hgx-h800", 2, &c), EP_OK);
  ep_scenario sc = make_scenario("hgx-h800", 2, n);
  ep_plan plan;
  if (!plan_skewed(&plan, n, 4, 99))
    return;
  ep_rank_timeline a[16], b[16];
  CHECK_EQ_INT(simulate(&sc, &plan, EP_FLOWS_PAIR, a), EP_OK);
  CHECK_EQ_INT(simulate(&sc, &plan, EP_FLOWS_PAIR, b), EP_OK);
  CHECK(memcmp(a, b, sizeof a) == 0);
  /* SimGrid settings of the caller: a setting epsim makes too (pair flows
   * solve Full) and a quieter log change nothing; one SimGrid rejects, at
   * initialisation or at the platform load, is bad input, found without an abort. */
  char *same[] = {"--cfg=network/optim:Full", "--log=root.thres:critical"};
  CHECK_EQ_INT(simulate_with(&sc, &plan, EP_FLOWS_PAIR, same, 2, b), EP_OK);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK_EQ_INT(ep_sim_check_settings(same, 2), EP_OK);
  CHECK_EQ_INT(ep_sim_check_settings(NULL, 0), EP_OK);
  char *bad_key[] = {"--cfg=nonsense:1"}, *bad_value[] = {"--cfg=network/TCP-gamma:abc"},
       *bad_model[] = {"--cfg=network/model:Nope"}, *bad_log[] = {"--log=bogus"},
       *bad_form[] = {"--cfg=network/optim:Full", "--cfg=help"};
  CHECK_EQ_INT(ep_sim_check_settings(bad_key, 1), EP_ERR_PARSE);
  CHECK_EQ_INT(ep_sim_check_settings(bad_value, 1), EP_ERR_PARSE);
  CHECK_EQ_INT(ep_sim_check_settings(bad_model, 1), EP_ERR_PARSE);
  CHECK_EQ_INT(ep_sim_check_settings(bad_log, 1), EP_ERR_PARSE);
  CHECK_EQ_INT(ep_sim_check_settings(bad_form, 2), EP_ERR_PARSE);
  /* The caller's setting wins over epsim's: a TCP window of 1000 bytes caps
   * each flow at window / round-trip time, far below the links. */
  char *slow[] = {"--cfg=network/TCP-gamma:1000"};
  CHECK_EQ_INT(simulate_with(&sc, &plan, EP_FLOWS_PAIR, slow, 1, b), EP_OK);
  CHECK(b[0].phase[EP_PHASE_DISPATCH].end_us > 2 * a[0].phase[EP_PHASE_DISPATCH].end_us);

  ep_sim_cfg cfg = {
      .flows = EP_FLOWS_AUTO, .gemm = EP_GEMM_COST_PARAMS_INIT, .platform_xml_path = "unused.xml"};
  CHECK_EQ_INT(ep_sim_run(&sc, &plan, &cfg, a), EP_ERR_INVALID);
  cfg.flows = EP_FLOWS_PORT;
  ep_scenario too_big = sc;
  too_big.ep = 17;
  CHECK_EQ_INT(ep_sim_run(&too_big, &plan, &cfg, a), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_sim_run(&sc, &plan, NULL, a), EP_ERR_INVALID);
  plan.dispatch_bytes_src_dst[1] = -1;
  CHECK_EQ_INT(ep_sim_run(&sc, &plan, &cfg, a), EP_ERR_INVALID);
  plan.dispatch_bytes_src_dst[1] = 0;
  cfg.platform_xml_path = "/nonexistent-dir/platform.xml";
  CHECK_EQ_INT(ep_sim_run(&sc, &plan, &cfg, a), EP_ERR_IO);
  ep_plan_free(&plan);
}

static void run_case(const char *name)
{
  ep_cluster c;
  if (!strcmp(name, "crossbar_hgx_pair")) {
    uniform_crossbar("hgx-h100", 8, EP_FLOWS_PAIR);
  } else if (!strcmp(name, "crossbar_hgx_port")) {
    uniform_crossbar("hgx-h100", 8, EP_FLOWS_PORT);
  } else if (!strcmp(name, "crossbar_nvl72_pair")) {
    uniform_crossbar("gb200-nvl72", 72, EP_FLOWS_PAIR);
  } else if (!strcmp(name, "crossbar_nvl72_port")) {
    uniform_crossbar("gb200-nvl72", 72, EP_FLOWS_PORT);
  } else if (!strcmp(name, "two_nodes_pair")) {
    uniform_two_nodes(EP_FLOWS_PAIR);
  } else if (!strcmp(name, "two_nodes_port")) {
    uniform_two_nodes(EP_FLOWS_PORT);
  } else if (!strcmp(name, "skewed_nvl72_pair")) {
    skewed("gb200-nvl72", 1, 40, EP_FLOWS_PAIR);
  } else if (!strcmp(name, "skewed_nvl72_port")) {
    skewed("gb200-nvl72", 1, 40, EP_FLOWS_PORT);
  } else if (!strcmp(name, "skewed_two_nodes_pair")) {
    skewed("hgx-h100", 2, 16, EP_FLOWS_PAIR);
  } else if (!strcmp(name, "skewed_two_nodes_port")) {
    skewed("hgx-h100", 2, 16, EP_FLOWS_PORT);
  } else if (!strcmp(name, "expert_barrier_pair")) {
    expert_and_barrier(EP_FLOWS_PAIR);
  } else if (!strcmp(name, "expert_barrier_port")) {
    expert_and_barrier(EP_FLOWS_PORT);
  } else if (!strcmp(name, "pair_vs_port_nvl72_32")) {
    CHECK_EQ_INT(ep_cluster_preset("gb200-nvl72", 1, &c), EP_OK);
    pair_vs_port(&c, 32, 8);
  } else if (!strcmp(name, "pair_vs_port_hgx_16")) {
    CHECK_EQ_INT(ep_cluster_preset("hgx-h100", 2, &c), EP_OK);
    pair_vs_port(&c, 16, 16);
  } else if (!strcmp(name, "pair_vs_port_2x24")) {
    /* An explicit cluster: two 24-GPU NVLink domains of GB200. */
    CHECK_EQ_INT(ep_cluster_preset("gb200-nvl72", 2, &c), EP_OK);
    c.preset[0] = '\0';
    c.gpus_per_node = 24;
    pair_vs_port(&c, 48, 4);
  } else if (!strcmp(name, "deterministic_and_errors")) {
    deterministic_and_errors();
  } else {
    fprintf(stderr, "test_simgrid: unknown case '%s'\n", name);
  }
}

int main(int argc, char **argv)
{
  if (argc != 2) {
    fprintf(stderr, "usage: %s CASE\n", argv[0]);
    return 2;
  }
  case_name = argv[1];
  run_case(case_name);
  char label[128];
  snprintf(label, sizeof label, "test_simgrid %s", case_name);
  return check_exit_code(label);
}
