/* The layer program of ep_layer.h: every buffer, every kernel and every
 * all-to-all of one rank, through the compute and transport tables. */
#include "ep_layer.h"

#include <stdlib.h>
#include <string.h>

#include "ep_real_mpi.h"

/* A table op that failed: name what, with the rank (the op logged the cause). */
#define EP_REP_TRY(rank, what, call)                                                               \
  do {                                                                                             \
    st = (call);                                                                                   \
    if (st != EP_OK) {                                                                             \
      ep_log_error("rank %d: %s failed: %s", (int)(rank), what, ep_status_str(st));                \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

/* Clock marks: 0 is the layer's zero, then each phase's start and end. */
#define EP__MARK_START(p) (1 + 2 * (p))
#define EP__MARK_END(p) (2 + 2 * (p))
#define EP__MARKS (1 + 2 * EP_PHASE_COUNT)

struct ep_layer {
  ep_backend_ops ops;
  ep_real_rank *rk;
  const ep_transport_ops *T;
  const ep_compute_ops *C;
  void *t, *c;
  int t_made, c_made;
  int failed; /* a call failed: the transport must not wait for peers */
  int32_t rank, n_ranks, hidden, inter, epr, n_shared;
  int64_t tpr, n_send, n_recv, w13_elems, w2_elems;
  int64_t *unit_layout;                  /* host [2 * n_ranks]: counts 1 and displacements = rank */
  int64_t *h_recv_counts;                /* host [n_ranks * epr] counts exchange result */
  ep_transport_layout dispatch, combine; /* the exchange layout's, set by each dispatch */

  /* Compute memory: [rows * hidden] unless said. */
  ep_bf16 *x;                   /* [tpr] this rank's tokens */
  ep_bf16 *w13, *w2;            /* [epr * 2I * H], [epr * H * I] local experts by slot */
  ep_bf16 *w13_sh, *w2_sh;      /* shared experts, same layout */
  ep_bf16 *recv;                /* [n_recv] dispatch rows (bf16 wire) */
  ep_fp8 *recv_q;               /* [n_recv] dispatch rows (fp8 wire) */
  float *recv_sc;               /* [n_recv * hidden / 128] their block scales */
  ep_bf16 *xe, *ye;             /* [n_recv] expert-major in and out */
  ep_bf16 *comb_recv;           /* [n_send] own copies back, in send order */
  ep_bf16 *routed, *shared_tmp; /* [tpr] routed experts' sum, one shared expert's output */
  float *shared_acc, *out;      /* [tpr] shared experts' sum, layer output */
  float *weights;               /* [tpr * top_k] router weight of each copy */
  int32_t *copy_send_slot;      /* [tpr * top_k] send row of each copy, -1 if dropped */
  int32_t *recv_expert_slot;    /* [n_recv] expert-major row of each recv row */
  int32_t *expert_recv_slot;    /* [n_recv] its inverse */
  int64_t *recv_counts;         /* [n_ranks * epr] counts exchange result */
  /* Send buffers, the transport's. */
  int64_t *send_counts; /* [n_ranks * epr] the layout's send_slot_counts */
  ep_bf16 *send;        /* [n_send] dispatch rows (bf16 wire) */
  ep_fp8 *send_q;       /* [n_send] dispatch rows (fp8 wire) */
  float *send_sc;       /* [n_send * hidden / 128] */
  ep_bf16 *comb_send;   /* [n_recv] expert outputs in recv order */
};

/* One buffer of the layer: where its pointer lives and its size (0: unused). */
typedef struct buf_spec {
  void **p;
  int64_t bytes;
} buf_spec;

#define EP__COMPUTE_BUFS 20
#define EP__SEND_BUFS 4

static int64_t at_least_1(int64_t rows)
{
  return rows > 0 ? rows : 1;
}

/* The compute buffers, in allocation order. */
static void compute_bufs(ep_layer *L, buf_spec b[EP__COMPUTE_BUFS])
{
  const int fp8 = L->rk->wire == EP_DTYPE_FP8, sh = L->n_shared > 0;
  const int64_t h = L->hidden, bf = (int64_t)sizeof(ep_bf16), nb = h / EP_FP8_BLOCK;
  const int64_t tpr = at_least_1(L->tpr), ns = at_least_1(L->n_send), nr = at_least_1(L->n_recv);
  const int64_t nc = at_least_1(L->rk->n_copies), ne = (int64_t)L->n_ranks * L->epr;
  const buf_spec all[EP__COMPUTE_BUFS] = {
      {(void **)&L->x, tpr * h * bf},
      {(void **)&L->w13, L->epr * L->w13_elems * bf},
      {(void **)&L->w2, L->epr * L->w2_elems * bf},
      {(void **)&L->w13_sh, sh ? L->n_shared * L->w13_elems * bf : 0},
      {(void **)&L->w2_sh, sh ? L->n_shared * L->w2_elems * bf : 0},
      {(void **)&L->shared_tmp, sh ? tpr * h * bf : 0},
      {(void **)&L->recv, fp8 ? 0 : nr * h * bf},
      {(void **)&L->recv_q, fp8 ? nr * h : 0},
      {(void **)&L->recv_sc, fp8 ? nr * nb * (int64_t)sizeof(float) : 0},
      {(void **)&L->xe, nr * h * bf},
      {(void **)&L->ye, nr * h * bf},
      {(void **)&L->comb_recv, ns * h * bf},
      {(void **)&L->routed, tpr * h * bf},
      {(void **)&L->shared_acc, tpr * h * (int64_t)sizeof(float)},
      {(void **)&L->out, tpr * h * (int64_t)sizeof(float)},
      {(void **)&L->weights, nc * (int64_t)sizeof(float)},
      {(void **)&L->copy_send_slot, nc * (int64_t)sizeof(int32_t)},
      {(void **)&L->recv_expert_slot, nr * (int64_t)sizeof(int32_t)},
      {(void **)&L->expert_recv_slot, nr * (int64_t)sizeof(int32_t)},
      {(void **)&L->recv_counts, ne * (int64_t)sizeof(int64_t)},
  };
  memcpy(b, all, sizeof all);
}

/* The transport's send buffers, in allocation order (the same on every rank). */
static void send_bufs(ep_layer *L, buf_spec b[EP__SEND_BUFS])
{
  const int fp8 = L->rk->wire == EP_DTYPE_FP8;
  const int64_t h = L->hidden, bf = (int64_t)sizeof(ep_bf16), nb = h / EP_FP8_BLOCK;
  const int64_t ns = at_least_1(L->n_send), nr = at_least_1(L->n_recv);
  const buf_spec all[EP__SEND_BUFS] = {
      {(void **)&L->send_counts, (int64_t)L->n_ranks * L->epr * (int64_t)sizeof(int64_t)},
      {fp8 ? (void **)&L->send_q : (void **)&L->send, ns * h * (fp8 ? 1 : bf)},
      {(void **)&L->send_sc, fp8 ? ns * nb * (int64_t)sizeof(float) : 0},
      {(void **)&L->comb_send, nr * h * bf},
  };
  memcpy(b, all, sizeof all);
}

/* Allocates the used buffers of b[n] with alloc (a compute's or a transport's). */
static ep_status alloc_bufs(const buf_spec *b, int n, ep_status (*alloc)(void *, int64_t, void **),
                            void *ctx)
{
  ep_status st = EP_OK;
  for (int i = 0; i < n && st == EP_OK; i++)
    if (b[i].bytes > 0)
      st = alloc(ctx, b[i].bytes, b[i].p);
  return st;
}

void ep_layer_free(void *ctx)
{
  ep_layer *L = ctx;
  if (!L)
    return;
  if (L->t_made)
    L->T->free(L->t, L->failed);
  if (L->c_made) {
    (void)L->C->sync(L->c); /* nothing may still use the buffers; a failure logs itself */
    buf_spec b[EP__COMPUTE_BUFS];
    compute_bufs(L, b);
    for (int i = 0; i < EP__COMPUTE_BUFS; i++)
      L->C->buf_free(L->c, *b[i].p);
    L->C->free(L->c);
  }
  free(L->unit_layout);
  free(L->h_recv_counts);
  free(L);
}

static ep_status layer_begin(void *ctx, const ep_plan *plan, int32_t rank);
static ep_status layer_dispatch(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out);
static ep_status layer_expert(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out);
static ep_status layer_combine(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out);
static ep_status layer_end(void *ctx, const ep_plan *plan, int32_t rank);
static ep_status layer_output(void *ctx, float *out);

ep_status ep_layer_init(ep_layer **out, ep_real_rank *rk, const ep_layer_cfg *cfg)
{
  ep_status st = EP_OK;
  if (!out || !rk || !rk->plan || !cfg || !cfg->transport || !cfg->compute)
    return EP_ERR_INVALID;
  *out = NULL;
  ep_layer *L = calloc(1, sizeof *L);
  if (!L) {
    ep_log_error("rank %d: out of memory for the layer", (int)rk->rank);
    return EP_ERR_NOMEM;
  }
  const ep_plan *plan = rk->plan;
  const int32_t n = plan->n_ranks, r = rk->rank;
  L->ops = (ep_backend_ops){.name = cfg->name,
                            .begin = layer_begin,
                            .dispatch = layer_dispatch,
                            .expert_compute = layer_expert,
                            .combine = layer_combine,
                            .end = layer_end,
                            .output = layer_output,
                            .free = ep_layer_free};
  L->rk = rk;
  L->T = cfg->transport;
  L->C = cfg->compute;
  L->rank = r;
  L->n_ranks = n;
  L->hidden = rk->shape.hidden;
  L->inter = rk->shape.intermediate;
  L->epr = plan->placement.experts_per_rank;
  L->n_shared = rk->shape.n_shared;
  L->tpr = plan->tokens_per_rank;
  L->n_send = rk->layout.n_send;
  L->n_recv = rk->n_recv_planned;
  L->w13_elems = 2 * (int64_t)L->inter * L->hidden;
  L->w2_elems = (int64_t)L->hidden * L->inter;

  int size = 0;
  EP_MPI_TRY(r, MPI_Comm_size(cfg->comm, &size));
  if (size != n) {
    ep_log_error("rank %d: the %s backend needs %d ranks, the communicator has %d", (int)r,
                 cfg->name, (int)n, size);
    st = EP_ERR_INVALID;
    goto fail;
  }
  L->unit_layout = malloc(2 * (size_t)n * sizeof(int64_t));
  L->h_recv_counts = malloc((size_t)n * (size_t)L->epr * sizeof(int64_t));
  if (!L->unit_layout || !L->h_recv_counts) {
    ep_log_error("rank %d: out of memory for the counts exchange", (int)r);
    st = EP_ERR_NOMEM;
    goto fail;
  }
  for (int32_t i = 0; i < n; i++) {
    L->unit_layout[i] = 1;
    L->unit_layout[n + i] = i;
  }

  EP_REP_TRY(r, "setting up the compute", L->C->init(&L->c, cfg->device));
  L->c_made = 1;
  buf_spec b[EP__COMPUTE_BUFS];
  compute_bufs(L, b);
  EP_REP_TRY(r, "allocating the layer's buffers",
             alloc_bufs(b, EP__COMPUTE_BUFS, L->C->alloc, L->c));

  /* Inputs: seeded tokens and weights; the router's weights and send slots. */
  EP_REP_TRY(r, "filling the tokens",
             L->C->fill_tokens(L->c, &rk->shape, (int64_t)r * L->tpr, L->tpr, L->x));
  for (int32_t s = 0; s < L->epr + L->n_shared; s++) {
    const int shared = s >= L->epr;
    const int32_t e = shared
                          ? rk->shape.n_experts + (s - L->epr)
                          : plan->placement.expert_of_slot[(size_t)r * (size_t)L->epr + (size_t)s];
    ep_bf16 *w13 = shared ? L->w13_sh + (s - L->epr) * L->w13_elems : L->w13 + s * L->w13_elems;
    ep_bf16 *w2 = shared ? L->w2_sh + (s - L->epr) * L->w2_elems : L->w2 + s * L->w2_elems;
    EP_REP_TRY(r, "filling the expert weights", L->C->fill_expert(L->c, &rk->shape, e, w13, w2));
  }
  EP_REP_TRY(r, "copying the router weights",
             L->C->copy(L->c, L->weights, rk->weights, rk->n_copies * (int64_t)sizeof(float)));
  EP_REP_TRY(r, "copying the send slots",
             L->C->copy(L->c, L->copy_send_slot, rk->copy_send_slot,
                        rk->n_copies * (int64_t)sizeof(int32_t)));

  const ep_transport_cfg tcfg = {cfg->comm, r, n, L->C->stream(L->c), EP__MARKS};
  EP_REP_TRY(r, "setting up the transport", L->T->init(&L->t, &tcfg));
  L->t_made = 1;
  buf_spec sb[EP__SEND_BUFS];
  send_bufs(L, sb);
  EP_REP_TRY(r, "allocating the send buffers", alloc_bufs(sb, EP__SEND_BUFS, L->T->alloc, L->t));
  EP_REP_TRY(r, "copying the send counts",
             L->C->copy(L->c, L->send_counts, rk->layout.send_slot_counts,
                        (int64_t)n * L->epr * (int64_t)sizeof(int64_t)));
  EP_REP_TRY(r, "the layer's setup", L->C->sync(L->c));
  *out = L;
  return EP_OK;
fail:
  L->failed = 1;
  ep_layer_free(L);
  return st;
}

const ep_backend_ops *ep_layer_ops(const ep_layer *layer)
{
  return layer ? &layer->ops : NULL;
}

/* The engine passes the plan and rank again: they must be the ones set up. */
static ep_status check_call(const ep_layer *L, const ep_plan *plan, int32_t rank)
{
  if (!L || plan != L->rk->plan || rank != L->rank) {
    ep_log_error("layer called for rank %d with another plan or rank than set up (%d)", (int)rank,
                 L ? (int)L->rank : -1);
    return EP_ERR_INVALID;
  }
  return EP_OK;
}

/* begin and end: a step of the layer outside the phases. */
typedef ep_status (*layer_step)(ep_layer *L);

/* One phase p: its start mark, its work, its end mark, a wait for it, both in µs. */
static ep_status run_phase(void *ctx, const ep_plan *plan, int32_t rank, ep_phase p,
                           layer_step work, ep_timing *out)
{
  ep_layer *L = ctx;
  ep_status st = check_call(L, plan, rank);
  if (st != EP_OK)
    return st;
  EP_REP_TRY(rank, "the clock", L->T->mark(L->t, EP__MARK_START(p)));
  if ((st = work(L)) != EP_OK)
    goto fail;
  EP_REP_TRY(rank, "the clock", L->T->mark(L->t, EP__MARK_END(p)));
  EP_REP_TRY(rank, "the clock", L->T->elapsed_us(L->t, EP__MARK_END(p), &out->end_us));
  EP_REP_TRY(rank, "the clock", L->T->elapsed_us(L->t, EP__MARK_START(p), &out->start_us));
  return EP_OK;
fail:
  L->failed = 1;
  return st;
}

/* Wait for the setup's (or the previous layer's) queued work, then the common
 * barrier and the clock's zero. */
static ep_status begin_work(ep_layer *L)
{
  ep_status st = EP_OK;
  EP_REP_TRY(L->rank, "waiting for queued work", L->C->sync(L->c));
  EP_REP_TRY(L->rank, "the barrier before the layer", L->T->barrier(L->t));
  EP_REP_TRY(L->rank, "the clock's zero", L->T->mark(L->t, 0));
fail:
  return st;
}

static ep_status dispatch_work(ep_layer *L)
{
  ep_status st = EP_OK;
  ep_real_rank *rk = L->rk;
  const ep_exchange_layout *X = &rk->layout;
  const int32_t n = L->n_ranks, h = L->hidden, r = L->rank, top_k = rk->plan->top_k;
  /* Counts exchange: one row of epr counts to and from every rank, then to
   * the host, where the recv layout is built and checked against the plan. */
  const ep_transport_layout unit = {L->unit_layout, L->unit_layout + n, L->unit_layout,
                                    L->unit_layout + n};
  const ep_transport_rows counts = {L->send_counts, L->recv_counts,
                                    L->epr * (int64_t)sizeof(int64_t)};
  EP_REP_TRY(r, "the counts exchange", L->T->alltoallv(L->t, &unit, 1, &counts));
  EP_REP_TRY(r, "copying the counts",
             L->C->copy(L->c, L->h_recv_counts, L->recv_counts,
                        (int64_t)n * L->epr * (int64_t)sizeof(int64_t)));
  EP_REP_TRY(r, "copying the counts", L->C->sync(L->c));
  if ((st = ep_real_rank_set_recv(rk, L->h_recv_counts)) != EP_OK)
    return st;
  L->dispatch =
      (ep_transport_layout){X->send_counts, X->send_displs, X->recv_counts, X->recv_displs};
  L->combine =
      (ep_transport_layout){X->recv_counts, X->recv_displs, X->send_counts, X->send_displs};
  const int64_t slot_bytes = L->n_recv * (int64_t)sizeof(int32_t);
  EP_REP_TRY(r, "copying the recv slots",
             L->C->copy(L->c, L->recv_expert_slot, rk->recv_expert_slot, slot_bytes));
  EP_REP_TRY(r, "copying the recv slots",
             L->C->copy(L->c, L->expert_recv_slot, rk->expert_recv_slot, slot_bytes));
  if (rk->wire == EP_DTYPE_FP8) {
    EP_REP_TRY(r, "permute_fp8",
               L->C->permute_fp8(L->c, L->tpr, top_k, h, L->n_send, L->x, L->copy_send_slot,
                                 L->send_q, L->send_sc));
    /* Rows and their scales in one transfer, as the plan's one message of
     * hidden + scale bytes per copy. */
    const ep_transport_rows rows[2] = {
        {L->send_q, L->recv_q, h},
        {L->send_sc, L->recv_sc, h / EP_FP8_BLOCK * (int64_t)sizeof(float)}};
    EP_REP_TRY(r, "the dispatch all-to-all", L->T->alltoallv(L->t, &L->dispatch, 2, rows));
    if (L->n_recv > 0)
      EP_REP_TRY(r, "fp8_to_bf16_rows",
                 L->C->fp8_to_bf16_rows(L->c, L->n_recv, h, L->recv_q, L->recv_sc,
                                        L->recv_expert_slot, L->xe));
  } else {
    EP_REP_TRY(r, "permute",
               L->C->permute(L->c, L->tpr, top_k, h, L->n_send, L->x, L->copy_send_slot, L->send));
    const ep_transport_rows rows = {L->send, L->recv, h * (int64_t)sizeof(ep_bf16)};
    EP_REP_TRY(r, "the dispatch all-to-all", L->T->alltoallv(L->t, &L->dispatch, 1, &rows));
    /* Recv order -> expert-major: a row scatter, i.e. a permute with top_k 1. */
    if (L->n_recv > 0)
      EP_REP_TRY(
          r, "permute (recv to expert-major)",
          L->C->permute(L->c, L->n_recv, 1, h, L->n_recv, L->recv, L->recv_expert_slot, L->xe));
  }
fail:
  return st;
}

static ep_status expert_work(ep_layer *L)
{
  ep_status st = EP_OK;
  const int32_t h = L->hidden, r = L->rank, tpr32 = (int32_t)L->tpr;
  if (L->n_recv > 0)
    EP_REP_TRY(r, "expert_ffn (routed experts)",
               L->C->expert_ffn(L->c, L->epr, L->rk->expert_counts, h, L->inter, L->xe, L->w13,
                                L->w2, L->ye));
  if (L->n_shared == 0)
    EP_REP_TRY(r, "zeroing the shared output",
               L->C->zero(L->c, L->shared_acc, L->tpr * h * (int64_t)sizeof(float)));
  for (int32_t s = 0; s < L->n_shared; s++) {
    EP_REP_TRY(r, "expert_ffn (shared expert)",
               L->C->expert_ffn(L->c, 1, &tpr32, h, L->inter, L->x, L->w13_sh + s * L->w13_elems,
                                L->w2_sh + s * L->w2_elems, L->shared_tmp));
    EP_REP_TRY(r, "accumulate_bf16",
               L->C->accumulate_bf16(L->c, L->tpr * h, L->shared_tmp, L->shared_acc, s == 0));
  }
fail:
  return st;
}

static ep_status combine_work(ep_layer *L)
{
  ep_status st = EP_OK;
  const int32_t h = L->hidden, r = L->rank, top_k = L->rk->plan->top_k;
  /* Expert-major -> recv order, so each sender's copies go back as one block. */
  if (L->n_recv > 0)
    EP_REP_TRY(
        r, "permute (expert-major to recv order)",
        L->C->permute(L->c, L->n_recv, 1, h, L->n_recv, L->ye, L->expert_recv_slot, L->comb_send));
  const ep_transport_rows rows = {L->comb_send, L->comb_recv, h * (int64_t)sizeof(ep_bf16)};
  EP_REP_TRY(r, "the combine all-to-all", L->T->alltoallv(L->t, &L->combine, 1, &rows));
  EP_REP_TRY(r, "combine",
             L->C->combine(L->c, L->tpr, top_k, h, L->n_send, L->comb_recv, L->copy_send_slot,
                           L->weights, L->routed));
  EP_REP_TRY(r, "add_bf16_f32",
             L->C->add_bf16_f32(L->c, L->tpr * h, L->routed, L->shared_acc, L->out));
fail:
  return st;
}

/* Kernel faults surface at the next sync: they are reported with the layer. */
static ep_status end_work(ep_layer *L)
{
  ep_status st = EP_OK;
  EP_REP_TRY(L->rank, "the layer's kernels", L->C->sync(L->c));
fail:
  return st;
}

/* begin and end run their step like a phase without a clock. */
static ep_status run_step(void *ctx, const ep_plan *plan, int32_t rank, layer_step work)
{
  ep_layer *L = ctx;
  ep_status st = check_call(L, plan, rank);
  if (st == EP_OK && (st = work(L)) != EP_OK)
    L->failed = 1;
  return st;
}

static ep_status layer_begin(void *ctx, const ep_plan *plan, int32_t rank)
{
  return run_step(ctx, plan, rank, begin_work);
}

static ep_status layer_dispatch(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  return run_phase(ctx, plan, rank, EP_PHASE_DISPATCH, dispatch_work, out);
}

static ep_status layer_expert(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  return run_phase(ctx, plan, rank, EP_PHASE_EXPERT, expert_work, out);
}

static ep_status layer_combine(void *ctx, const ep_plan *plan, int32_t rank, ep_timing *out)
{
  return run_phase(ctx, plan, rank, EP_PHASE_COMBINE, combine_work, out);
}

static ep_status layer_end(void *ctx, const ep_plan *plan, int32_t rank)
{
  return run_step(ctx, plan, rank, end_work);
}

static ep_status layer_output(void *ctx, float *out)
{
  ep_layer *L = ctx;
  ep_status st = EP_OK;
  if (!L || !out)
    return EP_ERR_INVALID;
  EP_REP_TRY(L->rank, "copying the output",
             L->C->copy(L->c, out, L->out, L->tpr * L->hidden * (int64_t)sizeof(float)));
  EP_REP_TRY(L->rank, "copying the output", L->C->sync(L->c));
  return EP_OK;
fail:
  L->failed = 1;
  return st;
}
