/* ep_status_str() and the error logger. */
#include "ep_status.h"

#include <stdarg.h>
#include <stdio.h>

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

void ep_log_error(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("epsim: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}
