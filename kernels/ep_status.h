/* Status codes shared by every epsim module, and the error log.
 * One X-macro table gives the enum, ep_status_name() and ep_status_str(), so
 * names never drift. Library code logs a failure once, where it happens, and
 * returns a status; EP_TRY propagates it to the caller's cleanup label. */
#ifndef EP_STATUS_H
#define EP_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

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

/* Number of codes (they run 0 .. EP_STATUS_COUNT - 1); not itself a status. */
enum {
#define EP__STATUS_ONE(name, text) +1
  EP_STATUS_COUNT = 0 EP_STATUS_TABLE(EP__STATUS_ONE)
#undef EP__STATUS_ONE
};

/* The enumerator's name ("EP_OK", "EP_ERR_NOMEM"); "EP_STATUS_UNKNOWN" for a
 * value outside the table. Static, never NULL. */
const char *ep_status_name(ep_status status);

/* Human-readable text ("ok", "out of memory"); "unknown status" outside the
 * table. Static, never NULL. */
const char *ep_status_str(ep_status status);

/* Propagates a failed status-returning call (ep_*, which logged it already):
 * st = (call); on anything but EP_OK, goto fail. The caller declares
 * `ep_status st` and a `fail:` label that cleans up. */
#define EP_TRY(call)                                                                               \
  do {                                                                                             \
    st = (call);                                                                                   \
    if (st != EP_OK)                                                                               \
      goto fail;                                                                                   \
  } while (0)

/* Where ep_log_error's messages go: message is one formatted line without a
 * prefix or newline, valid only during the call; user is the pointer given to
 * ep_log_set_sink. */
typedef void (*ep_log_sink)(void *user, const char *message);

/* Routes every later ep_log_error to sink(user, message); sink NULL restores
 * the default, "epsim: error: <message>\n" on stderr. Process-wide and not
 * thread-safe: set it before starting threads. */
void ep_log_set_sink(ep_log_sink sink, void *user);

/* Formats one error message and hands it to the sink. Library code reports
 * errors this way (with the call, file and line where that helps) and returns
 * a status. */
void ep_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif

#endif
