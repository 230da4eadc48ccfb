/* vgpool.c — a pooled allocator for the mem and obj domains that tells
 * memcheck about every block.
 *
 * pymalloc hides objects from memcheck: it carves them out of arenas that
 * memcheck sees as one opaque mapping, so use-after-free, overflow and leaks
 * of single objects go unseen.  PYTHONMALLOC=malloc makes every object a
 * malloc block, at the price of a malloc/free round trip through Valgrind
 * for each one.  This allocator keeps pymalloc's shape (size classes of 16
 * bytes up to 512, pools of one class carved from arenas) and describes
 * each block to memcheck with the mempool client requests:
 *
 *   arena created      VALGRIND_MAKE_MEM_NOACCESS over the whole arena
 *   block handed out   VALGRIND_MEMPOOL_ALLOC(anchor, p, size)
 *   block freed        VALGRIND_MEMPOOL_FREE(anchor, p)
 *   realloc            a new block, the bytes copied, the old one freed
 *                      (natively: in place within a size class)
 *
 * so memcheck reports errors and leaks per object, with its allocation and
 * free stacks, exactly as for malloc blocks.  Measured (docs/valgrind.md,
 * bench/valgrind_pool.py): the same findings as PYTHONMALLOC=malloc at
 * about the same speed, not faster; memcheck's stack captures per block
 * dominate the cost of an allocation either way.
 *
 * Layout.  An arena is ARENA_SIZE bytes, aligned to ARENA_SIZE, from mmap.
 * Not from malloc: memcheck describes an address inside a live malloc
 * block as "inside a block alloc'd" before it looks at freed pool blocks,
 * so a use after free would lose its "freed at" stack.  The price: the
 * leak search scans mmap'd memory as a root, so the defined words of live
 * pool blocks count as roots and a block referenced only from a leaked
 * block is "still reachable" instead of "indirectly lost".  An arena holds
 * POOLS_PER_ARENA pools; a pool serves one size class.  Under Valgrind
 * each slot is followed by a RED_ZONE of never-addressable bytes (and each
 * pool starts with one) so that an overflow of a full-size block is seen.
 *
 * Metadata never lives in the arenas: per-pool bitmaps of allocated slots,
 * the requested size of each slot, free stacks and the quarantine are in
 * separate libc memory.  They hold no pointer to a live block (popped
 * entries are cleared), so they do not keep leaked blocks "reachable".
 *
 * Freed slots wait in a FIFO quarantine before reuse (under Valgrind
 * only), so that a use after free hits memory memcheck knows is freed.
 * Its budget is in bytes and must be at least memcheck's --freelist-vol:
 * memcheck remembers a freed block (to say "freed at ...") until that many
 * bytes have been freed after it, and when two remembered blocks share an
 * address it describes the older one.  A slot is reused only once memcheck
 * has forgotten its previous life.
 *
 * Ownership.  Blocks allocated before install (by the previous allocator)
 * are passed back to it: free/realloc look the address up in a two-level
 * radix map of arena bases; an address outside every arena belongs to the
 * previous allocator.  Requests above MAX_SMALL go to the previous
 * allocator too.  A free of an address inside an arena that is not a live
 * block (double free, interior pointer) is reported to memcheck through
 * VALGRIND_MEMPOOL_FREE and otherwise ignored: the heap is never corrupted.
 *
 * Locking: the mem and obj domains are called with the GIL held, which
 * guards every structure here.  Free-threaded builds are refused.  Once
 * installed the allocator stays for the life of the process (its blocks
 * cannot be handed back to anybody else).
 */
#include "vgpool.h"
#include "tracker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifdef HAVE_VALGRIND
#include <valgrind/valgrind.h>
#include <valgrind/memcheck.h>

#define GRAIN 16
#define NCLASSES 32
#define MAX_SMALL (GRAIN * NCLASSES)          /* 512 */
#define POOL_SHIFT 14
#define POOL_SIZE ((size_t)1 << POOL_SHIFT)   /* 16 KiB */
#define ARENA_SHIFT 18
#define ARENA_SIZE ((size_t)1 << ARENA_SHIFT) /* 256 KiB */
#define POOLS_PER_ARENA (ARENA_SIZE / POOL_SIZE)
#define MAX_SLOTS (POOL_SIZE / GRAIN)         /* smallest stride, no red zone */
#define RED_ZONE 16

/* Radix map of arena bases: address bits 47..33 pick a leaf, bits 32..18
 * the arena within it. */
#define L1_BITS 14
#define L2_BITS (47 - ARENA_SHIFT - L1_BITS)  /* 15 */

typedef struct {
    int cls;                     /* size class, -1 while unused */
    uint32_t nslots;
    uint32_t bumped;             /* slots handed out at least once */
    uint64_t live[MAX_SLOTS / 64];    /* allocated-slot bitmap */
    uint16_t size[MAX_SLOTS];         /* requested bytes per slot */
} pool_t;

typedef struct {
    char *base;
    uint32_t pools_used;
    pool_t pools[POOLS_PER_ARENA];
} arena_t;

typedef struct {
    void **items;                /* freed, reusable slots */
    size_t count, capacity;
    pool_t *bump_pool;           /* pool still handing out fresh slots */
    char *bump_base;
} class_t;

static struct {
    int installed;
    int annotate;                /* running under Valgrind */
    size_t red_zone, lead;
    size_t q_budget, q_bytes;    /* quarantine: budget and bytes held */
    size_t q_cap;                /* ring capacity (a power of two) */
    PyMemAllocatorEx prev_mem, prev_obj;
    arena_t **l1[1 << L1_BITS];  /* leaves of arena_t*, calloc'd on demand */
    arena_t *current;            /* arena with unused pools */
    class_t classes[NCLASSES];
    struct qentry *quarantine;   /* ring of freed slots, oldest at q_head */
    size_t q_head, q_count;
    rh_vgpool_stats_t stats;
} vp;

static char vp_anchor;           /* the mempool's identity for memcheck */

/* ---- arenas and pools ------------------------------------------------- */

static arena_t *arena_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    if (a >> 47)
        return NULL;
    arena_t **leaf = vp.l1[a >> (47 - L1_BITS)];
    if (leaf == NULL)
        return NULL;
    return leaf[(a >> ARENA_SHIFT) & ((1u << L2_BITS) - 1)];
}

/* size bytes aligned to size (a power of two) from mmap: map twice the
 * size and trim both ends. */
static char *map_aligned(size_t size)
{
    char *p = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + size - 1) & ~(uintptr_t)(size - 1);
    size_t head = a - (uintptr_t)p;
    if (head)
        munmap(p, head);
    if (size - head)
        munmap((char *)a + size, size - head);
    return (char *)a;
}

static arena_t *new_arena(void)
{
    arena_t *ar = calloc(1, sizeof(arena_t));
    if (ar == NULL)
        return NULL;
    ar->base = map_aligned(ARENA_SIZE);
    uintptr_t a = (uintptr_t)ar->base;
    if (ar->base == NULL || (a >> 47)) {
        if (ar->base != NULL)
            munmap(ar->base, ARENA_SIZE);
        free(ar);
        return NULL;
    }
    arena_t ***leafp = &vp.l1[a >> (47 - L1_BITS)];
    if (*leafp == NULL && (*leafp = calloc((size_t)1 << L2_BITS, sizeof(arena_t *))) == NULL) {
        munmap(ar->base, ARENA_SIZE);
        free(ar);
        return NULL;
    }
    (*leafp)[(a >> ARENA_SHIFT) & ((1u << L2_BITS) - 1)] = ar;
    for (size_t i = 0; i < POOLS_PER_ARENA; i++)
        ar->pools[i].cls = -1;
    if (vp.annotate)
        VALGRIND_MAKE_MEM_NOACCESS(ar->base, ARENA_SIZE);
    vp.stats.arenas++;
    return ar;
}

/* A fresh pool for class cls, or NULL when memory is exhausted. */
static pool_t *new_pool(int cls, char **base)
{
    if (vp.current == NULL || vp.current->pools_used == POOLS_PER_ARENA) {
        arena_t *ar = new_arena();
        if (ar == NULL)
            return NULL;
        vp.current = ar;
    }
    arena_t *ar = vp.current;
    size_t i = ar->pools_used++;
    pool_t *pool = &ar->pools[i];
    size_t stride = (size_t)(cls + 1) * GRAIN + vp.red_zone;
    pool->cls = cls;
    pool->nslots = (uint32_t)((POOL_SIZE - vp.lead) / stride);
    pool->bumped = 0;
    *base = ar->base + i * POOL_SIZE;
    vp.stats.pools++;
    return pool;
}

static inline size_t stride_of(int cls) { return (size_t)(cls + 1) * GRAIN + vp.red_zone; }

/* ceil(2^32 / stride) per class: rel / stride == (rel * inv) >> 32 exactly
 * for every rel below POOL_SIZE (the error term stays under 2^-18).  A
 * division is a helper call under Valgrind; a multiplication is not. */
static uint64_t inv_stride[NCLASSES];

/* The pool and slot index of an owned address; -1 if p is not the start
 * of a slot. */
static inline pool_t *slot_of(arena_t *ar, const void *p, uint32_t *index)
{
    size_t off = (size_t)((const char *)p - ar->base);
    pool_t *pool = &ar->pools[off >> POOL_SHIFT];
    if (pool->cls < 0)
        return NULL;
    size_t in_pool = (off & (POOL_SIZE - 1));
    if (in_pool < vp.lead)
        return NULL;
    size_t rel = in_pool - vp.lead;
    uint32_t i = (uint32_t)((rel * inv_stride[pool->cls]) >> 32);
    if ((size_t)i * stride_of(pool->cls) != rel || i >= pool->bumped)
        return NULL;
    *index = i;
    return pool;
}

static inline int slot_live(const pool_t *pool, uint32_t i)
{
    return (pool->live[i >> 6] >> (i & 63)) & 1;
}

/* ---- free stacks and quarantine ---------------------------------------- */

static int push_free(int cls, void *p)
{
    class_t *c = &vp.classes[cls];
    if (c->count == c->capacity) {
        size_t cap = c->capacity ? c->capacity * 2 : 256;
        void **items = realloc(c->items, cap * sizeof(void *));
        if (items == NULL)
            return -1;       /* the slot is lost to reuse, nothing worse */
        c->items = items;
        c->capacity = cap;
    }
    c->items[c->count++] = p;
    return 0;
}

/* A freed slot waiting for reuse: its class and requested size are kept
 * so that leaving the quarantine needs no lookup. */
typedef struct qentry {
    void *p;
    uint32_t cls, size;
} qentry_t;

/* Double the ring, keeping the FIFO order; -1 when memory is short. */
static int quarantine_grow(void)
{
    size_t cap = vp.q_cap ? vp.q_cap * 2 : 4096;
    qentry_t *ring = calloc(cap, sizeof(qentry_t));
    if (ring == NULL)
        return -1;
    for (size_t k = 0; k < vp.q_count; k++)
        ring[k] = vp.quarantine[(vp.q_head + k) & (vp.q_cap - 1)];
    free(vp.quarantine);
    vp.quarantine = ring;
    vp.q_cap = cap;
    vp.q_head = 0;
    return 0;
}

/* p was just freed (not live, so nobody can hand it out meanwhile). */
static void quarantine_put(void *p, int cls, size_t size)
{
    if (vp.q_budget == 0 || (vp.q_count == vp.q_cap && quarantine_grow() < 0)) {
        push_free(cls, p);
        return;
    }
    vp.quarantine[(vp.q_head + vp.q_count) & (vp.q_cap - 1)] =
        (qentry_t){p, (uint32_t)cls, (uint32_t)size};
    vp.q_count++;
    vp.q_bytes += size;
    while (vp.q_bytes > vp.q_budget && vp.q_count > 0) {
        qentry_t old = vp.quarantine[vp.q_head];
        vp.quarantine[vp.q_head].p = NULL;
        vp.q_head = (vp.q_head + 1) & (vp.q_cap - 1);
        vp.q_count--;
        vp.q_bytes -= old.size < vp.q_bytes ? old.size : vp.q_bytes;
        push_free((int)old.cls, old.p);
    }
}

/* ---- the allocator ----------------------------------------------------- */

static void *small_alloc(size_t size)
{
    int cls = size ? (int)((size - 1) / GRAIN) : 0;
    class_t *c = &vp.classes[cls];
    void *p;
    pool_t *pool;
    uint32_t i = 0;
    if (c->count > 0) {
        p = c->items[--c->count];
        c->items[c->count] = NULL;     /* no stale pointer to a live block */
        pool = slot_of(arena_of(p), p, &i);
    } else {
        if (c->bump_pool == NULL || c->bump_pool->bumped == c->bump_pool->nslots) {
            c->bump_pool = new_pool(cls, &c->bump_base);
            if (c->bump_pool == NULL)
                return NULL;
        }
        pool = c->bump_pool;
        i = pool->bumped++;
        p = c->bump_base + vp.lead + (size_t)i * stride_of(cls);
    }
    pool->live[i >> 6] |= (uint64_t)1 << (i & 63);
    pool->size[i] = (uint16_t)size;
    vp.stats.allocs++;
    if (vp.annotate)
        VALGRIND_MEMPOOL_ALLOC(&vp_anchor, p, size);
    return p;
}

/* Free an owned address.  Returns 0, or -1 when p is not a live block
 * (memcheck has been told). */
static int small_free(arena_t *ar, void *p)
{
    uint32_t i;
    pool_t *pool = slot_of(ar, p, &i);
    if (pool == NULL || !slot_live(pool, i)) {
        vp.stats.bad_frees++;
        if (vp.annotate)
            VALGRIND_MEMPOOL_FREE(&vp_anchor, p);   /* memcheck reports it */
        return -1;
    }
    pool->live[i >> 6] &= ~((uint64_t)1 << (i & 63));
    vp.stats.frees++;
    if (vp.annotate)
        VALGRIND_MEMPOOL_FREE(&vp_anchor, p);
    quarantine_put(p, pool->cls, pool->size[i]);
    return 0;
}

static void *vp_malloc(void *ctx, size_t size)
{
    PyMemAllocatorEx *prev = (PyMemAllocatorEx *)ctx;
    if (size > MAX_SMALL)
        return prev->malloc(prev->ctx, size);
    return small_alloc(size);
}

static void *vp_calloc(void *ctx, size_t nelem, size_t elsize)
{
    PyMemAllocatorEx *prev = (PyMemAllocatorEx *)ctx;
    if (elsize != 0 && nelem > (size_t)PY_SSIZE_T_MAX / elsize)
        return NULL;
    size_t size = nelem * elsize;
    if (size > MAX_SMALL)
        return prev->calloc(prev->ctx, nelem, elsize);
    void *p = small_alloc(size);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

static void vp_free(void *ctx, void *p)
{
    PyMemAllocatorEx *prev = (PyMemAllocatorEx *)ctx;
    if (p == NULL)
        return;
    arena_t *ar = arena_of(p);
    if (ar == NULL) {
        prev->free(prev->ctx, p);
        return;
    }
    small_free(ar, p);
}

static void *vp_realloc(void *ctx, void *p, size_t size)
{
    PyMemAllocatorEx *prev = (PyMemAllocatorEx *)ctx;
    if (p == NULL)
        return vp_malloc(ctx, size);
    arena_t *ar = arena_of(p);
    if (ar == NULL)
        return prev->realloc(prev->ctx, p, size);
    uint32_t i;
    pool_t *pool = slot_of(ar, p, &i);
    if (pool == NULL || !slot_live(pool, i)) {
        small_free(ar, p);      /* reports the bad pointer; changes nothing */
        return NULL;
    }
    size_t old = pool->size[i];
    if (!vp.annotate && size <= MAX_SMALL && (size ? (int)((size - 1) / GRAIN) : 0) == pool->cls) {
        pool->size[i] = (uint16_t)size;     /* same class: stays in place */
        return p;
    }
    /* Under memcheck a realloc always moves, as memcheck's own realloc
     * does: a stale pointer to the old block is then caught, and
     * VALGRIND_MEMPOOL_CHANGE is avoided (memcheck checks the whole pool,
     * sorted, on every call: quadratic on a large heap). */
    void *q = vp_malloc(ctx, size);
    if (q == NULL)
        return NULL;
    memcpy(q, p, old < size ? old : size);
    small_free(ar, p);
    return q;
}

/* ---- life cycle -------------------------------------------------------- */

static PyMemAllocatorEx our_mem, our_obj;

int _rh_vgpool_install(size_t quarantine, int annotate, const char **why)
{
    *why = NULL;
    if (vp.installed)
        return 0;
#ifdef Py_GIL_DISABLED
    *why = "the pool allocator needs the GIL (free-threaded build)";
    return -1;
#endif
    if (_rh_tracker_active()) {
        *why = "the pool allocator must be installed before tracking starts";
        return -1;
    }
    /* annotate: 1 always, 0 never (a blind pool, for measurements), -1
     * when running under Valgrind. */
    vp.annotate = annotate < 0 ? (RUNNING_ON_VALGRIND != 0) : (annotate != 0);
    vp.red_zone = vp.annotate ? RED_ZONE : 0;
    vp.lead = vp.red_zone;
    vp.q_budget = vp.annotate ? quarantine : 0;
    for (int c = 0; c < NCLASSES; c++)
        inv_stride[c] = (((uint64_t)1 << 32) + stride_of(c) - 1) / stride_of(c);
    if (vp.annotate)
        VALGRIND_CREATE_MEMPOOL(&vp_anchor, RED_ZONE, 0);
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &vp.prev_mem);
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &vp.prev_obj);
    our_mem = (PyMemAllocatorEx){&vp.prev_mem, vp_malloc, vp_calloc, vp_realloc, vp_free};
    our_obj = (PyMemAllocatorEx){&vp.prev_obj, vp_malloc, vp_calloc, vp_realloc, vp_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &our_mem);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &our_obj);
    vp.installed = 1;
    return 0;
}

void _rh_vgpool_stats(rh_vgpool_stats_t *out)
{
    *out = vp.stats;
    out->installed = vp.installed;
    out->annotated = vp.annotate;
    out->quarantine = vp.q_budget;
    out->quarantined = vp.q_bytes;
    out->red_zone = vp.red_zone;
    out->live = vp.stats.allocs - vp.stats.frees;
}

int _rh_vgpool_owns(const void *p)
{
    if (!vp.installed)
        return 0;
    arena_t *ar = arena_of(p);
    uint32_t i;
    pool_t *pool = ar ? slot_of(ar, p, &i) : NULL;
    return pool != NULL && slot_live(pool, i);
}

#else  /* !HAVE_VALGRIND: the feature is compiled out */

int _rh_vgpool_install(size_t quarantine, int annotate, const char **why)
{
    *why = "refhound was built without Valgrind's headers (install the valgrind package "
           "and rebuild)";
    return -1;
}

void _rh_vgpool_stats(rh_vgpool_stats_t *out) { memset(out, 0, sizeof(*out)); }
int _rh_vgpool_owns(const void *p) { return 0; }

#endif
