/* The GPU transports' shared part: CUDA events on the compute's stream as the
 * clock, cudaMalloc'd send buffers. */
#include "ep_transport_cuda.h"

#include <stdlib.h>

#include "ep_cuda_check.h"

ep_status ep__cuda_transport_new(size_t ctx_bytes, const ep_transport_cfg *cfg, void **out)
{
  ep_status st = EP_OK;
  ep__cuda_transport *t = *out = calloc(1, ctx_bytes);
  if (!t || !(t->marks = calloc((size_t)cfg->n_marks, sizeof *t->marks))) {
    ep_log_error("rank %d: out of memory for a GPU transport", (int)cfg->rank);
    return EP_ERR_NOMEM;
  }
  ep__transport_base_init(&t->mpi, cfg);
  t->mpi.n_marks = 0; /* events made so far */
  if (!(t->stream = (cudaStream_t)cfg->stream)) {
    ep_log_error("rank %d: a GPU transport needs the compute's stream", (int)cfg->rank);
    return EP_ERR_INVALID;
  }
  for (; t->mpi.n_marks < cfg->n_marks; t->mpi.n_marks++)
    EP_CUDA_TRY(cudaEventCreate(&t->marks[t->mpi.n_marks]));
  return EP_OK;
fail:
  return st;
}

void ep__cuda_transport_drain(const ep__cuda_transport *t)
{
  const cudaError_t err = t->stream ? cudaStreamSynchronize(t->stream) : cudaSuccess;
  if (err != cudaSuccess)
    ep_log_error("rank %d: cudaStreamSynchronize before freeing failed: %s", (int)t->mpi.rank,
                 cudaGetErrorString(err));
}

void ep__cuda_transport_free(void *ctx)
{
  ep__cuda_transport *t = ctx;
  if (!t)
    return;
  for (int32_t i = 0; i < t->mpi.n_marks; i++)
    cudaEventDestroy(t->marks[i]);
  free(t->marks);
  for (int32_t i = 0; i < t->n_bufs; i++)
    cudaFree(t->bufs[i]);
  free(t);
}

ep_status ep__cuda_transport_alloc(void *ctx, int64_t bytes, void **out)
{
  ep__cuda_transport *t = ctx;
  ep_status st = EP_OK;
  if (t->n_bufs == EP__CUDA_TRANSPORT_BUFS) {
    ep_log_error("rank %d: more than %d send buffers", (int)t->mpi.rank, EP__CUDA_TRANSPORT_BUFS);
    return EP_ERR_INVALID;
  }
  EP_CUDA_TRY(cudaMalloc(out, (size_t)bytes));
  t->bufs[t->n_bufs++] = *out;
  return EP_OK;
fail:
  ep_log_error("rank %d: could not allocate %lld bytes of device memory", (int)t->mpi.rank,
               (long long)bytes);
  *out = NULL;
  return st;
}

ep_status ep__cuda_transport_mark(void *ctx, int32_t mark)
{
  ep__cuda_transport *t = ctx;
  ep_status st = EP_OK;
  if (mark < 0 || mark >= t->mpi.n_marks)
    return EP_ERR_INVALID;
  EP_CUDA_TRY(cudaEventRecord(t->marks[mark], t->stream));
  return EP_OK;
fail:
  return st;
}

ep_status ep__cuda_transport_elapsed_us(void *ctx, int32_t mark, double *us)
{
  ep__cuda_transport *t = ctx;
  ep_status st = EP_OK;
  float ms = 0;
  if (mark < 0 || mark >= t->mpi.n_marks)
    return EP_ERR_INVALID;
  EP_CUDA_TRY(cudaEventSynchronize(t->marks[mark]));
  EP_CUDA_TRY(cudaEventElapsedTime(&ms, t->marks[0], t->marks[mark]));
  *us = 1e3 * (double)ms;
  return EP_OK;
fail:
  return st;
}
