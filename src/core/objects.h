/* objects.h — Python objects inside live blocks: recognition, heap walks,
 * refcount snapshots (objects.c).  Everything here runs under the GIL and
 * reads only what the block table and the type set vouch for; entries of
 * the STATIC table are read through safemem.h and dropped when their
 * memory no longer holds their object. */
#ifndef RH_OBJECTS_H
#define RH_OBJECTS_H

#ifndef REFHOUND_CORE_BUILD
#error "objects.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"
#include "typeset.h"

/* The object in a block entry of the GIL or ADOPTED table, or NULL (raw
 * blocks and STATIC entries are never recognised here).  need_live: the
 * refcount must be plausible.  Reads only inside the block.  Safe in an
 * allocator hook (no system call, no allocation). */
rh_typeinfo_t *_rh_recognize(const rh_block_t *b, PyObject **out, int need_live);

typedef struct {
    int64_t refs;        /* sum of refcounts of every visible object */
    int64_t objects;     /* visible objects */
    int64_t gc_tracked;  /* of which tracked by the cyclic GC */
} rh_walk_totals_t;

/* Walk every visible object; fills the type set's live counts.  Blocks
 * born at first_epoch or later count as live_new. */
void _rh_objects_walk(rh_walk_totals_t *out, uint32_t first_epoch);

/* Blocks of the GIL table alive per birth epoch of [first, first + n),
 * as the screen counts them: a block that holds a dead object of a known
 * type (reference count 0: in a free list) is left out and counted in
 * `dead`; a block whose content is not an object counts. */
typedef struct {
    uint32_t first, n;
    int64_t *blocks, *bytes;    /* n each, zeroed by the caller */
    int64_t *heap;              /* n, zeroed by the caller, or NULL: what those blocks
                                 * take of malloc's heap at most (RH_HEAP_BLOCK) */
    int64_t dead;
    int64_t *native;            /* n, zeroed by the caller, or NULL: of those blocks,
                                 * the native domain's (malloc called by extensions) */
} rh_epoch_survivors_t;

/* A block in malloc's heap (not in pymalloc's arenas): a raw or native
 * block, or one larger than pymalloc serves.  It takes its bytes and a
 * chunk header at most (RH_CHUNK_OVERHEAD: glibc's size field and the
 * rounding to 16 bytes).  Under PYTHONMALLOC=malloc smaller blocks are in
 * the heap too and are not counted: the count is a lower bound. */
#define RH_PYMALLOC_MAX 512
#define RH_CHUNK_OVERHEAD 24
#define RH_HEAP_BLOCK(domain, size) \
    ((domain) == RH_DOMAIN_RAW || (domain) == RH_DOMAIN_NATIVE || (size) > RH_PYMALLOC_MAX)

/* _rh_objects_walk and the survivors of the GIL table (sv, or NULL) in one
 * pass; threads 2: by two threads when the tables hold SPLIT_MIN_BLOCKS
 * blocks or more (the walk waits on memory, so
 * two halves read at once take a little over half the time; tracker.c,
 * the walk helper). */
#define SPLIT_MIN_BLOCKS 65536
void _rh_objects_walk_survivors(rh_walk_totals_t *out, uint32_t first_epoch,
                                rh_epoch_survivors_t *sv, int threads);
/* Does the block hold a dead object (reference count 0, or a dict keys
 * table in a free list)?  *object (may be NULL) gets the object the block
 * holds, or NULL when it holds none the type set knows (and for blocks
 * outside the object domain). */
int _rh_block_dead(const rh_block_t *b, PyObject **object);
/* One block as the screen counts it: a visitor of _rh_tracker_walk whose
 * arg is an rh_epoch_survivors_t (for the other tables' walks). */
void _rh_epoch_survivor(const rh_block_t *b, void *sv);

/* Of the blocks alive that were born in epochs [first, first + n), those
 * that are the table of a live dict or set born before `first`, per epoch
 * (tables, n, zeroed here): a table a later resize of that container
 * replaces.  0, -1 out of memory. */
int _rh_container_table_survivors(uint32_t first, uint32_t n, int64_t *tables);

/* A refcount snapshot: sorted by object address. */
typedef struct {
    uintptr_t obj;
    uintptr_t type;
    Py_ssize_t refcnt;
} rh_snapentry_t;
typedef struct {
    rh_snapentry_t *entries;    /* libc memory */
    size_t count;
} rh_snapshot_t;
int _rh_snapshot_take(rh_snapshot_t *snap);     /* 0, -1 out of memory */
void _rh_snapshot_release(rh_snapshot_t *snap);
/* obj's refcount in the snapshot, -1 if absent. */
Py_ssize_t _rh_snapshot_refcnt(const rh_snapshot_t *snap, uintptr_t obj);

/* Is obj, of that type, a live object of the tables now? */
int _rh_object_is_live(uintptr_t obj, uintptr_t type);
/* The live object at this address, or NULL (borrowed): any integer is
 * safe to ask about.  entry (may be NULL) gets its block's entry. */
PyObject *_rh_object_at(uintptr_t addr, rh_block_t *entry);
/* The live object in the mem/obj block that starts at `block`, or NULL
 * (borrowed). */
PyObject *_rh_object_in_block(uintptr_t block);
/* The entry of the block that holds op (a live object the caller holds),
 * from the GIL, ADOPTED or STATIC table: 1 found, 0 not. */
int _rh_object_block(PyObject *op, rh_block_t *out);

#endif /* RH_OBJECTS_H */
