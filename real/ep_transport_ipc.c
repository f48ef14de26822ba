/* CUDA IPC transport: every rank maps its peers' send buffers (cudaIpc*MemHandle,
 * one node, ranks may share a GPU, which NCCL refuses) and copies its blocks
 * straight out of them. Its times include MPI synchronisation: for testing,
 * not a fabric's. Clock, barrier and send buffers: ep_transport_cuda.h. */
#include "ep_transport_cuda.h"

#include <stdlib.h>

#include "ep_cuda_check.h"
#include "ep_real_mpi.h"

typedef struct ipc_transport {
  ep__cuda_transport gpu;               /* first: the shared ops take this context */
  void **peer[EP__CUDA_TRANSPORT_BUFS]; /* [n_ranks] gpu.bufs[i] of every rank, mapped here */
  cudaIpcMemHandle_t *handles;          /* [n_ranks] gathered handles of one buffer */
  int64_t *xchg;                        /* [4 * n_ranks] (displacement, count) pairs out, in */
} ipc_transport;

static void ipc_free(void *ctx, int failed)
{
  ipc_transport *t = ctx;
  if (!t)
    return;
  ep__cuda_transport_drain(&t->gpu); /* no copy out of a peer's buffer may still be queued */
  int mapped = 0;
  for (int32_t i = 0; i < EP__CUDA_TRANSPORT_BUFS; i++) {
    for (int32_t p = 0; t->peer[i] && p < t->gpu.mpi.n_ranks; p++) {
      if (p == t->gpu.mpi.rank || !t->peer[i][p])
        continue;
      mapped = 1;
      const cudaError_t err = cudaIpcCloseMemHandle(t->peer[i][p]);
      if (err != cudaSuccess)
        ep_log_error("rank %d: cudaIpcCloseMemHandle of rank %d's buffer failed: %s",
                     (int)t->gpu.mpi.rank, (int)p, cudaGetErrorString(err));
    }
    free(t->peer[i]);
  }
  /* No rank frees a buffer that a peer still maps (after a failure the job is aborted). */
  if (mapped && !failed && MPI_Barrier(t->gpu.mpi.comm) != MPI_SUCCESS)
    ep_log_error("rank %d: MPI_Barrier before freeing the exported buffers failed",
                 (int)t->gpu.mpi.rank);
  free(t->handles);
  free(t->xchg);
  ep__cuda_transport_free(t);
}

static ep_status ipc_init(void **out, const ep_transport_cfg *cfg)
{
  ep_status st = ep__cuda_transport_new(sizeof(ipc_transport), cfg, out);
  ipc_transport *t = *out;
  if (st != EP_OK)
    goto fail;
  t->handles = calloc((size_t)cfg->n_ranks, sizeof *t->handles);
  t->xchg = malloc(4 * (size_t)cfg->n_ranks * sizeof(int64_t));
  if (!t->handles || !t->xchg) {
    ep_log_error("rank %d: out of memory for the cuda-ipc handles", (int)cfg->rank);
    st = EP_ERR_NOMEM;
    goto fail;
  }
  return EP_OK;
fail:
  ipc_free(t, 1);
  *out = NULL;
  return st;
}

/* A device send buffer, exported to every peer and every peer's mapped here. */
static ep_status ipc_alloc(void *ctx, int64_t bytes, void **out)
{
  ipc_transport *t = ctx;
  ep_status st = EP_OK;
  const int32_t n = t->gpu.mpi.n_ranks, r = t->gpu.mpi.rank, i = t->gpu.n_bufs;
  EP_TRY(ep__cuda_transport_alloc(ctx, bytes, out));
  if (!(t->peer[i] = calloc((size_t)n, sizeof(void *)))) {
    ep_log_error("rank %d: out of memory for the cuda-ipc handles", (int)r);
    return EP_ERR_NOMEM;
  }
  cudaIpcMemHandle_t mine;
  EP_CUDA_TRY(cudaIpcGetMemHandle(&mine, *out));
  EP_MPI_TRY(r, MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, t->handles, (int)sizeof mine,
                              MPI_BYTE, t->gpu.mpi.comm));
  for (int32_t p = 0; p < n; p++) {
    if (p == r) {
      t->peer[i][p] = *out; /* a process cannot open its own handle */
      continue;
    }
    const cudaError_t err =
        cudaIpcOpenMemHandle(&t->peer[i][p], t->handles[p], cudaIpcMemLazyEnablePeerAccess);
    if (err != cudaSuccess) {
      /* E.g. a peer on another GPU without P2P, or a sandbox without CUDA IPC. */
      ep_log_error("rank %d: cudaIpcOpenMemHandle of rank %d's send buffer %d failed: %s", (int)r,
                   (int)p, (int)i, cudaGetErrorString(err));
      t->peer[i][p] = NULL; /* nothing to close */
      return EP_ERR_BACKEND;
    }
  }
  return EP_OK;
fail:
  return st;
}

/* The MPI_Alltoall of (displacement, count) pairs starts no copy before every
 * peer's send buffer is complete (each enters it after syncing its stream);
 * the closing barrier keeps every rank from writing its send buffer again
 * before all peers have read it. */
static ep_status ipc_alltoallv(void *ctx, const ep_transport_layout *layout, int32_t n_parts,
                               const ep_transport_rows *parts)
{
  ipc_transport *t = ctx;
  ep_status st = EP_OK;
  const int32_t n = t->gpu.mpi.n_ranks, r = t->gpu.mpi.rank;
  const int64_t *rc = layout->recv_counts, *rd = layout->recv_displs;
  int32_t buf[EP__CUDA_TRANSPORT_BUFS]; /* each part's send buffer among the exported ones */
  for (int32_t p = 0; p < n_parts; p++) {
    if (p == EP__CUDA_TRANSPORT_BUFS)
      return EP_ERR_INVALID;
    for (buf[p] = 0; buf[p] < t->gpu.n_bufs && t->gpu.bufs[buf[p]] != parts[p].send; buf[p]++)
      ;
    if (buf[p] == t->gpu.n_bufs) {
      ep_log_error("rank %d: cuda-ipc: the send buffer is not one of the exported ones", (int)r);
      return EP_ERR_INVALID;
    }
  }
  int64_t *out = t->xchg, *in = t->xchg + 2 * (size_t)n;
  for (int32_t d = 0; d < n; d++) {
    out[2 * d] = layout->send_displs[d];
    out[2 * d + 1] = layout->send_counts[d];
  }
  EP_CUDA_TRY(cudaStreamSynchronize(t->gpu.stream));
  EP_MPI_TRY(r, MPI_Alltoall(out, 2, MPI_INT64_T, in, 2, MPI_INT64_T, t->gpu.mpi.comm));
  for (int32_t s = 0; s < n; s++) {
    if (in[2 * s + 1] != rc[s]) {
      ep_log_error("rank %d: cuda-ipc: rank %d sends %lld rows, %lld expected", (int)r, (int)s,
                   (long long)in[2 * s + 1], (long long)rc[s]);
      return EP_ERR_BACKEND;
    }
    for (int32_t p = 0; p < n_parts && rc[s] > 0; p++) {
      const size_t row = (size_t)parts[p].row_bytes;
      const cudaError_t err =
          cudaMemcpyAsync((char *)parts[p].recv + (size_t)rd[s] * row,
                          (const char *)t->peer[buf[p]][s] + (size_t)in[2 * s] * row,
                          (size_t)rc[s] * row, cudaMemcpyDeviceToDevice, t->gpu.stream);
      if (err != cudaSuccess) {
        ep_log_error("rank %d: cuda-ipc: cudaMemcpyAsync of %lld rows from rank %d failed: %s",
                     (int)r, (long long)rc[s], (int)s, cudaGetErrorString(err));
        return EP_ERR_BACKEND;
      }
    }
  }
  EP_CUDA_TRY(cudaStreamSynchronize(t->gpu.stream));
  EP_MPI_TRY(r, MPI_Barrier(t->gpu.mpi.comm));
  return EP_OK;
fail:
  return st;
}

/* In ep_transport_ops order. */
const ep_transport_ops ep_transport_ipc = {"cuda-ipc",
                                           ipc_init,
                                           ipc_alloc,
                                           ipc_alltoallv,
                                           ep__transport_barrier,
                                           ep__cuda_transport_mark,
                                           ep__cuda_transport_elapsed_us,
                                           NULL,
                                           ipc_free};
