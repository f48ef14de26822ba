/* The fabric tables of a cluster (layout documented in ep_fabric.h). The
 * builder and the port choice are the only fabric-kind-specific code; routes
 * follow the switch tree of the tables. */
#include "ep_fabric.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_alloc.h"

const char *ep_port_class_name(ep_port_class c)
{
  static const char *const names[EP_PORT_CLASS_COUNT] = {
      [EP_PORT_NVLINK] = "NVLink", [EP_PORT_NIC] = "NIC"};
  return (int)c >= 0 && c < EP_PORT_CLASS_COUNT ? names[c] : "?";
}

static int valid_positive(double x)
{
  return isfinite(x) && x > 0.0;
}
static int valid_nonnegative(double x)
{
  return isfinite(x) && x >= 0.0;
}

static void set_link(ep_fabric_link *l, const char *prefix, int32_t i, double GBps, double lat_us)
{
  snprintf(l->name, sizeof l->name, "%s-%d", prefix, (int)i);
  l->bw_GBps = GBps;
  l->latency_us = lat_us;
  l->sharing = EP_LINK_SPLITDUPLEX;
}

static void set_switch(ep_fabric_switch *s, ep_switch_kind kind, const char *name, int32_t i,
                       const char *port_host)
{
  if (i >= 0)
    snprintf(s->name, sizeof s->name, "%s-%d", name, (int)i);
  else
    snprintf(s->name, sizeof s->name, "%s", name);
  s->kind = kind;
  s->uplink = -1;
  s->parent = -1;
  s->port_host[0] = '\0';
  if (port_host)
    snprintf(s->port_host, sizeof s->port_host, "%s-%d", port_host, (int)i);
}

/* Per GPU 4 links (nvl, nic, nvlpad, nicpad) and 2 ports; per domain an
 * NVSwitch and a leaf; with several domains one uplink per leaf and a core. */
static ep_status build_nonblocking(ep_fabric *f)
{
  const ep_cluster *c = &f->cluster;
  const int32_t n = f->n_gpus, gpn = c->gpus_per_node;
  const int32_t nd = (n + gpn - 1) / gpn; /* only domains holding used GPUs */
  const int multi = nd > 1;
  if ((int64_t)4 * n + nd > INT32_MAX)
    return EP_ERR_INVALID;
  f->n_domains = nd;
  f->n_ports = 2 * n;
  f->n_links = 4 * n + (multi ? nd : 0);
  f->n_switches = 2 * nd + (multi ? 1 : 0);
  f->gpus = calloc((size_t)n, sizeof *f->gpus);
  f->ports = calloc((size_t)f->n_ports, sizeof *f->ports);
  f->links = calloc((size_t)f->n_links, sizeof *f->links);
  f->switches = calloc((size_t)f->n_switches, sizeof *f->switches);
  f->domains = calloc((size_t)nd, sizeof *f->domains);
  if (!f->gpus || !f->ports || !f->links || !f->switches || !f->domains)
    return EP_ERR_NOMEM;

  const double nvl_half_us = c->nvlink_latency_us / 2.0;
  const double nic_half_us = c->nic_latency_us / 2.0;
  const int32_t core = 2 * nd;
  for (int32_t k = 0; k < nd; k++) {
    ep_fabric_domain *d = &f->domains[k];
    const int32_t first = k * gpn, last = first + gpn < n ? first + gpn : n;
    const int32_t nvsw = 2 * k, leaf = 2 * k + 1;
    d->gpus = (ep_fabric_range){first, last - first};
    d->links = (ep_fabric_range){4 * first, 4 * (last - first)};
    d->switches = (ep_fabric_range){nvsw, 2};
    set_switch(&f->switches[nvsw], EP_SWITCH_NVSWITCH, "nvsw", k, "nvsw");
    set_switch(&f->switches[leaf], EP_SWITCH_LEAF, "gw", k, "fab");
    if (multi) {
      f->switches[leaf].uplink = 4 * n + k;
      f->switches[leaf].parent = core;
    }
    for (int32_t g = first; g < last; g++) {
      ep_fabric_link *l = &f->links[4 * g];
      set_link(&l[0], "nvl", g, c->nvlink_GBps, nvl_half_us);
      set_link(&l[1], "nic", g, c->nic_GBps, nic_half_us);
      set_link(&l[2], "nvlpad", g, EP_FABRIC_PAD_GBPS, nvl_half_us);
      set_link(&l[3], "nicpad", g, EP_FABRIC_PAD_GBPS, nic_half_us);
      f->ports[2 * g] = (ep_fabric_port){g, EP_PORT_NVLINK, 4 * g, nvsw, 4 * g + 2};
      f->ports[2 * g + 1] = (ep_fabric_port){g, EP_PORT_NIC, 4 * g + 1, leaf, 4 * g + 3};
      ep_fabric_gpu *gpu = &f->gpus[g];
      snprintf(gpu->name, sizeof gpu->name, "gpu-%d", (int)g);
      gpu->domain = k;
      gpu->first_port = 2 * g;
      gpu->n_ports = 2;
    }
  }
  f->scaleout.gpus = (ep_fabric_range){n, 0};
  f->scaleout.links = (ep_fabric_range){4 * n, multi ? nd : 0};
  f->scaleout.switches = (ep_fabric_range){core, multi ? 1 : 0};
  if (multi) {
    /* Each uplink carries twice what the domain's NICs can: it never binds. */
    const double up_GBps = 2.0 * (double)gpn * c->nic_GBps;
    for (int32_t k = 0; k < nd; k++)
      set_link(&f->links[4 * n + k], "up", k, up_GBps, 0.0);
    set_switch(&f->switches[core], EP_SWITCH_CORE, "core-r", -1, NULL);
  }
  return EP_OK;
}

ep_status ep_fabric_init(ep_fabric *f, const ep_cluster *cluster, int32_t n_gpus)
{
  if (!f)
    return EP_ERR_INVALID;
  memset(f, 0, sizeof *f);
  if (!cluster || !cluster->gpu || cluster->n_nodes <= 0 || cluster->gpus_per_node <= 0)
    return EP_ERR_INVALID;
  if (n_gpus <= 0 || (int64_t)n_gpus > (int64_t)cluster->n_nodes * cluster->gpus_per_node)
    return EP_ERR_INVALID;
  if (!valid_positive(cluster->nvlink_GBps) || !valid_positive(cluster->nic_GBps) ||
      !valid_nonnegative(cluster->nvlink_latency_us) || !valid_nonnegative(cluster->nic_latency_us))
    return EP_ERR_INVALID;
  if (cluster->fabric != EP_FABRIC_NONBLOCKING)
    return EP_ERR_INVALID;
  f->cluster = *cluster;
  f->n_gpus = n_gpus;
  ep_status st = build_nonblocking(f);
  if (st != EP_OK)
    ep_fabric_free(f);
  return st;
}

void ep_fabric_free(ep_fabric *f)
{
  if (!f)
    return;
  EP__FREE_ALL(f->gpus, f->ports, f->links, f->switches, f->domains);
  memset(f, 0, sizeof *f);
}

/* GPU g's port of class c (every GPU has one of each class here). */
static int32_t port_of_class(const ep_fabric *f, int32_t g, ep_port_class c)
{
  const ep_fabric_gpu *gpu = &f->gpus[g];
  for (int32_t i = gpu->first_port; i < gpu->first_port + gpu->n_ports; i++)
    if (f->ports[i].port_class == c)
      return i;
  return -1;
}

/* Non-blocking: NVLink inside a domain, the NIC across domains. */
int32_t ep_fabric_src_port(const ep_fabric *f, int32_t src, int32_t dst)
{
  const int same = f->gpus[src].domain == f->gpus[dst].domain;
  return port_of_class(f, src, same ? EP_PORT_NVLINK : EP_PORT_NIC);
}

int32_t ep_fabric_dst_port(const ep_fabric *f, int32_t src, int32_t dst)
{
  const int same = f->gpus[src].domain == f->gpus[dst].domain;
  return port_of_class(f, dst, same ? EP_PORT_NVLINK : EP_PORT_NIC);
}

void ep_fabric_port_bytes(const ep_fabric *f, const int64_t *bytes_src_dst, int64_t *port_out,
                          int64_t *port_in)
{
  const int32_t n = f->n_gpus;
  memset(port_out, 0, (size_t)f->n_ports * sizeof *port_out);
  memset(port_in, 0, (size_t)f->n_ports * sizeof *port_in);
  for (int32_t s = 0; s < n; s++)
    for (int32_t d = 0; d < n; d++) {
      const int64_t b = bytes_src_dst[(int64_t)s * n + d];
      if (s == d || b == 0)
        continue;
      port_out[ep_fabric_src_port(f, s, d)] += b;
      port_in[ep_fabric_dst_port(f, s, d)] += b;
    }
}

/* Switches from sw up to its root: chain[0] = sw. Returns the length, or -1
 * when longer than max. */
static int32_t switch_chain(const ep_fabric *f, int32_t sw, int32_t *chain, int32_t max)
{
  int32_t len = 0;
  for (; sw >= 0; sw = f->switches[sw].parent) {
    if (len == max)
      return -1;
    chain[len++] = sw;
  }
  return len;
}

static void add_hop(ep_fabric_route *r, const ep_fabric *f, int32_t link, ep_link_dir dir)
{
  r->hop[r->n_hops++] = (ep_fabric_hop){link, dir};
  r->latency_us += f->links[link].latency_us;
}

ep_status ep_fabric_route_of(const ep_fabric *f, int32_t src, int32_t dst, ep_fabric_route *out)
{
  if (!f || !out || src < 0 || dst < 0 || src >= f->n_gpus || dst >= f->n_gpus || src == dst)
    return EP_ERR_INVALID;
  ep_fabric_route r;
  memset(&r, 0, sizeof r);
  r.src_port = ep_fabric_src_port(f, src, dst);
  r.dst_port = ep_fabric_dst_port(f, src, dst);
  if (r.src_port < 0 || r.dst_port < 0)
    return EP_ERR_INVALID;
  const ep_fabric_port *sp = &f->ports[r.src_port], *dp = &f->ports[r.dst_port];
  /* The uplinks climbed and descended, between the two GPU links. */
  int32_t up[EP_FABRIC_MAX_HOPS], down[EP_FABRIC_MAX_HOPS];
  int32_t n_up = switch_chain(f, sp->sw, up, EP_FABRIC_MAX_HOPS);
  int32_t n_down = switch_chain(f, dp->sw, down, EP_FABRIC_MAX_HOPS);
  if (n_up < 1 || n_down < 1 || up[n_up - 1] != down[n_down - 1])
    return EP_ERR_INVALID;
  while (n_up > 1 && n_down > 1 && up[n_up - 2] == down[n_down - 2]) {
    n_up--;
    n_down--;
  }
  /* up[n_up - 1] is the lowest shared switch: climb to it, then descend. */
  if (2 + (n_up - 1) + (n_down - 1) > EP_FABRIC_MAX_HOPS)
    return EP_ERR_INVALID;
  add_hop(&r, f, sp->link, EP_LINK_UP);
  for (int32_t i = 0; i < n_up - 1; i++)
    add_hop(&r, f, f->switches[up[i]].uplink, EP_LINK_UP);
  for (int32_t i = n_down - 2; i >= 0; i--)
    add_hop(&r, f, f->switches[down[i]].uplink, EP_LINK_DOWN);
  add_hop(&r, f, dp->link, EP_LINK_DOWN);
  *out = r;
  return EP_OK;
}
