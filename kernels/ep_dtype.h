/* The one element-type enum of epsim: dispatch and combine payloads, the
 * GroupGEMM dtype, kernel inputs. Element bytes, the bytes of one token's
 * hidden row (what dispatch_bytes_per_token and the real backend's rows are),
 * names and lookup by name. Payload dtypes (what a scenario may name for
 * dispatch and combine) come first; kernel-only ones follow. */
#ifndef EP_DTYPE_H
#define EP_DTYPE_H

#include <stdint.h>

#include "ep_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(enumerator, name, element bytes) */
#define EP_DTYPE_PAYLOAD_TABLE(X)                                                                  \
  X(EP_DTYPE_BF16, "bf16", 2)                                                                      \
  X(EP_DTYPE_FP8, "fp8", 1) /* e4m3; a row adds one fp32 scale per EP_FP8_BLOCK elements */
#define EP_DTYPE_KERNEL_TABLE(X) X(EP_DTYPE_F32, "f32", 4) /* router input, not a payload */

typedef enum {
#define EP__DTYPE_ENUM(name, text, bytes) name,
  EP_DTYPE_PAYLOAD_TABLE(EP__DTYPE_ENUM) EP_DTYPE_KERNEL_TABLE(EP__DTYPE_ENUM)
#undef EP__DTYPE_ENUM
} ep_dtype;

/* Number of dtypes, and of payload dtypes (values 0 .. EP_DTYPE_PAYLOAD_COUNT - 1). */
enum {
#define EP__DTYPE_ONE(name, text, bytes) +1
  EP_DTYPE_PAYLOAD_COUNT = 0 EP_DTYPE_PAYLOAD_TABLE(EP__DTYPE_ONE),
  EP_DTYPE_COUNT = EP_DTYPE_PAYLOAD_COUNT EP_DTYPE_KERNEL_TABLE(EP__DTYPE_ONE)
#undef EP__DTYPE_ONE
};

#define EP_FP8_BLOCK 128 /* elements sharing one fp32 scale in an fp8 row (DeepEP, DeepGEMM) */

/* Bytes of one element: 2, 1, 4; 0 outside the table. */
int32_t ep_dtype_element_bytes(ep_dtype dtype);

/* Bytes of one token's hidden row: bf16 2 * hidden; fp8 hidden plus one fp32
 * scale per EP_FP8_BLOCK elements (7392 B at hidden 7168, as DeepEP), so fp8
 * needs hidden a multiple of EP_FP8_BLOCK; f32 4 * hidden. -1 for hidden <= 0,
 * an fp8 hidden that is not a multiple of the block, or a dtype outside the table. */
int64_t ep_dtype_bytes_per_token(ep_dtype dtype, int32_t hidden);

/* "bf16", "fp8", "f32"; "unknown" outside the table. Static, never NULL. */
const char *ep_dtype_name(ep_dtype dtype);

/* *out = the dtype named name (exact, case-sensitive). EP_ERR_INVALID, *out
 * untouched, for NULL or an unknown name. */
ep_status ep_dtype_from_name(const char *name, ep_dtype *out);

/* The payload dtypes' names, index = ep_dtype, NULL-terminated: the valid
 * values of a scenario's dispatch_dtype and combine_dtype. */
extern const char *const ep_dtype_payload_names[EP_DTYPE_PAYLOAD_COUNT + 1];

#ifdef __cplusplus
}
#endif

#endif
