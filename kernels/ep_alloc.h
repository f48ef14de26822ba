/* Freeing the several heap arrays a struct or a function owns in one call:
 * every _free function and every "out of memory, release what was allocated"
 * path lists its arrays once, EP__FREE_ALL(a->x, a->y, scratch). C only (the
 * list is a compound literal). */
#ifndef EP_ALLOC_H
#define EP_ALLOC_H

#include <stddef.h>
#include <stdlib.h>

/* free() each of blocks[0 .. n_blocks - 1]; NULL entries are no-ops. */
static inline void ep__free_all(void *const *blocks, size_t n_blocks)
{
  for (size_t i = 0; i < n_blocks; i++)
    free(blocks[i]);
}

/* free() every argument (heap pointers or NULL); the pointers keep their values. */
#define EP__FREE_ALL(...)                                                                          \
  ep__free_all((void *const[]){__VA_ARGS__}, sizeof((void *const[]){__VA_ARGS__}) / sizeof(void *))

#endif
