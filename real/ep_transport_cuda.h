/* What the two GPU transports (ep_transport_nccl.c, ep_transport_ipc.c) share:
 * the compute's stream, a clock of CUDA events recorded on it, and the device
 * send buffers they own. Internal to real/; needs the CUDA runtime.
 * Each transport's context starts with an ep__cuda_transport, so these
 * functions serve as its table's ops. */
#ifndef EP_TRANSPORT_CUDA_H
#define EP_TRANSPORT_CUDA_H

#include <cuda_runtime.h>

#include "ep_transport.h"

/* Send buffers one transport owns: the layer allocates four. */
#define EP__CUDA_TRANSPORT_BUFS 8

typedef struct ep__cuda_transport {
  ep__transport_base mpi; /* first: ep__transport_barrier takes this context */
  cudaStream_t stream;
  cudaEvent_t *marks;                  /* [n_marks], NULL until made */
  void *bufs[EP__CUDA_TRANSPORT_BUFS]; /* cudaMalloc'd send buffers */
  int32_t n_bufs;
} ep__cuda_transport;

/* A zeroed context of ctx_bytes that starts with an ep__cuda_transport, set
 * from cfg (which must name a stream), its events made. *out is freed by
 * ep__cuda_transport_free, also after a failure. */
ep_status ep__cuda_transport_new(size_t ctx_bytes, const ep_transport_cfg *cfg, void **out);

/* Waits for the stream before a free (a failure is logged). */
void ep__cuda_transport_drain(const ep__cuda_transport *t);

/* NULL-safe. Destroys the events, frees the send buffers and ctx itself; the
 * stream must have no work left that uses them. */
void ep__cuda_transport_free(void *ctx);

/* The ops: ctx is a context that starts with an ep__cuda_transport. */
ep_status ep__cuda_transport_alloc(void *ctx, int64_t bytes, void **out);
ep_status ep__cuda_transport_mark(void *ctx, int32_t mark);
ep_status ep__cuda_transport_elapsed_us(void *ctx, int32_t mark, double *us);

#endif
