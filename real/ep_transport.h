/* The transport table of the real backend's layer program (ep_layer.h): how
 * rows move between the ranks, a barrier and a clock. No layer logic lives in
 * a transport: each op is the few API calls that do one thing, so the layer
 * program is written once over MPI (host memory), NCCL and CUDA IPC (device
 * memory). Every op logs its failures (call, rank, file:line) and returns a status.
 * Implementations: ep_transport_mpi.c, ep_transport_nccl.c, ep_transport_ipc.c. */
#ifndef EP_TRANSPORT_H
#define EP_TRANSPORT_H

#include <mpi.h>
#include <stdint.h>

#include "ep_status.h"

/* What a transport is set up with. */
typedef struct ep_transport_cfg {
  MPI_Comm comm; /* n_ranks ranks; this process is rank */
  int32_t rank;
  int32_t n_ranks;
  void *stream;    /* the compute's cudaStream_t (GPU transports), else NULL */
  int32_t n_marks; /* clock marks, mark 0 being the clock's zero */
} ep_transport_cfg;

/* Who sends what in one all-to-all, in rows: block d of send_counts[d] rows
 * at row send_displs[d] goes to rank d; block s of recv_counts[s] rows from
 * rank s lands at row recv_displs[s]. Each [n_ranks], host memory (an
 * ep_exchange_layout's arrays). */
typedef struct ep_transport_layout {
  const int64_t *send_counts;
  const int64_t *send_displs;
  const int64_t *recv_counts;
  const int64_t *recv_displs;
} ep_transport_layout;

/* One array of rows in an all-to-all. */
typedef struct ep_transport_rows {
  const void *send; /* [in] [n_send_rows * row_bytes], from the transport's alloc */
  void *recv;       /* [out] [n_recv_rows * row_bytes], the compute's memory */
  int64_t row_bytes;
} ep_transport_rows;

typedef struct ep_transport_ops {
  const char *name;
  /* Sets up *out from cfg. Collective over cfg->comm. */
  ep_status (*init)(void **out, const ep_transport_cfg *cfg);
  /* A send buffer of bytes that alltoallv may send from, in the compute's
   * memory, owned by the transport until free. Collective: every rank
   * allocates the same sequence of buffers (CUDA IPC maps them on every peer). */
  ep_status (*alloc)(void *ctx, int64_t bytes, void **out);
  /* All-to-all of n_parts arrays of rows that share one layout. The
   * compute's queued work that wrote the send rows is ordered before the
   * transfer; the received rows are ready for the compute's next op. */
  ep_status (*alltoallv)(void *ctx, const ep_transport_layout *layout, int32_t n_parts,
                         const ep_transport_rows *parts);
  ep_status (*barrier)(void *ctx); /* all ranks, host side */
  /* The clock: mark records "now" in mark (0 <= mark < n_marks) in order with
   * the queued work; elapsed_us waits for mark and gives µs since mark 0. */
  ep_status (*mark)(void *ctx, int32_t mark);
  ep_status (*elapsed_us)(void *ctx, int32_t mark, double *us);
  /* "NCCL 2.21.5" style into buf, or NULL when there is nothing to say. */
  ep_status (*version)(char *buf, int buf_len);
  /* NULL-safe. failed != 0 after any failure on this rank: peers may never
   * complete a transfer, so nothing waits for them (NCCL aborts its
   * communicator, CUDA IPC skips its closing barrier). Frees alloc's buffers. */
  void (*free)(void *ctx, int failed);
} ep_transport_ops;

/* Implementations' shared part (every transport is bootstrapped over MPI): a
 * context starts with an ep__transport_base, set from the cfg. */
typedef struct ep__transport_base {
  MPI_Comm comm;
  int32_t rank, n_ranks, n_marks;
} ep__transport_base;

void ep__transport_base_init(ep__transport_base *base, const ep_transport_cfg *cfg);
ep_status ep__transport_barrier(void *ctx); /* MPI_Barrier over base->comm */

extern const ep_transport_ops ep_transport_mpi;  /* MPI_Alltoallv, host memory, MPI_Wtime */
extern const ep_transport_ops ep_transport_nccl; /* grouped ncclSend/ncclRecv, CUDA events */
extern const ep_transport_ops ep_transport_ipc;  /* CUDA IPC copies, one node, CUDA events */

#endif
