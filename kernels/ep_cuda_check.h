/* The one set of CUDA runtime, cuBLAS and NCCL error checks (DESIGN.md §5.5).
 * On failure each logs the call, the function, file:line and the library's
 * error string through ep_log_error, sets `st = EP_ERR_BACKEND` and jumps to
 * `fail`: the caller declares `ep_status st` and a `fail:` label that cleans up.
 * EP_CUDA_TRY is always there; EP_CUBLAS_TRY exists once cuBLAS (cublas_api.h,
 * via cublas_v2.h) and EP_NCCL_TRY once nccl.h was included before this
 * header, so files without cuBLAS or NCCL compile without them. */
#ifndef EP_CUDA_CHECK_H
#define EP_CUDA_CHECK_H

#include <cuda_runtime_api.h>

#include "ep_status.h"

#define EP_CUDA_TRY(call)                                                                          \
  do {                                                                                             \
    cudaError_t ep_cuda_err_ = (call);                                                             \
    if (ep_cuda_err_ != cudaSuccess) {                                                             \
      ep_log_error("%s failed in %s at %s:%d: %s", #call, __func__, __FILE__, __LINE__,            \
                   cudaGetErrorString(ep_cuda_err_));                                              \
      st = EP_ERR_BACKEND;                                                                         \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

#endif /* EP_CUDA_CHECK_H */

/* Outside the include guard, so that including this header again after
 * cublas_api.h or nccl.h adds the check that was missing. */
#if defined(CUBLAS_API_H_) && !defined(EP_CUBLAS_TRY)
#define EP_CUBLAS_TRY(call)                                                                        \
  do {                                                                                             \
    cublasStatus_t ep_cublas_err_ = (call);                                                        \
    if (ep_cublas_err_ != CUBLAS_STATUS_SUCCESS) {                                                 \
      ep_log_error("%s failed in %s at %s:%d: %s", #call, __func__, __FILE__, __LINE__,            \
                   cublasGetStatusString(ep_cublas_err_));                                         \
      st = EP_ERR_BACKEND;                                                                         \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)
#endif

#if defined(NCCL_H_) && !defined(EP_NCCL_TRY)
#define EP_NCCL_TRY(call)                                                                          \
  do {                                                                                             \
    ncclResult_t ep_nccl_res_ = (call);                                                            \
    if (ep_nccl_res_ != ncclSuccess) {                                                             \
      ep_log_error("%s failed in %s at %s:%d: %s", #call, __func__, __FILE__, __LINE__,            \
                   ncclGetErrorString(ep_nccl_res_));                                              \
      st = EP_ERR_BACKEND;                                                                         \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)
#endif
