/* Key files: YAML (libyaml document API) read against a table of typed keys.
 * Keys land in a value table with the line:col of key and value, --set
 * overrides replace entries, then every key is type-checked. Problems are
 * collected, sorted by position and printed together by ep_keyfile_report, so
 * a user fixes a file in one round. */
#include "ep_keyfile.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "ep_rng.h"

typedef enum { V_SCALAR, V_MAPPING, V_SEQUENCE } ep__vkind;

/* What the caller does not see of a value: its YAML shape and quoting. */
typedef struct ep__raw {
  ep__vkind kind;
  int plain; /* unquoted scalar */
} ep__raw;

typedef struct ep__err {
  ep_keyfile_pos pos;
  unsigned seq;
  char *line;
} ep__err;

typedef struct ep__sec {
  int present;
  int bad;            /* not a mapping: its keys are unknown, so none is reported missing */
  ep_keyfile_pos pos; /* of the section's key (or of the first override naming it) */
} ep__sec;

struct ep_keyfile {
  const ep_keyfile_schema *schema;
  char *path; /* positions' src */
  char *buf;  /* the file's bytes, NUL-terminated */
  size_t len;
  yaml_document_t doc; /* values' text points into it */
  int have_doc;
  uint64_t hash;
  ep__err *errs;
  size_t n_errs, cap_errs;
  int nomem;
  ep_keyfile_value *val; /* [n_keys] */
  ep__raw *raw;          /* [n_keys] */
  ep__sec *sec;          /* [n_sections] */
  ep_keyfile_pos root_pos;
  int no_root; /* empty document or not a mapping: nothing else to check */
};

#define EP__STR_(x) #x
#define EP__STR(x) EP__STR_(x)

/* Room for joined name lists and dotted names in messages. */
#define EP__LIST_MAX 1024
#define EP__DOTTED_MAX 128

static ep_keyfile_pos ep__mark_pos(const ep_keyfile *kf, yaml_mark_t m)
{
  ep_keyfile_pos p = {kf->path, 0, (int32_t)m.line + 1, (int32_t)m.column + 1};
  return p;
}

/* Records "src:line:col: key: message (valid: valid)". */
static void ep__verror(ep_keyfile *kf, ep_keyfile_pos pos, const char *key, const char *valid,
                       const char *fmt, va_list ap)
{
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (kf->n_errs == kf->cap_errs) {
    size_t cap = kf->cap_errs ? 2 * kf->cap_errs : 16;
    ep__err *grown = realloc(kf->errs, cap * sizeof *grown);
    if (!grown) {
      kf->nomem = 1;
      return;
    }
    kf->errs = grown;
    kf->cap_errs = cap;
  }
  int n = snprintf(NULL, 0, "%s:%d:%d: %s: %s (valid: %s)", pos.src, (int)pos.line, (int)pos.col,
                   key, msg, valid);
  char *line = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (!line) {
    kf->nomem = 1;
    return;
  }
  snprintf(line, (size_t)n + 1, "%s:%d:%d: %s: %s (valid: %s)", pos.src, (int)pos.line,
           (int)pos.col, key, msg, valid);
  kf->errs[kf->n_errs] = (ep__err){pos, (unsigned)kf->n_errs, line};
  kf->n_errs++;
}

__attribute__((format(printf, 5, 6))) static void ep__error(ep_keyfile *kf, ep_keyfile_pos pos,
                                                            const char *key, const char *valid,
                                                            const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  ep__verror(kf, pos, key, valid, fmt, ap);
  va_end(ap);
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
static const char *ep__dotted(const ep_keyfile *kf, int32_t k, char *buf, size_t n)
{
  const ep_keyfile_spec *key = &kf->schema->keys[k];
  snprintf(buf, n, "%s.%s", kf->schema->sections[key->section].name, key->name);
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

/* "a, b, c": the section names, or the keys of one section. */
static void ep__list(const ep_keyfile *kf, int32_t sec, char *buf, size_t n)
{
  const ep_keyfile_schema *s = kf->schema;
  size_t used = 0;
  buf[0] = '\0';
  int32_t n_names = sec < 0 ? s->n_sections : s->n_keys;
  for (int32_t i = 0; i < n_names; i++) {
    if (sec >= 0 && s->keys[i].section != sec)
      continue;
    const char *name = sec < 0 ? s->sections[i].name : s->keys[i].name;
    int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", name);
    if (w < 0 || (size_t)w >= n - used)
      return;
    used += (size_t)w;
  }
}

/* The text after "valid:" for key k. */
static const char *ep__valid(const ep_keyfile *kf, int32_t k, char *buf, size_t n)
{
  const ep_keyfile_spec *key = &kf->schema->keys[k];
  if (key->type == EP_KEYFILE_ENUM && !key->valid) {
    ep__join(key->names, buf, n);
    return buf;
  }
  return key->valid ? key->valid : "";
}

/* Error about key k at pos; valid NULL is the key's own valid-text. */
static void ep__key_verror(ep_keyfile *kf, ep_keyfile_pos pos, int32_t k, const char *valid,
                           const char *fmt, va_list ap)
{
  char msg[400], dotted[EP__DOTTED_MAX], own[EP__LIST_MAX];
  vsnprintf(msg, sizeof msg, fmt, ap);
  ep__error(kf, pos, ep__dotted(kf, k, dotted, sizeof dotted),
            valid ? valid : ep__valid(kf, k, own, sizeof own), "%s", msg);
}

__attribute__((format(printf, 4, 5))) static void ep__key_error(ep_keyfile *kf, ep_keyfile_pos pos,
                                                                int32_t k, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  ep__key_verror(kf, pos, k, NULL, fmt, ap);
  va_end(ap);
}

static const char *ep__kind_name(ep__vkind kind)
{
  return kind == V_MAPPING ? "a mapping" : kind == V_SEQUENCE ? "a sequence" : "a scalar";
}

static int32_t ep__find_sec(const ep_keyfile *kf, const char *name, size_t len)
{
  for (int32_t s = 0; s < kf->schema->n_sections; s++) {
    const char *sec = kf->schema->sections[s].name;
    if (strlen(sec) == len && memcmp(sec, name, len) == 0)
      return s;
  }
  return -1;
}

static int32_t ep__find_key(const ep_keyfile *kf, int32_t sec, const char *name, size_t len)
{
  for (int32_t k = 0; k < kf->schema->n_keys; k++) {
    const ep_keyfile_spec *key = &kf->schema->keys[k];
    if (key->section == sec && strlen(key->name) == len && memcmp(key->name, name, len) == 0)
      return k;
  }
  return -1;
}

#define EP__SHOW_LEN(len) ((int)((len) > EP_KEYFILE_SHOW ? EP_KEYFILE_SHOW : (len)))

/* ---- reading the YAML document into the value table ---- */

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

/* A mapping pair's key and value nodes and the key's position; 0 when the pair
 * is passed over: a node missing, or a key that is not a scalar (reported at
 * where as "expected a <what> name", valid: the names it could be). */
static int ep__pair_nodes(ep_keyfile *kf, const yaml_node_pair_t *pair, const char *where,
                          const char *valid, const char *what, yaml_node_t **kn, yaml_node_t **vn,
                          ep_keyfile_pos *kpos)
{
  *kn = yaml_document_get_node(&kf->doc, pair->key);
  *vn = yaml_document_get_node(&kf->doc, pair->value);
  if (!*kn || !*vn)
    return 0;
  *kpos = ep__mark_pos(kf, (*kn)->start_mark);
  if ((*kn)->type != YAML_SCALAR_NODE) {
    ep__error(kf, *kpos, where, valid, "expected a %s name, got %s", what,
              ep__kind_name(ep__node_kind(*kn)));
    return 0;
  }
  return 1;
}

static void ep__walk_section(ep_keyfile *kf, int32_t sec, yaml_node_t *map)
{
  const char *sec_name = kf->schema->sections[sec].name;
  char keys[EP__LIST_MAX];
  ep__list(kf, sec, keys, sizeof keys);
  for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *kn, *vn;
    ep_keyfile_pos kpos;
    if (!ep__pair_nodes(kf, pair, sec_name, keys, "key", &kn, &vn, &kpos))
      continue;
    const char *name = (const char *)kn->data.scalar.value;
    size_t len = kn->data.scalar.length;
    int32_t k = ep__find_key(kf, sec, name, len);
    if (k < 0) {
      char key[EP__DOTTED_MAX];
      snprintf(key, sizeof key, "%s.%.*s", sec_name, EP__SHOW_LEN(len), name);
      ep__error(kf, kpos, key, keys, "unknown key");
      continue;
    }
    ep_keyfile_value *v = &kf->val[k];
    if (v->present) {
      char dotted[EP__DOTTED_MAX];
      ep__error(kf, kpos, ep__dotted(kf, k, dotted, sizeof dotted), "each key once per section",
                "duplicate key, first given at %d:%d", (int)v->key_pos.line, (int)v->key_pos.col);
      continue;
    }
    ep__raw *r = &kf->raw[k];
    v->present = 1;
    v->key_pos = kpos;
    v->val_pos = ep__mark_pos(kf, vn->start_mark);
    r->kind = ep__node_kind(vn);
    if (r->kind == V_SCALAR) {
      v->text = (const char *)vn->data.scalar.value;
      v->len = vn->data.scalar.length;
      r->plain = vn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
      if (r->plain && ep__is_null(vn))
        v->len = 0; /* "~" and "null" mean no value, like an empty one */
    }
  }
}

static void ep__walk(ep_keyfile *kf)
{
  const char *doc_name = kf->schema->name;
  char secs[EP__LIST_MAX];
  ep__list(kf, -1, secs, sizeof secs);
  yaml_node_t *root = yaml_document_get_root_node(&kf->doc);
  if (!root || ep__is_null(root)) {
    ep_keyfile_pos p = {kf->path, 0, 1, 1};
    ep__error(kf, p, doc_name, secs, "empty document");
    kf->no_root = 1;
    return;
  }
  kf->root_pos = ep__mark_pos(kf, root->start_mark);
  if (root->type != YAML_MAPPING_NODE) {
    ep__error(kf, kf->root_pos, doc_name, secs, "expected a mapping of sections, got %s",
              ep__kind_name(ep__node_kind(root)));
    kf->no_root = 1;
    return;
  }
  for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *kn, *vn;
    ep_keyfile_pos kpos;
    if (!ep__pair_nodes(kf, pair, doc_name, secs, "section", &kn, &vn, &kpos))
      continue;
    const char *name = (const char *)kn->data.scalar.value;
    size_t len = kn->data.scalar.length;
    int32_t s = ep__find_sec(kf, name, len);
    if (s < 0) {
      char key[EP__DOTTED_MAX];
      snprintf(key, sizeof key, "%.*s", EP__SHOW_LEN(len), name);
      ep__error(kf, kpos, key, secs, "unknown section");
      continue;
    }
    const char *sec_name = kf->schema->sections[s].name;
    if (kf->sec[s].present) {
      ep__error(kf, kpos, sec_name, "each section once", "duplicate section, first given at %d:%d",
                (int)kf->sec[s].pos.line, (int)kf->sec[s].pos.col);
      continue;
    }
    kf->sec[s].present = 1;
    kf->sec[s].pos = kpos;
    if (ep__is_null(vn))
      continue; /* "policy:" with nothing under it: all defaults */
    if (vn->type != YAML_MAPPING_NODE) {
      char keys[EP__LIST_MAX];
      ep__list(kf, s, keys, sizeof keys);
      ep__error(kf, ep__mark_pos(kf, vn->start_mark), sec_name, keys,
                "expected a mapping of keys, got %s", ep__kind_name(ep__node_kind(vn)));
      kf->sec[s].bad = 1;
      continue;
    }
    ep__walk_section(kf, s, vn);
  }
}

/* ---- overrides ---- */

/* "section.key=value": replaces the key's entry; the override's index is its line. */
static void ep__apply_override(ep_keyfile *kf, const char *ov, int32_t index)
{
  ep_keyfile_pos kpos = {"--set", 1, index + 1, 1};
  const char *eq = ov ? strchr(ov, '=') : NULL;
  const char *dot = eq ? memchr(ov, '.', (size_t)(eq - ov)) : NULL;
  char secs[EP__LIST_MAX];
  if (!ov || !eq || !dot) {
    char key[EP__DOTTED_MAX];
    size_t len = !ov ? 0 : eq ? (size_t)(eq - ov) : strlen(ov);
    if (len)
      snprintf(key, sizeof key, "%.*s", EP__SHOW_LEN(len), ov);
    else
      snprintf(key, sizeof key, "(empty)");
    ep__error(kf, kpos, key, "section.key=value", "expected section.key=value");
    return;
  }
  int32_t s = ep__find_sec(kf, ov, (size_t)(dot - ov));
  if (s < 0) {
    char key[EP__DOTTED_MAX];
    snprintf(key, sizeof key, "%.*s", EP__SHOW_LEN((size_t)(dot - ov)), ov);
    ep__list(kf, -1, secs, sizeof secs);
    ep__error(kf, kpos, key, secs, "unknown section");
    return;
  }
  int32_t k = ep__find_key(kf, s, dot + 1, (size_t)(eq - dot - 1));
  if (k < 0) {
    char key[EP__DOTTED_MAX], keys[EP__LIST_MAX];
    snprintf(key, sizeof key, "%.*s", EP__SHOW_LEN((size_t)(eq - ov)), ov);
    ep__list(kf, s, keys, sizeof keys);
    ep__error(kf, kpos, key, keys, "unknown key");
    return;
  }
  ep_keyfile_value *v = &kf->val[k];
  v->present = 1;
  v->key_pos = kpos;
  v->val_pos = kpos;
  v->val_pos.col = (int32_t)(eq - ov) + 2;
  v->text = eq + 1;
  v->len = strlen(eq + 1);
  kf->raw[k].kind = V_SCALAR;
  kf->raw[k].plain = 1; /* the shell already removed any quotes */
  if (!kf->sec[s].present) {
    kf->sec[s].present = 1;
    kf->sec[s].pos = kpos;
  }
}

/* ---- typed values ---- */

/* A plain decimal integer: optional sign, then digits only. 0 ok, ERANGE when
 * its magnitude is above UINT64_MAX, else EINVAL. */
static int ep__parse_decimal(const char *s, int *negative, uint64_t *magnitude)
{
  *negative = *s == '-';
  const char *p = s + (*s == '+' || *s == '-');
  if (!*p)
    return EINVAL;
  for (const char *q = p; *q; q++)
    if (*q < '0' || *q > '9')
      return EINVAL;
  errno = 0;
  unsigned long long v = strtoull(p, NULL, 10); /* digits only: it reads them all */
  if (errno == ERANGE)
    return ERANGE;
  *magnitude = (uint64_t)v;
  return 0;
}

static int ep__parse_i64(const char *s, int64_t *out)
{
  int negative;
  uint64_t m;
  int rc = ep__parse_decimal(s, &negative, &m);
  if (rc != 0)
    return rc;
  if (m > (uint64_t)INT64_MAX + (uint64_t)negative)
    return ERANGE;
  *out = negative && m > 0 ? -(int64_t)(m - 1) - 1 : (int64_t)m;
  return 0;
}

static int ep__parse_u64(const char *s, uint64_t *out)
{
  if (s[*s == '+'] == '-')
    return ERANGE; /* a negative number: out of range, not malformed */
  int negative;
  return ep__parse_decimal(s, &negative, out);
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
static int ep__integer_error(ep_keyfile *kf, int32_t k, int rc, int show)
{
  const ep_keyfile_value *v = &kf->val[k];
  double d;
  if (rc == EINVAL && ep__parse_num(v->text, &d) == 0)
    ep__key_error(kf, v->val_pos, k, "expected an integer, got float '%.*s'", show, v->text);
  else if (rc == EINVAL)
    ep__key_error(kf, v->val_pos, k, "expected an integer, got '%.*s'", show, v->text);
  else if (rc == ERANGE)
    ep__key_error(kf, v->val_pos, k, "out of range: %.*s", show, v->text);
  return rc != 0;
}

static void ep__type_key(ep_keyfile *kf, int32_t k)
{
  ep_keyfile_value *v = &kf->val[k];
  const ep__raw *r = &kf->raw[k];
  const ep_keyfile_spec *key = &kf->schema->keys[k];
  const int numeric = key->type == EP_KEYFILE_INT || key->type == EP_KEYFILE_UINT64 ||
                      key->type == EP_KEYFILE_NUMBER;
  const char *want = key->type == EP_KEYFILE_NUMBER ? "a number"
                     : numeric                      ? "an integer"
                                                    : "a string";
  if (r->kind != V_SCALAR) {
    ep__key_error(kf, v->val_pos, k, "expected %s, got %s", want, ep__kind_name(r->kind));
    return;
  }
  if (v->len == 0) {
    ep__key_error(kf, v->val_pos, k, "missing value");
    return;
  }
  if (strlen(v->text) != v->len) {
    ep__key_error(kf, v->val_pos, k, "value contains a NUL byte");
    return;
  }
  int show = EP__SHOW_LEN(v->len);
  if (numeric && !r->plain) {
    /* YAML quotes make a string; numbers must be written bare. */
    if (!(key->none_ok && !strcmp(v->text, "none"))) {
      ep__key_error(kf, v->val_pos, k, "expected %s, got quoted string \"%.*s\"", want, show,
                    v->text);
      return;
    }
  }
  switch (key->type) {
  case EP_KEYFILE_STRING:
    if (v->len > (uint64_t)key->max) {
      ep__key_error(kf, v->val_pos, k, "too long: %zu bytes", v->len);
      return;
    }
    break;
  case EP_KEYFILE_INT: {
    int rc = ep__parse_i64(v->text, &v->i);
    if (rc == 0 && (v->i < key->min || v->i > key->max))
      rc = ERANGE;
    if (ep__integer_error(kf, k, rc, show))
      return;
    break;
  }
  case EP_KEYFILE_UINT64:
    if (ep__integer_error(kf, k, ep__parse_u64(v->text, &v->u), show))
      return;
    break;
  case EP_KEYFILE_NUMBER: {
    if (key->none_ok && !strcmp(v->text, "none")) {
      v->none = 1;
      v->d = 0.0;
      break;
    }
    int rc = ep__parse_num(v->text, &v->d);
    if (rc == EINVAL) {
      ep__key_error(kf, v->val_pos, k, "expected a number, got '%.*s'", show, v->text);
      return;
    }
    if (rc == ERANGE || (!(key->zero_ok && v->d == 0.0) &&
                         (v->d < key->num_min || (key->num_min_open && v->d == key->num_min) ||
                          v->d > key->num_max || (key->num_max_open && v->d == key->num_max)))) {
      ep__key_error(kf, v->val_pos, k, "out of range: %.*s", show, v->text);
      return;
    }
    if (v->d == 0.0)
      v->d = 0.0; /* -0 is 0 */
    break;
  }
  case EP_KEYFILE_ENUM: {
    int32_t found = -1;
    for (int32_t i = 0; key->names[i]; i++)
      if (!strcmp(key->names[i], v->text))
        found = i;
    if (found < 0) {
      ep__key_error(kf, v->val_pos, k, "unknown value '%.*s'", show, v->text);
      return;
    }
    v->e = found;
    break;
  }
  }
  v->ok = 1;
}

/* ---- required sections and keys ---- */

void ep_keyfile_require(ep_keyfile *kf, int32_t key, const char *why)
{
  if (!kf || key < 0 || key >= kf->schema->n_keys)
    return;
  int32_t s = kf->schema->keys[key].section;
  if (kf->val[key].present || !kf->sec[s].present || kf->sec[s].bad)
    return; /* a missing or malformed section is reported once, not per key */
  ep__key_error(kf, kf->sec[s].pos, key, "missing required key%s", why ? why : "");
}

static void ep__require_all(ep_keyfile *kf)
{
  const ep_keyfile_schema *schema = kf->schema;
  for (int32_t s = 0; s < schema->n_sections; s++) {
    if (!schema->sections[s].required || kf->sec[s].present)
      continue;
    char keys[EP__LIST_MAX];
    ep__list(kf, s, keys, sizeof keys);
    ep__error(kf, kf->root_pos, schema->sections[s].name, keys, "missing required section");
  }
  for (int32_t k = 0; k < schema->n_keys; k++)
    if (schema->keys[k].required)
      ep_keyfile_require(kf, k, "");
}

/* ---- the caller's errors ---- */

void ep_keyfile_error_at(ep_keyfile *kf, int32_t key, ep_keyfile_at at, const char *valid,
                         const char *fmt, ...)
{
  if (!kf || key < 0 || key >= kf->schema->n_keys || !fmt)
    return;
  const ep_keyfile_value *v = &kf->val[key];
  const ep__sec *sec = &kf->sec[kf->schema->keys[key].section];
  ep_keyfile_pos pos = v->present     ? (at == EP_KEYFILE_AT_KEY ? v->key_pos : v->val_pos)
                       : sec->present ? sec->pos
                                      : kf->root_pos;
  va_list ap;
  va_start(ap, fmt);
  ep__key_verror(kf, pos, key, valid, fmt, ap);
  va_end(ap);
}

void ep_keyfile_reject(ep_keyfile *kf, int32_t key, const char *fmt, ...)
{
  if (!kf || key < 0 || key >= kf->schema->n_keys || !fmt || !kf->val[key].present)
    return;
  va_list ap;
  va_start(ap, fmt);
  ep__key_verror(kf, kf->val[key].val_pos, key, NULL, fmt, ap);
  va_end(ap);
  kf->val[key].ok = 0;
}

/* ---- file reading, hashing, YAML errors ---- */

/* Reads at most EP_KEYFILE_MAX_BYTES + 1 bytes, whatever the file is (a
 * regular file, a pipe, /dev/zero), so *too_big says "larger than the cap"
 * without reading on. */
static ep_status ep__read_file(const char *path, char **buf, size_t *len, int *err_no, int *too_big)
{
  FILE *f = fopen(path, "rb");
  *err_no = 0;
  *too_big = 0;
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
      if (cap > EP_KEYFILE_MAX_BYTES) {
        *too_big = 1;
        st = EP_ERR_IO;
        break;
      }
      /* Up to the cap plus the one byte that shows the file is larger. */
      const size_t next = 2 * cap > EP_KEYFILE_MAX_BYTES ? EP_KEYFILE_MAX_BYTES + 1 : 2 * cap;
      char *grown = realloc(data, next + 1);
      if (!grown) {
        st = EP_ERR_NOMEM;
        break;
      }
      data = grown;
      cap = next;
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

/* Position of byte offset off (reader errors carry only an offset). */
static ep_keyfile_pos ep__offset_pos(const ep_keyfile *kf, size_t off)
{
  ep_keyfile_pos p = {kf->path, 0, 1, 1};
  for (size_t i = 0; i < off && i < kf->len; i++) {
    if (kf->buf[i] == '\n') {
      p.line++;
      p.col = 1;
    } else {
      p.col++;
    }
  }
  return p;
}

static void ep__yaml_error(ep_keyfile *kf, const yaml_parser_t *parser)
{
  ep_keyfile_pos p = parser->error == YAML_READER_ERROR ? ep__offset_pos(kf, parser->problem_offset)
                                                        : ep__mark_pos(kf, parser->problem_mark);
  const char *problem = parser->problem ? parser->problem : "malformed YAML";
  if (parser->context && (parser->context_mark.line != parser->problem_mark.line ||
                          parser->context_mark.column != parser->problem_mark.column))
    ep__error(kf, p, "yaml", "YAML block or flow mappings", "%s %s (from %d:%d)", problem,
              parser->context, (int)parser->context_mark.line + 1,
              (int)parser->context_mark.column + 1);
  else if (parser->context)
    ep__error(kf, p, "yaml", "YAML block or flow mappings", "%s %s", problem, parser->context);
  else
    ep__error(kf, p, "yaml", "YAML block or flow mappings", "%s", problem);
}

/* Walks kf->buf's events, as far as they parse, and records an error where the
 * nesting gets deeper than EP_KEYFILE_MAX_DEPTH or the nodes more than
 * EP_KEYFILE_MAX_NODES. *ok: 1 if neither happened (a syntax error is left to
 * the loader, which finds it again). Stopping at the limit keeps libyaml's
 * work per event bounded by the depth. Returns EP_ERR_NOMEM or EP_OK. */
static ep_status ep__check_shape(ep_keyfile *kf, int *ok)
{
  *ok = 1;
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return EP_ERR_NOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)kf->buf, kf->len);
  ep_status st = EP_OK;
  int32_t depth = 0, nodes = 0;
  for (int done = 0; !done;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      if (parser.error == YAML_MEMORY_ERROR)
        st = EP_ERR_NOMEM;
      break;
    }
    const int opens = ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT;
    depth += opens;
    depth -= ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT;
    nodes += opens || ev.type == YAML_SCALAR_EVENT || ev.type == YAML_ALIAS_EVENT;
    const ep_keyfile_pos pos = ep__mark_pos(kf, ev.start_mark);
    if (depth > EP_KEYFILE_MAX_DEPTH) {
      ep__error(kf, pos, "yaml", "at most " EP__STR(EP_KEYFILE_MAX_DEPTH) " levels of nesting",
                "nested more than %d levels deep", EP_KEYFILE_MAX_DEPTH);
      *ok = 0;
    } else if (nodes > EP_KEYFILE_MAX_NODES) {
      ep__error(kf, pos, "yaml", "at most " EP__STR(EP_KEYFILE_MAX_NODES) " nodes",
                "more than %d nodes", EP_KEYFILE_MAX_NODES);
      *ok = 0;
    }
    done = !*ok || ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  return st;
}

/* Parses kf->buf into kf->doc, refusing a second document and one beyond the
 * limits of ep__check_shape. Returns EP_ERR_NOMEM or EP_OK; a syntax error or
 * a limit crossed is recorded and leaves no document. */
static ep_status ep__parse(ep_keyfile *kf)
{
  int shape_ok = 0;
  ep_status shape_st = ep__check_shape(kf, &shape_ok);
  if (shape_st != EP_OK || !shape_ok)
    return shape_st;
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return EP_ERR_NOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)kf->buf, kf->len);
  ep_status st = EP_OK;
  yaml_document_t extra;
  if (!yaml_parser_load(&parser, &kf->doc)) { /* libyaml frees doc on failure */
    if (parser.error == YAML_MEMORY_ERROR)
      st = EP_ERR_NOMEM;
    else
      ep__yaml_error(kf, &parser);
    goto done;
  }
  kf->have_doc = 1;
  if (!yaml_parser_load(&parser, &extra)) {
    if (parser.error == YAML_MEMORY_ERROR)
      st = EP_ERR_NOMEM;
    else
      ep__yaml_error(kf, &parser);
    /* A syntax error leaves nothing reliable to check. */
    yaml_document_delete(&kf->doc);
    kf->have_doc = 0;
    goto done;
  }
  yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
  if (extra_root)
    ep__error(kf, ep__mark_pos(kf, extra_root->start_mark), kf->schema->name, "one YAML document",
              "a second YAML document");
  yaml_document_delete(&extra);
done:
  yaml_parser_delete(&parser);
  return st;
}

ep_status ep_keyfile_load(const ep_keyfile_schema *schema, const char *path,
                          const char *const *overrides, int32_t n_overrides, ep_keyfile **out,
                          FILE *err)
{
  if (!out)
    return EP_ERR_INVALID;
  *out = NULL;
  if (!schema || !schema->name || !schema->sections || schema->n_sections <= 0 || !schema->keys ||
      schema->n_keys <= 0 || !path || n_overrides < 0 || (n_overrides > 0 && !overrides))
    return EP_ERR_INVALID;
  for (int32_t k = 0; k < schema->n_keys; k++) {
    const ep_keyfile_spec *key = &schema->keys[k];
    if (key->section < 0 || key->section >= schema->n_sections || !key->name ||
        (key->type == EP_KEYFILE_ENUM && !key->names))
      return EP_ERR_INVALID;
  }
  ep_keyfile *kf = calloc(1, sizeof *kf);
  if (!kf)
    return EP_ERR_NOMEM;
  kf->schema = schema;
  kf->path = strdup(path);
  kf->val = calloc((size_t)schema->n_keys, sizeof *kf->val);
  kf->raw = calloc((size_t)schema->n_keys, sizeof *kf->raw);
  kf->sec = calloc((size_t)schema->n_sections, sizeof *kf->sec);
  ep_status st = EP_ERR_NOMEM;
  if (!kf->path || !kf->val || !kf->raw || !kf->sec)
    goto fail;
  kf->root_pos = (ep_keyfile_pos){kf->path, 0, 1, 1};

  int err_no = 0, too_big = 0;
  st = ep__read_file(path, &kf->buf, &kf->len, &err_no, &too_big);
  if (st != EP_OK) {
    if (err && too_big)
      fprintf(err, "%s: cannot read: larger than %d MiB (valid: a file of at most %d bytes)\n",
              path, EP_KEYFILE_MAX_BYTES >> 20, EP_KEYFILE_MAX_BYTES);
    else if (err)
      fprintf(err, "%s: cannot read: %s\n", path,
              st == EP_ERR_NOMEM ? "out of memory" : strerror(err_no));
    goto fail;
  }
  kf->hash = ep_fnv1a64(EP_FNV1A64_INIT, kf->buf, kf->len);
  for (int32_t i = 0; i < n_overrides; i++)
    if (overrides[i]) /* with the terminating NUL, so "a=1","b" and "a=1b" differ */
      kf->hash = ep_fnv1a64(kf->hash, overrides[i], strlen(overrides[i]) + 1);

  st = ep__parse(kf);
  if (st != EP_OK)
    goto fail;
  if (kf->have_doc) {
    ep__walk(kf);
    if (!kf->no_root) {
      for (int32_t i = 0; i < n_overrides; i++)
        ep__apply_override(kf, overrides[i], i);
      for (int32_t k = 0; k < schema->n_keys; k++)
        if (kf->val[k].present)
          ep__type_key(kf, k);
      ep__require_all(kf);
    }
  }
  *out = kf;
  return EP_OK;

fail:
  ep_keyfile_free(kf);
  return st;
}

const ep_keyfile_value *ep_keyfile_values(const ep_keyfile *kf)
{
  return kf ? kf->val : NULL;
}

int ep_keyfile_section_present(const ep_keyfile *kf, int32_t section)
{
  return kf && section >= 0 && section < kf->schema->n_sections && kf->sec[section].present;
}

uint64_t ep_keyfile_hash(const ep_keyfile *kf)
{
  return kf ? kf->hash : 0;
}

ep_status ep_keyfile_report(ep_keyfile *kf, FILE *err)
{
  if (!kf)
    return EP_ERR_INVALID;
  if (kf->nomem)
    return EP_ERR_NOMEM;
  if (!kf->n_errs)
    return EP_OK;
  qsort(kf->errs, kf->n_errs, sizeof *kf->errs, ep__err_cmp);
  for (size_t i = 0; err && i < kf->n_errs; i++)
    fprintf(err, "%s\n", kf->errs[i].line);
  return EP_ERR_PARSE;
}

void ep_keyfile_free(ep_keyfile *kf)
{
  if (!kf)
    return;
  if (kf->have_doc)
    yaml_document_delete(&kf->doc);
  for (size_t i = 0; i < kf->n_errs; i++)
    free(kf->errs[i].line);
  free(kf->errs);
  free(kf->val);
  free(kf->raw);
  free(kf->sec);
  free(kf->buf);
  free(kf->path);
  free(kf);
}
