/* procstat.h — process figures read from /proc and the C allocator
 * (procstat.c).  No Python API; a figure that cannot be read is -1. */
#ifndef RH_PROCSTAT_H
#define RH_PROCSTAT_H

#ifndef REFHOUND_CORE_BUILD
#error "procstat.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct {
    int64_t rss_bytes, uss_bytes, fds, threads, native_bytes;
} rh_procstat_t;

void _rh_procstat_read(rh_procstat_t *out, int with_uss);

#endif /* RH_PROCSTAT_H */
