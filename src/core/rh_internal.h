/* rh_internal.h — declarations shared between the files of refhound's engine.
 *
 * Not a public header: extension authors use src/refhound/include/refhound/refhound.h.  Each
 * section below belongs to one .c file of src/core and says what it owns.
 */
#ifndef RH_INTERNAL_H
#define RH_INTERNAL_H

#ifndef REFHOUND_CORE_BUILD
#error "rh_internal.h is internal to refhound's engine (src/core)"
#endif

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ */
/* Version guards: everything that differs between CPython releases. */

/* Bytes in front of an object inside its allocator block. */
#if defined(Py_GIL_DISABLED)
#  define RH_HAS_GC_HEAD 0             /* free-threaded: no PyGC_Head */
#  define RH_GC_HEAD_SIZE 0
#else
#  define RH_HAS_GC_HEAD 1
#  define RH_GC_HEAD_SIZE (2 * sizeof(void *))
#endif
#if PY_VERSION_HEX >= 0x030C0000
#  define RH_PREHEADER_FLAGS (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF)
#elif PY_VERSION_HEX >= 0x030B0000
#  define RH_PREHEADER_FLAGS Py_TPFLAGS_MANAGED_DICT
#else
#  define RH_PREHEADER_FLAGS 0
#endif
/* Immortal objects (3.12+) never change their refcount: leave them out. */
#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_GIL_DISABLED)
#  define RH_IS_IMMORTAL(op) _Py_IsImmortal(op)
#else
#  define RH_IS_IMMORTAL(op) 0
#endif
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o) { Py_INCREF(o); return o; }
#endif
/* A refcount above this is not a refcount (addresses are above 2^40). */
#define RH_MAX_REFCNT ((Py_ssize_t)1 << 40)

/* ------------------------------------------------------------------ */
/* blocks.c — the table of live blocks: address => size, domain, epoch.
 *
 * Open addressing, Robin Hood linear probing with backward-shift deletion;
 * 16 bytes a slot, load kept between 0.5 and 0.75, so at most 32 bytes per
 * live block.  User-space addresses fit in 48 bits: the top 16 bits of the
 * key hold the slot's distance from its home.  Memory comes from mmap, never from a hooked allocator.
 * The table does no locking: its owner (tracker.c) guards it.        */

enum {
    RH_DOMAIN_RAW = 0,      /* PyMem_RawMalloc & co. */
    RH_DOMAIN_MEM = 1,      /* PyMem_Malloc & co. */
    RH_DOMAIN_OBJ = 2,      /* PyObject_Malloc & co. */
    RH_DOMAIN_ADOPTED = 3,  /* an object that existed before tracking */
    RH_NDOMAINS = 4
};

#define RH_SIZE_BITS 38
#define RH_SIZE_MASK (((uint64_t)1 << RH_SIZE_BITS) - 1)
#define RH_EPOCH_MAX ((1u << 24) - 1)

typedef struct {
    uint64_t key;     /* address:48 | distance from its home slot:16; 0 = empty */
    uint64_t meta;    /* size:38 | domain:2 | epoch:24 */
} rh_block_t;

#define RH_ADDR_MASK (((uint64_t)1 << 48) - 1)
static inline uintptr_t rh_block_addr(const rh_block_t *b) { return (uintptr_t)(b->key & RH_ADDR_MASK); }
static inline int rh_block_empty(const rh_block_t *b) { return b->key == 0; }

static inline size_t rh_block_size(const rh_block_t *b) { return (size_t)(b->meta & RH_SIZE_MASK); }
static inline int rh_block_domain(const rh_block_t *b) { return (int)((b->meta >> RH_SIZE_BITS) & 3); }
static inline uint32_t rh_block_epoch(const rh_block_t *b) { return (uint32_t)(b->meta >> 40); }
static inline uint64_t rh_block_meta(size_t size, int domain, uint32_t epoch)
{
    uint64_t s = size > RH_SIZE_MASK ? RH_SIZE_MASK : (uint64_t)size;
    return s | ((uint64_t)domain << RH_SIZE_BITS) | ((uint64_t)epoch << 40);
}

typedef struct {
    rh_block_t *slots;          /* mmap'd, capacity slots */
    size_t capacity;
    size_t count;
    size_t grow_at;             /* grow when count reaches this */
    size_t max_capacity;        /* 0 = no limit (REFHOUND_MAX_BLOCKS, for tests) */
    int64_t live_blocks[RH_NDOMAINS];
    int64_t live_bytes[RH_NDOMAINS];
} rh_table_t;

int _rh_table_init(rh_table_t *t, size_t capacity);
void _rh_table_release(rh_table_t *t);
/* Insert or overwrite; -1 when the table cannot grow (out of memory). */
int _rh_table_insert(rh_table_t *t, uintptr_t addr, uint64_t meta);
/* Remove; returns 1 and fills *out when found, 0 otherwise. */
int _rh_table_remove(rh_table_t *t, uintptr_t addr, rh_block_t *out);
const rh_block_t *_rh_table_find(const rh_table_t *t, uintptr_t addr);
size_t _rh_table_bytes(const rh_table_t *t);

/* ------------------------------------------------------------------ */
/* tracker.c — PEP 445 hooks over raw, mem and obj; the epoch counter.
 *
 * _rh_gil_table holds mem, obj and adopted blocks and is guarded by the
 * GIL; the raw table has its own mutex.  Everything here is C-only and
 * never calls a hooked allocator.                                      */

extern rh_table_t _rh_gil_table;     /* mem + obj blocks born while tracking */
extern rh_table_t _rh_old_table;     /* adopted objects (before tracking) */
/* The entry of a mem/obj/adopted block, or NULL (GIL held). */
const rh_block_t *_rh_tracker_find(uintptr_t block);
extern volatile int _rh_tracking;
extern volatile uint32_t _rh_epoch;

int _rh_tracker_start(void);        /* 0 ok, -1 with exception */
void _rh_tracker_stop(void);
int _rh_tracker_active(void);
int _rh_tracker_call_unhooked(int (*fn)(void *), void *arg);
const char *_rh_tracker_failure(void);   /* NULL or why tracking stopped */
uint32_t _rh_epoch_advance(void);
/* Live blocks and bytes per domain (raw from the locked table). */
void _rh_tracker_totals(int64_t blocks[RH_NDOMAINS], int64_t bytes[RH_NDOMAINS]);
size_t _rh_tracker_table_bytes(void);
size_t _rh_tracker_table_entries(void);
/* Blocks per birth epoch in [first, last] (all domains but adopted). */
void _rh_tracker_survivors(uint32_t first, uint32_t last, int64_t *blocks, int64_t *bytes);
/* Insert a pre-existing object's block (adopt.c); 1 added, 0 known, -1 OOM */
int _rh_tracker_adopt(uintptr_t block, size_t object_offset);

/* Called from the GIL-domain free hook while a session counts frees. */
typedef void (*rh_free_observer_t)(const rh_block_t *freed);
extern rh_free_observer_t _rh_free_observer;

/* Visit every live block of every domain (both locks taken in turn). */
void _rh_tracker_foreach(void (*visit)(const rh_block_t *, void *), void *arg);

/* ------------------------------------------------------------------ */
/* stacks.c — allocation stacks: capture (in hooks), interning, sites. */
#define RH_MAX_NATIVE 24
#define RH_MAX_PY 8
extern volatile int _rh_capture_stacks;   /* hooks record stacks */
extern volatile int _rh_stacks_in_use;    /* the side table has entries */
int _rh_native_backtrace(uintptr_t *ips, int max);
void _rh_stacks_on_alloc(uintptr_t block, int domain);   /* RH_DOMAIN_* */
void _rh_stacks_on_free(uintptr_t block);
void _rh_stacks_on_move(uintptr_t from, uintptr_t to);
uint32_t _rh_stack_of(uintptr_t block);
int _rh_stack_get(uint32_t id, const uintptr_t **native, int *nn, const uintptr_t **py, int *npy);
void _rh_stacks_reset(void);
void _rh_stacks_init(void);   /* at module init */
extern PyMethodDef _rh_stacks_methods[];

/* symbols.c — address => module, function, file:line (libdw or dladdr). */
extern PyMethodDef _rh_symbols_methods[];
enum { RH_CFA_RSP = 1, RH_CFA_RBP = 2 };
enum { RH_RBP_SAME = 0, RH_RBP_SAVED = 1, RH_RBP_LOST = 2 };
typedef struct {
    uint8_t cfa_base;       /* RH_CFA_*: CFA = that register + cfa_offset */
    uint8_t rbp;            /* RH_RBP_*: where the caller's rbp is */
    int32_t cfa_offset;
    int32_t rbp_offset;     /* RH_RBP_SAVED: at CFA + rbp_offset */
} rh_cfi_rule_t;
int _rh_cfi_rule(uintptr_t pc, rh_cfi_rule_t *rule);

/* unwind.c — fast native backtrace from cached CFI rules. */
int _rh_fast_backtrace(uintptr_t *ips, int max, int eval_frames);
void _rh_unwind_reset(void);
extern PyMethodDef _rh_unwind_methods[];

/* watch.c — hardware write watchpoints on refcount fields. */
extern PyMethodDef _rh_watch_methods[];
/* Life history: the first block allocated with _rh_history_ip among its
 * return addresses gets watchpoints on its possible refcount words. */
extern volatile uintptr_t _rh_history_ip;
void _rh_history_arm(uintptr_t block);

/* ------------------------------------------------------------------ */
/* typeset.c — the set of live type objects, rebuilt under the GIL.
 * Lets the engine tell an object from arbitrary bytes without
 * dereferencing an unknown pointer.                                     */

typedef struct rh_typestat rh_typestat_t;

typedef struct {
    uintptr_t type;             /* 0 = empty */
    uint32_t preheader;         /* bytes before the object in its block */
    uint32_t is_gc;
    Py_ssize_t minsize;         /* smallest instance, in bytes */
    rh_typestat_t *stat;        /* the session's counters, or NULL */
    int64_t live;               /* filled by the heap walk */
    int64_t live_new;           /* of which born during the session */
} rh_typeinfo_t;

int _rh_typeset_refresh(void);                 /* 0 ok, -1 exception */
rh_typeinfo_t *_rh_typeset_lookup(uintptr_t type);
size_t _rh_typeset_count(void);
size_t _rh_typeset_heap_bytes(void);
rh_typeinfo_t *_rh_typeset_slots(size_t *capacity);
void _rh_typeset_clear(void);

/* ------------------------------------------------------------------ */
/* objects.c — objects inside live blocks: recognition and heap walks. */

/* The object in a block, or NULL.  size 0 = unknown (adopted: offset). */
rh_typeinfo_t *_rh_recognize(const rh_block_t *b, PyObject **out, int need_live);

typedef struct {
    int64_t refs;        /* sum of refcounts of every visible object */
    int64_t objects;     /* visible objects */
    int64_t gc_tracked;  /* of which tracked by the cyclic GC */
} rh_walk_totals_t;

/* Walk every visible object; fills typeinfo live counts.  first_epoch
 * separates objects born during the session (live_new). */
void _rh_objects_walk(rh_walk_totals_t *out, uint32_t first_epoch);

/* A refcount snapshot: sorted (object, refcnt). */
typedef struct {
    uintptr_t obj;
    uintptr_t type;
    Py_ssize_t refcnt;
} rh_snapentry_t;
typedef struct {
    rh_snapentry_t *entries;
    size_t count;
} rh_snapshot_t;
int _rh_snapshot_take(rh_snapshot_t *snap);     /* -1 out of memory */
void _rh_snapshot_release(rh_snapshot_t *snap);
/* Is obj, of that type, still a live object in the table? */
int _rh_object_is_live(uintptr_t obj, uintptr_t type);

/* ------------------------------------------------------------------ */
/* adopt.c — find the objects that existed before tracking started.  */
typedef struct {
    int64_t from_types, from_gc, from_referents, from_static_data;
} rh_adopt_stats_t;
int _rh_adopt_existing(rh_adopt_stats_t *stats);  /* 0 ok, -1 exception */

/* ------------------------------------------------------------------ */
/* procstat.c — process figures read from /proc and the C allocator. */
typedef struct {
    int64_t rss_bytes, uss_bytes, fds, threads, native_bytes;
} rh_procstat_t;
void _rh_procstat_read(rh_procstat_t *out, int with_uss);

/* ------------------------------------------------------------------ */
/* trend.c — statistics on a series of samples and the verdict rules. */
typedef enum {
    RH_TREND_FLAT = 0,      /* no change over the window */
    RH_TREND_NOISE = 1,     /* changes, no significant trend */
    RH_TREND_UNCLEAR = 2,   /* leaning one way, not significant yet */
    RH_TREND_GROWING = 3,
    RH_TREND_FALLING = 4
} rh_trend_t;

typedef struct {
    rh_trend_t trend;
    double slope;        /* Theil-Sen slope per sample over the window */
    double p_up;         /* Mann-Kendall one-sided p-values */
    double p_down;
    double window_growth;
    int window;          /* number of samples in the window */
} rh_trend_result_t;

void _rh_trend_classify(const double *x, int n, double alpha, rh_trend_result_t *out);

/* ------------------------------------------------------------------ */
/* session.c — one leak check (the Python type refhound._core.Session). */
extern PyTypeObject _rh_SessionType;
extern PyObject *_rh_TrackingError;   /* tracking stopped under a check */

/* ------------------------------------------------------------------ */
/* probes.c — the engine side of include/refhound/refhound.h: totals,
 * marks and descriptions for probes in extension code, published as the
 * capsule refhound._core._C_API.                                      */
int _rh_probes_add_capsule(PyObject *module);    /* 0 ok, -1 exception */
extern PyMethodDef _rh_probes_methods[];

/* ------------------------------------------------------------------ */
/* pymalloc_stats.c — pymalloc's pool and arena figures, read from
 * _PyObject_DebugMallocStats() into numbers.  Needs the GIL.          */
#define RH_PYMALLOC_MAX_CLASSES 64
typedef struct {
    int64_t size;            /* block size of the class, bytes */
    int64_t pools;           /* pools in use */
    int64_t blocks_in_use;
    int64_t avail_blocks;    /* free blocks in the used pools */
} rh_pymalloc_class_t;

typedef struct {
    int enabled;             /* 1: pymalloc is the object allocator */
    const char *why;         /* enabled == 0: why there are no figures */
    int64_t small_block_threshold;
    int nclasses;            /* size classes in the allocator */
    rh_pymalloc_class_t classes[RH_PYMALLOC_MAX_CLASSES];   /* by index */
    int64_t arenas_allocated_total, arenas_reclaimed, arenas_highwater, arenas_current;
    int64_t arena_size;      /* bytes per arena */
    int64_t pool_size;       /* bytes per pool */
    int64_t pools_in_use, free_pools;
    int64_t blocks_in_use, avail_blocks;
    int64_t bytes_in_allocated_blocks, bytes_in_available_blocks, bytes_in_free_pools;
    int64_t bytes_pool_headers, bytes_quantization, bytes_arena_alignment;
    int64_t bytes_total;     /* arenas * arena size */
} rh_pymalloc_t;

/* 0 ok (out->enabled says whether pymalloc is in use), -1 when the
 * figures cannot be read (out->why says why); never raises. */
int _rh_pymalloc_read(rh_pymalloc_t *out);
/* 1 when PyObject_Malloc hands out blocks framed by CPython's debug hooks
 * (PYTHONMALLOC=debug, -X dev, debug builds), 0 otherwise, -1 unknown. */
int _rh_pymalloc_debug_hooks(void);
extern PyMethodDef _rh_pymalloc_methods[];

/* ------------------------------------------------------------------ */
/* doctor.c — what this machine allows: a real hardware write watchpoint
 * through perf_event_open, frame pointers in loaded code.             */
typedef struct {
    int opened;              /* perf_event_open succeeded */
    int err;                 /* errno when it did not */
    int64_t hits;            /* writes counted (expected: writes) */
    int writes;
} rh_watch_probe_t;
void _rh_doctor_watchpoint(rh_watch_probe_t *out);
extern PyMethodDef _rh_doctor_methods[];

/* ------------------------------------------------------------------ */
/* vgpool.c, vgclient.c — Valgrind: the memcheck-annotated pool allocator
 * for the mem and obj domains, and client requests from inside the
 * process.  Compiled in when setup.py finds Valgrind's headers
 * (HAVE_VALGRIND); otherwise the requests answer 0 and the pool cannot
 * be installed.                                                         */
typedef struct {
    int installed, annotated;
    size_t quarantine;       /* bytes of freed slots held back before reuse */
    size_t quarantined;      /* bytes held now */
    size_t red_zone;         /* never-addressable bytes after each slot */
    int64_t allocs, frees, live, bad_frees, arenas, pools;
} rh_vgpool_stats_t;
/* 0 ok, -1 with *why set (no exception).  annotate: 1 always, 0 never,
 * -1 when running under Valgrind. */
int _rh_vgpool_install(size_t quarantine, int annotate, const char **why);
void _rh_vgpool_stats(rh_vgpool_stats_t *out);
int _rh_vgpool_owns(const void *p);           /* a live pool block? */
int _rh_vg_running(void);                     /* RUNNING_ON_VALGRIND */
extern PyMethodDef _rh_vgclient_methods[];

#endif /* RH_INTERNAL_H */
