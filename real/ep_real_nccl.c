/* NCCL backend: one GPU per MPI rank. The send/recv lists of every all-to-all
 * are the ep_exchange layout the CPU backend uses; only the transport (grouped
 * ncclSend/ncclRecv on one stream) and the kernels (ep_moe_cuda.h) differ.
 * The cuda-ipc variant moves the same rows with CUDA IPC copies instead, so
 * that several ranks can share one GPU, which NCCL refuses.
 * Every failure names the call (CUDA and NCCL calls with function and file:line,
 * through ep_cuda_check.h; the others with the rank) and jumps to the cleanup label. */
#include <cuda_runtime.h>
#include <nccl.h>

#include "ep_real_nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_cuda_check.h"
#include "ep_moe_cuda.h"
#include "ep_real_mpi.h"

#define EP_REP_TRY(rank, what, call)                                                               \
  do {                                                                                             \
    st = (call);                                                                                   \
    if (st != EP_OK) {                                                                             \
      ep_log_error("rank %d: %s failed: %s", (int)(rank), what, ep_status_str(st));                \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

/* The send buffers a cuda-ipc rank exports: counts, bf16 rows, fp8 rows, fp8
 * scales, combine rows. */
#define EP__IPC_BUFS 5

struct ep_nccl_backend {
  ep_real_rank *rk;
  MPI_Comm comm;
  int32_t rank, device;
  ncclComm_t nccl;
  int nccl_made;
  int ipc;                       /* rows move by CUDA IPC copies, not NCCL */
  void *ipc_local[EP__IPC_BUFS]; /* this rank's exported send buffers (NULL: unused) */
  void **ipc_peer[EP__IPC_BUFS]; /* [n_ranks] every rank's same buffer, mapped here */
  int64_t *ipc_xchg;             /* [4 * n_ranks] (displacement, count) pairs out, then in */
  int failed; /* a call failed: abort the communicator instead of destroying it */
  cudaStream_t stream;
  ep_moe_cuda *moe;
  cudaEvent_t ev_zero, ev_start[EP_PHASE_COUNT], ev_end[EP_PHASE_COUNT]; /* NULL until made */
  int32_t hidden, inter, epr, n_shared;
  int64_t tpr, n_send, n_recv;

  ep_bf16 *d_x, *d_w13, *d_w2, *d_w13_sh, *d_w2_sh;
  ep_bf16 *d_send, *d_recv;     /* bf16 wire rows */
  ep_fp8 *d_send_q, *d_recv_q;  /* fp8 wire rows */
  float *d_send_sc, *d_recv_sc; /* fp8 block scales */
  ep_bf16 *d_xe, *d_ye, *d_comb_send, *d_comb_recv, *d_routed, *d_shared_tmp;
  float *d_shared_acc, *d_out, *d_weights;
  int32_t *d_copy_send_slot, *d_recv_expert_slot, *d_expert_recv_slot;
  int64_t *d_send_counts, *d_recv_counts; /* [n_ranks * epr] counts exchange */
  int64_t *h_recv_counts;
  int64_t *unit_counts; /* [2 * n_ranks]: 1 row to each peer, at row = peer */
};

void ep_nccl_backend_free(void *ctx)
{
  ep_nccl_backend *b = ctx;
  if (!b)
    return;
  /* After a failure, peers may never post the sends and receives our NCCL
   * kernels wait for: abort them first, or the stream would never drain. A
   * communicator in good health is destroyed once its work is done. */
  if (b->nccl_made && b->failed) {
    ncclResult_t res = ncclCommAbort(b->nccl);
    if (res != ncclSuccess)
      ep_log_error("rank %d: ncclCommAbort failed: %s", (int)b->rank, ncclGetErrorString(res));
  }
  if (b->stream) {
    cudaError_t err = cudaStreamSynchronize(b->stream); /* nothing may still use the buffers */
    if (err != cudaSuccess)
      ep_log_error("rank %d: cudaStreamSynchronize before freeing failed: %s", (int)b->rank,
                   cudaGetErrorString(err));
  }
  if (b->nccl_made && !b->failed) {
    ncclResult_t res = ncclCommDestroy(b->nccl);
    if (res != ncclSuccess)
      ep_log_error("rank %d: ncclCommDestroy failed: %s", (int)b->rank, ncclGetErrorString(res));
  }
  int ipc_mapped = 0;
  for (int i = 0; i < EP__IPC_BUFS; i++) {
    for (int32_t p = 0; b->ipc_peer[i] && p < b->rk->plan->n_ranks; p++) {
      if (p == b->rank || !b->ipc_peer[i][p])
        continue;
      ipc_mapped = 1;
      cudaError_t err = cudaIpcCloseMemHandle(b->ipc_peer[i][p]);
      if (err != cudaSuccess)
        ep_log_error("rank %d: cudaIpcCloseMemHandle of rank %d's buffer failed: %s", (int)b->rank,
                     (int)p, cudaGetErrorString(err));
    }
    free(b->ipc_peer[i]);
  }
  free(b->ipc_xchg);
  /* No rank frees a buffer that a peer still maps (after a failure the job is aborted). */
  if (ipc_mapped && !b->failed && MPI_Barrier(b->comm) != MPI_SUCCESS)
    ep_log_error("rank %d: MPI_Barrier before freeing the exported buffers failed", (int)b->rank);
  void *bufs[] = {b->d_x,
                  b->d_w13,
                  b->d_w2,
                  b->d_w13_sh,
                  b->d_w2_sh,
                  b->d_send,
                  b->d_recv,
                  b->d_send_q,
                  b->d_recv_q,
                  b->d_send_sc,
                  b->d_recv_sc,
                  b->d_xe,
                  b->d_ye,
                  b->d_comb_send,
                  b->d_comb_recv,
                  b->d_routed,
                  b->d_shared_tmp,
                  b->d_shared_acc,
                  b->d_out,
                  b->d_weights,
                  b->d_copy_send_slot,
                  b->d_recv_expert_slot,
                  b->d_expert_recv_slot,
                  b->d_send_counts,
                  b->d_recv_counts};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if (bufs[i])
      cudaFree(bufs[i]);
  if (b->ev_zero)
    cudaEventDestroy(b->ev_zero);
  for (int p = 0; p < EP_PHASE_COUNT; p++) {
    if (b->ev_start[p])
      cudaEventDestroy(b->ev_start[p]);
    if (b->ev_end[p])
      cudaEventDestroy(b->ev_end[p]);
  }
  ep_moe_cuda_free(b->moe);
  if (b->stream)
    cudaStreamDestroy(b->stream);
  free(b->h_recv_counts);
  free(b->unit_counts);
  free(b);
}

ep_status ep_nccl_device_query(int32_t rank, int32_t local_rank, int32_t *device,
                               int64_t *free_bytes, int64_t *total_bytes, char *name, int name_len,
                               char *versions, int versions_len)
{
  ep_status st = EP_OK;
  int count = 0, driver = 0, runtime = 0, nccl_version = 0;
  size_t free_b = 0, total_b = 0;
  struct cudaDeviceProp prop;
  EP_CUDA_TRY(cudaGetDeviceCount(&count));
  if (count <= 0) {
    ep_log_error("rank %d: no CUDA device", (int)rank);
    return EP_ERR_UNSUPPORTED;
  }
  *device = local_rank % count;
  EP_CUDA_TRY(cudaSetDevice(*device));
  EP_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
  EP_CUDA_TRY(cudaGetDeviceProperties(&prop, *device));
  EP_CUDA_TRY(cudaDriverGetVersion(&driver));
  EP_CUDA_TRY(cudaRuntimeGetVersion(&runtime));
  EP_NCCL_TRY(ncclGetVersion(&nccl_version));
  *free_bytes = (int64_t)free_b;
  *total_bytes = (int64_t)total_b;
  snprintf(name, (size_t)name_len, "%s", prop.name);
  /* NCCL >= 2.9 codes its version as major * 10000 + minor * 100 + patch. */
  snprintf(versions, (size_t)versions_len, "driver %d.%d, runtime %d.%d, NCCL %d.%d.%d",
           driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10,
           nccl_version / 10000, nccl_version % 10000 / 100, nccl_version % 100);
  return EP_OK;
fail:
  return st;
}

static ep_status dev_alloc(int32_t rank, void **p, int64_t rows, int64_t row_elems,
                           size_t elem_bytes)
{
  ep_status st = EP_OK;
  const size_t bytes = (size_t)(rows > 0 ? rows : 1) * (size_t)row_elems * elem_bytes;
  EP_CUDA_TRY(cudaMalloc(p, bytes));
  return EP_OK;
fail:
  ep_log_error("rank %d: could not allocate %zu bytes of device memory", (int)rank, bytes);
  *p = NULL;
  return st;
}

/* cuda-ipc: exports this rank's send buffers and maps every peer's. Collective. */
static ep_status ipc_init(ep_nccl_backend *b)
{
  ep_status st = EP_OK;
  const int32_t n = b->rk->plan->n_ranks, r = b->rank;
  void *bufs[EP__IPC_BUFS] = {b->d_send_counts, b->d_send, b->d_send_q, b->d_send_sc,
                              b->d_comb_send};
  cudaIpcMemHandle_t *all = calloc((size_t)n, sizeof *all);
  b->ipc_xchg = malloc(4 * (size_t)n * sizeof(int64_t));
  if (!all || !b->ipc_xchg) {
    ep_log_error("rank %d: out of memory for the cuda-ipc handles", (int)r);
    st = EP_ERR_NOMEM;
    goto fail;
  }
  for (int i = 0; i < EP__IPC_BUFS; i++) {
    if (!bufs[i]) /* bf16 or fp8 rows, the same choice on every rank */
      continue;
    b->ipc_local[i] = bufs[i];
    if (!(b->ipc_peer[i] = calloc((size_t)n, sizeof(void *)))) {
      ep_log_error("rank %d: out of memory for the cuda-ipc handles", (int)r);
      st = EP_ERR_NOMEM;
      goto fail;
    }
    cudaIpcMemHandle_t mine;
    EP_CUDA_TRY(cudaIpcGetMemHandle(&mine, bufs[i]));
    EP_MPI_TRY(r, MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE,
                                b->comm));
    for (int32_t p = 0; p < n; p++) {
      if (p == r) {
        b->ipc_peer[i][p] = bufs[i]; /* a process cannot open its own handle */
        continue;
      }
      const cudaError_t err =
          cudaIpcOpenMemHandle(&b->ipc_peer[i][p], all[p], cudaIpcMemLazyEnablePeerAccess);
      if (err != cudaSuccess) {
        /* E.g. a peer on another GPU without P2P, or a sandbox without CUDA IPC. */
        ep_log_error("rank %d: cudaIpcOpenMemHandle of rank %d's send buffer %d failed: %s", (int)r,
                     (int)p, i, cudaGetErrorString(err));
        b->ipc_peer[i][p] = NULL; /* nothing to close */
        st = EP_ERR_BACKEND;
        goto fail;
      }
    }
  }
fail:
  free(all);
  return st;
}

ep_status ep_nccl_backend_init(ep_nccl_backend **out, ep_real_rank *rk, MPI_Comm comm,
                               int32_t device, int ipc)
{
  ep_status st = EP_OK;
  if (!out || !rk || !rk->plan)
    return EP_ERR_INVALID;
  *out = NULL;
  ep_nccl_backend *b = calloc(1, sizeof *b);
  if (!b) {
    ep_log_error("rank %d: out of memory for the NCCL backend", (int)rk->rank);
    return EP_ERR_NOMEM;
  }
  const ep_plan *plan = rk->plan;
  const int32_t n = plan->n_ranks, r = rk->rank, h = rk->shape.hidden, im = rk->shape.intermediate;
  b->rk = rk;
  b->comm = comm;
  b->ipc = ipc;
  b->rank = r;
  b->device = device;
  b->hidden = h;
  b->inter = im;
  b->epr = plan->placement.experts_per_rank;
  b->n_shared = rk->shape.n_shared;
  b->tpr = plan->tokens_per_rank;
  b->n_send = rk->layout.n_send;
  b->n_recv = rk->n_recv_planned;
  const int fp8 = rk->wire == EP_DTYPE_FP8;
  const int64_t nb = h / EP_FP8_BLOCK;
  const size_t w13_elems = (size_t)2 * (size_t)im * (size_t)h, w2_elems = (size_t)h * (size_t)im;

  int size = 0;
  EP_MPI_TRY(r, MPI_Comm_size(comm, &size));
  if (size != n) {
    ep_log_error("rank %d: the NCCL backend needs %d ranks, the communicator has %d", (int)r,
                 (int)n, size);
    st = EP_ERR_INVALID;
    goto fail;
  }
  EP_CUDA_TRY(cudaSetDevice(device));
  EP_CUDA_TRY(cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking));
  EP_REP_TRY(r, "ep_moe_cuda_init", ep_moe_cuda_init(&b->moe, device, b->stream));
  EP_CUDA_TRY(cudaEventCreate(&b->ev_zero));
  for (int p = 0; p < EP_PHASE_COUNT; p++) {
    EP_CUDA_TRY(cudaEventCreate(&b->ev_start[p]));
    EP_CUDA_TRY(cudaEventCreate(&b->ev_end[p]));
  }

  EP_TRY(dev_alloc(r, (void **)&b->d_x, b->tpr, h, sizeof(ep_bf16)));
  EP_TRY(dev_alloc(r, (void **)&b->d_w13, b->epr, (int64_t)w13_elems, sizeof(ep_bf16)));
  EP_TRY(dev_alloc(r, (void **)&b->d_w2, b->epr, (int64_t)w2_elems, sizeof(ep_bf16)));
  if (b->n_shared > 0) {
    EP_TRY(dev_alloc(r, (void **)&b->d_w13_sh, b->n_shared, (int64_t)w13_elems, sizeof(ep_bf16)));
    EP_TRY(dev_alloc(r, (void **)&b->d_w2_sh, b->n_shared, (int64_t)w2_elems, sizeof(ep_bf16)));
    EP_TRY(dev_alloc(r, (void **)&b->d_shared_tmp, b->tpr, h, sizeof(ep_bf16)));
  }
  if (fp8) {
    EP_TRY(dev_alloc(r, (void **)&b->d_send_q, b->n_send, h, sizeof(ep_fp8)));
    EP_TRY(dev_alloc(r, (void **)&b->d_recv_q, b->n_recv, h, sizeof(ep_fp8)));
    EP_TRY(dev_alloc(r, (void **)&b->d_send_sc, b->n_send, nb, sizeof(float)));
    EP_TRY(dev_alloc(r, (void **)&b->d_recv_sc, b->n_recv, nb, sizeof(float)));
  } else {
    EP_TRY(dev_alloc(r, (void **)&b->d_send, b->n_send, h, sizeof(ep_bf16)));
    EP_TRY(dev_alloc(r, (void **)&b->d_recv, b->n_recv, h, sizeof(ep_bf16)));
  }
  EP_TRY(dev_alloc(r, (void **)&b->d_xe, b->n_recv, h, sizeof(ep_bf16)));
  EP_TRY(dev_alloc(r, (void **)&b->d_ye, b->n_recv, h, sizeof(ep_bf16)));
  EP_TRY(dev_alloc(r, (void **)&b->d_comb_send, b->n_recv, h, sizeof(ep_bf16)));
  EP_TRY(dev_alloc(r, (void **)&b->d_comb_recv, b->n_send, h, sizeof(ep_bf16)));
  EP_TRY(dev_alloc(r, (void **)&b->d_routed, b->tpr, h, sizeof(ep_bf16)));
  EP_TRY(dev_alloc(r, (void **)&b->d_shared_acc, b->tpr, h, sizeof(float)));
  EP_TRY(dev_alloc(r, (void **)&b->d_out, b->tpr, h, sizeof(float)));
  EP_TRY(dev_alloc(r, (void **)&b->d_weights, rk->n_copies, 1, sizeof(float)));
  EP_TRY(dev_alloc(r, (void **)&b->d_copy_send_slot, rk->n_copies, 1, sizeof(int32_t)));
  EP_TRY(dev_alloc(r, (void **)&b->d_recv_expert_slot, b->n_recv, 1, sizeof(int32_t)));
  EP_TRY(dev_alloc(r, (void **)&b->d_expert_recv_slot, b->n_recv, 1, sizeof(int32_t)));
  EP_TRY(dev_alloc(r, (void **)&b->d_send_counts, n, b->epr, sizeof(int64_t)));
  EP_TRY(dev_alloc(r, (void **)&b->d_recv_counts, n, b->epr, sizeof(int64_t)));
  b->h_recv_counts = malloc((size_t)n * (size_t)b->epr * sizeof(int64_t));
  b->unit_counts = malloc(2 * (size_t)n * sizeof(int64_t));
  if (!b->h_recv_counts || !b->unit_counts) {
    ep_log_error("rank %d: out of memory for the counts exchange", (int)r);
    st = EP_ERR_NOMEM;
    goto fail;
  }

  for (int32_t i = 0; i < n; i++) {
    b->unit_counts[i] = 1;
    b->unit_counts[n + i] = i;
  }

  /* Inputs: tokens from the host generator, weights by the device fill that
   * reproduces it bit for bit (ep_moe_cuda_fill_uniform_bf16). */
  {
    ep_bf16 *hx = malloc(sizeof(ep_bf16) * (size_t)(b->tpr > 0 ? b->tpr : 1) * (size_t)h);
    if (!hx) {
      ep_log_error("rank %d: out of memory for the tokens", (int)r);
      st = EP_ERR_NOMEM;
      goto fail;
    }
    ep_real_tokens_fill(&rk->shape, (int64_t)r * b->tpr, b->tpr, hx);
    /* Copies go on the backend's stream: it does not wait for the legacy
     * default stream, where a plain cudaMemcpy from pageable memory may still
     * be in flight when it returns. */
    cudaError_t e = cudaMemcpyAsync(b->d_x, hx, sizeof(ep_bf16) * (size_t)b->tpr * (size_t)h,
                                    cudaMemcpyHostToDevice, b->stream);
    if (e == cudaSuccess)
      e = cudaStreamSynchronize(b->stream);
    free(hx);
    EP_CUDA_TRY(e);
  }
  const float b13 = ep_real_w13_bound(&rk->shape), b2 = ep_real_w2_bound(&rk->shape);
  for (int32_t s = 0; s < b->epr + b->n_shared; s++) {
    const int shared = s >= b->epr;
    const int32_t e = shared
                          ? rk->shape.n_experts + (s - b->epr)
                          : plan->placement.expert_of_slot[(size_t)r * (size_t)b->epr + (size_t)s];
    ep_bf16 *w13 =
        shared ? b->d_w13_sh + (size_t)(s - b->epr) * w13_elems : b->d_w13 + (size_t)s * w13_elems;
    ep_bf16 *w2 =
        shared ? b->d_w2_sh + (size_t)(s - b->epr) * w2_elems : b->d_w2 + (size_t)s * w2_elems;
    EP_REP_TRY(r, "ep_moe_cuda_fill_uniform_bf16 (w13)",
               ep_moe_cuda_fill_uniform_bf16(b->moe, w13, (int64_t)w13_elems,
                                             ep_real_w13_seed(&rk->shape, e), -b13, b13));
    EP_REP_TRY(r, "ep_moe_cuda_fill_uniform_bf16 (w2)",
               ep_moe_cuda_fill_uniform_bf16(b->moe, w2, (int64_t)w2_elems,
                                             ep_real_w2_seed(&rk->shape, e), -b2, b2));
  }
  EP_CUDA_TRY(cudaMemcpyAsync(b->d_weights, rk->weights, sizeof(float) * (size_t)rk->n_copies,
                              cudaMemcpyHostToDevice, b->stream));
  EP_CUDA_TRY(cudaMemcpyAsync(b->d_copy_send_slot, rk->copy_send_slot,
                              sizeof(int32_t) * (size_t)rk->n_copies, cudaMemcpyHostToDevice,
                              b->stream));
  EP_CUDA_TRY(cudaMemcpyAsync(b->d_send_counts, rk->layout.send_slot_counts,
                              sizeof(int64_t) * (size_t)n * (size_t)b->epr, cudaMemcpyHostToDevice,
                              b->stream));
  EP_REP_TRY(r, "filling the expert weights", ep_moe_cuda_sync(b->moe));

  if (ipc) {
    EP_TRY(ipc_init(b));
    *out = b;
    return EP_OK;
  }
  /* NCCL communicator bootstrapped over MPI: rank 0's unique id to everyone.
   * Last, so that no failure above leaves a communicator whose peers would
   * wait for this rank (the caller aborts the job when init fails). */
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  if (r == 0)
    EP_NCCL_TRY(ncclGetUniqueId(&id));
  EP_MPI_TRY(r, MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm));
  EP_NCCL_TRY(ncclCommInitRank(&b->nccl, n, id, r));
  b->nccl_made = 1;
  *out = b;
  return EP_OK;
fail:
  b->failed = 1;
  ep_nccl_backend_free(b);
  return st;
}

ep_status ep_nccl_backend_start(ep_nccl_backend *b)
{
  ep_status st = EP_OK;
  if (!b)
    return EP_ERR_INVALID;
  EP_CUDA_TRY(cudaStreamSynchronize(b->stream));
  EP_MPI_TRY(b->rank, MPI_Barrier(b->comm));
  EP_CUDA_TRY(cudaEventRecord(b->ev_zero, b->stream));
  return EP_OK;
fail:
  return st;
}

ep_status ep_nccl_backend_output(ep_nccl_backend *b, float *out)
{
  ep_status st = EP_OK;
  if (!b || !out)
    return EP_ERR_INVALID;
  EP_CUDA_TRY(cudaMemcpyAsync(out, b->d_out, sizeof(float) * (size_t)b->tpr * (size_t)b->hidden,
                              cudaMemcpyDeviceToHost, b->stream));
  EP_CUDA_TRY(cudaStreamSynchronize(b->stream));
  return EP_OK;
fail:
  return st;
}

static ep_status check_call(const ep_nccl_backend *b, const ep_plan *plan, int32_t rank,
                            const ep_timing *out)
{
  if (!b || !out || plan != b->rk->plan || rank != b->rank) {
    ep_log_error("NCCL backend called for rank %d with another plan or rank than set up (%d)",
                 (int)rank, b ? (int)b->rank : -1);
    return EP_ERR_INVALID;
  }
  return EP_OK;
}

/* Ends phase p: waits for its end event and converts both events to µs. */
static ep_status phase_end(ep_nccl_backend *b, int p, ep_timing *out)
{
  ep_status st = EP_OK;
  float start_ms = 0, end_ms = 0;
  EP_CUDA_TRY(cudaEventRecord(b->ev_end[p], b->stream));
  EP_CUDA_TRY(cudaEventSynchronize(b->ev_end[p]));
  EP_CUDA_TRY(cudaEventElapsedTime(&start_ms, b->ev_zero, b->ev_start[p]));
  EP_CUDA_TRY(cudaEventElapsedTime(&end_ms, b->ev_zero, b->ev_end[p]));
  out->start_us = 1e3 * (double)start_ms;
  out->end_us = 1e3 * (double)end_ms;
  return EP_OK;
fail:
  return st;
}

/* cuda-ipc's all-to-all: every rank copies its blocks straight out of its
 * peers' send buffers. The MPI_Alltoall of (displacement, count) pairs starts
 * no copy before every peer's send buffer is complete (each enters it after
 * syncing its stream); the closing barrier keeps every rank from writing its
 * send buffer again before all peers have read it. */
static ep_status ipc_a2a(ep_nccl_backend *b, const void *send, const int64_t *send_counts,
                         const int64_t *send_displs, void *recv, const int64_t *recv_counts,
                         const int64_t *recv_displs, size_t row_bytes)
{
  ep_status st = EP_OK;
  const int32_t n = b->rk->plan->n_ranks, r = b->rank;
  int w = 0;
  while (w < EP__IPC_BUFS && (!b->ipc_local[w] || b->ipc_local[w] != send))
    w++;
  if (w == EP__IPC_BUFS) {
    ep_log_error("rank %d: cuda-ipc: the send buffer is not one of the exported ones", (int)r);
    return EP_ERR_INVALID;
  }
  int64_t *out = b->ipc_xchg, *in = b->ipc_xchg + 2 * (size_t)n;
  for (int32_t p = 0; p < n; p++) {
    out[2 * p] = send_displs[p];
    out[2 * p + 1] = send_counts[p];
  }
  EP_CUDA_TRY(cudaStreamSynchronize(b->stream));
  EP_MPI_TRY(r, MPI_Alltoall(out, 2, MPI_INT64_T, in, 2, MPI_INT64_T, b->comm));
  for (int32_t p = 0; p < n; p++) {
    if (in[2 * p + 1] != recv_counts[p]) {
      ep_log_error("rank %d: cuda-ipc: rank %d sends %lld rows, %lld expected", (int)r, (int)p,
                   (long long)in[2 * p + 1], (long long)recv_counts[p]);
      st = EP_ERR_BACKEND;
      goto fail;
    }
    if (recv_counts[p] > 0) {
      const cudaError_t err =
          cudaMemcpyAsync((char *)recv + (size_t)recv_displs[p] * row_bytes,
                          (const char *)b->ipc_peer[w][p] + (size_t)in[2 * p] * row_bytes,
                          (size_t)recv_counts[p] * row_bytes, cudaMemcpyDeviceToDevice, b->stream);
      if (err != cudaSuccess) {
        ep_log_error("rank %d: cuda-ipc: cudaMemcpyAsync of %lld rows from rank %d failed: %s",
                     (int)r, (long long)recv_counts[p], (int)p, cudaGetErrorString(err));
        st = EP_ERR_BACKEND;
        goto fail;
      }
    }
  }
  EP_CUDA_TRY(cudaStreamSynchronize(b->stream));
  EP_MPI_TRY(r, MPI_Barrier(b->comm));
  return EP_OK;
fail:
  return st;
}

/* One grouped all-to-all of rows: send block d of send_counts[d] rows at
 * send_displs[d], receive block s at recv_displs[s]. elems_per_row of type. */
static ep_status grouped_a2a(ep_nccl_backend *b, const void *send, const int64_t *send_counts,
                             const int64_t *send_displs, void *recv, const int64_t *recv_counts,
                             const int64_t *recv_displs, int64_t elems_per_row, size_t elem_bytes,
                             ncclDataType_t type)
{
  ep_status st = EP_OK;
  const int32_t n = b->rk->plan->n_ranks;
  if (b->ipc)
    return ipc_a2a(b, send, send_counts, send_displs, recv, recv_counts, recv_displs,
                   (size_t)elems_per_row * elem_bytes);
  EP_NCCL_TRY(ncclGroupStart());
  for (int32_t peer = 0; peer < n; peer++) {
    if (send_counts[peer] > 0) {
      const char *p =
          (const char *)send + (size_t)send_displs[peer] * (size_t)elems_per_row * elem_bytes;
      ncclResult_t res =
          ncclSend(p, (size_t)(send_counts[peer] * elems_per_row), type, peer, b->nccl, b->stream);
      if (res != ncclSuccess) {
        ep_log_error("rank %d: ncclSend of %lld rows to rank %d failed: %s", (int)b->rank,
                     (long long)send_counts[peer], (int)peer, ncclGetErrorString(res));
        ncclGroupEnd();
        return EP_ERR_BACKEND;
      }
    }
    if (recv_counts[peer] > 0) {
      char *p = (char *)recv + (size_t)recv_displs[peer] * (size_t)elems_per_row * elem_bytes;
      ncclResult_t res =
          ncclRecv(p, (size_t)(recv_counts[peer] * elems_per_row), type, peer, b->nccl, b->stream);
      if (res != ncclSuccess) {
        ep_log_error("rank %d: ncclRecv of %lld rows from rank %d failed: %s", (int)b->rank,
                     (long long)recv_counts[peer], (int)peer, ncclGetErrorString(res));
        ncclGroupEnd();
        return EP_ERR_BACKEND;
      }
    }
  }
  EP_NCCL_TRY(ncclGroupEnd());
  return EP_OK;
fail:
  return st;
}

static ep_status nccl_dispatch(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  ep_nccl_backend *b = ctx;
  ep_status st = check_call(b, plan, rank, out);
  if (st != EP_OK)
    return st;
  ep_real_rank *rk = b->rk;
  const int32_t n = plan->n_ranks, epr = b->epr;
  EP_CUDA_TRY(cudaEventRecord(b->ev_start[EP_PHASE_DISPATCH], b->stream));
  /* Counts exchange: one row of epr counts to and from every rank, then to the
   * host, where the recv layout is built. */
  EP_TRY(grouped_a2a(b, b->d_send_counts, b->unit_counts, b->unit_counts + n, b->d_recv_counts,
                     b->unit_counts, b->unit_counts + n, epr, sizeof(int64_t), ncclInt64));
  EP_CUDA_TRY(cudaMemcpyAsync(b->h_recv_counts, b->d_recv_counts,
                              sizeof(int64_t) * (size_t)n * (size_t)epr, cudaMemcpyDeviceToHost,
                              b->stream));
  EP_CUDA_TRY(cudaStreamSynchronize(b->stream));
  if ((st = ep_real_rank_set_recv(rk, b->h_recv_counts)) != EP_OK)
    goto fail;
  EP_CUDA_TRY(cudaMemcpyAsync(b->d_recv_expert_slot, rk->recv_expert_slot,
                              sizeof(int32_t) * (size_t)b->n_recv, cudaMemcpyHostToDevice,
                              b->stream));
  EP_CUDA_TRY(cudaMemcpyAsync(b->d_expert_recv_slot, rk->expert_recv_slot,
                              sizeof(int32_t) * (size_t)b->n_recv, cudaMemcpyHostToDevice,
                              b->stream));
  const ep_exchange_layout *L = &rk->layout;
  if (rk->wire == EP_DTYPE_FP8) {
    const int64_t nb = b->hidden / EP_FP8_BLOCK;
    EP_REP_TRY(rank, "ep_moe_cuda_permute_fp8",
               ep_moe_cuda_permute_fp8(b->moe, b->tpr, plan->top_k, b->hidden, b->n_send, b->d_x,
                                       b->d_copy_send_slot, b->d_send_q, b->d_send_sc));
    /* Rows and their scales in one outer group: one launch, both on the wire
     * together, as the plan's one message of hidden + scale bytes per copy. */
    if (!b->ipc)
      EP_NCCL_TRY(ncclGroupStart());
    st = grouped_a2a(b, b->d_send_q, L->send_counts, L->send_displs, b->d_recv_q, L->recv_counts,
                     L->recv_displs, b->hidden, sizeof(ep_fp8), ncclUint8);
    if (st == EP_OK)
      st = grouped_a2a(b, b->d_send_sc, L->send_counts, L->send_displs, b->d_recv_sc,
                       L->recv_counts, L->recv_displs, nb, sizeof(float), ncclFloat32);
    const ncclResult_t end = b->ipc ? ncclSuccess : ncclGroupEnd();
    if (st != EP_OK)
      goto fail;
    if (end != ncclSuccess) {
      ep_log_error("rank %d: ncclGroupEnd of the fp8 dispatch failed: %s", (int)rank,
                   ncclGetErrorString(end));
      st = EP_ERR_BACKEND;
      goto fail;
    }
    EP_REP_TRY(rank, "ep_moe_cuda_fp8_to_bf16_rows",
               ep_moe_cuda_fp8_to_bf16_rows(b->moe, b->n_recv, b->hidden, b->d_recv_q, b->d_recv_sc,
                                            b->d_recv_expert_slot, b->d_xe));
  } else {
    EP_REP_TRY(rank, "ep_moe_cuda_permute",
               ep_moe_cuda_permute(b->moe, b->tpr, plan->top_k, b->hidden, b->n_send, b->d_x,
                                   b->d_copy_send_slot, b->d_send));
    EP_TRY(grouped_a2a(b, b->d_send, L->send_counts, L->send_displs, b->d_recv, L->recv_counts,
                       L->recv_displs, b->hidden, sizeof(ep_bf16), ncclBfloat16));
    if (b->n_recv > 0)
      EP_REP_TRY(rank, "ep_moe_cuda_permute (recv to expert-major)",
                 ep_moe_cuda_permute(b->moe, b->n_recv, 1, b->hidden, b->n_recv, b->d_recv,
                                     b->d_recv_expert_slot, b->d_xe));
  }
  EP_TRY(phase_end(b, EP_PHASE_DISPATCH, out));
  return EP_OK;
fail:
  b->failed = 1;
  return st;
}

static ep_status nccl_expert(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  ep_nccl_backend *b = ctx;
  ep_status st = check_call(b, plan, rank, out);
  if (st != EP_OK)
    return st;
  EP_CUDA_TRY(cudaEventRecord(b->ev_start[EP_PHASE_EXPERT], b->stream));
  if (b->n_recv > 0)
    EP_REP_TRY(rank, "ep_moe_cuda_expert_ffn (routed experts)",
               ep_moe_cuda_expert_ffn(b->moe, EP_MOE_GEMM_AUTO, b->epr, b->rk->expert_counts,
                                      b->hidden, b->inter, b->d_xe, b->d_w13, b->d_w2, b->d_ye));
  const size_t w13_elems = (size_t)2 * (size_t)b->inter * (size_t)b->hidden;
  const size_t w2_elems = (size_t)b->hidden * (size_t)b->inter;
  const int32_t tpr32 = (int32_t)b->tpr;
  if (b->n_shared == 0)
    EP_CUDA_TRY(cudaMemsetAsync(b->d_shared_acc, 0,
                                sizeof(float) * (size_t)b->tpr * (size_t)b->hidden, b->stream));
  for (int32_t s = 0; s < b->n_shared; s++) {
    EP_REP_TRY(rank, "ep_moe_cuda_expert_ffn (shared expert)",
               ep_moe_cuda_expert_ffn(b->moe, EP_MOE_GEMM_AUTO, 1, &tpr32, b->hidden, b->inter,
                                      b->d_x, b->d_w13_sh + (size_t)s * w13_elems,
                                      b->d_w2_sh + (size_t)s * w2_elems, b->d_shared_tmp));
    EP_REP_TRY(rank, "ep_moe_cuda_accumulate_bf16",
               ep_moe_cuda_accumulate_bf16(b->moe, b->tpr * b->hidden, b->d_shared_tmp,
                                           b->d_shared_acc, s == 0));
  }
  EP_TRY(phase_end(b, EP_PHASE_EXPERT, out));
  return EP_OK;
fail:
  b->failed = 1;
  return st;
}

static ep_status nccl_combine(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  ep_nccl_backend *b = ctx;
  ep_status st = check_call(b, plan, rank, out);
  if (st != EP_OK)
    return st;
  const ep_exchange_layout *L = &b->rk->layout;
  EP_CUDA_TRY(cudaEventRecord(b->ev_start[EP_PHASE_COMBINE], b->stream));
  if (b->n_recv > 0)
    EP_REP_TRY(rank, "ep_moe_cuda_permute (expert-major to recv order)",
               ep_moe_cuda_permute(b->moe, b->n_recv, 1, b->hidden, b->n_recv, b->d_ye,
                                   b->d_expert_recv_slot, b->d_comb_send));
  EP_TRY(grouped_a2a(b, b->d_comb_send, L->recv_counts, L->recv_displs, b->d_comb_recv,
                     L->send_counts, L->send_displs, b->hidden, sizeof(ep_bf16), ncclBfloat16));
  EP_REP_TRY(rank, "ep_moe_cuda_combine",
             ep_moe_cuda_combine(b->moe, b->tpr, plan->top_k, b->hidden, b->n_send, b->d_comb_recv,
                                 b->d_copy_send_slot, b->d_weights, b->d_routed));
  EP_REP_TRY(
      rank, "ep_moe_cuda_add_bf16_f32",
      ep_moe_cuda_add_bf16_f32(b->moe, b->tpr * b->hidden, b->d_routed, b->d_shared_acc, b->d_out));
  EP_TRY(phase_end(b, EP_PHASE_COMBINE, out));
  /* Kernel faults surface at the next sync; report them with this phase. */
  EP_REP_TRY(rank, "combine kernels", ep_moe_cuda_sync(b->moe));
  return EP_OK;
fail:
  b->failed = 1;
  return st;
}

const ep_backend_ops ep_nccl_backend_ops = {
    .name = "nccl",
    .dispatch = nccl_dispatch,
    .expert_compute = nccl_expert,
    .combine = nccl_combine,
    .free = ep_nccl_backend_free,
};
