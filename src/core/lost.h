/* lost.h — survivors that nothing points to any more (lost.c): the
 * blocks a leak lost for good, told from those a cache still holds,
 * without calling again. */
#ifndef RH_LOST_H
#define RH_LOST_H

#ifndef REFHOUND_CORE_BUILD
#error "lost.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct {
    int64_t candidates;         /* live blocks born in the epochs (dead objects left out) */
    int64_t lost_total;         /* of which unreachable */
    int64_t scanned_bytes;      /* memory read */
    int64_t mappings;           /* mappings read */
    int64_t unreadable;         /* pages that could not be read */
    int64_t free_bytes;         /* free in the allocators, left out (freemem.c, poolfree.c) */
    int64_t pools;              /* pymalloc pools told in the memory read (poolfree.c) */
    double seconds;
} rh_lost_t;

/* Of the live blocks of the GIL and RAW tables born in epochs
 * [first, first + n), those no word of the process's writable memory
 * points into, directly or through other such blocks: per epoch in
 * lost[n] and lost_bytes[n] (zeroed here).  GIL held.  0, or -1 with
 * *why (no safe reads, no memory, not tracking). */
int _rh_lost_survivors(uint32_t first, uint32_t n, int64_t *lost, int64_t *lost_bytes,
                       rh_lost_t *out, const char **why);

/* How many aligned words of the process's writable memory (the same
 * memory _rh_lost_survivors searches) hold each of the n addresses:
 * counts[n] (zeroed here).  An object whose reference count grows while
 * no more words hold its address gains references nothing holds.  GIL
 * held.  0, or -1 with *why. */
int _rh_lost_count_words(const uintptr_t *addrs, size_t n, int64_t *counts, rh_lost_t *out,
                         const char **why);

/* Have the C library fill the memory it frees (glibc's M_PERTURB) while
 * on: a pointer left in freed memory is then no reference.  Off puts the
 * setting the process started with back (MALLOC_PERTURB_ or the
 * glibc.malloc.perturb tunable).  1 done, 0 not glibc (or under Valgrind:
 * its malloc ignores the setting). */
int _rh_lost_fill_freed(int on);

#endif /* RH_LOST_H */
