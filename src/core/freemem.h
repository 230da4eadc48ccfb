/* freemem.h — the free memory of the C library's main heap (freemem.c):
 * what it holds are the words of what was freed there, no references. */
#ifndef RH_FREEMEM_H
#define RH_FREEMEM_H

#ifndef REFHOUND_CORE_BUILD
#error "freemem.h is internal to refhound's engine (src/core)"
#endif
#include <stddef.h>
#include <stdint.h>

/* Called with each free range, in ascending order; returns 0 to go on,
 * -1 to stop (then the walk returns -1). */
typedef int (*rh_free_range_fn)(uintptr_t start, uintptr_t end, void *arg);

/* Walk glibc's main heap, the mapping [lo, hi) named [heap], chunk by
 * chunk, and hand each free range to `found`: the free chunks of the bins,
 * the chunks in the per-thread caches, the top chunk.  Reads go through
 * safemem.c.  Returns 0 when the walk met the top chunk at the heap's
 * end; -1 when it did not (not glibc, under Valgrind, a chunk header that
 * does not check out, `found` stopped it): the caller then treats the
 * heap as holding no free memory at all, whatever was handed so far.
 * GIL held (another thread's malloc may still move a chunk meanwhile). */
int _rh_freemem_heap(uintptr_t lo, uintptr_t hi, rh_free_range_fn found, void *arg);

#endif /* RH_FREEMEM_H */
