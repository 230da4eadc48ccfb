/* vgpool.h — the memcheck-annotated pool allocator for the mem and obj
 * domains (vgpool.c).  Compiled in with Valgrind's headers
 * (HAVE_VALGRIND); otherwise it cannot be installed and says why. */
#ifndef RH_VGPOOL_H
#define RH_VGPOOL_H

#ifndef REFHOUND_CORE_BUILD
#error "vgpool.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct {
    int installed, annotated;
    size_t quarantine;       /* bytes of freed slots held back before reuse */
    size_t quarantined;      /* bytes held now */
    size_t red_zone;         /* never-addressable bytes after each slot */
    int64_t allocs, frees, live, bad_frees, arenas, pools;
} rh_vgpool_stats_t;

/* 0 ok, -1 with *why set (no exception).  annotate: 1 always, 0 never,
 * -1 when running under Valgrind.  GIL held, before tracking starts. */
int _rh_vgpool_install(size_t quarantine, int annotate, const char **why);
void _rh_vgpool_stats(rh_vgpool_stats_t *out);
int _rh_vgpool_owns(const void *p);           /* a live pool block? */

#endif /* RH_VGPOOL_H */
