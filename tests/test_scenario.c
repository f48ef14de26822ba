/* Scenario loader: bundled scenarios, defaults, every rejection class with its
 * exact message and line:col, all errors of a file reported, --set overrides,
 * and the content hash. Runs from the source root (bundled files, fixtures);
 * inline cases are written to mkstemp files. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ep_rng.h"
#include "ep_scenario.h"

/* ---- helpers ---- */

typedef struct loaded {
  ep_status st;
  ep_scenario sc;
  char path[64];
  char *err;     /* everything printed to err */
  int err_lines; /* number of lines printed */
} loaded;

static void loaded_free(loaded *l)
{
  free(l->err);
  l->err = NULL;
}

static int count_lines(const char *s)
{
  int n = 0;
  for (; s && *s; s++)
    n += *s == '\n';
  return n;
}

/* Loads path with overrides, capturing err output. */
static loaded load_path(const char *path, const char *const *ov, int n_ov)
{
  loaded l;
  memset(&l, 0, sizeof l);
  snprintf(l.path, sizeof l.path, "%s", path);
  size_t err_bytes = 0;
  FILE *err = open_memstream(&l.err, &err_bytes);
  CHECK(err != NULL);
  l.st = ep_scenario_load(path, ov, n_ov, &l.sc, err);
  if (err)
    CHECK(fclose(err) == 0);
  l.err_lines = count_lines(l.err);
  return l;
}

/* Writes text to a fresh temp file and loads it. */
static loaded load_text(const char *text, const char *const *ov, int n_ov)
{
  char path[] = "/tmp/test_scenario_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  size_t len = strlen(text);
  CHECK(fd >= 0 && write(fd, text, len) == (ssize_t)len);
  if (fd >= 0)
    CHECK(close(fd) == 0);
  loaded l = load_path(path, ov, n_ov);
  CHECK(unlink(path) == 0);
  return l;
}

/* The output holds this exact line. expected starts with "L:C: ..." for the
 * file (the temp path is put in front) or with "--set:" for overrides. */
static void check_has_line(const loaded *l, const char *expected, int line)
{
  char want[1024];
  if (strncmp(expected, "--set:", 6) == 0)
    snprintf(want, sizeof want, "%s\n", expected);
  else
    snprintf(want, sizeof want, "%s:%s\n", l->path, expected);
  int found = l->err && strstr(l->err, want) &&
              (strstr(l->err, want) == l->err || strstr(l->err, want)[-1] == '\n');
  if (!found)
    fprintf(stderr, "test_scenario.c:%d: expected line:\n  %s got:\n%s", line, want,
            l->err ? l->err : "(nothing)\n");
  CHECK(found);
}

/* text fails with exactly one error, the given line. */
#define EXPECT_ONE(text, expected) expect_one(text, NULL, 0, expected, __LINE__)
#define EXPECT_ONE_OV(text, ov, n, expected) expect_one(text, ov, n, expected, __LINE__)

static void expect_one(const char *text, const char *const *ov, int n_ov, const char *expected,
                       int line)
{
  loaded l = load_text(text, ov, n_ov);
  if (l.st != EP_ERR_PARSE || l.err_lines != 1)
    fprintf(stderr, "test_scenario.c:%d: status %s, %d error lines\n", line, ep_status_str(l.st),
            l.err_lines);
  CHECK_EQ_INT(l.st, EP_ERR_PARSE);
  CHECK_EQ_INT(l.err_lines, 1);
  check_has_line(&l, expected, line);
  loaded_free(&l);
}

/* A valid scenario in four pieces with fixed line numbers:
 * model 1-6, cluster 7-9, parallel 10-11, workload 12-13. */
#define MODEL                                                                                      \
  "model:\n"                                                                                       \
  "  name: test\n"                                                                                 \
  "  n_experts: 16\n"                                                                              \
  "  top_k: 2\n"                                                                                   \
  "  hidden: 1024\n"                                                                               \
  "  moe_intermediate: 512\n"
#define CLUSTER                                                                                    \
  "cluster:\n"                                                                                     \
  "  preset: hgx-h100\n"                                                                           \
  "  nodes: 2\n"
#define PARALLEL                                                                                   \
  "parallel:\n"                                                                                    \
  "  ep: 16\n"
#define WORKLOAD                                                                                   \
  "workload:\n"                                                                                    \
  "  tokens_per_gpu: 128\n"
#define BASE MODEL CLUSTER PARALLEL WORKLOAD
/* The base without its workload section (workload is then written at line 12). */
#define HEAD MODEL CLUSTER PARALLEL

static const char *const workload_keys =
    "tokens_per_gpu, routing, zipf_exponent, hot_experts, hot_share, seed";

/* ---- bundled scenarios ---- */

static void check_preset_cluster(const ep_cluster *got, const char *preset, int32_t count)
{
  ep_cluster want;
  CHECK_EQ_INT(ep_cluster_preset(preset, count, &want), EP_OK);
  CHECK(strcmp(got->preset, preset) == 0);
  CHECK(got->gpu == want.gpu);
  CHECK_EQ_INT(got->n_nodes, count);
  CHECK_EQ_INT(got->gpus_per_node, want.gpus_per_node);
  CHECK_REL(got->nvlink_GBps, want.nvlink_GBps, 0.0);
  CHECK_REL(got->nic_GBps, want.nic_GBps, 0.0);
  CHECK(got->nvlink_latency_us == want.nvlink_latency_us);
  CHECK(got->nic_latency_us == want.nic_latency_us);
  CHECK_EQ_INT(got->fabric, EP_FABRIC_NONBLOCKING);
}

/* Every field of a model section. */
static void check_model(const ep_model_cfg *got, const ep_model_cfg *want)
{
  CHECK(strcmp(got->name, want->name) == 0);
  CHECK_EQ_INT(got->n_experts, want->n_experts);
  CHECK_EQ_INT(got->top_k, want->top_k);
  CHECK_EQ_INT(got->hidden, want->hidden);
  CHECK_EQ_INT(got->moe_intermediate, want->moe_intermediate);
  CHECK_EQ_INT(got->n_shared_experts, want->n_shared_experts);
  CHECK_EQ_INT(got->dispatch_dtype, want->dispatch_dtype);
  CHECK_EQ_INT(got->combine_dtype, want->combine_dtype);
}

static void test_bundled(void)
{
  const ep_dtype bf16 = EP_DTYPE_BF16, fp8 = EP_DTYPE_FP8;
  const ep_model_cfg dsv3 = {"DeepSeek-V3", 256, 8, 7168, 2048, 1, fp8, bf16};
  const ep_model_cfg mixtral = {"Mixtral-8x7B", 8, 2, 4096, 14336, 0, bf16, bf16};
  const ep_model_cfg qwen3 = {"Qwen3-235B-A22B", 128, 8, 4096, 1536, 0, bf16, bf16};
  const struct {
    const char *path;
    const ep_model_cfg *model;
    const char *preset;
    int32_t count;
    const char *gpu;
    int32_t gpus_per_node, ep;
  } want[] = {
      {"scenarios/default.yaml", &dsv3, "hgx-h800", 2, "H800", 8, 16},
      {"scenarios/deepseek-v3-gb200-nvl72-ep64.yaml", &dsv3, "gb200-nvl72", 1, "GB200", 72, 64},
      {"scenarios/mixtral-8x7b-hgx-h100-ep8.yaml", &mixtral, "hgx-h100", 1, "H100", 8, 8},
      {"scenarios/qwen3-235b-a22b-hgx-h100-ep32.yaml", &qwen3, "hgx-h100", 4, "H100", 8, 32},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const int failures = check_failures;
    loaded l = load_path(want[i].path, NULL, 0);
    CHECK_EQ_INT(l.st, EP_OK);
    CHECK_EQ_INT(l.err_lines, 0);
    check_model(&l.sc.model, want[i].model);
    check_preset_cluster(&l.sc.cluster, want[i].preset, want[i].count);
    CHECK(l.sc.cluster.gpu && strcmp(l.sc.cluster.gpu->name, want[i].gpu) == 0);
    CHECK_EQ_INT(l.sc.cluster.gpus_per_node, want[i].gpus_per_node);
    CHECK_EQ_INT(l.sc.ep, want[i].ep);
    CHECK_EQ_INT(l.sc.tokens_per_gpu, 4096);
    if (check_failures != failures)
      fprintf(stderr, "  (checks above: %s)\n", want[i].path);
    loaded_free(&l);
  }

  /* The default scenario leaves the policy and sim sections at their defaults. */
  loaded l = load_path("scenarios/default.yaml", NULL, 0);
  CHECK_EQ_INT(l.sc.placement, EP_PLACEMENT_CONTIGUOUS);
  CHECK_EQ_INT(l.sc.routing.kind, EP_ROUTING_UNIFORM);
  CHECK(l.sc.routing.seed == 1);
  CHECK(l.sc.capacity_factor <= 0.0);
  CHECK(l.sc.dispatch == &ep_dispatch_direct);
  CHECK_EQ_INT(l.sc.flows, EP_FLOWS_AUTO);
  loaded_free(&l);
}

/* ---- accepted files ---- */

static void test_defaults(void)
{
  loaded l = load_text(BASE, NULL, 0);
  CHECK_EQ_INT(l.st, EP_OK);
  CHECK_EQ_INT(l.err_lines, 0);
  CHECK(strcmp(l.sc.model.name, "test") == 0);
  CHECK_EQ_INT(l.sc.model.n_shared_experts, 0);
  CHECK_EQ_INT(l.sc.model.dispatch_dtype, EP_DTYPE_BF16);
  CHECK_EQ_INT(l.sc.model.combine_dtype, EP_DTYPE_BF16);
  CHECK_EQ_INT(l.sc.placement, EP_PLACEMENT_CONTIGUOUS);
  CHECK_EQ_INT(l.sc.routing.kind, EP_ROUTING_UNIFORM);
  CHECK(l.sc.routing.zipf_exponent == 1.0);
  CHECK(l.sc.routing.seed == 1);
  CHECK(l.sc.capacity_factor <= 0.0);
  CHECK(l.sc.dispatch == &ep_dispatch_direct);
  CHECK_EQ_INT(l.sc.flows, EP_FLOWS_AUTO);
  check_preset_cluster(&l.sc.cluster, "hgx-h100", 2);

  /* The loader's defaults are EP_SCENARIO_INIT's. */
  const ep_scenario init = EP_SCENARIO_INIT;
  CHECK_EQ_INT(l.sc.model.n_shared_experts, init.model.n_shared_experts);
  CHECK_EQ_INT(l.sc.model.dispatch_dtype, init.model.dispatch_dtype);
  CHECK_EQ_INT(l.sc.model.combine_dtype, init.model.combine_dtype);
  CHECK_EQ_INT(l.sc.cluster.fabric, init.cluster.fabric);
  CHECK_EQ_INT(l.sc.placement, init.placement);
  CHECK_EQ_INT(l.sc.routing.kind, init.routing.kind);
  CHECK(l.sc.routing.zipf_exponent == init.routing.zipf_exponent);
  CHECK(l.sc.routing.seed == init.routing.seed);
  CHECK(l.sc.capacity_factor == init.capacity_factor);
  CHECK_EQ_INT(l.sc.dispatch, init.dispatch);
  CHECK_EQ_INT(l.sc.flows, init.flows);
  CHECK(init.model.name[0] == '\0' && init.model.n_experts == 0 && init.ep == 0 &&
        init.tokens_per_gpu == 0); /* required keys have no default */
  loaded_free(&l);

  /* Empty optional sections, comments, flow style and null-free quoting. */
  l = load_text("# comment\n"
                "model: {name: 'x y', n_experts: 4, top_k: 4, hidden: 8, moe_intermediate: 8}\n"
                "cluster: {preset: gb200-nvl72, racks: 2}\n"
                "parallel: {ep: 4}\n"
                "workload: {tokens_per_gpu: 1}\n"
                "policy:\n"
                "sim:\n",
                NULL, 0);
  CHECK_EQ_INT(l.st, EP_OK);
  CHECK(strcmp(l.sc.model.name, "x y") == 0);
  CHECK_EQ_INT(l.sc.model.top_k, 4);
  check_preset_cluster(&l.sc.cluster, "gb200-nvl72", 2);
  CHECK_EQ_INT(l.sc.tokens_per_gpu, 1);
  loaded_free(&l);
}

static void test_all_keys(void)
{
  loaded l = load_text("model:\n"
                       "  name: \"all keys\"\n"
                       "  n_experts: 64\n"
                       "  top_k: 6\n"
                       "  hidden: 2048\n"
                       "  moe_intermediate: 1408\n"
                       "  n_shared_experts: 2\n"
                       "  dispatch_dtype: fp8\n"
                       "  combine_dtype: fp8\n"
                       "cluster:\n"
                       "  gpu: h200\n" /* catalog lookup is case-insensitive */
                       "  gpus_per_node: 4\n"
                       "  nodes: 3\n"
                       "  nvlink_GBps: 450.5\n"
                       "  nvlink_latency_us: 0\n"
                       "  nic_GBps: 5e1\n"
                       "  nic_latency_us: 2.5\n"
                       "  fabric: nonblocking\n"
                       "parallel:\n"
                       "  ep: 8\n"
                       "  tp: 1\n"
                       "  dp: 1\n"
                       "  placement: round_robin\n"
                       "workload:\n"
                       "  tokens_per_gpu: 16777216\n"
                       "  routing: zipf\n"
                       "  zipf_exponent: 1.25\n"
                       "  seed: 18446744073709551615\n"
                       "policy:\n"
                       "  capacity_factor: 1.5\n"
                       "  dispatch: direct\n"
                       "sim:\n"
                       "  flows: port\n",
                       NULL, 0);
  CHECK_EQ_INT(l.st, EP_OK);
  CHECK_EQ_INT(l.err_lines, 0);
  const ep_model_cfg model = {"all keys", 64, 6, 2048, 1408, 2, EP_DTYPE_FP8, EP_DTYPE_FP8};
  check_model(&l.sc.model, &model);
  CHECK(l.sc.cluster.preset[0] == '\0');
  CHECK(l.sc.cluster.gpu == ep_gpu_catalog_find("H200"));
  CHECK_EQ_INT(l.sc.cluster.gpus_per_node, 4);
  CHECK_EQ_INT(l.sc.cluster.n_nodes, 3);
  CHECK(l.sc.cluster.nvlink_GBps == 450.5);
  CHECK(l.sc.cluster.nvlink_latency_us == 0.0);
  CHECK(l.sc.cluster.nic_GBps == 50.0);
  CHECK(l.sc.cluster.nic_latency_us == 2.5);
  CHECK_EQ_INT(l.sc.cluster.fabric, EP_FABRIC_NONBLOCKING);
  CHECK_EQ_INT(l.sc.ep, 8);
  CHECK_EQ_INT(l.sc.placement, EP_PLACEMENT_ROUND_ROBIN);
  CHECK_EQ_INT(l.sc.tokens_per_gpu, 16777216);
  CHECK_EQ_INT(l.sc.routing.kind, EP_ROUTING_ZIPF);
  CHECK(l.sc.routing.zipf_exponent == 1.25);
  CHECK(l.sc.routing.seed == UINT64_MAX);
  CHECK(l.sc.capacity_factor == 1.5);
  CHECK(l.sc.dispatch == &ep_dispatch_direct);
  CHECK_EQ_INT(l.sc.flows, EP_FLOWS_PORT);
  loaded_free(&l);

  /* Hot routing with its two keys; capacity_factor none; flows pair. */
  l = load_text(BASE "  routing: hot\n"
                     "  hot_experts: 15\n"
                     "  hot_share: 0.75\n"
                     "  seed: 0\n"
                     "policy:\n"
                     "  capacity_factor: none\n"
                     "sim:\n"
                     "  flows: pair\n",
                NULL, 0);
  CHECK_EQ_INT(l.st, EP_OK);
  CHECK_EQ_INT(l.sc.routing.kind, EP_ROUTING_HOT);
  CHECK_EQ_INT(l.sc.routing.hot_experts, 15);
  CHECK(l.sc.routing.hot_share == 0.75);
  CHECK(l.sc.routing.seed == 0);
  CHECK(l.sc.capacity_factor <= 0.0);
  CHECK_EQ_INT(l.sc.flows, EP_FLOWS_PAIR);
  loaded_free(&l);

  /* A preset with explicit keys overriding its values. */
  l = load_text(MODEL "cluster:\n"
                      "  preset: hgx-h100\n"
                      "  nodes: 1\n"
                      "  gpus_per_node: 16\n"
                      "  nvlink_GBps: 123\n"
                      "  nic_latency_us: 7\n"
                      "  gpu: B200\n" PARALLEL WORKLOAD,
                NULL, 0);
  CHECK_EQ_INT(l.st, EP_OK);
  ep_cluster want;
  CHECK_EQ_INT(ep_cluster_preset("hgx-h100", 1, &want), EP_OK);
  CHECK(strcmp(l.sc.cluster.preset, "hgx-h100") == 0);
  CHECK(l.sc.cluster.gpu == ep_gpu_catalog_find("B200"));
  CHECK_EQ_INT(l.sc.cluster.n_nodes, 1);
  CHECK_EQ_INT(l.sc.cluster.gpus_per_node, 16);
  CHECK(l.sc.cluster.nvlink_GBps == 123.0);
  CHECK(l.sc.cluster.nic_latency_us == 7.0);
  CHECK(l.sc.cluster.nic_GBps == want.nic_GBps);
  CHECK(l.sc.cluster.nvlink_latency_us == want.nvlink_latency_us);
  loaded_free(&l);
}

/* ---- rejections, one class at a time (line:col checked exactly) ---- */

static void test_structure_errors(void)
{
  char valid[256];
  EXPECT_ONE(BASE "extras:\n  a: 1\n",
             "14:1: extras: unknown section (valid: model, cluster, parallel, workload, policy, "
             "sim)");
  snprintf(valid, sizeof valid, "14:3: workload.tokens: unknown key (valid: %s)", workload_keys);
  EXPECT_ONE(BASE "  tokens: 5\n", valid);
  EXPECT_ONE(BASE "  tokens_per_gpu: 64\n",
             "14:3: workload.tokens_per_gpu: duplicate key, first given at 13:3 (valid: each key "
             "once per section)");
  EXPECT_ONE(BASE "parallel:\n  ep: 8\n",
             "14:1: parallel: duplicate section, first given at 10:1 (valid: each section once)");
  EXPECT_ONE(MODEL CLUSTER WORKLOAD,
             "1:1: parallel: missing required section (valid: ep, tp, dp, placement)");
  EXPECT_ONE(
      "model:\n  name: test\n  n_experts: 16\n  hidden: 1024\n  moe_intermediate: 512\n" CLUSTER
          PARALLEL WORKLOAD,
      "1:1: model.top_k: missing required key (valid: integer 1..1024, at most n_experts)");
  EXPECT_ONE(HEAD "workload:\n  seed: 3\n",
             "12:1: workload.tokens_per_gpu: missing required key (valid: integer 1..16777216)");
  EXPECT_ONE(HEAD "workload: [1, 2]\n",
             "12:11: workload: expected a mapping of keys, got a sequence (valid: "
             "tokens_per_gpu, routing, zipf_exponent, hot_experts, hot_share, seed)");
  EXPECT_ONE("", "1:1: scenario: empty document (valid: model, cluster, parallel, workload, "
                 "policy, sim)");
  EXPECT_ONE("- model\n",
             "1:1: scenario: expected a mapping of sections, got a sequence (valid: model, "
             "cluster, parallel, workload, policy, sim)");
  EXPECT_ONE(BASE "---\nmodel: {}\n",
             "15:1: scenario: a second YAML document (valid: one YAML document)");
}

static void test_syntax_errors(void)
{
  EXPECT_ONE(HEAD "workload:\n  tokens_per_gpu: [128\n",
             "14:1: yaml: did not find expected ',' or ']' while parsing a flow sequence (from "
             "13:19) (valid: YAML block or flow mappings)");
  EXPECT_ONE(HEAD "workload:\n\ttokens_per_gpu: 128\n",
             "13:1: yaml: found character that cannot start any token while scanning for the "
             "next token (valid: YAML block or flow mappings)");
  EXPECT_ONE(HEAD "workload:\n  tokens_per_gpu: 128\n bad: 1\n",
             "14:2: yaml: did not find expected key while parsing a block mapping (from 1:1) "
             "(valid: YAML block or flow mappings)");
  EXPECT_ONE("model:\n  name: \xff\n",
             "2:9: yaml: invalid leading UTF-8 octet (valid: YAML block or flow mappings)");
}

static void test_type_errors(void)
{
  const char *v = "(valid: integer 1..16777216)";
  char want[256];
  struct {
    const char *value, *message;
  } cases[] = {
      {"abc", "expected an integer, got 'abc'"},
      {"1.5", "expected an integer, got float '1.5'"},
      {"4e3", "expected an integer, got float '4e3'"},
      {"12abc", "expected an integer, got '12abc'"},
      {"0x10", "expected an integer, got '0x10'"},
      {"-5", "out of range: -5"},
      {"0", "out of range: 0"},
      {"16777217", "out of range: 16777217"},
      {"99999999999999999999", "out of range: 99999999999999999999"},
      {"\"128\"", "expected an integer, got quoted string \"128\""},
      {"{a: 1}", "expected an integer, got a mapping"},
      {"[1]", "expected an integer, got a sequence"},
      {"~", "missing value"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[1024];
    snprintf(text, sizeof text, HEAD "workload:\n  tokens_per_gpu: %s\n", cases[i].value);
    snprintf(want, sizeof want, "13:19: workload.tokens_per_gpu: %s %s", cases[i].message, v);
    EXPECT_ONE(text, want);
  }
  /* An empty value is located right after the colon. */
  EXPECT_ONE(HEAD "workload:\n  tokens_per_gpu:\n",
             "13:18: workload.tokens_per_gpu: missing value (valid: integer 1..16777216)");

  /* uint64 seed: full range, no sign, no wrap-around. */
  EXPECT_ONE(BASE "  seed: -1\n",
             "14:9: workload.seed: out of range: -1 (valid: integer 0..18446744073709551615)");
  EXPECT_ONE(BASE "  seed: 18446744073709551616\n",
             "14:9: workload.seed: out of range: 18446744073709551616 (valid: integer "
             "0..18446744073709551615)");
  EXPECT_ONE(BASE "  seed: 1e3\n", "14:9: workload.seed: expected an integer, got float '1e3' "
                                   "(valid: integer 0..18446744073709551615)");

  /* Numbers. */
  EXPECT_ONE(BASE "policy:\n  capacity_factor: 0\n",
             "15:20: policy.capacity_factor: out of range: 0 (valid: none or a number > 0)");
  EXPECT_ONE(BASE "policy:\n  capacity_factor: nan\n",
             "15:20: policy.capacity_factor: expected a number, got 'nan' (valid: none or a "
             "number > 0)");
  EXPECT_ONE(BASE "policy:\n  capacity_factor: 1e999\n",
             "15:20: policy.capacity_factor: out of range: 1e999 (valid: none or a number > 0)");
  EXPECT_ONE(BASE "policy:\n  capacity_factor: 1.5x\n",
             "15:20: policy.capacity_factor: expected a number, got '1.5x' (valid: none or a "
             "number > 0)");
  EXPECT_ONE(BASE "policy:\n  capacity_factor: '2'\n",
             "15:20: policy.capacity_factor: expected a number, got quoted string \"2\" (valid: "
             "none or a number > 0)");
  EXPECT_ONE(
      MODEL CLUSTER "  nvlink_latency_us: -0.5\n" PARALLEL WORKLOAD,
      "10:22: cluster.nvlink_latency_us: out of range: -0.5 (valid: 0, or a number in 0.01..1e6)");
  EXPECT_ONE(BASE "  routing: hot\n  hot_experts: 2\n  hot_share: 1\n",
             "16:14: workload.hot_share: out of range: 1 (valid: number in (0, 1))");

  /* Enumerations. */
  EXPECT_ONE(BASE "  routing: gauss\n",
             "14:12: workload.routing: unknown value 'gauss' (valid: uniform, zipf, hot)");
  EXPECT_ONE(MODEL "  dispatch_dtype: fp16\n" CLUSTER PARALLEL WORKLOAD,
             "7:19: model.dispatch_dtype: unknown value 'fp16' (valid: bf16, fp8)");
  EXPECT_ONE(MODEL "  combine_dtype: BF16\n" CLUSTER PARALLEL WORKLOAD,
             "7:18: model.combine_dtype: unknown value 'BF16' (valid: bf16, fp8)");
  /* fp8 rows scale whole 128-element blocks. */
  EXPECT_ONE("model:\n  name: test\n  n_experts: 16\n  top_k: 2\n  hidden: 1000\n"
             "  moe_intermediate: 512\n  combine_dtype: fp8\n" CLUSTER PARALLEL WORKLOAD,
             "7:18: model.combine_dtype: fp8 needs hidden a multiple of 128, hidden is 1000 "
             "(valid: bf16, or hidden a multiple of 128)");
  EXPECT_ONE(HEAD "  placement: random\n" WORKLOAD,
             "12:14: parallel.placement: unknown value 'random' (valid: contiguous, round_robin)");
  EXPECT_ONE(BASE "policy:\n  dispatch: two_shot\n",
             "15:13: policy.dispatch: unknown value 'two_shot' (valid: direct)");
  EXPECT_ONE(BASE "sim:\n  flows: fast\n",
             "15:10: sim.flows: unknown value 'fast' (valid: auto, pair, port)");
  EXPECT_ONE(MODEL CLUSTER "  fabric: fat_tree\n" PARALLEL WORKLOAD,
             "10:11: cluster.fabric: unknown value 'fat_tree' (valid: nonblocking)");

  /* Strings. */
  EXPECT_ONE(
      "model:\n  name: " /* 64 bytes */
      "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl\n"
      "  n_experts: 16\n  top_k: 2\n  hidden: 1024\n  moe_intermediate: 512\n" CLUSTER PARALLEL
          WORKLOAD,
      "2:9: model.name: too long: 64 bytes (valid: string of 1..63 bytes)");
  EXPECT_ONE("model:\n  name: ''\n  n_experts: 16\n  top_k: 2\n  hidden: 1024\n"
             "  moe_intermediate: 512\n" CLUSTER PARALLEL WORKLOAD,
             "2:9: model.name: missing value (valid: string of 1..63 bytes)");
}

static void test_layout_errors(void)
{
  char want[512], list[256];

  /* Cross-field errors point at the key that is wrong. */
  EXPECT_ONE(MODEL CLUSTER "parallel:\n  ep: 6\n" WORKLOAD,
             "11:3: parallel.ep: n_experts 16 is not divisible by ep 6 (valid: 1, 2, 4, 8, 16)");
  EXPECT_ONE(MODEL "cluster:\n  preset: hgx-h100\n  nodes: 1\n" PARALLEL WORKLOAD,
             "11:3: parallel.ep: ep 16 exceeds the cluster's 8 GPUs (valid: integer 1..8)");
  EXPECT_ONE("model:\n  name: test\n  n_experts: 16\n  top_k: 17\n  hidden: 1024\n"
             "  moe_intermediate: 512\n" CLUSTER PARALLEL WORKLOAD,
             "4:3: model.top_k: top_k 17 exceeds n_experts 16 (valid: integer 1..16)");
  EXPECT_ONE(BASE "  routing: hot\n  hot_experts: 16\n  hot_share: 0.5\n",
             "15:3: workload.hot_experts: hot_experts 16 must be below n_experts 16 (valid: "
             "integer 1..15)");
  EXPECT_ONE(HEAD "  tp: 2\n" WORKLOAD,
             "12:7: parallel.tp: out of range: 2 (valid: 1, tp > 1 is not supported yet)");
  EXPECT_ONE(HEAD "  dp: 4\n" WORKLOAD,
             "12:7: parallel.dp: out of range: 4 (valid: 1, dp > 1 is not supported yet)");
  EXPECT_ONE(MODEL CLUSTER "parallel:\n  ep: 0\n" WORKLOAD,
             "11:7: parallel.ep: out of range: 0 (valid: integer 1..65536)");

  /* Routing parameters belong to their routing kind. */
  EXPECT_ONE(BASE "  zipf_exponent: 1.1\n",
             "14:3: workload.zipf_exponent: only used with routing: zipf, but routing is uniform "
             "(valid: routing: zipf)");
  EXPECT_ONE(BASE "  routing: zipf\n  hot_share: 0.5\n",
             "15:3: workload.hot_share: only used with routing: hot, but routing is zipf (valid: "
             "routing: hot)");
  EXPECT_ONE(BASE "  routing: hot\n  hot_experts: 2\n",
             "12:1: workload.hot_share: missing required key with routing: hot (valid: number in "
             "(0, 1))");

  /* Cluster: node and rack counts, presets, catalog, explicit descriptions. */
  EXPECT_ONE(MODEL "cluster:\n  preset: hgx-h100\n  nodes: 0\n" PARALLEL WORKLOAD,
             "9:10: cluster.nodes: out of range: 0 (valid: integer 1..65536)");
  EXPECT_ONE(MODEL "cluster:\n  preset: gb200-nvl72\n  racks: 0\n" PARALLEL WORKLOAD,
             "9:10: cluster.racks: out of range: 0 (valid: integer 1..65536)");
  EXPECT_ONE(MODEL "cluster:\n  preset: gb200-nvl72\n  nodes: 1\n" PARALLEL WORKLOAD,
             "9:3: cluster.nodes: preset gb200-nvl72 counts racks, not nodes (valid: racks)");
  EXPECT_ONE(MODEL "cluster:\n  preset: hgx-h800\n  racks: 2\n" PARALLEL WORKLOAD,
             "9:3: cluster.racks: preset hgx-h800 counts nodes, not racks (valid: nodes)");
  EXPECT_ONE(MODEL "cluster:\n  preset: hgx-h100\n" PARALLEL WORKLOAD,
             "7:1: cluster.nodes: missing required key with preset hgx-h100 (valid: integer "
             "1..65536)");
  list[0] = '\0';
  for (int i = 0; ep_cluster_preset_names[i]; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
             ep_cluster_preset_names[i]);
  snprintf(want, sizeof want, "8:11: cluster.preset: unknown value 'dgx-a100' (valid: %s)", list);
  EXPECT_ONE(MODEL "cluster:\n  preset: dgx-a100\n  nodes: 2\n" PARALLEL WORKLOAD, want);
  int32_t n_cat = 0;
  const ep_gpu_spec *cat = ep_gpu_catalog(&n_cat);
  CHECK(cat != NULL && n_cat > 0);
  list[0] = '\0';
  for (int32_t i = 0; cat && i < n_cat; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", cat[i].name);
  snprintf(want, sizeof want, "10:8: cluster.gpu: unknown GPU 'A100' (valid: %s)", list);
  EXPECT_ONE(MODEL CLUSTER "  gpu: A100\n" PARALLEL WORKLOAD, want);

  const char *explicit_missing = MODEL "cluster:\n"
                                       "  gpu: H100\n"
                                       "  gpus_per_node: 8\n"
                                       "  nodes: 2\n"
                                       "  nvlink_GBps: 450\n"
                                       "  nic_GBps: 50\n"
                                       "  nic_latency_us: 3\n" PARALLEL WORKLOAD;
  EXPECT_ONE(explicit_missing, "7:1: cluster.nvlink_latency_us: missing required key without a "
                               "preset (valid: 0, or a number in 0.01..1e6)");
  EXPECT_ONE(MODEL "cluster:\n"
                   "  gpu: H100\n"
                   "  gpus_per_node: 8\n"
                   "  racks: 2\n"
                   "  nodes: 2\n"
                   "  nvlink_GBps: 450\n"
                   "  nvlink_latency_us: 1\n"
                   "  nic_GBps: 50\n"
                   "  nic_latency_us: 3\n" PARALLEL WORKLOAD,
             "10:3: cluster.racks: racks needs preset: gb200-nvl72 (valid: nodes)");
}

/* Several problems in one file: all reported, in file order, none twice. */
static void test_all_errors_reported(void)
{
  loaded l = load_path("tests/scenarios/several_errors.yaml", NULL, 0);
  CHECK_EQ_INT(l.st, EP_ERR_PARSE);
  const char *want =
      "tests/scenarios/several_errors.yaml:2:1: model.moe_intermediate: missing required key "
      "(valid: integer 1..1048576)\n"
      "tests/scenarios/several_errors.yaml:5:10: model.top_k: expected an integer, got 'eight' "
      "(valid: integer 1..1024, at most n_experts)\n"
      "tests/scenarios/several_errors.yaml:7:3: model.moe_intermediate_size: unknown key (valid: "
      "name, n_experts, top_k, hidden, moe_intermediate, n_shared_experts, dispatch_dtype, "
      "combine_dtype)\n"
      "tests/scenarios/several_errors.yaml:8:19: model.dispatch_dtype: unknown value 'fp4' "
      "(valid: bf16, fp8)\n"
      "tests/scenarios/several_errors.yaml:9:3: model.hidden: duplicate key, first given at 6:3 "
      "(valid: each key once per section)\n"
      "tests/scenarios/several_errors.yaml:11:3: cluster.nodes: preset gb200-nvl72 counts racks, "
      "not nodes (valid: racks)\n"
      "tests/scenarios/several_errors.yaml:14:3: parallel.ep: n_experts 256 is not divisible by "
      "ep 48 (valid: 1, 2, 4, 8, 16, 32, 64, 128, 256)\n"
      "tests/scenarios/several_errors.yaml:15:7: parallel.tp: out of range: 2 (valid: 1, tp > 1 "
      "is not supported yet)\n"
      "tests/scenarios/several_errors.yaml:17:1: workload.tokens_per_gpu: missing required key "
      "(valid: integer 1..16777216)\n"
      "tests/scenarios/several_errors.yaml:18:3: workload.zipf_exponent: only used with "
      "routing: zipf, but routing is uniform (valid: routing: zipf)\n"
      "tests/scenarios/several_errors.yaml:19:9: workload.seed: out of range: -3 (valid: integer "
      "0..18446744073709551615)\n"
      "tests/scenarios/several_errors.yaml:20:1: polcy: unknown section (valid: model, cluster, "
      "parallel, workload, policy, sim)\n";
  CHECK_EQ_INT(l.err_lines, 12);
  CHECK(l.err && strcmp(l.err, want) == 0);
  if (l.err && strcmp(l.err, want) != 0)
    fprintf(stderr, "got:\n%swant:\n%s", l.err, want);
  loaded_free(&l);

  /* A NULL err stream still reports the status. */
  ep_scenario sc;
  CHECK_EQ_INT(ep_scenario_load("tests/scenarios/several_errors.yaml", NULL, 0, &sc, NULL),
               EP_ERR_PARSE);
}

static void test_overrides(void)
{
  const char *ov1[] = {"workload.seed=7",
                       "model.top_k=4",
                       "parallel.placement=round_robin",
                       "policy.capacity_factor=1.25",
                       "sim.flows=pair",
                       "workload.seed=9"};
  loaded l = load_text(BASE, ov1, 6);
  CHECK_EQ_INT(l.st, EP_OK);
  CHECK_EQ_INT(l.err_lines, 0);
  CHECK(l.sc.routing.seed == 9); /* the later override wins */
  CHECK_EQ_INT(l.sc.model.top_k, 4);
  CHECK_EQ_INT(l.sc.placement, EP_PLACEMENT_ROUND_ROBIN);
  CHECK(l.sc.capacity_factor == 1.25);
  CHECK_EQ_INT(l.sc.flows, EP_FLOWS_PAIR);
  loaded_free(&l);

  /* Switching the preset through overrides, rack count included. */
  const char *ov2[] = {"cluster.preset=gb200-nvl72", "cluster.racks=1", "parallel.ep=16"};
  l = load_text(MODEL "cluster:\n  preset: hgx-h100\n" PARALLEL WORKLOAD, ov2, 3);
  CHECK_EQ_INT(l.st, EP_OK);
  check_preset_cluster(&l.sc.cluster, "gb200-nvl72", 1);
  loaded_free(&l);

  /* A model name with spaces and '=' after the first one. */
  const char *ov3[] = {"model.name=a b=c"};
  l = load_text(BASE, ov3, 1);
  CHECK_EQ_INT(l.st, EP_OK);
  CHECK(strcmp(l.sc.model.name, "a b=c") == 0);
  loaded_free(&l);

  /* Bad overrides: --set:<index>:<col>, col 1 for the key, the value's column for values. */
  char unknown_key[256];
  snprintf(unknown_key, sizeof unknown_key, "--set:1:1: workload.sed: unknown key (valid: %s)",
           workload_keys);
  const struct {
    const char *ov, *want;
  } bad[] = {
      {"workload.seed=abc", "--set:1:15: workload.seed: expected an integer, got 'abc' (valid: "
                            "integer 0..18446744073709551615)"},
      {"workload.sed=1", unknown_key},
      {"work.seed=1", "--set:1:1: work: unknown section (valid: model, cluster, parallel, "
                      "workload, policy, sim)"},
      {"seed=1", "--set:1:1: seed: expected section.key=value (valid: section.key=value)"},
      {"workload.seed",
       "--set:1:1: workload.seed: expected section.key=value (valid: section.key=value)"},
      {"=5", "--set:1:1: (empty): expected section.key=value (valid: section.key=value)"},
      {"workload.seed=",
       "--set:1:15: workload.seed: missing value (valid: integer 0..18446744073709551615)"},
      {"sim.flows=fast", "--set:1:11: sim.flows: unknown value 'fast' (valid: auto, pair, port)"},
      /* A cross-field error caused by an override points at the override. */
      {"parallel.ep=5", "--set:1:1: parallel.ep: n_experts 16 is not divisible by ep 5 (valid: "
                        "1, 2, 4, 8, 16)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    EXPECT_ONE_OV(BASE, &bad[i].ov, 1, bad[i].want);
  const char *bad_second[] = {"workload.seed=1", "workload.tokens_per_gpu=1.5"};
  EXPECT_ONE_OV(BASE, bad_second, 2,
                "--set:2:25: workload.tokens_per_gpu: expected an integer, got float '1.5' "
                "(valid: integer 1..16777216)");
  const char *bad_nodes[] = {"cluster.nodes=1"};
  EXPECT_ONE_OV(MODEL "cluster:\n  preset: gb200-nvl72\n  racks: 1\n" PARALLEL WORKLOAD, bad_nodes,
                1,
                "--set:1:1: cluster.nodes: preset gb200-nvl72 counts racks, not nodes (valid: "
                "racks)");

  /* File errors come first, then override errors in order. */
  const char *bad_both[] = {"workload.seed=x", "model.top_k=0"};
  l = load_text(BASE "  routing: gauss\n", bad_both, 2);
  CHECK_EQ_INT(l.st, EP_ERR_PARSE);
  CHECK_EQ_INT(l.err_lines, 3);
  check_has_line(&l, "14:12: workload.routing: unknown value 'gauss' (valid: uniform, zipf, hot)",
                 __LINE__);
  const char *second = l.err ? strstr(l.err, "--set:1:15: workload.seed:") : NULL;
  const char *third = l.err ? strstr(l.err, "--set:2:13: model.top_k: out of range: 0") : NULL;
  CHECK(l.err && second && third && strstr(l.err, l.path) == l.err && second < third);
  loaded_free(&l);

  /* Bad arguments. */
  ep_scenario sc;
  CHECK_EQ_INT(ep_scenario_load("scenarios/default.yaml", NULL, 1, &sc, NULL), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_scenario_load(NULL, NULL, 0, &sc, NULL), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_scenario_load("scenarios/default.yaml", NULL, 0, NULL, NULL), EP_ERR_INVALID);
  loaded io = load_path("tests/scenarios/does-not-exist.yaml", NULL, 0);
  CHECK_EQ_INT(io.st, EP_ERR_IO);
  CHECK_STR_CONTAINS(io.err, "tests/scenarios/does-not-exist.yaml: cannot read:");
  loaded_free(&io);
}

static void test_hash(void)
{
  CHECK(ep_fnv1a64(EP_FNV1A64_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL); /* published vector */

  const char *text = BASE;
  uint64_t file_hash = ep_fnv1a64(EP_FNV1A64_INIT, text, strlen(text));
  loaded a = load_text(text, NULL, 0);
  CHECK_EQ_INT(a.st, EP_OK);
  CHECK(a.sc.content_hash == file_hash);

  loaded b = load_text(text, NULL, 0);
  CHECK(b.sc.content_hash == a.sc.content_hash); /* same bytes, same hash */

  loaded c = load_text(BASE "# one more comment\n", NULL, 0);
  CHECK_EQ_INT(c.st, EP_OK);
  CHECK(c.sc.content_hash != a.sc.content_hash); /* same values, different bytes */

  const char *ov[] = {"workload.seed=7", "sim.flows=pair"};
  uint64_t want = file_hash;
  for (int i = 0; i < 2; i++)
    want = ep_fnv1a64(want, ov[i], strlen(ov[i]) + 1); /* each override with its NUL */
  loaded d = load_text(text, ov, 2);
  CHECK_EQ_INT(d.st, EP_OK);
  CHECK(d.sc.content_hash == want);
  CHECK(d.sc.content_hash != a.sc.content_hash);

  const char *ov_other[] = {"workload.seed=8", "sim.flows=pair"};
  loaded e = load_text(text, ov_other, 2);
  CHECK(e.sc.content_hash != d.sc.content_hash);

  loaded_free(&a);
  loaded_free(&b);
  loaded_free(&c);
  loaded_free(&d);
  loaded_free(&e);
}

/* Loads BASE with one override; status EP_OK or exactly one error line that
 * contains want. For accepted values the plan is built too, as epsim run does,
 * so the router takes every value the schema takes. */
static void expect_range(const char *override, const char *want, int line)
{
  const char *ov[] = {"workload.tokens_per_gpu=4", override};
  loaded l = load_text(BASE, ov, 2);
  if (want) {
    if (l.st != EP_ERR_PARSE || l.err_lines != 1 || !l.err || !strstr(l.err, want))
      fprintf(stderr, "test_scenario.c:%d: %s: status %s, wanted one error with '%s', got:\n%s",
              line, override, ep_status_str(l.st), want, l.err ? l.err : "");
    CHECK_EQ_INT(l.st, EP_ERR_PARSE);
    CHECK_EQ_INT(l.err_lines, 1);
    CHECK_STR_CONTAINS(l.err, want);
  } else {
    if (l.st != EP_OK)
      fprintf(stderr, "test_scenario.c:%d: %s rejected:\n%s", line, override, l.err);
    CHECK_EQ_INT(l.st, EP_OK);
    ep_router *router = NULL;
    ep_plan plan = {0};
    if (l.st == EP_OK)
      CHECK_EQ_INT(ep_scenario_build_plan(&l.sc, &router, &plan), EP_OK);
    ep_plan_free(&plan);
    ep_router_free(router);
  }
  loaded_free(&l);
}

/* The ranges the models can take (issue 8): each end accepted and built, a
 * step beyond refused with the key and its valid range. The simulator's side
 * of the same values (SimGrid crashed, hung or deadlocked beyond them) is in
 * tests/test_cli.sh. */
static void test_model_ranges(void)
{
  const char *lat = "(valid: 0, or a number in 0.01..1e6)";
  const char *bw = "(valid: number in 0.001..1e6)";
  const char *lat_keys[] = {"cluster.nvlink_latency_us", "cluster.nic_latency_us"};
  const char *bw_keys[] = {"cluster.nvlink_GBps", "cluster.nic_GBps"};
  char ov[128], want[192];
  loaded l;
  for (int i = 0; i < 2; i++) {
    const char *ok_lat[] = {"0", "0.0", "0.01", "3.5", "1e6"};
    for (size_t v = 0; v < sizeof ok_lat / sizeof ok_lat[0]; v++) {
      snprintf(ov, sizeof ov, "%s=%s", lat_keys[i], ok_lat[v]);
      expect_range(ov, NULL, __LINE__);
    }
    /* 1e-20 and 1e-12 crashed SimGrid's solver, 2e11 aborted, 1e305 hung. */
    const char *bad_lat[] = {"1e-20", "1e-12", "0.0099", "-0.0", "1000001", "2e11", "1e305"};
    for (size_t v = 0; v < sizeof bad_lat / sizeof bad_lat[0]; v++) {
      snprintf(ov, sizeof ov, "%s=%s", lat_keys[i], bad_lat[v]);
      snprintf(want, sizeof want, "%s: out of range: %s %s", lat_keys[i], bad_lat[v], lat);
      expect_range(ov, strcmp(bad_lat[v], "-0.0") ? want : NULL, __LINE__);
    }
    /* -0 is 0, not a negative latency in the platform file. */
    const char *neg_zero[] = {ov};
    snprintf(ov, sizeof ov, "%s=-0", lat_keys[i]);
    l = load_text(BASE, neg_zero, 1);
    CHECK_EQ_INT(l.st, EP_OK);
    const double got = i ? l.sc.cluster.nic_latency_us : l.sc.cluster.nvlink_latency_us;
    CHECK(got == 0.0 && !signbit(got));
    loaded_free(&l);
    const char *ok_bw[] = {"0.001", "1e-3", "450", "1e6"};
    for (size_t v = 0; v < sizeof ok_bw / sizeof ok_bw[0]; v++) {
      snprintf(ov, sizeof ov, "%s=%s", bw_keys[i], ok_bw[v]);
      expect_range(ov, NULL, __LINE__);
    }
    /* 1e-300 printed 300-digit times, 1e300 deadlocked SimGrid. */
    const char *bad_bw[] = {"0", "0.000999", "1e-300", "1000000.1", "1e300"};
    for (size_t v = 0; v < sizeof bad_bw / sizeof bad_bw[0]; v++) {
      snprintf(ov, sizeof ov, "%s=%s", bw_keys[i], bad_bw[v]);
      snprintf(want, sizeof want, "%s: out of range: %s %s", bw_keys[i], bad_bw[v], bw);
      expect_range(ov, want, __LINE__);
    }
  }

  /* The router's own limit on top_k, and Zipf exponents whose popularity
   * underflows (150 failed at run with 256 experts; 64 is safe up to 65536). */
  const char *n1024[] = {"model.n_experts=1024", "model.top_k=1024"};
  l = load_text(BASE, n1024, 2);
  CHECK_EQ_INT(l.st, EP_OK);
  loaded_free(&l);
  const char *n2048[] = {"model.n_experts=2048", "model.top_k=1025"};
  l = load_text(BASE, n2048, 2);
  CHECK_EQ_INT(l.st, EP_ERR_PARSE);
  CHECK_EQ_INT(l.err_lines, 1);
  check_has_line(&l,
                 "--set:2:13: model.top_k: out of range: 1025 (valid: integer 1..1024, at most "
                 "n_experts)",
                 __LINE__);
  loaded_free(&l);
  expect_range("model.top_k=65536",
               "model.top_k: out of range: 65536 (valid: integer 1..1024, at most n_experts)",
               __LINE__);
  const char *zipf_ok[] = {"1e-300", "1.2", "64"};
  for (size_t v = 0; v < sizeof zipf_ok / sizeof zipf_ok[0]; v++) {
    const char *ov_zipf[] = {"workload.routing=zipf", ov};
    snprintf(ov, sizeof ov, "workload.zipf_exponent=%s", zipf_ok[v]);
    l = load_text(BASE, ov_zipf, 2);
    CHECK_EQ_INT(l.st, EP_OK);
    /* The steepest exponent with the most experts: the smallest popularity. */
    ep_router *router = NULL;
    CHECK_EQ_INT(ep_router_init(&router, &l.sc.routing, 65536, 8), EP_OK);
    ep_router_free(router);
    loaded_free(&l);
  }
  const char *zipf_bad[] = {"64.0001", "135", "150", "1e300"};
  for (size_t v = 0; v < sizeof zipf_bad / sizeof zipf_bad[0]; v++) {
    const char *ov_zipf[] = {"workload.routing=zipf", ov};
    snprintf(ov, sizeof ov, "workload.zipf_exponent=%s", zipf_bad[v]);
    snprintf(want, sizeof want,
             "--set:2:24: workload.zipf_exponent: out of range: %s (valid: number in (0, 64])",
             zipf_bad[v]);
    l = load_text(BASE, ov_zipf, 2);
    CHECK_EQ_INT(l.st, EP_ERR_PARSE);
    CHECK_EQ_INT(l.err_lines, 1);
    check_has_line(&l, want, __LINE__);
    loaded_free(&l);
  }
  /* hot_share's extremes route (probabilities stay > 0). */
  const char *hot_tiny[] = {"workload.routing=hot", "workload.hot_experts=1",
                            "workload.hot_share=2.3e-308", "model.top_k=16"};
  l = load_text(BASE, hot_tiny, 4);
  CHECK_EQ_INT(l.st, EP_OK);
  ep_router *router = NULL;
  ep_plan plan = {0};
  CHECK_EQ_INT(ep_scenario_build_plan(&l.sc, &router, &plan), EP_OK);
  ep_plan_free(&plan);
  ep_router_free(router);
  loaded_free(&l);

  /* Every byte of the layer is counted in int64: tokens x ep x top_k copies of
   * the larger payload. The key caps allow 2^50 copies of 2^21 bytes. */
  const char *big[] = {"model.n_experts=1024", "model.top_k=1024",
                       "model.hidden=1048576", "cluster.nodes=8192",
                       "parallel.ep=1024",     "workload.tokens_per_gpu=16777216"};
  l = load_text(BASE, big, 6);
  CHECK_EQ_INT(l.st, EP_ERR_PARSE);
  CHECK_EQ_INT(l.err_lines, 1);
  check_has_line(&l,
                 "--set:6:25: workload.tokens_per_gpu: 16777216 tokens x ep 1024 x top_k 1024 x "
                 "2097152 bytes per token overflow the plan's int64 byte counts (valid: integer "
                 "1..4194303 with this ep, top_k and hidden)",
                 __LINE__);
  loaded_free(&l);
  big[5] = "workload.tokens_per_gpu=4194303";
  l = load_text(BASE, big, 6);
  CHECK_EQ_INT(l.st, EP_OK);
  loaded_free(&l);
}

int main(void)
{
  test_bundled();
  test_defaults();
  test_all_keys();
  test_structure_errors();
  test_syntax_errors();
  test_type_errors();
  test_layout_errors();
  test_all_errors_reported();
  test_overrides();
  test_hash();
  test_model_ranges();
  return check_exit_code("test_scenario");
}
