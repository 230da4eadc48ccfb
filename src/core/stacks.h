/* stacks.h — allocation stacks (stacks.c): capture in the allocator hooks
 * (an observer of the tracker), interning, the block => stack side table,
 * and sites: the surviving blocks of some epochs grouped by stack. */
#ifndef RH_STACKS_H
#define RH_STACKS_H

#ifndef REFHOUND_CORE_BUILD
#error "stacks.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

#define RH_MAX_NATIVE 24
#define RH_MAX_PY 8

/* Record a stack for every new block (on), or stop recording (off: the
 * recorded stacks stay until reset).  GIL held. */
int _rh_stacks_capture(int on);          /* 0, -1 when no observer slot is free */
/* Forget every stack; stop recording.  GIL held. */
void _rh_stacks_reset(void);

/* The stack id of a block, 0 if none. */
uint32_t _rh_stack_of(uintptr_t block);
/* Copy a stack's frames: native return addresses (RH_MAX_NATIVE room) and
 * (code object, bytecode offset) pairs (2 * RH_MAX_PY room).  0, or -1 for
 * an unknown id. */
int _rh_stack_copy(uint32_t id, uintptr_t *native, int *nn, uintptr_t *py, int *npy);

typedef struct {
    uint32_t stack;
    int64_t freed;           /* blocks with this stack released while recorded */
} rh_freed_t;

/* Every stack some of whose blocks were released since capture began,
 * with how many.  *out is libc memory (free() it).  Takes the stacks lock
 * (libc realloc under it: never a Python allocator).  0, or -1 out of
 * memory. */
int _rh_stacks_freed(rh_freed_t **out, size_t *n);

typedef struct {
    uint32_t stack;
    int64_t blocks, bytes;
    int64_t roots;           /* blocks no other survivor holds */
    PyObject *sample;        /* a root object of this site (borrowed), or NULL */
} rh_site_t;

/* The blocks born in [first, last] still alive, grouped by stack, most
 * roots first.  *sites is libc memory (free() it); the sample objects are
 * alive until Python code runs again.  GIL held.  0, or -1 out of memory. */
int _rh_stacks_sites(uint32_t first, uint32_t last, rh_site_t **sites, size_t *nsites,
                     int64_t *unattributed);

#endif /* RH_STACKS_H */
