/* doctor.h — what this machine allows, tried for real for `refhound
 * doctor` (doctor.c): a hardware write watchpoint, frame pointers. */
#ifndef RH_DOCTOR_H
#define RH_DOCTOR_H

#ifndef REFHOUND_CORE_BUILD
#error "doctor.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct {
    int opened;              /* perf_event_open succeeded */
    int err;                 /* errno when it did not */
    int64_t hits;            /* writes counted (expected: writes) */
    int writes;
} rh_watch_probe_t;

/* Needs no GIL (the caller may release it). */
void _rh_doctor_watchpoint(rh_watch_probe_t *out);

/* The exported functions of libpython sampled by default (NULL-ended). */
extern const char *const _rh_doctor_sample_names[];
/* Of the functions `names` found in `handle` (RTLD_DEFAULT: the process),
 * how many set up a frame pointer near their entry: returns the number
 * checked (*with_fp of them with a frame set-up), -1 when the architecture
 * is not known. */
int _rh_doctor_frame_pointers(void *handle, const char *const *names, int *with_fp);

#endif /* RH_DOCTOR_H */
