/* adopt.h — bring the objects that existed before tracking into the
 * tables (adopt.c).  GIL held, tracking on. */
#ifndef RH_ADOPT_H
#define RH_ADOPT_H

#ifndef REFHOUND_CORE_BUILD
#error "adopt.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct {
    int64_t from_types, from_gc, from_referents, from_static_data;
    int64_t static_rejected;     /* looked like objects, failed the checks */
    const char *static_skipped;  /* NULL, or why static data was not scanned */
} rh_adopt_stats_t;

/* 0 (also when the tracker ran out of memory on the way: it says so in
 * _rh_tracker_failure()), -1 with a Python exception set. */
int _rh_adopt_existing(rh_adopt_stats_t *stats);

#endif /* RH_ADOPT_H */
