/* NCCL backend: the engine's ops on one GPU per MPI rank.
 *   dispatch: counts exchange (grouped ncclSend/ncclRecv of per-(dst, local
 *             expert) counts, copied to the host), permute on the GPU into
 *             dst-major rows (bf16, or fp8 + scales), grouped ncclSend/ncclRecv
 *             of the rows, rows into expert-major order;
 *   expert:   SwiGLU grouped GEMM (ep_moe_cuda_expert_ffn) over the local
 *             experts, plus the shared experts over the rank's own tokens;
 *   combine:  rows back to recv order, grouped ncclSend/ncclRecv back, weighted
 *             sum in token order (ep_moe_cuda_combine), plus the shared output.
 * The send/recv lists come from the same ep_exchange layout as the CPU backend.
 * Timings are CUDA events, in µs since the event recorded after the barrier of
 * ep_nccl_backend_start; each phase ends with a wait on its end event.
 * Every CUDA, NCCL and MPI failure is logged with the call and the rank. */
#ifndef EP_REAL_NCCL_H
#define EP_REAL_NCCL_H

#include <mpi.h>
#include <stdint.h>

#include "ep_engine.h"
#include "ep_real.h"

typedef struct ep_nccl_backend ep_nccl_backend;

extern const ep_backend_ops ep_nccl_backend_ops;

/* The GPU this rank uses (local_rank % device count) and its memory, queried
 * before anything is allocated. EP_ERR_UNSUPPORTED when there is no GPU.
 * name: [out] [name_len] device name; versions: [out] [versions_len]
 * "driver X, runtime Y, NCCL Z". */
ep_status ep_nccl_device_query(int32_t rank, int32_t local_rank, int32_t *device,
                               int64_t *free_bytes, int64_t *total_bytes, char *name, int name_len,
                               char *versions, int versions_len);

/* Allocates device buffers, fills tokens and local experts' weights on the GPU,
 * then creates the NCCL communicator over comm (unique id from rank 0 by
 * MPI_Bcast; collective). A rank that fails returns before the communicator
 * exists, but its peers may wait for it in MPI_Bcast or ncclCommInitRank (no
 * timeout): the caller aborts the job. rk is borrowed and must outlive the backend.
 * ipc != 0 (--backend cuda-ipc): no NCCL; every all-to-all copies rows out of
 * the peers' send buffers, mapped with CUDA IPC (same node; ranks may share a
 * GPU). Its timings include MPI synchronisation and are not a fabric's. */
ep_status ep_nccl_backend_init(ep_nccl_backend **out, ep_real_rank *rk, MPI_Comm comm,
                               int32_t device, int ipc);

/* Barrier, then records the clock's zero event. Collective. */
ep_status ep_nccl_backend_start(ep_nccl_backend *b);

/* Copies the layer output to the host (waits for the stream):
 * out: [out] [tokens_per_rank * hidden] float. */
ep_status ep_nccl_backend_output(ep_nccl_backend *b, float *out);

/* NULL-safe. Destroys the NCCL communicator (every rank must free theirs), or
 * aborts it when a call on this backend failed, so peers stuck in a transfer
 * do not keep the stream from draining. cuda-ipc: unmaps the peers' buffers,
 * then a barrier (skipped after a failure) before freeing its own. */
void ep_nccl_backend_free(void *b);

#endif
