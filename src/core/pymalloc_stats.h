/* pymalloc_stats.h — pymalloc's pool and arena figures, read from
 * _PyObject_DebugMallocStats() into numbers (pymalloc_stats.c), and
 * whether CPython's allocator debug hooks are on.  Needs the GIL. */
#ifndef RH_PYMALLOC_STATS_H
#define RH_PYMALLOC_STATS_H

#ifndef REFHOUND_CORE_BUILD
#error "pymalloc_stats.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

#define RH_PYMALLOC_MAX_CLASSES 64
typedef struct {
    int64_t size;            /* block size of the class, bytes */
    int64_t pools;           /* pools in use */
    int64_t blocks_in_use;
    int64_t avail_blocks;    /* free blocks in the used pools */
} rh_pymalloc_class_t;

typedef struct {
    int enabled;             /* 1: pymalloc is the object allocator */
    const char *why;         /* enabled == 0: why there are no figures */
    int64_t small_block_threshold;
    int nclasses;            /* size classes in the allocator */
    rh_pymalloc_class_t classes[RH_PYMALLOC_MAX_CLASSES];   /* by index */
    int64_t arenas_allocated_total, arenas_reclaimed, arenas_highwater, arenas_current;
    int64_t arena_size;      /* bytes per arena */
    int64_t pool_size;       /* bytes per pool */
    int64_t pools_in_use, free_pools;
    int64_t blocks_in_use, avail_blocks;
    int64_t bytes_in_allocated_blocks, bytes_in_available_blocks, bytes_in_free_pools;
    int64_t bytes_pool_headers, bytes_quantization, bytes_arena_alignment;
    int64_t bytes_total;     /* arenas * arena size */
} rh_pymalloc_t;

/* 0 ok (out->enabled says whether pymalloc is in use), -1 when the
 * figures cannot be read (out->why says why); never raises.  Call with
 * the hooks out of the way (_rh_tracker_call_unhooked) when tracking. */
int _rh_pymalloc_read(rh_pymalloc_t *out);
/* 1 when PyObject_Malloc hands out blocks filled by CPython's debug hooks
 * (PYTHONMALLOC=debug, -X dev, debug builds), 0 otherwise, -1 unknown. */
int _rh_pymalloc_debug_hooks(void);

#endif /* RH_PYMALLOC_STATS_H */
