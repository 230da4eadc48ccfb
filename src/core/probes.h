/* probes.h — the engine's side of the public probes header
 * src/refhound/include/refhound/refhound.h (probes.c): totals, marks and
 * object descriptions for probes compiled into extension modules.  Every
 * entry point needs the GIL and never raises. */
#ifndef RH_PROBES_H
#define RH_PROBES_H

#ifndef REFHOUND_CORE_BUILD
#error "probes.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"
#include "refhound/refhound.h"

/* The C API published as the capsule refhound._core._C_API. */
const refhound_capi_t *_rh_probes_capi(void);

int _rh_probe_totals(refhound_totals_t *out, const char **why);
int _rh_probe_describe(PyObject *op, char *buf, size_t bufsize, const char **why);

typedef struct {
    char label[64];
    char file[160];
    int line;
    refhound_totals_t totals;
} rh_mark_t;

/* The marks kept (the last RH_MARKS_MAX), oldest first: index i in
 * [0, _rh_probe_marks_count()). */
size_t _rh_probe_marks_count(void);
const rh_mark_t *_rh_probe_mark(size_t i);
void _rh_probe_marks_clear(void);

#endif /* RH_PROBES_H */
