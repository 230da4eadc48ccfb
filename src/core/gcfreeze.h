/* gcfreeze.h — the old heap set aside from the cyclic collector for the span
 * of one measurement (gcfreeze.c).  GIL held throughout. */
#ifndef RH_GCFREEZE_H
#define RH_GCFREEZE_H

#ifndef REFHOUND_CORE_BUILD
#error "gcfreeze.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

/* Look the gc module's functions up (once): before the cache clearing
 * and the collection that precede a freeze, so that what the lookup
 * leaves in the interpreter's caches is cleared before the walk that
 * follows.  0, or -1 with an exception. */
int _rh_gc_prepare(void);
/* gc.freeze(), when nothing is frozen (the program's own frozen objects
 * are never touched) and refhound holds no freeze yet: 1 frozen, 0 not,
 * -1 with an exception. */
int _rh_gc_freeze(void);
/* Give back what _rh_gc_freeze() froze (gc.unfreeze()); nothing when it
 * froze nothing.  found != NULL: a collection of the young objects
 * first, then one of everything after the thaw, whose count of
 * unreachable objects is *found: the old objects that became cyclic
 * garbage while frozen (0: every collection made while frozen freed what
 * a full one would have).  0, or -1 with an exception (the thaw is done
 * whatever happens). */
int _rh_gc_thaw(Py_ssize_t *found);
/* Whether refhound holds a freeze now. */
int _rh_gc_frozen(void);
/* gc.collect(generation), through the function held here (looked up on
 * first use: call _rh_gc_prepare() before a cache clearing that precedes
 * a walk).  0, or -1 with an exception. */
int _rh_gc_collect(int generation);

#endif /* RH_GCFREEZE_H */
