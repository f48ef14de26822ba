/* Engine and outputs with a stub backend: links neither SimGrid nor CUDA.
 * The stub models each all-to-all as "slowest port bytes / bandwidth" and the
 * expert phase as tokens * cost, so every number has a closed form. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "ep_engine.h"
#include "ep_output.h"
#include "ep_report.h"

enum { N_RANKS = 4 };

typedef struct stub_ctx {
  double bw_bytes_per_us;
  double us_per_token;
  double dispatch_end_us[N_RANKS];
  double expert_end_us[N_RANKS];
  int calls[EP_PHASE_COUNT];
  int fail_phase;   /* -1: never */
  int begins, ends; /* begin/end calls */
  int fail_begin, fail_end;
} stub_ctx;

static double rank_bytes(const int64_t *m, int32_t n, int32_t r)
{
  double out = 0, in = 0;
  for (int32_t p = 0; p < n; p++)
    if (p != r) {
      out += (double)m[r * n + p];
      in += (double)m[p * n + r];
    }
  return out > in ? out : in;
}

static ep_status stub_dispatch(void *vctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  stub_ctx *ctx = vctx;
  ctx->calls[EP_PHASE_DISPATCH]++;
  if (ctx->fail_phase == EP_PHASE_DISPATCH)
    return EP_ERR_BACKEND;
  out->start_us = 0;
  out->end_us =
      rank_bytes(plan->dispatch_bytes_src_dst, plan->n_ranks, rank) / ctx->bw_bytes_per_us;
  ctx->dispatch_end_us[rank] = out->end_us;
  return EP_OK;
}

static ep_status stub_expert(void *vctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  stub_ctx *ctx = vctx;
  ctx->calls[EP_PHASE_EXPERT]++;
  if (ctx->fail_phase == EP_PHASE_EXPERT)
    return EP_ERR_BACKEND;
  out->start_us = ctx->dispatch_end_us[rank];
  out->end_us = out->start_us + (double)plan->tokens_recv_rank[rank] * ctx->us_per_token;
  ctx->expert_end_us[rank] = out->end_us;
  return EP_OK;
}

/* Combine starts at the slowest expert end (a collective), so the stub needs
 * every rank's expert phase first: the test runs ranks phase by phase. */
static ep_status stub_combine(void *vctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  stub_ctx *ctx = vctx;
  ctx->calls[EP_PHASE_COMBINE]++;
  if (ctx->fail_phase == EP_PHASE_COMBINE)
    return EP_ERR_BACKEND;
  double barrier = 0;
  for (int32_t r = 0; r < plan->n_ranks; r++)
    if (ctx->expert_end_us[r] > barrier)
      barrier = ctx->expert_end_us[r];
  out->start_us = ctx->expert_end_us[rank];
  out->end_us =
      barrier + rank_bytes(plan->combine_bytes_src_dst, plan->n_ranks, rank) / ctx->bw_bytes_per_us;
  return EP_OK;
}

static ep_status stub_begin(void *vctx, const ep_plan *plan, int32_t rank)
{
  stub_ctx *ctx = vctx;
  (void)plan;
  (void)rank;
  ctx->begins++;
  return ctx->fail_begin ? EP_ERR_BACKEND : EP_OK;
}

static ep_status stub_end(void *vctx, const ep_plan *plan, int32_t rank)
{
  stub_ctx *ctx = vctx;
  (void)plan;
  (void)rank;
  ctx->ends++;
  return ctx->fail_end ? EP_ERR_BACKEND : EP_OK;
}

static const ep_backend_ops stub_ops = {.name = "stub",
                                        .begin = stub_begin,
                                        .dispatch = stub_dispatch,
                                        .expert_compute = stub_expert,
                                        .combine = stub_combine,
                                        .end = stub_end};

/* A 4-rank plan, 2 ranks per node, token copies per (src, dst) given by hand. */
static int64_t tokens[N_RANKS * N_RANKS] = {
    10, 20, 30, 40, /* src 0 */
    5,  5,  5,  5,  /* src 1 */
    0,  8,  0,  8,  /* src 2 */
    1,  2,  3,  4,  /* src 3 */
};
static int64_t dbytes[N_RANKS * N_RANKS], cbytes[N_RANKS * N_RANKS], recv_tokens[N_RANKS];

static ep_plan make_plan(void)
{
  ep_plan plan = {0};
  plan.n_ranks = N_RANKS;
  plan.n_experts = 8;
  plan.top_k = 2;
  plan.tokens_per_rank = 50;
  plan.dispatch_bytes_per_token = 100;
  plan.combine_bytes_per_token = 200;
  memset(recv_tokens, 0, sizeof recv_tokens);
  for (int s = 0; s < N_RANKS; s++)
    for (int d = 0; d < N_RANKS; d++) {
      dbytes[s * N_RANKS + d] = tokens[s * N_RANKS + d] * 100;
      cbytes[d * N_RANKS + s] = tokens[s * N_RANKS + d] * 200;
      recv_tokens[d] += tokens[s * N_RANKS + d];
    }
  plan.tokens_src_dst = tokens;
  plan.dispatch_bytes_src_dst = dbytes;
  plan.combine_bytes_src_dst = cbytes;
  plan.tokens_recv_rank = recv_tokens;
  plan.n_routed = N_RANKS * 50 * 2;
  plan.n_dropped = plan.n_routed - 146; /* 146 = sum of tokens[] */
  return plan;
}

static ep_gpu_spec gpu = {"H800", 989.4, 1978.9, 3350, 80, 200, 8, 50, "test"};

static ep_cluster make_cluster(void)
{
  ep_cluster c;
  memset(&c, 0, sizeof c);
  c.gpu = &gpu;
  c.n_nodes = 2;
  c.gpus_per_node = 2;
  c.nvlink_GBps = 200;
  c.nic_GBps = 50;
  return c;
}

static const ep_report_header header = {
    .model_name = "test", .n_experts = 8, .top_k = 2, .hidden = 50, .seed = 7};

static void run_all(stub_ctx *ctx, const ep_plan *plan, ep_rank_timeline *tl)
{
  /* Phase-major order so the stub's collective combine sees every expert end. */
  ep_timing *t;
  for (int32_t r = 0; r < N_RANKS; r++) {
    t = &tl[r].phase[EP_PHASE_DISPATCH];
    CHECK_EQ_INT(stub_ops.dispatch(ctx, plan, r, t), EP_OK);
  }
  for (int32_t r = 0; r < N_RANKS; r++)
    CHECK_EQ_INT(stub_ops.expert_compute(ctx, plan, r, &tl[r].phase[EP_PHASE_EXPERT]), EP_OK);
  for (int32_t r = 0; r < N_RANKS; r++)
    CHECK_EQ_INT(stub_ops.combine(ctx, plan, r, &tl[r].phase[EP_PHASE_COMBINE]), EP_OK);
}

static void test_engine_order_and_errors(void)
{
  ep_plan plan = make_plan();
  stub_ctx ctx = {.bw_bytes_per_us = 100, .us_per_token = 0.5, .fail_phase = -1};
  ep_rank_timeline tl;
  /* Rank 0 alone: combine's barrier only sees rank 0's expert end. */
  CHECK_EQ_INT(ep_engine_run_rank(&stub_ops, &ctx, &plan, 0, &tl), EP_OK);
  CHECK_EQ_INT(ctx.calls[EP_PHASE_DISPATCH], 1);
  CHECK_EQ_INT(ctx.calls[EP_PHASE_EXPERT], 1);
  CHECK_EQ_INT(ctx.calls[EP_PHASE_COMBINE], 1);
  /* rank 0 sends 90 copies * 100 B, receives 5+0+1 = 6 copies: 9000 B / 100 B/µs. */
  CHECK_REL(tl.phase[EP_PHASE_DISPATCH].end_us, 90.0, 1e-12);
  CHECK_REL(tl.phase[EP_PHASE_EXPERT].start_us, 90.0, 1e-12);
  CHECK_REL(tl.phase[EP_PHASE_EXPERT].end_us, 90.0 + 16 * 0.5, 1e-12);

  /* A failing phase stops the rank there and its status comes back. */
  for (int fail = 0; fail < EP_PHASE_COUNT; fail++) {
    stub_ctx bad = {.bw_bytes_per_us = 100, .us_per_token = 0.5, .fail_phase = fail};
    CHECK_EQ_INT(ep_engine_run_rank(&stub_ops, &bad, &plan, 1, &tl), EP_ERR_BACKEND);
    for (int p = 0; p < EP_PHASE_COUNT; p++)
      CHECK_EQ_INT(bad.calls[p], p <= fail ? 1 : 0);
  }
  CHECK_EQ_INT(ep_engine_run_rank(&stub_ops, &ctx, &plan, N_RANKS, &tl), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_engine_run_rank(&stub_ops, &ctx, &plan, -1, &tl), EP_ERR_INVALID);
  /* begin and end wrap the phases; a failing begin runs no phase, a failing end
   * comes back after all three; without them the phases still run. */
  {
    stub_ctx c = {.bw_bytes_per_us = 100, .us_per_token = 0.5, .fail_phase = -1};
    CHECK_EQ_INT(ep_engine_run_rank(&stub_ops, &c, &plan, 0, &tl), EP_OK);
    CHECK_EQ_INT(c.begins, 1);
    CHECK_EQ_INT(c.ends, 1);
    stub_ctx b = {.bw_bytes_per_us = 100, .us_per_token = 0.5, .fail_phase = -1, .fail_begin = 1};
    CHECK_EQ_INT(ep_engine_run_rank(&stub_ops, &b, &plan, 0, &tl), EP_ERR_BACKEND);
    CHECK_EQ_INT(b.calls[EP_PHASE_DISPATCH], 0);
    CHECK_EQ_INT(b.ends, 0);
    stub_ctx e = {.bw_bytes_per_us = 100, .us_per_token = 0.5, .fail_phase = -1, .fail_end = 1};
    CHECK_EQ_INT(ep_engine_run_rank(&stub_ops, &e, &plan, 0, &tl), EP_ERR_BACKEND);
    CHECK_EQ_INT(e.calls[EP_PHASE_COMBINE], 1);
    ep_backend_ops bare = stub_ops;
    bare.begin = NULL;
    bare.end = NULL;
    stub_ctx n = {.bw_bytes_per_us = 100, .us_per_token = 0.5, .fail_phase = -1};
    CHECK_EQ_INT(ep_engine_run_rank(&bare, &n, &plan, 0, &tl), EP_OK);
    CHECK_EQ_INT(n.calls[EP_PHASE_COMBINE], 1);
    CHECK_EQ_INT(n.begins + n.ends, 0);
  }
  ep_backend_ops missing = stub_ops;
  missing.combine = NULL;
  CHECK_EQ_INT(ep_engine_run_rank(&missing, &ctx, &plan, 0, &tl), EP_ERR_INVALID);
  CHECK(strcmp(ep_phase_name(EP_PHASE_EXPERT), "expert_gemm") == 0);
}

static void test_summary(void)
{
  ep_plan plan = make_plan();
  const ep_cluster cluster = make_cluster();
  ep_fabric fabric;
  CHECK_EQ_INT(ep_fabric_init(&fabric, &cluster, N_RANKS), EP_OK);
  stub_ctx ctx = {.bw_bytes_per_us = 100, .us_per_token = 0.5, .fail_phase = -1};
  ep_rank_timeline tl[N_RANKS];
  run_all(&ctx, &plan, tl);

  ep_summary sum;
  CHECK_EQ_INT(ep_report_summarize(&fabric, &plan, tl, &sum), EP_OK);
  /* Dispatch per rank: max(out, in) remote copies * 100 B / 100 B/µs:
   * r0 max(90, 6) = 90; r1 max(15, 30) = 30; r2 max(16, 38) = 38; r3 max(6, 53) = 53. */
  CHECK_REL(sum.phase[EP_PHASE_DISPATCH].min_us, 30.0, 1e-12);
  CHECK_REL(sum.phase[EP_PHASE_DISPATCH].median_us, (38.0 + 53.0) / 2, 1e-12);
  CHECK_REL(sum.phase[EP_PHASE_DISPATCH].max_us, 90.0, 1e-12);
  /* Expert: recv tokens 16, 35, 38, 57 at 0.5 µs each. */
  CHECK_REL(sum.phase[EP_PHASE_EXPERT].min_us, 8.0, 1e-12);
  CHECK_REL(sum.phase[EP_PHASE_EXPERT].max_us, 28.5, 1e-12);
  /* Expert ends: 98, 47.5, 57, 81.5 -> barrier at 98; combine bytes double the dispatch. */
  CHECK_REL(sum.layer_us, 98.0 + 180.0, 1e-12);
  CHECK_REL(sum.tokens_per_s_per_gpu, 50.0 / (278.0e-6), 1e-12);
  CHECK_REL(sum.load_imbalance, 57.0 / (146.0 / 4), 1e-12);
  CHECK_REL(sum.drop_rate, (400.0 - 146.0) / 400.0, 1e-12);
  /* Dispatch all-to-all from 0 to 90 µs; total bytes incl. local = 14600 over 4 ranks. */
  CHECK_REL(sum.algbw_GBps[0], 14600.0 / 4 / (90.0 * 1e3), 1e-12);
  CHECK_REL(sum.busbw_GBps[0], sum.algbw_GBps[0] * 3 / 4, 1e-12);
  /* Ports: node 0 = ranks 0,1. Rank 0 NIC out = (30 + 40) * 100 B at 50 GB/s is
   * the slowest port: 7000 B / 90 µs. */
  CHECK_REL(sum.bottleneck_GBps[0], 7000.0 / (90.0 * 1e3), 1e-12);
  CHECK(strcmp(sum.bottleneck_link[0], "NIC") == 0);

  /* The printed table names the model from the header and the cluster from the fabric. */
  char *text = NULL;
  size_t text_len = 0;
  FILE *f = open_memstream(&text, &text_len);
  CHECK(f != NULL);
  ep_report_print(&header, &fabric, &plan, &sum, f);
  CHECK(fclose(f) == 0);
  CHECK_STR_CONTAINS(text, "model test: 8 experts, top-2, hidden 50, intermediate 0, dispatch ");
  CHECK_STR_CONTAINS(text, "cluster explicit: 2 x 2 H800, NVLink 200 GB/s, NIC 50 GB/s; EP4, 50 "
                           "tokens/GPU, seed 7\n");
  CHECK_STR_CONTAINS(text, "\nlayer time 278.00 µs, 179856 tokens/s per GPU\n");
  CHECK_STR_CONTAINS(text, "dropped 254 of 400 copies (63.50%)\n");
  free(text);
  /* A fabric of other ranks than the plan's is refused. */
  ep_fabric small;
  CHECK_EQ_INT(ep_fabric_init(&small, &cluster, 2), EP_OK);
  CHECK_EQ_INT(ep_report_summarize(&small, &plan, tl, &sum), EP_ERR_INVALID);
  ep_fabric_free(&small);
  ep_fabric_free(&fabric);
}

static char *read_all(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  if (buf)
    buf[n] = '\0';
  fclose(f);
  return buf;
}

static void test_outputs(void)
{
  ep_plan plan = make_plan();
  const ep_cluster cluster = make_cluster();
  ep_fabric fabric;
  CHECK_EQ_INT(ep_fabric_init(&fabric, &cluster, N_RANKS), EP_OK);
  stub_ctx ctx = {.bw_bytes_per_us = 100, .us_per_token = 0.5, .fail_phase = -1};
  ep_rank_timeline tl[N_RANKS];
  run_all(&ctx, &plan, tl);

  char dir[] = "/tmp/epsim-test-engine-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char *argv[] = {"epsim", "run", "x.yaml"};
  ep_provenance prov = {.tool = "epsim",
                        .backend = "stub",
                        .scenario_path = "x.yaml",
                        .argc = 3,
                        .argv = argv,
                        .scenario_fnv1a64 = 0x1234,
                        .seed = 7};
  ep_output_stage stage;
  CHECK_EQ_INT(ep_output_stage_init(&stage, dir), EP_OK);
  CHECK_EQ_INT(ep_output_write(&stage, &prov, &fabric, &plan, tl), EP_OK);
  CHECK_EQ_INT(ep_output_stage_commit(&stage), EP_OK);
  ep_output_stage_free(&stage);

  char path[512];
  snprintf(path, sizeof path, "%s/results.csv", dir);
  char *csv = read_all(path);
  CHECK(csv != NULL);
  CHECK_STR_CONTAINS(csv, "# backend: stub\n");
  CHECK_STR_CONTAINS(csv, "# scenario: x.yaml (fnv1a64 0000000000001234)\n");
  CHECK_STR_CONTAINS(csv, "# seed: 7\n");
  CHECK_STR_CONTAINS(csv, "# argv: epsim run x.yaml\n");
  CHECK_STR_CONTAINS(csv, "rank,node,phase,start_us,end_us,time_us,tokens,send_bytes,recv_bytes\n");
  /* Rank 3 (node 1) dispatch: sends 1+2+3 copies * 100 B, receives 40+5+8 copies. */
  CHECK_STR_CONTAINS(csv, "\n3,1,dispatch,0.000,53.000,53.000,57,600,5300\n");
  CHECK_STR_CONTAINS(csv, "\n0,0,expert_gemm,90.000,98.000,8.000,16,0,0\n");
  int rows = 0;
  for (char *p = csv; p && *p; p++)
    rows += *p == '\n';
  CHECK_EQ_INT(rows, 6 + 1 + N_RANKS * EP_PHASE_COUNT); /* provenance + header + rows */
  free(csv);

  snprintf(path, sizeof path, "%s/trace.json", dir);
  char *json = read_all(path);
  cJSON *root = json ? cJSON_Parse(json) : NULL;
  CHECK(root != NULL);
  const cJSON *events = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
  CHECK(cJSON_IsArray(events));
  int n_x = 0;
  double last_end = 0;
  const cJSON *ev;
  cJSON_ArrayForEach(ev, events)
  {
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(ev, "ph");
    if (cJSON_IsString(ph) && !strcmp(ph->valuestring, "X")) {
      n_x++;
      double end = cJSON_GetObjectItemCaseSensitive(ev, "ts")->valuedouble +
                   cJSON_GetObjectItemCaseSensitive(ev, "dur")->valuedouble;
      if (end > last_end)
        last_end = end;
    }
  }
  CHECK_EQ_INT(n_x, N_RANKS * EP_PHASE_COUNT);
  CHECK_REL(last_end, 278.0, 1e-9);
  cJSON_Delete(root);
  free(json);

  /* No temporaries are left behind: the directory holds the outputs only. */
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  int n_entries = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.')
      n_entries++;
    else
      CHECK(!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."));
  CHECK(n_entries <= 3);
  if (d)
    closedir(d);
  const char *names[] = {"results.csv", "trace.json", "phases.png"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);

  /* A directory that cannot be created (below a file): error, nothing written. */
  CHECK_EQ_INT(ep_output_stage_init(&stage, "/dev/null/epsim"), EP_OK);
  CHECK_EQ_INT(ep_output_write(&stage, &prov, &fabric, &plan, tl), EP_ERR_IO);
  ep_output_stage_free(&stage);
  CHECK_EQ_INT(ep_output_stage_init(&stage, ""), EP_ERR_IO);
  ep_fabric_free(&fabric);
}

static void test_registry(void)
{
  static const ep_backend_entry a = {"cpu", "host", NULL}, b = {"nccl", "GPU", &a},
                                c = {"cuda-ipc", "GPU, one node", NULL};
  const ep_backend_entry *const table[] = {&a, &b, &c, NULL};
  CHECK(ep_backend_find(table, "nccl") == &b);
  CHECK(ep_backend_find(table, "cuda-ipc") == &c);
  CHECK(ep_backend_find(table, "tpu") == NULL);
  CHECK(ep_backend_find(table, "") == NULL);
  CHECK(ep_backend_find(table, NULL) == NULL);
  CHECK(ep_backend_find(NULL, "cpu") == NULL);
  char buf[64];
  CHECK(strcmp(ep_backend_names(table, buf, sizeof buf), "cpu, nccl, cuda-ipc") == 0);
  CHECK(strcmp(ep_backend_names(table, buf, 8), "cpu, nc") == 0);
  CHECK(strcmp(ep_backend_names(table, buf, 1), "") == 0);
  const ep_backend_entry *const empty[] = {NULL};
  CHECK(strcmp(ep_backend_names(empty, buf, sizeof buf), "") == 0);
}

int main(void)
{
  test_engine_order_and_errors();
  test_registry();
  test_summary();
  test_outputs();
  return check_exit_code("test_engine");
}
