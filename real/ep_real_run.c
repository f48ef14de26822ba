/* epsim-real's backend for the shared driver (sim/ep_driver.h), on every MPI
 * rank: the checks only it can make, this rank's layer through the engine
 * (ep_layer.h, the backend picked from ep_real_backends.h) after the warm-up
 * layers, the output check against the double reference, --dump-output, and
 * every rank's timeline gathered to rank 0, which reports. */
#include "ep_real_run.h"

#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "ep_config.h"
#include "ep_layer.h"
#include "ep_output.h"
#include "ep_real.h"
#include "ep_real_mpi.h"

/* Relative L2 error bound per sampled token, against the double reference
 * (which applies the same fp8 quantisation of the dispatched token when the wire
 * is fp8, so one bound serves both wires). The kernels round to bf16 (2^-9
 * relative each) the gate and up products, the activation, each expert output,
 * the combined sum, and with fp8 the dequantised token: seven roundings in the
 * worst case, 7 * 2^-9 = 1.4e-2, hence 2e-2. Measured on tests/scenarios/real-*.yaml
 * over every token: at most 7.5e-3. A wrong expert or token gives errors of order 1. */
#define EP_REAL_TOL 2e-2

/* Every rank's worst outcome: ok, then bad input or the user's environment
 * (EP_ERR_PARSE, EP_ERR_IO: EP_ERR_PARSE on every rank), then an internal
 * failure (the rank's own status where it had one). */
static ep_status agree(ep_status st)
{
  const int mine = st == EP_OK ? 0 : st == EP_ERR_PARSE || st == EP_ERR_IO ? 1 : 2;
  int worst = mine;
  if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
    ep_log_error("MPI_Allreduce of the ranks' status failed");
    return EP_ERR_BACKEND;
  }
  return worst == 0 ? EP_OK : worst == 1 ? EP_ERR_PARSE : mine == 2 ? st : EP_ERR_BACKEND;
}

/* The backend's refusals (EP_ERR_INVALID) are bad input. */
static ep_status refusal_is_input(ep_status st)
{
  return st == EP_ERR_INVALID ? EP_ERR_PARSE : st;
}

/* Checks every rank's memory estimate against its limit before anything is
 * allocated; rank 0 names the first rank that does not fit. */
static ep_status check_memory(const ep_plan *plan, const ep_real_shape *shape, ep_dtype wire,
                              int rank, int on_gpu, double limit_bytes, const char *limit_what)
{
  ep_status st = EP_OK;
  const ep_real_mem m = ep_real_mem_estimate(plan, shape, rank, wire, on_gpu);
  const int fits = (double)m.total_bytes <= limit_bytes;
  int all_fit = fits;
  EP_MPI_TRY(rank, MPI_Allreduce(&fits, &all_fit, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (all_fit)
    return EP_OK;
  /* Lowest failing rank reports. */
  int first = fits ? plan->n_ranks : rank, lowest = 0;
  EP_MPI_TRY(rank, MPI_Allreduce(&first, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (rank == lowest) {
    char need[32], w[32], buf[32], lim[32];
    ep_log_error("experts do not fit on rank %d: it needs %s (%d experts' bf16 weights %s, "
                 "buffers %s) but the limit is %s (%s)",
                 rank, ep_real_format_bytes((double)m.total_bytes, need, sizeof need),
                 (int)m.local_experts, ep_real_format_bytes((double)m.weights_bytes, w, sizeof w),
                 ep_real_format_bytes((double)m.buffers_bytes, buf, sizeof buf),
                 ep_real_format_bytes(limit_bytes, lim, sizeof lim), limit_what);
  }
  return EP_ERR_PARSE;
fail:
  return st;
}

/* Sampled tokens of this rank against the double reference; returns the worst
 * relative error (+inf for NaN) or a negative value on failure. */
static double check_output(const ep_real_rank *rk, const float *out, int64_t n_check)
{
  const int64_t tpr = rk->plan->tokens_per_rank, k = rk->plan->top_k;
  const int32_t h = rk->shape.hidden;
  if (n_check > tpr)
    n_check = tpr;
  if (n_check <= 0)
    return 0.0;
  int64_t *gid = malloc(sizeof(int64_t) * (size_t)n_check);
  int32_t *ex = malloc(sizeof(int32_t) * (size_t)(n_check * k));
  float *w = malloc(sizeof(float) * (size_t)(n_check * k));
  uint8_t *kept = malloc((size_t)(n_check * k));
  double *ref = malloc(sizeof(double) * (size_t)n_check * (size_t)h);
  float *got = malloc(sizeof(float) * (size_t)n_check * (size_t)h);
  double worst = -1.0;
  if (!gid || !ex || !w || !kept || !ref || !got) {
    ep_log_error("rank %d: out of memory for the output check", (int)rk->rank);
    goto done;
  }
  for (int64_t i = 0; i < n_check; i++) {
    const int64_t t = i * tpr / n_check; /* spread over the rank's tokens */
    gid[i] = (int64_t)rk->rank * tpr + t;
    for (int64_t j = 0; j < k; j++) {
      ex[i * k + j] = rk->experts[t * k + j];
      w[i * k + j] = rk->weights[t * k + j];
      kept[i * k + j] = rk->dest_rank[t * k + j] >= 0;
    }
    memcpy(got + (size_t)i * (size_t)h, out + (size_t)t * (size_t)h, sizeof(float) * (size_t)h);
  }
  if (ep_real_reference(&rk->shape, rk->wire == EP_DTYPE_FP8, n_check, gid, ex, w, kept, ref) !=
      EP_OK)
    goto done;
  worst = ep_real_rel_error(got, ref, n_check, h);
  if (isnan(worst))
    worst = INFINITY;
done:
  free(gid);
  free(ex);
  free(w);
  free(kept);
  free(ref);
  free(got);
  return worst;
}

/* Rank 0 writes every rank's output in rank order into the stage (a
 * temporary beside path, renamed by the driver with -o's files); the others
 * send theirs. A file rank 0 cannot write is EP_ERR_IO (exit 1). */
static ep_status dump_output(ep_output_stage *stage, const char *path, const float *out,
                             int64_t tpr, int32_t hidden, int rank, int n_ranks)
{
  MPI_Datatype row;
  if (MPI_Type_contiguous(hidden, MPI_FLOAT, &row) != MPI_SUCCESS ||
      MPI_Type_commit(&row) != MPI_SUCCESS) {
    ep_log_error("rank %d: MPI_Type_contiguous/MPI_Type_commit for the output dump failed", rank);
    return EP_ERR_BACKEND;
  }
  ep_status st = EP_OK;
  if (tpr > 2147483647) {
    ep_log_error("rank %d: %lld tokens per rank exceed MPI's int counts", rank, (long long)tpr);
    st = EP_ERR_BACKEND;
  } else if (rank != 0) {
    if (MPI_Send(out, (int)tpr, row, 0, 7, MPI_COMM_WORLD) != MPI_SUCCESS) {
      ep_log_error("rank %d: MPI_Send of the output dump failed", rank);
      st = EP_ERR_BACKEND;
    }
  } else {
    const char *tmp = path;
    FILE *f = NULL;
    float *buf = malloc(sizeof(float) * (size_t)tpr * (size_t)hidden);
    if (!buf) {
      ep_log_error("rank 0: out of memory for the output dump");
      st = EP_ERR_NOMEM;
    } else if ((st = ep_output_stage_extra(stage, path, &tmp)) == EP_OK &&
               !(f = fopen(tmp, "wb"))) {
      ep_log_error("cannot write %s: %s", tmp, strerror(errno));
      st = EP_ERR_IO;
    }
    for (int r = 0; r < n_ranks; r++) {
      const float *src = out;
      if (r > 0) {
        if (MPI_Recv(buf ? buf : (float *)out, buf ? (int)tpr : 0, row, r, 7, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS) {
          ep_log_error("rank 0: MPI_Recv of rank %d's output failed", r);
          st = EP_ERR_BACKEND;
          continue;
        }
        src = buf;
      }
      if (st == EP_OK &&
          fwrite(src, sizeof(float) * (size_t)hidden, (size_t)tpr, f) != (size_t)tpr) {
        ep_log_error("writing %s failed: %s", tmp, strerror(errno));
        st = EP_ERR_IO;
      }
    }
    if (f) {
      const ep_status closed = ep_output_close(f, tmp);
      if (st == EP_OK)
        st = closed;
    }
    free(buf);
  }
  if (MPI_Type_free(&row) != MPI_SUCCESS && st == EP_OK) {
    ep_log_error("rank %d: MPI_Type_free failed", rank);
    st = EP_ERR_BACKEND;
  }
  return st;
}

/* What only the real backend can refuse: the combine dtype, the --backend
 * (its name, its build, a visible GPU) and EP != ranks. *entry: the backend. */
static ep_status check_input(const ep_scenario *s, const ep_real_run_state *state,
                             const ep_backend_entry **entry)
{
  const int loud = state->where.rank == 0, n_ranks = state->where.n_ranks;
  if (s->model.combine_dtype != EP_DTYPE_BF16) {
    if (loud)
      ep_log_error("%s: the real backend combines in bf16; model.combine_dtype %s is not "
                   "supported (set model.combine_dtype=bf16)",
                   state->opts->scenario_path, ep_dtype_name(s->model.combine_dtype));
    return EP_ERR_PARSE;
  }
  if (ep_real_backend_pick(state->opts->backend, loud, entry) != EP_OK)
    return EP_ERR_PARSE;
  if (s->ep != n_ranks) {
    if (loud)
      ep_log_error("scenario wants ep=%d but mpirun started %d rank%s (run mpirun -np %d, or "
                   "--set parallel.ep=%d)",
                   (int)s->ep, n_ranks, n_ranks == 1 ? "" : "s", (int)s->ep, n_ranks);
    return EP_ERR_PARSE;
  }
  return EP_OK;
}

ep_status ep_real_run(void *user, ep_driver_run *run)
{
  ep_real_run_state *state = user;
  const ep_cli_opts *o = state->opts;
  const ep_scenario *s = run->scenario;
  const ep_plan *plan = run->plan;
  const int rank = state->where.rank, n_ranks = state->where.n_ranks;
  const ep_dtype wire = s->model.dispatch_dtype;
  const ep_real_shape shape = {s->model.n_experts, s->model.n_shared_experts, s->model.top_k,
                               s->model.hidden,    s->model.moe_intermediate, s->routing.seed};
  const ep_backend_entry *entry = NULL;
  ep_real_site site;
  ep_status st;
  /* Where the backend runs, and the fit check before any buffer exists. */
  if ((st = check_input(s, state, &entry)) != EP_OK ||
      (st = agree(refusal_is_input(
           ep_real_backend_setup(entry, &state->where, o->max_mem_bytes, &site)))) != EP_OK)
    return st;
  const ep_real_backend *be = entry->impl;
  if ((st = check_memory(plan, &shape, wire, rank, be->compute->on_gpu, site.mem_limit_bytes,
                         site.mem_limit_what)) != EP_OK)
    return st;

  ep_real_rank rk = {0};
  ep_layer *layer = NULL;
  float *out = NULL;
  ep_rank_timeline tl;
  if ((st = agree(refusal_is_input(
           ep_real_rank_init(plan, run->router, &shape, rank, wire, &rk)))) != EP_OK)
    goto fail;
  const ep_layer_cfg lcfg = {entry->name, be->transport, be->compute, MPI_COMM_WORLD, site.device};
  if ((st = ep_layer_init(&layer, &rk, &lcfg)) != EP_OK) {
    /* Peers may be waiting in a collective of the setup (no timeout). */
    ep_log_error("rank %d: %s backend setup failed (%s); aborting all ranks", rank, entry->name,
                 ep_status_str(st));
    MPI_Abort(MPI_COMM_WORLD, EP_EXIT_INTERNAL);
    goto fail;
  }
  const ep_backend_ops *ops = ep_layer_ops(layer);

  /* The layer: the engine's per-rank program, from a common barrier; warm-up
   * layers first (same inputs, same output), then the timed one. */
  for (int64_t it = 0; it <= o->warmup && st == EP_OK; it++) {
    memset(&tl, 0, sizeof tl);
    st = ep_engine_run_rank(ops, layer, plan, rank, &tl);
  }
  if (st != EP_OK) {
    /* Peers may be blocked in a collective this rank will never join. */
    ep_log_error("rank %d: the layer failed (%s); aborting all ranks", rank, ep_status_str(st));
    MPI_Abort(MPI_COMM_WORLD, EP_EXIT_INTERNAL);
    goto fail;
  }

  /* The output, on the host. */
  out = malloc(sizeof(float) * (size_t)plan->tokens_per_rank * (size_t)shape.hidden);
  if ((st = agree(out ? ops->output(layer, out) : EP_ERR_NOMEM)) != EP_OK)
    goto fail;

  /* Reference check on sampled tokens. EPSIM_REAL_TEST_CORRUPT=1 (a test hook,
   * tests/test_real.sh) corrupts rank 0's first output value first, to prove a
   * wrong output fails the check. */
  const char *corrupt = getenv("EPSIM_REAL_TEST_CORRUPT");
  if (corrupt && !strcmp(corrupt, "1") && rank == 0 && plan->tokens_per_rank > 0)
    out[0] += 1.0f;
  const double err = check_output(&rk, out, o->check_tokens);
  const double fail_flag = err < 0 ? 1 : 0;
  double any_fail = fail_flag;
  EP_MPI_TRY(rank,
             MPI_Allreduce(&err, &state->worst_rel_error, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  EP_MPI_TRY(rank, MPI_Allreduce(&fail_flag, &any_fail, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  state->wire = wire;
  state->n_checked =
      o->check_tokens < plan->tokens_per_rank ? o->check_tokens : plan->tokens_per_rank;

  if (o->dump_path && (st = agree(dump_output(run->stage, o->dump_path, out, plan->tokens_per_rank,
                                              shape.hidden, rank, n_ranks))) != EP_OK)
    goto fail;
  /* Every rank's timeline to rank 0, which reports. */
  EP_MPI_TRY(rank, MPI_Gather(&tl, 2 * EP_PHASE_COUNT, MPI_DOUBLE, run->timelines,
                              2 * EP_PHASE_COUNT, MPI_DOUBLE, 0, MPI_COMM_WORLD));

  /* A failed check is an internal error: nothing is written. */
  const double tol = EP_REAL_TOL;
  if (any_fail > 0) {
    if (rank == 0)
      ep_log_error("output check could not run");
    st = EP_ERR_BACKEND;
  } else if (state->n_checked > 0 && !(state->worst_rel_error <= tol)) {
    if (rank == 0)
      ep_log_error("output check FAILED: %lld sampled tokens per rank, worst relative L2 error "
                   "%.3e exceeds the bound %.1e (%s dispatch)",
                   (long long)state->n_checked, state->worst_rel_error, tol, ep_dtype_name(wire));
    st = EP_ERR_BACKEND;
  } else {
    /* Cut to the driver's line if need be (device names are far shorter). */
    snprintf(run->backend, sizeof run->backend, "%.*s", (int)sizeof run->backend - 1,
             site.description);
    run->also_wrote = o->dump_path;
    run->reporting = rank == 0;
  }
fail:
  free(out);
  ep_layer_free(layer);
  ep_real_rank_free(&rk);
  return st;
}

void ep_real_print_head(void *user, const ep_driver_run *run, FILE *out)
{
  const ep_real_run_state *state = user;
  fprintf(out, "epsim-real %s: %s, backend %s, %d ranks, dispatch %s rows\n", EP_VERSION,
          run->cfg->opts->scenario_path, run->backend, (int)run->plan->n_ranks,
          ep_dtype_name(state->wire));
  if (state->n_checked > 0)
    fprintf(out,
            "output check: %lld sampled tokens per rank against the double reference, worst "
            "relative L2 error %.3e (bound %.1e for %s dispatch)\n",
            (long long)state->n_checked, state->worst_rel_error, EP_REAL_TOL,
            ep_dtype_name(state->wire));
  else
    fputs("output check: skipped (--check-tokens 0)\n", out);
  fputc('\n', out);
}
