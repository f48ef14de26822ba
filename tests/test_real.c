/* real/ without MPI: the deterministic inputs (bf16 rounding,
 * placement-independent weights) and the reference layer. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ep_real_data.h"

/* y = W2 (silu(Wg x) * (Wu x)) in double, straight from the formula. */
static void ffn_double(const ep_real_shape *sh, int32_t expert, const float *x, double *y)
{
  const int32_t h = sh->hidden, im = sh->intermediate;
  ep_bf16 *w13 = malloc(sizeof(ep_bf16) * 2 * (size_t)im * (size_t)h);
  ep_bf16 *w2 = malloc(sizeof(ep_bf16) * (size_t)h * (size_t)im);
  double *mid = malloc(sizeof(double) * (size_t)im);
  ep_real_expert_fill(sh, expert, w13, w2);
  for (int32_t i = 0; i < im; i++) {
    double g = 0, u = 0;
    for (int32_t j = 0; j < h; j++) {
      g += (double)ep_bf16_to_f32(w13[(size_t)i * h + j]) * x[j];
      u += (double)ep_bf16_to_f32(w13[(size_t)(im + i) * h + j]) * x[j];
    }
    mid[i] = g / (1 + exp(-g)) * u;
  }
  for (int32_t j = 0; j < h; j++) {
    y[j] = 0;
    for (int32_t i = 0; i < im; i++)
      y[j] += (double)ep_bf16_to_f32(w2[(size_t)j * im + i]) * mid[i];
  }
  free(w13);
  free(w2);
  free(mid);
}

static void check_data(void)
{
  /* Weights depend on (seed, expert) only; values are bf16 and within the bound. */
  ep_real_shape s1 = {8, 1, 2, 64, 32, 7}, s2 = s1;
  s2.n_experts = 16; /* another model size: expert 3 must not change */
  const size_t n13 = 2 * 64 * 32, n2 = 64 * 32;
  ep_bf16 *a = malloc(sizeof(ep_bf16) * n13), *b = malloc(sizeof(ep_bf16) * n13);
  ep_bf16 *da = malloc(sizeof(ep_bf16) * n2), *db = malloc(sizeof(ep_bf16) * n2);
  ep_real_expert_fill(&s1, 3, a, da);
  ep_real_expert_fill(&s2, 3, b, db);
  CHECK(memcmp(a, b, sizeof(ep_bf16) * n13) == 0 && memcmp(da, db, sizeof(ep_bf16) * n2) == 0);
  int out_of_bound = 0, distinct = 0;
  for (size_t i = 0; i < n13; i++) {
    out_of_bound += fabsf(ep_bf16_to_f32(a[i])) > 0.125f; /* 1/sqrt(64) */
    distinct += i > 0 && a[i] != a[i - 1];
  }
  CHECK_EQ_INT(out_of_bound, 0);
  CHECK(distinct > (int)n13 / 2);
  /* The GPU fill regenerates the same values from the published seeds. */
  CHECK_EQ_INT(a[17],
               ep_f32_to_bf16(ep_moe_uniform_at(ep_real_w13_seed(&s1, 3), 17,
                                                -ep_real_w13_bound(&s1), ep_real_w13_bound(&s1))));
  ep_real_expert_fill(&s1, 4, b, db);
  CHECK(memcmp(a, b, sizeof(ep_bf16) * n13) != 0);
  s2 = s1;
  s2.seed = 8;
  ep_real_expert_fill(&s2, 3, b, db);
  CHECK(memcmp(a, b, sizeof(ep_bf16) * n13) != 0);
  /* Tokens depend on (seed, global id) only: a block equals its tokens one by one. */
  ep_bf16 blk[3 * 64], one[64];
  ep_real_tokens_fill(&s1, 10, 3, blk);
  ep_real_tokens_fill(&s1, 11, 1, one);
  CHECK(memcmp(blk + 64, one, sizeof one) == 0);
  CHECK(memcmp(blk, one, sizeof one) != 0);

  /* Reference layer against the formula: a kept copy with weight w of expert 3,
   * a dropped copy of expert 6, and the shared expert (expert id n_experts). */
  float x[64];
  ep_real_tokens_fill(&s1, 5, 1, one);
  for (int j = 0; j < 64; j++)
    x[j] = ep_bf16_to_f32(one[j]);
  double y3[64], ysh[64];
  ffn_double(&s1, 3, x, y3);
  ffn_double(&s1, 8, x, ysh);
  const int64_t gid = 5;
  const int32_t ex[2] = {3, 6};
  const float w[2] = {0.75f, 0.25f};
  const uint8_t kept[2] = {1, 0};
  double out[64];
  CHECK_EQ_INT(ep_real_reference(&s1, 0, 1, &gid, ex, w, kept, out), EP_OK);
  float outf[64];
  for (int j = 0; j < 64; j++)
    outf[j] = (float)(0.75 * y3[j] + ysh[j]);
  CHECK(ep_real_rel_error(outf, out, 1, 64) < 1e-6);
  outf[7] += 0.05f; /* one wrong element must show */
  CHECK(ep_real_rel_error(outf, out, 1, 64) > 1e-3);
  /* The bf16 C reference FFN row (what the CPU backend computes) is within the
   * bf16 bound of the double formula: 2^-8 relative per rounding, three roundings. */
  ep_bf16 y_row[64];
  ep_real_expert_fill(&s1, 3, a, da);
  CHECK_EQ_INT(ep_moe_expert_ffn_row_ref(64, 32, one, a, da, y_row), EP_OK);
  float yf[64];
  for (int j = 0; j < 64; j++)
    yf[j] = ep_bf16_to_f32(y_row[j]);
  CHECK(ep_real_rel_error(yf, y3, 1, 64) < 1.2e-2);
  free(a);
  free(b);
  free(da);
  free(db);
}

int main(void)
{
  check_data();
  return check_exit_code("real");
}
