/* Hardware catalog, cluster presets, the fabric and the SimGrid platform XML
 * writer. The XML is checked by structure here (counts of hosts, links and
 * routes) and by hash against the writer it replaced; that SimGrid loads it
 * and times flows right is test_simgrid's job. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "ep_fabric.h"
#include "ep_rng.h"
#include "ep_simgrid_xml.h"
#include "ep_topology.h"

static void test_catalog(void)
{
  int32_t n = 0;
  const ep_gpu_spec *all = ep_gpu_catalog(&n);
  CHECK_EQ_INT(n, 5);
  CHECK(all != NULL);
  /* Values from shared/research/data/hardware.csv (HBM TB/s as GB/s). */
  const struct {
    const char *name;
    double bf16_tflops, fp8_tflops, hbm_GBps, hbm_GB, nvlink_GBps;
    int32_t domain_gpus;
  } want[] = {
      {"H100", 989.4, 1978.9, 3350.0, 80.0, 450.0, 8},
      {"H800", 989.4, 1978.9, 3350.0, 80.0, 200.0, 8},
      {"H200", 989.4, 1978.9, 4800.0, 141.0, 450.0, 8},
      {"B200", 2250.0, 4500.0, 7700.0, 180.0, 900.0, 8},
      {"GB200", 2500.0, 5000.0, 8000.0, 186.0, 900.0, 72},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const int failures = check_failures;
    const ep_gpu_spec *g = ep_gpu_catalog_find(want[i].name);
    CHECK(g != NULL);
    if (!g)
      continue;
    CHECK(strcmp(g->name, want[i].name) == 0);
    CHECK(g->source && g->source[0]);
    CHECK(g->fp8_dense_tflops > g->bf16_dense_tflops);
    CHECK_REL(g->nic_GBps, 50.0, 0.0);
    CHECK_REL(g->bf16_dense_tflops, want[i].bf16_tflops, 1e-12);
    CHECK_REL(g->fp8_dense_tflops, want[i].fp8_tflops, 1e-12);
    CHECK_REL(g->hbm_GBps, want[i].hbm_GBps, 1e-12);
    CHECK_REL(g->hbm_GB, want[i].hbm_GB, 1e-12);
    CHECK_REL(g->nvlink_GBps, want[i].nvlink_GBps, 1e-12);
    CHECK_EQ_INT(g->nvlink_domain_gpus, want[i].domain_gpus);
    if (check_failures != failures)
      fprintf(stderr, "  (checks above: GPU %s)\n", want[i].name);
  }
  /* Case-insensitive, exact names only. */
  CHECK(ep_gpu_catalog_find("h100") == ep_gpu_catalog_find("H100"));
  CHECK(ep_gpu_catalog_find("gB200") == ep_gpu_catalog_find("GB200"));
  CHECK(ep_gpu_catalog_find("H10") == NULL);
  CHECK(ep_gpu_catalog_find("H1000") == NULL);
  CHECK(ep_gpu_catalog_find("A100") == NULL);
  CHECK(ep_gpu_catalog_find("") == NULL);
  CHECK(ep_gpu_catalog_find(NULL) == NULL);
}

static void test_presets(void)
{
  ep_cluster c;
  int n_names = 0;
  while (ep_cluster_preset_names[n_names])
    n_names++;
  CHECK_EQ_INT(n_names, 3);
  for (int i = 0; i < n_names; i++)
    CHECK_EQ_INT(ep_cluster_preset(ep_cluster_preset_names[i], 1, &c), EP_OK);

  /* Each preset as given (names are case-insensitive), in its own counts. */
  const struct {
    const char *name, *canonical, *gpu;
    int32_t count, gpus_per_node;
    double nvlink_GBps;
  } want[] = {
      {"hgx-h100", "hgx-h100", "H100", 4, 8, 450.0},
      {"HGX-H800", "hgx-h800", "H800", 2, 8, 200.0},
      {"gb200-nvl72", "gb200-nvl72", "GB200", 2, 72, 900.0},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const int failures = check_failures;
    const int32_t gpn = want[i].gpus_per_node;
    CHECK_EQ_INT(ep_cluster_preset(want[i].name, want[i].count, &c), EP_OK);
    CHECK(strcmp(c.preset, want[i].canonical) == 0);
    CHECK(c.gpu == ep_gpu_catalog_find(want[i].gpu));
    CHECK_EQ_INT(c.n_nodes, want[i].count);
    CHECK_EQ_INT(c.gpus_per_node, gpn);
    CHECK_EQ_INT(ep_cluster_n_gpus(&c), want[i].count * gpn);
    CHECK_EQ_INT(ep_cluster_node_of(&c, gpn - 1), 0);
    CHECK_EQ_INT(ep_cluster_node_of(&c, gpn), 1);
    CHECK_REL(c.nvlink_GBps, want[i].nvlink_GBps, 1e-12);
    CHECK_REL(c.nic_GBps, 50.0, 1e-12);
    CHECK_REL(c.nvlink_latency_us, 2.0, 1e-12);
    CHECK_REL(c.nic_latency_us, 4.0, 1e-12);
    CHECK_EQ_INT(c.fabric, EP_FABRIC_NONBLOCKING);
    if (check_failures != failures)
      fprintf(stderr, "  (checks above: preset %s)\n", want[i].name);
  }

  /* The preset table: names in table order, each row with its count key. */
  int32_t n_rows = 0;
  const ep_cluster_preset_desc *rows = ep_cluster_presets(&n_rows);
  CHECK_EQ_INT(n_rows, n_names);
  CHECK(ep_cluster_presets(NULL) == rows);
  for (int32_t i = 0; i < n_rows; i++) {
    CHECK(strcmp(rows[i].name, ep_cluster_preset_names[i]) == 0);
    CHECK(ep_cluster_preset_find(rows[i].name) == &rows[i]);
    CHECK(strcmp(rows[i].count_key, "nodes") == 0 || strcmp(rows[i].count_key, "racks") == 0);
    CHECK(ep_gpu_catalog_find(rows[i].gpu) != NULL);
    CHECK_EQ_INT(rows[i].fabric, EP_FABRIC_NONBLOCKING);
  }
  const ep_cluster_preset_desc *h100 = ep_cluster_preset_find("hgx-h100");
  const ep_cluster_preset_desc *h800 = ep_cluster_preset_find("HGX-H800");
  const ep_cluster_preset_desc *nvl72 = ep_cluster_preset_find("gb200-NVL72");
  CHECK(h100 != NULL && h800 != NULL && nvl72 != NULL);
  if (h100 && h800 && nvl72) {
    CHECK(strcmp(h100->count_key, "nodes") == 0);
    CHECK(strcmp(h800->count_key, "nodes") == 0);
    CHECK(strcmp(nvl72->count_key, "racks") == 0);
    CHECK(strcmp(nvl72->gpu, "GB200") == 0);
    CHECK_EQ_INT(nvl72->gpus_per_node, 72);
    CHECK_REL(nvl72->nvlink_GBps, 900.0, 1e-12);
    CHECK_REL(nvl72->nvlink_latency_us, 2.0, 1e-12);
    CHECK_REL(nvl72->nic_GBps, 50.0, 1e-12);
    CHECK_REL(nvl72->nic_latency_us, 4.0, 1e-12);
  }
  CHECK(ep_cluster_preset_find("hgx-a100") == NULL);
  CHECK(ep_cluster_preset_find("hgx-h10") == NULL);
  CHECK(ep_cluster_preset_find("") == NULL);
  CHECK(ep_cluster_preset_find(NULL) == NULL);

  CHECK_EQ_INT(ep_cluster_preset("hgx-a100", 1, &c), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_cluster_preset("hgx-h100", 0, &c), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_cluster_preset(NULL, 1, &c), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_cluster_preset("hgx-h100", 1, NULL), EP_ERR_INVALID);
}

static int count_of(const char *text, const char *needle)
{
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

/* The XML for n_gpus GPUs of c, as a malloc'ed string (NULL on failure). */
static char *xml_of(const ep_cluster *c, int32_t n_gpus)
{
  char *buf = NULL;
  size_t len = 0;
  ep_fabric fabric;
  if (ep_fabric_init(&fabric, c, n_gpus) != EP_OK)
    return NULL;
  FILE *f = open_memstream(&buf, &len);
  if (!f) {
    ep_fabric_free(&fabric);
    return NULL;
  }
  ep_status st = ep_fabric_write_simgrid_xml(&fabric, f);
  ep_fabric_free(&fabric);
  if (fclose(f) != 0 || st != EP_OK) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* Structure of one node zone with m GPUs: m GPU hosts + 2 port hosts; 4 links per GPU;
 * m(m-1)/2 GPU pairs + 2 port routes per GPU (+ 1 gateway route per GPU, multi-node). */
static void check_counts(const char *xml, int hosts, int links, int routes, int zone_routes,
                         int zones, int routers)
{
  CHECK_EQ_INT(count_of(xml, "<host "), hosts);
  CHECK_EQ_INT(count_of(xml, "<link "), links);
  CHECK_EQ_INT(count_of(xml, "<route "), routes);
  CHECK_EQ_INT(count_of(xml, "<zoneRoute "), zone_routes);
  CHECK_EQ_INT(count_of(xml, "<zone "), zones);
  CHECK_EQ_INT(count_of(xml, "</zone>"), zones);
  CHECK_EQ_INT(count_of(xml, "<router "), routers);
  CHECK_EQ_INT(count_of(xml, "</route>"), routes);
  CHECK_EQ_INT(count_of(xml, "<platform version=\"4.1\">"), 1);
  CHECK_EQ_INT(count_of(xml, "</platform>"), 1);
}

static void test_xml(void)
{
  ep_cluster c;
  CHECK_EQ_INT(ep_cluster_preset("hgx-h100", 3, &c), EP_OK);

  /* One node: the node zone is the whole platform. */
  char *one = xml_of(&c, 8);
  CHECK(one != NULL);
  if (one) {
    check_counts(one, 8 + 2, 4 * 8, 28 + 2 * 8, 0, 1, 0);
    CHECK_STR_CONTAINS(one, "<zone id=\"node-0\" routing=\"Full\">");
    CHECK_STR_CONTAINS(one, "<host id=\"gpu-7\"");
    CHECK_STR_CONTAINS(one, "<host id=\"nvsw-0\"");
    CHECK_STR_CONTAINS(one, "<host id=\"fab-0\"");
    CHECK_EQ_INT(count_of(one, "gpu-8\""), 0);
    /* Half the GPU-to-GPU latency on each link, the other half on the pad. */
    CHECK_STR_CONTAINS(one, "<link id=\"nvl-3\" bandwidth=\"450GBps\" latency=\"1us\" "
                            "sharing_policy=\"SPLITDUPLEX\"/>");
    CHECK_STR_CONTAINS(one, "<link id=\"nic-3\" bandwidth=\"50GBps\" latency=\"2us\" "
                            "sharing_policy=\"SPLITDUPLEX\"/>");
    CHECK_STR_CONTAINS(one, "<link id=\"nvlpad-3\" bandwidth=\"1000000GBps\" latency=\"1us\" "
                            "sharing_policy=\"SPLITDUPLEX\"/>");
    CHECK_STR_CONTAINS(one, "<link id=\"nicpad-3\" bandwidth=\"1000000GBps\" latency=\"2us\" "
                            "sharing_policy=\"SPLITDUPLEX\"/>");
    CHECK_EQ_INT(count_of(one, "FATPIPE"), 0);
    CHECK_EQ_INT(count_of(one, "SHARED"), 0);
    CHECK_STR_CONTAINS(one, "<route src=\"gpu-2\" dst=\"gpu-5\">"
                            "<link_ctn id=\"nvl-2\" direction=\"UP\"/>"
                            "<link_ctn id=\"nvl-5\" direction=\"DOWN\"/></route>");
    CHECK_STR_CONTAINS(one, "<route src=\"gpu-4\" dst=\"nvsw-0\">"
                            "<link_ctn id=\"nvl-4\" direction=\"UP\"/>"
                            "<link_ctn id=\"nvlpad-4\" direction=\"UP\"/></route>");
    CHECK_STR_CONTAINS(one, "<route src=\"gpu-4\" dst=\"fab-0\">"
                            "<link_ctn id=\"nic-4\" direction=\"UP\"/>"
                            "<link_ctn id=\"nicpad-4\" direction=\"UP\"/></route>");
  }
  free(one);

  /* Three nodes: node zones in a Floyd world, one zoneRoute per node to the core. */
  char *three = xml_of(&c, 24);
  CHECK(three != NULL);
  if (three) {
    check_counts(three, 3 * 10, 3 * 32 + 3, 3 * (28 + 16 + 8), 3, 3 + 2, 3 + 1);
    CHECK_STR_CONTAINS(three, "<zone id=\"world\" routing=\"Floyd\">");
    CHECK_STR_CONTAINS(three, "<zone id=\"node-2\" routing=\"Full\">");
    CHECK_STR_CONTAINS(three, "<host id=\"gpu-23\"");
    CHECK_STR_CONTAINS(three, "<router id=\"gw-1\"/>");
    CHECK_STR_CONTAINS(three, "<route src=\"gpu-9\" dst=\"gw-1\"><link_ctn id=\"nic-9\" "
                              "direction=\"UP\"/></route>");
    /* Uplinks: 2 x 8 x 50 GB/s, never the bottleneck, no latency. */
    CHECK_STR_CONTAINS(three, "<link id=\"up-2\" bandwidth=\"800GBps\" latency=\"0us\" "
                              "sharing_policy=\"SPLITDUPLEX\"/>");
    CHECK_STR_CONTAINS(three, "<zoneRoute src=\"node-1\" dst=\"core\" gw_src=\"gw-1\" "
                              "gw_dst=\"core-r\"><link_ctn id=\"up-1\" direction=\"UP\"/>"
                              "</zoneRoute>");
    /* GPU pairs never cross nodes inside a zone. */
    CHECK_EQ_INT(count_of(three, "<route src=\"gpu-7\" dst=\"gpu-8\""), 0);
  }
  free(three);

  /* Only the first n_gpus GPUs: 20 of 24 leaves 4 GPUs in node 2. */
  char *part = xml_of(&c, 20);
  CHECK(part != NULL);
  if (part) {
    check_counts(part, 10 + 10 + 6, 32 + 32 + 16 + 3, 2 * 52 + (6 + 8 + 4), 3, 5, 4);
    CHECK_EQ_INT(count_of(part, "gpu-20\""), 0);
    CHECK_STR_CONTAINS(part, "<host id=\"gpu-19\"");
  }
  free(part);

  /* 5 GPUs of a 3-node cluster fit in one node: no world zone. */
  char *first = xml_of(&c, 5);
  CHECK(first != NULL);
  if (first) {
    check_counts(first, 5 + 2, 4 * 5, 10 + 10, 0, 1, 0);
    CHECK_EQ_INT(count_of(first, "world"), 0);
  }
  free(first);

  /* NVL72: 72 GPUs in one Full zone, 900 GB/s links. */
  ep_cluster nvl;
  CHECK_EQ_INT(ep_cluster_preset("gb200-nvl72", 1, &nvl), EP_OK);
  char *rack = xml_of(&nvl, 72);
  CHECK(rack != NULL);
  if (rack) {
    check_counts(rack, 74, 4 * 72, 72 * 71 / 2 + 2 * 72, 0, 1, 0);
    CHECK_STR_CONTAINS(rack, "<link id=\"nvl-71\" bandwidth=\"900GBps\" latency=\"1us\"");
  }
  free(rack);

  /* Bad arguments and write failures. */
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  CHECK(mem != NULL);
  if (mem) {
    ep_fabric f;
    CHECK_EQ_INT(ep_fabric_init(&f, &c, 25), EP_ERR_INVALID);
    CHECK_EQ_INT(ep_fabric_write_simgrid_xml(&f, mem), EP_ERR_INVALID); /* left empty */
    CHECK_EQ_INT(ep_fabric_init(&f, &c, 0), EP_ERR_INVALID);
    CHECK_EQ_INT(ep_fabric_init(&f, NULL, 8), EP_ERR_INVALID);
    CHECK_EQ_INT(ep_fabric_write_simgrid_xml(NULL, mem), EP_ERR_INVALID);
    ep_cluster bad = c;
    bad.nic_GBps = 0.0;
    CHECK_EQ_INT(ep_fabric_init(&f, &bad, 8), EP_ERR_INVALID);
    bad = c;
    bad.gpu = NULL;
    CHECK_EQ_INT(ep_fabric_init(&f, &bad, 8), EP_ERR_INVALID);
    CHECK(fclose(mem) == 0);
    CHECK_EQ_INT(len, 0); /* nothing written on invalid input */
  }
  free(buf);
  FILE *full = fopen("/dev/full", "w");
  CHECK(full != NULL);
  if (full) {
    ep_fabric f;
    CHECK_EQ_INT(ep_fabric_init(&f, &c, 24), EP_OK);
    fprintf(stderr, "(an I/O error message is expected next)\n");
    CHECK_EQ_INT(ep_fabric_write_simgrid_xml(&f, full), EP_ERR_IO);
    ep_fabric_free(&f);
    fclose(full); /* fails too: the buffer cannot be flushed */
  }
}

static void check_link(const ep_fabric *f, int32_t link, const char *name, double GBps, double us)
{
  CHECK(link >= 0 && link < f->n_links);
  if (link < 0 || link >= f->n_links)
    return;
  CHECK(strcmp(f->links[link].name, name) == 0);
  CHECK_REL(f->links[link].bw_GBps, GBps, 0.0);
  CHECK_REL(f->links[link].latency_us, us, 0.0);
  CHECK_EQ_INT(f->links[link].sharing, EP_LINK_SPLITDUPLEX);
}

/* The route src -> dst has the n hops named in links/dirs and latency us. */
static void check_route(const ep_fabric *f, int32_t src, int32_t dst, ep_port_class cls, int n,
                        const char *const *links, const ep_link_dir *dirs, double us)
{
  ep_fabric_route r;
  CHECK_EQ_INT(ep_fabric_route_of(f, src, dst, &r), EP_OK);
  CHECK_EQ_INT(r.src_port, ep_fabric_src_port(f, src, dst));
  CHECK_EQ_INT(r.dst_port, ep_fabric_dst_port(f, src, dst));
  CHECK_EQ_INT(f->ports[r.src_port].gpu, src);
  CHECK_EQ_INT(f->ports[r.dst_port].gpu, dst);
  CHECK_EQ_INT(f->ports[r.src_port].port_class, cls);
  CHECK_EQ_INT(f->ports[r.dst_port].port_class, cls);
  CHECK_EQ_INT(r.n_hops, n);
  for (int i = 0; i < n && i < r.n_hops; i++) {
    CHECK(strcmp(f->links[r.hop[i].link].name, links[i]) == 0);
    CHECK_EQ_INT(r.hop[i].dir, dirs[i]);
  }
  CHECK_REL(r.latency_us, us, 0.0);
}

static const ep_link_dir up_down[] = {EP_LINK_UP, EP_LINK_DOWN};
static const ep_link_dir up_up_down_down[] = {EP_LINK_UP, EP_LINK_UP, EP_LINK_DOWN, EP_LINK_DOWN};

/* The fabric of the first n_gpus GPUs of preset with count nodes or racks. */
static void preset_fabric(const char *preset, int32_t count, int32_t n_gpus, ep_cluster *c,
                          ep_fabric *f)
{
  CHECK_EQ_INT(ep_cluster_preset(preset, count, c), EP_OK);
  CHECK_EQ_INT(ep_fabric_init(f, c, n_gpus), EP_OK);
}

static void test_fabric_hgx(void)
{
  ep_cluster c;
  ep_fabric f;
  preset_fabric("hgx-h100", 2, 16, &c, &f);
  CHECK_EQ_INT(f.n_gpus, 16);
  CHECK_EQ_INT(f.n_domains, 2);
  CHECK_EQ_INT(f.n_ports, 32);
  CHECK_EQ_INT(f.n_links, 4 * 16 + 2);
  CHECK_EQ_INT(f.n_switches, 2 * 2 + 1);
  CHECK(strcmp(f.cluster.preset, "hgx-h100") == 0);

  /* Every GPU: an NVLink port into its domain's NVSwitch, a NIC port into its leaf. */
  for (int32_t g = 0; g < 16; g++) {
    const ep_fabric_gpu *gpu = &f.gpus[g];
    CHECK_EQ_INT(gpu->domain, g / 8);
    CHECK_EQ_INT(gpu->n_ports, 2);
    for (int32_t i = gpu->first_port; i < gpu->first_port + gpu->n_ports; i++) {
      const ep_fabric_port *p = &f.ports[i];
      CHECK_EQ_INT(p->gpu, g);
      const ep_fabric_switch *sw = &f.switches[p->sw];
      if (p->port_class == EP_PORT_NVLINK) {
        CHECK_EQ_INT(sw->kind, EP_SWITCH_NVSWITCH);
        CHECK_EQ_INT(sw->uplink, -1);
        CHECK_REL(f.links[p->link].bw_GBps, 450.0, 0.0);
      } else {
        CHECK_EQ_INT(p->port_class, EP_PORT_NIC);
        CHECK_EQ_INT(sw->kind, EP_SWITCH_LEAF);
        CHECK(sw->uplink >= 0);
        CHECK_REL(f.links[p->link].bw_GBps, 50.0, 0.0);
      }
    }
  }
  CHECK(strcmp(f.gpus[12].name, "gpu-12") == 0);
  const ep_fabric_port *nvl3 = &f.ports[ep_fabric_src_port(&f, 3, 5)];
  const ep_fabric_port *nic12 = &f.ports[ep_fabric_src_port(&f, 12, 3)];
  CHECK_EQ_INT(nvl3->port_class, EP_PORT_NVLINK);
  CHECK_EQ_INT(nic12->port_class, EP_PORT_NIC);
  check_link(&f, nvl3->link, "nvl-3", 450.0, 1.0);
  check_link(&f, nvl3->pad, "nvlpad-3", 1e6, 1.0);
  check_link(&f, nic12->link, "nic-12", 50.0, 2.0);
  check_link(&f, nic12->pad, "nicpad-12", 1e6, 2.0);
  CHECK(strcmp(f.switches[nvl3->sw].name, "nvsw-0") == 0);
  CHECK(strcmp(f.switches[nvl3->sw].port_host, "nvsw-0") == 0);
  const ep_fabric_switch *leaf1 = &f.switches[nic12->sw];
  CHECK(strcmp(leaf1->name, "gw-1") == 0);
  CHECK(strcmp(leaf1->port_host, "fab-1") == 0);
  check_link(&f, leaf1->uplink, "up-1", 800.0, 0.0); /* 2 x 8 x 50 GB/s: never binds */
  CHECK(leaf1->parent >= 0);
  if (leaf1->parent >= 0) {
    const ep_fabric_switch *core = &f.switches[leaf1->parent];
    CHECK(strcmp(core->name, "core-r") == 0);
    CHECK_EQ_INT(core->kind, EP_SWITCH_CORE);
    CHECK_EQ_INT(core->uplink, -1);
    CHECK_EQ_INT(core->parent, -1);
    CHECK(core->port_host[0] == '\0');
  }
  CHECK_EQ_INT(f.domains[1].gpus.first, 8);
  CHECK_EQ_INT(f.domains[1].gpus.n, 8);
  CHECK_EQ_INT(f.domains[1].links.first, 32);
  CHECK_EQ_INT(f.domains[1].links.n, 32);
  CHECK_EQ_INT(f.scaleout.gpus.n, 0);
  CHECK_EQ_INT(f.scaleout.links.first, 64);
  CHECK_EQ_INT(f.scaleout.links.n, 2);
  CHECK_EQ_INT(f.scaleout.switches.n, 1);

  /* Routes: NVLink in a node, NIC and the uplinks across; one-way latencies. */
  const char *r05[] = {"nvl-0", "nvl-5"};
  check_route(&f, 0, 5, EP_PORT_NVLINK, 2, r05, up_down, 2.0);
  const char *r50[] = {"nvl-5", "nvl-0"};
  check_route(&f, 5, 0, EP_PORT_NVLINK, 2, r50, up_down, 2.0);
  const char *r312[] = {"nic-3", "up-0", "up-1", "nic-12"};
  check_route(&f, 3, 12, EP_PORT_NIC, 4, r312, up_up_down_down, 4.0);
  const char *r123[] = {"nic-12", "up-1", "up-0", "nic-3"};
  check_route(&f, 12, 3, EP_PORT_NIC, 4, r123, up_up_down_down, 4.0);
  const char *r815[] = {"nvl-8", "nvl-15"};
  check_route(&f, 8, 15, EP_PORT_NVLINK, 2, r815, up_down, 2.0);

  /* Bytes per port: NVLink for peers of the node, NIC for the others; the
   * diagonal (local copies) loads no port. */
  int64_t m[16 * 16], out[32], in[32];
  for (int32_t s = 0; s < 16; s++)
    for (int32_t d = 0; d < 16; d++)
      m[s * 16 + d] = s == d ? 1000000 : 100 * s + d + 1;
  ep_fabric_port_bytes(&f, m, out, in);
  int64_t want[4] = {0, 0, 0, 0}; /* GPU 3: NVLink out, in, NIC out, in */
  for (int32_t p = 0; p < 16; p++) {
    if (p == 3)
      continue;
    want[p < 8 ? 0 : 2] += m[3 * 16 + p];
    want[p < 8 ? 1 : 3] += m[p * 16 + 3];
  }
  const int32_t nvl_port3 = ep_fabric_src_port(&f, 3, 4), nic_port3 = ep_fabric_src_port(&f, 3, 9);
  CHECK_EQ_INT(out[nvl_port3], want[0]);
  CHECK_EQ_INT(in[nvl_port3], want[1]);
  CHECK_EQ_INT(out[nic_port3], want[2]);
  CHECK_EQ_INT(in[nic_port3], want[3]);
  int64_t sum_out = 0, sum_in = 0, sum_m = 0;
  for (int32_t i = 0; i < 32; i++) {
    sum_out += out[i];
    sum_in += in[i];
  }
  for (int32_t i = 0; i < 16 * 16; i++)
    sum_m += i % 17 ? m[i] : 0;
  CHECK_EQ_INT(sum_out, sum_m);
  CHECK_EQ_INT(sum_in, sum_m);

  ep_fabric_route r;
  CHECK_EQ_INT(ep_fabric_route_of(&f, 4, 4, &r), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_fabric_route_of(&f, 4, 16, &r), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_fabric_route_of(&f, -1, 4, &r), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_fabric_route_of(&f, 0, 1, NULL), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_fabric_route_of(NULL, 0, 1, &r), EP_ERR_INVALID);
  ep_fabric_free(&f);
  ep_fabric_free(&f); /* emptied: a no-op */
  ep_fabric_free(NULL);

  /* 5 GPUs of a 3-node cluster: one domain, no scale-out core, no uplinks. */
  preset_fabric("hgx-h100", 3, 5, &c, &f);
  CHECK_EQ_INT(f.n_domains, 1);
  CHECK_EQ_INT(f.n_links, 4 * 5);
  CHECK_EQ_INT(f.n_switches, 2);
  CHECK_EQ_INT(f.scaleout.links.n, 0);
  CHECK_EQ_INT(f.scaleout.switches.n, 0);
  for (int32_t s = 0; s < f.n_switches; s++)
    CHECK_EQ_INT(f.switches[s].uplink, -1);
  const char *r40[] = {"nvl-4", "nvl-0"};
  check_route(&f, 4, 0, EP_PORT_NVLINK, 2, r40, up_down, 2.0);
  ep_fabric_free(&f);

  /* 20 of 24 GPUs: the last domain holds 4; uplinks still sized by gpus_per_node. */
  CHECK_EQ_INT(ep_fabric_init(&f, &c, 20), EP_OK);
  CHECK_EQ_INT(f.n_domains, 3);
  CHECK_EQ_INT(f.domains[2].gpus.first, 16);
  CHECK_EQ_INT(f.domains[2].gpus.n, 4);
  CHECK_EQ_INT(f.domains[2].links.n, 16);
  check_link(&f, f.scaleout.links.first + 2, "up-2", 800.0, 0.0);
  const char *r190[] = {"nic-19", "up-2", "up-0", "nic-0"};
  check_route(&f, 19, 0, EP_PORT_NIC, 4, r190, up_up_down_down, 4.0);
  ep_fabric_free(&f);

  /* Explicit latencies: each GPU link carries half, routes the whole. */
  ep_cluster e = c;
  e.preset[0] = '\0';
  e.gpus_per_node = 4;
  e.nvlink_latency_us = 0.3;
  e.nic_latency_us = 1.7;
  CHECK_EQ_INT(ep_fabric_init(&f, &e, 12), EP_OK);
  const char *r13[] = {"nvl-1", "nvl-3"};
  check_route(&f, 1, 3, EP_PORT_NVLINK, 2, r13, up_down, 0.3);
  const char *r111[] = {"nic-1", "up-0", "up-2", "nic-11"};
  check_route(&f, 1, 11, EP_PORT_NIC, 4, r111, up_up_down_down, 1.7);
  ep_fabric_free(&f);

  /* Invalid clusters leave the fabric empty. */
  ep_cluster bad = c;
  bad.fabric = (ep_fabric_kind)(EP_FABRIC_NONBLOCKING + 1);
  CHECK_EQ_INT(ep_fabric_init(&f, &bad, 8), EP_ERR_INVALID);
  CHECK(f.gpus == NULL && f.n_links == 0);
  bad = c;
  bad.nvlink_latency_us = -1.0;
  CHECK_EQ_INT(ep_fabric_init(&f, &bad, 8), EP_ERR_INVALID);
  bad = c;
  bad.nvlink_GBps = NAN;
  CHECK_EQ_INT(ep_fabric_init(&f, &bad, 8), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_fabric_init(NULL, &c, 8), EP_ERR_INVALID);
  ep_fabric_free(&f);

  CHECK(strcmp(ep_port_class_name(EP_PORT_NVLINK), "NVLink") == 0);
  CHECK(strcmp(ep_port_class_name(EP_PORT_NIC), "NIC") == 0);
  CHECK(strcmp(ep_port_class_name(EP_PORT_CLASS_COUNT), "?") == 0);
}

static void test_fabric_nvl72(void)
{
  ep_cluster c;
  ep_fabric f;
  preset_fabric("gb200-nvl72", 2, 144, &c, &f);
  CHECK_EQ_INT(f.n_domains, 2);
  CHECK_EQ_INT(f.domains[0].gpus.n, 72);
  CHECK_EQ_INT(f.gpus[71].domain, 0);
  CHECK_EQ_INT(f.gpus[72].domain, 1);
  const char *r071[] = {"nvl-0", "nvl-71"};
  check_route(&f, 0, 71, EP_PORT_NVLINK, 2, r071, up_down, 2.0);
  const char *r7172[] = {"nic-71", "up-0", "up-1", "nic-72"};
  check_route(&f, 71, 72, EP_PORT_NIC, 4, r7172, up_up_down_down, 4.0);
  const char *r143[] = {"nvl-143", "nvl-72"};
  check_route(&f, 143, 72, EP_PORT_NVLINK, 2, r143, up_down, 2.0);
  check_link(&f, f.ports[ep_fabric_src_port(&f, 0, 71)].link, "nvl-0", 900.0, 1.0);
  check_link(&f, f.ports[ep_fabric_dst_port(&f, 0, 100)].link, "nic-100", 50.0, 2.0);
  check_link(&f, f.scaleout.links.first, "up-0", 7200.0, 0.0); /* 2 x 72 x 50 GB/s */
  ep_fabric_free(&f);

  /* One rack: every pair over NVLink. */
  CHECK_EQ_INT(ep_fabric_init(&f, &c, 72), EP_OK);
  CHECK_EQ_INT(f.n_domains, 1);
  CHECK_EQ_INT(f.scaleout.switches.n, 0);
  for (int32_t d = 1; d < 72; d++)
    CHECK_EQ_INT(f.ports[ep_fabric_src_port(&f, 0, d)].port_class, EP_PORT_NVLINK);
  ep_fabric_free(&f);
}

/* The XML from the fabric is byte for byte what the writer it replaced made
 * (FNV-1a 64 and length of that writer's output). */
static void test_xml_unchanged(void)
{
  ep_cluster h100, h800, nvl, e;
  CHECK_EQ_INT(ep_cluster_preset("hgx-h100", 3, &h100), EP_OK);
  CHECK_EQ_INT(ep_cluster_preset("hgx-h800", 4, &h800), EP_OK);
  CHECK_EQ_INT(ep_cluster_preset("gb200-nvl72", 2, &nvl), EP_OK);
  e = nvl;
  e.preset[0] = '\0';
  e.gpu = ep_gpu_catalog_find("B200");
  e.n_nodes = 3;
  e.gpus_per_node = 4;
  e.nvlink_GBps = 123.456;
  e.nvlink_latency_us = 0.3;
  e.nic_GBps = 12.5;
  e.nic_latency_us = 1.7;
  ep_cluster e0 = e;
  e0.nvlink_latency_us = 0.0;
  e0.nic_latency_us = 0.0;
  const struct {
    const ep_cluster *c;
    int32_t n_gpus;
    uint64_t fnv;
    size_t bytes;
  } cases[] = {
      {&h100, 8, 0xa0427f2b0e4807d8ull, 8736},   {&h100, 20, 0xb400ea299bdf8d87ull, 23294},
      {&h800, 32, 0xee9d1ec057f8a24cull, 38570}, {&nvl, 144, 0xf4b9fff9a94c349dull, 744974},
      {&e, 11, 0x76935e8ed359b906ull, 11864},    {&e0, 12, 0xf24caa42e8bace6full, 12174},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *xml = xml_of(cases[i].c, cases[i].n_gpus);
    CHECK(xml != NULL);
    if (!xml)
      continue;
    CHECK_EQ_INT(strlen(xml), cases[i].bytes);
    CHECK(ep_fnv1a64(EP_FNV1A64_INIT, xml, strlen(xml)) == cases[i].fnv);
    free(xml);
  }
}

int main(void)
{
  test_catalog();
  test_presets();
  test_fabric_hgx();
  test_fabric_nvl72();
  test_xml();
  test_xml_unchanged();
  return check_exit_code("test_topology");
}
