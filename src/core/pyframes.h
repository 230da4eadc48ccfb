/* pyframes.h — the Python frames of the running thread, read from the
 * interpreter's frame chain (pyframes.c), for allocation stacks. */
#ifndef RH_PYFRAMES_H
#define RH_PYFRAMES_H

#ifndef REFHOUND_CORE_BUILD
#error "pyframes.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

/* The Python frames of the running thread, innermost first, as pairs
 * (code object, bytecode offset in bytes) in pairs[0..2*max): returns the
 * number of frames.  Also counts, in *entries, the C-to-Python entries on
 * the chain: as many native frames of the eval loop are on the C stack.
 * The GIL is held (an allocator hook of the mem or obj domain); reads
 * only, allocates nothing.  0 frames and 0 entries on a version whose
 * frame layout this file does not know (_rh_python_frames_supported). */
int _rh_python_frames(uintptr_t *pairs, int max, int *entries);
/* Does this build read the frame chain (CPython 3.9 to 3.13, GIL builds)? */
int _rh_python_frames_supported(void);

#endif /* RH_PYFRAMES_H */
