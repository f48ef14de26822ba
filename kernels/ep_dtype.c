/* The dtype table: names and element bytes from the X-macro lists in the header. */
#include "ep_dtype.h"

#include <stddef.h>
#include <string.h>

typedef struct dtype_row {
  const char *name;
  int32_t element_bytes;
} dtype_row;

static const dtype_row dtype_rows[EP_DTYPE_COUNT] = {
#define EP__DTYPE_ROW(name, text, bytes) [name] = {text, bytes},
    EP_DTYPE_PAYLOAD_TABLE(EP__DTYPE_ROW) EP_DTYPE_KERNEL_TABLE(EP__DTYPE_ROW)
#undef EP__DTYPE_ROW
};

const char *const ep_dtype_payload_names[EP_DTYPE_PAYLOAD_COUNT + 1] = {
#define EP__DTYPE_NAME(name, text, bytes) [name] = text,
    EP_DTYPE_PAYLOAD_TABLE(EP__DTYPE_NAME)
#undef EP__DTYPE_NAME
        [EP_DTYPE_PAYLOAD_COUNT] = NULL,
};

static int in_table(ep_dtype dtype)
{
  return (int)dtype >= 0 && (int)dtype < EP_DTYPE_COUNT;
}

int32_t ep_dtype_element_bytes(ep_dtype dtype)
{
  return in_table(dtype) ? dtype_rows[dtype].element_bytes : 0;
}

int64_t ep_dtype_bytes_per_token(ep_dtype dtype, int32_t hidden)
{
  if (hidden <= 0 || !in_table(dtype))
    return -1;
  const int64_t values = (int64_t)hidden * dtype_rows[dtype].element_bytes;
  if (dtype != EP_DTYPE_FP8)
    return values;
  if (hidden % EP_FP8_BLOCK != 0)
    return -1;
  return values + (int64_t)(hidden / EP_FP8_BLOCK) * (int64_t)sizeof(float);
}

const char *ep_dtype_name(ep_dtype dtype)
{
  return in_table(dtype) ? dtype_rows[dtype].name : "unknown";
}

ep_status ep_dtype_from_name(const char *name, ep_dtype *out)
{
  if (!name)
    return EP_ERR_INVALID;
  for (int d = 0; d < EP_DTYPE_COUNT; d++) {
    if (strcmp(dtype_rows[d].name, name) == 0) {
      *out = (ep_dtype)d;
      return EP_OK;
    }
  }
  return EP_ERR_INVALID;
}
