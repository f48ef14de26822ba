/* epsim-real: run one expert-parallel MoE layer for real, one MPI rank per EP
 * rank, with the simulator's engine, dispatch plan and result schema.
 *   mpirun -np EP epsim-real SCENARIO [-o DIR] [--backend auto|cpu|nccl|cuda-ipc] [--set k=v ...]
 *   epsim-real SCENARIO --sweep [-o DIR] [--backend ...]   (one rank: kernel timings)
 * Exit codes: 0 ok, 1 bad input (usage, scenario, EP != ranks, does not fit),
 * 2 internal error (including a layer output that fails the reference check). */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ep_config.h"
#include "ep_output.h"
#include "ep_plan.h"
#include "ep_real.h"
#include "ep_real_cpu.h"
#include "ep_real_sweep.h"
#include "ep_scenario.h"
#if EP_REAL_HAVE_NCCL
#include "ep_moe_cuda.h"
#include "ep_real_nccl.h"
#endif

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
  const char *backend; /* "auto", "cpu", "nccl" */
  const char **sets;
  int n_sets;
  int sweep;
  const char *dump_path;
  int64_t check_tokens;
  double max_mem_bytes; /* 0: default */
  const char *sweep_tokens;
  const char *sweep_experts;
  int32_t repeats;
  int32_t warmup; /* untimed layers before the timed one */
} options;

static void usage(FILE *f)
{
  fputs(
      "usage: mpirun -np EP epsim-real SCENARIO [options]\n"
      "       epsim-real SCENARIO --sweep [options]\n"
      "       epsim-real --help | --version\n"
      "\n"
      "Runs one MoE layer (dispatch all-to-all, expert SwiGLU GEMM, combine all-to-all)\n"
      "for real, one MPI rank per EP rank, with the simulator's routing, placement and\n"
      "dispatch plan; checks the output against a CPU reference on sampled tokens;\n"
      "writes DIR/results.csv, DIR/trace.json and DIR/phases.png in the simulator's\n"
      "schema. The scenario's parallel.ep must equal the number of ranks.\n"
      "\n"
      "  -o DIR               output directory (default epsim-real-out)\n"
      "  --backend B          auto (nccl if built and a GPU is present, else cpu), cpu, nccl,\n"
      "                       cuda-ipc (nccl's kernels, rows moved by CUDA IPC copies: ranks\n"
      "                       on one node may share a GPU; for testing, not for timings)\n"
      "  --set key=value      override a scenario key (repeatable), e.g. parallel.ep=1\n"
      "  --dump-output FILE   write the layer output: float32, native byte order,\n"
      "                       [ep * tokens_per_gpu * hidden], global token order (rank-major)\n"
      "  --check-tokens N     tokens per rank checked against the reference (default 8, 0: none)\n"
      "  --warmup N           untimed layers before the timed one (default 1): the first\n"
      "                       pays for NCCL/MPI connection setup and GPU workspaces\n"
      "  --max-mem BYTES      cpu backend: memory limit per rank, suffix K/M/G/T allowed\n"
      "                       (default: physical RAM / ranks on the node)\n"
      "  --sweep              time grouped GEMM, permute, combine and router over a grid of\n"
      "                       shapes (hidden, intermediate, experts, top-k from the scenario)\n"
      "                       and write DIR/sweep.csv; one rank\n"
      "  --sweep-tokens LIST  tokens per expert, comma-separated (default 8,16,...,2048 on\n"
      "                       nccl, 8,16,32,64 on cpu)\n"
      "  --sweep-experts LIST local experts, comma-separated (default n_experts / ep)\n"
      "  --repeats N          timed repeats per sweep point (default 20 nccl, 3 cpu)\n"
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
      if (loud)
        printf("epsim-real %s (git %s), backends: cpu%s\n", EP_VERSION, EP_GIT_SHA,
               EP_REAL_HAVE_NCCL ? " nccl cuda-ipc" : "");
      return 1;
    }
    if (!strcmp(a, "--sweep")) {
      o->sweep = 1;
      continue;
    }
    const int takes_value = !strcmp(a, "-o") || !strcmp(a, "--set") || !strcmp(a, "--backend") ||
                            !strcmp(a, "--dump-output") || !strcmp(a, "--check-tokens") ||
                            !strcmp(a, "--max-mem") || !strcmp(a, "--sweep-tokens") ||
                            !strcmp(a, "--sweep-experts") || !strcmp(a, "--repeats") ||
                            !strcmp(a, "--warmup");
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
        if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "nccl") && strcmp(v, "cuda-ipc")) {
          if (err)
            fprintf(err, "epsim-real: unknown backend '%s' (valid: auto, cpu, nccl, cuda-ipc)\n",
                    v);
          return -1;
        }
        o->backend = v;
      } else if (!strcmp(a, "--dump-output")) {
        o->dump_path = v;
      } else if (!strcmp(a, "--check-tokens") || !strcmp(a, "--repeats") ||
                 !strcmp(a, "--warmup")) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        const long long lo = !strcmp(a, "--repeats") ? 1 : 0;
        if (errno || !*v || *end || n < lo || n > 1000000) {
          if (err)
            fprintf(err, "epsim-real: %s wants an integer in %lld..1000000, got '%s'\n", a, lo, v);
          return -1;
        }
        if (!strcmp(a, "--repeats"))
          o->repeats = (int32_t)n;
        else if (!strcmp(a, "--warmup"))
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
      } else if (!strcmp(a, "--sweep-tokens")) {
        o->sweep_tokens = v;
      } else {
        o->sweep_experts = v;
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

static double physical_ram_bytes(void)
{
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
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

static int run_layer(const options *o, const ep_scenario *s, int rank, int n_ranks, int local_rank,
                     int n_local, int use_nccl, int argc, char **argv)
{
  int rc = EXIT_INTERNAL;
  ep_router *router = NULL;
  ep_plan plan = {0};
  ep_real_rank rk = {0};
  ep_cpu_backend *cpu = NULL;
  void *ctx = NULL;
  const ep_backend_ops *ops = NULL;
  float *out_host = NULL;
  ep_rank_timeline tl, *all = NULL;
  (void)local_rank; /* used by the NCCL backend only */
#if EP_REAL_HAVE_NCCL
  ep_nccl_backend *nccl = NULL;
  int32_t device = -1;
#endif
  const ep_dtype wire = s->model.dispatch_dtype;
  const ep_real_shape shape = {s->model.n_experts, s->model.n_shared_experts, s->model.top_k,
                               s->model.hidden,    s->model.moe_intermediate, s->routing.seed};

  if ((rc = agree_rc(ep_scenario_build_plan(s, &router, &plan) == EP_OK ? EXIT_OK
                                                                        : EXIT_INTERNAL)) !=
      EXIT_OK)
    goto done;

  /* Fit check before any buffer exists. */
  char limit_what[256], backend_desc[320];
  const int ipc = !strcmp(o->backend, "cuda-ipc"); /* the GPU backend without NCCL */
  const char *gpu_backend = ipc ? "cuda-ipc" : "nccl";
  snprintf(backend_desc, sizeof backend_desc, "%s", use_nccl ? gpu_backend : "cpu");
  double limit = 0;
  if (!use_nccl) {
    if (o->max_mem_bytes > 0) {
      limit = o->max_mem_bytes;
      snprintf(limit_what, sizeof limit_what, "--max-mem");
    } else {
      char ram[32];
      limit = physical_ram_bytes() / (n_local > 0 ? n_local : 1);
      snprintf(limit_what, sizeof limit_what,
               "cpu backend: physical RAM %s / %d ranks on this node; set --max-mem",
               ep_real_format_bytes(physical_ram_bytes(), ram, sizeof ram), n_local);
    }
  }
#if EP_REAL_HAVE_NCCL
  else {
    int64_t free_b = 0, total_b = 0;
    char name[128], versions[128], fb[32], tb[32];
    const int32_t n_dev = ep_moe_cuda_device_count();
    int qrc = EXIT_OK;
    const int per_gpu = n_dev > 0 ? (n_local + n_dev - 1) / n_dev : 1; /* ranks sharing a GPU */
    if (n_local > n_dev && !ipc) {
      /* NCCL refuses two ranks of one communicator on the same GPU. */
      if (local_rank == 0)
        ep_log_error("--backend nccl: %d ranks on this node but %d GPU%s; NCCL needs one GPU per "
                     "rank (use fewer ranks per node, --backend cuda-ipc, or --backend cpu)",
                     n_local, (int)n_dev, n_dev == 1 ? "" : "s");
      qrc = EXIT_BAD_INPUT;
    } else if (ipc && n_local != n_ranks) {
      /* CUDA IPC maps memory of processes on the same machine only. */
      if (rank == 0)
        ep_log_error("--backend cuda-ipc: all ranks must run on one node (%d of %d ranks share "
                     "rank 0's); use --backend nccl across nodes",
                     n_local, n_ranks);
      qrc = EXIT_BAD_INPUT;
    } else if (ep_nccl_device_query(rank, local_rank, &device, &free_b, &total_b, name, sizeof name,
                                    versions, sizeof versions) != EP_OK) {
      qrc = EXIT_INTERNAL;
    }
    if ((rc = agree_rc(qrc)) != EXIT_OK)
      goto done;
    snprintf(backend_desc, sizeof backend_desc, "%s (GPU %d %s, %s)", gpu_backend, (int)device,
             name, versions);
    /* Leave room for the CUDA context's and NCCL's own buffers, per rank on the GPU. */
    const double reserve = 1.5 * 1024 * 1024 * 1024;
    limit = (double)free_b / per_gpu - reserve;
    snprintf(limit_what, sizeof limit_what,
             "GPU %d %s: %s free of %s, shared by %d rank%s, less 1.5 GiB each for CUDA/NCCL",
             (int)device, name, ep_real_format_bytes((double)free_b, fb, sizeof fb),
             ep_real_format_bytes((double)total_b, tb, sizeof tb), per_gpu,
             per_gpu == 1 ? "" : "s");
  }
#endif
  if ((rc = check_memory(&plan, &shape, wire, rank, use_nccl, limit, limit_what)) != EXIT_OK)
    goto done;
  /* The output directory exists once the input is known to be good. */
  rc = EXIT_OK;
  if (rank == 0 && ep_make_dirs(o->out_dir) != 0) {
    ep_log_error("cannot create output directory %s: %s", o->out_dir, strerror(errno));
    rc = EXIT_BAD_INPUT;
  }
  if ((rc = agree_rc(rc)) != EXIT_OK)
    goto done;

  ep_status st = ep_real_rank_init(&plan, router, &shape, rank, wire, &rk);
  if ((rc = agree_rc(st == EP_OK            ? EXIT_OK
                     : st == EP_ERR_INVALID ? EXIT_BAD_INPUT
                                            : EXIT_INTERNAL)) != EXIT_OK)
    goto done;
  if (!use_nccl) {
    st = ep_cpu_backend_init(&cpu, &rk, MPI_COMM_WORLD);
    ops = &ep_cpu_backend_ops;
    ctx = cpu;
  }
#if EP_REAL_HAVE_NCCL
  else {
    st = ep_nccl_backend_init(&nccl, &rk, MPI_COMM_WORLD, device, ipc);
    ops = &ep_nccl_backend_ops;
    ctx = nccl;
    if (st != EP_OK) {
      /* Peers may be waiting in ncclCommInitRank, which has no timeout. */
      ep_log_error("rank %d: %s backend setup failed (%s); aborting all ranks", rank, gpu_backend,
                   ep_status_str(st));
      MPI_Abort(MPI_COMM_WORLD, EXIT_INTERNAL);
    }
  }
#endif
  if ((rc = agree_rc(st == EP_OK ? EXIT_OK : EXIT_INTERNAL)) != EXIT_OK)
    goto done;

  /* The layer: the engine's per-rank program, from a common barrier; warm-up
   * layers first (same inputs, same output), then the timed one. */
  st = EP_OK;
  for (int32_t it = 0; it <= o->warmup && st == EP_OK; it++) {
    memset(&tl, 0, sizeof tl);
    st = use_nccl ? EP_ERR_UNSUPPORTED : ep_cpu_backend_start(cpu);
#if EP_REAL_HAVE_NCCL
    if (use_nccl)
      st = ep_nccl_backend_start(nccl);
#endif
    if (st == EP_OK)
      st = ep_engine_run_rank(ops, ctx, &plan, rank, &tl);
  }
  if (st != EP_OK) {
    /* Peers may be blocked in a collective this rank will never join. */
    ep_log_error("rank %d: the layer failed (%s); aborting all ranks", rank, ep_status_str(st));
    MPI_Abort(MPI_COMM_WORLD, EXIT_INTERNAL);
    rc = EXIT_INTERNAL;
    goto done;
  }

  /* The output, on the host. */
  float *out = NULL;
  if (!use_nccl) {
    out = ep_cpu_backend_output(cpu);
  }
#if EP_REAL_HAVE_NCCL
  else {
    out_host = malloc(sizeof(float) * (size_t)plan.tokens_per_rank * (size_t)shape.hidden);
    st = out_host ? ep_nccl_backend_output(nccl, out_host) : EP_ERR_NOMEM;
    if ((rc = agree_rc(st == EP_OK ? EXIT_OK : EXIT_INTERNAL)) != EXIT_OK)
      goto done;
    out = out_host;
  }
#endif

  /* Reference check on sampled tokens. EPSIM_REAL_TEST_CORRUPT=1 (a test hook,
   * tests/test_real.sh) corrupts rank 0's first output value first, to prove a
   * wrong output fails the check. */
  const char *corrupt = getenv("EPSIM_REAL_TEST_CORRUPT");
  if (corrupt && !strcmp(corrupt, "1") && rank == 0 && plan.tokens_per_rank > 0)
    out[0] += 1.0f;
  double err = check_output(&rk, out, o->check_tokens), worst = err;
  if (MPI_Allreduce(&err, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
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
  const double tol = EP_REAL_TOL;
  const int64_t n_checked =
      o->check_tokens < plan.tokens_per_rank ? o->check_tokens : plan.tokens_per_rank;

  if (o->dump_path) {
    if ((rc = agree_rc(dump_output(o->dump_path, out, plan.tokens_per_rank, shape.hidden, rank,
                                   n_ranks))) != EXIT_OK)
      goto done;
  }

  /* Timelines to rank 0, then the simulator's writer. */
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
  rc = EXIT_OK;
  if (rank == 0) {
    const char *backend = backend_desc; /* results.csv's "# backend:" line */
    printf("epsim-real %s: %s, backend %s, %d ranks, dispatch %s rows\n", EP_VERSION,
           o->scenario_path, backend, n_ranks, ep_dtype_name(wire));
    if (any_fail > 0) {
      ep_log_error("output check could not run");
      rc = EXIT_INTERNAL;
    } else if (n_checked > 0 && !(worst <= tol)) {
      ep_log_error("output check FAILED: %lld sampled tokens per rank, worst relative L2 error "
                   "%.3e exceeds the bound %.1e (%s dispatch)",
                   (long long)n_checked, worst, tol, ep_dtype_name(wire));
      rc = EXIT_INTERNAL;
    } else if (n_checked > 0) {
      printf("output check: %lld sampled tokens per rank against the double reference, worst "
             "relative L2 error %.3e (bound %.1e for %s dispatch)\n",
             (long long)n_checked, worst, tol, ep_dtype_name(wire));
    } else {
      printf("output check: skipped (--check-tokens 0)\n");
    }
    if (rc == EXIT_OK) {
      ep_summary summary;
      if ((st = ep_summary_compute(s, &plan, all, &summary)) != EP_OK) {
        ep_log_error("summary failed: %s", ep_status_str(st));
        rc = EXIT_INTERNAL;
      } else {
        putchar('\n');
        ep_summary_print(s, &plan, &summary, stdout);
        const ep_provenance prov = {.tool = "epsim-real",
                                    .backend = backend,
                                    .scenario_path = o->scenario_path,
                                    .argc = argc,
                                    .argv = argv};
        if ((st = ep_output_write(o->out_dir, &prov, s, &plan, all)) != EP_OK) {
          ep_log_error("writing outputs to %s failed: %s", o->out_dir, ep_status_str(st));
          rc = EXIT_INTERNAL;
        } else {
          printf("\nwrote %s/results.csv, %s/trace.json, %s/phases.png%s%s\n", o->out_dir,
                 o->out_dir, o->out_dir, o->dump_path ? ", " : "",
                 o->dump_path ? o->dump_path : "");
        }
      }
    }
    fflush(stdout);
  }
  rc = agree_rc(rc);
done:
  free(all);
  free(out_host);
  if (ops && ctx)
    ops->free(ctx);
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

  /* Backend choice: auto takes NCCL when it is built and a GPU is visible;
   * cuda-ipc is the same GPU backend with another transport. */
  const int gpu_asked = !strcmp(o.backend, "nccl") || !strcmp(o.backend, "cuda-ipc");
  int use_nccl = 0;
#if EP_REAL_HAVE_NCCL
  const int have_gpu = ep_moe_cuda_device_count() > 0;
  use_nccl = gpu_asked || (!strcmp(o.backend, "auto") && have_gpu);
  if (use_nccl && !have_gpu) {
    if (loud)
      ep_log_error("--backend %s: no CUDA device is visible on this machine (use --backend cpu)",
                   o.backend);
    rc = EXIT_BAD_INPUT;
    goto done;
  }
#else
  if (gpu_asked) {
    if (loud)
      ep_log_error("--backend %s: this epsim-real was built without CUDA+NCCL (EP_HAVE_CUDA=%d, "
                   "EP_HAVE_NCCL=%d); use --backend cpu",
                   o.backend, EP_HAVE_CUDA, EP_HAVE_NCCL);
    rc = EXIT_BAD_INPUT;
    goto done;
  }
#endif

  if (o.sweep) {
    rc = EXIT_OK;
    if (n_ranks != 1) {
      if (loud)
        ep_log_error("--sweep times kernels on one rank; mpirun started %d ranks", n_ranks);
      rc = EXIT_BAD_INPUT;
    } else if (ep_make_dirs(o.out_dir) != 0) {
      ep_log_error("cannot create output directory %s: %s", o.out_dir, strerror(errno));
      rc = EXIT_BAD_INPUT;
    }
    if ((rc = agree_rc(rc)) == EXIT_OK)
      rc = ep_real_sweep_main(&scenario, o.scenario_path, o.out_dir, use_nccl, o.sweep_tokens,
                              o.sweep_experts, o.repeats, local_rank, argc, argv);
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
  rc = run_layer(&o, &scenario, rank, n_ranks, local_rank, n_local, use_nccl, argc, argv);
done:
  free(o.sets);
  fflush(stdout);
  if (MPI_Finalize() != MPI_SUCCESS && rc == EXIT_OK) {
    fprintf(stderr, "epsim-real: error: rank %d: MPI_Finalize failed\n", rank);
    rc = EXIT_INTERNAL;
  }
  return rc;
}
