/* watch.h — hardware write watchpoints on refcount words (watch.c): which
 * lines write them during some calls, and the life history of one new
 * object from a given call site. */
#ifndef RH_WATCH_H
#define RH_WATCH_H

#ifndef REFHOUND_CORE_BUILD
#error "watch.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

#define RH_MAX_WATCH 4
#define RH_HIT_DEPTH 24

/* One write to a watched word. */
typedef struct {
    int64_t value;                   /* the word after the write */
    uint32_t object;                 /* which watched word */
    int32_t delta;                   /* change since the previous write */
    uint16_t nframes;
    uint16_t returned;               /* the increment a call returned to us */
    uintptr_t frames[RH_HIT_DEPTH];  /* frames[0]: the instruction after the write */
} rh_hit_t;

typedef struct {
    rh_hit_t *hits;                  /* mmap'd; _rh_hits_release() */
    size_t nhits, dropped, max_hits;
    const char *error;               /* static: why watchpoints could not be used */
} rh_hits_t;

void _rh_hits_release(rh_hits_t *h);

/* Call func(*args, **kwargs) `calls` times with a write watchpoint on the
 * refcount of each of the n objects (n <= RH_MAX_WATCH).  0: out->hits
 * filled, or out->error when the kernel refuses; -1: the target raised
 * (its exception is set) or out of memory (MemoryError set).  GIL held. */
int _rh_watch_refcounts(PyObject *const *objects, int n, PyObject *func, PyObject *args,
                        PyObject *kwargs, Py_ssize_t calls, size_t max_hits, rh_hits_t *out);

/* One execution of a watched instruction (_rh_watch_returns). */
typedef struct {
    uint32_t which;                  /* index of the instruction */
    uint32_t call;                   /* which call of the target */
    int32_t raised;                  /* an exception was set: 1, 0, -1 unknown */
    uintptr_t rax, rsp;              /* return value register, stack pointer */
} rh_exec_hit_t;

typedef struct {
    rh_exec_hit_t *hits;             /* mmap'd; _rh_exec_hits_release() */
    size_t nhits, dropped, max_hits;
    const char *error;               /* static: why breakpoints could not be used */
} rh_exec_hits_t;

void _rh_exec_hits_release(rh_exec_hits_t *h);

/* Call func `calls` times with an execute breakpoint on each of the n
 * instructions (n <= RH_MAX_WATCH) and record every execution.  Placed on
 * the instruction after a call, a hit tells what the callee returned (rax)
 * and whether it left an exception set.  Same returns as
 * _rh_watch_refcounts.  GIL held. */
int _rh_watch_returns(const uintptr_t *addrs, int n, PyObject *func, PyObject *args,
                      PyObject *kwargs, Py_ssize_t calls, size_t max_hits, rh_exec_hits_t *out);

typedef struct {
    rh_hits_t hits;          /* writes to the followed object's refcount word */
    int followed;            /* an object from the site was followed */
    int alive;               /* ... and is alive now */
    PyObject *object;        /* it (borrowed), when alive */
} rh_history_t;

/* Call func (up to max_calls times) until an object is allocated from the
 * call site whose return address is `address`, finish that call, and
 * record every write to its refcount from its birth.  Same returns as
 * _rh_watch_refcounts; out->hits.error also says when no allocation from
 * the site was seen.  GIL held. */
int _rh_watch_history(uintptr_t address, PyObject *func, PyObject *args, PyObject *kwargs,
                      Py_ssize_t max_calls, rh_history_t *out);

#endif /* RH_WATCH_H */
