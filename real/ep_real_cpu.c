/* CPU backend over MPI: the exchange layout of ep_exchange.c moved with
 * MPI_Alltoall(v), the expert math with the C reference kernels. Rows travel
 * as one derived datatype per row, so MPI's int counts are row counts. */
#include "ep_real_cpu.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ep_moe_ref.h"
#include "ep_real_mpi.h"

struct ep_cpu_backend {
  ep_real_rank *rk;
  MPI_Comm comm;
  double t0_s;
  int32_t hidden, inter, epr, n_shared;
  int64_t tpr, n_send, n_recv;

  ep_bf16 *x;                       /* [tpr * hidden] this rank's tokens */
  ep_bf16 *w13, *w2;                /* [epr * 2I * H], [epr * H * I] local experts by slot */
  ep_bf16 *w13_sh, *w2_sh;          /* shared experts, same layout */
  ep_bf16 *send_bf16, *recv_bf16;   /* [n_send|n_recv * hidden] dispatch rows (bf16 wire) */
  ep_fp8 *send_q, *recv_q;          /* [n * hidden] dispatch rows (fp8 wire) */
  float *send_scales, *recv_scales; /* [n * hidden / 128] */
  ep_bf16 *xe, *ye;                 /* [n_recv * hidden] expert-major in and out */
  ep_bf16 *comb_send;               /* [n_recv * hidden] expert outputs in recv order */
  ep_bf16 *comb_recv;               /* [n_send * hidden] own copies back, in send order */
  ep_bf16 *routed;                  /* [tpr * hidden] weighted sum of routed experts */
  ep_bf16 *shared_tmp;              /* [tpr * hidden] one shared expert's output */
  float *shared_acc;                /* [tpr * hidden] sum of shared experts */
  float *out;                       /* [tpr * hidden] layer output */

  int64_t *recv_slot_counts; /* [n_ranks * epr] counts exchange result */
  int *send_counts, *send_displs, *recv_counts, *recv_displs; /* [n_ranks] rows, for MPI */
  MPI_Datatype row_bf16, row_fp8, row_scales;
  int types_made;
};

static double now_us(const ep_cpu_backend *b)
{
  return (MPI_Wtime() - b->t0_s) * 1e6;
}

static void *alloc_rows(int64_t rows, int64_t row_elems, size_t elem_bytes)
{
  const size_t n = (size_t)(rows > 0 ? rows : 1) * (size_t)row_elems;
  return malloc(n * elem_bytes);
}

void ep_cpu_backend_free(void *ctx)
{
  ep_cpu_backend *b = ctx;
  if (!b)
    return;
  if (b->types_made) {
    MPI_Type_free(&b->row_bf16);
    MPI_Type_free(&b->row_fp8);
    MPI_Type_free(&b->row_scales);
  }
  free(b->x);
  free(b->w13);
  free(b->w2);
  free(b->w13_sh);
  free(b->w2_sh);
  free(b->send_bf16);
  free(b->recv_bf16);
  free(b->send_q);
  free(b->recv_q);
  free(b->send_scales);
  free(b->recv_scales);
  free(b->xe);
  free(b->ye);
  free(b->comb_send);
  free(b->comb_recv);
  free(b->routed);
  free(b->shared_tmp);
  free(b->shared_acc);
  free(b->out);
  free(b->recv_slot_counts);
  free(b->send_counts);
  free(b->send_displs);
  free(b->recv_counts);
  free(b->recv_displs);
  free(b);
}

/* int64 row counts -> MPI's int; EP_ERR_UNSUPPORTED past INT_MAX rows. */
static ep_status to_int_counts(const int64_t *counts, const int64_t *displs, int32_t n, int *ic,
                               int *id)
{
  for (int32_t i = 0; i < n; i++) {
    if (counts[i] > INT_MAX || displs[i] > INT_MAX) {
      ep_log_error("all-to-all of %lld rows at row %lld exceeds MPI's int counts",
                   (long long)counts[i], (long long)displs[i]);
      return EP_ERR_UNSUPPORTED;
    }
    ic[i] = (int)counts[i];
    id[i] = (int)displs[i];
  }
  return EP_OK;
}

ep_status ep_cpu_backend_init(ep_cpu_backend **out, ep_real_rank *rk, MPI_Comm comm)
{
  ep_status st = EP_OK;
  if (!out || !rk || !rk->plan)
    return EP_ERR_INVALID;
  *out = NULL;
  ep_cpu_backend *b = calloc(1, sizeof *b);
  if (!b) {
    ep_log_error("rank %d: out of memory for the CPU backend", (int)rk->rank);
    return EP_ERR_NOMEM;
  }
  const ep_plan *plan = rk->plan;
  const int32_t n = plan->n_ranks, h = rk->shape.hidden, im = rk->shape.intermediate;
  b->rk = rk;
  b->comm = comm;
  b->hidden = h;
  b->inter = im;
  b->epr = plan->placement.experts_per_rank;
  b->n_shared = rk->shape.n_shared;
  b->tpr = plan->tokens_per_rank;
  b->n_send = rk->layout.n_send;
  b->n_recv = rk->n_recv_planned;

  int size = 0;
  EP_MPI_TRY(rk->rank, MPI_Comm_size(comm, &size));
  if (size != n) {
    ep_log_error("rank %d: the CPU backend needs %d ranks, the communicator has %d", (int)rk->rank,
                 (int)n, size);
    st = EP_ERR_INVALID;
    goto fail;
  }
  const size_t w13_elems = (size_t)2 * (size_t)im * (size_t)h, w2_elems = (size_t)h * (size_t)im;
  const int fp8 = rk->wire == EP_DTYPE_FP8;
  const int64_t n_scales = h / EP_FP8_BLOCK;
  b->x = alloc_rows(b->tpr, h, sizeof(ep_bf16));
  b->w13 = malloc((size_t)b->epr * w13_elems * sizeof(ep_bf16));
  b->w2 = malloc((size_t)b->epr * w2_elems * sizeof(ep_bf16));
  if (b->n_shared > 0) {
    b->w13_sh = malloc((size_t)b->n_shared * w13_elems * sizeof(ep_bf16));
    b->w2_sh = malloc((size_t)b->n_shared * w2_elems * sizeof(ep_bf16));
    b->shared_tmp = alloc_rows(b->tpr, h, sizeof(ep_bf16));
  }
  if (fp8) {
    b->send_q = alloc_rows(b->n_send, h, sizeof(ep_fp8));
    b->recv_q = alloc_rows(b->n_recv, h, sizeof(ep_fp8));
    b->send_scales = alloc_rows(b->n_send, n_scales, sizeof(float));
    b->recv_scales = alloc_rows(b->n_recv, n_scales, sizeof(float));
  } else {
    b->send_bf16 = alloc_rows(b->n_send, h, sizeof(ep_bf16));
    b->recv_bf16 = alloc_rows(b->n_recv, h, sizeof(ep_bf16));
  }
  b->xe = alloc_rows(b->n_recv, h, sizeof(ep_bf16));
  b->ye = alloc_rows(b->n_recv, h, sizeof(ep_bf16));
  b->comb_send = alloc_rows(b->n_recv, h, sizeof(ep_bf16));
  b->comb_recv = alloc_rows(b->n_send, h, sizeof(ep_bf16));
  b->routed = alloc_rows(b->tpr, h, sizeof(ep_bf16));
  b->shared_acc = alloc_rows(b->tpr, h, sizeof(float));
  b->out = alloc_rows(b->tpr, h, sizeof(float));
  b->recv_slot_counts = malloc((size_t)n * (size_t)b->epr * sizeof(int64_t));
  b->send_counts = malloc((size_t)n * sizeof(int));
  b->send_displs = malloc((size_t)n * sizeof(int));
  b->recv_counts = malloc((size_t)n * sizeof(int));
  b->recv_displs = malloc((size_t)n * sizeof(int));
  if (!b->x || !b->w13 || !b->w2 ||
      (b->n_shared > 0 && (!b->w13_sh || !b->w2_sh || !b->shared_tmp)) ||
      (fp8 && (!b->send_q || !b->recv_q || !b->send_scales || !b->recv_scales)) ||
      (!fp8 && (!b->send_bf16 || !b->recv_bf16)) || !b->xe || !b->ye || !b->comb_send ||
      !b->comb_recv || !b->routed || !b->shared_acc || !b->out || !b->recv_slot_counts ||
      !b->send_counts || !b->send_displs || !b->recv_counts || !b->recv_displs) {
    ep_log_error("rank %d: out of memory for the CPU backend's buffers", (int)rk->rank);
    st = EP_ERR_NOMEM;
    goto fail;
  }
  if ((st = to_int_counts(rk->layout.send_counts, rk->layout.send_displs, n, b->send_counts,
                          b->send_displs)) != EP_OK)
    goto fail;

  EP_MPI_TRY(rk->rank, MPI_Type_contiguous(h, MPI_UINT16_T, &b->row_bf16));
  EP_MPI_TRY(rk->rank, MPI_Type_contiguous(h, MPI_UINT8_T, &b->row_fp8));
  EP_MPI_TRY(rk->rank, MPI_Type_contiguous(h / EP_FP8_BLOCK > 0 ? h / EP_FP8_BLOCK : 1, MPI_FLOAT,
                                           &b->row_scales));
  b->types_made = 1;
  EP_MPI_TRY(rk->rank, MPI_Type_commit(&b->row_bf16));
  EP_MPI_TRY(rk->rank, MPI_Type_commit(&b->row_fp8));
  EP_MPI_TRY(rk->rank, MPI_Type_commit(&b->row_scales));

  ep_real_tokens_fill(&rk->shape, (int64_t)rk->rank * b->tpr, b->tpr, b->x);
  for (int32_t s = 0; s < b->epr; s++)
    ep_real_expert_fill(&rk->shape, plan->placement.expert_of_slot[(size_t)rk->rank * b->epr + s],
                        b->w13 + (size_t)s * w13_elems, b->w2 + (size_t)s * w2_elems);
  for (int32_t s = 0; s < b->n_shared; s++)
    ep_real_expert_fill(&rk->shape, rk->shape.n_experts + s, b->w13_sh + (size_t)s * w13_elems,
                        b->w2_sh + (size_t)s * w2_elems);
  *out = b;
  return EP_OK;
fail:
  ep_cpu_backend_free(b);
  return st;
}

ep_status ep_cpu_backend_start(ep_cpu_backend *b)
{
  ep_status st = EP_OK;
  if (!b)
    return EP_ERR_INVALID;
  EP_MPI_TRY(b->rk->rank, MPI_Barrier(b->comm));
  b->t0_s = MPI_Wtime();
  return EP_OK;
fail:
  return st;
}

float *ep_cpu_backend_output(ep_cpu_backend *b)
{
  return b ? b->out : NULL;
}

/* The engine passes the plan and rank again: they must be the ones set up. */
static ep_status check_call(const ep_cpu_backend *b, const ep_plan *plan, int32_t rank,
                            const ep_timing *out)
{
  if (!b || !out || plan != b->rk->plan || rank != b->rk->rank) {
    ep_log_error("CPU backend called for rank %d with another plan or rank than set up (%d)",
                 (int)rank, b ? (int)b->rk->rank : -1);
    return EP_ERR_INVALID;
  }
  return EP_OK;
}

static ep_status cpu_dispatch(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  ep_cpu_backend *b = ctx;
  ep_status st = check_call(b, plan, rank, out);
  if (st != EP_OK)
    return st;
  ep_real_rank *rk = b->rk;
  const int32_t n = plan->n_ranks;
  out->start_us = now_us(b);
  /* Counts exchange: each destination learns how many rows per local expert come. */
  EP_MPI_TRY(rank, MPI_Alltoall(rk->layout.send_slot_counts, b->epr, MPI_INT64_T,
                                b->recv_slot_counts, b->epr, MPI_INT64_T, b->comm));
  if ((st = ep_real_rank_set_recv(rk, b->recv_slot_counts)) != EP_OK)
    goto fail;
  if ((st = to_int_counts(rk->layout.recv_counts, rk->layout.recv_displs, n, b->recv_counts,
                          b->recv_displs)) != EP_OK)
    goto fail;
  if (rk->wire == EP_DTYPE_FP8) {
    if ((st = ep_moe_permute_fp8_ref(b->tpr, plan->top_k, b->hidden, b->n_send, b->x,
                                     rk->copy_send_slot, b->send_q, b->send_scales)) != EP_OK)
      goto fail;
    EP_MPI_TRY(rank, MPI_Alltoallv(b->send_q, b->send_counts, b->send_displs, b->row_fp8, b->recv_q,
                                   b->recv_counts, b->recv_displs, b->row_fp8, b->comm));
    EP_MPI_TRY(rank, MPI_Alltoallv(b->send_scales, b->send_counts, b->send_displs, b->row_scales,
                                   b->recv_scales, b->recv_counts, b->recv_displs, b->row_scales,
                                   b->comm));
    ep_moe_fp8_to_bf16_rows_ref(b->n_recv, b->hidden, b->recv_q, b->recv_scales,
                                rk->recv_expert_slot, b->xe);
  } else {
    if ((st = ep_moe_permute_ref(b->tpr, plan->top_k, b->hidden, b->n_send, b->x,
                                 rk->copy_send_slot, b->send_bf16)) != EP_OK)
      goto fail;
    EP_MPI_TRY(rank,
               MPI_Alltoallv(b->send_bf16, b->send_counts, b->send_displs, b->row_bf16,
                             b->recv_bf16, b->recv_counts, b->recv_displs, b->row_bf16, b->comm));
    /* Recv order -> expert-major: a row scatter, i.e. a permute with top_k 1. */
    if ((st = ep_moe_permute_ref(b->n_recv, 1, b->hidden, b->n_recv, b->recv_bf16,
                                 rk->recv_expert_slot, b->xe)) != EP_OK)
      goto fail;
  }
  out->end_us = now_us(b);
  return EP_OK;
fail:
  return st;
}

static ep_status cpu_expert(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  ep_cpu_backend *b = ctx;
  ep_status st = check_call(b, plan, rank, out);
  if (st != EP_OK)
    return st;
  out->start_us = now_us(b);
  if ((st = ep_moe_expert_ffn_ref(b->epr, b->rk->expert_counts, b->hidden, b->inter, b->xe, b->w13,
                                  b->w2, b->ye)) != EP_OK) {
    ep_log_error("rank %d: routed experts' SwiGLU GEMM failed: %s", (int)rank, ep_status_str(st));
    return st;
  }
  const size_t n_out = (size_t)b->tpr * (size_t)b->hidden;
  memset(b->shared_acc, 0, n_out * sizeof(float));
  const int32_t tpr32 = (int32_t)b->tpr;
  const size_t w13_elems = (size_t)2 * (size_t)b->inter * (size_t)b->hidden;
  const size_t w2_elems = (size_t)b->hidden * (size_t)b->inter;
  for (int32_t s = 0; s < b->n_shared; s++) {
    if ((st = ep_moe_expert_ffn_ref(1, &tpr32, b->hidden, b->inter, b->x,
                                    b->w13_sh + (size_t)s * w13_elems,
                                    b->w2_sh + (size_t)s * w2_elems, b->shared_tmp)) != EP_OK) {
      ep_log_error("rank %d: shared expert %d failed: %s", (int)rank, (int)s, ep_status_str(st));
      return st;
    }
    for (size_t i = 0; i < n_out; i++)
      b->shared_acc[i] += ep_bf16_to_f32(b->shared_tmp[i]);
  }
  out->end_us = now_us(b);
  return EP_OK;
}

static ep_status cpu_combine(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  ep_cpu_backend *b = ctx;
  ep_status st = check_call(b, plan, rank, out);
  if (st != EP_OK)
    return st;
  ep_real_rank *rk = b->rk;
  out->start_us = now_us(b);
  /* Expert-major -> recv order, so each sender's copies go back as one block. */
  if ((st = ep_moe_permute_ref(b->n_recv, 1, b->hidden, b->n_recv, b->ye, rk->expert_recv_slot,
                               b->comb_send)) != EP_OK)
    goto fail;
  EP_MPI_TRY(rank,
             MPI_Alltoallv(b->comb_send, b->recv_counts, b->recv_displs, b->row_bf16, b->comb_recv,
                           b->send_counts, b->send_displs, b->row_bf16, b->comm));
  if ((st = ep_moe_combine_ref(b->tpr, plan->top_k, b->hidden, b->n_send, b->comb_recv,
                               rk->copy_send_slot, rk->weights, b->routed)) != EP_OK)
    goto fail;
  const size_t n_out = (size_t)b->tpr * (size_t)b->hidden;
  for (size_t i = 0; i < n_out; i++)
    b->out[i] = ep_bf16_to_f32(b->routed[i]) + b->shared_acc[i];
  out->end_us = now_us(b);
  return EP_OK;
fail:
  return st;
}

const ep_backend_ops ep_cpu_backend_ops = {
    .name = "cpu",
    .dispatch = cpu_dispatch,
    .expert_compute = cpu_expert,
    .combine = cpu_combine,
    .free = ep_cpu_backend_free,
};
