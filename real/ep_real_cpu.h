/* CPU backend: the engine's ops on MPI ranks with the C reference kernels.
 *   dispatch: counts exchange (MPI_Alltoall of per-(dst, local expert) counts),
 *             permute into dst-major rows (bf16, or fp8 + scales), MPI_Alltoallv,
 *             rows into expert-major order;
 *   expert:   SwiGLU grouped GEMM (ep_moe_expert_ffn_ref) over the local experts,
 *             plus the shared experts over the rank's own tokens;
 *   combine:  rows back to recv order, MPI_Alltoallv back, weighted sum in token
 *             order (ep_moe_combine_ref), plus the shared experts' output.
 * Timings are MPI_Wtime in µs since the barrier of ep_cpu_backend_start. */
#ifndef EP_REAL_CPU_H
#define EP_REAL_CPU_H

#include <mpi.h>

#include "ep_engine.h"
#include "ep_real.h"

typedef struct ep_cpu_backend ep_cpu_backend;

/* The ops table; ctx is an ep_cpu_backend. Its free is ep_cpu_backend_free. */
extern const ep_backend_ops ep_cpu_backend_ops;

/* Allocates the rank's buffers and fills its tokens and local experts' weights.
 * rk is borrowed and must outlive the backend; comm must hold plan->n_ranks ranks
 * with rk->rank as this process's rank. */
ep_status ep_cpu_backend_init(ep_cpu_backend **out, ep_real_rank *rk, MPI_Comm comm);

/* Barrier, then the clock's zero for this layer. Collective. */
ep_status ep_cpu_backend_start(ep_cpu_backend *b);

/* The layer output after combine: [tokens_per_rank * hidden] float, owned by b. */
float *ep_cpu_backend_output(ep_cpu_backend *b);

void ep_cpu_backend_free(void *b); /* NULL-safe */

#endif
