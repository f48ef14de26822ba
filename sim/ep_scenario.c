/* Scenario files: YAML (libyaml document API) to a validated ep_scenario.
 * Keys land in a raw table with the line:col of key and value, --set overrides
 * replace entries, then every key is type-checked and the layout cross-checked.
 * Problems are collected, sorted by position and printed together, so a user
 * fixes a file in one round. scenarios/README.md is the format's reference. */
#include "ep_scenario.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { S_MODEL, S_CLUSTER, S_PARALLEL, S_WORKLOAD, S_POLICY, S_SIM, S_COUNT } ep__sec;

static const char *const ep__sec_names[S_COUNT] = {"model",    "cluster", "parallel",
                                                   "workload", "policy",  "sim"};
static const char *const ep__sec_list = "model, cluster, parallel, workload, policy, sim";

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

typedef enum { T_STR, T_INT, T_U64, T_NUM, T_ENUM, T_GPU } ep__type;

typedef struct ep__keydef {
  ep__sec sec;
  const char *name;
  ep__type type;
  int64_t imin, imax;       /* T_INT bounds, inclusive */
  double dmin, dmax;        /* T_NUM bounds */
  unsigned char dmin_open;  /* T_NUM: dmin itself is invalid */
  unsigned char dmax_open;  /* T_NUM: dmax itself is invalid */
  unsigned char none_ok;    /* T_NUM: the word none is accepted too */
  const char *const *enums; /* T_ENUM: NULL-terminated, index = C enum value */
  const char *valid;        /* shown after "valid:" (T_ENUM and T_GPU build theirs) */
} ep__keydef;

/* Name lengths fit ep_model_cfg.name. */
#define EP__NAME_MAX 63

static const char *const ep__placements[] = {"contiguous", "round_robin", NULL};
static const char *const ep__routings[] = {"uniform", "zipf", "hot", NULL};
static const char *const ep__fabrics[] = {"nonblocking", NULL};
static const char *const ep__flows[] = {"auto", "pair", "port", NULL};

_Static_assert(EP_PLACEMENT_CONTIGUOUS == 0 && EP_PLACEMENT_ROUND_ROBIN == 1, "placement order");
_Static_assert(EP_ROUTING_UNIFORM == 0 && EP_ROUTING_ZIPF == 1 && EP_ROUTING_HOT == 2,
               "routing order");
_Static_assert(EP_FLOWS_AUTO == 0 && EP_FLOWS_PAIR == 1 && EP_FLOWS_PORT == 2, "flows order");

#define EP__INT(s, n, lo, hi, v)                                                                   \
  {                                                                                                \
    s, n, T_INT, lo, hi, 0, 0, 0, 0, 0, NULL, v                                                    \
  }
#define EP__NUM(s, n, lo, lo_open, hi, hi_open, none, v)                                           \
  {                                                                                                \
    s, n, T_NUM, 0, 0, lo, hi, lo_open, hi_open, none, NULL, v                                     \
  }
#define EP__ENUM(s, n, e)                                                                          \
  {                                                                                                \
    s, n, T_ENUM, 0, 0, 0, 0, 0, 0, 0, e, NULL                                                     \
  }

/* Integer caps are far above any published model or cluster and keep derived
 * counts (tokens_per_gpu * ep * top_k, nodes * gpus_per_node) inside int64 and
 * int32. The table order is the order of the "valid:" key lists. */
static const ep__keydef ep__keys[K_COUNT] = {
    [K_NAME] = {S_MODEL, "name", T_STR, 0, 0, 0, 0, 0, 0, 0, NULL, "string of 1..63 bytes"},
    [K_N_EXPERTS] = EP__INT(S_MODEL, "n_experts", 1, 65536, "integer 1..65536"),
    [K_TOP_K] = EP__INT(S_MODEL, "top_k", 1, 65536, "integer 1..n_experts"),
    [K_HIDDEN] = EP__INT(S_MODEL, "hidden", 1, 1048576, "integer 1..1048576"),
    [K_MOE_INTERMEDIATE] = EP__INT(S_MODEL, "moe_intermediate", 1, 1048576, "integer 1..1048576"),
    [K_N_SHARED] = EP__INT(S_MODEL, "n_shared_experts", 0, 1024, "integer 0..1024"),
    [K_DISPATCH_DTYPE] = EP__ENUM(S_MODEL, "dispatch_dtype", ep_dtype_payload_names),
    [K_COMBINE_DTYPE] = EP__ENUM(S_MODEL, "combine_dtype", ep_dtype_payload_names),
    [K_PRESET] = EP__ENUM(S_CLUSTER, "preset", ep_cluster_preset_names),
    [K_NODES] = EP__INT(S_CLUSTER, "nodes", 1, 65536, "integer 1..65536"),
    [K_RACKS] = EP__INT(S_CLUSTER, "racks", 1, 65536, "integer 1..65536"),
    [K_GPU] = {S_CLUSTER, "gpu", T_GPU, 0, 0, 0, 0, 0, 0, 0, NULL, NULL},
    [K_GPUS_PER_NODE] = EP__INT(S_CLUSTER, "gpus_per_node", 1, 1024, "integer 1..1024"),
    [K_NVLINK_GBPS] = EP__NUM(S_CLUSTER, "nvlink_GBps", 0, 1, HUGE_VAL, 1, 0, "number > 0"),
    [K_NVLINK_LAT] = EP__NUM(S_CLUSTER, "nvlink_latency_us", 0, 0, HUGE_VAL, 1, 0, "number >= 0"),
    [K_NIC_GBPS] = EP__NUM(S_CLUSTER, "nic_GBps", 0, 1, HUGE_VAL, 1, 0, "number > 0"),
    [K_NIC_LAT] = EP__NUM(S_CLUSTER, "nic_latency_us", 0, 0, HUGE_VAL, 1, 0, "number >= 0"),
    [K_FABRIC] = EP__ENUM(S_CLUSTER, "fabric", ep__fabrics),
    [K_EP] = EP__INT(S_PARALLEL, "ep", 1, 65536, "integer 1..65536"),
    [K_TP] = EP__INT(S_PARALLEL, "tp", 1, 1, "1, tp > 1 is not supported yet"),
    [K_DP] = EP__INT(S_PARALLEL, "dp", 1, 1, "1, dp > 1 is not supported yet"),
    [K_PLACEMENT] = EP__ENUM(S_PARALLEL, "placement", ep__placements),
    [K_TOKENS] = EP__INT(S_WORKLOAD, "tokens_per_gpu", 1, 16777216, "integer 1..16777216"),
    [K_ROUTING] = EP__ENUM(S_WORKLOAD, "routing", ep__routings),
    [K_ZIPF] = EP__NUM(S_WORKLOAD, "zipf_exponent", 0, 1, HUGE_VAL, 1, 0, "number > 0"),
    [K_HOT_EXPERTS] = EP__INT(S_WORKLOAD, "hot_experts", 1, 65535, "integer 1..n_experts-1"),
    [K_HOT_SHARE] = EP__NUM(S_WORKLOAD, "hot_share", 0, 1, 1, 1, 0, "number in (0, 1)"),
    [K_SEED] = {S_WORKLOAD, "seed", T_U64, 0, 0, 0, 0, 0, 0, 0, NULL,
                "integer 0..18446744073709551615"},
    [K_CAPACITY] =
        EP__NUM(S_POLICY, "capacity_factor", 0, 1, HUGE_VAL, 1, 1, "none or a number > 0"),
    [K_DISPATCH] = EP__ENUM(S_POLICY, "dispatch", ep_dispatch_names),
    [K_FLOWS] = EP__ENUM(S_SIM, "flows", ep__flows),
};

/* A position: the file (rank 0) or an override (rank 1, line = its 1-based index). */
typedef struct ep__pos {
  const char *src;
  int rank;
  int line, col; /* 1-based */
} ep__pos;

typedef enum { V_SCALAR, V_MAPPING, V_SEQUENCE } ep__vkind;

typedef struct ep__raw {
  int present;
  int ok; /* present and typed without error */
  ep__pos key_pos, val_pos;
  ep__vkind kind;
  const char *text; /* NUL-terminated; owned by the YAML document or the override */
  size_t len;
  int plain; /* unquoted scalar */
  /* Typed value (one of these, by type). */
  int64_t i;
  uint64_t u;
  double d; /* T_NUM; -1 for none */
  int e;    /* T_ENUM index */
  const ep_gpu_spec *gpu;
} ep__raw;

typedef struct ep__err {
  ep__pos pos;
  unsigned seq;
  char *line;
} ep__err;

typedef struct ep__ctx {
  const char *path;
  ep__err *errs;
  size_t n_errs, cap_errs;
  int nomem;
  ep__raw key[K_COUNT];
  struct {
    int present;
    int bad;     /* not a mapping: its keys are unknown, so none is reported missing */
    ep__pos pos; /* of the section's key (or of the first override naming it) */
  } sec[S_COUNT];
  ep__pos root_pos;
  int no_root; /* empty document or not a mapping: nothing else to check */
} ep__ctx;

static ep__pos ep__mark_pos(const ep__ctx *c, yaml_mark_t m)
{
  ep__pos p = {c->path, 0, (int)m.line + 1, (int)m.column + 1};
  return p;
}

/* Records "src:line:col: key: message (valid: valid)". */
__attribute__((format(printf, 5, 6))) static void
ep__error(ep__ctx *c, ep__pos pos, const char *key, const char *valid, const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->n_errs == c->cap_errs) {
    size_t cap = c->cap_errs ? 2 * c->cap_errs : 16;
    ep__err *grown = realloc(c->errs, cap * sizeof *grown);
    if (!grown) {
      c->nomem = 1;
      return;
    }
    c->errs = grown;
    c->cap_errs = cap;
  }
  int n = snprintf(NULL, 0, "%s:%d:%d: %s: %s (valid: %s)", pos.src, pos.line, pos.col, key, msg,
                   valid);
  char *line = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (!line) {
    c->nomem = 1;
    return;
  }
  snprintf(line, (size_t)n + 1, "%s:%d:%d: %s: %s (valid: %s)", pos.src, pos.line, pos.col, key,
           msg, valid);
  c->errs[c->n_errs] = (ep__err){pos, (unsigned)c->n_errs, line};
  c->n_errs++;
}

static int ep__err_cmp(const void *a, const void *b)
{
  const ep__err *x = a, *y = b;
  if (x->pos.rank != y->pos.rank)
    return x->pos.rank < y->pos.rank ? -1 : 1;
  if (x->pos.line != y->pos.line)
    return x->pos.line < y->pos.line ? -1 : 1;
  if (x->pos.col != y->pos.col)
    return x->pos.col < y->pos.col ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* "section.key" for key k. */
static const char *ep__dotted(ep__key k, char *buf, size_t n)
{
  snprintf(buf, n, "%s.%s", ep__sec_names[ep__keys[k].sec], ep__keys[k].name);
  return buf;
}

static void ep__join(const char *const *names, char *buf, size_t n)
{
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; names[i]; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", names[i]);
    if (w < 0 || (size_t)w >= n - used)
      return; /* truncated: the lists here are short */
    used += (size_t)w;
  }
}

/* The text after "valid:" for key k. */
static const char *ep__valid(ep__key k, char *buf, size_t n)
{
  const ep__keydef *def = &ep__keys[k];
  if (def->type == T_ENUM) {
    ep__join(def->enums, buf, n);
    return buf;
  }
  if (def->type == T_GPU) {
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
    return buf;
  }
  return def->valid;
}

/* Error about key k at pos with the key's own valid-text. */
__attribute__((format(printf, 4, 5))) static void ep__key_error(ep__ctx *c, ep__pos pos, ep__key k,
                                                                const char *fmt, ...)
{
  char msg[400], dotted[64], valid[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ep__error(c, pos, ep__dotted(k, dotted, sizeof dotted), ep__valid(k, valid, sizeof valid), "%s",
            msg);
}

static const char *ep__kind_name(ep__vkind kind)
{
  return kind == V_MAPPING ? "a mapping" : kind == V_SEQUENCE ? "a sequence" : "a scalar";
}

static int ep__find_sec(const char *name, size_t len)
{
  for (int s = 0; s < S_COUNT; s++)
    if (strlen(ep__sec_names[s]) == len && memcmp(ep__sec_names[s], name, len) == 0)
      return s;
  return -1;
}

static int ep__find_key(ep__sec sec, const char *name, size_t len)
{
  for (int k = 0; k < K_COUNT; k++)
    if (ep__keys[k].sec == sec && strlen(ep__keys[k].name) == len &&
        memcmp(ep__keys[k].name, name, len) == 0)
      return k;
  return -1;
}

static void ep__sec_keys(ep__sec sec, char *buf, size_t n)
{
  const char *names[K_COUNT + 1];
  int m = 0;
  for (int k = 0; k < K_COUNT; k++)
    if (ep__keys[k].sec == sec)
      names[m++] = ep__keys[k].name;
  names[m] = NULL;
  ep__join(names, buf, n);
}

/* User text in messages is cut so one bad line cannot flood the output. */
#define EP__SHOW 40
#define EP__SHOW_LEN(len) ((int)((len) > EP__SHOW ? EP__SHOW : (len)))

/* ---- reading the YAML document into the raw table ---- */

static ep__vkind ep__node_kind(const yaml_node_t *node)
{
  return node->type == YAML_MAPPING_NODE    ? V_MAPPING
         : node->type == YAML_SEQUENCE_NODE ? V_SEQUENCE
                                            : V_SCALAR;
}

static int ep__is_null(const yaml_node_t *node)
{
  if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return 0;
  const char *t = (const char *)node->data.scalar.value;
  return !strcmp(t, "") || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
         !strcmp(t, "NULL");
}

static void ep__walk_section(ep__ctx *c, yaml_document_t *doc, ep__sec sec, yaml_node_t *map)
{
  char keys[256];
  for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *kn = yaml_document_get_node(doc, pair->key);
    yaml_node_t *vn = yaml_document_get_node(doc, pair->value);
    if (!kn || !vn)
      continue;
    ep__pos kpos = ep__mark_pos(c, kn->start_mark);
    if (kn->type != YAML_SCALAR_NODE) {
      ep__sec_keys(sec, keys, sizeof keys);
      ep__error(c, kpos, ep__sec_names[sec], keys, "expected a key name, got %s",
                ep__kind_name(ep__node_kind(kn)));
      continue;
    }
    const char *name = (const char *)kn->data.scalar.value;
    size_t len = kn->data.scalar.length;
    int k = ep__find_key(sec, name, len);
    if (k < 0) {
      char key[128];
      snprintf(key, sizeof key, "%s.%.*s", ep__sec_names[sec], EP__SHOW_LEN(len), name);
      ep__sec_keys(sec, keys, sizeof keys);
      ep__error(c, kpos, key, keys, "unknown key");
      continue;
    }
    ep__raw *r = &c->key[k];
    if (r->present) {
      char dotted[64];
      ep__error(c, kpos, ep__dotted((ep__key)k, dotted, sizeof dotted), "each key once per section",
                "duplicate key, first given at %d:%d", r->key_pos.line, r->key_pos.col);
      continue;
    }
    r->present = 1;
    r->key_pos = kpos;
    r->val_pos = ep__mark_pos(c, vn->start_mark);
    r->kind = ep__node_kind(vn);
    if (r->kind == V_SCALAR) {
      r->text = (const char *)vn->data.scalar.value;
      r->len = vn->data.scalar.length;
      r->plain = vn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
      if (r->plain && ep__is_null(vn))
        r->len = 0; /* "~" and "null" mean no value, like an empty one */
    }
  }
}

static void ep__walk(ep__ctx *c, yaml_document_t *doc)
{
  yaml_node_t *root = yaml_document_get_root_node(doc);
  if (!root || ep__is_null(root)) {
    ep__pos p = {c->path, 0, 1, 1};
    ep__error(c, p, "scenario", ep__sec_list, "empty document");
    c->no_root = 1;
    return;
  }
  c->root_pos = ep__mark_pos(c, root->start_mark);
  if (root->type != YAML_MAPPING_NODE) {
    ep__error(c, c->root_pos, "scenario", ep__sec_list, "expected a mapping of sections, got %s",
              ep__kind_name(ep__node_kind(root)));
    c->no_root = 1;
    return;
  }
  for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *kn = yaml_document_get_node(doc, pair->key);
    yaml_node_t *vn = yaml_document_get_node(doc, pair->value);
    if (!kn || !vn)
      continue;
    ep__pos kpos = ep__mark_pos(c, kn->start_mark);
    if (kn->type != YAML_SCALAR_NODE) {
      ep__error(c, kpos, "scenario", ep__sec_list, "expected a section name, got %s",
                ep__kind_name(ep__node_kind(kn)));
      continue;
    }
    const char *name = (const char *)kn->data.scalar.value;
    size_t len = kn->data.scalar.length;
    int s = ep__find_sec(name, len);
    if (s < 0) {
      char key[64];
      snprintf(key, sizeof key, "%.*s", EP__SHOW_LEN(len), name);
      ep__error(c, kpos, key, ep__sec_list, "unknown section");
      continue;
    }
    if (c->sec[s].present) {
      ep__error(c, kpos, ep__sec_names[s], "each section once",
                "duplicate section, first given at %d:%d", c->sec[s].pos.line, c->sec[s].pos.col);
      continue;
    }
    c->sec[s].present = 1;
    c->sec[s].pos = kpos;
    if (ep__is_null(vn))
      continue; /* "policy:" with nothing under it: all defaults */
    if (vn->type != YAML_MAPPING_NODE) {
      char keys[256];
      ep__sec_keys((ep__sec)s, keys, sizeof keys);
      ep__error(c, ep__mark_pos(c, vn->start_mark), ep__sec_names[s], keys,
                "expected a mapping of keys, got %s", ep__kind_name(ep__node_kind(vn)));
      c->sec[s].bad = 1;
      continue;
    }
    ep__walk_section(c, doc, (ep__sec)s, vn);
  }
}

/* ---- overrides ---- */

/* "section.key=value": replaces the raw entry; the override's index is its line. */
static void ep__apply_override(ep__ctx *c, const char *ov, int index)
{
  ep__pos kpos = {"--set", 1, index + 1, 1};
  const char *eq = ov ? strchr(ov, '=') : NULL;
  const char *dot = eq ? memchr(ov, '.', (size_t)(eq - ov)) : NULL;
  if (!ov || !eq || !dot) {
    char key[64];
    size_t len = !ov ? 0 : eq ? (size_t)(eq - ov) : strlen(ov);
    if (len)
      snprintf(key, sizeof key, "%.*s", EP__SHOW_LEN(len), ov);
    else
      snprintf(key, sizeof key, "(empty)");
    ep__error(c, kpos, key, "section.key=value", "expected section.key=value");
    return;
  }
  int s = ep__find_sec(ov, (size_t)(dot - ov));
  if (s < 0) {
    char key[64];
    snprintf(key, sizeof key, "%.*s", EP__SHOW_LEN((size_t)(dot - ov)), ov);
    ep__error(c, kpos, key, ep__sec_list, "unknown section");
    return;
  }
  int k = ep__find_key((ep__sec)s, dot + 1, (size_t)(eq - dot - 1));
  if (k < 0) {
    char key[128], keys[256];
    snprintf(key, sizeof key, "%.*s", EP__SHOW_LEN((size_t)(eq - ov)), ov);
    ep__sec_keys((ep__sec)s, keys, sizeof keys);
    ep__error(c, kpos, key, keys, "unknown key");
    return;
  }
  ep__raw *r = &c->key[k];
  r->present = 1;
  r->key_pos = kpos;
  r->val_pos = kpos;
  r->val_pos.col = (int)(eq - ov) + 2;
  r->kind = V_SCALAR;
  r->text = eq + 1;
  r->len = strlen(eq + 1);
  r->plain = 1; /* the shell already removed any quotes */
  if (!c->sec[s].present) {
    c->sec[s].present = 1;
    c->sec[s].pos = kpos;
  }
}

/* ---- typed values ---- */

/* A plain decimal integer: optional sign, then digits only. 0 ok, ERANGE on overflow, else EINVAL.
 */
static int ep__parse_i64(const char *s, int64_t *out)
{
  const char *p = s + (*s == '+' || *s == '-');
  if (!*p)
    return EINVAL;
  for (const char *q = p; *q; q++)
    if (*q < '0' || *q > '9')
      return EINVAL;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (errno == ERANGE)
    return ERANGE;
  if (errno || end == s || *end)
    return EINVAL;
  *out = (int64_t)v;
  return 0;
}

static int ep__parse_u64(const char *s, uint64_t *out)
{
  const char *p = s + (*s == '+');
  if (*p == '-')
    return ERANGE; /* strtoull would wrap a negative number around */
  if (!*p)
    return EINVAL;
  for (const char *q = p; *q; q++)
    if (*q < '0' || *q > '9')
      return EINVAL;
  errno = 0;
  char *end = NULL;
  unsigned long long v = strtoull(p, &end, 10);
  if (errno == ERANGE)
    return ERANGE;
  if (errno || end == p || *end)
    return EINVAL;
  *out = (uint64_t)v;
  return 0;
}

/* A finite decimal number (no hex, inf or nan). 0 ok, ERANGE when out of double range. */
static int ep__parse_num(const char *s, double *out)
{
  int digits = 0;
  for (const char *q = s; *q; q++) {
    if (*q >= '0' && *q <= '9')
      digits = 1;
    else if (!strchr("+-.eE", *q))
      return EINVAL;
  }
  if (!digits)
    return EINVAL;
  errno = 0;
  char *end = NULL;
  double v = strtod(s, &end);
  if (end == s || *end)
    return EINVAL;
  if (errno == ERANGE || !isfinite(v))
    return ERANGE;
  *out = v;
  return 0;
}

/* Reports an integer key's parse result rc (0, EINVAL or ERANGE); returns 1 if
 * it was an error. A float gets its own message, since it is a common slip. */
static int ep__integer_error(ep__ctx *c, ep__key k, int rc, int show)
{
  const ep__raw *r = &c->key[k];
  double d;
  if (rc == EINVAL && ep__parse_num(r->text, &d) == 0)
    ep__key_error(c, r->val_pos, k, "expected an integer, got float '%.*s'", show, r->text);
  else if (rc == EINVAL)
    ep__key_error(c, r->val_pos, k, "expected an integer, got '%.*s'", show, r->text);
  else if (rc == ERANGE)
    ep__key_error(c, r->val_pos, k, "out of range: %.*s", show, r->text);
  return rc != 0;
}

static void ep__type_key(ep__ctx *c, ep__key k)
{
  ep__raw *r = &c->key[k];
  const ep__keydef *def = &ep__keys[k];
  const char *want = def->type == T_INT || def->type == T_U64 ? "an integer"
                     : def->type == T_NUM                     ? "a number"
                                                              : "a string";
  if (r->kind != V_SCALAR) {
    ep__key_error(c, r->val_pos, k, "expected %s, got %s", want, ep__kind_name(r->kind));
    return;
  }
  if (r->len == 0) {
    ep__key_error(c, r->val_pos, k, "missing value");
    return;
  }
  if (strlen(r->text) != r->len) {
    ep__key_error(c, r->val_pos, k, "value contains a NUL byte");
    return;
  }
  int show = EP__SHOW_LEN(r->len);
  if ((def->type == T_INT || def->type == T_U64 || def->type == T_NUM) && !r->plain) {
    /* YAML quotes make a string; numbers must be written bare. */
    if (!(def->none_ok && !strcmp(r->text, "none"))) {
      ep__key_error(c, r->val_pos, k, "expected %s, got quoted string \"%.*s\"", want, show,
                    r->text);
      return;
    }
  }
  switch (def->type) {
  case T_STR:
    if (r->len > EP__NAME_MAX) {
      ep__key_error(c, r->val_pos, k, "too long: %zu bytes", r->len);
      return;
    }
    break;
  case T_INT: {
    int rc = ep__parse_i64(r->text, &r->i);
    if (rc == 0 && (r->i < def->imin || r->i > def->imax))
      rc = ERANGE;
    if (ep__integer_error(c, k, rc, show))
      return;
    break;
  }
  case T_U64:
    if (ep__integer_error(c, k, ep__parse_u64(r->text, &r->u), show))
      return;
    break;
  case T_NUM: {
    if (def->none_ok && !strcmp(r->text, "none")) {
      r->d = -1.0;
      break;
    }
    int rc = ep__parse_num(r->text, &r->d);
    if (rc == EINVAL) {
      ep__key_error(c, r->val_pos, k, "expected a number, got '%.*s'", show, r->text);
      return;
    }
    if (rc == ERANGE || r->d < def->dmin || (def->dmin_open && r->d == def->dmin) ||
        r->d > def->dmax || (def->dmax_open && r->d == def->dmax)) {
      ep__key_error(c, r->val_pos, k, "out of range: %.*s", show, r->text);
      return;
    }
    break;
  }
  case T_ENUM: {
    int found = -1;
    for (int i = 0; def->enums[i]; i++)
      if (!strcmp(def->enums[i], r->text))
        found = i;
    if (found < 0) {
      ep__key_error(c, r->val_pos, k, "unknown value '%.*s'", show, r->text);
      return;
    }
    r->e = found;
    break;
  }
  case T_GPU:
    r->gpu = ep_gpu_catalog_find(r->text);
    if (!r->gpu) {
      ep__key_error(c, r->val_pos, k, "unknown GPU '%.*s'", show, r->text);
      return;
    }
    break;
  }
  r->ok = 1;
}

/* ---- required keys and cross-field checks ---- */

static void ep__require(ep__ctx *c, ep__key k, const char *why)
{
  ep__sec s = ep__keys[k].sec;
  if (c->key[k].present || !c->sec[s].present || c->sec[s].bad)
    return; /* a missing or malformed section is reported once, not per key */
  ep__key_error(c, c->sec[s].pos, k, "missing required key%s", why);
}

static void ep__require_sec(ep__ctx *c, ep__sec s)
{
  if (c->sec[s].present)
    return;
  char keys[256];
  ep__sec_keys(s, keys, sizeof keys);
  ep__error(c, c->root_pos, ep__sec_names[s], keys, "missing required section");
}

/* Both set and valid. */
#define EP__OK(k) (c->key[k].ok)

/* Builds the cluster; returns 1 when it is complete and valid. */
static int ep__resolve_cluster(ep__ctx *c, ep_cluster *cl)
{
  ep__raw *key = c->key;
  memset(cl, 0, sizeof *cl);
  if (!c->sec[S_CLUSTER].present)
    return 0;
  int ok = 1;
  for (int k = K_PRESET; k <= K_FABRIC; k++)
    if (key[k].present && !key[k].ok)
      ok = 0;
  if (key[K_PRESET].present) {
    if (!key[K_PRESET].ok)
      return 0;
    const char *preset = ep_cluster_preset_names[key[K_PRESET].e];
    /* An NVL72 rack is one NVLink domain, so its count is racks; HGX counts nodes. */
    int racks = strcmp(preset, "gb200-nvl72") == 0;
    ep__key count = racks ? K_RACKS : K_NODES, wrong = racks ? K_NODES : K_RACKS;
    if (key[wrong].present) {
      char dotted[64];
      ep__error(c, key[wrong].key_pos, ep__dotted(wrong, dotted, sizeof dotted),
                racks ? "racks" : "nodes", "preset %s counts %s, not %s", preset,
                ep__keys[count].name, ep__keys[wrong].name);
      ok = 0;
    } else if (!key[count].present) {
      char why[96];
      snprintf(why, sizeof why, " with preset %s", preset);
      ep__require(c, count, why);
      ok = 0;
    }
    if (!ok || !key[count].ok)
      return 0;
    ep_status st = ep_cluster_preset(preset, (int32_t)key[count].i, cl);
    if (st != EP_OK) {
      ep__key_error(c, key[K_PRESET].val_pos, K_PRESET, "preset rejected: %s", ep_status_str(st));
      return 0;
    }
    if (key[K_GPU].present)
      cl->gpu = key[K_GPU].gpu;
    if (key[K_GPUS_PER_NODE].present)
      cl->gpus_per_node = (int32_t)key[K_GPUS_PER_NODE].i;
  } else {
    if (key[K_RACKS].present) {
      char dotted[64];
      ep__error(c, key[K_RACKS].key_pos, ep__dotted(K_RACKS, dotted, sizeof dotted), "nodes",
                "racks needs preset: gb200-nvl72");
      ok = 0;
    }
    static const ep__key need[] = {K_GPU,        K_GPUS_PER_NODE, K_NODES,  K_NVLINK_GBPS,
                                   K_NVLINK_LAT, K_NIC_GBPS,      K_NIC_LAT};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
      if (!key[need[i]].present) {
        ep__require(c, need[i], " without a preset");
        ok = 0;
      }
    }
    if (!ok)
      return 0;
    cl->gpu = key[K_GPU].gpu;
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

static void ep__check(ep__ctx *c, ep_scenario *sc)
{
  ep__raw *key = c->key;
  char dotted[64], valid[256];

  ep__require_sec(c, S_MODEL);
  ep__require_sec(c, S_CLUSTER);
  ep__require_sec(c, S_PARALLEL);
  ep__require_sec(c, S_WORKLOAD);
  ep__require(c, K_NAME, "");
  ep__require(c, K_N_EXPERTS, "");
  ep__require(c, K_TOP_K, "");
  ep__require(c, K_HIDDEN, "");
  ep__require(c, K_MOE_INTERMEDIATE, "");
  ep__require(c, K_EP, "");
  ep__require(c, K_TOKENS, "");

  if (EP__OK(K_TOP_K) && EP__OK(K_N_EXPERTS) && key[K_TOP_K].i > key[K_N_EXPERTS].i) {
    snprintf(valid, sizeof valid, "integer 1..%" PRId64, key[K_N_EXPERTS].i);
    ep__error(c, key[K_TOP_K].key_pos, ep__dotted(K_TOP_K, dotted, sizeof dotted), valid,
              "top_k %" PRId64 " exceeds n_experts %" PRId64, key[K_TOP_K].i, key[K_N_EXPERTS].i);
  }

  /* A row's size must exist for the payload dtype (fp8 scales whole blocks). */
  const ep__key dtype_keys[] = {K_DISPATCH_DTYPE, K_COMBINE_DTYPE};
  for (size_t i = 0; i < sizeof dtype_keys / sizeof dtype_keys[0]; i++) {
    const ep__key k = dtype_keys[i];
    if (EP__OK(k) && EP__OK(K_HIDDEN) &&
        ep_dtype_bytes_per_token((ep_dtype)key[k].e, (int32_t)key[K_HIDDEN].i) < 0) {
      snprintf(valid, sizeof valid, "bf16, or hidden a multiple of %d", EP_FP8_BLOCK);
      ep__error(c, key[k].val_pos, ep__dotted(k, dotted, sizeof dotted), valid,
                "%s needs hidden a multiple of %d, hidden is %" PRId64, key[k].text, EP_FP8_BLOCK,
                key[K_HIDDEN].i);
    }
  }

  int cluster_ok = ep__resolve_cluster(c, &sc->cluster);
  int64_t n_gpus = cluster_ok ? (int64_t)sc->cluster.n_nodes * sc->cluster.gpus_per_node : 0;
  if (EP__OK(K_EP) && cluster_ok && key[K_EP].i > n_gpus) {
    snprintf(valid, sizeof valid, "integer 1..%" PRId64, n_gpus);
    ep__error(c, key[K_EP].key_pos, ep__dotted(K_EP, dotted, sizeof dotted), valid,
              "ep %" PRId64 " exceeds the cluster's %" PRId64 " GPUs", key[K_EP].i, n_gpus);
  }
  if (EP__OK(K_EP) && EP__OK(K_N_EXPERTS) && key[K_N_EXPERTS].i % key[K_EP].i != 0) {
    ep__divisors(key[K_N_EXPERTS].i, cluster_ok ? n_gpus : key[K_N_EXPERTS].i, valid, sizeof valid);
    ep__error(c, key[K_EP].key_pos, ep__dotted(K_EP, dotted, sizeof dotted), valid,
              "n_experts %" PRId64 " is not divisible by ep %" PRId64, key[K_N_EXPERTS].i,
              key[K_EP].i);
  }

  /* Routing parameters belong to one routing kind each. */
  if (!key[K_ROUTING].present || key[K_ROUTING].ok) {
    int routing = key[K_ROUTING].present ? key[K_ROUTING].e : EP_ROUTING_UNIFORM;
    static const struct {
      ep__key k;
      int kind;
    } only[] = {
        {K_ZIPF, EP_ROUTING_ZIPF}, {K_HOT_EXPERTS, EP_ROUTING_HOT}, {K_HOT_SHARE, EP_ROUTING_HOT}};
    for (size_t i = 0; i < sizeof only / sizeof only[0]; i++) {
      if (key[only[i].k].present && routing != only[i].kind) {
        snprintf(valid, sizeof valid, "routing: %s", ep__routings[only[i].kind]);
        ep__error(c, key[only[i].k].key_pos, ep__dotted(only[i].k, dotted, sizeof dotted), valid,
                  "only used with routing: %s, but routing is %s", ep__routings[only[i].kind],
                  ep__routings[routing]);
      }
    }
    if (routing == EP_ROUTING_HOT) {
      ep__require(c, K_HOT_EXPERTS, " with routing: hot");
      ep__require(c, K_HOT_SHARE, " with routing: hot");
    }
  }
  if (EP__OK(K_HOT_EXPERTS) && EP__OK(K_N_EXPERTS) && key[K_HOT_EXPERTS].i >= key[K_N_EXPERTS].i) {
    snprintf(valid, sizeof valid, "integer 1..%" PRId64, key[K_N_EXPERTS].i - 1);
    ep__error(c, key[K_HOT_EXPERTS].key_pos, ep__dotted(K_HOT_EXPERTS, dotted, sizeof dotted),
              valid, "hot_experts %" PRId64 " must be below n_experts %" PRId64,
              key[K_HOT_EXPERTS].i, key[K_N_EXPERTS].i);
  }
}

static void ep__fill(const ep__ctx *c, ep_scenario *sc)
{
  const ep__raw *key = c->key;
  ep_model_cfg *m = &sc->model;
  memcpy(m->name, key[K_NAME].text, key[K_NAME].len);
  m->name[key[K_NAME].len] = '\0';
  m->n_experts = (int32_t)key[K_N_EXPERTS].i;
  m->top_k = (int32_t)key[K_TOP_K].i;
  m->hidden = (int32_t)key[K_HIDDEN].i;
  m->moe_intermediate = (int32_t)key[K_MOE_INTERMEDIATE].i;
  m->n_shared_experts = key[K_N_SHARED].present ? (int32_t)key[K_N_SHARED].i : 0;
  m->dispatch_dtype =
      key[K_DISPATCH_DTYPE].present ? (ep_dtype)key[K_DISPATCH_DTYPE].e : EP_DTYPE_BF16;
  m->combine_dtype =
      key[K_COMBINE_DTYPE].present ? (ep_dtype)key[K_COMBINE_DTYPE].e : EP_DTYPE_BF16;
  sc->ep = (int32_t)key[K_EP].i;
  sc->placement =
      key[K_PLACEMENT].present ? (ep_placement_kind)key[K_PLACEMENT].e : EP_PLACEMENT_CONTIGUOUS;
  sc->tokens_per_gpu = key[K_TOKENS].i;
  ep_routing_cfg routing = EP_ROUTING_CFG_INIT;
  if (key[K_ROUTING].present)
    routing.kind = (ep_routing_kind)key[K_ROUTING].e;
  if (key[K_ZIPF].present)
    routing.zipf_exponent = key[K_ZIPF].d;
  if (key[K_HOT_EXPERTS].present)
    routing.hot_experts = (int32_t)key[K_HOT_EXPERTS].i;
  if (key[K_HOT_SHARE].present)
    routing.hot_share = key[K_HOT_SHARE].d;
  routing.seed = key[K_SEED].present ? key[K_SEED].u : 1;
  sc->routing = routing;
  sc->capacity_factor = key[K_CAPACITY].present && key[K_CAPACITY].d > 0 ? key[K_CAPACITY].d : 0.0;
  sc->dispatch = key[K_DISPATCH].present ? ep_dispatch_find(ep_dispatch_names[key[K_DISPATCH].e])
                                         : &ep_dispatch_direct;
  sc->flows = key[K_FLOWS].present ? (ep_flow_mode)key[K_FLOWS].e : EP_FLOWS_AUTO;
}

/* ---- file reading, hashing, YAML errors ---- */

static ep_status ep__read_file(const char *path, char **buf, size_t *len, int *err_no)
{
  FILE *f = fopen(path, "rb");
  *err_no = 0;
  if (!f) {
    *err_no = errno;
    return EP_ERR_IO;
  }
  size_t cap = 4096, n = 0;
  char *data = malloc(cap + 1);
  ep_status st = EP_OK;
  if (!data) {
    fclose(f);
    return EP_ERR_NOMEM;
  }
  for (;;) {
    if (n == cap) {
      char *grown = cap < SIZE_MAX / 4 ? realloc(data, 2 * cap + 1) : NULL;
      if (!grown) {
        st = EP_ERR_NOMEM;
        break;
      }
      data = grown;
      cap *= 2;
    }
    size_t got = fread(data + n, 1, cap - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) {
        *err_no = errno;
        st = EP_ERR_IO;
      }
      break;
    }
  }
  if (fclose(f) != 0 && st == EP_OK) {
    *err_no = errno;
    st = EP_ERR_IO;
  }
  if (st != EP_OK) {
    free(data);
    return st;
  }
  data[n] = '\0';
  *buf = data;
  *len = n;
  return EP_OK;
}

static uint64_t ep__fnv1a(uint64_t h, const void *data, size_t n)
{
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* Position of byte offset off (reader errors carry only an offset). */
static ep__pos ep__offset_pos(const ep__ctx *c, const char *buf, size_t len, size_t off)
{
  ep__pos p = {c->path, 0, 1, 1};
  for (size_t i = 0; i < off && i < len; i++) {
    if (buf[i] == '\n') {
      p.line++;
      p.col = 1;
    } else {
      p.col++;
    }
  }
  return p;
}

static void ep__yaml_error(ep__ctx *c, const yaml_parser_t *parser, const char *buf, size_t len)
{
  ep__pos p = parser->error == YAML_READER_ERROR
                  ? ep__offset_pos(c, buf, len, parser->problem_offset)
                  : ep__mark_pos(c, parser->problem_mark);
  const char *problem = parser->problem ? parser->problem : "malformed YAML";
  if (parser->context && (parser->context_mark.line != parser->problem_mark.line ||
                          parser->context_mark.column != parser->problem_mark.column))
    ep__error(c, p, "yaml", "YAML block or flow mappings", "%s %s (from %d:%d)", problem,
              parser->context, (int)parser->context_mark.line + 1,
              (int)parser->context_mark.column + 1);
  else if (parser->context)
    ep__error(c, p, "yaml", "YAML block or flow mappings", "%s %s", problem, parser->context);
  else
    ep__error(c, p, "yaml", "YAML block or flow mappings", "%s", problem);
}

ep_status ep_scenario_load(const char *path, const char *const *overrides, int n_overrides,
                           ep_scenario *out, FILE *err)
{
  if (!path || !out || n_overrides < 0 || (n_overrides > 0 && !overrides))
    return EP_ERR_INVALID;
  char *buf = NULL;
  size_t len = 0;
  int err_no = 0;
  ep_status st = ep__read_file(path, &buf, &len, &err_no);
  if (st != EP_OK) {
    if (err)
      fprintf(err, "%s: cannot read: %s\n", path,
              st == EP_ERR_NOMEM ? "out of memory" : strerror(err_no));
    return st;
  }

  ep__ctx *c = calloc(1, sizeof *c);
  ep_scenario *sc = calloc(1, sizeof *sc);
  yaml_parser_t parser;
  yaml_document_t doc, extra;
  int have_parser = 0, have_doc = 0;
  if (!c || !sc) {
    st = EP_ERR_NOMEM;
    goto done;
  }
  c->path = path;
  c->root_pos = (ep__pos){path, 0, 1, 1};

  uint64_t hash = ep__fnv1a(0xcbf29ce484222325ULL, buf, len);
  for (int i = 0; i < n_overrides; i++)
    if (overrides[i]) /* with the terminating NUL, so "a=1","b" and "a=1b" differ */
      hash = ep__fnv1a(hash, overrides[i], strlen(overrides[i]) + 1);

  if (!yaml_parser_initialize(&parser)) {
    st = EP_ERR_NOMEM;
    goto done;
  }
  have_parser = 1;
  yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
  if (!yaml_parser_load(&parser, &doc)) { /* libyaml frees doc on failure */
    if (parser.error == YAML_MEMORY_ERROR) {
      st = EP_ERR_NOMEM;
      goto done;
    }
    ep__yaml_error(c, &parser, buf, len);
    goto report; /* a syntax error leaves nothing reliable to check */
  }
  have_doc = 1;
  if (!yaml_parser_load(&parser, &extra)) {
    if (parser.error == YAML_MEMORY_ERROR) {
      st = EP_ERR_NOMEM;
      goto done;
    }
    ep__yaml_error(c, &parser, buf, len);
    goto report;
  }
  yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
  if (extra_root)
    ep__error(c, ep__mark_pos(c, extra_root->start_mark), "scenario", "one YAML document",
              "a second YAML document");
  yaml_document_delete(&extra);

  ep__walk(c, &doc);
  if (c->no_root)
    goto report;
  for (int i = 0; i < n_overrides; i++)
    ep__apply_override(c, overrides[i], i);
  for (int k = 0; k < K_COUNT; k++)
    if (c->key[k].present)
      ep__type_key(c, (ep__key)k);
  ep__check(c, sc);

report:
  if (c->nomem) {
    st = EP_ERR_NOMEM;
    goto done;
  }
  if (c->n_errs) {
    qsort(c->errs, c->n_errs, sizeof *c->errs, ep__err_cmp);
    for (size_t i = 0; err && i < c->n_errs; i++)
      fprintf(err, "%s\n", c->errs[i].line);
    st = EP_ERR_PARSE;
    goto done;
  }
  ep__fill(c, sc);
  sc->content_hash = hash;
  *out = *sc;
  st = EP_OK;

done:
  if (have_doc)
    yaml_document_delete(&doc);
  if (have_parser)
    yaml_parser_delete(&parser);
  if (c) {
    for (size_t i = 0; i < c->n_errs; i++)
      free(c->errs[i].line);
    free(c->errs);
  }
  free(c);
  free(sc);
  free(buf);
  return st;
}
