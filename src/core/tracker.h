/* tracker.h — PEP 445 hooks over the raw, mem and obj domains, the tables
 * of live blocks behind them, the epoch counter (tracker.c).
 *
 * The tracker knows nothing of the files that use it: what must happen on
 * an allocation (stack capture, free counting) is registered as an
 * observer, and the life history's spare block as a provider.
 *
 * Tables (RH_TABLE_*) and what guards each:
 *   GIL       mem + obj blocks born while tracking           the GIL
 *   ADOPTED   objects found alive at start through the types  the GIL
 *             and the cyclic GC (live by construction)
 *   STATIC    objects seen through static data at start       static_lock
 *             (memory the engine cannot vouch for: read it
 *             only through safemem.h; dropped when it goes)
 *   RAW       raw blocks born while tracking, and native      raw_lock
 *             blocks (RH_DOMAIN_NATIVE: the malloc family
 *             called by extensions, reported by native.c)
 * Lock order: stacks_lock (stacks.c) before static_lock or raw_lock; the
 * hooks release their table lock before they notify observers.
 */
#ifndef RH_TRACKER_H
#define RH_TRACKER_H

#ifndef REFHOUND_CORE_BUILD
#error "tracker.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

/* ---- life cycle ------------------------------------------------------- */

/* Install the hooks (once) and start recording.  0 ok (also when already
 * on), -1 when the tables cannot be mapped (*why says so; no exception). */
int _rh_tracker_start(const char **why);
/* Stop recording, forget every table, remove the hooks when they are on
 * top (otherwise they stay, passing every call through). */
void _rh_tracker_stop(void);
/* Recording now? */
int _rh_tracker_active(void);
/* NULL, or why recording stopped by itself (the tracker ran out of
 * memory): set until the next start. */
const char *_rh_tracker_failure(void);

/* ---- epochs and the engine's own work ---------------------------------- */

uint32_t _rh_epoch_now(void);
/* Next epoch (saturates at RH_EPOCH_MAX); GIL held. */
uint32_t _rh_epoch_advance(void);

/* Mark this thread as doing the engine's own work (sampling, cache
 * clearing, collections, type-set refresh): its new blocks are stamped
 * RH_EPOCH_NONE and observers are not told of them, so the engine never
 * shows in an iteration's survivors or in sites.  Nests: pass what enter
 * returned to leave. */
int _rh_engine_enter(void);
void _rh_engine_leave(int previous);

/* Times this process was forked into: incremented in the child (a
 * pthread_atfork handler), so a changed value after a call means this is
 * the target's child. */
uint64_t _rh_tracker_forks(void);

/* ---- observers ---------------------------------------------------------- */

/* Told of the blocks of the domains in `domains` (RH_DOMAIN_BIT) while
 * tracking.  Called from the allocator hooks, on the allocating thread,
 * after the table was updated and its lock released; the GIL is held for
 * mem/obj/adopted events, not for raw or native ones.  An observer of the
 * raw domain is told of native blocks too: both arrive from any thread
 * without the GIL, so what handles the one handles the other (`domain`
 * tells them apart); RH_DOMAIN_BIT(RH_DOMAIN_NATIVE) alone asks for native
 * blocks only.  A callback must not allocate
 * or free through a Python allocator, run Python code, call back into the
 * tracker, or make a system call it can avoid.  on_free runs before the
 * memory is released (the block may still be read), with the entry as it
 * was in its table.  Any callback may be NULL. */
typedef struct {
    unsigned domains;
    void (*on_alloc)(uintptr_t block, size_t size, int domain);
    void (*on_free)(const rh_block_t *entry);
    void (*on_move)(uintptr_t from, uintptr_t to, int domain);
} rh_observer_t;

#define RH_MAX_OBSERVERS 4
/* GIL held.  The observer must stay valid for the life of the process
 * (a static): a hook on another thread may still be calling it just after
 * it is removed.  0, or -1 when every slot is taken. */
int _rh_tracker_observe(const rh_observer_t *o);
void _rh_tracker_unobserve(const rh_observer_t *o);

/* A provider is asked, by the obj-domain malloc and calloc hooks on the
 * thread that holds the GIL, for a block of `size` bytes before the
 * previous allocator is; it returns a block it got from
 * _rh_tracker_prev_malloc(size) (handed over for good), or NULL.  Same
 * rules as an observer; it is not asked for the engine's own work.  One
 * at a time; NULL removes it.  GIL held. */
typedef void *(*rh_provider_t)(size_t size);
void _rh_tracker_set_provider(rh_provider_t fn);
/* The obj domain's allocator under the hooks (the current one when the
 * hooks are not installed); the block is not recorded.  GIL held. */
void *_rh_tracker_prev_malloc(size_t size);
void _rh_tracker_prev_free(void *p);

/* Run fn with the obj domain's previous allocator back in place: CPython
 * reports pymalloc's statistics only while pymalloc is the installed
 * allocator.  GIL held; fn must not allocate through Python. */
int _rh_tracker_call_unhooked(int (*fn)(void *), void *arg);

/* ---- the native heap (native.c) ------------------------------------------ */

/* Set while this thread is inside one of the hooks: calling the allocator
 * under a PEP 445 hook, telling the observers, recording a native block.
 * A malloc made meanwhile belongs to the hooks' own work (a chained
 * allocator, libdw reading unwind rules for a stack), not to the program:
 * native.c passes it through unrecorded.  Thread-local, initial-exec. */
extern __thread int _rh_in_hook
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

/* native.c reports the calls of the malloc family it intercepts; any
 * thread, no GIL, never from a signal handler it knows of.  The blocks go
 * into the RAW table with domain RH_DOMAIN_NATIVE, born in the current
 * epoch; observers are told as for raw blocks.  Each is a no-op when not
 * tracking.  A realloc is a free of the old block (its entry forgotten
 * before the call) and a new block born now (memray's and heaptrack's
 * reading: the block that survives was made by the realloc). */
/* `allowed` (may be NULL) is asked under the table's lock, with the insert:
 * native.c's gate (tracking on, no pass redirecting slots), so that a
 * caller preempted between its own check and the insert cannot record a
 * block into a session whose slots would not show its free. */
void _rh_tracker_native_alloc(uintptr_t block, size_t size, int (*allowed)(void));
/* Before the memory is released: forget the block's entry.  1 when it was
 * a native block (*old, may be NULL, gets its entry); 0 when unknown (born
 * before tracking, or elsewhere) or a raw block released with free(). */
int _rh_tracker_native_free(uintptr_t block, rh_block_t *old);
/* Put back an entry _rh_tracker_native_free forgot (a realloc that failed
 * and kept its block). */
void _rh_tracker_native_restore(const rh_block_t *old);
/* Forget every native block (native tracking stopped: their frees will not
 * be seen).  Observers are not told. */
void _rh_tracker_native_drop(void);

/* ---- tables --------------------------------------------------------------- */

enum {
    RH_TABLE_GIL = 1,
    RH_TABLE_ADOPTED = 2,
    RH_TABLE_STATIC = 4,
    RH_TABLE_RAW = 8,
    RH_TABLE_ALL = 15
};

/* How an adopted block was found (its epoch field). */
enum {
    RH_ADOPTED_LIVE = 0,      /* a type, a GC object or one's referent */
    RH_ADOPTED_STATIC = 1     /* seen through static data (RH_TABLE_STATIC) */
};

/* Visit every entry of the chosen tables, each table under its own guard
 * (the caller holds the GIL for GIL and ADOPTED).  The visitor must not
 * allocate or free through a Python allocator, run Python code or call
 * the tracker; libc memory is fine.  STATIC entries must not be
 * dereferenced (safemem.h). */
typedef void (*rh_visit_t)(const rh_block_t *entry, void *arg);
void _rh_tracker_walk(unsigned tables, rh_visit_t visit, void *arg);
/* The GIL and ADOPTED tables of `tables`, walked by two threads: the
 * caller visits the first half of each table's slots with args[0], the
 * walk helper (a thread of refhound's, started at the first such walk and
 * kept, named "refhound-walk", every signal blocked) the second half with
 * args[1].  The visitor reads blocks and writes only what its arg points
 * to.  0, or -1 when nothing was visited (no thread could be started:
 * walk with _rh_tracker_walk). */
int _rh_tracker_walk_split(unsigned tables, rh_visit_t visit, void *args[2]);

/* Copy the entry of `block` from the chosen tables into *out: 1 found,
 * 0 not.  GIL held when GIL or ADOPTED are asked. */
int _rh_tracker_find(uintptr_t block, unsigned tables, rh_block_t *out);

/* Record a pre-existing object's block (adopt.c): 1 added, 0 known or
 * not tracking, -1 out of memory (tracking then stops with the reason).
 * how: RH_ADOPTED_*.  GIL held. */
int _rh_tracker_adopt(uintptr_t block, size_t object_offset, int how);
/* Forget a STATIC entry whose memory no longer holds its object. */
void _rh_tracker_drop_static(uintptr_t block);
/* Changes whenever the STATIC table does (an entry in or out). */
uint64_t _rh_tracker_static_generation(void);

/* Live blocks and bytes per domain (adopted: LIVE + STATIC entries;
 * native: the RAW table's native entries). */
void _rh_tracker_totals(int64_t blocks[RH_NDOMAINS], int64_t bytes[RH_NDOMAINS]);
size_t _rh_tracker_table_bytes(void);
size_t _rh_tracker_table_entries(void);
/* Blocks and bytes per birth epoch in [first, last] (mem, obj, raw, native). */
void _rh_tracker_survivors(uint32_t first, uint32_t last, int64_t *blocks, int64_t *bytes);

/* XOR the addresses held by the GIL and ADOPTED tables (hide 1), or put
 * them back (hide 0), so that a Valgrind leak search does not see them as
 * pointers.  GIL held; nothing may allocate in between. */
void _rh_tracker_hide_addresses(int hide);

#endif /* RH_TRACKER_H */
