/* Traffic stages: one step of a direction's traffic, on one link class, as a
 * per (src, dst) byte and message matrix. A dispatch algorithm (ep_dispatch.h)
 * builds a plan's stages; the simulator turns them into flows, the real
 * backend runs them through its transport. */
#ifndef EP_STAGE_H
#define EP_STAGE_H

#include <stdint.h>

#include "ep_status.h"

#define EP_MAX_STAGES 4 /* stages per direction (DeepEP normal: RDMA, then NVLink) */

/* Which links a stage's traffic takes. */
typedef enum {
  EP_LINK_ROUTE,  /* the fabric's GPU-to-GPU route: NVLink inside a node, the NIC across */
  EP_LINK_NVLINK, /* NVLink only (hierarchical algorithms: forwarding inside a node) */
  EP_LINK_NIC,    /* the NIC only (hierarchical algorithms: between nodes) */
  EP_LINK_COUNT
} ep_link_class;

/* "route", "nvlink", "nic"; "unknown" outside the enum. Static, never NULL. */
const char *ep_link_class_name(ep_link_class link);

typedef struct ep_stage {
  ep_link_class link;
  int64_t *bytes_src_dst;    /* [n_ranks * n_ranks] int64, row = sending rank: bytes */
  int64_t *messages_src_dst; /* [n_ranks * n_ranks] int64, row = sending rank: messages */
  /* Whether ep_stage_free frees each matrix: a stage may borrow one the plan
   * already holds (n_ranks^2 int64 is 128 MiB at 4096 ranks). */
  uint8_t owns_bytes, owns_messages;
} ep_stage;

/* A stage on link with zeroed [n_ranks * n_ranks] matrices, owned by *stage.
 * EP_ERR_NOMEM (logged) leaves it empty. Free with ep_stage_free (NULL-safe;
 * leaves it zeroed, so freeing twice is fine); it frees only what the stage owns. */
ep_status ep_stage_init(ep_stage *stage, ep_link_class link, int32_t n_ranks);
void ep_stage_free(ep_stage *stage);

#endif
