/* Status codes shared by every epsim module.
 * One X-macro table gives the enum and ep_status_str(), so names never drift. */
#ifndef EP_STATUS_H
#define EP_STATUS_H

#define EP_STATUS_TABLE(X)                                                                         \
  X(EP_OK, "ok")                                                                                   \
  X(EP_ERR_INVALID, "invalid argument")                                                            \
  X(EP_ERR_NOMEM, "out of memory")                                                                 \
  X(EP_ERR_IO, "input/output error")                                                               \
  X(EP_ERR_PARSE, "bad input")                                                                     \
  X(EP_ERR_BACKEND, "backend failure")                                                             \
  X(EP_ERR_UNSUPPORTED, "unsupported")

typedef enum {
#define EP__STATUS_ENUM(name, text) name,
  EP_STATUS_TABLE(EP__STATUS_ENUM)
#undef EP__STATUS_ENUM
} ep_status;

/* Returns a static, human-readable string; never NULL. */
const char *ep_status_str(ep_status status);

/* Prints "epsim: error: <message>\n" to stderr. Library code reports errors
 * this way (with the call, file and line where that helps) and returns a status. */
void ep_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
