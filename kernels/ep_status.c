/* Status names and texts from the X-macro table, and the error log with its
 * settable sink. */
#include "ep_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Messages up to this long are formatted on the stack; longer ones on the heap. */
#define EP__LOG_STACK_BYTES 1024

static ep_log_sink log_sink;
static void *log_user;

const char *ep_status_name(ep_status status)
{
  switch (status) {
#define EP__STATUS_CASE(name, text)                                                                \
  case name:                                                                                       \
    return #name;
    EP_STATUS_TABLE(EP__STATUS_CASE)
#undef EP__STATUS_CASE
  }
  return "EP_STATUS_UNKNOWN";
}

const char *ep_status_str(ep_status status)
{
  switch (status) {
#define EP__STATUS_CASE(name, text)                                                                \
  case name:                                                                                       \
    return text;
    EP_STATUS_TABLE(EP__STATUS_CASE)
#undef EP__STATUS_CASE
  }
  return "unknown status";
}

void ep_log_set_sink(ep_log_sink sink, void *user)
{
  log_sink = sink;
  log_user = sink ? user : NULL;
}

void ep_log_error(const char *fmt, ...)
{
  char stack[EP__LOG_STACK_BYTES];
  char *msg = stack;
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(stack, sizeof stack, fmt, ap);
  va_end(ap);
  if (n < 0) {
    stack[0] = '\0';
  } else if ((size_t)n >= sizeof stack) {
    /* Too long for the stack: format again on the heap, or keep the truncated text. */
    char *heap = malloc((size_t)n + 1);
    if (heap) {
      vsnprintf(heap, (size_t)n + 1, fmt, ap2);
      msg = heap;
    }
  }
  va_end(ap2);
  if (log_sink)
    log_sink(log_user, msg);
  else
    fprintf(stderr, "epsim: error: %s\n", msg);
  if (msg != stack)
    free(msg);
}
