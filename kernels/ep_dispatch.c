/* The dispatch algorithm table and lookup by name. */
#include "ep_dispatch.h"

#include <string.h>

/* One line per algorithm: X(name) for ep_dispatch_<name> in ep_dispatch_<name>.c. */
#define EP__DISPATCH_ALGOS(X) X(direct)

static const ep_dispatch_algo_desc *const algos[] = {
#define EP__DISPATCH_ROW(name) &ep_dispatch_##name,
    EP__DISPATCH_ALGOS(EP__DISPATCH_ROW)
#undef EP__DISPATCH_ROW
};

const char *const ep_dispatch_names[] = {
#define EP__DISPATCH_NAME(name) #name,
    EP__DISPATCH_ALGOS(EP__DISPATCH_NAME)
#undef EP__DISPATCH_NAME
        NULL,
};

#define EP__N_ALGOS ((int32_t)(sizeof algos / sizeof algos[0]))

const ep_dispatch_algo_desc *ep_dispatch_find(const char *name)
{
  if (!name)
    return NULL;
  for (int32_t i = 0; i < EP__N_ALGOS; i++)
    if (strcmp(algos[i]->name, name) == 0)
      return algos[i];
  return NULL;
}

const ep_dispatch_algo_desc *const *ep_dispatch_table(int32_t *n)
{
  if (n)
    *n = EP__N_ALGOS;
  return algos;
}
