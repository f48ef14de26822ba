/* Link class names and the stage matrices' allocation. */
#include "ep_stage.h"

#include <stdlib.h>
#include <string.h>

const char *ep_link_class_name(ep_link_class link)
{
  static const char *const names[EP_LINK_COUNT] = {
      [EP_LINK_ROUTE] = "route", [EP_LINK_NVLINK] = "nvlink", [EP_LINK_NIC] = "nic"};
  return (int)link >= 0 && link < EP_LINK_COUNT ? names[link] : "unknown";
}

ep_status ep_stage_init(ep_stage *stage, ep_link_class link, int32_t n_ranks)
{
  memset(stage, 0, sizeof *stage);
  const size_t n = (size_t)(n_ranks > 0 ? n_ranks : 0), n_rr = n * n;
  stage->bytes_src_dst = calloc(n_rr ? n_rr : 1, sizeof(int64_t));
  stage->messages_src_dst = calloc(n_rr ? n_rr : 1, sizeof(int64_t));
  if (!stage->bytes_src_dst || !stage->messages_src_dst) {
    ep_log_error("ep_stage_init: out of memory for %d x %d ranks", (int)n_ranks, (int)n_ranks);
    ep_stage_free(stage);
    return EP_ERR_NOMEM;
  }
  stage->link = link;
  stage->owns_bytes = 1;
  stage->owns_messages = 1;
  return EP_OK;
}

void ep_stage_free(ep_stage *stage)
{
  if (!stage)
    return;
  if (stage->owns_bytes)
    free(stage->bytes_src_dst);
  if (stage->owns_messages)
    free(stage->messages_src_dst);
  memset(stage, 0, sizeof *stage);
}
