/* poolfree.h — pymalloc's pools told in a copy of memory, with their free
 * blocks (poolfree.c): what those hold are the words of the objects that
 * died there, no references. */
#ifndef RH_POOLFREE_H
#define RH_POOLFREE_H

#ifndef REFHOUND_CORE_BUILD
#error "poolfree.h is internal to refhound's engine (src/core)"
#endif
#include <stddef.h>
#include <stdint.h>

#define RH_POOL_SMALL ((size_t)4 << 10)     /* 3.9's pools; where any pool may start */
#define RH_POOL_LARGE ((size_t)16 << 10)    /* 3.10 on (64-bit) */
#define RH_POOL_MAX_BLOCKS 1024             /* blocks of 16 bytes in a 16 KiB pool, at most */

typedef struct {
    size_t pool_size;                   /* 4 or 16 KiB */
    size_t header;                      /* bytes before the first block */
    size_t block_size;
    size_t carved;                      /* blocks carved: [header, header + carved * size) */
    unsigned char free[RH_POOL_MAX_BLOCKS];     /* free[k]: block k is on the free list */
} rh_pool_t;

/* Is the memory at address `at` (copied in `copy`, `avail` bytes of it) a
 * pymalloc pool?  `at` must be 4 KiB aligned.  Fills *pool and returns
 * its size (the bytes from `at` it covers), or 0 when no pool checks out
 * there (a pool larger than avail is not looked at). */
size_t _rh_pool_at(const unsigned char *copy, size_t avail, uintptr_t at, rh_pool_t *pool);

#endif /* RH_POOLFREE_H */
