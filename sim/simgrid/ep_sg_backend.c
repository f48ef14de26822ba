/* SimGrid 3.32 backend: one actor per EP rank runs the engine's layer program
 * on the platform of topology/ep_simgrid_xml.c. The only file with SimGrid.
 *
 * Semantics (times in µs from the start of the layer):
 * - dispatch: every rank starts at t = 0; a rank's dispatch ends when every flow
 *   it sends and every flow it receives has completed. Local copies are free.
 * - expert_compute: from the rank's dispatch end, for ep_expert_phase_us() of its
 *   local experts' token counts plus the shared experts over all its tokens.
 * - combine: a collective, as in NCCL: the ranks meet at a barrier after their
 *   expert phase, then all combine flows start together. A rank's combine runs
 *   from its own expert end (so it includes the wait for stragglers, as a
 *   CUDA-event timing would) until its sends and receives have completed.
 * Flows (ep_sim_cfg.flows): PAIR = one flow per (src, dst) with bytes, src != dst.
 * PORT = per rank and fabric port (ep_fabric.h: the port its bytes to or from
 * each peer use) one egress and one ingress flow, to and from the port host of
 * the switch that port plugs into; on a non-blocking fabric this gives the
 * busiest-port time with 4 flows per rank (NVLink, NIC) instead of n_ranks. The slowest
 * rank's times match pair flows; a lightly loaded rank ends at its own busiest
 * port, where with pair flows it also waits for its flows into busy peers.
 * Mechanics: no actor holds more than SG_MAX_PENDING comms (3.32 pays
 * O(pending) per completion). Pair flows are mailbox put/get pairs posted by
 * helper actors of the sender and of the receiver, 32 at a time; port flows are
 * one helper each doing a blocking sg_host_sendto (port hosts run no actors).
 * Helpers count finished flows off per rank; the rank sleeps on a semaphore
 * until its count reaches zero. Pair flows through mailboxes ran the NVL72
 * skewed all-to-all about 2x faster than one sendto helper per flow. */
#include "ep_sg_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <simgrid/actor.h>
#include <simgrid/barrier.h>
#include <simgrid/comm.h>
#include <simgrid/engine.h>
#include <simgrid/host.h>
#include <simgrid/mailbox.h>
#include <simgrid/semaphore.h>

#include "ep_fabric.h"
#include "ep_simgrid_xml.h"

#if defined(__SANITIZE_ADDRESS__)
#define EP_SG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EP_SG_ASAN 1
#endif
#endif

#define SG_MAX_PENDING 32
/* Actors' stacks, KiB, and the most actors that still get guard pages. */
#define SG_STACK_KIB 64
#define SG_GUARDED_MAX_ACTORS 16384
#define SG_STR_(x) #x
#define SG_STR(x) SG_STR_(x)

enum { SG_DISPATCH, SG_COMBINE, SG_N_COMM };

typedef enum { SG_TASK_SENDTO, SG_TASK_PUT, SG_TASK_GET } sg_task_kind;

struct sg_ctx;
struct sg_comm_phase;

/* One network flow from rank src (or a port host) to rank dst (or a port host). */
typedef struct sg_flow {
  sg_host_t from;
  sg_host_t to;
  int64_t bytes;
  int32_t dst; /* receiving rank of a pair flow; -1 for port flows */
} sg_flow;

/* The work of one helper actor; its flows count off for `rank`. */
typedef struct sg_task {
  struct sg_comm_phase *phase;
  sg_task_kind kind;
  int32_t rank;
  int64_t first; /* SENDTO, PUT: flows[first .. first + n) */
  int64_t n;     /* GET: n receives on the rank's mailbox */
} sg_task;

typedef struct sg_comm_phase {
  struct sg_ctx *ctx;
  sg_flow *flows;
  int64_t n_flows;
  sg_task *tasks; /* grouped by the rank that starts them */
  int64_t n_tasks;
  int64_t *first_task; /* [n_ranks + 1] rank r starts tasks[first_task[r] .. first_task[r+1]) */
  int64_t *involving;  /* [n_ranks] flows rank r waits for (constant) */
  int64_t *pending;    /* [n_ranks] of those, still running */
  sg_mailbox_t *mbox;  /* [n_ranks] pair flows' receive mailboxes */
} sg_comm_phase;

typedef struct sg_rank_arg {
  struct sg_ctx *ctx;
  int32_t rank;
} sg_rank_arg;

typedef struct sg_ctx {
  const ep_plan *plan;
  int32_t n_ranks;
  sg_comm_phase comm[SG_N_COMM];
  double *expert_us;   /* [n_ranks] */
  sg_host_t *gpu_host; /* [n_ranks] */
  sg_sem_t *done_sem;  /* [n_ranks] released when a rank's pending count hits 0 */
  sg_bar_t barrier;    /* before combine */
  int *passed_barrier; /* [n_ranks] */
  int *finished;       /* [n_ranks] rank actor returned */
  sg_rank_arg *rank_args;
  ep_status *rank_status;
  ep_status flow_status; /* first failure inside a helper */
  ep_rank_timeline *timelines;
} sg_ctx;

static double now_us(void)
{
  return simgrid_get_clock() * 1e6;
}

static void count_off(sg_comm_phase *ph, int32_t rank, int64_t n_flows)
{
  /* The semaphore is released exactly once per phase, when the count hits 0. */
  if (n_flows > 0 && (ph->pending[rank] -= n_flows) == 0)
    sg_sem_release(ph->ctx->done_sem[rank]);
}

static void helper_failed(sg_task *t, const char *what, int line)
{
  ep_log_error("SimGrid backend: %s failed for rank %d (%s:%d)", what, (int)t->rank, __FILE__,
               line);
  if (t->phase->ctx->flow_status == EP_OK)
    t->phase->ctx->flow_status = EP_ERR_BACKEND;
}

/* Waits for k comms, counting each off as it completes. */
static void wait_comms(sg_task *t, sg_comm_t *comms, size_t k)
{
  while (k > 0) {
    ssize_t i = sg_comm_wait_any(comms, k); /* consumes the finished comm */
    if (i < 0 || (size_t)i >= k) {
      helper_failed(t, "sg_comm_wait_any", __LINE__);
      break;
    }
    comms[i] = comms[--k];
    count_off(t->phase, t->rank, 1);
  }
  count_off(t->phase, t->rank, (int64_t)k); /* only after a failure */
}

static void helper_main(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  sg_task *t = sg_actor_self_get_data();
  sg_comm_phase *ph = t->phase;
  sg_comm_t comms[SG_MAX_PENDING];
  void *payloads[SG_MAX_PENDING]; /* written by the gets; must outlive them */
  size_t k = 0;
  switch (t->kind) {
  case SG_TASK_SENDTO: {
    const sg_flow *f = &ph->flows[t->first];
    sg_host_sendto(f->from, f->to, (double)f->bytes);
    count_off(ph, t->rank, 1);
    break;
  }
  case SG_TASK_PUT:
    for (int64_t i = t->first; i < t->first + t->n; i++) {
      sg_flow *f = &ph->flows[i];
      /* The payload is never read: only the simulated size matters. */
      if (!(comms[k] = sg_mailbox_put_async(ph->mbox[f->dst], f, (long)f->bytes))) {
        helper_failed(t, "sg_mailbox_put_async", __LINE__);
        count_off(ph, t->rank, 1);
        continue;
      }
      k++;
    }
    wait_comms(t, comms, k);
    break;
  case SG_TASK_GET:
    for (int64_t i = 0; i < t->n; i++) {
      if (!(comms[k] = sg_mailbox_get_async(ph->mbox[t->rank], &payloads[k]))) {
        helper_failed(t, "sg_mailbox_get_async", __LINE__);
        count_off(ph, t->rank, 1);
        continue;
      }
      k++;
    }
    wait_comms(t, comms, k);
    break;
  }
}

/* Starts rank's helpers of this phase, then waits for every flow it is part of. */
static ep_status run_flows(sg_ctx *ctx, sg_comm_phase *ph, int32_t rank)
{
  ep_status st = EP_OK;
  sg_host_t host = sg_actor_get_host(sg_actor_self());
  for (int64_t i = ph->first_task[rank]; i < ph->first_task[rank + 1]; i++) {
    sg_task *t = &ph->tasks[i];
    sg_actor_t a = sg_actor_init("flows", host);
    if (!a) {
      helper_failed(t, "sg_actor_init", __LINE__);
      st = EP_ERR_BACKEND;
      count_off(ph, t->rank, t->n); /* so the rank itself does not wait for them */
      continue;
    }
    sg_actor_set_data(a, t);
    sg_actor_start(a, helper_main, 0, NULL);
  }
  if (ph->involving[rank] > 0)
    sg_sem_acquire(ctx->done_sem[rank]);
  return st;
}

static ep_status sg_dispatch(void *vctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  (void)plan;
  sg_ctx *ctx = vctx;
  out->start_us = now_us();
  ep_status st = run_flows(ctx, &ctx->comm[SG_DISPATCH], rank);
  out->end_us = now_us();
  return st;
}

static ep_status sg_expert(void *vctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  (void)plan;
  sg_ctx *ctx = vctx;
  out->start_us = now_us();
  if (ctx->expert_us[rank] > 0.0)
    sg_actor_sleep_for(ctx->expert_us[rank] * 1e-6);
  out->end_us = now_us();
  return EP_OK;
}

static ep_status sg_combine(void *vctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  (void)plan;
  sg_ctx *ctx = vctx;
  out->start_us = now_us();
  sg_barrier_wait(ctx->barrier);
  ctx->passed_barrier[rank] = 1;
  ep_status st = run_flows(ctx, &ctx->comm[SG_COMBINE], rank);
  out->end_us = now_us();
  return st;
}

/* ctx belongs to ep_sim_run, which frees it: no free op. */
static const ep_backend_ops sg_ops = {
    .name = "simgrid", .dispatch = sg_dispatch, .expert_compute = sg_expert, .combine = sg_combine};

static void rank_main(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  sg_rank_arg *arg = sg_actor_self_get_data();
  sg_ctx *ctx = arg->ctx;
  const int32_t r = arg->rank;
  ctx->rank_status[r] = ep_engine_run_rank(&sg_ops, ctx, ctx->plan, r, &ctx->timelines[r]);
  /* A rank that failed early still meets its peers, so they do not deadlock. */
  if (!ctx->passed_barrier[r]) {
    sg_barrier_wait(ctx->barrier);
    ctx->passed_barrier[r] = 1;
  }
  ctx->finished[r] = 1;
}

/* ---- setup, plain C ---- */

static ep_status check_inputs(const ep_scenario *sc, const ep_plan *plan, const ep_sim_cfg *cfg)
{
  const ep_cluster *c = &sc->cluster;
  const int32_t n = plan->n_ranks;
  if (cfg->flows != EP_FLOWS_PAIR && cfg->flows != EP_FLOWS_PORT) {
    ep_log_error("SimGrid backend: flow mode must be pair or port (resolve auto first)");
    return EP_ERR_INVALID;
  }
  if (!cfg->platform_xml_path || !c->gpu || c->gpus_per_node <= 0 || c->n_nodes <= 0) {
    ep_log_error("SimGrid backend: missing platform path or cluster");
    return EP_ERR_INVALID;
  }
  if (n <= 0 || n != sc->ep || (int64_t)n > (int64_t)c->n_nodes * c->gpus_per_node) {
    ep_log_error("SimGrid backend: plan has %d ranks, scenario ep %d, cluster %lld GPUs", (int)n,
                 (int)sc->ep, (long long)c->n_nodes * c->gpus_per_node);
    return EP_ERR_INVALID;
  }
  const ep_placement *pl = &plan->placement;
  if (!plan->dispatch_bytes_src_dst || !plan->combine_bytes_src_dst || !plan->tokens_per_expert ||
      !pl->expert_of_slot || pl->n_ranks != n || pl->experts_per_rank <= 0 ||
      (int64_t)pl->experts_per_rank * n != plan->n_experts) {
    ep_log_error("SimGrid backend: plan is incomplete or its placement does not match");
    return EP_ERR_INVALID;
  }
  for (int64_t i = 0; i < (int64_t)n * pl->experts_per_rank; i++)
    if (pl->expert_of_slot[i] < 0 || pl->expert_of_slot[i] >= plan->n_experts)
      return EP_ERR_INVALID;
  for (int64_t i = 0; i < (int64_t)n * n; i++)
    if (plan->dispatch_bytes_src_dst[i] < 0 || plan->combine_bytes_src_dst[i] < 0)
      return EP_ERR_INVALID;
  for (int32_t e = 0; e < plan->n_experts; e++)
    if (plan->tokens_per_expert[e] < 0)
      return EP_ERR_INVALID;
  return EP_OK;
}

static void comm_phase_free(sg_comm_phase *ph)
{
  free(ph->flows);
  free(ph->tasks);
  free(ph->first_task);
  free(ph->involving);
  free(ph->pending);
  free(ph->mbox);
  memset(ph, 0, sizeof *ph);
}

static void add_task(sg_comm_phase *ph, sg_task_kind kind, int32_t rank, int64_t first, int64_t n)
{
  sg_task *t = &ph->tasks[ph->n_tasks++];
  t->phase = ph;
  t->kind = kind;
  t->rank = rank;
  t->first = first;
  t->n = n;
}

static void add_port_flow(sg_comm_phase *ph, int32_t rank, sg_host_t from, sg_host_t to,
                          int64_t bytes)
{
  if (bytes <= 0)
    return;
  sg_flow *f = &ph->flows[ph->n_flows];
  f->from = from;
  f->to = to;
  f->bytes = bytes;
  f->dst = -1;
  add_task(ph, SG_TASK_SENDTO, rank, ph->n_flows++, 1);
  ph->involving[rank]++;
}

/* Builds one phase's flows and helper tasks from a [n * n] byte matrix (row =
 * sender). port_host: [fabric->n_switches] each switch's port host (PORT mode).
 * mbox_prefix names the pair flows' mailboxes. */
static ep_status comm_phase_build(sg_ctx *ctx, sg_comm_phase *ph, const int64_t *bytes,
                                  ep_flow_mode mode, const ep_fabric *fabric,
                                  const sg_host_t *port_host, const char *mbox_prefix)
{
  const int32_t n = ctx->n_ranks;
  ph->ctx = ctx;
  ph->first_task = calloc((size_t)n + 1, sizeof *ph->first_task);
  ph->involving = calloc((size_t)n, sizeof *ph->involving);
  ph->pending = calloc((size_t)n, sizeof *ph->pending);
  if (!ph->first_task || !ph->involving || !ph->pending)
    return EP_ERR_NOMEM;
  /* Port flows: one egress and one ingress flow per port at most. */
  int64_t cap_flows = 2 * (int64_t)fabric->n_ports, cap_tasks = cap_flows;
  if (mode == EP_FLOWS_PAIR) {
    int64_t *n_in = ph->pending; /* scratch until the end */
    cap_flows = 0;
    for (int32_t s = 0; s < n; s++)
      for (int32_t d = 0; d < n; d++)
        if (s != d && bytes[(int64_t)s * n + d] > 0) {
          ph->involving[s]++;
          n_in[d]++;
          cap_flows++;
        }
    cap_tasks = 0;
    for (int32_t r = 0; r < n; r++) {
      const int64_t n_out = ph->involving[r];
      cap_tasks += (n_out + SG_MAX_PENDING - 1) / SG_MAX_PENDING;
      cap_tasks += (n_in[r] + SG_MAX_PENDING - 1) / SG_MAX_PENDING;
    }
    ph->mbox = calloc((size_t)n, sizeof *ph->mbox);
    if (!ph->mbox)
      return EP_ERR_NOMEM;
    for (int32_t r = 0; r < n; r++) {
      char name[48];
      snprintf(name, sizeof name, "%s-%d", mbox_prefix, (int)r);
      if (!(ph->mbox[r] = sg_mailbox_by_name(name))) {
        ep_log_error("sg_mailbox_by_name(%s) failed (%s:%d)", name, __FILE__, __LINE__);
        return EP_ERR_BACKEND;
      }
    }
  }
  ph->flows = malloc((size_t)(cap_flows > 0 ? cap_flows : 1) * sizeof *ph->flows);
  ph->tasks = malloc((size_t)(cap_tasks > 0 ? cap_tasks : 1) * sizeof *ph->tasks);
  if (!ph->flows || !ph->tasks)
    return EP_ERR_NOMEM;
  /* PORT: bytes per fabric port, out of the GPU then into it. */
  const int32_t n_ports = fabric->n_ports;
  int64_t *port_out = NULL;
  if (mode == EP_FLOWS_PORT) {
    if (!(port_out = malloc(2 * (size_t)n_ports * sizeof *port_out)))
      return EP_ERR_NOMEM;
    ep_fabric_port_bytes(fabric, bytes, port_out, port_out + n_ports);
  }

  for (int32_t s = 0; s < n; s++) {
    ph->first_task[s] = ph->n_tasks;
    if (mode == EP_FLOWS_PAIR) {
      const int64_t first = ph->n_flows;
      for (int32_t k = 1; k < n; k++) { /* shifted order, as NCCL's all-to-all */
        const int32_t d = (s + k) % n;
        const int64_t b = bytes[(int64_t)s * n + d];
        if (b > 0)
          ph->flows[ph->n_flows++] = (sg_flow){ctx->gpu_host[s], ctx->gpu_host[d], b, d};
      }
      for (int64_t i = first; i < ph->n_flows; i += SG_MAX_PENDING) {
        const int64_t left = ph->n_flows - i;
        add_task(ph, SG_TASK_PUT, s, i, left < SG_MAX_PENDING ? left : SG_MAX_PENDING);
      }
      const int64_t n_in = ph->pending[s];
      for (int64_t i = 0; i < n_in; i += SG_MAX_PENDING)
        add_task(ph, SG_TASK_GET, s, 0, n_in - i < SG_MAX_PENDING ? n_in - i : SG_MAX_PENDING);
      ph->involving[s] += n_in;
    } else {
      const ep_fabric_gpu *gpu = &fabric->gpus[s];
      for (int32_t i = gpu->first_port; i < gpu->first_port + gpu->n_ports; i++) {
        const sg_host_t far = port_host[fabric->ports[i].sw];
        add_port_flow(ph, s, ctx->gpu_host[s], far, port_out[i]);
        add_port_flow(ph, s, far, ctx->gpu_host[s], port_out[n_ports + i]);
      }
    }
  }
  free(port_out);
  ph->first_task[n] = ph->n_tasks;
  memcpy(ph->pending, ph->involving, (size_t)n * sizeof *ph->pending);
  return EP_OK;
}

static ep_status expert_times(const ep_scenario *sc, const ep_plan *plan, const ep_sim_cfg *cfg,
                              double *expert_us)
{
  const int32_t epr = plan->placement.experts_per_rank;
  int64_t *tokens = malloc((size_t)epr * sizeof *tokens);
  if (!tokens)
    return EP_ERR_NOMEM;
  const ep_expert_shape shape = {sc->model.hidden, sc->model.moe_intermediate,
                                 sc->model.dispatch_dtype};
  ep_status st = EP_OK;
  for (int32_t r = 0; r < plan->n_ranks; r++) {
    for (int32_t s = 0; s < epr; s++)
      tokens[s] = plan->tokens_per_expert[plan->placement.expert_of_slot[(int64_t)r * epr + s]];
    expert_us[r] = ep_expert_phase_us(&cfg->gemm, sc->cluster.gpu, &shape, tokens, epr,
                                      sc->model.n_shared_experts, sc->tokens_per_gpu);
    if (!isfinite(expert_us[r]) || expert_us[r] < 0.0) {
      ep_log_error("SimGrid backend: expert time of rank %d is %g us", (int)r, expert_us[r]);
      st = EP_ERR_INVALID;
      break;
    }
  }
  free(tokens);
  return st;
}

static ep_status write_platform(const ep_fabric *fabric, const char *path)
{
  FILE *f = fopen(path, "w");
  if (!f) {
    ep_log_error("cannot create %s: %s", path, strerror(errno));
    return EP_ERR_IO;
  }
  errno = 0;
  ep_status st = ep_fabric_write_simgrid_xml(fabric, f); /* checks its writes and flush */
  int e = errno;
  if (fclose(f) != 0 && st == EP_OK) {
    e = errno;
    st = EP_ERR_IO;
  }
  if (st == EP_ERR_IO)
    ep_log_error("writing %s failed: %s", path, strerror(e ? e : EIO));
  return st;
}

static sg_host_t host_named(const char *name)
{
  sg_host_t h = sg_host_by_name(name);
  if (!h)
    ep_log_error("SimGrid backend: host %s missing from the platform", name);
  return h;
}

/* Most helper actors alive at once: 2 per fabric port for port flows; for pair
 * flows one per SG_MAX_PENDING sends and one per SG_MAX_PENDING receives. */
static int64_t max_helpers(int32_t n, const ep_fabric *fabric, ep_flow_mode mode)
{
  if (mode == EP_FLOWS_PORT)
    return 2 * (int64_t)fabric->n_ports;
  return 2 * (int64_t)n * ((n - 1 + SG_MAX_PENDING - 1) / SG_MAX_PENDING);
}

/* SimGrid keeps global state: one engine per process. */
static int sg_initialised;
/* simgrid_init's argv, NULL-terminated, and the strings it points to (SimGrid
 * takes its own arguments out of argv). Never freed: SimGrid may keep them. */
static char **sg_argv, **sg_arg_text;

/* simgrid_init's command line: epsim's settings, then the caller's, which
 * SimGrid applies in order, so the caller's win. max_actors: the most actors
 * alive at once (ranks + one phase's helpers). */
static ep_status simgrid_argv(const ep_sim_cfg *cfg, int64_t max_actors, int *argc_out)
{
  const char *own[16];
  int n = 0;
  own[n++] = "epsim";
  own[n++] = "--log=xbt_cfg.thres:warning"; /* no "Configuration change" line per setting */
  /* Network model: exact flow-level max-min sharing, no TCP corrections. */
  own[n++] = "--cfg=network/model:CM02";
  own[n++] = "--cfg=network/crosstraffic:0";
  own[n++] = "--cfg=network/TCP-gamma:0"; /* 0: no window cap */
  /* Full re-solves the whole system at each event, Lazy only what changed.
   * Pair flows form one connected system: Full was 1.5x faster (NVL72, skewed).
   * Port flows form one small system per GPU: Lazy was 5x faster (1024 GPUs,
   * skewed). Both give the same times (checked by the tests). */
  own[n++] = cfg->flows == EP_FLOWS_PORT ? "--cfg=network/optim:Lazy" : "--cfg=network/optim:Full";
  /* A guard page costs two memory mappings per actor: beyond ~32 K actors that
   * exhausts vm.max_map_count. Without guards 3.32 calloc()s (touches) every
   * stack, so drop them only where needed (measured: NVL72 pair flows, 5 K
   * actors of 32 KiB: 76 MB with guards, 190 MB without). */
  if (max_actors > SG_GUARDED_MAX_ACTORS)
    own[n++] = "--cfg=contexts/guard-size:0";
#ifdef EP_SG_ASAN
  /* ASan cannot follow SimGrid's hand-made stack switches; threads it can (and
   * size their stacks themselves). */
  own[n++] = "--cfg=contexts/factory:thread";
#else
  own[n++] =
      "--cfg=contexts/stack-size:" SG_STR(SG_STACK_KIB); /* actors only log and call SimGrid */
#endif
  const int argc = n + cfg->n_simgrid_args;
  sg_argv = calloc((size_t)argc + 1, sizeof *sg_argv);
  sg_arg_text = calloc((size_t)argc, sizeof *sg_arg_text);
  if (!sg_argv || !sg_arg_text)
    return EP_ERR_NOMEM;
  for (int i = 0; i < argc; i++)
    if (!(sg_argv[i] = sg_arg_text[i] = strdup(i < n ? own[i] : cfg->simgrid_args[i - n])))
      return EP_ERR_NOMEM;
  *argc_out = argc;
  return EP_OK;
}

/* A platform of one host for the trial run: loading any platform makes SimGrid
 * create its models, which is where it checks their names. */
static const char probe_platform[] =
    "<?xml version='1.0'?>\n"
    "<!DOCTYPE platform SYSTEM \"https://simgrid.org/simgrid.dtd\">\n"
    "<platform version=\"4.1\"><zone id=\"probe\" routing=\"Full\">"
    "<host id=\"probe\" speed=\"1f\"/></zone></platform>\n";

/* The trial run of ep_sim_check_settings in a child process: SimGrid's stderr
 * into fd, stdout to /dev/null; never returns. */
static void probe_child(char **argv, const char *platform_path, int fd)
{
  const int null_fd = open("/dev/null", O_WRONLY);
  if (null_fd < 0 || dup2(null_fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
    _exit(127);
  int argc = 0;
  while (argv[argc])
    argc++;
  simgrid_init(&argc, argv);
  simgrid_load_platform(platform_path);
  _exit(0);
}

/* Reads fd to its end into text (cut to size - 1, always terminated). */
static void read_text(int fd, char *text, size_t size)
{
  size_t used = 0;
  for (;;) { /* keep the start, drain the rest */
    char chunk[4096];
    const ssize_t k = read(fd, chunk, sizeof chunk);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    const size_t take = (size_t)k < size - 1 - used ? (size_t)k : size - 1 - used;
    memcpy(text + used, chunk, take);
    used += take;
  }
  text[used] = '\0';
}

ep_status ep_sim_check_settings(char *const *args, int n_args)
{
  if (n_args <= 0)
    return EP_OK;
  ep_status st = EP_ERR_IO;
  char **argv = calloc((size_t)n_args + 2, sizeof *argv);
  char platform[4096];
  const char *tmp = getenv("TMPDIR");
  snprintf(platform, sizeof platform, "%s/epsim-probe-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  int fds[2] = {-1, -1};
  const int pf = argv ? mkstemp(platform) : -1;
  if (!argv || pf < 0 ||
      write(pf, probe_platform, sizeof probe_platform - 1) !=
          (ssize_t)(sizeof probe_platform - 1)) {
    ep_log_error("SimGrid backend: cannot write a trial platform %s: %s", platform,
                 argv ? strerror(errno) : "out of memory");
    goto done;
  }
  argv[0] = "epsim";
  memcpy(argv + 1, args, (size_t)n_args * sizeof *argv);
  if (pipe(fds) != 0) {
    ep_log_error("SimGrid backend: pipe failed: %s", strerror(errno));
    goto done;
  }
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    ep_log_error("SimGrid backend: fork failed: %s", strerror(errno));
    goto done;
  }
  if (pid == 0)
    probe_child(argv, platform, fds[1]);
  close(fds[1]);
  fds[1] = -1;
  char text[8192];
  read_text(fds[0], text, sizeof text);
  int wstatus = 0;
  if (waitpid(pid, &wstatus, 0) != pid) {
    ep_log_error("SimGrid backend: waitpid failed: %s", strerror(errno));
    goto done;
  }
  st = EP_OK;
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
    goto done;
  char given[1024] = "";
  for (int i = 0, used = 0; i < n_args && used < (int)sizeof given; i++) {
    const int k =
        snprintf(given + used, sizeof given - (size_t)used, "%s%s", i ? " " : "", args[i]);
    used += k > 0 ? k : 0;
  }
  const char *why = strstr(text, "CRITICAL] ");
  if (why) {
    why += strlen("CRITICAL] ");
    ep_log_error("SimGrid rejects %s: %.*s", given, (int)strcspn(why, "\n"), why);
  } else {
    ep_log_error("SimGrid rejects %s (its trial run ended with %s %d)", given,
                 WIFSIGNALED(wstatus) ? "signal" : "exit status",
                 WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus));
  }
  st = EP_ERR_PARSE;
done:
  for (int i = 0; i < 2; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  if (pf >= 0) {
    close(pf);
    unlink(platform);
  }
  free(argv);
  return st;
}

static void ctx_free(sg_ctx *ctx)
{
  for (int p = 0; p < SG_N_COMM; p++)
    comm_phase_free(&ctx->comm[p]);
  if (ctx->done_sem)
    for (int32_t r = 0; r < ctx->n_ranks; r++)
      if (ctx->done_sem[r])
        sg_sem_destroy(ctx->done_sem[r]);
  if (ctx->barrier)
    sg_barrier_destroy(ctx->barrier);
  free(ctx->done_sem);
  free(ctx->expert_us);
  free(ctx->gpu_host);
  free(ctx->passed_barrier);
  free(ctx->finished);
  free(ctx->rank_args);
  free(ctx->rank_status);
}

ep_status ep_sim_run(const ep_scenario *scenario, const ep_plan *plan, const ep_sim_cfg *cfg,
                     ep_rank_timeline *timelines)
{
  if (!scenario || !plan || !cfg || !timelines)
    return EP_ERR_INVALID;
  ep_status st = check_inputs(scenario, plan, cfg);
  if (st != EP_OK)
    return st;
  if (sg_initialised) {
    ep_log_error("SimGrid backend: ep_sim_run can run once per process");
    return EP_ERR_UNSUPPORTED;
  }

  const int32_t n = plan->n_ranks;
  sg_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.plan = plan;
  ctx.n_ranks = n;
  ctx.timelines = timelines;
  memset(timelines, 0, (size_t)n * sizeof *timelines);
  sg_host_t *port_host = NULL; /* [fabric.n_switches] */
  ep_fabric fabric;
  if ((st = ep_fabric_init(&fabric, &scenario->cluster, n)) != EP_OK) {
    ep_log_error("SimGrid backend: the cluster's fabric: %s", ep_status_str(st));
    return st;
  }

  ctx.expert_us = malloc((size_t)n * sizeof *ctx.expert_us);
  if (!ctx.expert_us) {
    st = EP_ERR_NOMEM;
    goto done;
  }
  if ((st = expert_times(scenario, plan, cfg, ctx.expert_us)) != EP_OK)
    goto done;
  if ((st = write_platform(&fabric, cfg->platform_xml_path)) != EP_OK)
    goto done;

  sg_initialised = 1; /* from here on, whatever happens */
  int sg_argc = 0;
  if ((st = simgrid_argv(cfg, (int64_t)n + max_helpers(n, &fabric, cfg->flows), &sg_argc)) != EP_OK)
    goto done;
  simgrid_init(&sg_argc, sg_argv);
  /* Parse errors abort inside SimGrid (C++ exceptions cannot reach C); the
   * writer above is the guard: it only emits what the tests load. */
  simgrid_load_platform(cfg->platform_xml_path);

  ctx.gpu_host = calloc((size_t)n, sizeof *ctx.gpu_host);
  port_host = calloc((size_t)fabric.n_switches, sizeof *port_host);
  ctx.done_sem = calloc((size_t)n, sizeof *ctx.done_sem);
  ctx.passed_barrier = calloc((size_t)n, sizeof *ctx.passed_barrier);
  ctx.finished = calloc((size_t)n, sizeof *ctx.finished);
  ctx.rank_args = calloc((size_t)n, sizeof *ctx.rank_args);
  ctx.rank_status = calloc((size_t)n, sizeof *ctx.rank_status);
  if (!ctx.gpu_host || !port_host || !ctx.done_sem || !ctx.passed_barrier || !ctx.finished ||
      !ctx.rank_args || !ctx.rank_status) {
    st = EP_ERR_NOMEM;
    goto done;
  }
  for (int32_t r = 0; r < n; r++)
    if (!(ctx.gpu_host[r] = host_named(fabric.gpus[r].name))) {
      st = EP_ERR_BACKEND;
      goto done;
    }
  for (int32_t s = 0; s < fabric.n_switches; s++)
    if (fabric.switches[s].port_host[0] &&
        !(port_host[s] = host_named(fabric.switches[s].port_host))) {
      st = EP_ERR_BACKEND;
      goto done;
    }
  if ((st = comm_phase_build(&ctx, &ctx.comm[SG_DISPATCH], plan->dispatch_bytes_src_dst, cfg->flows,
                             &fabric, port_host, "dispatch")) != EP_OK ||
      (st = comm_phase_build(&ctx, &ctx.comm[SG_COMBINE], plan->combine_bytes_src_dst, cfg->flows,
                             &fabric, port_host, "combine")) != EP_OK)
    goto done;
  for (int32_t r = 0; r < n; r++)
    if (!(ctx.done_sem[r] = sg_sem_init(0))) {
      ep_log_error("sg_sem_init failed (%s:%d)", __FILE__, __LINE__);
      st = EP_ERR_BACKEND;
      goto done;
    }
  if (!(ctx.barrier = sg_barrier_init((unsigned)n))) {
    ep_log_error("sg_barrier_init failed (%s:%d)", __FILE__, __LINE__);
    st = EP_ERR_BACKEND;
    goto done;
  }
  for (int32_t r = 0; r < n; r++) {
    ctx.rank_args[r].ctx = &ctx;
    ctx.rank_args[r].rank = r;
    ctx.rank_status[r] = EP_ERR_BACKEND; /* until the actor reports */
    sg_actor_t a = sg_actor_init("rank", ctx.gpu_host[r]);
    if (!a) {
      ep_log_error("sg_actor_init failed for rank %d (%s:%d)", (int)r, __FILE__, __LINE__);
      st = EP_ERR_BACKEND;
      goto done; /* nothing has run yet: no actor waits on another */
    }
    sg_actor_set_data(a, &ctx.rank_args[r]);
    sg_actor_start(a, rank_main, 0, NULL);
  }
  ctx.flow_status = EP_OK;
  simgrid_run();

  for (int32_t r = 0; r < n && st == EP_OK; r++) {
    if (!ctx.finished[r]) {
      ep_log_error("SimGrid backend: rank %d did not finish (deadlock)", (int)r);
      st = EP_ERR_BACKEND;
    } else if (ctx.rank_status[r] != EP_OK) {
      st = ctx.rank_status[r];
    }
  }
  if (st == EP_OK)
    st = ctx.flow_status;

done:
  free(port_host);
  ctx_free(&ctx);
  ep_fabric_free(&fabric);
  return st;
}

/* Peak RSS terms, fitted to /usr/bin/time -f %M of epsim run on the default
 * scenario (tokens_per_gpu 4096, nodes = ep / 8, n_experts = max(256, ep)):
 * pair flows at EP 16, 32, 64, 128; port flows at EP 16, 64, 256, 1024, 2048,
 * 4096, 8192; port flows with NVLink domains of 256, 1024 and 2 x 1024 GPUs.
 * Measured 33 MiB (EP16) to 5.6 GiB (port EP8192, 40960 unguarded actors).
 * With the plan's part the estimate is within -6.5%..+10% of each fitted run
 * (the worst: the many routes of the large domains), and -0.3%..+6.3% of six
 * runs not fitted: GB200 NVL72 port EP288 and pair EP72, EP16 with top_k 1024,
 * port EP3000 and EP3500 (either side of the guard-page switch), pair EP96.
 * Not for ASan builds (thread contexts) nor for a --cfg that changes
 * contexts/stack-size or guard-size. */
#define SG_BASE_BYTES 34e6          /* the process with SimGrid loaded and initialised */
#define SG_GUARDED_ACTOR_BYTES 13e3 /* an actor and the stack pages it touches */
#define SG_ACTOR_BYTES 2.7e3        /* the same without its stack (unguarded: calloc'd whole) */
#define SG_PAIR_FLOW_BYTES 2.7e3    /* a pair flow: its comm, action and sharing variable */
#define SG_ROUTE_BYTES 160.0        /* a route between two GPUs of a domain (both directions) */
#define SG_RANK_BYTES 2e3           /* per rank: hosts, links, ports, the backend's arrays */

double ep_sim_memory_bytes(const ep_scenario *scenario, ep_flow_mode flows)
{
  ep_fabric fabric;
  const int32_t n = scenario->ep;
  if (ep_fabric_init(&fabric, &scenario->cluster, n) != EP_OK)
    return 0.0; /* ep_sim_run reports the fabric's problem */
  double routes = 0.0;
  for (int32_t k = 0; k < fabric.n_domains; k++) {
    const double u = fabric.domains[k].gpus.n;
    routes += u * (u - 1.0) / 2.0;
  }
  const double actors = (double)n + (double)max_helpers(n, &fabric, flows);
  ep_fabric_free(&fabric);
  const double actor_bytes = actors > SG_GUARDED_MAX_ACTORS ? SG_STACK_KIB * 1024.0 + SG_ACTOR_BYTES
                                                            : SG_GUARDED_ACTOR_BYTES;
  /* Pair flows: both phases' flow lists are built up front, one phase's comms
   * are alive at a time. */
  const double pair = flows == EP_FLOWS_PAIR
                          ? (double)n * (n - 1.0) * (SG_PAIR_FLOW_BYTES + 2 * sizeof(sg_flow))
                          : 0.0;
  return SG_BASE_BYTES + actors * actor_bytes + pair + routes * SG_ROUTE_BYTES +
         (double)n * SG_RANK_BYTES;
}
