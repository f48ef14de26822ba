/* Hardware catalog, cluster presets and the SimGrid platform XML writer.
 * The XML is checked by structure here (counts of hosts, links and routes);
 * that SimGrid loads it and times flows right is test_simgrid's job. */
#include <stdlib.h>

#include "check.h"
#include "ep_topology.h"

static void test_catalog(void)
{
  int32_t n = 0;
  const ep_gpu_spec *all = ep_gpu_catalog(&n);
  CHECK_EQ_INT(n, 5);
  CHECK(all != NULL);
  const char *names[] = {"H100", "H800", "H200", "B200", "GB200"};
  for (int i = 0; i < 5; i++) {
    const ep_gpu_spec *g = ep_gpu_catalog_find(names[i]);
    CHECK(g != NULL);
    if (g) {
      CHECK(strcmp(g->name, names[i]) == 0);
      CHECK(g->source && g->source[0]);
      CHECK(g->fp8_dense_tflops > g->bf16_dense_tflops);
      CHECK_REL(g->nic_GBps, 50.0, 0.0);
    }
  }
  /* Case-insensitive, exact names only. */
  CHECK(ep_gpu_catalog_find("h100") == ep_gpu_catalog_find("H100"));
  CHECK(ep_gpu_catalog_find("gB200") == ep_gpu_catalog_find("GB200"));
  CHECK(ep_gpu_catalog_find("H10") == NULL);
  CHECK(ep_gpu_catalog_find("H1000") == NULL);
  CHECK(ep_gpu_catalog_find("A100") == NULL);
  CHECK(ep_gpu_catalog_find("") == NULL);
  CHECK(ep_gpu_catalog_find(NULL) == NULL);

  /* Values from shared/research/data/hardware.csv. */
  const ep_gpu_spec *h100 = ep_gpu_catalog_find("H100");
  const ep_gpu_spec *h800 = ep_gpu_catalog_find("h800");
  const ep_gpu_spec *h200 = ep_gpu_catalog_find("H200");
  const ep_gpu_spec *b200 = ep_gpu_catalog_find("B200");
  const ep_gpu_spec *gb200 = ep_gpu_catalog_find("GB200");
  if (!h100 || !h800 || !h200 || !b200 || !gb200)
    return;
  CHECK_REL(h100->bf16_dense_tflops, 989.4, 1e-12);
  CHECK_REL(h100->fp8_dense_tflops, 1978.9, 1e-12);
  CHECK_REL(h100->hbm_GBps, 3350.0, 1e-12);
  CHECK_REL(h100->hbm_GB, 80.0, 1e-12);
  CHECK_REL(h100->nvlink_GBps, 450.0, 1e-12);
  CHECK_EQ_INT(h100->nvlink_domain_gpus, 8);
  CHECK_REL(h800->nvlink_GBps, 200.0, 1e-12);
  CHECK_REL(h200->hbm_GBps, 4800.0, 1e-12);
  CHECK_REL(h200->hbm_GB, 141.0, 1e-12);
  CHECK_REL(b200->bf16_dense_tflops, 2250.0, 1e-12);
  CHECK_REL(b200->hbm_GBps, 7700.0, 1e-12);
  CHECK_REL(b200->nvlink_GBps, 900.0, 1e-12);
  CHECK_REL(gb200->fp8_dense_tflops, 5000.0, 1e-12);
  CHECK_REL(gb200->hbm_GBps, 8000.0, 1e-12);
  CHECK_REL(gb200->hbm_GB, 186.0, 1e-12);
  CHECK_EQ_INT(gb200->nvlink_domain_gpus, 72);
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

  CHECK_EQ_INT(ep_cluster_preset("hgx-h100", 4, &c), EP_OK);
  CHECK(strcmp(c.preset, "hgx-h100") == 0);
  CHECK(c.gpu == ep_gpu_catalog_find("H100"));
  CHECK_EQ_INT(c.n_nodes, 4);
  CHECK_EQ_INT(c.gpus_per_node, 8);
  CHECK_EQ_INT(ep_cluster_n_gpus(&c), 32);
  CHECK_EQ_INT(ep_cluster_node_of(&c, 7), 0);
  CHECK_EQ_INT(ep_cluster_node_of(&c, 8), 1);
  CHECK_REL(c.nvlink_GBps, 450.0, 1e-12);
  CHECK_REL(c.nic_GBps, 50.0, 1e-12);
  CHECK_REL(c.nvlink_latency_us, 2.0, 1e-12);
  CHECK_REL(c.nic_latency_us, 4.0, 1e-12);
  CHECK_EQ_INT(c.fabric, EP_FABRIC_NONBLOCKING);

  CHECK_EQ_INT(ep_cluster_preset("HGX-H800", 2, &c), EP_OK);
  CHECK(c.gpu == ep_gpu_catalog_find("H800"));
  CHECK_REL(c.nvlink_GBps, 200.0, 1e-12);
  CHECK_REL(c.nic_GBps, 50.0, 1e-12);
  CHECK_EQ_INT(ep_cluster_n_gpus(&c), 16);

  CHECK_EQ_INT(ep_cluster_preset("gb200-nvl72", 2, &c), EP_OK);
  CHECK(c.gpu == ep_gpu_catalog_find("GB200"));
  CHECK_EQ_INT(c.gpus_per_node, 72);
  CHECK_EQ_INT(ep_cluster_n_gpus(&c), 144);
  CHECK_EQ_INT(ep_cluster_node_of(&c, 71), 0);
  CHECK_EQ_INT(ep_cluster_node_of(&c, 72), 1);
  CHECK_REL(c.nvlink_GBps, 900.0, 1e-12);
  CHECK_REL(c.nic_GBps, 50.0, 1e-12);

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
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  ep_status st = ep_topology_write_simgrid_xml(c, n_gpus, f);
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
    CHECK_EQ_INT(ep_topology_write_simgrid_xml(&c, 25, mem), EP_ERR_INVALID);
    CHECK_EQ_INT(ep_topology_write_simgrid_xml(&c, 0, mem), EP_ERR_INVALID);
    CHECK_EQ_INT(ep_topology_write_simgrid_xml(NULL, 8, mem), EP_ERR_INVALID);
    ep_cluster bad = c;
    bad.nic_GBps = 0.0;
    CHECK_EQ_INT(ep_topology_write_simgrid_xml(&bad, 8, mem), EP_ERR_INVALID);
    bad = c;
    bad.gpu = NULL;
    CHECK_EQ_INT(ep_topology_write_simgrid_xml(&bad, 8, mem), EP_ERR_INVALID);
    CHECK(fclose(mem) == 0);
    CHECK_EQ_INT(len, 0); /* nothing written on invalid input */
  }
  free(buf);
  FILE *full = fopen("/dev/full", "w");
  CHECK(full != NULL);
  if (full) {
    fprintf(stderr, "(an I/O error message is expected next)\n");
    CHECK_EQ_INT(ep_topology_write_simgrid_xml(&c, 24, full), EP_ERR_IO);
    fclose(full); /* fails too: the buffer cannot be flushed */
  }
}

int main(void)
{
  test_catalog();
  test_presets();
  test_xml();
  return check_exit_code("test_topology");
}
