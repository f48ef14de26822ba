/* libFuzzer target over the scenario loader: each input is written to a temp
 * file and loaded with ep_scenario_load; its lines starting "#set " (YAML
 * comments) are also passed as --set overrides. A scenario the loader accepts
 * must satisfy every documented range and cross-key rule, and, where it is
 * small, its dispatch plan must build: what check accepts, run must run.
 * Built with -DEPSIM_FUZZ=ON under clang; tests/fuzz.sh runs it.
 * EPSIM_FUZZ_VERBOSE=1 prints the loader's messages (when replaying a file). */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ep_scenario.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Overrides taken from one input, and each one's length cap (a long override
 * is still cut here, not rejected, so the fuzzer keeps mutating it). */
#define MAX_OVERRIDES 8
#define MAX_OVERRIDE_BYTES 256

/* Plans at most this many token copies are built; the rest are only loaded. */
#define MAX_PLAN_COPIES 4096
#define MAX_PLAN_RANKS 256

static char tmp_path[4096]; /* the loader's path: /proc/self/fd/N of the unlinked file */
static int tmp_fd = -1;
static FILE *err_stream; /* /dev/null, or stderr when verbose */

static void discard_log(void *user, const char *message)
{
  (void)user;
  (void)message;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  /* In memory where there is /dev/shm: every input is written once. */
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir)
    dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(tmp_path, sizeof tmp_path, "%s/epsim-fuzz-XXXXXX", dir);
  tmp_fd = mkstemp(tmp_path);
  if (tmp_fd < 0) {
    perror("fuzz_scenario: mkstemp");
    abort();
  }
  /* Unlinked at once, so a crash leaves nothing behind; read through its fd. */
  unlink(tmp_path);
  snprintf(tmp_path, sizeof tmp_path, "/proc/self/fd/%d", tmp_fd);
  if (getenv("EPSIM_FUZZ_VERBOSE")) {
    err_stream = stderr;
  } else {
    err_stream = fopen("/dev/null", "w");
    ep_log_set_sink(discard_log, NULL);
  }
  if (!err_stream)
    abort();
  return 0;
}

/* A documented rule the loaded scenario breaks: the validator let it through. */
#define RULE(cond)                                                                                 \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_scenario: accepted a scenario breaking %s\n", #cond);                  \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* The rules of scenarios/README.md that any accepted scenario keeps. */
static void check_rules(const ep_scenario *s)
{
  const ep_model_cfg *m = &s->model;
  const ep_cluster *c = &s->cluster;
  RULE(memchr(m->name, '\0', sizeof m->name) && m->name[0] != '\0');
  RULE(m->n_experts >= 1 && m->top_k >= 1 && m->top_k <= m->n_experts);
  RULE(m->hidden >= 1 && m->moe_intermediate >= 1 && m->n_shared_experts >= 0);
  RULE(ep_dtype_bytes_per_token(m->dispatch_dtype, m->hidden) > 0);
  RULE(ep_dtype_bytes_per_token(m->combine_dtype, m->hidden) > 0);
  RULE(c->gpu != NULL && c->n_nodes >= 1 && c->gpus_per_node >= 1);
  RULE(isfinite(c->nvlink_GBps) && c->nvlink_GBps > 0);
  RULE(isfinite(c->nic_GBps) && c->nic_GBps > 0);
  RULE(isfinite(c->nvlink_latency_us) && c->nvlink_latency_us >= 0);
  RULE(isfinite(c->nic_latency_us) && c->nic_latency_us >= 0);
  RULE(s->ep >= 1 && m->n_experts % s->ep == 0);
  RULE((int64_t)s->ep <= (int64_t)c->n_nodes * c->gpus_per_node);
  RULE(s->tokens_per_gpu >= 1);
  const ep_routing_cfg *r = &s->routing;
  RULE(r->kind == EP_ROUTING_UNIFORM || r->kind == EP_ROUTING_ZIPF || r->kind == EP_ROUTING_HOT);
  if (r->kind == EP_ROUTING_ZIPF)
    RULE(isfinite(r->zipf_exponent) && r->zipf_exponent > 0);
  if (r->kind == EP_ROUTING_HOT) {
    RULE(r->hot_experts >= 1 && r->hot_experts < m->n_experts);
    RULE(r->hot_share > 0 && r->hot_share < 1);
  }
  RULE(isfinite(s->capacity_factor) && s->capacity_factor >= 0);
  RULE(s->dispatch != NULL);
  RULE(s->flows == EP_FLOWS_AUTO || s->flows == EP_FLOWS_PAIR || s->flows == EP_FLOWS_PORT);
}

/* The input's "#set " lines, copied NUL-terminated into bufs. */
static int take_overrides(const uint8_t *data, size_t size,
                          char bufs[MAX_OVERRIDES][MAX_OVERRIDE_BYTES + 1],
                          const char *out[MAX_OVERRIDES])
{
  static const char tag[] = "#set ";
  const size_t tag_len = sizeof tag - 1;
  int n = 0;
  for (size_t i = 0; i + tag_len <= size && n < MAX_OVERRIDES; i++) {
    if ((i > 0 && data[i - 1] != '\n') || memcmp(data + i, tag, tag_len) != 0)
      continue;
    size_t start = i + tag_len, len = 0;
    while (start + len < size && data[start + len] != '\n' && len < MAX_OVERRIDE_BYTES)
      len++;
    memcpy(bufs[n], data + start, len);
    bufs[n][len] = '\0'; /* a NUL inside ends the override early, as argv would */
    out[n] = bufs[n];
    n++;
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (ftruncate(tmp_fd, 0) != 0 || pwrite(tmp_fd, data, size, 0) != (ssize_t)size) {
    perror("fuzz_scenario: writing the temp file");
    abort();
  }
  char bufs[MAX_OVERRIDES][MAX_OVERRIDE_BYTES + 1];
  const char *overrides[MAX_OVERRIDES];
  const int n_overrides = take_overrides(data, size, bufs, overrides);

  ep_scenario s;
  const ep_status st =
      ep_scenario_load(tmp_path, n_overrides ? overrides : NULL, n_overrides, &s, err_stream);
  if (st == EP_ERR_PARSE)
    return 0;
  if (st != EP_OK) {
    fprintf(stderr, "fuzz_scenario: a regular file's load returned %s\n", ep_status_str(st));
    abort();
  }
  check_rules(&s);

  /* What the loader accepts, the planner must take (epsim run's next step). */
  const double copies = (double)s.tokens_per_gpu * s.ep * s.model.top_k;
  if (copies <= MAX_PLAN_COPIES && s.ep <= MAX_PLAN_RANKS) {
    ep_plan plan = {0};
    const ep_status pst = ep_scenario_build_plan(&s, NULL, &plan);
    if (pst != EP_OK) {
      fprintf(stderr, "fuzz_scenario: accepted scenario, but its plan failed: %s\n",
              ep_status_str(pst));
      abort();
    }
    ep_plan_free(&plan);
  }
  return 0;
}
