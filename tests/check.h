/* Tiny test helpers: each check prints both values and file:line on failure
 * and counts it; a test's main returns check_exit_code(). */
#ifndef EP_CHECK_H
#define EP_CHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    check_count++;                                                                                 \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
      check_failures++;                                                                            \
    }                                                                                              \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
  do {                                                                                             \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                                \
    check_count++;                                                                                 \
    if (check_a_ != check_b_) {                                                                    \
      fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s = %lld, %s = %lld\n", __FILE__, __LINE__,    \
              #a, check_a_, #b, check_b_);                                                         \
      check_failures++;                                                                            \
    }                                                                                              \
  } while (0)

/* |a - b| <= rel_tol * |b| (b is the reference). */
#define CHECK_REL(a, b, rel_tol)                                                                   \
  do {                                                                                             \
    double check_a_ = (double)(a), check_b_ = (double)(b);                                         \
    check_count++;                                                                                 \
    if (!(fabs(check_a_ - check_b_) <= (rel_tol)*fabs(check_b_))) {                                \
      fprintf(stderr, "%s:%d: CHECK_REL failed: %s = %.9g, %s = %.9g (rel tol %g)\n", __FILE__,    \
              __LINE__, #a, check_a_, #b, check_b_, (double)(rel_tol));                            \
      check_failures++;                                                                            \
    }                                                                                              \
  } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                                       \
  do {                                                                                             \
    const char *check_h_ = (haystack), *check_n_ = (needle);                                       \
    check_count++;                                                                                 \
    if (!check_h_ || !strstr(check_h_, check_n_)) {                                                \
      fprintf(stderr, "%s:%d: CHECK_STR_CONTAINS failed: \"%s\" not in \"%s\"\n", __FILE__,        \
              __LINE__, check_n_, check_h_ ? check_h_ : "(null)");                                 \
      check_failures++;                                                                            \
    }                                                                                              \
  } while (0)

static inline int check_exit_code(const char *name)
{
  printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
  if (check_count == 0)
    return 1; /* a test that asserts nothing fails */
  return check_failures ? 1 : 0;
}

#endif
