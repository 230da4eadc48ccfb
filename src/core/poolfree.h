/* poolfree.h — the free blocks of pymalloc's pools (poolfree.c): what
 * they hold are the words of the objects that died there, no references. */
#ifndef RH_POOLFREE_H
#define RH_POOLFREE_H

#ifndef REFHOUND_CORE_BUILD
#error "poolfree.h is internal to refhound's engine (src/core)"
#endif
#include "freemem.h"

/* Hand each free range of the pools that hold a tracked block to `found`,
 * in ascending order: the blocks on a pool's free list and the part of
 * the pool not carved into blocks yet.  Returns how many pools were
 * walked, or -1 when `found` stopped it or memory ran out (the caller
 * then keeps every word).  A pool whose header does not check out is
 * left as it is.  GIL held. */
long _rh_poolfree_walk(rh_free_range_fn found, void *arg);

#endif /* RH_POOLFREE_H */
