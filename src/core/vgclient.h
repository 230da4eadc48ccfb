/* vgclient.h — Valgrind client requests from inside the process
 * (vgclient.c).  Built without Valgrind's headers (HAVE_VALGRIND
 * undefined) the requests answer 0 and do nothing. */
#ifndef RH_VGCLIENT_H
#define RH_VGCLIENT_H

#ifndef REFHOUND_CORE_BUILD
#error "vgclient.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

int _rh_vg_running(void);               /* RUNNING_ON_VALGRIND */
long _rh_vg_count_errors(void);         /* VALGRIND_COUNT_ERRORS */
void _rh_vg_printf(const char *text);   /* a line in Valgrind's log */

enum { RH_VG_FULL, RH_VG_ADDED, RH_VG_CHANGED, RH_VG_QUICK };
/* RH_VG_* for "full", "added", "changed", "quick"; -1 otherwise. */
int _rh_vg_mode(const char *name);

typedef struct {
    int ran;                /* under Valgrind: the search ran */
    int gc_rings_hidden;    /* -1: the GC's links could not be hidden */
    unsigned long leaked, dubious, reachable, suppressed;           /* bytes */
    unsigned long b_leaked, b_dubious, b_reachable, b_suppressed;   /* blocks */
} rh_vg_leaks_t;

/* One memcheck leak search of `mode` (hide_gc: with the GC's links and
 * the tracker's tables hidden), and its totals.  GIL held; never raises. */
void _rh_vg_leak_check(int mode, int hide_gc, rh_vg_leaks_t *out);

#endif /* RH_VGCLIENT_H */
