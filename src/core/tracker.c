/* tracker.c — PEP 445 hooks over the raw, mem and obj domains.
 *
 * Every hook calls the allocator that was installed before it (chaining),
 * then records the block in a table of live blocks with its size, domain
 * and birth epoch, then tells the registered observers.  The hooks never
 * call a hooked allocator (tables live in mmap'd memory, blocks.c) and
 * make no system call but the uncontended lock of the raw table.
 *
 * State and what guards it:
 *   gil_table      mem + obj blocks; the GIL (the mem and obj domains
 *                  require it).  Free-threaded builds take gil_table_lock.
 *   adopted_table  objects alive at start, found through the types and the
 *                  GC; the GIL.  Removed by the mem/obj free hooks.
 *   static_table   objects seen through static data at start; static_lock
 *                  (the raw free hook drops entries without the GIL); the
 *                  mem/obj hooks look before they lock (only GIL holders
 *                  move or unmap its slots).  static_count mirrors its size.
 *   raw_table      the blocks born without the GIL: raw blocks (the raw
 *                  hooks) and native ones (native.c reports the malloc
 *                  family's calls through _rh_tracker_native_*); raw_lock.
 *                  pthread_atfork keeps both mutexes usable in a forked
 *                  child.
 *   tracking       read without a lock as a fast path, re-checked under
 *                  raw_lock in the raw hooks; written under the GIL and
 *                  raw_lock.  state/failure: written under the GIL (and
 *                  raw_lock when a raw hook gives up); failure is a static
 *                  string.
 *   epoch          written under the GIL, read by every hook.
 *   observers[]    written under the GIL (atomic stores), read by the
 *                  hooks of every thread; each observer is a static.
 *   provider       written and read under the GIL.
 *   in_gil_hook, engine_busy, _rh_in_hook   thread-local.
 *
 * Re-entry: pymalloc serves large requests from the raw domain, so an obj
 * hook can call the raw hook on the same thread.  The GIL hooks set the
 * thread-local in_gil_hook around their call to the previous allocator;
 * the raw hook ignores calls made under it, so such a block is counted
 * once, as obj.
 *
 * _rh_in_hook (tracker.h) marks a thread that is inside any of the hooks:
 * calling a previous allocator, telling the observers, recording a native
 * block.  native.c passes the malloc calls made meanwhile straight through
 * (a chained PEP 445 allocator's own mallocs, libdw's while a stack is
 * captured), so a block is never counted twice and the hooks never re-enter.
 *
 * Out of memory: when a table cannot grow, recording stops with a reason
 * (_rh_tracker_failure) and the program goes on untouched.
 */
#include "tracker.h"
#include "blocks.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

enum { STATE_OFF, STATE_ON, STATE_FAILED };

static rh_table_t gil_table;
static rh_table_t adopted_table;
static rh_table_t static_table;
static rh_table_t raw_table;
static pthread_mutex_t static_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t raw_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile size_t static_count;
static volatile uint64_t static_gen;      /* bumped under static_lock */
#ifdef Py_GIL_DISABLED
static pthread_mutex_t gil_table_lock = PTHREAD_MUTEX_INITIALIZER;
#  define GIL_TABLE_LOCK() pthread_mutex_lock(&gil_table_lock)
#  define GIL_TABLE_UNLOCK() pthread_mutex_unlock(&gil_table_lock)
#else
#  define GIL_TABLE_LOCK() ((void)0)
#  define GIL_TABLE_UNLOCK() ((void)0)
#endif

static volatile int tracking = 0;
static int state = STATE_OFF;
static const char *failure = NULL;
static volatile uint32_t epoch = 0;
static volatile uint64_t forks = 0;

static const rh_observer_t *volatile observers[RH_MAX_OBSERVERS];
static volatile int nobservers = 0;
static rh_provider_t provider = NULL;

static int hooks_installed = 0;
static PyMemAllocatorEx prev_raw, prev_mem, prev_obj;
static PyMemAllocatorEx our_raw, our_mem, our_obj;
/* initial-exec TLS: one %fs-relative access, no call (a few bytes of the
 * static TLS surplus glibc keeps for dlopen'd modules). */
static __thread int in_gil_hook __attribute__((tls_model("initial-exec")));
static __thread int engine_busy __attribute__((tls_model("initial-exec")));
__thread int _rh_in_hook __attribute__((tls_model("initial-exec"), visibility("hidden")));

static const char *const OOM_RAW =
    "the table of raw and native blocks could not grow (out of memory)";
static const char *const OOM_GIL = "the block table could not grow (out of memory)";
static const char *const OOM_ADOPT =
    "the block table could not grow while adopting the objects that existed before "
    "tracking started (out of memory)";

/* Stop recording because a table could not grow. */
static void give_up(const char *why)
{
    if (failure == NULL)
        failure = why;
    state = STATE_FAILED;
    tracking = 0;
}

/* ---- observers ---------------------------------------------------------- */

static inline const rh_observer_t *observer_at(int i)
{
    return __atomic_load_n(&observers[i], __ATOMIC_ACQUIRE);
}

/* The observer bits that want a domain's events: native blocks go to the
 * observers of the raw domain too (tracker.h). */
static inline unsigned wanted_by(int domain)
{
    if (domain == RH_DOMAIN_NATIVE)
        return RH_DOMAIN_BIT(RH_DOMAIN_NATIVE) | RH_DOMAIN_BIT(RH_DOMAIN_RAW);
    return RH_DOMAIN_BIT(domain);
}

/* Observers run marked as inside a hook: what they allocate through an
 * intercepted malloc (libdw reading CFI for a stack) is not recorded. */
static inline void notify_alloc(uintptr_t p, size_t size, int domain)
{
    if (nobservers == 0 || engine_busy)
        return;
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    for (int i = 0; i < RH_MAX_OBSERVERS; i++) {
        const rh_observer_t *o = observer_at(i);
        if (o != NULL && o->on_alloc != NULL && (o->domains & wanted_by(domain)))
            o->on_alloc(p, size, domain);
    }
    _rh_in_hook = saved;
}

static inline void notify_free(const rh_block_t *entry)
{
    if (nobservers == 0)
        return;
    int domain = rh_block_domain(entry);
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    for (int i = 0; i < RH_MAX_OBSERVERS; i++) {
        const rh_observer_t *o = observer_at(i);
        if (o != NULL && o->on_free != NULL && (o->domains & wanted_by(domain)))
            o->on_free(entry);
    }
    _rh_in_hook = saved;
}

static inline void notify_move(uintptr_t from, uintptr_t to, int domain)
{
    if (nobservers == 0)
        return;
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    for (int i = 0; i < RH_MAX_OBSERVERS; i++) {
        const rh_observer_t *o = observer_at(i);
        if (o != NULL && o->on_move != NULL && (o->domains & wanted_by(domain)))
            o->on_move(from, to, domain);
    }
    _rh_in_hook = saved;
}

int _rh_tracker_observe(const rh_observer_t *o)
{
    for (int i = 0; i < RH_MAX_OBSERVERS; i++)
        if (observer_at(i) == o)
            return 0;
    for (int i = 0; i < RH_MAX_OBSERVERS; i++) {
        if (observer_at(i) == NULL) {
            __atomic_store_n(&observers[i], o, __ATOMIC_RELEASE);
            nobservers++;
            return 0;
        }
    }
    return -1;
}

void _rh_tracker_unobserve(const rh_observer_t *o)
{
    for (int i = 0; i < RH_MAX_OBSERVERS; i++) {
        if (observer_at(i) == o) {
            __atomic_store_n(&observers[i], NULL, __ATOMIC_RELEASE);
            nobservers--;
        }
    }
}

void _rh_tracker_set_provider(rh_provider_t fn) { provider = fn; }

/* ---- the engine's own work and epochs ---------------------------------- */

int _rh_engine_enter(void)
{
    int previous = engine_busy;
    engine_busy = 1;
    return previous;
}

void _rh_engine_leave(int previous) { engine_busy = previous; }

static inline uint32_t birth_epoch(void)
{
    return engine_busy ? RH_EPOCH_NONE : epoch;
}

uint32_t _rh_epoch_now(void) { return epoch; }

uint32_t _rh_epoch_advance(void)
{
    if (epoch < RH_EPOCH_MAX)
        epoch++;
    return epoch;
}

uint64_t _rh_tracker_forks(void) { return forks; }

/* ---- the static table (any thread) ----------------------------------- */

/* Is p perhaps a STATIC entry?  For the mem/obj hooks' misses, which hold
 * the GIL: the slots are moved or unmapped only under the GIL (adoption's
 * inserts, stop), so a look without static_lock is memory-safe; a raw
 * hook on another thread may be removing an entry meanwhile, and a stale
 * answer only costs a lock, or leaves an entry that its next use drops. */
static inline int static_maybe_gil_held(uintptr_t p)
{
#ifdef Py_GIL_DISABLED
    return static_count != 0;        /* no GIL: always look under the lock */
#else
    return static_count != 0 && _rh_table_find(&static_table, p) != NULL;
#endif
}

/* Forget a STATIC entry at p, if any (its memory went away or moved); the
 * raw hooks (no GIL). */
static inline void static_forget(uintptr_t p)
{
    if (static_count == 0)
        return;
    pthread_mutex_lock(&static_lock);
    if (_rh_table_remove(&static_table, p, NULL)) {
        static_count = static_table.count;
        static_gen++;
    }
    pthread_mutex_unlock(&static_lock);
}

/* ---- raw domain --------------------------------------------------------- */

static void raw_record(void *p, size_t size)
{
    pthread_mutex_lock(&raw_lock);
    if (tracking &&
        _rh_table_insert(&raw_table, (uintptr_t)p,
                         rh_block_meta(size, RH_DOMAIN_RAW, birth_epoch())) < 0)
        give_up(OOM_RAW);
    pthread_mutex_unlock(&raw_lock);
}

static void *raw_malloc(void *ctx, size_t size)
{
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    void *p = prev_raw.malloc(prev_raw.ctx, size);
    _rh_in_hook = saved;
    if (p != NULL && tracking && !in_gil_hook) {
        raw_record(p, size);
        notify_alloc((uintptr_t)p, size, RH_DOMAIN_RAW);   /* no GIL: native frames only */
    }
    return p;
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    void *p = prev_raw.calloc(prev_raw.ctx, nelem, elsize);
    _rh_in_hook = saved;
    if (p != NULL && tracking && !in_gil_hook) {
        raw_record(p, nelem * elsize);
        notify_alloc((uintptr_t)p, nelem * elsize, RH_DOMAIN_RAW);
    }
    return p;
}

static void *raw_realloc(void *ctx, void *ptr, size_t size)
{
    int saved = _rh_in_hook;
    if (!tracking || in_gil_hook) {
        _rh_in_hook = 1;
        void *p = prev_raw.realloc(prev_raw.ctx, ptr, size);
        _rh_in_hook = saved;
        return p;
    }
    /* Hold the lock across the call: once realloc frees ptr another thread
     * may be handed the same address and record it before we forget it. */
    int found = 0, recorded = 0;
    pthread_mutex_lock(&raw_lock);
    _rh_in_hook = 1;
    void *p = prev_raw.realloc(prev_raw.ctx, ptr, size);
    _rh_in_hook = saved;
    if (p != NULL && tracking) {
        rh_block_t old;
        uint32_t e = birth_epoch();
        if (ptr != NULL && _rh_table_remove(&raw_table, (uintptr_t)ptr, &old)) {
            e = rh_block_epoch(&old);       /* same logical block: same birth */
            found = 1;
        }
        if (_rh_table_insert(&raw_table, (uintptr_t)p, rh_block_meta(size, RH_DOMAIN_RAW, e)) < 0)
            give_up(OOM_RAW);
        recorded = 1;
    }
    pthread_mutex_unlock(&raw_lock);
    if (!recorded)
        return p;
    if (ptr != NULL && !found)
        static_forget((uintptr_t)ptr);
    if (found && p != ptr)
        notify_move((uintptr_t)ptr, (uintptr_t)p, RH_DOMAIN_RAW);
    else if (!found)
        notify_alloc((uintptr_t)p, size, RH_DOMAIN_RAW);
    return p;
}

static void raw_free(void *ctx, void *ptr)
{
    if (ptr != NULL && tracking && !in_gil_hook) {
        rh_block_t old;
        int found = 0;
        pthread_mutex_lock(&raw_lock);
        if (tracking)
            found = _rh_table_remove(&raw_table, (uintptr_t)ptr, &old);
        pthread_mutex_unlock(&raw_lock);
        if (found)
            notify_free(&old);
        else
            static_forget((uintptr_t)ptr);
    }
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    prev_raw.free(prev_raw.ctx, ptr);
    _rh_in_hook = saved;
}

/* ---- the native heap (native.c reports, any thread, no GIL) ------------ */

void _rh_tracker_native_alloc(uintptr_t block, size_t size, int (*allowed)(void))
{
    if (!tracking)
        return;
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    int recorded = 0;
    pthread_mutex_lock(&raw_lock);
    if (tracking && (allowed == NULL || allowed())) {
        if (_rh_table_insert(&raw_table, block,
                             rh_block_meta(size, RH_DOMAIN_NATIVE, birth_epoch())) < 0)
            give_up(OOM_RAW);
        else
            recorded = 1;
    }
    pthread_mutex_unlock(&raw_lock);
    if (recorded)
        notify_alloc(block, size, RH_DOMAIN_NATIVE);
    _rh_in_hook = saved;
}

int _rh_tracker_native_free(uintptr_t block, rh_block_t *old)
{
    if (!tracking)
        return 0;
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    rh_block_t entry;
    int found = 0;
    pthread_mutex_lock(&raw_lock);
    if (tracking)
        found = _rh_table_remove(&raw_table, block, &entry);
    pthread_mutex_unlock(&raw_lock);
    if (found && rh_block_domain(&entry) != RH_DOMAIN_NATIVE) {
        /* A raw block released with free() (allowed for PyMem_RawMalloc's
         * default allocator): forgotten all the same. */
        notify_free(&entry);
        found = 0;
    }
    else if (found) {
        notify_free(&entry);
        if (old != NULL)
            *old = entry;
    }
    else {
        static_forget(block);
    }
    _rh_in_hook = saved;
    return found;
}

void _rh_tracker_native_restore(const rh_block_t *old)
{
    if (!tracking)
        return;
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    int recorded = 0;
    pthread_mutex_lock(&raw_lock);
    if (tracking) {
        if (_rh_table_insert(&raw_table, rh_block_addr(old), old->meta) < 0)
            give_up(OOM_RAW);
        else
            recorded = 1;
    }
    pthread_mutex_unlock(&raw_lock);
    if (recorded)
        notify_alloc(rh_block_addr(old), rh_block_size(old), RH_DOMAIN_NATIVE);
    _rh_in_hook = saved;
}

void _rh_tracker_native_drop(void)
{
    pthread_mutex_lock(&raw_lock);
    for (size_t i = 0; raw_table.slots != NULL && i < raw_table.capacity;) {
        const rh_block_t *b = &raw_table.slots[i];
        if (!rh_block_empty(b) && rh_block_domain(b) == RH_DOMAIN_NATIVE)
            _rh_table_remove(&raw_table, rh_block_addr(b), NULL);   /* slot i refilled: again */
        else
            i++;
    }
    pthread_mutex_unlock(&raw_lock);
}

/* ---- mem and obj domains (GIL held) -------------------------------------- */

typedef struct {
    PyMemAllocatorEx *prev;
    int domain;
} gil_domain_t;

static gil_domain_t mem_domain = {&prev_mem, RH_DOMAIN_MEM};
static gil_domain_t obj_domain = {&prev_obj, RH_DOMAIN_OBJ};

/* in_gil_hook and _rh_in_hook, saved in one int. */
static inline int enter_prev(void)
{
    int saved = in_gil_hook | (_rh_in_hook << 1);
    in_gil_hook = 1;
    _rh_in_hook = 1;
    return saved;
}

static inline void leave_prev(int saved)
{
    in_gil_hook = saved & 1;
    _rh_in_hook = saved >> 1;
}

static inline void gil_record(uintptr_t p, size_t size, int domain, uint32_t e)
{
    GIL_TABLE_LOCK();
    if (tracking && _rh_table_insert(&gil_table, p, rh_block_meta(size, domain, e)) < 0)
        give_up(OOM_GIL);
    GIL_TABLE_UNLOCK();
}

/* Forget a mem/obj/adopted block wherever it is; *table says where it was
 * (RH_TABLE_*), 0 when nowhere. */
static inline int gil_forget(uintptr_t p, rh_block_t *old)
{
    int table = 0;
    GIL_TABLE_LOCK();
    if (_rh_table_remove(&gil_table, p, old))
        table = RH_TABLE_GIL;
    else if (adopted_table.count != 0 && _rh_table_remove(&adopted_table, p, old))
        table = RH_TABLE_ADOPTED;
    GIL_TABLE_UNLOCK();
    if (table == 0 && static_maybe_gil_held(p)) {
        pthread_mutex_lock(&static_lock);
        if (_rh_table_remove(&static_table, p, old)) {
            table = RH_TABLE_STATIC;
            static_count = static_table.count;
            static_gen++;
        }
        pthread_mutex_unlock(&static_lock);
    }
    return table;
}

static void *gil_malloc(void *ctx, size_t size)
{
    gil_domain_t *d = (gil_domain_t *)ctx;
    void *p = NULL;
    if (provider != NULL && d->domain == RH_DOMAIN_OBJ && !engine_busy)
        p = provider(size);
    if (p == NULL) {
        int saved = enter_prev();
        p = d->prev->malloc(d->prev->ctx, size);
        leave_prev(saved);
    }
    if (p != NULL && tracking) {
        gil_record((uintptr_t)p, size, d->domain, birth_epoch());
        notify_alloc((uintptr_t)p, size, d->domain);
    }
    return p;
}

static void *gil_calloc(void *ctx, size_t nelem, size_t elsize)
{
    gil_domain_t *d = (gil_domain_t *)ctx;
    void *p = NULL;
    if (provider != NULL && d->domain == RH_DOMAIN_OBJ && !engine_busy &&
        (elsize == 0 || nelem <= (size_t)PY_SSIZE_T_MAX / elsize)) {
        p = provider(nelem * elsize);
        if (p != NULL)
            memset(p, 0, nelem * elsize);
    }
    if (p == NULL) {
        int saved = enter_prev();
        p = d->prev->calloc(d->prev->ctx, nelem, elsize);
        leave_prev(saved);
    }
    if (p != NULL && tracking) {
        gil_record((uintptr_t)p, nelem * elsize, d->domain, birth_epoch());
        notify_alloc((uintptr_t)p, nelem * elsize, d->domain);
    }
    return p;
}

static void *gil_realloc(void *ctx, void *ptr, size_t size)
{
    gil_domain_t *d = (gil_domain_t *)ctx;
    int saved = enter_prev();
    void *p = d->prev->realloc(d->prev->ctx, ptr, size);
    leave_prev(saved);
    if (p == NULL || !tracking)
        return p;
    uint32_t e = birth_epoch();
    int found = 0;
    if (ptr != NULL) {
        rh_block_t old;
        found = gil_forget((uintptr_t)ptr, &old);
        if (found == RH_TABLE_ADOPTED) {
            /* An adopted object that moved stays adopted (its offset is
             * kept in the size). */
            GIL_TABLE_LOCK();
            if (_rh_table_insert(&adopted_table, (uintptr_t)p, old.meta) < 0)
                give_up(OOM_GIL);
            GIL_TABLE_UNLOCK();
            return p;
        }
        if (found == RH_TABLE_GIL)
            e = rh_block_epoch(&old);       /* same logical block: same birth */
        else
            found = 0;                      /* a STATIC entry is forgotten */
    }
    gil_record((uintptr_t)p, size, d->domain, e);
    if (found && p != ptr)
        notify_move((uintptr_t)ptr, (uintptr_t)p, d->domain);
    else if (!found)
        notify_alloc((uintptr_t)p, size, d->domain);
    return p;
}

static void gil_free(void *ctx, void *ptr)
{
    gil_domain_t *d = (gil_domain_t *)ctx;
    if (ptr != NULL && tracking) {
        rh_block_t old;
        if (gil_forget((uintptr_t)ptr, &old))
            notify_free(&old);
    }
    int saved = enter_prev();
    d->prev->free(d->prev->ctx, ptr);
    leave_prev(saved);
}

/* ---- fork ---------------------------------------------------------------- */

static void atfork_prepare(void)
{
    pthread_mutex_lock(&static_lock);
    pthread_mutex_lock(&raw_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&raw_lock);
    pthread_mutex_unlock(&static_lock);
}

static void atfork_child(void)
{
    /* Only this thread survives: the locks are ours, make them new. */
    pthread_mutex_init(&raw_lock, NULL);
    pthread_mutex_init(&static_lock, NULL);
    in_gil_hook = 0;
    forks++;
}

/* ---- life cycle ----------------------------------------------------------- */

static int allocator_is(PyMemAllocatorDomain domain, const PyMemAllocatorEx *ours)
{
    PyMemAllocatorEx cur;
    PyMem_GetAllocator(domain, &cur);
    return cur.malloc == ours->malloc && cur.ctx == ours->ctx;
}

static void install_hooks(void)
{
    static int atfork_done = 0;
    if (!atfork_done) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        atfork_done = 1;
    }
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &prev_raw);
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &prev_mem);
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &prev_obj);
    our_raw = (PyMemAllocatorEx){NULL, raw_malloc, raw_calloc, raw_realloc, raw_free};
    our_mem = (PyMemAllocatorEx){&mem_domain, gil_malloc, gil_calloc, gil_realloc, gil_free};
    our_obj = (PyMemAllocatorEx){&obj_domain, gil_malloc, gil_calloc, gil_realloc, gil_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &our_raw);
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &our_mem);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &our_obj);
    hooks_installed = 1;
}

/* Remove the hooks unless someone installed theirs on top of ours; then
 * ours stay, passing every call through. */
static void uninstall_hooks(void)
{
    if (!hooks_installed)
        return;
    if (allocator_is(PYMEM_DOMAIN_RAW, &our_raw) &&
        allocator_is(PYMEM_DOMAIN_MEM, &our_mem) &&
        allocator_is(PYMEM_DOMAIN_OBJ, &our_obj)) {
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &prev_obj);
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &prev_mem);
        PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &prev_raw);
        hooks_installed = 0;
    }
}

int _rh_tracker_active(void) { return tracking; }

const char *_rh_tracker_failure(void) { return failure; }

int _rh_tracker_call_unhooked(int (*fn)(void *), void *arg)
{
    if (!hooks_installed || !allocator_is(PYMEM_DOMAIN_OBJ, &our_obj))
        return fn(arg);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &prev_obj);
    int rc = fn(arg);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &our_obj);
    return rc;
}

void *_rh_tracker_prev_malloc(size_t size)
{
    if (!hooks_installed)
        return PyObject_Malloc(size);
    int saved = enter_prev();
    void *p = prev_obj.malloc(prev_obj.ctx, size);
    leave_prev(saved);
    return p;
}

void _rh_tracker_prev_free(void *p)
{
    if (!hooks_installed) {
        PyObject_Free(p);
        return;
    }
    int saved = enter_prev();
    prev_obj.free(prev_obj.ctx, p);
    leave_prev(saved);
}

static void release_tables(void)
{
    pthread_mutex_lock(&raw_lock);
    tracking = 0;
    _rh_table_release(&raw_table);
    pthread_mutex_unlock(&raw_lock);
    pthread_mutex_lock(&static_lock);
    _rh_table_release(&static_table);
    static_count = 0;
    static_gen++;
    pthread_mutex_unlock(&static_lock);
    GIL_TABLE_LOCK();
    _rh_table_release(&gil_table);
    _rh_table_release(&adopted_table);
    GIL_TABLE_UNLOCK();
}

int _rh_tracker_start(const char **why)
{
    if (state == STATE_ON)
        return 0;
    if (state == STATE_FAILED)
        release_tables();           /* what a failed run left behind */
    failure = NULL;
    state = STATE_OFF;
    /* The mem/obj table starts sparse (1 MiB): measured here, probe length
     * (the load) costs more than cache lines, for the live sets of a few
     * thousand blocks that most checks have. */
    if (_rh_table_init(&gil_table, 1 << 16) < 0 ||
        _rh_table_init(&adopted_table, 1 << 12) < 0 ||
        _rh_table_init(&static_table, 1 << 10) < 0 ||
        _rh_table_init(&raw_table, 1 << 10) < 0) {
        release_tables();
        *why = "cannot map the block table (out of memory)";
        return -1;
    }
    /* Fault injection for tests: a table that cannot grow past this many
     * slots behaves as if mmap failed. */
    const char *limit = getenv("REFHOUND_MAX_BLOCKS");
    if (limit != NULL && atol(limit) > 0) {
        size_t n = (size_t)atol(limit);
        gil_table.max_capacity = adopted_table.max_capacity = n;
        static_table.max_capacity = raw_table.max_capacity = n;
    }
    epoch = 0;
    if (!hooks_installed)
        install_hooks();
    state = STATE_ON;
    pthread_mutex_lock(&raw_lock);
    tracking = 1;
    pthread_mutex_unlock(&raw_lock);
    return 0;
}

void _rh_tracker_stop(void)
{
    release_tables();
    state = STATE_OFF;
    uninstall_hooks();
}

/* ---- queries and walks ------------------------------------------------------ */

void _rh_tracker_totals(int64_t blocks[RH_NDOMAINS], int64_t bytes[RH_NDOMAINS])
{
    GIL_TABLE_LOCK();
    for (int d = 0; d < RH_NDOMAINS; d++) {
        blocks[d] = gil_table.live_blocks[d];
        bytes[d] = gil_table.live_bytes[d];
    }
    blocks[RH_DOMAIN_ADOPTED] = adopted_table.live_blocks[RH_DOMAIN_ADOPTED];
    GIL_TABLE_UNLOCK();
    pthread_mutex_lock(&static_lock);
    blocks[RH_DOMAIN_ADOPTED] += static_table.live_blocks[RH_DOMAIN_ADOPTED];
    pthread_mutex_unlock(&static_lock);
    pthread_mutex_lock(&raw_lock);
    blocks[RH_DOMAIN_RAW] = raw_table.live_blocks[RH_DOMAIN_RAW];
    bytes[RH_DOMAIN_RAW] = raw_table.live_bytes[RH_DOMAIN_RAW];
    blocks[RH_DOMAIN_NATIVE] = raw_table.live_blocks[RH_DOMAIN_NATIVE];
    bytes[RH_DOMAIN_NATIVE] = raw_table.live_bytes[RH_DOMAIN_NATIVE];
    pthread_mutex_unlock(&raw_lock);
    bytes[RH_DOMAIN_ADOPTED] = 0;   /* the size field holds an offset */
}

size_t _rh_tracker_table_bytes(void)
{
    pthread_mutex_lock(&raw_lock);
    size_t n = _rh_table_bytes(&raw_table);
    pthread_mutex_unlock(&raw_lock);
    pthread_mutex_lock(&static_lock);
    n += _rh_table_bytes(&static_table);
    pthread_mutex_unlock(&static_lock);
    GIL_TABLE_LOCK();
    n += _rh_table_bytes(&gil_table) + _rh_table_bytes(&adopted_table);
    GIL_TABLE_UNLOCK();
    return n;
}

size_t _rh_tracker_table_entries(void)
{
    pthread_mutex_lock(&raw_lock);
    size_t n = raw_table.count;
    pthread_mutex_unlock(&raw_lock);
    pthread_mutex_lock(&static_lock);
    n += static_table.count;
    pthread_mutex_unlock(&static_lock);
    GIL_TABLE_LOCK();
    n += gil_table.count + adopted_table.count;
    GIL_TABLE_UNLOCK();
    return n;
}

/* Slots ahead of the visited one whose blocks are prefetched: a walk that
 * reads every block (the heap walk) waits on memory, not on arithmetic,
 * and the slots are in hash order, so the blocks come in no order at all.
 * A prefetch never faults, whatever the address. */
#define WALK_PREFETCH_AHEAD 32

/* Slots [from, to) of a table. */
static void visit_range(const rh_table_t *t, size_t from, size_t to, rh_visit_t visit,
                        void *arg)
{
    for (size_t i = from; i < to; i++) {
        if (i + WALK_PREFETCH_AHEAD < to) {
            const rh_block_t *ahead = &t->slots[i + WALK_PREFETCH_AHEAD];
            if (!rh_block_empty(ahead)) {
                const char *p = (const char *)rh_block_addr(ahead);
                __builtin_prefetch(p, 0, 0);
                __builtin_prefetch(p + 40, 0, 0);
            }
        }
        if (!rh_block_empty(&t->slots[i]))
            visit(&t->slots[i], arg);
    }
}

static void visit_table(const rh_table_t *t, rh_visit_t visit, void *arg)
{
    if (t->slots != NULL)
        visit_range(t, 0, t->capacity, visit, arg);
}

/* The helper of the two-thread walk: one thread, started at the first
 * such walk and kept (a thread started per walk churns the malloc heap,
 * its TLS, which the screen's heap figure then sees move), named
 * "refhound-walk", every signal blocked, waiting on a condition variable
 * between walks.  It never allocates or calls Python.  After a fork the
 * child has no helper: the first walk there starts its own (pid check). */
typedef struct {
    rh_visit_t visit;
    void *arg;
    unsigned tables;
} half_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    pid_t pid;                  /* the process that started it; 0: none */
    uint64_t asked, finished;   /* walks asked of it and walks it finished */
    half_t job;
} helper = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
            0, 0, 0, {NULL, NULL, 0}};

/* The second half of each table's slots. */
static void *helper_main(void *unused)
{
    (void)unused;
    uint64_t seen = 0;
    pthread_mutex_lock(&helper.lock);
    for (;;) {
        while (helper.asked == seen)
            pthread_cond_wait(&helper.go, &helper.lock);
        seen = helper.asked;
        half_t h = helper.job;
        pthread_mutex_unlock(&helper.lock);
        if (h.tables & RH_TABLE_GIL)
            visit_range(&gil_table, gil_table.capacity / 2, gil_table.capacity, h.visit, h.arg);
        if (h.tables & RH_TABLE_ADOPTED)
            visit_range(&adopted_table, adopted_table.capacity / 2, adopted_table.capacity,
                        h.visit, h.arg);
        pthread_mutex_lock(&helper.lock);
        helper.finished = seen;
        pthread_cond_signal(&helper.done);
    }
    return NULL;
}

/* In a fork child: no helper (only the forking thread goes on). */
static void helper_forget(void) { helper.pid = 0; }

/* 0 when this process has its helper (started now if need be), -1 if not. */
static int helper_ready(void)
{
    static int atfork = 0;
    pid_t pid = getpid();
    if (helper.pid == pid)
        return 0;
    if (!atfork) {
        if (pthread_atfork(NULL, NULL, helper_forget) != 0)
            return -1;
        atfork = 1;
    }
    /* None yet, or the parent's (this is a fork child): fresh state. */
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    helper.lock = lock;
    helper.go = cond;
    helper.done = cond;
    helper.asked = helper.finished = 0;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);     /* the helper inherits the mask */
    pthread_t t;
    int started = pthread_create(&t, &attr, helper_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (!started)
        return -1;
    pthread_setname_np(t, "refhound-walk");
    helper.pid = pid;
    return 0;
}

int _rh_tracker_walk_split(unsigned tables, rh_visit_t visit, void *args[2])
{
    tables &= RH_TABLE_GIL | RH_TABLE_ADOPTED;
    if (!tracking || tables == 0 || helper_ready() < 0)
        return -1;
    GIL_TABLE_LOCK();
    pthread_mutex_lock(&helper.lock);
    helper.job.visit = visit;
    helper.job.arg = args[1];
    helper.job.tables = tables;
    uint64_t mine = ++helper.asked;
    pthread_cond_signal(&helper.go);
    pthread_mutex_unlock(&helper.lock);
    if (tables & RH_TABLE_GIL)
        visit_range(&gil_table, 0, gil_table.capacity / 2, visit, args[0]);
    if (tables & RH_TABLE_ADOPTED)
        visit_range(&adopted_table, 0, adopted_table.capacity / 2, visit, args[0]);
    pthread_mutex_lock(&helper.lock);
    while (helper.finished != mine)
        pthread_cond_wait(&helper.done, &helper.lock);
    pthread_mutex_unlock(&helper.lock);
    GIL_TABLE_UNLOCK();
    return 0;
}

void _rh_tracker_walk(unsigned tables, rh_visit_t visit, void *arg)
{
    if (!tracking)
        return;
    if (tables & (RH_TABLE_GIL | RH_TABLE_ADOPTED)) {
        GIL_TABLE_LOCK();
        if (tables & RH_TABLE_GIL)
            visit_table(&gil_table, visit, arg);
        if (tables & RH_TABLE_ADOPTED)
            visit_table(&adopted_table, visit, arg);
        GIL_TABLE_UNLOCK();
    }
    if (tables & RH_TABLE_STATIC) {
        pthread_mutex_lock(&static_lock);
        visit_table(&static_table, visit, arg);
        pthread_mutex_unlock(&static_lock);
    }
    if (tables & RH_TABLE_RAW) {
        pthread_mutex_lock(&raw_lock);
        visit_table(&raw_table, visit, arg);
        pthread_mutex_unlock(&raw_lock);
    }
}

typedef struct {
    uint32_t first, last;
    int64_t *blocks, *bytes;
} survivors_arg_t;

static void count_survivor(const rh_block_t *b, void *arg)
{
    survivors_arg_t *s = (survivors_arg_t *)arg;
    uint32_t e = rh_block_epoch(b);
    if (rh_block_domain(b) == RH_DOMAIN_ADOPTED || e < s->first || e > s->last)
        return;
    s->blocks[e - s->first]++;
    s->bytes[e - s->first] += (int64_t)rh_block_size(b);
}

void _rh_tracker_survivors(uint32_t first, uint32_t last, int64_t *blocks, int64_t *bytes)
{
    memset(blocks, 0, sizeof(int64_t) * (last - first + 1));
    memset(bytes, 0, sizeof(int64_t) * (last - first + 1));
    survivors_arg_t s = {first, last, blocks, bytes};
    _rh_tracker_walk(RH_TABLE_GIL | RH_TABLE_RAW, count_survivor, &s);
}

int _rh_tracker_find(uintptr_t block, unsigned tables, rh_block_t *out)
{
    const rh_block_t *b = NULL;
    if (!tracking)
        return 0;
    if (tables & (RH_TABLE_GIL | RH_TABLE_ADOPTED)) {
        GIL_TABLE_LOCK();
        if (tables & RH_TABLE_GIL)
            b = _rh_table_find(&gil_table, block);
        if (b == NULL && (tables & RH_TABLE_ADOPTED))
            b = _rh_table_find(&adopted_table, block);
        if (b != NULL)
            *out = *b;
        GIL_TABLE_UNLOCK();
        if (b != NULL)
            return 1;
    }
    if ((tables & RH_TABLE_STATIC) && static_count != 0) {
        pthread_mutex_lock(&static_lock);
        b = _rh_table_find(&static_table, block);
        if (b != NULL)
            *out = *b;
        pthread_mutex_unlock(&static_lock);
        if (b != NULL)
            return 1;
    }
    if (tables & RH_TABLE_RAW) {
        pthread_mutex_lock(&raw_lock);
        b = _rh_table_find(&raw_table, block);
        if (b != NULL)
            *out = *b;
        pthread_mutex_unlock(&raw_lock);
    }
    return b != NULL;
}

int _rh_tracker_adopt(uintptr_t block, size_t object_offset, int how)
{
    if (!tracking)
        return 0;
    rh_block_t known;
    if (_rh_tracker_find(block, RH_TABLE_GIL | RH_TABLE_ADOPTED | RH_TABLE_STATIC, &known))
        return 0;
    uint64_t meta = rh_block_meta(object_offset, RH_DOMAIN_ADOPTED,
                                  how == RH_ADOPTED_STATIC ? RH_ADOPTED_STATIC : RH_ADOPTED_LIVE);
    int rc;
    if (how == RH_ADOPTED_STATIC) {
        pthread_mutex_lock(&static_lock);
        rc = _rh_table_insert(&static_table, block, meta);
        static_count = static_table.count;
        static_gen++;
        pthread_mutex_unlock(&static_lock);
    }
    else {
        GIL_TABLE_LOCK();
        rc = _rh_table_insert(&adopted_table, block, meta);
        GIL_TABLE_UNLOCK();
    }
    if (rc < 0) {
        give_up(OOM_ADOPT);
        return -1;
    }
    return 1;
}

void _rh_tracker_drop_static(uintptr_t block)
{
    static_forget(block);
}

uint64_t _rh_tracker_static_generation(void) { return static_gen; }

void _rh_tracker_hide_addresses(int hide)
{
    (void)hide;         /* XOR is its own inverse */
    const uint64_t mask = 0xa5a5a5a5a5a5a5a5ULL;
    GIL_TABLE_LOCK();
    _rh_table_flip_keys(&gil_table, mask);
    _rh_table_flip_keys(&adopted_table, mask);
    GIL_TABLE_UNLOCK();
}
