/* unwind.h — native backtraces of the running thread (unwind.c): a fast
 * walk from cached CFI rules for the allocator hooks, and the compiler's
 * unwinder (which also steps through signal frames). */
#ifndef RH_UNWIND_H
#define RH_UNWIND_H

#ifndef REFHOUND_CORE_BUILD
#error "unwind.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

/* Find refhound's own code and load libdw (once, at module init). */
void _rh_unwind_init(void);
/* Does _rh_fast_backtrace walk (x86-64 with libdw.so.1)?  0: it returns
 * no frames and callers use _rh_native_backtrace. */
int _rh_unwind_fast_available(void);
/* Is this return address in refhound's own code? */
int _rh_unwind_is_self(uintptr_t ip);

/* Return addresses from the caller outwards, by cached CFI rules (x86-64
 * with libdw.so.1; 0 frames elsewhere).  eval_frames > 0: stop a few frames
 * past that many eval-loop frames.  Safe in an allocator hook. */
int _rh_fast_backtrace(uintptr_t *ips, int max, int eval_frames);
/* The same through the compiler's unwinder (_Unwind_Backtrace), leaving
 * out refhound's frames at the top.  Works from a signal handler. */
int _rh_native_backtrace(uintptr_t *ips, int max);
/* Forget the cached rules (at stop). */
void _rh_unwind_reset(void);

#endif /* RH_UNWIND_H */
