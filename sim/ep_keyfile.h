/* Key files: one YAML document whose top level maps sections to mappings of
 * scalar keys, read against a caller's table of typed keys. The reader knows no
 * schema: it records each key's value and position, collects every problem as
 * "file:line:col: section.key: message (valid: ...)" and prints them all at once,
 * so the caller can add its own cross-key errors in the same format before the
 * report. Scenarios use it today; calibration profiles, load dumps and sweep
 * files are meant to. */
#ifndef EP_KEYFILE_H
#define EP_KEYFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ep_status.h"

typedef enum {
  EP_KEYFILE_STRING, /* any scalar, plain or quoted, 1..max bytes */
  EP_KEYFILE_INT,    /* unquoted decimal int64 in min..max */
  EP_KEYFILE_UINT64, /* unquoted decimal, 0..UINT64_MAX */
  EP_KEYFILE_NUMBER, /* unquoted finite decimal double within num_min, num_max (-0 read as 0) */
  EP_KEYFILE_ENUM,   /* one of names, plain or quoted, case-sensitive */
} ep_keyfile_type;

typedef struct ep_keyfile_section {
  const char *name;
  int required; /* a missing section is an error */
} ep_keyfile_section;

/* One key. The table order is the order of the section's key list in messages. */
typedef struct ep_keyfile_spec {
  int32_t section; /* index into ep_keyfile_schema.sections */
  const char *name;
  ep_keyfile_type type;
  int required;             /* missing from a present section is an error */
  int64_t min, max;         /* INT: inclusive bounds; STRING: max = the most bytes */
  double num_min, num_max;  /* NUMBER bounds (HUGE_VAL: none) */
  int num_min_open;         /* NUMBER: num_min itself is invalid */
  int num_max_open;         /* NUMBER: num_max itself is invalid */
  int none_ok;              /* NUMBER: the word none is accepted too */
  int zero_ok;              /* NUMBER: 0 is valid too, outside num_min..num_max */
  const char *const *names; /* ENUM: NULL-terminated, index = value */
  const char *valid;        /* the text after "valid:"; NULL for ENUM: the names joined */
} ep_keyfile_spec;

typedef struct ep_keyfile_schema {
  const char *name; /* KEY of errors about the whole document, e.g. "scenario" */
  const ep_keyfile_section *sections;
  int32_t n_sections;
  const ep_keyfile_spec *keys;
  int32_t n_keys;
} ep_keyfile_schema;

/* A position: the file (rank 0) or an override (rank 1, src "--set", line = its
 * 1-based index among the overrides, col = the column inside the override). */
typedef struct ep_keyfile_pos {
  const char *src; /* the path given to ep_keyfile_load, or "--set" */
  int32_t rank;
  int32_t line, col; /* 1-based */
} ep_keyfile_pos;

/* One key as read. The typed field matching the key's type holds the value when ok. */
typedef struct ep_keyfile_value {
  int present;                     /* given in the file or by an override */
  int ok;                          /* present and valid by its own type and range */
  ep_keyfile_pos key_pos, val_pos; /* of the key's name and of its value */
  const char *text;                /* the scalar's text, NUL-terminated (owned by the handle) */
  size_t len;                      /* bytes of text */
  int64_t i;                       /* INT */
  uint64_t u;                      /* UINT64 */
  double d;                        /* NUMBER (0 when none) */
  int none;                        /* NUMBER with none_ok: the word none was given */
  int32_t e;                       /* ENUM: index into names */
} ep_keyfile_value;

/* Where an error about a key points. */
typedef enum { EP_KEYFILE_AT_KEY, EP_KEYFILE_AT_VALUE } ep_keyfile_at;

/* User text quoted in messages is cut to this many bytes ("%.*s"). */
#define EP_KEYFILE_SHOW 40

/* What a key file may hold, checked before libyaml builds the document: a
 * larger file is not read on (so /dev/zero or a pipe ends at once), deeper
 * nesting or more nodes is an error at the node that crosses the limit.
 * libyaml's loader is quadratic in nesting depth (200k '[' took minutes), and
 * a key file needs depth 2 and a few hundred nodes. */
#define EP_KEYFILE_MAX_BYTES (16 << 20)
#define EP_KEYFILE_MAX_DEPTH 64
#define EP_KEYFILE_MAX_NODES 65536

typedef struct ep_keyfile ep_keyfile;

/* Reads path and checks it against schema (which must outlive the handle): the
 * document's shape, unknown or duplicate sections and keys, each value's type
 * and range, required sections and keys. Then applies overrides
 * ("section.key=value", as given to --set; NULL when n_overrides is 0), typed
 * the same way; a later override of a key wins. Problems are recorded, not
 * printed: the caller may add its own (ep_keyfile_error_at) and then prints all
 * with ep_keyfile_report. Returns EP_OK with *out set (to free with
 * ep_keyfile_free) whether or not the file had problems; EP_ERR_IO (the reason
 * printed to err, which may be NULL) when the file cannot be read or is larger
 * than EP_KEYFILE_MAX_BYTES, EP_ERR_NOMEM, or EP_ERR_INVALID for bad
 * arguments, with *out NULL. */
ep_status ep_keyfile_load(const ep_keyfile_schema *schema, const char *path,
                          const char *const *overrides, int32_t n_overrides, ep_keyfile **out,
                          FILE *err);

/* [schema->n_keys] values, index = key; owned by kf. */
const ep_keyfile_value *ep_keyfile_values(const ep_keyfile *kf);

/* Whether the section is in the file or named by an override. */
int ep_keyfile_section_present(const ep_keyfile *kf, int32_t section);

/* 64-bit FNV-1a of the file's bytes, then of each override with its NUL. */
uint64_t ep_keyfile_hash(const ep_keyfile *kf);

/* Records "src:line:col: section.key: message (valid: valid)" at the key's name
 * or value; valid NULL means the key's own valid text. A key that is not
 * present is reported at its section's position. */
void ep_keyfile_error_at(ep_keyfile *kf, int32_t key, ep_keyfile_at at, const char *valid,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Rejects a present key's value for a reason of the caller's (say, a name that
 * is not in a catalog): an error at the value with the key's own valid text,
 * after which the key is no longer ok. */
void ep_keyfile_reject(ep_keyfile *kf, int32_t key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A key required only in some cases: if it is missing from its present,
 * well-formed section, records "missing required key<why>" at the section. */
void ep_keyfile_require(ep_keyfile *kf, int32_t key, const char *why);

/* Prints every recorded problem to err (may be NULL), one line each, sorted by
 * position: the file's by line and column, then the overrides' by index.
 * Returns EP_ERR_PARSE if there was any, EP_ERR_NOMEM if one could not be
 * recorded, else EP_OK. */
ep_status ep_keyfile_report(ep_keyfile *kf, FILE *err);

/* Frees kf and everything it owns; NULL is a no-op. */
void ep_keyfile_free(ep_keyfile *kf);

#endif
