/* The backend registry: names to (transport, compute) pairs, what this build
 * has, and the checks of where each may run. The only file that asks the build
 * configuration about NCCL. */
#include "ep_real_backends.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ep_config.h"
#include "ep_real.h"

/* Transport, compute, one GPU per rank, one node. */
static const ep_real_backend cpu = {&ep_transport_mpi, &ep_compute_ref, 0, 0};
/* GPU(x) is x where the CUDA + NCCL sources are built, else NULL. */
#if EP_HAVE_CUDA && EP_HAVE_NCCL
static const ep_real_backend nccl = {&ep_transport_nccl, &ep_compute_cuda, 1, 0};
static const ep_real_backend cuda_ipc = {&ep_transport_ipc, &ep_compute_cuda, 0, 1};
#define GPU(x) (x)
#else
#define GPU(x) NULL
#endif

static const ep_backend_entry cpu_row = {"cpu", "MPI_Alltoallv, C reference kernels, host memory",
                                         &cpu};
static const ep_backend_entry nccl_row = {
    "nccl", "grouped ncclSend/ncclRecv, CUDA kernels, one GPU per rank", GPU(&nccl)};
static const ep_backend_entry cuda_ipc_row = {
    "cuda-ipc", "CUDA IPC copies, CUDA kernels, one node, shared GPUs: for tests", GPU(&cuda_ipc)};

const ep_backend_entry *const ep_real_backends[] = {&cpu_row, &nccl_row, &cuda_ipc_row, NULL};

/* A GPU backend of this build with a device visible to this process. */
static int has_gpu(const ep_backend_entry *be)
{
  const ep_real_backend *impl = be->impl;
  return impl->compute->on_gpu && impl->compute->device_count() > 0;
}

ep_status ep_real_backend_pick(const char *name, int loud, const ep_backend_entry **out)
{
  *out = NULL;
  if (name && !strcmp(name, "auto")) {
    for (const ep_backend_entry *const *be = ep_real_backends; *be; be++)
      if ((*be)->impl && has_gpu(*be)) {
        *out = *be;
        return EP_OK;
      }
    *out = &cpu_row;
    return EP_OK;
  }
  const ep_backend_entry *be = ep_backend_find(ep_real_backends, name);
  if (!be)
    return EP_ERR_INVALID;
  if (!be->impl) {
    if (loud)
      ep_log_error("--backend %s: this epsim-real was built without CUDA+NCCL (EP_HAVE_CUDA=%d, "
                   "EP_HAVE_NCCL=%d); use --backend cpu",
                   name, EP_HAVE_CUDA, EP_HAVE_NCCL);
    return EP_ERR_UNSUPPORTED;
  }
  const ep_real_backend *impl = be->impl;
  if (impl->compute->on_gpu && !has_gpu(be)) {
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
static void host_site(const ep_backend_entry *be, const ep_real_ranks *w, double max_mem_bytes,
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

ep_status ep_real_backend_setup(const ep_backend_entry *be, const ep_real_ranks *w,
                                double max_mem_bytes, ep_real_site *out)
{
  memset(out, 0, sizeof *out);
  out->device = -1;
  const ep_real_backend *impl = be->impl;
  if (!impl)
    return EP_ERR_UNSUPPORTED;
  if (!impl->compute->on_gpu) {
    host_site(be, w, max_mem_bytes, out);
    return EP_OK;
  }
  const int32_t n_dev = impl->compute->device_count();
  const int32_t per_gpu = n_dev > 0 ? (w->n_local + n_dev - 1) / n_dev : 1; /* ranks sharing one */
  if (impl->one_gpu_per_rank && w->n_local > n_dev) {
    if (w->local_rank == 0)
      ep_log_error("--backend %s: %d ranks on this node but %d GPU%s; NCCL needs one GPU per "
                   "rank (use fewer ranks per node, --backend cuda-ipc, or --backend cpu)",
                   be->name, (int)w->n_local, (int)n_dev, n_dev == 1 ? "" : "s");
    return EP_ERR_INVALID;
  }
  if (impl->one_node && w->n_local != w->n_ranks) {
    if (w->rank == 0)
      ep_log_error("--backend %s: all ranks must run on one node (%d of %d ranks share rank 0's); "
                   "use --backend nccl across nodes",
                   be->name, (int)w->n_local, (int)w->n_ranks);
    return EP_ERR_INVALID;
  }
  ep_compute_device dev;
  ep_status st = impl->compute->device_query(w->rank, w->local_rank, &dev);
  char tversion[64] = "";
  if (st == EP_OK && impl->transport->version)
    st = impl->transport->version(tversion, sizeof tversion);
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
