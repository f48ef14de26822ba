/* The NCCL backend's own CUDA kernels (real/ep_real_cuda.cu) against their C
 * references, bit for bit, on fresh seeded inputs with poisoned outputs.
 * Exits 77 where there is no GPU. */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ep_real.h"
#include "ep_real_cuda.h"

static void *to_device(const void *h, size_t bytes)
{
  void *d = NULL;
  if (cudaMalloc(&d, bytes) != cudaSuccess)
    return NULL;
  if (h && cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
    cudaFree(d);
    return NULL;
  }
  /* Poison: NaN bf16 / NaN float patterns. The kernels run on the legacy
   * default stream too (stream NULL), so both copies are ordered before them. */
  if (!h && cudaMemset(d, 0xff, bytes) != cudaSuccess) {
    cudaFree(d);
    return NULL;
  }
  return d;
}

static void check_fp8_rows(int64_t n_rows, int32_t hidden, uint64_t seed)
{
  const size_t nq = (size_t)n_rows * (size_t)hidden, nb = (size_t)n_rows * (size_t)(hidden / 128);
  ep_fp8 *q = malloc(nq);
  float *sc = malloc(sizeof(float) * nb), *u = malloc(sizeof(float) * nq);
  int32_t *slot = malloc(sizeof(int32_t) * (size_t)n_rows);
  ep_bf16 *want = malloc(sizeof(ep_bf16) * nq), *got = malloc(sizeof(ep_bf16) * nq);
  ep_moe_fill_uniform_f32(u, (int64_t)nq, seed, -448.0f, 448.0f);
  for (size_t i = 0; i < nq; i++)
    q[i] = ep_f32_to_fp8(u[i]);
  ep_moe_fill_uniform_f32(sc, (int64_t)nb, seed + 1, 1e-4f, 1e-2f);
  for (int64_t i = 0; i < n_rows; i++)
    slot[i] = (int32_t)((i * 7 + 3) % n_rows); /* a permutation: 7 is coprime with the sizes */
  memset(want, 0xff, sizeof(ep_bf16) * nq);
  ep_real_fp8_to_bf16_rows_ref(n_rows, hidden, q, sc, slot, want);
  ep_fp8 *d_q = to_device(q, nq);
  float *d_sc = to_device(sc, sizeof(float) * nb);
  int32_t *d_slot = to_device(slot, sizeof(int32_t) * (size_t)n_rows);
  ep_bf16 *d_out = to_device(NULL, sizeof(ep_bf16) * nq);
  CHECK(d_q && d_sc && d_slot && d_out);
  if (d_q && d_sc && d_slot && d_out) {
    CHECK_EQ_INT(ep_real_cuda_fp8_to_bf16_rows(NULL, n_rows, hidden, d_q, d_sc, d_slot, d_out),
                 EP_OK);
    CHECK_EQ_INT(cudaDeviceSynchronize(), cudaSuccess);
    CHECK_EQ_INT(cudaMemcpy(got, d_out, sizeof(ep_bf16) * nq, cudaMemcpyDeviceToHost), cudaSuccess);
    int64_t diff = 0;
    for (size_t i = 0; i < nq; i++)
      diff += want[i] != got[i];
    CHECK_EQ_INT(diff, 0);
  }
  cudaFree(d_q);
  cudaFree(d_sc);
  cudaFree(d_slot);
  cudaFree(d_out);
  free(q);
  free(sc);
  free(u);
  free(slot);
  free(want);
  free(got);
}

static void check_sums(int64_t n, uint64_t seed)
{
  ep_bf16 *a = malloc(sizeof(ep_bf16) * (size_t)n), *a2 = malloc(sizeof(ep_bf16) * (size_t)n);
  float *acc = malloc(sizeof(float) * (size_t)n), *out = malloc(sizeof(float) * (size_t)n);
  float *got = malloc(sizeof(float) * (size_t)n);
  ep_moe_fill_uniform_bf16(a, n, seed, -3.0f, 3.0f);
  ep_moe_fill_uniform_bf16(a2, n, seed + 1, -3.0f, 3.0f);
  /* References: acc = a + a2 (first, then accumulate); out = a + acc. */
  for (int64_t i = 0; i < n; i++) {
    acc[i] = ep_bf16_to_f32(a[i]);
    acc[i] = acc[i] + ep_bf16_to_f32(a2[i]);
    out[i] = ep_bf16_to_f32(a[i]) + acc[i];
  }
  ep_bf16 *d_a = to_device(a, sizeof(ep_bf16) * (size_t)n);
  ep_bf16 *d_a2 = to_device(a2, sizeof(ep_bf16) * (size_t)n);
  float *d_acc = to_device(NULL, sizeof(float) * (size_t)n);
  float *d_out = to_device(NULL, sizeof(float) * (size_t)n);
  CHECK(d_a && d_a2 && d_acc && d_out);
  if (d_a && d_a2 && d_acc && d_out) {
    CHECK_EQ_INT(ep_real_cuda_accumulate_bf16(NULL, n, d_a, d_acc, 1), EP_OK);
    CHECK_EQ_INT(ep_real_cuda_accumulate_bf16(NULL, n, d_a2, d_acc, 0), EP_OK);
    CHECK_EQ_INT(ep_real_cuda_add_bf16_f32(NULL, n, d_a, d_acc, d_out), EP_OK);
    CHECK_EQ_INT(cudaDeviceSynchronize(), cudaSuccess);
    CHECK_EQ_INT(cudaMemcpy(got, d_acc, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost),
                 cudaSuccess);
    CHECK(memcmp(got, acc, sizeof(float) * (size_t)n) == 0);
    CHECK_EQ_INT(cudaMemcpy(got, d_out, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost),
                 cudaSuccess);
    CHECK(memcmp(got, out, sizeof(float) * (size_t)n) == 0);
  }
  cudaFree(d_a);
  cudaFree(d_a2);
  cudaFree(d_acc);
  cudaFree(d_out);
  free(a);
  free(a2);
  free(acc);
  free(out);
  free(got);
}

int main(void)
{
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
    printf("real_cuda: no GPU, skipped\n");
    return 77;
  }
  check_fp8_rows(1, 128, 1);
  check_fp8_rows(37, 7168, 2);
  check_fp8_rows(257, 384, 3);
  check_sums(1, 4);
  check_sums(100003, 5);
  /* Bad arguments are refused, empty work is fine. */
  CHECK_EQ_INT(ep_real_cuda_fp8_to_bf16_rows(NULL, 4, 100, NULL, NULL, NULL, NULL), EP_ERR_INVALID);
  CHECK_EQ_INT(ep_real_cuda_fp8_to_bf16_rows(NULL, 0, 128, NULL, NULL, NULL, NULL), EP_OK);
  CHECK_EQ_INT(ep_real_cuda_add_bf16_f32(NULL, -1, NULL, NULL, NULL), EP_ERR_INVALID);
  return check_exit_code("real_cuda");
}
