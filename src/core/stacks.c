/* stacks.c — allocation stacks: capture, interning, block => stack, sites.
 *
 * While capture is on, the tracker tells this file of every new block (an
 * observer, registered here): the native return addresses are taken by
 * unwind.c's cached-CFI walk (falling back to the compiler's unwinder,
 * _Unwind_Backtrace: both read .eh_frame, so code without frame pointers
 * unwinds too), the Python frames as (code object, bytecode offset) pairs
 * read from the thread's frame chain by pyframes.c (GIL domains only: the raw domain
 * runs without the GIL), and the pair is interned in a stack table so a
 * block costs one 32-bit id in a side table keyed by block address.
 * Nothing is resolved here: symbols.c turns addresses into file:line
 * later, outside the hooks.  The engine's own allocations are never
 * shown to observers, so they get no stack (tracker.h).
 *
 * Memory: records and the index live in mmap'd memory; the side table is a
 * blocks.c table (the id in the size field).  All of it is guarded by
 * stacks_lock (a fork waits for it), taken by hooks of every domain; never
 * held while calling anything that can allocate through Python.  capture and in_use are read
 * by the hooks without the lock (a late or early event is harmless) and
 * written under the GIL.  Lock order: stacks_lock, then the tracker's
 * table locks (sites walks the tables holding it).
 */
#include "stacks.h"
#include "blocks.h"
#include "objects.h"
#include "pyframes.h"
#include "tracker.h"
#include "typeset.h"
#include "unwind.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static volatile int capture = 0;          /* hooks record stacks */
static volatile int in_use = 0;           /* the side table has entries */
static int observing = 0;                 /* our observer is registered (GIL) */

static pthread_mutex_t stacks_lock = PTHREAD_MUTEX_INITIALIZER;

/* Record layout in `words`: [hash | nnative << 32 | npy << 48], the
 * number of blocks with this stack freed since capture began, then nnative
 * addresses, then npy pairs (code object, byte offset).  The freed counts
 * show the paths through an allocation wrapper that do release what it
 * gave them (sites: where the leaking path parts from them). */
#define ARENA_WORDS ((size_t)1 << 25)   /* 256 MiB of address space, reserved */
static uintptr_t *words;
static size_t nwords = 1;               /* id 0 = "no stack" */
static uint32_t *index_slots;           /* open addressing: record offsets */
static size_t index_cap, index_count;
static rh_table_t block_stacks;         /* block address => stack id */

/* ---- capture ------------------------------------------------------------- */

/* ---- interning -------------------------------------------------------- */

static uint32_t hash_words(const uintptr_t *w, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= w[i];
        h *= 1099511628211ull;
        h ^= h >> 31;
    }
    return (uint32_t)(h ^ (h >> 32)) | 1;
}

static int ensure_arena_unlocked(void)
{
    if (words != NULL)
        return 0;
    void *p = mmap(NULL, ARENA_WORDS * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    words = (uintptr_t *)p;
    nwords = 1;
    return 0;
}

static int index_grow_unlocked(void)
{
    size_t cap = index_cap ? index_cap * 2 : 4096;
    uint32_t *slots = mmap(NULL, cap * sizeof(uint32_t), PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED)
        return -1;
    for (size_t i = 0; i < index_cap; i++) {
        uint32_t id = index_slots[i];
        if (id == 0)
            continue;
        size_t j = (uint32_t)words[id] & (cap - 1);
        while (slots[j] != 0)
            j = (j + 1) & (cap - 1);
        slots[j] = id;
    }
    if (index_slots)
        munmap(index_slots, index_cap * sizeof(uint32_t));
    index_slots = slots;
    index_cap = cap;
    return 0;
}

/* Intern a stack; 0 when out of room (the block just gets no stack). */
static uint32_t intern_unlocked(const uintptr_t *native, int nn, const uintptr_t *py, int npy)
{
    uintptr_t buf[RH_MAX_NATIVE + 2 * RH_MAX_PY];
    memcpy(buf, native, nn * sizeof(uintptr_t));
    memcpy(buf + nn, py, 2 * npy * sizeof(uintptr_t));
    size_t len = nn + 2 * (size_t)npy;
    uint32_t h = hash_words(buf, len);
    uintptr_t head = (uintptr_t)h | ((uintptr_t)nn << 32) | ((uintptr_t)npy << 48);
    if (ensure_arena_unlocked() < 0)
        return 0;
    if ((index_count + 1) * 2 > index_cap && index_grow_unlocked() < 0)
        return 0;
    size_t i = h & (index_cap - 1);
    while (index_slots[i] != 0) {
        uint32_t id = index_slots[i];
        if (words[id] == head && memcmp(&words[id + 2], buf, len * sizeof(uintptr_t)) == 0)
            return id;
        i = (i + 1) & (index_cap - 1);
    }
    if (nwords + 2 + len > ARENA_WORDS || nwords + 2 + len > UINT32_MAX)
        return 0;
    uint32_t id = (uint32_t)nwords;
    words[id] = head;
    words[id + 1] = 0;
    memcpy(&words[id + 2], buf, len * sizeof(uintptr_t));
    nwords += 2 + len;
    index_slots[i] = id;
    index_count++;
    return id;
}

static uint32_t stack_intern(const uintptr_t *native, int nn, const uintptr_t *py, int npy)
{
    pthread_mutex_lock(&stacks_lock);
    uint32_t id = intern_unlocked(native, nn, py, npy);
    pthread_mutex_unlock(&stacks_lock);
    return id;
}

/* domain: where the block comes from (RH_DOMAIN_*). */
static uint32_t capture_stack(int domain)
{
    int with_python = domain == RH_DOMAIN_MEM || domain == RH_DOMAIN_OBJ;
    uintptr_t raw[RH_MAX_NATIVE + 8], py[2 * RH_MAX_PY];
    int entries = 0;
    int npy = with_python ? _rh_python_frames(py, RH_MAX_PY, &entries) : 0;
    /* Past the outermost eval loop the C stack is the same for every block
     * (Py_RunMain ... _start): the walk stops a few frames after it. */
    int nraw = _rh_fast_backtrace(raw, RH_MAX_NATIVE + 8, entries);
    int skip = 0;
    while (skip < nraw && _rh_unwind_is_self(raw[skip]))
        skip++;                                 /* refhound's own frames */
    uintptr_t *native = raw + skip;
    int nn = nraw - skip;
    if (nn > RH_MAX_NATIVE)
        nn = RH_MAX_NATIVE;
    if (nn < 4 && nraw < RH_MAX_NATIVE + 8)     /* the fast walk gave up early */
        nn = _rh_native_backtrace(native = raw, RH_MAX_NATIVE);
    return stack_intern(native, nn, py, npy);
}


/* ---- block => stack ---------------------------------------------------- */

static void on_alloc(uintptr_t block, size_t size, int domain)
{
    if (!capture)
        return;
    uint32_t id = capture_stack(domain);
    if (id == 0)
        return;
    pthread_mutex_lock(&stacks_lock);
    if (block_stacks.slots != NULL || _rh_table_init(&block_stacks, 1 << 14) == 0) {
        if (_rh_table_insert(&block_stacks, block, rh_block_meta(id, 0, 0)) == 0)
            in_use = 1;
    }
    pthread_mutex_unlock(&stacks_lock);
}

static void on_free(const rh_block_t *entry)
{
    if (!in_use)
        return;
    rh_block_t old;
    pthread_mutex_lock(&stacks_lock);
    if (_rh_table_remove(&block_stacks, rh_block_addr(entry), &old)) {
        uint32_t id = (uint32_t)rh_block_size(&old);
        if (id != 0 && id < nwords)
            words[id + 1]++;            /* a block of this stack was released */
    }
    pthread_mutex_unlock(&stacks_lock);
}

static void on_move(uintptr_t from, uintptr_t to, int domain)
{
    if (!in_use)
        return;
    rh_block_t old;
    pthread_mutex_lock(&stacks_lock);
    if (_rh_table_remove(&block_stacks, from, &old))
        _rh_table_insert(&block_stacks, to, old.meta);
    pthread_mutex_unlock(&stacks_lock);
}

static const rh_observer_t observer = {
    RH_DOMAIN_BIT(RH_DOMAIN_RAW) | RH_DOMAIN_BIT(RH_DOMAIN_MEM) | RH_DOMAIN_BIT(RH_DOMAIN_OBJ) |
        RH_DOMAIN_BIT(RH_DOMAIN_ADOPTED),
    on_alloc, on_free, on_move,
};

/* A fork waits for stacks_lock (registered after the tracker's handlers,
 * so it is taken before the tables' locks, the documented order). */
static void atfork_prepare(void) { pthread_mutex_lock(&stacks_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&stacks_lock); }
static void atfork_child(void) { pthread_mutex_init(&stacks_lock, NULL); }

int _rh_stacks_capture(int on)
{
    if (on && !observing) {
        if (_rh_tracker_observe(&observer) < 0)
            return -1;
        static int atfork_done = 0;
        if (!atfork_done) {
            pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
            atfork_done = 1;
        }
        observing = 1;
    }
    capture = on;
    return 0;
}

uint32_t _rh_stack_of(uintptr_t block)
{
    pthread_mutex_lock(&stacks_lock);
    const rh_block_t *b = _rh_table_find(&block_stacks, block);
    uint32_t id = b ? (uint32_t)rh_block_size(b) : 0;
    pthread_mutex_unlock(&stacks_lock);
    return id;
}

int _rh_stack_copy(uint32_t id, uintptr_t *native, int *nn, uintptr_t *py, int *npy)
{
    int rc = -1;
    pthread_mutex_lock(&stacks_lock);
    if (id != 0 && words != NULL && id < nwords) {
        uintptr_t head = words[id];
        *nn = (int)((head >> 32) & 0xffff);
        *npy = (int)((head >> 48) & 0xffff);
        memcpy(native, &words[id + 2], (size_t)*nn * sizeof(uintptr_t));
        memcpy(py, &words[id + 2 + *nn], (size_t)*npy * 2 * sizeof(uintptr_t));
        rc = 0;
    }
    pthread_mutex_unlock(&stacks_lock);
    return rc;
}

int _rh_stacks_freed(rh_freed_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    int rc = 0;
    pthread_mutex_lock(&stacks_lock);
    for (size_t id = 1; words != NULL && id < nwords;) {
        uintptr_t head = words[id];
        size_t len = ((head >> 32) & 0xffff) + 2 * ((head >> 48) & 0xffff);
        if (words[id + 1] != 0) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 256;
                rh_freed_t *more = realloc(*out, cap * sizeof(rh_freed_t));
                if (more == NULL) {
                    rc = -1;
                    break;
                }
                *out = more;
            }
            (*out)[*n].stack = (uint32_t)id;
            (*out)[*n].freed = (int64_t)words[id + 1];
            (*n)++;
        }
        id += 2 + len;
    }
    pthread_mutex_unlock(&stacks_lock);
    if (rc < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void _rh_stacks_reset(void)
{
    if (observing) {
        _rh_tracker_unobserve(&observer);
        observing = 0;
    }
    pthread_mutex_lock(&stacks_lock);
    capture = 0;
    in_use = 0;
    _rh_table_release(&block_stacks);
    if (index_slots)
        munmap(index_slots, index_cap * sizeof(uint32_t));
    index_slots = NULL;
    index_cap = index_count = 0;
    if (words)
        munmap(words, ARENA_WORDS * sizeof(uintptr_t));
    words = NULL;
    nwords = 1;
    pthread_mutex_unlock(&stacks_lock);
}

/* ---- sites: surviving blocks grouped by stack ------------------------------ *
 *
 * A site is a stack with the blocks born in the given epochs that are still
 * alive.  Blocks that hold a Python object referenced by another surviving
 * object are "held": the leak's root is what holds them (a leaked list
 * holds its items), so sites are ranked by root blocks first. */

typedef struct {
    uintptr_t block, obj;
    int64_t bytes;
    uint32_t stack;
    uint8_t domain;
    int held;
} survivor_t;

typedef struct {
    survivor_t *items;
    size_t count, cap;
    uint32_t first, last;
    int64_t unattributed;
    /* object address => index, open addressing (index + 1; 0 empty) */
    size_t *index;
    size_t index_mask;
    size_t current;
} survivors_t;

static void survivor_visit(const rh_block_t *b, void *arg)
{
    survivors_t *sv = (survivors_t *)arg;
    uint32_t e = rh_block_epoch(b);
    if (rh_block_domain(b) == RH_DOMAIN_ADOPTED || e < sv->first || e > sv->last)
        return;
    const rh_block_t *st = _rh_table_find(&block_stacks, rh_block_addr(b));
    if (st == NULL) {
        sv->unattributed++;
        return;
    }
    if (sv->count == sv->cap) {
        size_t cap = sv->cap ? 2 * sv->cap : 1024;
        survivor_t *more = realloc(sv->items, cap * sizeof(survivor_t));
        if (more == NULL)
            return;
        sv->items = more;
        sv->cap = cap;
    }
    survivor_t *x = &sv->items[sv->count++];
    PyObject *op = NULL;
    x->block = rh_block_addr(b);
    x->obj = _rh_recognize(b, &op, 1) ? (uintptr_t)op : 0;
    x->bytes = (int64_t)rh_block_size(b);
    x->stack = (uint32_t)rh_block_size(st);
    x->domain = (uint8_t)rh_block_domain(b);
    x->held = 0;
}

static size_t obj_slot(uintptr_t obj, size_t mask)
{
    return (size_t)(((uint64_t)obj * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

static int mark_held(PyObject *ref, void *arg)
{
    survivors_t *sv = (survivors_t *)arg;
    if (ref == NULL || (uintptr_t)ref == sv->items[sv->current].obj)
        return 0;
    for (size_t j = obj_slot((uintptr_t)ref, sv->index_mask);; j = (j + 1) & sv->index_mask) {
        size_t k = sv->index[j];
        if (k == 0)
            return 0;
        if (sv->items[k - 1].obj == (uintptr_t)ref) {
            sv->items[k - 1].held = 1;
            return 0;
        }
    }
}

/* Mark every survivor object referenced by another survivor. */
static void find_roots(survivors_t *sv)
{
    size_t cap = 1024;
    while (cap < 2 * sv->count)
        cap *= 2;
    sv->index = calloc(cap, sizeof(size_t));
    if (sv->index == NULL)
        return;
    sv->index_mask = cap - 1;
    for (size_t i = 0; i < sv->count; i++) {
        if (sv->items[i].obj == 0)
            continue;
        size_t j = obj_slot(sv->items[i].obj, sv->index_mask);
        while (sv->index[j] != 0)
            j = (j + 1) & sv->index_mask;
        sv->index[j] = i + 1;
    }
    for (size_t i = 0; i < sv->count; i++) {
        PyObject *op = (PyObject *)sv->items[i].obj;
        if (op == NULL)
            continue;
        traverseproc trav = Py_TYPE(op)->tp_traverse;
        sv->current = i;
        if (trav != NULL && PyType_IS_GC(Py_TYPE(op)))
            trav(op, mark_held, sv);
    }
    /* A PyMem buffer that is not an object and points at a surviving object
     * holds it: the item array of a leaked list whose object came from the
     * list free list (its block born before the window, so no survivor to
     * traverse) still holds the list's items.  Only the PyMem domain, read
     * under the GIL (its blocks are freed only under it); at most
     * SCAN_WORDS words of a block, so a large leaked buffer costs little. */
    enum { SCAN_WORDS = 4096 };
    for (size_t i = 0; i < sv->count; i++) {
        const survivor_t *x = &sv->items[i];
        if (x->obj != 0 || x->domain != RH_DOMAIN_MEM)
            continue;
        size_t words = (size_t)x->bytes / sizeof(uintptr_t);
        if (words > SCAN_WORDS)
            words = SCAN_WORDS;
        const uintptr_t *body = (const uintptr_t *)x->block;
        sv->current = i;        /* no object of its own: mark_held skips none */
        for (size_t w = 0; w < words; w++)
            if (body[w] != 0 && (body[w] & (sizeof(void *) - 1)) == 0)
                mark_held((PyObject *)body[w], sv);
    }
    free(sv->index);
    sv->index = NULL;
    /* Buffers that belong to a surviving object (a list's item array, a
     * dict's keys) are held too: the object's own body points at them. */
    size_t bcap = 1024;
    while (bcap < 2 * sv->count)
        bcap *= 2;
    size_t *bindex = calloc(bcap, sizeof(size_t));
    if (bindex == NULL)
        return;
    for (size_t i = 0; i < sv->count; i++) {
        if (sv->items[i].obj != 0)
            continue;           /* objects are matched by tp_traverse above */
        size_t j = obj_slot(sv->items[i].block, bcap - 1);
        while (bindex[j] != 0)
            j = (j + 1) & (bcap - 1);
        bindex[j] = i + 1;
    }
    for (size_t i = 0; i < sv->count; i++) {
        PyObject *op = (PyObject *)sv->items[i].obj;
        if (op == NULL)
            continue;
        /* Within the block: a variable-size object can be smaller than its
         * type's basic size (a compact ASCII str is, tp_basicsize being
         * that of the full PyUnicodeObject). */
        size_t size = (size_t)Py_TYPE(op)->tp_basicsize;
        size_t room = (size_t)sv->items[i].bytes - (sv->items[i].obj - sv->items[i].block);
        if (size > room)
            size = room;
        size_t words = size / sizeof(uintptr_t);
        const uintptr_t *body = (const uintptr_t *)op;
        for (size_t w = 2; w < words; w++) {
            uintptr_t target = body[w];
            if (target == 0)
                continue;
            for (size_t j = obj_slot(target, bcap - 1); bindex[j] != 0; j = (j + 1) & (bcap - 1)) {
                if (sv->items[bindex[j] - 1].block == target) {
                    sv->items[bindex[j] - 1].held = 1;
                    break;
                }
            }
        }
    }
    free(bindex);
}

static int cmp_stack(const void *a, const void *b)
{
    uint32_t x = ((const survivor_t *)a)->stack, y = ((const survivor_t *)b)->stack;
    return x < y ? -1 : x > y;
}

static int cmp_site(const void *a, const void *b)
{
    const rh_site_t *x = a, *y = b;
    if (x->roots != y->roots)
        return x->roots < y->roots ? 1 : -1;
    if (x->blocks != y->blocks)
        return x->blocks < y->blocks ? 1 : -1;
    return x->bytes < y->bytes ? 1 : (x->bytes > y->bytes ? -1 : 0);
}

int _rh_stacks_sites(uint32_t first, uint32_t last, rh_site_t **out, size_t *nsites,
                     int64_t *unattributed)
{
    survivors_t sv;
    memset(&sv, 0, sizeof(sv));
    sv.first = first;
    sv.last = last;
    *out = NULL;
    *nsites = 0;
    /* Under stacks_lock, only libc memory: a Python allocator would come
     * back into our hooks, which take the lock.  tp_traverse allocates
     * nothing (the GC's contract). */
    pthread_mutex_lock(&stacks_lock);
    _rh_tracker_walk(RH_TABLE_GIL | RH_TABLE_RAW, survivor_visit, &sv);
    pthread_mutex_unlock(&stacks_lock);
    *unattributed = sv.unattributed;
    if (_rh_typeset_count() > 0)
        find_roots(&sv);
    if (sv.count > 1)       /* no survivors: no array (qsort wants one) */
        qsort(sv.items, sv.count, sizeof(survivor_t), cmp_stack);
    rh_site_t *sites = calloc(sv.count + 1, sizeof(rh_site_t));
    size_t n = 0;
    for (size_t i = 0; sites && i < sv.count; i++) {
        if (n == 0 || sites[n - 1].stack != sv.items[i].stack) {
            sites[n].stack = sv.items[i].stack;
            n++;
        }
        sites[n - 1].blocks++;
        sites[n - 1].bytes += sv.items[i].bytes;
        sites[n - 1].roots += !sv.items[i].held;
        if (sites[n - 1].sample == NULL && sv.items[i].obj != 0 && !sv.items[i].held)
            sites[n - 1].sample = (PyObject *)sv.items[i].obj;
    }
    free(sv.items);
    if (sites == NULL)
        return -1;
    qsort(sites, n, sizeof(rh_site_t), cmp_site);
    *out = sites;
    *nsites = n;
    return 0;
}
