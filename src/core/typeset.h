/* typeset.h — the set of live type objects: type address => layout facts
 * (typeset.c).  Lets the engine tell an object from arbitrary bytes
 * without dereferencing an unknown pointer.  Guarded by the GIL. */
#ifndef RH_TYPESET_H
#define RH_TYPESET_H

#ifndef REFHOUND_CORE_BUILD
#error "typeset.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct rh_typestat rh_typestat_t;     /* a session's counters (session.h) */

typedef struct {
    uintptr_t type;             /* 0 = empty */
    uint32_t preheader;         /* bytes before the object in its block */
    uint32_t is_gc;
    Py_ssize_t minsize;         /* smallest instance, in bytes */
    rh_typestat_t *stat;        /* the session's counters, or NULL */
    int64_t live;               /* filled by the heap walk */
    int64_t live_new;           /* of which born during the session */
} rh_typeinfo_t;

/* Rebuild the set (runs Python: type.__subclasses__; as the engine's own
 * work).  0 ok, -1 with an exception set. */
int _rh_typeset_refresh(void);
/* The entry of a live type, or NULL; valid until the next refresh. */
rh_typeinfo_t *_rh_typeset_lookup(uintptr_t type);
size_t _rh_typeset_count(void);
/* Bytes of the C heap the set holds (left out of native_bytes). */
size_t _rh_typeset_heap_bytes(void);
/* The slots (capacity of them; empty ones have type 0). */
rh_typeinfo_t *_rh_typeset_slots(size_t *capacity);
/* Detach every session counter (stat = NULL). */
void _rh_typeset_detach_stats(void);
void _rh_typeset_clear(void);

#endif /* RH_TYPESET_H */
