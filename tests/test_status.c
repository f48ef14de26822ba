/* Tests for kernels/ep_status: names and texts from the table, EP_TRY's jump
 * to the cleanup label, and the log sink (captured messages, long messages
 * whole, NULL back to stderr). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ep_status.h"

typedef struct captured {
  int n_calls;
  char last[4096];
} captured;

static void capture(void *user, const char *message)
{
  captured *c = user;
  c->n_calls++;
  snprintf(c->last, sizeof c->last, "%s", message);
}

static void test_names(void)
{
  CHECK_EQ_INT(EP_OK, 0);
  CHECK_EQ_INT(EP_STATUS_COUNT, 7);
  CHECK(strcmp(ep_status_name(EP_OK), "EP_OK") == 0);
  CHECK(strcmp(ep_status_name(EP_ERR_NOMEM), "EP_ERR_NOMEM") == 0);
  CHECK(strcmp(ep_status_name(EP_ERR_UNSUPPORTED), "EP_ERR_UNSUPPORTED") == 0);
  CHECK(strcmp(ep_status_name((ep_status)EP_STATUS_COUNT), "EP_STATUS_UNKNOWN") == 0);
  CHECK(strcmp(ep_status_name((ep_status)-1), "EP_STATUS_UNKNOWN") == 0);
  CHECK(strcmp(ep_status_str(EP_OK), "ok") == 0);
  CHECK(strcmp(ep_status_str(EP_ERR_BACKEND), "backend failure") == 0);
  CHECK(strcmp(ep_status_str((ep_status)EP_STATUS_COUNT), "unknown status") == 0);
  /* Every code has its own name and text. */
  for (int a = 0; a < EP_STATUS_COUNT; a++) {
    CHECK(strncmp(ep_status_name((ep_status)a), "EP_", 3) == 0);
    for (int b = a + 1; b < EP_STATUS_COUNT; b++) {
      CHECK(strcmp(ep_status_name((ep_status)a), ep_status_name((ep_status)b)) != 0);
      CHECK(strcmp(ep_status_str((ep_status)a), ep_status_str((ep_status)b)) != 0);
    }
  }
}

static ep_status pass_through(ep_status first, ep_status second, int *cleaned)
{
  ep_status st = EP_OK;
  EP_TRY(first);
  EP_TRY(second);
fail:
  (*cleaned)++;
  return st;
}

static void test_try(void)
{
  int cleaned = 0;
  CHECK_EQ_INT(pass_through(EP_OK, EP_OK, &cleaned), EP_OK);
  CHECK_EQ_INT(pass_through(EP_ERR_NOMEM, EP_OK, &cleaned), EP_ERR_NOMEM);
  CHECK_EQ_INT(pass_through(EP_OK, EP_ERR_IO, &cleaned), EP_ERR_IO);
  CHECK_EQ_INT(cleaned, 3);
}

/* Runs ep_log_error(msg) with stderr redirected to a temporary file; returns
 * what it wrote there (malloc'd) or NULL. */
static char *stderr_of_log(const char *msg)
{
  FILE *tmp = tmpfile();
  if (!tmp)
    return NULL;
  fflush(stderr);
  int saved = dup(fileno(stderr));
  if (saved < 0 || dup2(fileno(tmp), fileno(stderr)) < 0) {
    fclose(tmp);
    return NULL;
  }
  ep_log_error("%s", msg);
  fflush(stderr);
  dup2(saved, fileno(stderr));
  close(saved);
  char *out = calloc(1, 256);
  if (out) {
    rewind(tmp);
    size_t n = fread(out, 1, 255, tmp);
    out[n] = '\0';
  }
  fclose(tmp);
  return out;
}

static void test_sink(void)
{
  captured c = {0};
  ep_log_set_sink(capture, &c);
  ep_log_error("rank %d: %s failed", 3, "cudaMalloc");
  CHECK_EQ_INT(c.n_calls, 1);
  CHECK(strcmp(c.last, "rank 3: cudaMalloc failed") == 0);

  /* A message longer than the logger's stack buffer arrives whole. */
  char long_msg[3000];
  memset(long_msg, 'x', sizeof long_msg - 2);
  long_msg[sizeof long_msg - 2] = 'y';
  long_msg[sizeof long_msg - 1] = '\0';
  ep_log_error("%s", long_msg);
  CHECK_EQ_INT(c.n_calls, 2);
  CHECK_EQ_INT(strlen(c.last), strlen(long_msg));
  CHECK(strcmp(c.last, long_msg) == 0);

  /* NULL restores stderr: the sink sees nothing more. */
  ep_log_set_sink(NULL, &c);
  char *err = stderr_of_log("back on stderr");
  CHECK_EQ_INT(c.n_calls, 2);
  CHECK(err && strcmp(err, "epsim: error: back on stderr\n") == 0);
  free(err);
}

int main(void)
{
  test_names();
  test_try();
  test_sink();
  return check_exit_code("status");
}
