/* MPI error reporting for the real backend: every failing MPI call is logged
 * with the call, the rank, the function and file:line, then jumps to `fail`
 * with st = EP_ERR_BACKEND (the caller declares `ep_status st` and `fail:`). */
#ifndef EP_REAL_MPI_H
#define EP_REAL_MPI_H

#include <mpi.h>

#include "ep_status.h"

#define EP_MPI_TRY(rank, call)                                                                     \
  do {                                                                                             \
    int ep_mpi_rc_ = (call);                                                                       \
    if (ep_mpi_rc_ != MPI_SUCCESS) {                                                               \
      char ep_mpi_msg_[MPI_MAX_ERROR_STRING];                                                      \
      int ep_mpi_len_ = 0;                                                                         \
      if (MPI_Error_string(ep_mpi_rc_, ep_mpi_msg_, &ep_mpi_len_) != MPI_SUCCESS)                  \
        ep_mpi_msg_[0] = '\0';                                                                     \
      ep_log_error("rank %d: %s failed: %s (%s, %s:%d)", (int)(rank), #call, ep_mpi_msg_,          \
                   __func__, __FILE__, __LINE__);                                                  \
      st = EP_ERR_BACKEND;                                                                         \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

#endif
