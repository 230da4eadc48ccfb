/* safemem.h — reading memory the engine does not own, without faulting
 * (safemem.c).  The copy is made by the kernel (process_vm_readv on our
 * own process): an unmapped page, a mapping past the end of its file, a
 * guard page or a sanitizer's shadow memory gives "unreadable", never a
 * signal, and a sanitizer sees no access by the engine. */
#ifndef RH_SAFEMEM_H
#define RH_SAFEMEM_H

#ifndef REFHOUND_CORE_BUILD
#error "safemem.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

/* Can this process read itself safely?  1 yes, 0 no (*why says why). */
int _rh_safe_available(const char **why);

/* Copy [addr, addr + len) into buf: 0, or -1 when any byte is unreadable
 * (or safe reads are not available).  A system call; never in a hook. */
int _rh_safe_read(uintptr_t addr, void *buf, size_t len);

/* n reads of `len` bytes each (len <= 256), batched: addrs[i] into
 * bufs + i * len; ok[i] = 1 when that read succeeded.  Returns how many
 * succeeded. */
size_t _rh_safe_read_many(const uintptr_t *addrs, size_t n, size_t len,
                          unsigned char *bufs, unsigned char *ok);

/* The same for addresses sorted in ascending order, copied page run by
 * page run (one copy covers every read whose pages are near each other):
 * far fewer pages to pin than one copy per read when reads cluster. */
size_t _rh_safe_gather(const uintptr_t *addrs, size_t n, size_t len,
                       unsigned char *bufs, unsigned char *ok);

#endif /* RH_SAFEMEM_H */
