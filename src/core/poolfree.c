/* poolfree.c — pymalloc's pools told in a copy of memory, and their free
 * blocks.
 *
 * A block pymalloc takes back keeps what the object held, less its first
 * word (the pool's free list link): a dead dict's keys table still names
 * its old keys, a dead tuple its items.  When those addresses are handed
 * out again to a leak's blocks, a search for references (lost.c) finds
 * them "referenced".  Measured in a pytest process on a 64-byte PyMem
 * block lost a call: after the C library's free memory was left out
 * (freemem.c), the 16 to 51 blocks still named were named from free
 * pymalloc blocks (dead small dicts' keys tables).
 *
 * pymalloc (CPython 3.9-3.13, Objects/obmalloc.c) carves pools of 4 KiB
 * (3.9) or 16 KiB (3.10 on, 64-bit), aligned to their size, into blocks
 * of one size class.  A pool's header (48 bytes) holds: the count of
 * blocks in use (a 32-bit count in a pointer-sized union whose upper half
 * is never written), the head of its free list (each free block's first
 * word links to the next), its arena's index, its size class (block size
 * = 16 * (szidx + 1)), nextoffset (the first block never carved) and
 * maxnextoffset (pool size - block size).  Invariant: the blocks carved,
 * (nextoffset - 48) / size, are the blocks in use plus those on the free
 * list (one carved block waits on it, never used); an empty pool (count
 * 0, kept for reuse) has every carved block on the list.
 *
 * lost.c reads memory in runs aligned to 16 KiB and asks, at each 4 KiB
 * boundary, whether a pool starts there: a 16 KiB pool where the address
 * is so aligned, else a 4 KiB one.  A pool is believed only when every
 * rule holds (the header's fields, the counts adding up, every link on a
 * block boundary inside the carved part, the list ending within the
 * carved count, no block listed twice): random bytes or a structure of
 * another kind do not satisfy them all (maxnextoffset alone must equal
 * the pool size less the block size, to the byte).  Then its free blocks
 * and its part never carved are no reference; its header and the blocks
 * in use are read as any memory.  Works on the copy only: no read of the
 * process's memory, no allocation.
 */
#include "poolfree.h"

#include <string.h>

#define POOL_OVERHEAD 48
#define ALIGNMENT 16
#define SMALL_REQUEST 512
#define MAX_ARENA_INDEX (1u << 24)

/* The header of a pool, as obmalloc.c lays it out on a 64-bit build. */
typedef struct {
    uint32_t count;             /* blocks in use (a union with a pointer) */
    uint32_t upper;             /* that pointer's upper half: never written */
    uintptr_t freeblock;
    uintptr_t nextpool, prevpool;
    uint32_t arenaindex, szidx, nextoffset, maxnextoffset;
} pool_header_t;

/* The pool of pool_size bytes at `at` (copied in copy), or 0. */
static size_t check_pool(const unsigned char *copy, uintptr_t at, size_t pool_size,
                         rh_pool_t *pool)
{
    pool_header_t h;
    memcpy(&h, copy, sizeof(h));
    size_t size = (size_t)(h.szidx + 1) * ALIGNMENT;
    if (h.upper != 0 || h.szidx >= SMALL_REQUEST / ALIGNMENT ||
        h.arenaindex >= MAX_ARENA_INDEX || h.maxnextoffset + size != pool_size ||
        h.nextoffset < POOL_OVERHEAD + size || h.nextoffset > pool_size ||
        (h.nextoffset - POOL_OVERHEAD) % size != 0)
        return 0;
    size_t carved = (h.nextoffset - POOL_OVERHEAD) / size;
    if (h.count > carved || carved > RH_POOL_MAX_BLOCKS)
        return 0;
    uintptr_t first = at + POOL_OVERHEAD, end = at + h.nextoffset;
    memset(pool->free, 0, carved);
    size_t listed = 0;
    for (uintptr_t f = h.freeblock; f != 0;) {
        if (f < first || f >= end || (f - first) % size != 0 || listed >= carved)
            return 0;
        size_t k = (f - first) / size;
        if (pool->free[k])
            return 0;                   /* a loop */
        pool->free[k] = 1;
        listed++;
        memcpy(&f, copy + (f - at), sizeof(f));
    }
    if (h.count + listed != carved)
        return 0;
    pool->pool_size = pool_size;
    pool->header = POOL_OVERHEAD;
    pool->block_size = size;
    pool->carved = carved;
    return pool_size;
}

size_t _rh_pool_at(const unsigned char *copy, size_t avail, uintptr_t at, rh_pool_t *pool)
{
    if ((at & (RH_POOL_LARGE - 1)) == 0 && avail >= RH_POOL_LARGE &&
        check_pool(copy, at, RH_POOL_LARGE, pool))
        return RH_POOL_LARGE;
    if ((at & (RH_POOL_SMALL - 1)) == 0 && avail >= RH_POOL_SMALL &&
        check_pool(copy, at, RH_POOL_SMALL, pool))
        return RH_POOL_SMALL;
    return 0;
}
