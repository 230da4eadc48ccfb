/* hwbp.h — one hardware write breakpoint on 8 bytes of this thread's
 * memory, through perf_event_open (hwbp.c).  Shared by watch.c (with a
 * synchronous SIGTRAP per write) and doctor.c (counting only). */
#ifndef RH_HWBP_H
#define RH_HWBP_H

#ifndef REFHOUND_CORE_BUILD
#error "hwbp.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

/* Open a disabled write breakpoint on [addr, addr + 8) for the calling
 * thread.  sigtrap: every write raises SIGTRAP on the writing thread, with
 * sig_data in the siginfo (Linux 5.13+); otherwise the event only counts.
 * Returns the descriptor, or -1 with *err = errno. */
int _rh_hwbp_open(uintptr_t addr, int sigtrap, unsigned long sig_data, int *err);
/* Open a disabled execute breakpoint on the instruction at addr for the
 * calling thread; every execution raises SIGTRAP (TRAP_PERF, sig_data).
 * Returns the descriptor, or -1 with *err = errno. */
int _rh_hwbp_open_exec(uintptr_t addr, unsigned long sig_data, int *err);
void _rh_hwbp_enable(int fd);
void _rh_hwbp_disable(int fd);
/* A sentence for an errno of _rh_hwbp_open. */
const char *_rh_hwbp_refusal(int err);

#endif /* RH_HWBP_H */
