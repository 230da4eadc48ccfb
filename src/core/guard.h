/* guard.h — the guard allocator (guard.c): sampled PEP 445 blocks on pages
 * of their own, a guard page behind each, red zones, a quarantine of
 * inaccessible freed blocks, and a fault handler that writes a report of
 * the first memory error and lets the process die of it. */
#ifndef RH_GUARD_H
#define RH_GUARD_H

#ifndef REFHOUND_CORE_BUILD
#error "guard.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct {
    /* Guard one block in `rate` (1: every block while slots are free). */
    unsigned rate;
    /* Bytes of pages the guarded blocks (live and quarantined) may hold;
     * the number of slots is this over the page size, capped so that the
     * process stays far below the kernel's limit on mappings. */
    size_t budget;
    /* Only blocks of this size (0: any size), and place them without
     * alignment (1) so that a one-byte overflow meets the guard page:
     * the precise replay of an overflow found in a red zone. */
    size_t only_size;
    int exact;
    /* Put each block at the start of its pages (1) rather than against the
     * guard page behind them (0): the replay of an underflow. */
    int left;
    /* Where the report goes (a file descriptor the caller owns). */
    int report_fd;
} rh_guard_config_t;

/* Install the guard under the raw, mem and obj domains (chaining the
 * allocators installed now), under native tracking's malloc wrappers (the
 * extensions' malloc, calloc and realloc are guarded once native tracking
 * runs; native.h: _rh_native_set_allocator), and the SIGSEGV/SIGBUS
 * handler.  Before the tracker's hooks, which then chain onto the guard.
 * Once per process; GIL held.  0, or -1 with *why (a static string). */
int _rh_guard_start(const rh_guard_config_t *config, const char **why);
/* Put the fault handler back on top of handlers installed after it (the
 * one found becomes the previous handler).  GIL held. */
void _rh_guard_rearm(void);
/* Is the guard installed? */
int _rh_guard_active(void);

typedef struct {
    uint64_t guarded, freed, passed, slots, slots_used, budget_full, live, rate_now;
} rh_guard_stats_t;
void _rh_guard_stats(rh_guard_stats_t *out);

#endif /* RH_GUARD_H */
