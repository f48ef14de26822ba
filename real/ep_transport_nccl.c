/* NCCL transport: one GPU per rank, rows moved by grouped ncclSend/ncclRecv on
 * the compute's stream; the communicator is bootstrapped over MPI (rank 0's
 * unique id by MPI_Bcast). Clock, barrier and send buffers: ep_transport_cuda.h. */
#include <nccl.h>

#include "ep_transport_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_cuda_check.h"
#include "ep_real_mpi.h"

typedef struct nccl_transport {
  ep__cuda_transport gpu; /* first: the shared ops take this context */
  ncclComm_t comm;
  int comm_made;
} nccl_transport;

static void nccl_free(void *ctx, int failed)
{
  nccl_transport *t = ctx;
  if (!t)
    return;
  /* After a failure, peers may never post the sends and receives our NCCL
   * kernels wait for: abort them first, or the stream would never drain. A
   * communicator in good health is destroyed once its work is done. */
  ncclResult_t res = ncclSuccess;
  if (t->comm_made && failed && (res = ncclCommAbort(t->comm)) != ncclSuccess)
    ep_log_error("rank %d: ncclCommAbort failed: %s", (int)t->gpu.mpi.rank,
                 ncclGetErrorString(res));
  ep__cuda_transport_drain(&t->gpu);
  if (t->comm_made && !failed && (res = ncclCommDestroy(t->comm)) != ncclSuccess)
    ep_log_error("rank %d: ncclCommDestroy failed: %s", (int)t->gpu.mpi.rank,
                 ncclGetErrorString(res));
  ep__cuda_transport_free(t);
}

/* Rank 0's unique id to every rank over MPI, then the clock and the
 * communicator. */
static ep_status nccl_init(void **out, const ep_transport_cfg *cfg)
{
  ep_status st = EP_OK;
  nccl_transport *t = NULL;
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  *out = NULL;
  if (cfg->rank == 0)
    EP_NCCL_TRY(ncclGetUniqueId(&id));
  EP_MPI_TRY(cfg->rank, MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, cfg->comm));
  st = ep__cuda_transport_new(sizeof *t, cfg, (void **)&t);
  if (st != EP_OK)
    goto fail;
  EP_NCCL_TRY(ncclCommInitRank(&t->comm, cfg->n_ranks, id, cfg->rank));
  t->comm_made = 1;
  *out = t;
  return EP_OK;
fail:
  nccl_free(t, 1);
  return st;
}

/* Every part's block to and from each peer, as bytes, in one group: the
 * peers post theirs in the same order, which pairs the sends with the receives. */
static ep_status nccl_alltoallv(void *ctx, const ep_transport_layout *layout, int32_t n_parts,
                                const ep_transport_rows *parts)
{
  nccl_transport *t = ctx;
  ep_status st = EP_OK;
  const int32_t r = t->gpu.mpi.rank;
  const int64_t *sc = layout->send_counts, *sd = layout->send_displs;
  const int64_t *rc = layout->recv_counts, *rd = layout->recv_displs;
  ncclResult_t res = ncclSuccess;
  EP_NCCL_TRY(ncclGroupStart());
  for (int32_t peer = 0; peer < t->gpu.mpi.n_ranks && res == ncclSuccess; peer++) {
    for (int32_t p = 0; p < n_parts && res == ncclSuccess; p++) {
      const size_t row = (size_t)parts[p].row_bytes;
      if (sc[peer] > 0 && (res = ncclSend((const char *)parts[p].send + (size_t)sd[peer] * row,
                                          (size_t)sc[peer] * row, ncclUint8, peer, t->comm,
                                          t->gpu.stream)) != ncclSuccess)
        ep_log_error("rank %d: ncclSend of %lld rows to rank %d failed: %s", (int)r,
                     (long long)sc[peer], (int)peer, ncclGetErrorString(res));
      if (res == ncclSuccess && rc[peer] > 0 &&
          (res = ncclRecv((char *)parts[p].recv + (size_t)rd[peer] * row, (size_t)rc[peer] * row,
                          ncclUint8, peer, t->comm, t->gpu.stream)) != ncclSuccess)
        ep_log_error("rank %d: ncclRecv of %lld rows from rank %d failed: %s", (int)r,
                     (long long)rc[peer], (int)peer, ncclGetErrorString(res));
    }
  }
  if (res != ncclSuccess) {
    ncclGroupEnd();
    return EP_ERR_BACKEND;
  }
  EP_NCCL_TRY(ncclGroupEnd());
  return EP_OK;
fail:
  return st;
}

/* NCCL >= 2.9 codes its version as major * 10000 + minor * 100 + patch. */
static ep_status nccl_version(char *buf, int buf_len)
{
  int v = 0;
  const ncclResult_t res = ncclGetVersion(&v);
  if (res != ncclSuccess) {
    ep_log_error("ncclGetVersion failed: %s", ncclGetErrorString(res));
    return EP_ERR_BACKEND;
  }
  snprintf(buf, (size_t)buf_len, "NCCL %d.%d.%d", v / 10000, v % 10000 / 100, v % 100);
  return EP_OK;
}

/* In ep_transport_ops order. */
const ep_transport_ops ep_transport_nccl = {"nccl",
                                            nccl_init,
                                            ep__cuda_transport_alloc,
                                            nccl_alltoallv,
                                            ep__transport_barrier,
                                            ep__cuda_transport_mark,
                                            ep__cuda_transport_elapsed_us,
                                            nccl_version,
                                            nccl_free};
