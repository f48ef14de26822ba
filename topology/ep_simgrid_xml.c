/* SimGrid 3.32 platform XML for a cluster (layout documented in ep_topology.h).
 * Every GPU-to-GPU route is two link halves (source UP, destination DOWN), each
 * carrying half the route latency; inter-node routes add the node uplinks, which
 * have zero latency and twice the node's NIC bandwidth so they never bind. Port
 * hosts reach a GPU through its link plus a "pad" with the other half of the
 * latency, so fast (1 PB/s) that it never binds. Pads are split-duplex: FATPIPE
 * is slow in 3.32's solver, and with one SHARED pad crossed both ways 3.32's
 * network/optim:Lazy ended port flows too early (Full was right). */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "ep_topology.h"

#define EP_PAD_GBPS 1e6 /* 1 PB/s: latency-only link */

typedef struct xml_writer {
  FILE *out;
  int ok;
} xml_writer;

static void emit(xml_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes unless an earlier write failed; remembers the first failure. */
static void emit(xml_writer *w, const char *fmt, ...)
{
  if (!w->ok)
    return;
  va_list ap;
  va_start(ap, fmt);
  if (vfprintf(w->out, fmt, ap) < 0)
    w->ok = 0;
  va_end(ap);
}

static int valid_positive(double x)
{
  return isfinite(x) && x > 0.0;
}
static int valid_nonnegative(double x)
{
  return isfinite(x) && x >= 0.0;
}

static void emit_link(xml_writer *w, const char *prefix, int32_t g, double GBps, double lat_us,
                      const char *policy)
{
  emit(w,
       "    <link id=\"%s-%d\" bandwidth=\"%.17gGBps\" latency=\"%.17gus\" "
       "sharing_policy=\"%s\"/>\n",
       prefix, (int)g, GBps, lat_us, policy);
}

/* One NVLink domain: GPUs first..last-1 of node k. */
static void emit_node_zone(xml_writer *w, const ep_cluster *c, int32_t k, int32_t first,
                           int32_t last, int multi_node, const char *indent)
{
  const double nvl_half_us = c->nvlink_latency_us / 2.0;
  const double nic_half_us = c->nic_latency_us / 2.0;
  emit(w, "%s<zone id=\"node-%d\" routing=\"Full\">\n", indent, (int)k);
  for (int32_t g = first; g < last; g++)
    emit(w, "    <host id=\"gpu-%d\" speed=\"1Gf\"/>\n", (int)g);
  emit(w, "    <host id=\"nvsw-%d\" speed=\"1Gf\"/>\n", (int)k);
  emit(w, "    <host id=\"fab-%d\" speed=\"1Gf\"/>\n", (int)k);
  if (multi_node)
    emit(w, "    <router id=\"gw-%d\"/>\n", (int)k);
  for (int32_t g = first; g < last; g++) {
    emit_link(w, "nvl", g, c->nvlink_GBps, nvl_half_us, "SPLITDUPLEX");
    emit_link(w, "nic", g, c->nic_GBps, nic_half_us, "SPLITDUPLEX");
    emit_link(w, "nvlpad", g, EP_PAD_GBPS, nvl_half_us, "SPLITDUPLEX");
    emit_link(w, "nicpad", g, EP_PAD_GBPS, nic_half_us, "SPLITDUPLEX");
  }
  /* Routes are symmetrical (the default): the reverse route swaps UP/DOWN. */
  for (int32_t a = first; a < last; a++)
    for (int32_t b = a + 1; b < last; b++)
      emit(w,
           "    <route src=\"gpu-%d\" dst=\"gpu-%d\"><link_ctn id=\"nvl-%d\" direction=\"UP\"/>"
           "<link_ctn id=\"nvl-%d\" direction=\"DOWN\"/></route>\n",
           (int)a, (int)b, (int)a, (int)b);
  for (int32_t g = first; g < last; g++) {
    emit(w,
         "    <route src=\"gpu-%d\" dst=\"nvsw-%d\"><link_ctn id=\"nvl-%d\" direction=\"UP\"/>"
         "<link_ctn id=\"nvlpad-%d\" direction=\"UP\"/></route>\n",
         (int)g, (int)k, (int)g, (int)g);
    emit(w,
         "    <route src=\"gpu-%d\" dst=\"fab-%d\"><link_ctn id=\"nic-%d\" direction=\"UP\"/>"
         "<link_ctn id=\"nicpad-%d\" direction=\"UP\"/></route>\n",
         (int)g, (int)k, (int)g, (int)g);
    if (multi_node)
      emit(w,
           "    <route src=\"gpu-%d\" dst=\"gw-%d\"><link_ctn id=\"nic-%d\" "
           "direction=\"UP\"/></route>\n",
           (int)g, (int)k, (int)g);
  }
  emit(w, "%s</zone>\n", indent);
}

ep_status ep_topology_write_simgrid_xml(const ep_cluster *cluster, int32_t n_gpus, FILE *out)
{
  if (!cluster || !out || !cluster->gpu || cluster->n_nodes <= 0 || cluster->gpus_per_node <= 0)
    return EP_ERR_INVALID;
  if (n_gpus <= 0 || (int64_t)n_gpus > (int64_t)cluster->n_nodes * cluster->gpus_per_node)
    return EP_ERR_INVALID;
  if (!valid_positive(cluster->nvlink_GBps) || !valid_positive(cluster->nic_GBps) ||
      !valid_nonnegative(cluster->nvlink_latency_us) || !valid_nonnegative(cluster->nic_latency_us))
    return EP_ERR_INVALID;

  const int32_t gpn = cluster->gpus_per_node;
  const int32_t n_nodes = (n_gpus + gpn - 1) / gpn; /* only nodes holding used GPUs */
  const int multi_node = n_nodes > 1;
  xml_writer w = {out, 1};

  emit(&w,
       "<?xml version='1.0'?>\n"
       "<!DOCTYPE platform SYSTEM \"https://simgrid.org/simgrid.dtd\">\n"
       "<!-- epsim: %d GPUs of %s (%s), %d per NVLink domain -->\n"
       "<platform version=\"4.1\">\n",
       (int)n_gpus, cluster->preset[0] ? cluster->preset : "explicit cluster", cluster->gpu->name,
       (int)gpn);
  if (!multi_node) {
    emit_node_zone(&w, cluster, 0, 0, n_gpus, 0, "");
  } else {
    /* Floyd finds node-a -> core -> node-b from one zoneRoute per node. */
    emit(&w, "<zone id=\"world\" routing=\"Floyd\">\n");
    for (int32_t k = 0; k < n_nodes; k++) {
      const int32_t last = (k + 1) * gpn < n_gpus ? (k + 1) * gpn : n_gpus;
      emit_node_zone(&w, cluster, k, k * gpn, last, 1, "  ");
    }
    emit(&w, "  <zone id=\"core\" routing=\"Full\">\n    <router id=\"core-r\"/>\n  </zone>\n");
    /* Non-blocking fabric: each uplink carries twice what the node's NICs can. */
    const double up_GBps = 2.0 * (double)gpn * cluster->nic_GBps;
    for (int32_t k = 0; k < n_nodes; k++)
      emit(&w,
           "  <link id=\"up-%d\" bandwidth=\"%.17gGBps\" latency=\"0us\" "
           "sharing_policy=\"SPLITDUPLEX\"/>\n",
           (int)k, up_GBps);
    for (int32_t k = 0; k < n_nodes; k++)
      emit(&w,
           "  <zoneRoute src=\"node-%d\" dst=\"core\" gw_src=\"gw-%d\" gw_dst=\"core-r\">"
           "<link_ctn id=\"up-%d\" direction=\"UP\"/></zoneRoute>\n",
           (int)k, (int)k, (int)k);
    emit(&w, "</zone>\n");
  }
  emit(&w, "</platform>\n");
  if (!w.ok || fflush(out) != 0 || ferror(out)) {
    ep_log_error("writing the SimGrid platform XML failed");
    return EP_ERR_IO;
  }
  return EP_OK;
}
