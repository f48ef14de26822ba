/* Key-file reader alone, on a tiny schema of its own (no scenario keys): typed
 * values and their positions, several errors reported at once and sorted,
 * overrides, the caller's errors at a key or its value, required keys and
 * sections, the content hash, bad arguments, and the limits on what a file
 * may hold (size, also of endless files and pipes; nesting depth; nodes).
 * Inline files are written to mkstemp files. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ep_keyfile.h"
#include "ep_rng.h"

enum { S_RUN, S_OPT, S_COUNT };
enum { K_COUNT_, K_MODE, K_SCALE, K_LABEL, K_SEED, K_FACTOR, K_N };

static const ep_keyfile_section sections[S_COUNT] = {{"run", 1}, {"opt", 0}};
static const char *const modes[] = {"fast", "slow", NULL};
static const ep_keyfile_spec keys[K_N] = {
    [K_COUNT_] = {.section = S_RUN,
                  .name = "count",
                  .type = EP_KEYFILE_INT,
                  .required = 1,
                  .min = 1,
                  .max = 10,
                  .valid = "integer 1..10"},
    [K_MODE] = {.section = S_RUN, .name = "mode", .type = EP_KEYFILE_ENUM, .names = modes},
    [K_SCALE] = {.section = S_RUN,
                 .name = "scale",
                 .type = EP_KEYFILE_NUMBER,
                 .num_min = 0,
                 .num_max = HUGE_VAL,
                 .num_min_open = 1,
                 .num_max_open = 1,
                 .valid = "number > 0"},
    [K_LABEL] = {.section = S_OPT,
                 .name = "label",
                 .type = EP_KEYFILE_STRING,
                 .max = 8,
                 .valid = "string of 1..8 bytes"},
    [K_SEED] = {.section = S_OPT, .name = "seed", .type = EP_KEYFILE_UINT64, .valid = "uint64"},
    [K_FACTOR] = {.section = S_OPT,
                  .name = "factor",
                  .type = EP_KEYFILE_NUMBER,
                  .num_min = 1,
                  .num_max = 2,
                  .none_ok = 1,
                  .valid = "none or a number in 1..2"},
};
static const ep_keyfile_schema schema = {"sweep", sections, S_COUNT, keys, K_N};

typedef struct loaded {
  ep_status load_st, report_st;
  ep_keyfile *kf;
  char path[64];
  char *err; /* what ep_keyfile_report printed (after a caller's hook) */
} loaded;

typedef void (*hook_fn)(ep_keyfile *kf);

/* Writes text to a temp file, loads it, runs hook (may be NULL), reports. */
static loaded load(const char *text, const char *const *ov, int32_t n_ov, hook_fn hook)
{
  loaded l;
  memset(&l, 0, sizeof l);
  snprintf(l.path, sizeof l.path, "/tmp/test_keyfile_XXXXXX");
  int fd = mkstemp(l.path);
  CHECK(fd >= 0);
  size_t len = strlen(text);
  CHECK(fd >= 0 && write(fd, text, len) == (ssize_t)len);
  if (fd >= 0)
    CHECK(close(fd) == 0);
  l.load_st = ep_keyfile_load(&schema, l.path, ov, n_ov, &l.kf, stderr);
  CHECK(unlink(l.path) == 0);
  if (l.load_st != EP_OK)
    return l;
  if (hook)
    hook(l.kf);
  size_t n = 0;
  FILE *err = open_memstream(&l.err, &n);
  CHECK(err != NULL);
  l.report_st = ep_keyfile_report(l.kf, err);
  if (err)
    CHECK(fclose(err) == 0);
  return l;
}

static void loaded_free(loaded *l)
{
  ep_keyfile_free(l->kf);
  free(l->err);
  memset(l, 0, sizeof *l);
}

/* The report is exactly these lines, each "L:C: ..." prefixed with the path
 * (or starting with "--set:"). */
static void check_report(const loaded *l, const char *const *lines, int n, int src_line)
{
  char want[4096] = "";
  for (int i = 0; i < n; i++) {
    size_t used = strlen(want);
    if (strncmp(lines[i], "--set:", 6) == 0)
      snprintf(want + used, sizeof want - used, "%s\n", lines[i]);
    else
      snprintf(want + used, sizeof want - used, "%s:%s\n", l->path, lines[i]);
  }
  int same = l->err && strcmp(l->err, want) == 0;
  if (!same)
    fprintf(stderr, "test_keyfile.c:%d: report\n%swant\n%s", src_line, l->err ? l->err : "", want);
  CHECK(same);
}

static void test_values(void)
{
  loaded l = load("run:\n"
                  "  count: 7\n"
                  "  mode: 'slow'\n"
                  "  scale: 2.5e-1\n"
                  "opt: {label: abc, seed: 18446744073709551615, factor: none}\n",
                  NULL, 0, NULL);
  CHECK_EQ_INT(l.load_st, EP_OK);
  CHECK_EQ_INT(l.report_st, EP_OK);
  CHECK(l.err && l.err[0] == '\0');
  const ep_keyfile_value *v = ep_keyfile_values(l.kf);
  CHECK(v != NULL);
  if (!v) {
    loaded_free(&l);
    return;
  }
  for (int k = 0; k < K_N; k++)
    CHECK(v[k].present && v[k].ok);
  CHECK_EQ_INT(v[K_COUNT_].i, 7);
  CHECK_EQ_INT(v[K_COUNT_].key_pos.line, 2);
  CHECK_EQ_INT(v[K_COUNT_].key_pos.col, 3);
  CHECK_EQ_INT(v[K_COUNT_].val_pos.line, 2);
  CHECK_EQ_INT(v[K_COUNT_].val_pos.col, 10);
  CHECK(strcmp(v[K_COUNT_].val_pos.src, l.path) == 0);
  CHECK_EQ_INT(v[K_MODE].e, 1);
  CHECK(v[K_SCALE].d == 0.25);
  CHECK(strcmp(v[K_LABEL].text, "abc") == 0 && v[K_LABEL].len == 3);
  CHECK_EQ_INT(v[K_LABEL].val_pos.line, 5);
  CHECK_EQ_INT(v[K_LABEL].val_pos.col, 14);
  CHECK(v[K_SEED].u == UINT64_MAX);
  CHECK(v[K_FACTOR].none && v[K_FACTOR].d == 0.0);
  CHECK(ep_keyfile_section_present(l.kf, S_RUN) && ep_keyfile_section_present(l.kf, S_OPT));
  CHECK(!ep_keyfile_section_present(l.kf, S_COUNT));
  loaded_free(&l);

  /* Optional keys and sections may be left out; a later override wins. */
  const char *ov[] = {"run.count=3", "run.count=4", "opt.factor=1.5"};
  l = load("run:\n  count: 1\n", ov, 3, NULL);
  CHECK_EQ_INT(l.report_st, EP_OK);
  v = ep_keyfile_values(l.kf);
  CHECK(v && v[K_COUNT_].i == 4 && !v[K_MODE].present && !v[K_SCALE].present);
  CHECK(v && v[K_FACTOR].ok && !v[K_FACTOR].none && v[K_FACTOR].d == 1.5);
  CHECK(v && v[K_COUNT_].key_pos.rank == 1 && v[K_COUNT_].key_pos.line == 2 &&
        v[K_COUNT_].val_pos.col == 11 && strcmp(v[K_COUNT_].key_pos.src, "--set") == 0);
  CHECK(ep_keyfile_section_present(l.kf, S_OPT)); /* named by an override */
  loaded_free(&l);
}

/* Every kind of problem in one file, reported together in file order. */
static void test_all_errors(void)
{
  loaded l = load("run:\n"
                  "  count: 11\n"
                  "  mode: medium\n"
                  "  scale: \"2\"\n"
                  "  speed: 3\n"
                  "  count: 2\n"
                  "opt:\n"
                  "  label: [a]\n"
                  "  seed: -1\n"
                  "  factor: 3\n"
                  "extra: 1\n"
                  "opt: {}\n",
                  NULL, 0, NULL);
  CHECK_EQ_INT(l.load_st, EP_OK);
  CHECK_EQ_INT(l.report_st, EP_ERR_PARSE);
  const char *want[] = {
      "2:10: run.count: out of range: 11 (valid: integer 1..10)",
      "3:9: run.mode: unknown value 'medium' (valid: fast, slow)",
      "4:10: run.scale: expected a number, got quoted string \"2\" (valid: number > 0)",
      "5:3: run.speed: unknown key (valid: count, mode, scale)",
      "6:3: run.count: duplicate key, first given at 2:3 (valid: each key once per section)",
      "8:10: opt.label: expected a string, got a sequence (valid: string of 1..8 bytes)",
      "9:9: opt.seed: out of range: -1 (valid: uint64)",
      "10:11: opt.factor: out of range: 3 (valid: none or a number in 1..2)",
      "11:1: extra: unknown section (valid: run, opt)",
      "12:1: opt: duplicate section, first given at 7:1 (valid: each section once)",
  };
  check_report(&l, want, 10, __LINE__);
  const ep_keyfile_value *v = ep_keyfile_values(l.kf);
  CHECK(v && v[K_COUNT_].present && !v[K_COUNT_].ok); /* the first one, rejected */
  loaded_free(&l);

  /* Missing required section and key; the schema's name labels the document. */
  l = load("opt:\n  label: x\n", NULL, 0, NULL);
  const char *want2[] = {"1:1: run: missing required section (valid: count, mode, scale)"};
  check_report(&l, want2, 1, __LINE__);
  loaded_free(&l);
  l = load("run:\n  mode: fast\n", NULL, 0, NULL);
  const char *want3[] = {"1:1: run.count: missing required key (valid: integer 1..10)"};
  check_report(&l, want3, 1, __LINE__);
  loaded_free(&l);
  l = load("- run\n", NULL, 0, NULL);
  const char *want4[] = {
      "1:1: sweep: expected a mapping of sections, got a sequence (valid: run, opt)"};
  check_report(&l, want4, 1, __LINE__);
  loaded_free(&l);
  l = load("run:\n  label: toolongvalue\n  count: 1\nopt:\n  label: toolongvalue\n", NULL, 0, NULL);
  const char *want5[] = {
      "2:3: run.label: unknown key (valid: count, mode, scale)",
      "5:10: opt.label: too long: 12 bytes (valid: string of 1..8 bytes)",
  };
  check_report(&l, want5, 2, __LINE__);
  loaded_free(&l);
}

static void test_overrides(void)
{
  /* An override replaces the file's entry before anything is typed, so the
   * file's bad mode is never reported. */
  const char *ov[] = {"run.count=x", "run.mode=slow", "opt.sed=1", "nope.a=1", "count"};
  loaded l = load("run:\n  count: 1\n  mode: fast2\n", ov, 5, NULL);
  CHECK_EQ_INT(l.report_st, EP_ERR_PARSE);
  const char *want[] = {
      "--set:1:11: run.count: expected an integer, got 'x' (valid: integer 1..10)",
      "--set:3:1: opt.sed: unknown key (valid: label, seed, factor)",
      "--set:4:1: nope: unknown section (valid: run, opt)",
      "--set:5:1: count: expected section.key=value (valid: section.key=value)",
  };
  check_report(&l, want, 4, __LINE__);
  const ep_keyfile_value *v = ep_keyfile_values(l.kf);
  CHECK(v && v[K_MODE].ok && v[K_MODE].e == 1);
  loaded_free(&l);
}

/* A caller's checks after loading: a value its catalog does not know, a
 * cross-key error at a key with its own valid-text, a conditional requirement,
 * and an error about a key that is absent (at its section). */
static void caller_checks(ep_keyfile *kf)
{
  const ep_keyfile_value *v = ep_keyfile_values(kf);
  if (v[K_LABEL].ok && strcmp(v[K_LABEL].text, "known") != 0)
    ep_keyfile_reject(kf, K_LABEL, "unknown label '%.*s'", EP_KEYFILE_SHOW, v[K_LABEL].text);
  if (v[K_COUNT_].ok && v[K_MODE].ok && v[K_MODE].e == 0 && v[K_COUNT_].i > 5)
    ep_keyfile_error_at(kf, K_COUNT_, EP_KEYFILE_AT_KEY, "integer 1..5",
                        "count %d is too many for mode fast", (int)v[K_COUNT_].i);
  if (v[K_MODE].ok && v[K_MODE].e == 1)
    ep_keyfile_require(kf, K_SCALE, " with mode: slow");
  ep_keyfile_error_at(kf, K_SEED, EP_KEYFILE_AT_VALUE, NULL, "wanted here");
}

static void test_caller_errors(void)
{
  loaded l = load("run:\n  count: 6\n  mode: fast\nopt:\n  label: other\n", NULL, 0, caller_checks);
  CHECK_EQ_INT(l.report_st, EP_ERR_PARSE);
  const char *want[] = {
      "2:3: run.count: count 6 is too many for mode fast (valid: integer 1..5)",
      "4:1: opt.seed: wanted here (valid: uint64)",
      "5:10: opt.label: unknown label 'other' (valid: string of 1..8 bytes)",
  };
  check_report(&l, want, 3, __LINE__);
  const ep_keyfile_value *v = ep_keyfile_values(l.kf);
  CHECK(v && v[K_LABEL].present && !v[K_LABEL].ok); /* rejected */
  CHECK(v && v[K_COUNT_].ok);                       /* a cross-key error leaves the value valid */
  loaded_free(&l);

  /* An override's value is rejected at its column; a conditional requirement. */
  const char *ov[] = {"opt.label=bad"};
  l = load("run:\n  count: 1\n  mode: slow\nopt:\n  seed: 1\n", ov, 1, caller_checks);
  const char *want2[] = {
      "1:1: run.scale: missing required key with mode: slow (valid: number > 0)",
      "5:9: opt.seed: wanted here (valid: uint64)",
      "--set:1:11: opt.label: unknown label 'bad' (valid: string of 1..8 bytes)",
  };
  check_report(&l, want2, 3, __LINE__);
  loaded_free(&l);

  /* A known label passes; a NULL stream still gives the status. */
  l = load("run:\n  count: 1\nopt:\n  label: known\n  seed: 2\n", NULL, 0, caller_checks);
  const char *want3[] = {"5:9: opt.seed: wanted here (valid: uint64)"};
  check_report(&l, want3, 1, __LINE__);
  CHECK_EQ_INT(ep_keyfile_report(l.kf, NULL), EP_ERR_PARSE);
  loaded_free(&l);
}

static void test_hash_and_arguments(void)
{
  const char *text = "run:\n  count: 1\n";
  uint64_t h = ep_fnv1a64(EP_FNV1A64_INIT, text, strlen(text));
  loaded l = load(text, NULL, 0, NULL);
  CHECK(ep_keyfile_hash(l.kf) == h);
  loaded_free(&l);
  const char *ov[] = {"run.count=2"};
  h = ep_fnv1a64(h, ov[0], strlen(ov[0]) + 1); /* the override's NUL is hashed too */
  l = load(text, ov, 1, NULL);
  CHECK(ep_keyfile_hash(l.kf) == h);
  loaded_free(&l);

  static char sentinel;
  ep_keyfile *kf = (ep_keyfile *)&sentinel; /* a failed load sets it to NULL */
  CHECK_EQ_INT(ep_keyfile_load(NULL, "x", NULL, 0, &kf, NULL), EP_ERR_INVALID);
  CHECK(kf == NULL);
  CHECK_EQ_INT(ep_keyfile_load(&schema, NULL, NULL, 0, &kf, NULL), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_keyfile_load(&schema, "x", NULL, 1, &kf, NULL), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_keyfile_load(&schema, "x", NULL, 0, NULL, NULL), EP_ERR_INVALID);
  ep_keyfile_spec bad_keys[K_N];
  memcpy(bad_keys, keys, sizeof bad_keys);
  bad_keys[K_MODE].names = NULL;
  const ep_keyfile_schema bad = {"sweep", sections, S_COUNT, bad_keys, K_N};
  CHECK_EQ_INT(ep_keyfile_load(&bad, "x", NULL, 0, &kf, NULL), EP_ERR_INVALID);

  char *msg = NULL;
  size_t n = 0;
  FILE *err = open_memstream(&msg, &n);
  CHECK(err != NULL);
  CHECK_EQ_INT(ep_keyfile_load(&schema, "/nonexistent/k.yaml", NULL, 0, &kf, err), EP_ERR_IO);
  if (err)
    CHECK(fclose(err) == 0);
  CHECK_STR_CONTAINS(msg, "/nonexistent/k.yaml: cannot read:");
  free(msg);
  CHECK(kf == NULL);
  ep_keyfile_free(NULL);
}

/* A number key that takes 0 besides its range (a latency: 0, or 1..2). */
static void test_zero_ok(void)
{
  static const ep_keyfile_section lat_sections[] = {{"link", 1}};
  static const ep_keyfile_spec lat_keys[] = {{.section = 0,
                                              .name = "lat",
                                              .type = EP_KEYFILE_NUMBER,
                                              .num_min = 1,
                                              .num_max = 2,
                                              .zero_ok = 1,
                                              .valid = "0, or a number in 1..2"}};
  static const ep_keyfile_schema lat_schema = {"links", lat_sections, 1, lat_keys, 1};
  char path[] = "/tmp/test_keyfile_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(fd >= 0 && write(fd, "link:\n  lat: 1\n", 15) == 15);
  if (fd >= 0)
    CHECK(close(fd) == 0);
  const struct {
    const char *value;
    int ok;
  } cases[] = {{"0", 1},   {"-0", 1},     {"0e5", 1}, {"1", 1}, {"2", 1},
               {"0.5", 0}, {"1e-300", 0}, {"2.5", 0}, {"-1", 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char ov[64];
    snprintf(ov, sizeof ov, "link.lat=%s", cases[i].value);
    const char *ovs[] = {ov};
    ep_keyfile *kf = NULL;
    CHECK_EQ_INT(ep_keyfile_load(&lat_schema, path, ovs, 1, &kf, stderr), EP_OK);
    const ep_keyfile_value *v = ep_keyfile_values(kf);
    CHECK_EQ_INT(v && v[0].ok, cases[i].ok);
    if (v && v[0].ok && v[0].d == 0)
      CHECK(!signbit(v[0].d)); /* -0 is read as 0 */
    CHECK_EQ_INT(ep_keyfile_report(kf, NULL), cases[i].ok ? EP_OK : EP_ERR_PARSE);
    ep_keyfile_free(kf);
  }
  CHECK(unlink(path) == 0);
}

/* Loads path (no overrides) and returns what the load printed to err; *st
 * gets its status. The caller frees the text. */
static char *load_status(const char *path, ep_status *st)
{
  char *text = NULL;
  size_t n = 0;
  FILE *err = open_memstream(&text, &n);
  CHECK(err != NULL);
  ep_keyfile *kf = NULL;
  *st = ep_keyfile_load(&schema, path, NULL, 0, &kf, err);
  ep_keyfile_free(kf);
  if (err)
    CHECK(fclose(err) == 0);
  return text;
}

/* A file of exactly the size cap loads; one byte more, /dev/zero and a pipe
 * that never ends are refused after reading one byte past the cap. */
static void test_size_limit(void)
{
  const char *doc = "run:\n  count: 7\n";
  char *big = malloc(EP_KEYFILE_MAX_BYTES + 2);
  CHECK(big != NULL);
  if (!big)
    return;
  memset(big, ' ', EP_KEYFILE_MAX_BYTES + 1);
  memcpy(big, doc, strlen(doc));
  big[EP_KEYFILE_MAX_BYTES] = '\0';
  loaded l = load(big, NULL, 0, NULL);
  CHECK_EQ_INT(l.load_st, EP_OK);
  CHECK_EQ_INT(l.report_st, EP_OK);
  loaded_free(&l);

  big[EP_KEYFILE_MAX_BYTES] = ' ';
  big[EP_KEYFILE_MAX_BYTES + 1] = '\0';
  char path[] = "/tmp/test_keyfile_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(fd >= 0 && write(fd, big, EP_KEYFILE_MAX_BYTES + 1) == EP_KEYFILE_MAX_BYTES + 1);
  if (fd >= 0)
    CHECK(close(fd) == 0);
  free(big);
  ep_status st;
  char *err = load_status(path, &st);
  CHECK(unlink(path) == 0);
  CHECK_EQ_INT(st, EP_ERR_IO);
  char want[256];
  snprintf(want, sizeof want,
           "%s: cannot read: larger than 16 MiB (valid: a file of at most 16777216 bytes)\n", path);
  CHECK(err && strcmp(err, want) == 0);
  free(err);

  err = load_status("/dev/zero", &st);
  CHECK_EQ_INT(st, EP_ERR_IO);
  CHECK(err && strcmp(err, "/dev/zero: cannot read: larger than 16 MiB (valid: a file of at most "
                           "16777216 bytes)\n") == 0);
  free(err);

  /* A pipe whose writer never stops: the read ends at the cap too. */
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    close(fds[0]);
    char block[4096];
    memset(block, 'a', sizeof block);
    for (;;)
      if (write(fds[1], block, sizeof block) < 0)
        _exit(0); /* the reader closed: EPIPE (SIGPIPE also ends it) */
  }
  close(fds[1]);
  snprintf(path, sizeof path, "/dev/fd/%d", fds[0]);
  err = load_status(path, &st);
  CHECK_EQ_INT(st, EP_ERR_IO);
  CHECK_STR_CONTAINS(err, ": cannot read: larger than 16 MiB");
  free(err);
  close(fds[0]);
  int wstatus = 0;
  CHECK(child > 0 && waitpid(child, &wstatus, 0) == child);
}

/* Nesting deeper than the cap, in flow or block style, and more nodes than the
 * cap are errors at the node that crosses it, before libyaml builds anything
 * (200k '[' took minutes there). */
static void test_shape_limits(void)
{
  enum { DEEP = 200000 };
  char *text = malloc(DEEP + 64);
  CHECK(text != NULL);
  if (!text)
    return;
  /* 64 levels: the limit itself is fine (the value is only the wrong type). */
  int n = snprintf(text, DEEP, "run:\n  count: ");
  memset(text + n, '[', EP_KEYFILE_MAX_DEPTH - 2);
  memset(text + n + EP_KEYFILE_MAX_DEPTH - 2, ']', EP_KEYFILE_MAX_DEPTH - 2);
  text[n + 2 * (EP_KEYFILE_MAX_DEPTH - 2)] = '\0';
  loaded l = load(text, NULL, 0, NULL);
  CHECK_EQ_INT(l.report_st, EP_ERR_PARSE);
  CHECK_STR_CONTAINS(l.err, "run.count: expected an integer, got a sequence");
  loaded_free(&l);

  memset(text, '[', DEEP);
  text[DEEP] = '\0';
  l = load(text, NULL, 0, NULL);
  CHECK_EQ_INT(l.load_st, EP_OK);
  CHECK_EQ_INT(l.report_st, EP_ERR_PARSE);
  const char *deep[] = {"1:65: yaml: nested more than 64 levels deep (valid: at most 64 levels "
                        "of nesting)"};
  check_report(&l, deep, 1, __LINE__);
  loaded_free(&l);

  /* Block style: "- - - ..." nests one sequence per dash. */
  for (int i = 0; i < 100; i++)
    memcpy(text + 2 * i, "- ", 2);
  snprintf(text + 200, 8, "x\n");
  l = load(text, NULL, 0, NULL);
  const char *block[] = {"1:129: yaml: nested more than 64 levels deep (valid: at most 64 levels "
                         "of nesting)"};
  check_report(&l, block, 1, __LINE__);
  loaded_free(&l);
  free(text);

  /* Nodes: a flow sequence of 70000 scalars under a key. */
  enum { WIDE = 70000 };
  text = malloc(16 + 2 * WIDE + 8);
  CHECK(text != NULL);
  if (!text)
    return;
  n = snprintf(text, 16, "run: [");
  for (int i = 0; i < WIDE; i++)
    memcpy(text + n + 2 * i, "1,", 2);
  snprintf(text + n + 2 * WIDE, 8, "]\n");
  l = load(text, NULL, 0, NULL);
  CHECK_EQ_INT(l.report_st, EP_ERR_PARSE);
  char wide[128];
  /* The root, "run", the sequence and 65533 scalars make 65536 nodes. */
  snprintf(wide, sizeof wide, "1:%d: yaml: more than 65536 nodes (valid: at most 65536 nodes)",
           n + 1 + 2 * 65533);
  const char *wide_lines[] = {wide};
  check_report(&l, wide_lines, 1, __LINE__);
  loaded_free(&l);
  free(text);
}

int main(void)
{
  test_values();
  test_all_errors();
  test_overrides();
  test_caller_errors();
  test_hash_and_arguments();
  test_zero_ok();
  test_size_limit();
  test_shape_limits();
  return check_exit_code("test_keyfile");
}
