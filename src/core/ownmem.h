/* ownmem.h — the engine's own mapped memory, registered (ownmem.c).
 *
 * Tables that hold block addresses (the block tables, the native heap's,
 * the guard allocator's metadata, the watch's hits) are mapped here, so
 * that a search for references to blocks (lost.c) can leave them out:
 * the engine's bookkeeping is not a reference the program holds. */
#ifndef RH_OWNMEM_H
#define RH_OWNMEM_H

#ifndef REFHOUND_CORE_BUILD
#error "ownmem.h is internal to refhound's engine (src/core)"
#endif
#include <stddef.h>
#include <stdint.h>

/* Anonymous read-write memory of len bytes, or NULL.  Safe in an
 * allocator hook and from any thread (no allocation, a spin lock). */
void *_rh_own_map(size_t len);
/* Unmap what _rh_own_map returned (the whole length it was given). */
void _rh_own_unmap(void *p, size_t len);

typedef struct {
    uintptr_t start, end;
} rh_range_t;

/* Copy up to `max` registered ranges into out, sorted by start; returns
 * how many there are (more than max: some were not copied).  Ranges
 * mapped when the registry was full are not registered (a search then
 * sees them: it finds more references, never fewer). */
size_t _rh_own_ranges(rh_range_t *out, size_t max);

#endif /* RH_OWNMEM_H */
