/* Hardware catalog and cluster presets.
 * Per-GPU numbers come from shared/research/data/hardware.csv (dense TFLOPS,
 * HBM TB/s converted to GB/s, NVLink per direction); every scale-out NIC is one
 * 400 Gb/s ConnectX-7 = 50 GB/s per direction. */
#include "ep_topology.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

static const ep_gpu_spec catalog[] = {
    {"H100", 989.4, 1978.9, 3350.0, 80.0, 450.0, 8, 50.0,
     "NVIDIA H100 SXM5 datasheet (dense = sparse/2); 1x CX7 400 Gb/s per GPU"},
    {"H800", 989.4, 1978.9, 3350.0, 80.0, 200.0, 8, 50.0,
     "DeepEP issue #16 (NVLink 200 GB/s nominal, ~160 achievable); compute assumed = H100 SXM "
     "(unverified); 1x CX7 400 Gb/s IB per GPU"},
    {"H200", 989.4, 1978.9, 4800.0, 141.0, 450.0, 8, 50.0,
     "NVIDIA H200 datasheet (unverified, from memory); compute = H100 SXM; 1x CX7 400 Gb/s"},
    {"B200", 2250.0, 4500.0, 7700.0, 180.0, 900.0, 8, 50.0,
     "verda.com GB300 blog table (dense); SemiAnalysis InferenceX (HGX B200, 1x CX7 400 Gb/s)"},
    {"GB200", 2500.0, 5000.0, 8000.0, 186.0, 900.0, 72, 50.0,
     "NVIDIA GB200 NVL72 rack spec / 72 GPUs, dense = sparse/2 (Verda lists 2250/4500 "
     "TFLOPS bf16/fp8); 1x CX7 400 Gb/s per GPU (MLPerf Crusoe GB200 system)"},
};

#define N_CATALOG ((int32_t)(sizeof catalog / sizeof catalog[0]))

static int name_equal_nocase(const char *a, const char *b)
{
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
      return 0;
  return *a == *b;
}

/* Index of the row called name (case-insensitive), or -1: rows is a table of
 * n_rows rows of row_bytes each, every row starting with its const char *name. */
static int32_t find_row(const void *rows, int32_t n_rows, size_t row_bytes, const char *name)
{
  for (int32_t i = 0; name && i < n_rows; i++) {
    const char *const *row_name = (const void *)((const char *)rows + (size_t)i * row_bytes);
    if (name_equal_nocase(*row_name, name))
      return i;
  }
  return -1;
}

_Static_assert(offsetof(ep_gpu_spec, name) == 0, "find_row reads a row's name first");
_Static_assert(offsetof(ep_cluster_preset_desc, name) == 0, "find_row reads a row's name first");

const ep_gpu_spec *ep_gpu_catalog_find(const char *name)
{
  const int32_t i = find_row(catalog, N_CATALOG, sizeof catalog[0], name);
  return i < 0 ? NULL : &catalog[i];
}

const ep_gpu_spec *ep_gpu_catalog(int32_t *n)
{
  if (n)
    *n = N_CATALOG;
  return catalog;
}

/* Link latencies (one way, GPU to GPU). The research tables hold no direct
 * link-latency measurement: TRT-LLM's one-sided NVLink all-to-all on GB200
 * takes ~18 us at batch 1 (trtllm_nvlink_onesided_a2a.csv) and DeepEP's
 * low-latency kernels 77-163 us (deepep_low_latency.csv), but both are kernel
 * and synchronisation overheads, not wire latency. So we use the usual figures:
 * ~2 us GPU-to-GPU over NVSwitch, ~4 us across nodes (two NIC hops through an
 * InfiniBand leaf/spine). Kernel overheads belong to the cost model. */
#define EP_NVLINK_LATENCY_US 2.0
#define EP_NIC_LATENCY_US 4.0

/* The preset table, one X(...) per row; it expands to the rows and to their
 * names, so the two cannot disagree. An HGX board is one NVLink domain of 8
 * ("nodes"); a GB200 NVL72 rack is one of 72 ("racks"). Columns: name, count
 * key, GPU, GPUs per domain, NVLink GB/s, NVLink latency, NIC GB/s, NIC latency. */
#define EP_CLUSTER_PRESETS(X)                                                                      \
  X("hgx-h100", "nodes", "H100", 8, 450.0, EP_NVLINK_LATENCY_US, 50.0, EP_NIC_LATENCY_US)          \
  X("hgx-h800", "nodes", "H800", 8, 200.0, EP_NVLINK_LATENCY_US, 50.0, EP_NIC_LATENCY_US)          \
  X("gb200-nvl72", "racks", "GB200", 72, 900.0, EP_NVLINK_LATENCY_US, 50.0, EP_NIC_LATENCY_US)

#define EP_PRESET_ROW(name, key, gpu, gpn, nvl, nvl_us, nic, nic_us)                               \
  {name, key, gpu, gpn, nvl, nvl_us, nic, nic_us, EP_FABRIC_NONBLOCKING},
#define EP_PRESET_NAME(name, key, gpu, gpn, nvl, nvl_us, nic, nic_us) name,

static const ep_cluster_preset_desc presets[] = {EP_CLUSTER_PRESETS(EP_PRESET_ROW)};

#define N_PRESETS ((int32_t)(sizeof presets / sizeof presets[0]))

const char *const ep_fabric_kind_names[] = {"nonblocking", NULL};

const char *const ep_cluster_preset_names[] = {EP_CLUSTER_PRESETS(EP_PRESET_NAME) NULL};

const ep_cluster_preset_desc *ep_cluster_presets(int32_t *n)
{
  if (n)
    *n = N_PRESETS;
  return presets;
}

const ep_cluster_preset_desc *ep_cluster_preset_find(const char *name)
{
  const int32_t i = find_row(presets, N_PRESETS, sizeof presets[0], name);
  return i < 0 ? NULL : &presets[i];
}

ep_status ep_cluster_preset(const char *name, int32_t n_nodes, ep_cluster *out)
{
  const ep_cluster_preset_desc *p = ep_cluster_preset_find(name);
  if (!p || !out || n_nodes <= 0)
    return EP_ERR_INVALID;
  const ep_gpu_spec *gpu = ep_gpu_catalog_find(p->gpu);
  if (!gpu)
    return EP_ERR_INVALID; /* the tables above disagree: a bug */
  if ((int64_t)n_nodes * p->gpus_per_node > INT32_MAX)
    return EP_ERR_INVALID;
  ep_cluster c;
  memset(&c, 0, sizeof c);
  strncpy(c.preset, p->name, sizeof c.preset - 1);
  c.gpu = gpu;
  c.n_nodes = n_nodes;
  c.gpus_per_node = p->gpus_per_node;
  c.nvlink_GBps = p->nvlink_GBps;
  c.nvlink_latency_us = p->nvlink_latency_us;
  c.nic_GBps = p->nic_GBps;
  c.nic_latency_us = p->nic_latency_us;
  c.fabric = p->fabric;
  *out = c;
  return EP_OK;
}
