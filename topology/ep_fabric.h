/* The fabric: the ports, links, switches and routes of the first n_gpus GPUs
 * of a cluster, derived from its ep_cluster. The one description that the
 * SimGrid XML writer, the SimGrid backend's port flows and the bandwidth report
 * read, so a new fabric kind is a builder and a port choice in ep_fabric.c.
 *
 * Plain data with tables (as ep_plan) rather than pure functions: readers
 * iterate the GPUs' ports, links and switches without knowing the fabric kind,
 * where functions computing them on demand would each switch on the kind. The
 * fabric owns its tables from ep_fabric_init to ep_fabric_free and is read-only
 * in between; building one costs O(n_gpus). Names are the SimGrid ids the XML
 * writer emits.
 *
 * EP_FABRIC_NONBLOCKING, for each NVLink domain k (GPUs k*gpn .. k*gpn+gpn-1):
 * - GPU g ("gpu-<g>") has two ports: NVLink, link "nvl-<g>" into the domain's
 *   NVSwitch "nvsw-<k>"; NIC, link "nic-<g>" into the domain's leaf "gw-<k>".
 * - With several domains each leaf has an uplink "up-<k>" to the core
 *   "core-r", of 2 * gpn * nic_GBps so that it never binds (non-blocking).
 * - Routes: in a domain, src NVLink UP, dst NVLink DOWN; across domains, src
 *   NIC UP, the leaves' uplinks up then down, dst NIC DOWN. Link latencies are
 *   half the cluster's latency on each GPU link and 0 on uplinks, so a route's
 *   latency is nvlink_latency_us in a domain and nic_latency_us across.
 * - Port flows: per port one flow between the GPU and the port host of the
 *   switch the port plugs into ("nvsw-<k>", "fab-<k>"), through the port's link
 *   and a latency pad ("nvlpad-<g>", "nicpad-<g>": 1 PB/s, the other half of
 *   the latency), so a port flow has the latency of a GPU-to-GPU flow. */
#ifndef EP_FABRIC_H
#define EP_FABRIC_H

#include <stdint.h>

#include "ep_status.h"
#include "ep_topology.h"

/* The bandwidth of the latency pads: 1 PB/s, so that they carry latency only.
 * A GPU port faster than this would be capped by its pad in port flows. */
#define EP_FABRIC_PAD_GBPS 1e6

/* The class of a GPU port: which link a byte count loads in the bandwidth report. */
typedef enum { EP_PORT_NVLINK, EP_PORT_NIC, EP_PORT_CLASS_COUNT } ep_port_class;

/* "NVLink", "NIC"; "?" out of range. Static storage. */
const char *ep_port_class_name(ep_port_class c);

/* SPLITDUPLEX: each direction has bw_GBps of its own. */
typedef enum { EP_LINK_SPLITDUPLEX } ep_link_sharing;

/* UP: away from the GPU (GPU links, pads) or towards the core (uplinks). */
typedef enum { EP_LINK_UP, EP_LINK_DOWN } ep_link_dir;

typedef struct ep_fabric_link {
  char name[24];     /* unique id: "nvl-3", "nicpad-3", "up-1" */
  double bw_GBps;    /* per direction, GB/s (1e9 B/s) */
  double latency_us; /* one way */
  ep_link_sharing sharing;
} ep_fabric_link;

typedef enum { EP_SWITCH_NVSWITCH, EP_SWITCH_LEAF, EP_SWITCH_CORE } ep_switch_kind;

typedef struct ep_fabric_switch {
  char name[24]; /* "nvsw-0", "gw-0", "core-r" */
  ep_switch_kind kind;
  int32_t uplink;     /* link towards parent (UP = towards it); -1 at a root */
  int32_t parent;     /* switch the uplink leads to; -1 at a root */
  char port_host[24]; /* port flows' far end for ports plugged in here; "" for none */
} ep_fabric_switch;

/* One GPU port: the GPU's own link into a switch. */
typedef struct ep_fabric_port {
  int32_t gpu;
  ep_port_class port_class;
  int32_t link; /* UP leaves the GPU */
  int32_t sw;   /* the switch the link plugs into; it has a port host */
  int32_t pad;  /* port flows: link after `link` up to sw's port host */
} ep_fabric_port;

typedef struct ep_fabric_gpu {
  char name[16];      /* host id "gpu-<g>" */
  int32_t domain;     /* NVLink domain */
  int32_t first_port; /* ports[first_port .. first_port + n_ports) */
  int32_t n_ports;
} ep_fabric_gpu;

/* Consecutive rows of a table: [first, first + n). */
typedef struct ep_fabric_range {
  int32_t first, n;
} ep_fabric_range;

/* What lives inside one NVLink domain, or (scaleout) between the domains. */
typedef struct ep_fabric_domain {
  ep_fabric_range gpus, links, switches;
} ep_fabric_domain;

typedef struct ep_fabric {
  ep_cluster cluster; /* copy of the cluster it was derived from */
  int32_t n_gpus;
  ep_fabric_gpu *gpus; /* [n_gpus] */
  int32_t n_ports;
  ep_fabric_port *ports; /* [n_ports], grouped by GPU */
  int32_t n_links;
  ep_fabric_link *links; /* [n_links], grouped by domain, scale-out links last */
  int32_t n_switches;
  ep_fabric_switch *switches; /* [n_switches], grouped by domain, scale-out switches last */
  int32_t n_domains;          /* NVLink domains holding the n_gpus GPUs */
  ep_fabric_domain *domains;  /* [n_domains] */
  ep_fabric_domain scaleout;  /* no GPUs; empty with one domain */
} ep_fabric;

/* Describes the first n_gpus GPUs of cluster (copied). EP_ERR_INVALID for an
 * incomplete cluster (no GPU, a bandwidth <= 0 or a latency < 0, NaN included),
 * n_gpus outside 1..GPUs of the cluster, or an unknown fabric kind;
 * EP_ERR_NOMEM. On failure *f is left empty (ep_fabric_free is a no-op). */
ep_status ep_fabric_init(ep_fabric *f, const ep_cluster *cluster, int32_t n_gpus);
/* Frees the tables; NULL or an empty fabric is a no-op. */
void ep_fabric_free(ep_fabric *f);

/* The port of GPU src that bytes to GPU dst leave through, and the port of
 * GPU dst they enter through (indices into f->ports). src != dst, both < n_gpus. */
int32_t ep_fabric_src_port(const ep_fabric *f, int32_t src, int32_t dst);
int32_t ep_fabric_dst_port(const ep_fabric *f, int32_t src, int32_t dst);

/* Bytes through each port for a [n_gpus * n_gpus] byte matrix (row = sender,
 * the diagonal, local copies, ignored): port_out[i] leave GPU ports[i].gpu
 * through port i, port_in[i] enter it. port_out, port_in: [out] [n_ports]. */
void ep_fabric_port_bytes(const ep_fabric *f, const int64_t *bytes_src_dst, int64_t *port_out,
                          int64_t *port_in);

#define EP_FABRIC_MAX_HOPS 8

typedef struct ep_fabric_hop {
  int32_t link;
  ep_link_dir dir;
} ep_fabric_hop;

typedef struct ep_fabric_route {
  int32_t src_port, dst_port; /* as ep_fabric_src_port / ep_fabric_dst_port */
  int32_t n_hops;
  ep_fabric_hop hop[EP_FABRIC_MAX_HOPS]; /* from src to dst */
  double latency_us;                     /* sum of the hops' link latencies */
} ep_fabric_route;

/* The route from GPU src to GPU dst: src's port link UP, up the switch tree
 * from its switch to the lowest switch shared with dst's port, down to dst's
 * switch, dst's port link DOWN. EP_ERR_INVALID when src == dst, either is out
 * of range, or the switches share no root. */
ep_status ep_fabric_route_of(const ep_fabric *f, int32_t src, int32_t dst, ep_fabric_route *out);

#endif
