/* session.h — one leak check's measurements (session.c): iterations in
 * their own epochs, samples in C memory, per-type counters, refcount
 * snapshots.  It measures; it does not judge.  GIL held throughout. */
#ifndef RH_SESSION_H
#define RH_SESSION_H

#ifndef REFHOUND_CORE_BUILD
#error "session.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"
#include "objects.h"

/* The figures of a sample, in the order of their names.  RH_M_NATIVE and
 * RH_M_NATIVE_BLOCKS ("native_bytes", "native_blocks") are the tracked
 * native blocks (native.c; -1 while native tracking is off); RH_M_HEAP
 * ("heap_bytes") is the C library's whole heap in use (mallinfo2), less
 * refhound's own. */
enum {
    RH_M_REFS, RH_M_OBJECTS, RH_M_GC, RH_M_BLOCKS, RH_M_BYTES,
    RH_M_RAW_BLOCKS, RH_M_MEM_BLOCKS, RH_M_OBJ_BLOCKS, RH_M_RAW_BYTES, RH_M_MEM_BYTES,
    RH_M_OBJ_BYTES, RH_M_NATIVE, RH_M_RSS, RH_M_USS, RH_M_FDS, RH_M_THREADS, RH_M_DEBUG_REFS,
    RH_M_ARENAS, RH_M_POOLS, RH_M_PYMALLOC_BLOCKS, RH_M_NATIVE_BLOCKS, RH_M_HEAP,
    RH_NMETRICS
};
extern const char *const _rh_metric_names[RH_NMETRICS];
/* The index of a metric's name, -1 if none. */
int _rh_metric_index(const char *name);
/* Figures that read -1 when the machine or the build cannot give them. */
int _rh_metric_optional(int k);

typedef struct {
    double t;                    /* seconds since the session began */
    uint32_t epoch;              /* the epoch when it was taken */
    int64_t m[RH_NMETRICS];
} rh_sample_t;

/* A type's counters (COUNT_ALLOCS figures): attached to the type set's
 * entry while the session runs. */
struct rh_typestat {
    uintptr_t type;
    int64_t frees_new, frees_old;   /* objects freed, born in / before the session */
    int64_t max_live;
    int64_t live_new;               /* live now and born during the session */
    int first_sample;               /* the sample the type was first seen in */
    int64_t *live;                  /* per sample */
};

/* Fields are read-only outside session.c. */
typedef struct {
    int max_samples, nsamples, nwarmup;
    uint32_t first_epoch;        /* the first epoch of the session */
    double t0;
    int64_t pid;                 /* the process that began the session */
    rh_sample_t *samples;        /* libc memory */
    rh_typestat_t **stats;       /* open addressing by type address */
    size_t stats_mask, nstats;
    rh_snapshot_t *snaps;
    int nsnaps;
    int attached;                /* receiving free notifications */
    int freeze_old;              /* freeze the heap after the next full collection */
    int froze;                   /* this session holds the freeze (gcfreeze.c) */
    PyObject *totalrefcount;     /* sys.gettotalrefcount on debug builds, or NULL */
} rh_session_t;

/* A new session, attached (the one that counts frees).  NULL with *why:
 * another session is attached, or out of memory. */
rh_session_t *_rh_session_new(int max_samples, const char **why);
/* Stop counting frees and detach from the type set; the figures stay
 * readable.  Idempotent. */
void _rh_session_detach(rh_session_t *s);
/* From the next sample on, collect the objects born since it only: the
 * heap alive after its full collection is frozen (gcfreeze.c) until
 * _rh_session_thaw() or the detach.  A freeze refused (the program froze
 * objects itself) or failed leaves full collections. */
void _rh_session_freeze_old(rh_session_t *s);
/* Thaw the session's freeze; *found: the old objects that became cyclic
 * garbage while frozen (0 when none, or nothing was frozen).  0, or -1
 * with an exception. */
int _rh_session_thaw(rh_session_t *s, Py_ssize_t *found);
/* Detach and free everything. */
void _rh_session_free(rh_session_t *s);

/* A new iteration: advance the epoch; the blocks born from here on belong
 * to it. */
void _rh_session_begin(rh_session_t *s);
/* Call func(*args, **kwargs) `calls` times (the loop allocates nothing);
 * *seconds: the time spent in the calls.  -1 when the target raised.  A
 * child the target forked that returns into this loop leaves at once
 * (_exit(0)). */
int _rh_session_call(rh_session_t *s, PyObject *func, PyObject *args, PyObject *kwargs,
                     Py_ssize_t calls, double *seconds);
/* End an iteration, as the engine's own work: clear_caches() (a Python
 * callable, or NULL), two full collections, a sample (and a refcount
 * snapshot).  -1 with an exception set (clear_caches raised, out of
 * memory, or the session is full). */
int _rh_session_end(rh_session_t *s, PyObject *clear_caches, int warmup, int snapshot);
/* Store a refcount snapshot now.  -1 with MemoryError set. */
int _rh_session_snapshot(rh_session_t *s);

/* Objects present in every snapshot whose refcount moved one way in
 * every step (or in most steps and never the other way), alive now;
 * largest change first, at most `limit`.  *out is libc memory (free()).
 * 0, or -1 out of memory. */
typedef struct {
    PyObject *obj;               /* borrowed, alive until Python code runs */
    Py_ssize_t change;
} rh_growth_t;
int _rh_session_growth(rh_session_t *s, int limit, rh_growth_t **out, size_t *n);

/* The sample index where measurement starts (the last warm-up sample). */
int _rh_session_base(const rh_session_t *s);


/* ---- the screen ------------------------------------------------------------ */

/* A cheap look at a callable before a full check (session.c, "the screen"):
 * `warm` calls in one epoch, a young collection and a walk (A); then
 * `nepochs` epochs of `calls` calls each and a tail epoch of one call, a
 * young collection and a walk (B), and the blocks born in each epoch (the
 * warm one first, the tail last) that are still alive at B.  A lazy tail
 * (a slow body) is called only when a walk before it finds anything to
 * look at: a surviving block of a screened epoch, references, objects,
 * descriptors or threads that moved, native bytes grown past
 * `native_slack`; else the tail's count stays 0 and `tail` says so.  A young
 * collection follows every call.  The caller turns the automatic collector off (every
 * object the calls made stays young, so a young collection finds all
 * their garbage).  No session may be attached; none is needed. */
#define RH_SCREEN_MAX_EPOCHS 64
typedef struct {
    Py_ssize_t warm, calls;
    int nepochs;
    int generation;              /* the young collection: gc.collect(generation) */
    PyObject *clear_caches;      /* called before each walk (as end() does), or NULL */
    int lazy_tail;               /* the tail call only when walk B finds something */
    int64_t native_slack;        /* native bytes that may grow without it */
} rh_screen_plan_t;

typedef struct {
    uint32_t first_epoch;        /* the warm epoch; the others follow it */
    int64_t refs[2], objects[2];         /* at walk A and walk B */
    int64_t native[2], fds[2], threads[2];   /* -1 when unknown */
    int64_t blocks[2 + RH_SCREEN_MAX_EPOCHS], bytes[2 + RH_SCREEN_MAX_EPOCHS];
    int64_t heap[2 + RH_SCREEN_MAX_EPOCHS];  /* of malloc's heap, at most (RH_HEAP_BLOCK) */
    double seconds;              /* in the calls */
    double walk_seconds;         /* in the two walks and their collections */
    double overhead_seconds;     /* everything else but the calls */
    int64_t dead;                /* blocks of those epochs left out: dead objects in free lists */
    int tail;                    /* calls in the tail epoch: 1, or 0 (a lazy tail not needed) */
} rh_screen_t;

/* 0; -1 with an exception (the callable raised, or the collection did);
 * a fork child that returns into the loop leaves at once (_exit(0)). */
int _rh_screen_run(const rh_screen_plan_t *plan, PyObject *func, PyObject *args,
                   PyObject *kwargs, rh_screen_t *out);
/* Blocks (and bytes, and of those blocks the native domain's) per birth
 * epoch of [first, first + n) alive now, as the screen counts them (dead
 * objects in free lists left out; returns how many were). */
int64_t _rh_screen_survivors(uint32_t first, uint32_t n, int64_t *blocks, int64_t *bytes,
                             int64_t *native);
/* gc.collect(generation) (none when negative) and a heap walk, as the
 * engine's own work: the reference total and the objects.  0, or -1 with
 * an exception. */
int _rh_screen_totals(int generation, int64_t *refs, int64_t *objects);

#endif /* RH_SESSION_H */
