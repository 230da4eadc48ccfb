/* native.h — the native heap (native.c): malloc & co., the strdup family
 * and C++ operator new/delete called by extension modules and the
 * libraries they load, which PEP 445 hooks never see.  The blocks go to
 * the tracker (RH_DOMAIN_NATIVE, tracker.h), so they join its epochs,
 * observers (stacks), totals and sites. */
#ifndef RH_NATIVE_H
#define RH_NATIVE_H

#ifndef REFHOUND_CORE_BUILD
#error "native.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"
#include "../preload/refhound_preload.h"

/* ---- life cycle ----------------------------------------------------------- */

/* Start intercepting.  In a process started with refhound's preload
 * library, attach to it (every object of the process is seen);
 * otherwise redirect the relocation entries (GOT) of the loaded objects
 * (all but the C library, the loader, libpython, the interpreter and
 * refhound itself, where only dlopen/dlclose are followed) and of every
 * object loaded later through dlopen.  Tracking should be on (the blocks
 * are recorded only while it is).  0 (also when already on), or -1 with
 * *why (a static string).  GIL held. */
int _rh_native_start(const char **why);
/* Stop: put every redirected entry back (the wrappers stay callable and
 * pass every call through: a function pointer copied from a GOT entry
 * while it was redirected still works), detach from the preload
 * library.  Idempotent.  GIL held. */
void _rh_native_stop(void);
/* Intercepting now? */
int _rh_native_active(void);

enum { RH_NATIVE_OFF, RH_NATIVE_GOT, RH_NATIVE_PRELOAD };

typedef struct {
    int mode;                   /* RH_NATIVE_* */
    size_t objects;             /* objects whose allocator entries are redirected */
    size_t dl_only;             /* objects where only dlopen/dlclose are */
    size_t skipped;             /* objects left alone */
    size_t slots;               /* GOT entries redirected now */
    size_t foreign;             /* entries left alone: bound to another definition */
    size_t failed;              /* entries that could not be made writable */
    uint64_t rescans;           /* passes over the loaded objects (start, dlopen, dlclose) */
    const char *failure;        /* why start failed, or NULL */
} rh_native_stats_t;
void _rh_native_stats(rh_native_stats_t *out);

/* Visit the objects as the patcher classifies them: fn(name, how), how
 * "full", "dl" or "skip".  For tests and `refhound doctor`.  GIL held. */
void _rh_native_objects(void (*fn)(const char *name, const char *how, void *arg), void *arg);

/* Free a block the C library allocated on the engine's behalf (the buffer
 * of open_memstream, of getline): in preload mode the C library's own
 * calls reach the wrappers, so the block was recorded, while the engine's
 * free() passes through them unseen; this tells the tracker first.  Not
 * with a tracker lock held. */
void _rh_native_release(void *p);

/* ---- the allocator under the wrappers ------------------------------------ */

/* The C library's allocator (in preload mode, the one the preload
 * library hands over). */
const rh_native_allocator_t *_rh_native_libc(void);
/* Slot another allocator under the malloc-family wrappers (the guard
 * allocator), or NULL to go back to the C library's.  It receives every
 * call of the intercepted objects, frees and reallocs of blocks it did not
 * allocate included (born before it was slotted, or by code that is not
 * intercepted): those it must hand to _rh_native_libc().  The C++
 * operators and the strdup family call their own definitions, which
 * allocate from the C library.  Must stay valid for the life of the
 * process: once one is slotted, _rh_native_stop leaves the wrappers in
 * place (recording nothing) so that its blocks always come back to it.
 * GIL held. */
void _rh_native_set_allocator(const rh_native_allocator_t *a);

#endif /* RH_NATIVE_H */
