/* Cluster model: GPUs grouped into NVLink domains ("nodes": an HGX board of 8,
 * or a whole GB200 NVL72 rack of 72), every GPU with its own NIC into a
 * scale-out fabric. Hardware catalog, preset table and the plain ep_cluster
 * config; ep_fabric.h derives the ports, links and routes from it.
 *
 * GPU g lives on node g / gpus_per_node. Latencies are one-way GPU-to-GPU:
 * nvlink_latency_us between two GPUs of a node, nic_latency_us between GPUs of
 * different nodes (NICs and fabric included). Bandwidths are per direction. */
#ifndef EP_TOPOLOGY_H
#define EP_TOPOLOGY_H

#include <stdint.h>

#include "ep_status.h"

typedef struct ep_gpu_spec {
  const char *name; /* "H100", "H800", "H200", "B200", "GB200" */
  double bf16_dense_tflops;
  double fp8_dense_tflops;
  double hbm_GBps;    /* HBM bandwidth, GB/s (1e9 B/s) */
  double hbm_GB;      /* HBM capacity, GB */
  double nvlink_GBps; /* NVLink per direction */
  int32_t nvlink_domain_gpus;
  double nic_GBps;    /* scale-out NIC per GPU, per direction */
  const char *source; /* where the numbers come from */
} ep_gpu_spec;

/* Case-insensitive lookup; NULL when unknown. */
const ep_gpu_spec *ep_gpu_catalog_find(const char *name);
/* The catalog as an array of *n entries (for listings and error messages). */
const ep_gpu_spec *ep_gpu_catalog(int32_t *n);

typedef enum { EP_FABRIC_NONBLOCKING } ep_fabric_kind;

/* The fabric kinds' names in enum order, NULL-terminated: cluster.fabric's
 * valid values ("nonblocking"). */
extern const char *const ep_fabric_kind_names[];

typedef struct ep_cluster {
  char preset[32];        /* "" for an explicit description */
  const ep_gpu_spec *gpu; /* catalog entry, never NULL once valid */
  int32_t n_nodes;        /* NVLink domains */
  int32_t gpus_per_node;
  double nvlink_GBps;
  double nvlink_latency_us;
  double nic_GBps;
  double nic_latency_us;
  ep_fabric_kind fabric;
} ep_cluster;

/* One row of the preset table: everything a cluster preset fixes except its
 * size. The scenario gives the size under the row's count key. */
typedef struct ep_cluster_preset_desc {
  const char *name;      /* "hgx-h100" */
  const char *count_key; /* scenario key counting its NVLink domains: "nodes" or "racks" */
  const char *gpu;       /* ep_gpu_catalog_find name */
  int32_t gpus_per_node; /* GPUs per NVLink domain */
  double nvlink_GBps;
  double nvlink_latency_us;
  double nic_GBps;
  double nic_latency_us;
  ep_fabric_kind fabric;
} ep_cluster_preset_desc;

/* The preset table as an array of *n rows (n may be NULL). Static storage. */
const ep_cluster_preset_desc *ep_cluster_presets(int32_t *n);
/* Case-insensitive lookup; NULL when unknown. */
const ep_cluster_preset_desc *ep_cluster_preset_find(const char *name);
/* The rows' names, NULL-terminated, in table order: ep_cluster_preset_names[i]
 * is ep_cluster_presets(NULL)[i].name (for enum keys and error messages). */
extern const char *const ep_cluster_preset_names[];

/* Fills *out from the named preset with n_nodes NVLink domains (nodes, or
 * racks for a preset counting racks). EP_ERR_INVALID for an unknown name. */
ep_status ep_cluster_preset(const char *name, int32_t n_nodes, ep_cluster *out);

static inline int32_t ep_cluster_n_gpus(const ep_cluster *c)
{
  return c->n_nodes * c->gpus_per_node;
}
static inline int32_t ep_cluster_node_of(const ep_cluster *c, int32_t gpu)
{
  return gpu / c->gpus_per_node;
}

#endif
