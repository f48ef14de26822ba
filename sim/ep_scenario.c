/* The scenario schema: epsim's sections and typed keys for the key-file reader
 * (ep_keyfile.h), the cross-key checks of the parallel layout, cluster and
 * workload, and the validated ep_scenario. scenarios/README.md is the format's
 * reference. */
#include "ep_scenario.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "ep_fabric.h"
#include "ep_keyfile.h"

typedef enum { S_MODEL, S_CLUSTER, S_PARALLEL, S_WORKLOAD, S_POLICY, S_SIM, S_COUNT } ep__sec;

static const ep_keyfile_section ep__sections[S_COUNT] = {
    [S_MODEL] = {"model", 1},       [S_CLUSTER] = {"cluster", 1}, [S_PARALLEL] = {"parallel", 1},
    [S_WORKLOAD] = {"workload", 1}, [S_POLICY] = {"policy", 0},   [S_SIM] = {"sim", 0},
};

typedef enum {
  K_NAME,
  K_N_EXPERTS,
  K_TOP_K,
  K_HIDDEN,
  K_MOE_INTERMEDIATE,
  K_N_SHARED,
  K_DISPATCH_DTYPE,
  K_COMBINE_DTYPE,
  K_PRESET,
  K_NODES,
  K_RACKS,
  K_GPU,
  K_GPUS_PER_NODE,
  K_NVLINK_GBPS,
  K_NVLINK_LAT,
  K_NIC_GBPS,
  K_NIC_LAT,
  K_FABRIC,
  K_EP,
  K_TP,
  K_DP,
  K_PLACEMENT,
  K_TOKENS,
  K_ROUTING,
  K_ZIPF,
  K_HOT_EXPERTS,
  K_HOT_SHARE,
  K_SEED,
  K_CAPACITY,
  K_DISPATCH,
  K_FLOWS,
  K_COUNT
} ep__key;

/* Name lengths fit ep_model_cfg.name. */
#define EP__NAME_MAX 63
_Static_assert(sizeof((ep_model_cfg *)0)->name == EP__NAME_MAX + 1, "model name length");

static const char *const ep__placements[] = {"contiguous", "round_robin", NULL};
static const char *const ep__routings[] = {"uniform", "zipf", "hot", NULL};
static const char *const ep__flows[] = {"auto", "pair", "port", NULL};

_Static_assert(EP_PLACEMENT_CONTIGUOUS == 0 && EP_PLACEMENT_ROUND_ROBIN == 1, "placement order");
_Static_assert(EP_ROUTING_UNIFORM == 0 && EP_ROUTING_ZIPF == 1 && EP_ROUTING_HOT == 2,
               "routing order");
_Static_assert(EP_FLOWS_AUTO == 0 && EP_FLOWS_PAIR == 1 && EP_FLOWS_PORT == 2, "flows order");

#define EP__INT(s, n, lo, hi, v)                                                                   \
  {                                                                                                \
    .section = s, .name = n, .type = EP_KEYFILE_INT, .min = lo, .max = hi, .valid = v              \
  }
#define EP__INT_REQUIRED(s, n, lo, hi, v)                                                          \
  {                                                                                                \
    .section = s, .name = n, .type = EP_KEYFILE_INT, .required = 1, .min = lo, .max = hi,          \
    .valid = v                                                                                     \
  }
#define EP__NUM(s, n, lo, lo_open, hi, hi_open, none, v)                                           \
  {                                                                                                \
    .section = s, .name = n, .type = EP_KEYFILE_NUMBER, .num_min = lo, .num_max = hi,              \
    .num_min_open = lo_open, .num_max_open = hi_open, .none_ok = none, .valid = v                  \
  }
/* Link ranges (scenarios/README.md says why). A latency is 0 or at least
 * 0.01 µs: each GPU link carries half of it, and SimGrid 3.32 warns below its
 * timing precision of 1 ns and crashes in its max-min solver below ~1e-11 µs;
 * above 1e6 µs (1 s, 5 orders below the ~2e11 µs where it aborts) no network
 * is meant. Bandwidths: 1 MB/s (1e-3 GB/s), 100x below 1 GbE, up to the
 * fabric's latency pads (EP_FABRIC_PAD_GBPS, 1 PB/s), which cap a faster port
 * in port flows; SimGrid reports a deadlock at ~1e300. */
#define EP__LATENCY(n)                                                                             \
  {                                                                                                \
    .section = S_CLUSTER, .name = n, .type = EP_KEYFILE_NUMBER, .num_min = 0.01, .num_max = 1e6,   \
    .zero_ok = 1, .valid = "0, or a number in 0.01..1e6"                                           \
  }
#define EP__BANDWIDTH(n)                                                                           \
  {                                                                                                \
    .section = S_CLUSTER, .name = n, .type = EP_KEYFILE_NUMBER, .num_min = 1e-3,                   \
    .num_max = EP_FABRIC_PAD_GBPS, .valid = "number in 0.001..1e6"                                 \
  }
#define EP__STR_(x) #x
#define EP__STR(x) EP__STR_(x)
#define EP__ENUM(s, n, e)                                                                          \
  {                                                                                                \
    .section = s, .name = n, .type = EP_KEYFILE_ENUM, .names = e                                   \
  }

/* Integer caps are far above any published model or cluster and keep derived
 * counts (tokens_per_gpu * ep * top_k, nodes * gpus_per_node) inside int64 and
 * int32. The table order is the order of the "valid:" key lists. The GPU's
 * valid-text, the catalog, is filled in at load. */
static const ep_keyfile_spec ep__keys[K_COUNT] = {
    [K_NAME] = {.section = S_MODEL,
                .name = "name",
                .type = EP_KEYFILE_STRING,
                .required = 1,
                .max = EP__NAME_MAX,
                .valid = "string of 1..63 bytes"},
    [K_N_EXPERTS] = EP__INT_REQUIRED(S_MODEL, "n_experts", 1, 65536, "integer 1..65536"),
    [K_TOP_K] = EP__INT_REQUIRED(S_MODEL, "top_k", 1, EP_ROUTER_MAX_TOP_K,
                                 "integer 1.." EP__STR(EP_ROUTER_MAX_TOP_K) ", at most n_experts"),
    [K_HIDDEN] = EP__INT_REQUIRED(S_MODEL, "hidden", 1, 1048576, "integer 1..1048576"),
    [K_MOE_INTERMEDIATE] =
        EP__INT_REQUIRED(S_MODEL, "moe_intermediate", 1, 1048576, "integer 1..1048576"),
    [K_N_SHARED] = EP__INT(S_MODEL, "n_shared_experts", 0, 1024, "integer 0..1024"),
    [K_DISPATCH_DTYPE] = EP__ENUM(S_MODEL, "dispatch_dtype", ep_dtype_payload_names),
    [K_COMBINE_DTYPE] = EP__ENUM(S_MODEL, "combine_dtype", ep_dtype_payload_names),
    [K_PRESET] = EP__ENUM(S_CLUSTER, "preset", ep_cluster_preset_names),
    [K_NODES] = EP__INT(S_CLUSTER, "nodes", 1, 65536, "integer 1..65536"),
    [K_RACKS] = EP__INT(S_CLUSTER, "racks", 1, 65536, "integer 1..65536"),
    [K_GPU] = {.section = S_CLUSTER, .name = "gpu", .type = EP_KEYFILE_STRING, .max = INT64_MAX},
    [K_GPUS_PER_NODE] = EP__INT(S_CLUSTER, "gpus_per_node", 1, 1024, "integer 1..1024"),
    [K_NVLINK_GBPS] = EP__BANDWIDTH("nvlink_GBps"),
    [K_NVLINK_LAT] = EP__LATENCY("nvlink_latency_us"),
    [K_NIC_GBPS] = EP__BANDWIDTH("nic_GBps"),
    [K_NIC_LAT] = EP__LATENCY("nic_latency_us"),
    [K_FABRIC] = EP__ENUM(S_CLUSTER, "fabric", ep_fabric_kind_names),
    [K_EP] = EP__INT_REQUIRED(S_PARALLEL, "ep", 1, 65536, "integer 1..65536"),
    [K_TP] = EP__INT(S_PARALLEL, "tp", 1, 1, "1, tp > 1 is not supported yet"),
    [K_DP] = EP__INT(S_PARALLEL, "dp", 1, 1, "1, dp > 1 is not supported yet"),
    [K_PLACEMENT] = EP__ENUM(S_PARALLEL, "placement", ep__placements),
    [K_TOKENS] = EP__INT_REQUIRED(S_WORKLOAD, "tokens_per_gpu", 1, 16777216, "integer 1..16777216"),
    [K_ROUTING] = EP__ENUM(S_WORKLOAD, "routing", ep__routings),
    [K_ZIPF] = EP__NUM(S_WORKLOAD, "zipf_exponent", 0, 1, EP_ROUTING_MAX_ZIPF_EXPONENT, 0, 0,
                       "number in (0, 64]"),
    [K_HOT_EXPERTS] = EP__INT(S_WORKLOAD, "hot_experts", 1, 65535, "integer 1..n_experts-1"),
    [K_HOT_SHARE] = EP__NUM(S_WORKLOAD, "hot_share", 0, 1, 1, 1, 0, "number in (0, 1)"),
    [K_SEED] = {.section = S_WORKLOAD,
                .name = "seed",
                .type = EP_KEYFILE_UINT64,
                .valid = "integer 0..18446744073709551615"},
    [K_CAPACITY] =
        EP__NUM(S_POLICY, "capacity_factor", 0, 1, HUGE_VAL, 1, 1, "none or a number > 0"),
    [K_DISPATCH] = EP__ENUM(S_POLICY, "dispatch", ep_dispatch_names),
    [K_FLOWS] = EP__ENUM(S_SIM, "flows", ep__flows),
};

/* "H100, H800, ...": the catalog's names, cluster.gpu's valid-text. */
static void ep__gpu_names(char *buf, size_t n)
{
  int32_t n_gpus = 0;
  const ep_gpu_spec *cat = ep_gpu_catalog(&n_gpus);
  size_t used = 0;
  buf[0] = '\0';
  for (int32_t i = 0; cat && i < n_gpus; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", cat[i].name);
    if (w < 0 || (size_t)w >= n - used)
      break;
    used += (size_t)w;
  }
}

/* The catalog entry cluster.gpu names, or NULL (then the key is rejected). */
static const ep_gpu_spec *ep__find_gpu(ep_keyfile *kf, const ep_keyfile_value *key)
{
  if (!key[K_GPU].ok)
    return NULL;
  const ep_gpu_spec *gpu = ep_gpu_catalog_find(key[K_GPU].text);
  if (!gpu)
    ep_keyfile_reject(kf, K_GPU, "unknown GPU '%.*s'", EP_KEYFILE_SHOW, key[K_GPU].text);
  return gpu;
}

/* ---- cross-field checks ---- */

/* Both set and valid. */
#define EP__OK(k) (key[k].ok)

/* Builds the cluster (gpu: cluster.gpu's catalog entry, NULL when not given or
 * unknown); returns 1 when it is complete and valid. */
static int ep__resolve_cluster(ep_keyfile *kf, const ep_gpu_spec *gpu, ep_cluster *cl)
{
  const ep_keyfile_value *key = ep_keyfile_values(kf);
  memset(cl, 0, sizeof *cl);
  if (!ep_keyfile_section_present(kf, S_CLUSTER))
    return 0;
  int ok = 1;
  for (int k = K_PRESET; k <= K_FABRIC; k++)
    if (key[k].present && !key[k].ok)
      ok = 0;
  if (key[K_PRESET].present) {
    if (!key[K_PRESET].ok)
      return 0;
    /* The enum index is the preset's row; the row names its count key. */
    const ep_cluster_preset_desc *row = &ep_cluster_presets(NULL)[key[K_PRESET].e];
    const char *preset = row->name;
    int racks = strcmp(row->count_key, ep__keys[K_RACKS].name) == 0;
    ep__key count = racks ? K_RACKS : K_NODES, wrong = racks ? K_NODES : K_RACKS;
    if (key[wrong].present) {
      ep_keyfile_error_at(kf, wrong, EP_KEYFILE_AT_KEY, ep__keys[count].name,
                          "preset %s counts %s, not %s", preset, ep__keys[count].name,
                          ep__keys[wrong].name);
      ok = 0;
    } else if (!key[count].present) {
      char why[96];
      snprintf(why, sizeof why, " with preset %s", preset);
      ep_keyfile_require(kf, count, why);
      ok = 0;
    }
    if (!ok || !key[count].ok)
      return 0;
    ep_status st = ep_cluster_preset(preset, (int32_t)key[count].i, cl);
    if (st != EP_OK) {
      ep_keyfile_error_at(kf, K_PRESET, EP_KEYFILE_AT_VALUE, NULL, "preset rejected: %s",
                          ep_status_str(st));
      return 0;
    }
    if (key[K_GPU].present)
      cl->gpu = gpu;
    if (key[K_GPUS_PER_NODE].present)
      cl->gpus_per_node = (int32_t)key[K_GPUS_PER_NODE].i;
  } else {
    if (key[K_RACKS].present) {
      /* The presets whose count key is racks, from the preset table. */
      char racks_presets[128] = "";
      int32_t n_presets = 0;
      const ep_cluster_preset_desc *rows = ep_cluster_presets(&n_presets);
      for (int32_t i = 0; i < n_presets; i++)
        if (strcmp(rows[i].count_key, ep__keys[K_RACKS].name) == 0) {
          const size_t used = strlen(racks_presets);
          snprintf(racks_presets + used, sizeof racks_presets - used, "%s%s", used ? ", " : "",
                   rows[i].name);
        }
      ep_keyfile_error_at(kf, K_RACKS, EP_KEYFILE_AT_KEY, "nodes", "racks needs preset: %s",
                          racks_presets);
      ok = 0;
    }
    static const ep__key need[] = {K_GPU,        K_GPUS_PER_NODE, K_NODES,  K_NVLINK_GBPS,
                                   K_NVLINK_LAT, K_NIC_GBPS,      K_NIC_LAT};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
      if (!key[need[i]].present) {
        ep_keyfile_require(kf, need[i], " without a preset");
        ok = 0;
      }
    }
    if (!ok)
      return 0;
    cl->gpu = gpu;
    cl->gpus_per_node = (int32_t)key[K_GPUS_PER_NODE].i;
    cl->n_nodes = (int32_t)key[K_NODES].i;
  }
  if (key[K_NVLINK_GBPS].present)
    cl->nvlink_GBps = key[K_NVLINK_GBPS].d;
  if (key[K_NVLINK_LAT].present)
    cl->nvlink_latency_us = key[K_NVLINK_LAT].d;
  if (key[K_NIC_GBPS].present)
    cl->nic_GBps = key[K_NIC_GBPS].d;
  if (key[K_NIC_LAT].present)
    cl->nic_latency_us = key[K_NIC_LAT].d;
  if (key[K_FABRIC].present)
    cl->fabric = (ep_fabric_kind)key[K_FABRIC].e;
  return ok;
}

/* "1, 2, 4, ..." : divisors of n up to max_d, for the ep error's valid-text. */
static void ep__divisors(int64_t n, int64_t max_d, char *buf, size_t size)
{
  size_t used = 0;
  buf[0] = '\0';
  for (int64_t d = 1; d <= n && d <= max_d; d++) {
    if (n % d)
      continue;
    int w = snprintf(buf + used, size - used, "%s%" PRId64, used ? ", " : "", d);
    if (w < 0 || (size_t)w >= size - used) {
      snprintf(buf + used, size - used, "...");
      return;
    }
    used += (size_t)w;
  }
}

/* The plan counts every byte of the layer in int64 (ep_plan_build refuses more):
 * tokens_per_gpu * ep * top_k copies of the larger of the two payloads. The
 * key caps keep the copies below 2^50, not their bytes. */
static void ep__check_bytes(ep_keyfile *kf, const ep_scenario *sc)
{
  const ep_keyfile_value *key = ep_keyfile_values(kf);
  if (!EP__OK(K_TOKENS) || !EP__OK(K_EP) || !EP__OK(K_TOP_K) || !EP__OK(K_HIDDEN) ||
      (key[K_DISPATCH_DTYPE].present && !key[K_DISPATCH_DTYPE].ok) ||
      (key[K_COMBINE_DTYPE].present && !key[K_COMBINE_DTYPE].ok))
    return;
  const ep__key dtype_keys[] = {K_DISPATCH_DTYPE, K_COMBINE_DTYPE};
  const ep_dtype defaults[] = {sc->model.dispatch_dtype, sc->model.combine_dtype};
  int64_t bytes = 0;
  for (int i = 0; i < 2; i++) {
    const ep__key k = dtype_keys[i];
    const ep_dtype dt = key[k].present ? (ep_dtype)key[k].e : defaults[i];
    const int64_t b = ep_dtype_bytes_per_token(dt, (int32_t)key[K_HIDDEN].i);
    bytes = b > bytes ? b : bytes; /* < 0 (fp8 with a bad hidden) is reported above */
  }
  const int64_t copies_per_token = key[K_EP].i * key[K_TOP_K].i; /* <= 2^26 */
  if (bytes <= 0 || key[K_TOKENS].i <= INT64_MAX / copies_per_token / bytes)
    return;
  char valid[96];
  snprintf(valid, sizeof valid, "integer 1..%" PRId64 " with this ep, top_k and hidden",
           INT64_MAX / copies_per_token / bytes);
  ep_keyfile_error_at(kf, K_TOKENS, EP_KEYFILE_AT_VALUE, valid,
                      "%" PRId64 " tokens x ep %" PRId64 " x top_k %" PRId64 " x %" PRId64
                      " bytes per token overflow the plan's int64 byte counts",
                      key[K_TOKENS].i, key[K_EP].i, key[K_TOP_K].i, bytes);
}

/* The checks across keys (each key's own type and range, and the always
 * required keys, are the reader's); sc holds the defaults (EP_SCENARIO_INIT),
 * and gets its cluster. */
static void ep__check(ep_keyfile *kf, ep_scenario *sc)
{
  const ep_keyfile_value *key = ep_keyfile_values(kf);
  char valid[256];

  if (EP__OK(K_TOP_K) && EP__OK(K_N_EXPERTS) && key[K_TOP_K].i > key[K_N_EXPERTS].i) {
    /* top_k's own range already holds it at EP_ROUTER_MAX_TOP_K. */
    snprintf(valid, sizeof valid, "integer 1..%" PRId64, key[K_N_EXPERTS].i);
    ep_keyfile_error_at(kf, K_TOP_K, EP_KEYFILE_AT_KEY, valid,
                        "top_k %" PRId64 " exceeds n_experts %" PRId64, key[K_TOP_K].i,
                        key[K_N_EXPERTS].i);
  }

  /* A row's size must exist for the payload dtype (fp8 scales whole blocks). */
  const ep__key dtype_keys[] = {K_DISPATCH_DTYPE, K_COMBINE_DTYPE};
  for (size_t i = 0; i < sizeof dtype_keys / sizeof dtype_keys[0]; i++) {
    const ep__key k = dtype_keys[i];
    if (EP__OK(k) && EP__OK(K_HIDDEN) &&
        ep_dtype_bytes_per_token((ep_dtype)key[k].e, (int32_t)key[K_HIDDEN].i) < 0) {
      snprintf(valid, sizeof valid, "bf16, or hidden a multiple of %d", EP_FP8_BLOCK);
      ep_keyfile_error_at(kf, k, EP_KEYFILE_AT_VALUE, valid,
                          "%s needs hidden a multiple of %d, hidden is %" PRId64, key[k].text,
                          EP_FP8_BLOCK, key[K_HIDDEN].i);
    }
  }

  ep__check_bytes(kf, sc);

  const ep_gpu_spec *gpu = ep__find_gpu(kf, key);
  int cluster_ok = ep__resolve_cluster(kf, gpu, &sc->cluster);
  int64_t n_gpus = cluster_ok ? (int64_t)sc->cluster.n_nodes * sc->cluster.gpus_per_node : 0;
  if (EP__OK(K_EP) && cluster_ok && key[K_EP].i > n_gpus) {
    snprintf(valid, sizeof valid, "integer 1..%" PRId64, n_gpus);
    ep_keyfile_error_at(kf, K_EP, EP_KEYFILE_AT_KEY, valid,
                        "ep %" PRId64 " exceeds the cluster's %" PRId64 " GPUs", key[K_EP].i,
                        n_gpus);
  }
  if (EP__OK(K_EP) && EP__OK(K_N_EXPERTS) && key[K_N_EXPERTS].i % key[K_EP].i != 0) {
    ep__divisors(key[K_N_EXPERTS].i, cluster_ok ? n_gpus : key[K_N_EXPERTS].i, valid, sizeof valid);
    ep_keyfile_error_at(kf, K_EP, EP_KEYFILE_AT_KEY, valid,
                        "n_experts %" PRId64 " is not divisible by ep %" PRId64, key[K_N_EXPERTS].i,
                        key[K_EP].i);
  }

  /* Routing parameters belong to one routing kind each. */
  if (!key[K_ROUTING].present || key[K_ROUTING].ok) {
    int routing = key[K_ROUTING].present ? key[K_ROUTING].e : (int)sc->routing.kind;
    static const struct {
      ep__key k;
      int kind;
    } only[] = {
        {K_ZIPF, EP_ROUTING_ZIPF}, {K_HOT_EXPERTS, EP_ROUTING_HOT}, {K_HOT_SHARE, EP_ROUTING_HOT}};
    for (size_t i = 0; i < sizeof only / sizeof only[0]; i++) {
      if (key[only[i].k].present && routing != only[i].kind) {
        snprintf(valid, sizeof valid, "routing: %s", ep__routings[only[i].kind]);
        ep_keyfile_error_at(kf, only[i].k, EP_KEYFILE_AT_KEY, valid,
                            "only used with routing: %s, but routing is %s",
                            ep__routings[only[i].kind], ep__routings[routing]);
      }
    }
    if (routing == EP_ROUTING_HOT) {
      ep_keyfile_require(kf, K_HOT_EXPERTS, " with routing: hot");
      ep_keyfile_require(kf, K_HOT_SHARE, " with routing: hot");
    }
  }
  if (EP__OK(K_HOT_EXPERTS) && EP__OK(K_N_EXPERTS) && key[K_HOT_EXPERTS].i >= key[K_N_EXPERTS].i) {
    snprintf(valid, sizeof valid, "integer 1..%" PRId64, key[K_N_EXPERTS].i - 1);
    ep_keyfile_error_at(kf, K_HOT_EXPERTS, EP_KEYFILE_AT_KEY, valid,
                        "hot_experts %" PRId64 " must be below n_experts %" PRId64,
                        key[K_HOT_EXPERTS].i, key[K_N_EXPERTS].i);
  }
}

/* Sets every key given over sc's defaults (EP_SCENARIO_INIT). */
static void ep__fill(const ep_keyfile_value *key, ep_scenario *sc)
{
  ep_model_cfg *m = &sc->model;
  memcpy(m->name, key[K_NAME].text, key[K_NAME].len);
  m->name[key[K_NAME].len] = '\0';
  m->n_experts = (int32_t)key[K_N_EXPERTS].i;
  m->top_k = (int32_t)key[K_TOP_K].i;
  m->hidden = (int32_t)key[K_HIDDEN].i;
  m->moe_intermediate = (int32_t)key[K_MOE_INTERMEDIATE].i;
  if (key[K_N_SHARED].present)
    m->n_shared_experts = (int32_t)key[K_N_SHARED].i;
  if (key[K_DISPATCH_DTYPE].present)
    m->dispatch_dtype = (ep_dtype)key[K_DISPATCH_DTYPE].e;
  if (key[K_COMBINE_DTYPE].present)
    m->combine_dtype = (ep_dtype)key[K_COMBINE_DTYPE].e;
  sc->ep = (int32_t)key[K_EP].i;
  if (key[K_PLACEMENT].present)
    sc->placement = (ep_placement_kind)key[K_PLACEMENT].e;
  sc->tokens_per_gpu = key[K_TOKENS].i;
  ep_routing_cfg *routing = &sc->routing;
  if (key[K_ROUTING].present)
    routing->kind = (ep_routing_kind)key[K_ROUTING].e;
  if (key[K_ZIPF].present)
    routing->zipf_exponent = key[K_ZIPF].d;
  if (key[K_HOT_EXPERTS].present)
    routing->hot_experts = (int32_t)key[K_HOT_EXPERTS].i;
  if (key[K_HOT_SHARE].present)
    routing->hot_share = key[K_HOT_SHARE].d;
  if (key[K_SEED].present)
    routing->seed = key[K_SEED].u;
  if (key[K_CAPACITY].present && !key[K_CAPACITY].none)
    sc->capacity_factor = key[K_CAPACITY].d;
  if (key[K_DISPATCH].present)
    sc->dispatch = ep_dispatch_find(ep_dispatch_names[key[K_DISPATCH].e]);
  if (key[K_FLOWS].present)
    sc->flows = (ep_flow_mode)key[K_FLOWS].e;
}

ep_status ep_scenario_load(const char *path, const char *const *overrides, int n_overrides,
                           ep_scenario *out, FILE *err)
{
  if (!path || !out || n_overrides < 0 || (n_overrides > 0 && !overrides))
    return EP_ERR_INVALID;
  /* cluster.gpu's valid-text is the catalog, known at run time. */
  ep_keyfile_spec keys[K_COUNT];
  char gpus[256];
  memcpy(keys, ep__keys, sizeof keys);
  ep__gpu_names(gpus, sizeof gpus);
  keys[K_GPU].valid = gpus;
  const ep_keyfile_schema schema = {"scenario", ep__sections, S_COUNT, keys, K_COUNT};

  ep_keyfile *kf = NULL;
  ep_status st = ep_keyfile_load(&schema, path, overrides, n_overrides, &kf, err);
  if (st != EP_OK)
    return st;
  ep_scenario sc = EP_SCENARIO_INIT;
  ep__check(kf, &sc);
  st = ep_keyfile_report(kf, err);
  if (st == EP_OK) {
    ep__fill(ep_keyfile_values(kf), &sc);
    sc.content_hash = ep_keyfile_hash(kf);
    *out = sc;
  }
  ep_keyfile_free(kf);
  return st;
}
