/* tracker.c — PEP 445 hooks over the raw, mem and obj domains.
 *
 * Every hook calls the allocator that was installed before it (chaining),
 * then records the block in a table of live blocks with its size, domain
 * and birth epoch.  The hooks never call a hooked allocator: tables live in
 * mmap'd memory (blocks.c).
 *
 * Locking:
 *   _rh_gil_table  mem + obj blocks; guarded by the GIL (the mem
 *                  and obj domains require it).  Free-threaded builds take
 *                  gil_table_lock instead.
 *   raw_table      raw blocks; guarded by raw_lock (the raw domain is called
 *                  without the GIL).  pthread_atfork keeps the lock usable
 *                  in a forked child.
 *   _rh_tracking   read without a lock as a fast path, re-checked under
 *                  raw_lock in the raw hooks; written under the GIL and
 *                  raw_lock.
 *
 * Re-entry: pymalloc serves large requests from the raw domain, so an obj
 * hook can call the raw hook on the same thread.  The GIL hooks set a
 * thread-local flag around their call to the previous allocator; the raw
 * hook ignores calls made under it, so such a block is counted once, as obj.
 *
 * Out of memory: when a table cannot grow, tracking stops with a reason
 * (_rh_tracker_failure) and the program goes on untouched.
 */
#include "rh_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

rh_table_t _rh_gil_table;
rh_table_t _rh_old_table;      /* adopted objects (existed before tracking); GIL */

static rh_table_t raw_table;
static pthread_mutex_t raw_lock = PTHREAD_MUTEX_INITIALIZER;
#ifdef Py_GIL_DISABLED
static pthread_mutex_t gil_table_lock = PTHREAD_MUTEX_INITIALIZER;
#  define GIL_TABLE_LOCK() pthread_mutex_lock(&gil_table_lock)
#  define GIL_TABLE_UNLOCK() pthread_mutex_unlock(&gil_table_lock)
#else
#  define GIL_TABLE_LOCK() ((void)0)
#  define GIL_TABLE_UNLOCK() ((void)0)
#endif

volatile int _rh_tracking = 0;
volatile uint32_t _rh_epoch = 0;
rh_free_observer_t _rh_free_observer = NULL;

static int hooks_installed = 0;
static int allocator_is(PyMemAllocatorDomain domain, const PyMemAllocatorEx *ours);
static const char *failure = NULL;
static PyMemAllocatorEx prev_raw, prev_mem, prev_obj;
static PyMemAllocatorEx our_raw, our_mem, our_obj;
/* This thread is inside a GIL-domain hook's call to the previous
 * allocator.  initial-exec TLS: one %fs-relative access, no call (a few
 * bytes of the static TLS surplus glibc keeps for dlopen'd modules). */
static __thread int in_gil_hook __attribute__((tls_model("initial-exec")));

/* Stop tracking because the tracker itself ran out of memory. */
static void give_up(const char *why)
{
    failure = why;
    _rh_tracking = 0;
}

/* ---- raw domain --------------------------------------------------- */

static inline int raw_nested(void)
{
    return in_gil_hook;
}

static void raw_record(void *p, size_t size)
{
    pthread_mutex_lock(&raw_lock);
    if (_rh_tracking &&
        _rh_table_insert(&raw_table, (uintptr_t)p,
                         rh_block_meta(size, RH_DOMAIN_RAW, _rh_epoch)) < 0)
        give_up("the raw block table could not grow (out of memory)");
    pthread_mutex_unlock(&raw_lock);
}

static void *raw_malloc(void *ctx, size_t size)
{
    void *p = prev_raw.malloc(prev_raw.ctx, size);
    if (p != NULL && _rh_tracking && !raw_nested()) {
        raw_record(p, size);
        if (_rh_capture_stacks)
            _rh_stacks_on_alloc((uintptr_t)p, RH_DOMAIN_RAW);   /* no GIL: native frames only */
    }
    return p;
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    void *p = prev_raw.calloc(prev_raw.ctx, nelem, elsize);
    if (p != NULL && _rh_tracking && !raw_nested()) {
        raw_record(p, nelem * elsize);
        if (_rh_capture_stacks)
            _rh_stacks_on_alloc((uintptr_t)p, RH_DOMAIN_RAW);
    }
    return p;
}

static void *raw_realloc(void *ctx, void *ptr, size_t size)
{
    if (!_rh_tracking || raw_nested())
        return prev_raw.realloc(prev_raw.ctx, ptr, size);
    /* Hold the lock across the call: once realloc frees ptr another thread
     * may be handed the same address and record it before we forget it. */
    pthread_mutex_lock(&raw_lock);
    void *p = prev_raw.realloc(prev_raw.ctx, ptr, size);
    if (p != NULL && _rh_tracking) {
        rh_block_t old;
        uint32_t epoch = _rh_epoch;
        if (ptr != NULL && _rh_table_remove(&raw_table, (uintptr_t)ptr, &old))
            epoch = rh_block_epoch(&old);
        if (_rh_table_insert(&raw_table, (uintptr_t)p,
                             rh_block_meta(size, RH_DOMAIN_RAW, epoch)) < 0)
            give_up("the raw block table could not grow (out of memory)");
    }
    pthread_mutex_unlock(&raw_lock);
    if (p != NULL && _rh_stacks_in_use && ptr != NULL && p != ptr)
        _rh_stacks_on_move((uintptr_t)ptr, (uintptr_t)p);
    else if (p != NULL && _rh_capture_stacks && ptr == NULL)
        _rh_stacks_on_alloc((uintptr_t)p, RH_DOMAIN_RAW);
    return p;
}

static void raw_free(void *ctx, void *ptr)
{
    if (ptr != NULL && _rh_tracking && !raw_nested()) {
        pthread_mutex_lock(&raw_lock);
        if (_rh_tracking)
            _rh_table_remove(&raw_table, (uintptr_t)ptr, NULL);
        pthread_mutex_unlock(&raw_lock);
        if (_rh_stacks_in_use)
            _rh_stacks_on_free((uintptr_t)ptr);
    }
    prev_raw.free(prev_raw.ctx, ptr);
}

/* ---- mem and obj domains (GIL held) -------------------------------- */

typedef struct {
    PyMemAllocatorEx *prev;
    int domain;
} gil_domain_t;

static gil_domain_t mem_domain = {&prev_mem, RH_DOMAIN_MEM};
static gil_domain_t obj_domain = {&prev_obj, RH_DOMAIN_OBJ};

static inline int enter_prev(void)
{
    int saved = in_gil_hook;
    in_gil_hook = 1;
    return saved;
}

static inline void leave_prev(int saved)
{
    in_gil_hook = saved;
}

static inline void gil_record(uintptr_t p, size_t size, int domain, uint32_t epoch)
{
    GIL_TABLE_LOCK();
    if (_rh_tracking &&
        _rh_table_insert(&_rh_gil_table, p, rh_block_meta(size, domain, epoch)) < 0)
        give_up("the block table could not grow (out of memory)");
    GIL_TABLE_UNLOCK();
}

/* Forget a mem/obj/adopted block wherever it is (lock held). */
static inline int gil_forget_unlocked(uintptr_t p, rh_block_t *old, int *adopted)
{
    *adopted = 0;
    if (_rh_table_remove(&_rh_gil_table, p, old))
        return 1;
    if (_rh_old_table.count != 0 && _rh_table_remove(&_rh_old_table, p, old)) {
        *adopted = 1;
        return 1;
    }
    return 0;
}

static void *gil_malloc(void *ctx, size_t size)
{
    gil_domain_t *d = (gil_domain_t *)ctx;
    int saved = enter_prev();
    void *p = d->prev->malloc(d->prev->ctx, size);
    leave_prev(saved);
    if (p != NULL && _rh_tracking) {
        gil_record((uintptr_t)p, size, d->domain, _rh_epoch);
        if (_rh_capture_stacks)
            _rh_stacks_on_alloc((uintptr_t)p, d->domain);
    }
    return p;
}

static void *gil_calloc(void *ctx, size_t nelem, size_t elsize)
{
    gil_domain_t *d = (gil_domain_t *)ctx;
    int saved = enter_prev();
    void *p = d->prev->calloc(d->prev->ctx, nelem, elsize);
    leave_prev(saved);
    if (p != NULL && _rh_tracking) {
        gil_record((uintptr_t)p, nelem * elsize, d->domain, _rh_epoch);
        if (_rh_capture_stacks)
            _rh_stacks_on_alloc((uintptr_t)p, d->domain);
    }
    return p;
}

static void *gil_realloc(void *ctx, void *ptr, size_t size)
{
    gil_domain_t *d = (gil_domain_t *)ctx;
    int saved = enter_prev();
    void *p = d->prev->realloc(d->prev->ctx, ptr, size);
    leave_prev(saved);
    if (p == NULL || !_rh_tracking)
        return p;
    int domain = d->domain;
    uint32_t epoch = _rh_epoch;
    size_t recorded = size;
    if (ptr != NULL) {
        rh_block_t old;
        int adopted;
        GIL_TABLE_LOCK();
        int found = gil_forget_unlocked((uintptr_t)ptr, &old, &adopted);
        if (found && adopted) {
            /* An adopted object that moved stays adopted (its offset is
             * kept in the size). */
            if (_rh_table_insert(&_rh_old_table, (uintptr_t)p, old.meta) < 0)
                give_up("the block table could not grow (out of memory)");
            GIL_TABLE_UNLOCK();
            return p;
        }
        GIL_TABLE_UNLOCK();
        if (found)
            epoch = rh_block_epoch(&old);   /* same logical block: same birth */
    }
    gil_record((uintptr_t)p, recorded, domain, epoch);
    if (_rh_stacks_in_use && ptr != NULL && p != ptr)
        _rh_stacks_on_move((uintptr_t)ptr, (uintptr_t)p);
    else if (_rh_capture_stacks && ptr == NULL)
        _rh_stacks_on_alloc((uintptr_t)p, d->domain);
    return p;
}

static void gil_free(void *ctx, void *ptr)
{
    gil_domain_t *d = (gil_domain_t *)ctx;
    if (ptr != NULL && _rh_tracking) {
        rh_block_t old;
        int adopted;
        GIL_TABLE_LOCK();
        int found = gil_forget_unlocked((uintptr_t)ptr, &old, &adopted);
        GIL_TABLE_UNLOCK();
        if (found && _rh_free_observer != NULL)
            _rh_free_observer(&old);
        if (found && _rh_stacks_in_use)
            _rh_stacks_on_free((uintptr_t)ptr);
    }
    int saved = enter_prev();
    d->prev->free(d->prev->ctx, ptr);
    leave_prev(saved);
}

/* ---- fork ------------------------------------------------------------ */

static void atfork_prepare(void) { pthread_mutex_lock(&raw_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&raw_lock); }
static void atfork_child(void)
{
    /* Only this thread survives: the lock is ours, make it new. */
    pthread_mutex_init(&raw_lock, NULL);
    in_gil_hook = 0;
}

/* ---- life cycle ------------------------------------------------------- */

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

int _rh_tracker_active(void) { return _rh_tracking; }

/* Run fn with the obj domain's previous allocator back in place: CPython
 * reports pymalloc's statistics only while pymalloc is the installed
 * allocator.  GIL held; fn must not allocate through Python. */
int _rh_tracker_call_unhooked(int (*fn)(void *), void *arg)
{
    if (!hooks_installed || !allocator_is(PYMEM_DOMAIN_OBJ, &our_obj))
        return fn(arg);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &prev_obj);
    int rc = fn(arg);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &our_obj);
    return rc;
}
const char *_rh_tracker_failure(void) { return failure; }

int _rh_tracker_start(void)
{
    if (_rh_tracking)
        return 0;
    failure = NULL;
    /* The mem/obj table starts sparse (1 MiB): measured here, probe length
     * (the load) costs more than cache lines, for the live sets of a few
     * thousand blocks that most checks have. */
    if (_rh_table_init(&_rh_gil_table, 1 << 16) < 0 ||
        _rh_table_init(&_rh_old_table, 1 << 12) < 0 ||
        _rh_table_init(&raw_table, 1 << 10) < 0) {
        _rh_table_release(&_rh_gil_table);
        _rh_table_release(&_rh_old_table);
        PyErr_SetString(PyExc_MemoryError, "refhound: cannot map the block table");
        return -1;
    }
    /* Fault injection for tests: a table that cannot grow past this many
     * slots behaves as if mmap failed. */
    const char *limit = getenv("REFHOUND_MAX_BLOCKS");
    if (limit != NULL && atol(limit) > 0) {
        _rh_gil_table.max_capacity = (size_t)atol(limit);
        _rh_old_table.max_capacity = (size_t)atol(limit);
        raw_table.max_capacity = (size_t)atol(limit);
    }
    _rh_epoch = 0;
    if (!hooks_installed)
        install_hooks();
    pthread_mutex_lock(&raw_lock);
    _rh_tracking = 1;
    pthread_mutex_unlock(&raw_lock);
    return 0;
}

void _rh_tracker_stop(void)
{
    _rh_stacks_reset();
    _rh_unwind_reset();
    pthread_mutex_lock(&raw_lock);
    _rh_tracking = 0;
    _rh_table_release(&raw_table);
    pthread_mutex_unlock(&raw_lock);
    GIL_TABLE_LOCK();
    _rh_table_release(&_rh_gil_table);
    _rh_table_release(&_rh_old_table);
    GIL_TABLE_UNLOCK();
    uninstall_hooks();
}

uint32_t _rh_epoch_advance(void)
{
    if (_rh_epoch < RH_EPOCH_MAX)
        _rh_epoch++;
    return _rh_epoch;
}

void _rh_tracker_totals(int64_t blocks[RH_NDOMAINS], int64_t bytes[RH_NDOMAINS])
{
    GIL_TABLE_LOCK();
    for (int d = 0; d < RH_NDOMAINS; d++) {
        blocks[d] = _rh_gil_table.live_blocks[d];
        bytes[d] = _rh_gil_table.live_bytes[d];
    }
    blocks[RH_DOMAIN_ADOPTED] = _rh_old_table.live_blocks[RH_DOMAIN_ADOPTED];
    GIL_TABLE_UNLOCK();
    pthread_mutex_lock(&raw_lock);
    blocks[RH_DOMAIN_RAW] = raw_table.live_blocks[RH_DOMAIN_RAW];
    bytes[RH_DOMAIN_RAW] = raw_table.live_bytes[RH_DOMAIN_RAW];
    pthread_mutex_unlock(&raw_lock);
    bytes[RH_DOMAIN_ADOPTED] = 0;   /* the size field holds an offset */
}

size_t _rh_tracker_table_bytes(void)
{
    pthread_mutex_lock(&raw_lock);
    size_t n = _rh_table_bytes(&raw_table);
    pthread_mutex_unlock(&raw_lock);
    return n + _rh_table_bytes(&_rh_gil_table) + _rh_table_bytes(&_rh_old_table);
}

size_t _rh_tracker_table_entries(void)
{
    pthread_mutex_lock(&raw_lock);
    size_t n = raw_table.count;
    pthread_mutex_unlock(&raw_lock);
    return n + _rh_gil_table.count + _rh_old_table.count;
}

static void survivors_in(const rh_table_t *t, uint32_t first, uint32_t last,
                         int64_t *blocks, int64_t *bytes)
{
    for (size_t i = 0; i < t->capacity; i++) {
        const rh_block_t *b = &t->slots[i];
        if (rh_block_empty(b) || rh_block_domain(b) == RH_DOMAIN_ADOPTED)
            continue;
        uint32_t e = rh_block_epoch(b);
        if (e < first || e > last)
            continue;
        blocks[e - first]++;
        bytes[e - first] += (int64_t)rh_block_size(b);
    }
}

void _rh_tracker_survivors(uint32_t first, uint32_t last, int64_t *blocks, int64_t *bytes)
{
    memset(blocks, 0, sizeof(int64_t) * (last - first + 1));
    memset(bytes, 0, sizeof(int64_t) * (last - first + 1));
    if (!_rh_tracking)
        return;
    GIL_TABLE_LOCK();
    survivors_in(&_rh_gil_table, first, last, blocks, bytes);
    GIL_TABLE_UNLOCK();
    pthread_mutex_lock(&raw_lock);
    survivors_in(&raw_table, first, last, blocks, bytes);
    pthread_mutex_unlock(&raw_lock);
}

void _rh_tracker_foreach(void (*visit)(const rh_block_t *, void *), void *arg)
{
    if (!_rh_tracking)
        return;
    GIL_TABLE_LOCK();
    for (size_t i = 0; i < _rh_gil_table.capacity; i++)
        if (_rh_gil_table.slots[i].key != 0)
            visit(&_rh_gil_table.slots[i], arg);
    for (size_t i = 0; i < _rh_old_table.capacity; i++)
        if (_rh_old_table.slots[i].key != 0)
            visit(&_rh_old_table.slots[i], arg);
    GIL_TABLE_UNLOCK();
    pthread_mutex_lock(&raw_lock);
    for (size_t i = 0; i < raw_table.capacity; i++)
        if (raw_table.slots[i].key != 0)
            visit(&raw_table.slots[i], arg);
    pthread_mutex_unlock(&raw_lock);
}

const rh_block_t *_rh_tracker_find(uintptr_t block)
{
    const rh_block_t *b = _rh_table_find(&_rh_gil_table, block);
    return b != NULL ? b : _rh_table_find(&_rh_old_table, block);
}

int _rh_tracker_adopt(uintptr_t block, size_t object_offset)
{
    if (!_rh_tracking)
        return 0;
    int added = 0;
    GIL_TABLE_LOCK();
    if (_rh_table_find(&_rh_gil_table, block) == NULL &&
        _rh_table_find(&_rh_old_table, block) == NULL) {
        if (_rh_table_insert(&_rh_old_table, block,
                             rh_block_meta(object_offset, RH_DOMAIN_ADOPTED, 0)) < 0) {
            give_up("the block table could not grow (out of memory)");
            added = -1;
        }
        else
            added = 1;
    }
    GIL_TABLE_UNLOCK();
    return added;
}
