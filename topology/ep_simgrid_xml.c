/* SimGrid 3.32 platform XML from the fabric tables (layout in ep_simgrid_xml.h).
 * Every name, bandwidth and latency comes from the fabric; this file only maps
 * domains to zones and the switch tree to gateways and zoneRoutes. Pads are
 * split-duplex: FATPIPE is slow in 3.32's solver, and with one SHARED pad
 * crossed both ways 3.32's network/optim:Lazy ended port flows too early (Full
 * was right). */
#include "ep_simgrid_xml.h"

#include <stdarg.h>
#include <stdint.h>

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

static const char *dir_name(ep_link_dir d)
{
  return d == EP_LINK_UP ? "UP" : "DOWN";
}

static void emit_link(xml_writer *w, const char *indent, const ep_fabric_link *l)
{
  /* SPLITDUPLEX is the only sharing the fabric has. */
  emit(w,
       "%s<link id=\"%s\" bandwidth=\"%.17gGBps\" latency=\"%.17gus\" "
       "sharing_policy=\"SPLITDUPLEX\"/>\n",
       indent, l->name, l->bw_GBps, l->latency_us);
}

static void emit_ctn(xml_writer *w, const ep_fabric *f, int32_t link, ep_link_dir dir)
{
  emit(w, "<link_ctn id=\"%s\" direction=\"%s\"/>", f->links[link].name, dir_name(dir));
}

/* Zone of NVLink domain k. */
static ep_status emit_domain(xml_writer *w, const ep_fabric *f, int32_t k, const char *indent)
{
  const ep_fabric_domain *d = &f->domains[k];
  const int32_t g0 = d->gpus.first, g1 = d->gpus.first + d->gpus.n;
  const int32_t s0 = d->switches.first, s1 = d->switches.first + d->switches.n;
  emit(w, "%s<zone id=\"node-%d\" routing=\"Full\">\n", indent, (int)k);
  for (int32_t g = g0; g < g1; g++)
    emit(w, "    <host id=\"%s\" speed=\"1Gf\"/>\n", f->gpus[g].name);
  for (int32_t s = s0; s < s1; s++)
    if (f->switches[s].port_host[0])
      emit(w, "    <host id=\"%s\" speed=\"1Gf\"/>\n", f->switches[s].port_host);
  for (int32_t s = s0; s < s1; s++)
    if (f->switches[s].uplink >= 0)
      emit(w, "    <router id=\"%s\"/>\n", f->switches[s].name);
  for (int32_t l = d->links.first; l < d->links.first + d->links.n; l++)
    emit_link(w, "    ", &f->links[l]);
  for (int32_t a = g0; a < g1; a++)
    for (int32_t b = a + 1; b < g1; b++) {
      ep_fabric_route r;
      ep_status st = ep_fabric_route_of(f, a, b, &r);
      if (st != EP_OK)
        return st;
      emit(w, "    <route src=\"%s\" dst=\"%s\">", f->gpus[a].name, f->gpus[b].name);
      for (int32_t h = 0; h < r.n_hops; h++)
        emit_ctn(w, f, r.hop[h].link, r.hop[h].dir);
      emit(w, "</route>\n");
    }
  for (int32_t g = g0; g < g1; g++) {
    const ep_fabric_gpu *gpu = &f->gpus[g];
    const ep_fabric_port *p0 = &f->ports[gpu->first_port], *p1 = p0 + gpu->n_ports;
    for (const ep_fabric_port *p = p0; p < p1; p++) {
      if (!f->switches[p->sw].port_host[0])
        continue;
      emit(w, "    <route src=\"%s\" dst=\"%s\">", gpu->name, f->switches[p->sw].port_host);
      emit_ctn(w, f, p->link, EP_LINK_UP);
      emit_ctn(w, f, p->pad, EP_LINK_UP);
      emit(w, "</route>\n");
    }
    for (const ep_fabric_port *p = p0; p < p1; p++) {
      if (f->switches[p->sw].uplink < 0)
        continue;
      emit(w, "    <route src=\"%s\" dst=\"%s\">", gpu->name, f->switches[p->sw].name);
      emit_ctn(w, f, p->link, EP_LINK_UP);
      emit(w, "</route>\n");
    }
  }
  emit(w, "%s</zone>\n", indent);
  return EP_OK;
}

static int in_range(ep_fabric_range r, int32_t i)
{
  return i >= r.first && i < r.first + r.n;
}

/* Zones nest one level: every uplink leads from a domain switch to a scale-out root. */
static int two_levels(const ep_fabric *f)
{
  for (int32_t s = 0; s < f->n_switches; s++) {
    const ep_fabric_switch *sw = &f->switches[s];
    if (sw->uplink < 0)
      continue;
    if (in_range(f->scaleout.switches, s) || !in_range(f->scaleout.switches, sw->parent) ||
        f->switches[sw->parent].uplink >= 0)
      return 0;
  }
  return 1;
}

ep_status ep_fabric_write_simgrid_xml(const ep_fabric *f, FILE *out)
{
  if (!f || !out || f->n_gpus <= 0 || f->n_domains <= 0 || !f->cluster.gpu)
    return EP_ERR_INVALID;
  if (!two_levels(f))
    return EP_ERR_UNSUPPORTED;
  const ep_cluster *c = &f->cluster;
  xml_writer w = {out, 1};
  ep_status st = EP_OK;

  emit(&w,
       "<?xml version='1.0'?>\n"
       "<!DOCTYPE platform SYSTEM \"https://simgrid.org/simgrid.dtd\">\n"
       "<!-- epsim: %d GPUs of %s (%s), %d per NVLink domain -->\n"
       "<platform version=\"4.1\">\n",
       (int)f->n_gpus, c->preset[0] ? c->preset : "explicit cluster", c->gpu->name,
       (int)c->gpus_per_node);
  if (f->n_domains == 1) {
    st = emit_domain(&w, f, 0, "");
  } else {
    /* Floyd finds node-a -> core -> node-b from one zoneRoute per uplink. */
    emit(&w, "<zone id=\"world\" routing=\"Floyd\">\n");
    for (int32_t k = 0; k < f->n_domains && st == EP_OK; k++)
      st = emit_domain(&w, f, k, "  ");
    const ep_fabric_range so = f->scaleout.switches, sl = f->scaleout.links;
    emit(&w, "  <zone id=\"core\" routing=\"Full\">\n");
    for (int32_t s = so.first; s < so.first + so.n; s++)
      emit(&w, "    <router id=\"%s\"/>\n", f->switches[s].name);
    emit(&w, "  </zone>\n");
    for (int32_t l = sl.first; l < sl.first + sl.n; l++)
      emit_link(&w, "  ", &f->links[l]);
    for (int32_t k = 0; k < f->n_domains; k++) {
      const ep_fabric_range ds = f->domains[k].switches;
      for (int32_t s = ds.first; s < ds.first + ds.n; s++) {
        const ep_fabric_switch *sw = &f->switches[s];
        if (sw->uplink < 0)
          continue;
        emit(&w, "  <zoneRoute src=\"node-%d\" dst=\"core\" gw_src=\"%s\" gw_dst=\"%s\">", (int)k,
             sw->name, f->switches[sw->parent].name);
        emit_ctn(&w, f, sw->uplink, EP_LINK_UP);
        emit(&w, "</zoneRoute>\n");
      }
    }
    emit(&w, "</zone>\n");
  }
  if (st != EP_OK)
    return st;
  emit(&w, "</platform>\n");
  if (!w.ok || fflush(out) != 0 || ferror(out)) {
    ep_log_error("writing the SimGrid platform XML failed");
    return EP_ERR_IO;
  }
  return EP_OK;
}
