/* epsim-real: run one expert-parallel MoE layer for real, one MPI rank per EP
 * rank, with the simulator's engine, dispatch plan and result schema.
 *   mpirun -np EP epsim-real SCENARIO [-o DIR] [--backend auto|cpu|nccl|cuda-ipc] [--set k=v ...]
 * Exit codes: 0 ok, 1 bad input (usage, scenario, EP != ranks, does not fit),
 * 2 internal error (including a layer output that fails the reference check). */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_config.h"
#include "ep_layer.h"
#include "ep_output.h"
#include "ep_plan.h"
#include "ep_real.h"
#include "ep_real_backends.h"
#include "ep_scenario.h"

enum { EXIT_OK = 0, EXIT_BAD_INPUT = 1, EXIT_INTERNAL = 2 };

/* Relative L2 error bound per sampled token, against the double reference
 * (which applies the same fp8 quantisation of the dispatched token when the wire
 * is fp8, so one bound serves both wires). The kernels round to bf16 (2^-9
 * relative each) the gate and up products, the activation, each expert output,
 * the combined sum, and with fp8 the dequantised token: seven roundings in the
 * worst case, 7 * 2^-9 = 1.4e-2, hence 2e-2. Measured on tests/scenarios/real-*.yaml
 * over every token: at most 7.5e-3. A wrong expert or token gives errors of order 1. */
#define EP_REAL_TOL 2e-2

typedef struct options {
  const char *scenario_path;
  const char *out_dir;
  const char *backend; /* "auto" or a name of ep_real_backends.h */
  const char **sets;
  int n_sets;
  const char *dump_path;
  int64_t check_tokens;
  double max_mem_bytes; /* 0: default */
  int32_t warmup;       /* untimed layers before the timed one */
} options;

static void usage(FILE *f)
{
  fputs("usage: mpirun -np EP epsim-real SCENARIO [options]\n"
        "       epsim-real --help | --version\n"
        "\n"
        "Runs one MoE layer (dispatch all-to-all, expert SwiGLU GEMM, combine all-to-all)\n"
        "for real, one MPI rank per EP rank, with the simulator's routing, placement and\n"
        "dispatch plan; checks the output against a CPU reference on sampled tokens;\n"
        "writes DIR/results.csv, DIR/trace.json and DIR/phases.png in the simulator's\n"
        "schema. The scenario's parallel.ep must equal the number of ranks.\n"
        "\n"
        "  -o DIR               output directory (default epsim-real-out)\n",
        f);
  fputs("  --backend B          auto: the first GPU backend built with a visible GPU, else cpu;\n"
        "                       or one of (* not built into this epsim-real):\n",
        f);
  const ep_real_backend *be = NULL;
  for (int32_t i = 0; (be = ep_real_backend_at(i)); i++)
    fprintf(f, "                       %-9s%s%s\n", be->name, ep_real_backend_built(be) ? "" : "* ",
            be->description);
  fputs(
      "  --set key=value      override a scenario key (repeatable), e.g. parallel.ep=1\n"
      "  --dump-output FILE   write the layer output: float32, native byte order,\n"
      "                       [ep * tokens_per_gpu * hidden], global token order (rank-major)\n"
      "  --check-tokens N     tokens per rank checked against the reference (default 8, 0: none)\n"
      "  --warmup N           untimed layers before the timed one (default 1): the first\n"
      "                       pays for NCCL/MPI connection setup and GPU workspaces\n"
      "  --max-mem BYTES      cpu backend: memory limit per rank, suffix K/M/G/T allowed\n"
      "                       (default: physical RAM / ranks on the node)\n"
      "\n"
      "Exit: 0 ok, 1 bad input, 2 internal error (or a failed output check).\n",
      f);
}

/* "12", "64M", "1.5G" -> bytes (binary suffixes); -1 when malformed. */
static double parse_bytes(const char *s)
{
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
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
  if (*end == 'i' || *end == 'B')
    end += *end == 'i' ? 1 : 0;
  if (*end == 'B')
    end++;
  return *end ? -1 : v * mult;
}

/* Parses argv into *o; returns -1 on bad usage (message printed when loud), 1 for
 * --help/--version (printed when loud), 0 to run. */
static int parse_args(int argc, char **argv, options *o, int loud)
{
  FILE *err = loud ? stderr : NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      if (loud)
        usage(stdout);
      return 1;
    }
    if (!strcmp(a, "--version")) {
      if (loud) {
        printf("epsim-real %s (git %s), backends:", EP_VERSION, EP_GIT_SHA);
        const ep_real_backend *be = NULL;
        for (int32_t b = 0; (be = ep_real_backend_at(b)); b++)
          if (ep_real_backend_built(be))
            printf(" %s", be->name);
        putchar('\n');
      }
      return 1;
    }
    const int takes_value = !strcmp(a, "-o") || !strcmp(a, "--set") || !strcmp(a, "--backend") ||
                            !strcmp(a, "--dump-output") || !strcmp(a, "--check-tokens") ||
                            !strcmp(a, "--max-mem") || !strcmp(a, "--warmup");
    if (takes_value) {
      if (i + 1 >= argc) {
        if (err)
          fprintf(err, "epsim-real: %s needs a value\n", a);
        return -1;
      }
      const char *v = argv[++i];
      if (!strcmp(a, "-o")) {
        o->out_dir = v;
      } else if (!strcmp(a, "--set")) {
        o->sets[o->n_sets++] = v;
      } else if (!strcmp(a, "--backend")) {
        if (strcmp(v, "auto") && !ep_real_backend_find(v)) {
          if (err) {
            fprintf(err, "epsim-real: unknown backend '%s' (valid: auto", v);
            const ep_real_backend *be = NULL;
            for (int32_t b = 0; (be = ep_real_backend_at(b)); b++)
              fprintf(err, ", %s", be->name);
            fputs(")\n", err);
          }
          return -1;
        }
        o->backend = v;
      } else if (!strcmp(a, "--dump-output")) {
        o->dump_path = v;
      } else if (!strcmp(a, "--check-tokens") || !strcmp(a, "--warmup")) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || !*v || *end || n < 0 || n > 1000000) {
          if (err)
            fprintf(err, "epsim-real: %s wants an integer in 0..1000000, got '%s'\n", a, v);
          return -1;
        }
        if (!strcmp(a, "--warmup"))
          o->warmup = (int32_t)n;
        else
          o->check_tokens = n;
      } else if (!strcmp(a, "--max-mem")) {
        o->max_mem_bytes = parse_bytes(v);
        if (o->max_mem_bytes <= 0) {
          if (err)
            fprintf(err, "epsim-real: --max-mem wants bytes like 8G or 512M, got '%s'\n", v);
          return -1;
        }
      }
    } else if (a[0] == '-' && a[1] != '\0') {
      if (err)
        fprintf(err, "epsim-real: unknown option '%s' (see --help)\n", a);
      return -1;
    } else if (!o->scenario_path) {
      o->scenario_path = a;
    } else {
      if (err)
        fprintf(err, "epsim-real: one scenario at a time ('%s' and '%s')\n", o->scenario_path, a);
      return -1;
    }
  }
  if (!o->scenario_path) {
    if (err) {
      fputs("epsim-real: needs a SCENARIO file\n", err);
      usage(err);
    }
    return -1;
  }
  return 0;
}

/* All ranks agree on the worst (largest) exit code. */
static int agree_rc(int rc)
{
  int worst = rc;
  if (MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
    return EXIT_INTERNAL;
  return worst;
}

/* Checks every rank's memory estimate against its limit before anything is
 * allocated; rank 0 names the first rank that does not fit. */
static int check_memory(const ep_plan *plan, const ep_real_shape *shape, ep_dtype wire, int rank,
                        int on_gpu, double limit_bytes, const char *limit_what)
{
  const ep_real_mem m = ep_real_mem_estimate(plan, shape, rank, wire, on_gpu);
  const int fits = (double)m.total_bytes <= limit_bytes;
  int all_fit = fits;
  if (MPI_Allreduce(&fits, &all_fit, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS)
    return EXIT_INTERNAL;
  if (all_fit)
    return EXIT_OK;
  /* Lowest failing rank reports. */
  int first = fits ? plan->n_ranks : rank, lowest = 0;
  if (MPI_Allreduce(&first, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS)
    return EXIT_INTERNAL;
  if (rank == lowest) {
    char need[32], w[32], buf[32], lim[32];
    ep_log_error("experts do not fit on rank %d: it needs %s (%d experts' bf16 weights %s, "
                 "buffers %s) but the limit is %s (%s)",
                 rank, ep_real_format_bytes((double)m.total_bytes, need, sizeof need),
                 (int)m.local_experts, ep_real_format_bytes((double)m.weights_bytes, w, sizeof w),
                 ep_real_format_bytes((double)m.buffers_bytes, buf, sizeof buf),
                 ep_real_format_bytes(limit_bytes, lim, sizeof lim), limit_what);
  }
  return EXIT_BAD_INPUT;
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

/* Rank 0 writes every rank's output in rank order; the others send theirs. */
static int dump_output(const char *path, const float *out, int64_t tpr, int32_t hidden, int rank,
                       int n_ranks)
{
  MPI_Datatype row;
  if (MPI_Type_contiguous(hidden, MPI_FLOAT, &row) != MPI_SUCCESS ||
      MPI_Type_commit(&row) != MPI_SUCCESS) {
    ep_log_error("rank %d: MPI_Type_contiguous/MPI_Type_commit for the output dump failed", rank);
    return EXIT_INTERNAL;
  }
  int rc = EXIT_OK;
  if (tpr > 2147483647) {
    ep_log_error("rank %d: %lld tokens per rank exceed MPI's int counts", rank, (long long)tpr);
    rc = EXIT_INTERNAL;
  } else if (rank != 0) {
    if (MPI_Send(out, (int)tpr, row, 0, 7, MPI_COMM_WORLD) != MPI_SUCCESS) {
      ep_log_error("rank %d: MPI_Send of the output dump failed", rank);
      rc = EXIT_INTERNAL;
    }
  } else {
    FILE *f = fopen(path, "wb");
    float *buf = malloc(sizeof(float) * (size_t)tpr * (size_t)hidden);
    if (!f || !buf) {
      ep_log_error("cannot write %s: %s", path, !f ? strerror(errno) : "out of memory");
      rc = EXIT_BAD_INPUT;
    }
    for (int r = 0; r < n_ranks; r++) {
      const float *src = out;
      if (r > 0) {
        if (MPI_Recv(buf ? buf : (float *)out, buf ? (int)tpr : 0, row, r, 7, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS) {
          ep_log_error("rank 0: MPI_Recv of rank %d's output failed", r);
          rc = EXIT_INTERNAL;
          continue;
        }
        src = buf;
      }
      if (rc == EXIT_OK &&
          fwrite(src, sizeof(float) * (size_t)hidden, (size_t)tpr, f) != (size_t)tpr) {
        ep_log_error("writing %s failed: %s", path, strerror(errno));
        rc = EXIT_INTERNAL;
      }
    }
    if (f && fclose(f) != 0 && rc == EXIT_OK) {
      ep_log_error("writing %s failed: %s", path, strerror(errno));
      rc = EXIT_INTERNAL;
    }
    free(buf);
  }
  if (MPI_Type_free(&row) != MPI_SUCCESS && rc == EXIT_OK) {
    ep_log_error("rank %d: MPI_Type_free failed", rank);
    rc = EXIT_INTERNAL;
  }
  return rc;
}

/* What the timed layer gives the report. */
typedef struct layer_result {
  const char *backend; /* results.csv's "# backend:" line */
  ep_dtype wire;
  double worst;     /* worst relative error over all ranks' sampled tokens */
  int check_failed; /* some rank could not run its check */
  int64_t n_checked;
} layer_result;

/* Rank 0's summary and output files from every rank's timeline (all). */
static int report_layer(const options *o, const ep_scenario *s, const ep_plan *plan,
                        const ep_rank_timeline *all, const layer_result *res, int n_ranks, int argc,
                        char **argv)
{
  int rc = EXIT_OK;
  const double tol = EP_REAL_TOL;
  printf("epsim-real %s: %s, backend %s, %d ranks, dispatch %s rows\n", EP_VERSION,
         o->scenario_path, res->backend, n_ranks, ep_dtype_name(res->wire));
  if (res->check_failed) {
    ep_log_error("output check could not run");
    rc = EXIT_INTERNAL;
  } else if (res->n_checked > 0 && !(res->worst <= tol)) {
    ep_log_error("output check FAILED: %lld sampled tokens per rank, worst relative L2 error "
                 "%.3e exceeds the bound %.1e (%s dispatch)",
                 (long long)res->n_checked, res->worst, tol, ep_dtype_name(res->wire));
    rc = EXIT_INTERNAL;
  } else if (res->n_checked > 0) {
    printf("output check: %lld sampled tokens per rank against the double reference, worst "
           "relative L2 error %.3e (bound %.1e for %s dispatch)\n",
           (long long)res->n_checked, res->worst, tol, ep_dtype_name(res->wire));
  } else {
    printf("output check: skipped (--check-tokens 0)\n");
  }
  if (rc == EXIT_OK) {
    ep_summary summary;
    ep_status st;
    if ((st = ep_summary_compute(s, plan, all, &summary)) != EP_OK) {
      ep_log_error("summary failed: %s", ep_status_str(st));
      rc = EXIT_INTERNAL;
    } else {
      putchar('\n');
      ep_summary_print(s, plan, &summary, stdout);
      const ep_provenance prov = {.tool = "epsim-real",
                                  .backend = res->backend,
                                  .scenario_path = o->scenario_path,
                                  .argc = argc,
                                  .argv = argv};
      if ((st = ep_output_write(o->out_dir, &prov, s, plan, all)) != EP_OK) {
        ep_log_error("writing outputs to %s failed: %s", o->out_dir, ep_status_str(st));
        rc = EXIT_INTERNAL;
      } else {
        printf("\nwrote %s/results.csv, %s/trace.json, %s/phases.png%s%s\n", o->out_dir, o->out_dir,
               o->out_dir, o->dump_path ? ", " : "", o->dump_path ? o->dump_path : "");
      }
    }
  }
  fflush(stdout);
  return rc;
}

static int run_layer(const options *o, const ep_scenario *s, const ep_real_backend *be,
                     const ep_real_ranks *where, int argc, char **argv)
{
  int rc = EXIT_INTERNAL;
  const int rank = where->rank, n_ranks = where->n_ranks;
  ep_router *router = NULL;
  ep_plan plan = {0};
  ep_real_rank rk = {0};
  ep_layer *layer = NULL;
  float *out = NULL;
  ep_rank_timeline tl, *all = NULL;
  const ep_dtype wire = s->model.dispatch_dtype;
  const ep_real_shape shape = {s->model.n_experts, s->model.n_shared_experts, s->model.top_k,
                               s->model.hidden,    s->model.moe_intermediate, s->routing.seed};

  if ((rc = agree_rc(ep_scenario_build_plan(s, &router, &plan) == EP_OK ? EXIT_OK
                                                                        : EXIT_INTERNAL)) !=
      EXIT_OK)
    goto done;

  /* Where the backend runs, and the fit check before any buffer exists. */
  ep_real_site site;
  ep_status st = ep_real_backend_setup(be, where, o->max_mem_bytes, &site);
  if ((rc = agree_rc(st == EP_OK            ? EXIT_OK
                     : st == EP_ERR_INVALID ? EXIT_BAD_INPUT
                                            : EXIT_INTERNAL)) != EXIT_OK)
    goto done;
  if ((rc = check_memory(&plan, &shape, wire, rank, be->compute->on_gpu, site.mem_limit_bytes,
                         site.mem_limit_what)) != EXIT_OK)
    goto done;
  /* The output directory exists once the input is known to be good. */
  rc = EXIT_OK;
  if (rank == 0 && ep_make_dirs(o->out_dir) != 0) {
    ep_log_error("cannot create output directory %s: %s", o->out_dir, strerror(errno));
    rc = EXIT_BAD_INPUT;
  }
  if ((rc = agree_rc(rc)) != EXIT_OK)
    goto done;

  st = ep_real_rank_init(&plan, router, &shape, rank, wire, &rk);
  if ((rc = agree_rc(st == EP_OK            ? EXIT_OK
                     : st == EP_ERR_INVALID ? EXIT_BAD_INPUT
                                            : EXIT_INTERNAL)) != EXIT_OK)
    goto done;
  const ep_layer_cfg lcfg = {be->name, be->transport, be->compute, MPI_COMM_WORLD, site.device};
  if ((st = ep_layer_init(&layer, &rk, &lcfg)) != EP_OK) {
    /* Peers may be waiting in a collective of the setup (no timeout). */
    ep_log_error("rank %d: %s backend setup failed (%s); aborting all ranks", rank, be->name,
                 ep_status_str(st));
    MPI_Abort(MPI_COMM_WORLD, EXIT_INTERNAL);
    rc = EXIT_INTERNAL;
    goto done;
  }
  const ep_backend_ops *ops = ep_layer_ops(layer);

  /* The layer: the engine's per-rank program, from a common barrier; warm-up
   * layers first (same inputs, same output), then the timed one. */
  for (int32_t it = 0; it <= o->warmup && st == EP_OK; it++) {
    memset(&tl, 0, sizeof tl);
    st = ep_engine_run_rank(ops, layer, &plan, rank, &tl);
  }
  if (st != EP_OK) {
    /* Peers may be blocked in a collective this rank will never join. */
    ep_log_error("rank %d: the layer failed (%s); aborting all ranks", rank, ep_status_str(st));
    MPI_Abort(MPI_COMM_WORLD, EXIT_INTERNAL);
    rc = EXIT_INTERNAL;
    goto done;
  }

  /* The output, on the host. */
  out = malloc(sizeof(float) * (size_t)plan.tokens_per_rank * (size_t)shape.hidden);
  st = out ? ops->output(layer, out) : EP_ERR_NOMEM;
  if ((rc = agree_rc(st == EP_OK ? EXIT_OK : EXIT_INTERNAL)) != EXIT_OK)
    goto done;

  /* Reference check on sampled tokens. EPSIM_REAL_TEST_CORRUPT=1 (a test hook,
   * tests/test_real.sh) corrupts rank 0's first output value first, to prove a
   * wrong output fails the check. */
  const char *corrupt = getenv("EPSIM_REAL_TEST_CORRUPT");
  if (corrupt && !strcmp(corrupt, "1") && rank == 0 && plan.tokens_per_rank > 0)
    out[0] += 1.0f;
  layer_result res = {site.description, wire, 0, 0, 0};
  double err = check_output(&rk, out, o->check_tokens);
  if (MPI_Allreduce(&err, &res.worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
    ep_log_error("rank %d: MPI_Allreduce of the output check failed", rank);
    rc = EXIT_INTERNAL;
    goto done;
  }
  double fail_flag = err < 0 ? 1 : 0, any_fail = fail_flag;
  if (MPI_Allreduce(&fail_flag, &any_fail, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
    ep_log_error("rank %d: MPI_Allreduce of the output check failed", rank);
    rc = EXIT_INTERNAL;
    goto done;
  }
  res.check_failed = any_fail > 0;
  res.n_checked = o->check_tokens < plan.tokens_per_rank ? o->check_tokens : plan.tokens_per_rank;

  if (o->dump_path) {
    if ((rc = agree_rc(dump_output(o->dump_path, out, plan.tokens_per_rank, shape.hidden, rank,
                                   n_ranks))) != EXIT_OK)
      goto done;
  }

  /* Timelines to rank 0, then the report. */
  if (rank == 0) {
    all = calloc((size_t)n_ranks, sizeof *all);
    if (!all)
      ep_log_error("rank 0: out of memory for %d timelines", n_ranks);
  }
  if ((rc = agree_rc(rank == 0 && !all ? EXIT_INTERNAL : EXIT_OK)) != EXIT_OK)
    goto done;
  if (MPI_Gather(&tl, 2 * EP_PHASE_COUNT, MPI_DOUBLE, all, 2 * EP_PHASE_COUNT, MPI_DOUBLE, 0,
                 MPI_COMM_WORLD) != MPI_SUCCESS) {
    ep_log_error("rank %d: MPI_Gather of the timelines failed", rank);
    rc = EXIT_INTERNAL;
    goto done;
  }
  rc = rank == 0 ? report_layer(o, s, &plan, all, &res, n_ranks, argc, argv) : EXIT_OK;
  rc = agree_rc(rc);
done:
  free(all);
  free(out);
  ep_layer_free(layer);
  ep_real_rank_free(&rk);
  ep_plan_free(&plan);
  ep_router_free(router);
  return rc;
}

int main(int argc, char **argv)
{
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    fputs("epsim-real: error: MPI_Init failed\n", stderr);
    return EXIT_INTERNAL;
  }
  /* Errors come back as return codes, so each call can name itself and the rank. */
  int rank = 0, n_ranks = 1, n_local = 1, local_rank = 0;
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN) != MPI_SUCCESS ||
      MPI_Comm_rank(MPI_COMM_WORLD, &rank) != MPI_SUCCESS ||
      MPI_Comm_size(MPI_COMM_WORLD, &n_ranks) != MPI_SUCCESS ||
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) !=
          MPI_SUCCESS ||
      MPI_Comm_size(node, &n_local) != MPI_SUCCESS ||
      MPI_Comm_rank(node, &local_rank) != MPI_SUCCESS || MPI_Comm_free(&node) != MPI_SUCCESS) {
    fprintf(stderr,
            "epsim-real: error: rank %d: MPI setup (MPI_Comm_set_errhandler, "
            "MPI_Comm_rank/size, MPI_Comm_split_type) failed\n",
            rank);
    MPI_Abort(MPI_COMM_WORLD, EXIT_INTERNAL);
    return EXIT_INTERNAL;
  }

  int rc = EXIT_BAD_INPUT;
  options o = {.out_dir = "epsim-real-out", .backend = "auto", .check_tokens = 8, .warmup = 1};
  o.sets = calloc((size_t)argc + 1, sizeof *o.sets);
  if (!o.sets) {
    fputs("epsim-real: error: out of memory\n", stderr);
    MPI_Abort(MPI_COMM_WORLD, EXIT_INTERNAL);
    return EXIT_INTERNAL;
  }
  const int loud = rank == 0;
  int pa = parse_args(argc, argv, &o, loud);
  if (pa != 0) {
    rc = pa > 0 ? EXIT_OK : EXIT_BAD_INPUT;
    goto done;
  }

  /* Every rank loads the scenario; only rank 0 reports problems. */
  ep_scenario scenario;
  FILE *sink = loud ? stderr : fopen("/dev/null", "w");
  ep_status st =
      ep_scenario_load(o.scenario_path, o.sets, o.n_sets, &scenario, sink ? sink : stderr);
  if (sink && sink != stderr)
    fclose(sink);
  if (st != EP_OK) {
    rc = agree_rc(st == EP_ERR_PARSE || st == EP_ERR_IO ? EXIT_BAD_INPUT : EXIT_INTERNAL);
    goto done;
  }
  if (scenario.model.combine_dtype != EP_DTYPE_BF16) {
    if (loud)
      ep_log_error("%s: the real backend combines in bf16; model.combine_dtype %s is not "
                   "supported (set model.combine_dtype=bf16)",
                   o.scenario_path, ep_dtype_name(scenario.model.combine_dtype));
    rc = EXIT_BAD_INPUT;
    goto done;
  }
  const ep_real_backend *be = NULL;
  if (ep_real_backend_pick(o.backend, loud, &be) != EP_OK) {
    rc = EXIT_BAD_INPUT;
    goto done;
  }

  if (scenario.ep != n_ranks) {
    if (loud)
      ep_log_error("scenario wants ep=%d but mpirun started %d rank%s (run mpirun -np %d, or "
                   "--set parallel.ep=%d)",
                   (int)scenario.ep, n_ranks, n_ranks == 1 ? "" : "s", (int)scenario.ep, n_ranks);
    rc = EXIT_BAD_INPUT;
    goto done;
  }
  const ep_real_ranks where = {rank, n_ranks, local_rank, n_local};
  rc = run_layer(&o, &scenario, be, &where, argc, argv);
done:
  free(o.sets);
  fflush(stdout);
  if (MPI_Finalize() != MPI_SUCCESS && rc == EXIT_OK) {
    fprintf(stderr, "epsim-real: error: rank %d: MPI_Finalize failed\n", rank);
    rc = EXIT_INTERNAL;
  }
  return rc;
}
