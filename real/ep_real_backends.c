/* The backend registry: names to (transport, compute) pairs, what this build
 * has, and the checks of where each may run. The only file that asks the build
 * configuration about NCCL. */
#include "ep_real_backends.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ep_config.h"
#include "ep_real.h"

/* GPU(x) is x where the CUDA + NCCL sources are built, else NULL. */
#if EP_HAVE_CUDA && EP_HAVE_NCCL
#define GPU(x) (x)
#else
#define GPU(x) NULL
#endif

/* Name, description, transport, compute, one GPU per rank, one node. */
static const ep_real_backend backends[] = {
    {"cpu", "MPI_Alltoallv, C reference kernels, host memory", &ep_transport_mpi, &ep_compute_ref,
     0, 0},
    {"nccl", "grouped ncclSend/ncclRecv, CUDA kernels, one GPU per rank", GPU(&ep_transport_nccl),
     GPU(&ep_compute_cuda), 1, 0},
    {"cuda-ipc", "CUDA IPC copies, CUDA kernels, one node, shared GPUs: for tests",
     GPU(&ep_transport_ipc), GPU(&ep_compute_cuda), 0, 1},
};

const ep_real_backend *ep_real_backend_at(int32_t i)
{
  return i >= 0 && i < (int32_t)(sizeof backends / sizeof backends[0]) ? &backends[i] : NULL;
}

const ep_real_backend *ep_real_backend_find(const char *name)
{
  const ep_real_backend *be = NULL;
  for (int32_t i = 0; name && (be = ep_real_backend_at(i)); i++)
    if (!strcmp(be->name, name))
      return be;
  return NULL;
}

int ep_real_backend_built(const ep_real_backend *be)
{
  return be && be->transport && be->compute;
}

ep_status ep_real_backend_pick(const char *name, int loud, const ep_real_backend **out)
{
  const ep_real_backend *be = NULL;
  *out = NULL;
  if (name && !strcmp(name, "auto")) {
    for (int32_t i = 0; (be = ep_real_backend_at(i)); i++) {
      if (ep_real_backend_built(be) && be->compute->on_gpu && be->compute->device_count() > 0) {
        *out = be;
        return EP_OK;
      }
    }
    *out = ep_real_backend_find("cpu");
    return EP_OK;
  }
  if (!(be = ep_real_backend_find(name)))
    return EP_ERR_INVALID;
  if (!ep_real_backend_built(be)) {
    if (loud)
      ep_log_error("--backend %s: this epsim-real was built without CUDA+NCCL (EP_HAVE_CUDA=%d, "
                   "EP_HAVE_NCCL=%d); use --backend cpu",
                   name, EP_HAVE_CUDA, EP_HAVE_NCCL);
    return EP_ERR_UNSUPPORTED;
  }
  if (be->compute->on_gpu && be->compute->device_count() <= 0) {
    if (loud)
      ep_log_error("--backend %s: no CUDA device is visible on this machine (use --backend cpu)",
                   name);
    return EP_ERR_UNSUPPORTED;
  }
  *out = be;
  return EP_OK;
}

static double physical_ram_bytes(void)
{
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
}

/* The host: --max-mem, else this node's RAM shared by its ranks. */
static void host_site(const ep_real_backend *be, const ep_real_ranks *w, double max_mem_bytes,
                      ep_real_site *out)
{
  snprintf(out->description, sizeof out->description, "%s", be->name);
  if (max_mem_bytes > 0) {
    out->mem_limit_bytes = max_mem_bytes;
    snprintf(out->mem_limit_what, sizeof out->mem_limit_what, "--max-mem");
    return;
  }
  char ram[32];
  const int32_t n_local = w->n_local > 0 ? w->n_local : 1;
  out->mem_limit_bytes = physical_ram_bytes() / n_local;
  snprintf(out->mem_limit_what, sizeof out->mem_limit_what,
           "%s backend: physical RAM %s / %d ranks on this node; set --max-mem", be->name,
           ep_real_format_bytes(physical_ram_bytes(), ram, sizeof ram), (int)w->n_local);
}

ep_status ep_real_backend_setup(const ep_real_backend *be, const ep_real_ranks *w,
                                double max_mem_bytes, ep_real_site *out)
{
  memset(out, 0, sizeof *out);
  out->device = -1;
  if (!ep_real_backend_built(be))
    return EP_ERR_UNSUPPORTED;
  if (!be->compute->on_gpu) {
    host_site(be, w, max_mem_bytes, out);
    return EP_OK;
  }
  const int32_t n_dev = be->compute->device_count();
  const int32_t per_gpu = n_dev > 0 ? (w->n_local + n_dev - 1) / n_dev : 1; /* ranks sharing one */
  if (be->one_gpu_per_rank && w->n_local > n_dev) {
    if (w->local_rank == 0)
      ep_log_error("--backend %s: %d ranks on this node but %d GPU%s; NCCL needs one GPU per "
                   "rank (use fewer ranks per node, --backend cuda-ipc, or --backend cpu)",
                   be->name, (int)w->n_local, (int)n_dev, n_dev == 1 ? "" : "s");
    return EP_ERR_INVALID;
  }
  if (be->one_node && w->n_local != w->n_ranks) {
    if (w->rank == 0)
      ep_log_error("--backend %s: all ranks must run on one node (%d of %d ranks share rank 0's); "
                   "use --backend nccl across nodes",
                   be->name, (int)w->n_local, (int)w->n_ranks);
    return EP_ERR_INVALID;
  }
  ep_compute_device dev;
  ep_status st = be->compute->device_query(w->rank, w->local_rank, &dev);
  char tversion[64] = "";
  if (st == EP_OK && be->transport->version)
    st = be->transport->version(tversion, sizeof tversion);
  if (st != EP_OK)
    return st;
  out->device = dev.device;
  snprintf(out->description, sizeof out->description, "%s (GPU %d %s, %s%s%s)", be->name,
           (int)dev.device, dev.name, dev.versions, tversion[0] ? ", " : "", tversion);
  /* Leave room for the CUDA context's and NCCL's own buffers, per rank on the GPU. */
  char fb[32], tb[32];
  out->mem_limit_bytes = (double)dev.free_bytes / per_gpu - 1.5 * 1024 * 1024 * 1024;
  snprintf(out->mem_limit_what, sizeof out->mem_limit_what,
           "GPU %d %s: %s free of %s, shared by %d rank%s, less 1.5 GiB each for CUDA/NCCL",
           (int)dev.device, dev.name, ep_real_format_bytes((double)dev.free_bytes, fb, sizeof fb),
           ep_real_format_bytes((double)dev.total_bytes, tb, sizeof tb), (int)per_gpu,
           per_gpu == 1 ? "" : "s");
  return EP_OK;
}
