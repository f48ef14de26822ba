/* MPI transport: rows in host memory moved by MPI_Alltoallv, one derived
 * datatype per row size (made on first use, kept), so MPI's int counts are row
 * counts; the clock is MPI_Wtime. Also the MPI part every transport shares. */
#include "ep_transport.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_real_mpi.h"

/* Row sizes and send buffers one transport keeps: the layer uses four of each. */
#define EP__MPI_MAX 8

typedef struct mpi_transport {
  ep__transport_base mpi; /* first: ep__transport_barrier takes this context */
  double *marks_s;        /* [n_marks] MPI_Wtime of each mark */
  int *int_layout;        /* [4 * n_ranks] send counts, send displs, recv counts, recv displs */
  int64_t row_bytes[EP__MPI_MAX];
  MPI_Datatype row_type[EP__MPI_MAX];
  int32_t n_types;
  void *bufs[EP__MPI_MAX];
  int32_t n_bufs;
} mpi_transport;

void ep__transport_base_init(ep__transport_base *base, const ep_transport_cfg *cfg)
{
  base->comm = cfg->comm;
  base->rank = cfg->rank;
  base->n_ranks = cfg->n_ranks;
  base->n_marks = cfg->n_marks;
}

ep_status ep__transport_barrier(void *ctx)
{
  const ep__transport_base *base = ctx;
  ep_status st = EP_OK;
  EP_MPI_TRY(base->rank, MPI_Barrier(base->comm));
  return EP_OK;
fail:
  return st;
}

static void mpi_free(void *ctx, int failed)
{
  mpi_transport *t = ctx;
  (void)failed; /* nothing waits for peers here */
  if (!t)
    return;
  for (int32_t i = 0; i < t->n_types; i++)
    MPI_Type_free(&t->row_type[i]);
  for (int32_t i = 0; i < t->n_bufs; i++)
    free(t->bufs[i]);
  free(t->marks_s);
  free(t->int_layout);
  free(t);
}

static ep_status mpi_init(void **out, const ep_transport_cfg *cfg)
{
  mpi_transport *t = calloc(1, sizeof *t);
  if (!t)
    return EP_ERR_NOMEM;
  ep__transport_base_init(&t->mpi, cfg);
  t->marks_s = calloc((size_t)cfg->n_marks, sizeof(double));
  t->int_layout = malloc(4 * (size_t)cfg->n_ranks * sizeof(int));
  if (!t->marks_s || !t->int_layout) {
    ep_log_error("rank %d: out of memory for the MPI transport", (int)cfg->rank);
    mpi_free(t, 1);
    return EP_ERR_NOMEM;
  }
  *out = t;
  return EP_OK;
}

static ep_status mpi_alloc(void *ctx, int64_t bytes, void **out)
{
  mpi_transport *t = ctx;
  if (t->n_bufs == EP__MPI_MAX || !(*out = malloc((size_t)bytes))) {
    ep_log_error("rank %d: no send buffer of %lld bytes (%d made)", (int)t->mpi.rank,
                 (long long)bytes, (int)t->n_bufs);
    return EP_ERR_NOMEM;
  }
  t->bufs[t->n_bufs++] = *out;
  return EP_OK;
}

/* The datatype of one row of row_bytes, made on first use. */
static ep_status row_type(mpi_transport *t, int64_t row_bytes, MPI_Datatype *out)
{
  ep_status st = EP_OK;
  for (int32_t i = 0; i < t->n_types; i++) {
    if (t->row_bytes[i] == row_bytes) {
      *out = t->row_type[i];
      return EP_OK;
    }
  }
  if (t->n_types == EP__MPI_MAX || row_bytes <= 0 || row_bytes > INT_MAX) {
    ep_log_error("rank %d: no MPI row type of %lld bytes (%d made)", (int)t->mpi.rank,
                 (long long)row_bytes, (int)t->n_types);
    return EP_ERR_UNSUPPORTED;
  }
  MPI_Datatype type;
  EP_MPI_TRY(t->mpi.rank, MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &type));
  if (MPI_Type_commit(&type) != MPI_SUCCESS) {
    ep_log_error("rank %d: MPI_Type_commit of a %lld-byte row failed", (int)t->mpi.rank,
                 (long long)row_bytes);
    MPI_Type_free(&type);
    return EP_ERR_BACKEND;
  }
  t->row_bytes[t->n_types] = row_bytes;
  t->row_type[t->n_types++] = type;
  *out = type;
  return EP_OK;
fail:
  return st;
}

/* The layout as MPI's int counts and displacements into t->int_layout. */
static ep_status int_layout(mpi_transport *t, const ep_transport_layout *layout)
{
  const int32_t n = t->mpi.n_ranks;
  const int64_t *in[4] = {layout->send_counts, layout->send_displs, layout->recv_counts,
                          layout->recv_displs};
  for (int32_t j = 0; j < 4 * n; j++) {
    const int64_t v = in[j / n][j % n];
    if (v > INT_MAX) {
      ep_log_error("rank %d: an all-to-all of %lld rows exceeds MPI's int counts", (int)t->mpi.rank,
                   (long long)v);
      return EP_ERR_UNSUPPORTED;
    }
    t->int_layout[j] = (int)v;
  }
  return EP_OK;
}

static ep_status mpi_alltoallv(void *ctx, const ep_transport_layout *layout, int32_t n_parts,
                               const ep_transport_rows *parts)
{
  mpi_transport *t = ctx;
  const int *lay = t->int_layout, n = t->mpi.n_ranks;
  ep_status st = int_layout(t, layout);
  for (int32_t p = 0; p < n_parts && st == EP_OK; p++) {
    MPI_Datatype type;
    if ((st = row_type(t, parts[p].row_bytes, &type)) != EP_OK)
      return st;
    EP_MPI_TRY(t->mpi.rank, MPI_Alltoallv(parts[p].send, lay, lay + n, type, parts[p].recv,
                                          lay + 2 * n, lay + 3 * n, type, t->mpi.comm));
  }
fail:
  return st;
}

static ep_status mpi_mark(void *ctx, int32_t mark)
{
  mpi_transport *t = ctx;
  if (mark < 0 || mark >= t->mpi.n_marks)
    return EP_ERR_INVALID;
  t->marks_s[mark] = MPI_Wtime();
  return EP_OK;
}

static ep_status mpi_elapsed_us(void *ctx, int32_t mark, double *us)
{
  mpi_transport *t = ctx;
  if (mark < 0 || mark >= t->mpi.n_marks)
    return EP_ERR_INVALID;
  *us = (t->marks_s[mark] - t->marks_s[0]) * 1e6;
  return EP_OK;
}

/* In ep_transport_ops order. */
const ep_transport_ops ep_transport_mpi = {
    "mpi",    mpi_init,       mpi_alloc, mpi_alltoallv, ep__transport_barrier,
    mpi_mark, mpi_elapsed_us, NULL,      mpi_free};
