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

/* The shared body: res_type the library's result type, ok its success value,
 * err_string its result-to-text function, text the call as written. */
#define EP__LIB_TRY(res_type, ok, err_string, call, text)                                          \
  do {                                                                                             \
    res_type ep_lib_res_ = (call);                                                                 \
    if (ep_lib_res_ != (ok)) {                                                                     \
      ep_log_error("%s failed in %s at %s:%d: %s", text, __func__, __FILE__, __LINE__,             \
                   err_string(ep_lib_res_));                                                       \
      st = EP_ERR_BACKEND;                                                                         \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

#define EP_CUDA_TRY(call) EP__LIB_TRY(cudaError_t, cudaSuccess, cudaGetErrorString, call, #call)

#endif /* EP_CUDA_CHECK_H */

/* Outside the include guard, so that including this header again after
 * cublas_api.h or nccl.h adds the check that was missing. */
#if defined(CUBLAS_API_H_) && !defined(EP_CUBLAS_TRY)
#define EP_CUBLAS_TRY(call)                                                                        \
  EP__LIB_TRY(cublasStatus_t, CUBLAS_STATUS_SUCCESS, cublasGetStatusString, call, #call)
#endif

#if defined(NCCL_H_) && !defined(EP_NCCL_TRY)
#define EP_NCCL_TRY(call) EP__LIB_TRY(ncclResult_t, ncclSuccess, ncclGetErrorString, call, #call)
#endif
