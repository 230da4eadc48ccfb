/* poolfree.c — the free blocks of pymalloc's pools, found from their
 * headers.
 *
 * A block pymalloc takes back keeps what the object held, less its first
 * word (the pool's free list link): a dead dict's keys table still names
 * its old keys, a dead tuple its items.  When those addresses are handed
 * out again to a leak's blocks, a search for references (lost.c) finds
 * them "referenced".  Measured in a pytest process on a 64-byte PyMem
 * block lost a call: after the C library's free memory was left out
 * (freemem.c), the 16 to 51 blocks still named were named from free
 * pymalloc blocks (dead small dicts' keys tables).
 *
 * pymalloc (CPython 3.9-3.13, Objects/obmalloc.c) carves pools of 4 KiB
 * (3.9) or 16 KiB (3.10 on, 64-bit) into blocks of one size class.  A
 * pool's header (48 bytes) holds: the count of blocks in use, the head of
 * its free list (each free block's first word links to the next), its
 * size class (block size = 16 * (szidx + 1)), nextoffset (the first block
 * never carved) and maxnextoffset (pool size - block size).  Invariant:
 * the blocks carved, (nextoffset - 48) / size, are the blocks in use plus
 * those on the free list (one carved block waits on it, never used).
 *
 * The pools walked are those holding a block of the tracker's GIL table
 * (mem and obj domains, 512 bytes at most) or an object adopted at start
 * (which may live anywhere: the header decides): each page such a block lies
 * in names its pool, whose size is told by its header (maxnextoffset +
 * size).  A pool is believed only when every rule holds: its carved
 * blocks reach into that page, the counts add up, every link lands on a
 * block boundary inside the carved part, and the list ends within the
 * pool's block count; otherwise it is left as it is (read in full).  Empty pools (no block in use) hold stale words too and are not
 * found so.  Reads through safemem.c into the engine's own memory.  GIL
 * held: pymalloc's state does not move meanwhile.
 */
#include "poolfree.h"

#include "ownmem.h"
#include "rh_common.h"
#include "safemem.h"
#include "tracker.h"

#include <string.h>

#define SMALL_POOL ((uintptr_t)4 << 10)
#define LARGE_POOL ((uintptr_t)16 << 10)
#define POOL_OVERHEAD 48
#define ALIGNMENT 16
#define SMALL_REQUEST 512
#define NO_KEY ((uintptr_t)0)

/* The header of a pool, as obmalloc.c lays it out on a 64-bit build. */
typedef struct {
    uint32_t count;             /* blocks in use (a union with a pointer) */
    uint32_t pad;
    uintptr_t freeblock;
    uintptr_t nextpool, prevpool;
    uint32_t arenaindex, szidx, nextoffset, maxnextoffset;
} pool_header_t;

/* ---- the pages that hold a tracked block (a hash set, own memory) -------- */

typedef struct {
    uintptr_t *slots;           /* page address, or NO_KEY */
    size_t cap, count;
    int failed;
} pages_t;

static size_t page_slot(uintptr_t page, size_t cap)
{
    uint64_t h = (uint64_t)(page >> 12) * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 20) & (cap - 1);
}

static int pages_add(pages_t *p, uintptr_t page);

static int pages_grow(pages_t *p)
{
    size_t cap = p->cap ? 2 * p->cap : 4096;
    uintptr_t *old = p->slots;
    size_t old_cap = p->cap;
    p->slots = _rh_own_map(cap * sizeof(uintptr_t));
    if (p->slots == NULL) {
        p->slots = old;
        return -1;
    }
    memset(p->slots, 0, cap * sizeof(uintptr_t));
    p->cap = cap;
    p->count = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] != NO_KEY)
            pages_add(p, old[i]);
    if (old != NULL)
        _rh_own_unmap(old, old_cap * sizeof(uintptr_t));
    return 0;
}

static int pages_add(pages_t *p, uintptr_t page)
{
    if (2 * (p->count + 1) > p->cap && pages_grow(p) < 0)
        return -1;
    for (size_t i = page_slot(page, p->cap);; i = (i + 1) & (p->cap - 1)) {
        if (p->slots[i] == page)
            return 0;
        if (p->slots[i] == NO_KEY) {
            p->slots[i] = page;
            p->count++;
            return 0;
        }
    }
}

static void collect_page(const rh_block_t *b, void *arg)
{
    pages_t *p = (pages_t *)arg;
    int domain = rh_block_domain(b);
    if (p->failed || (domain != RH_DOMAIN_MEM && domain != RH_DOMAIN_OBJ &&
                      domain != RH_DOMAIN_ADOPTED) ||
        (domain != RH_DOMAIN_ADOPTED && rh_block_size(b) > SMALL_REQUEST))
        return;                 /* (an adopted entry's size field is its object's offset) */
    if (pages_add(p, rh_block_addr(b) & ~(SMALL_POOL - 1)) < 0)
        p->failed = 1;
}

/* Sort in place (heap sort: no memory of its own). */
static void sift(uintptr_t *a, size_t n, size_t i)
{
    for (;;) {
        size_t big = i, l = 2 * i + 1, r = l + 1;
        if (l < n && a[l] > a[big])
            big = l;
        if (r < n && a[r] > a[big])
            big = r;
        if (big == i)
            return;
        uintptr_t t = a[i];
        a[i] = a[big];
        a[big] = t;
        i = big;
    }
}

static void sort_words(uintptr_t *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift(a, n, i);
    for (size_t end = n; end-- > 1;) {
        uintptr_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift(a, end, 0);
    }
}

/* ---- one pool ------------------------------------------------------------ */

/* Could the header at pool (copied in buf) be a pool of that size whose
 * carved blocks reach into page? */
static int plausible(uintptr_t pool, const unsigned char *buf, uintptr_t pool_size,
                     uintptr_t page)
{
    pool_header_t h;
    memcpy(&h, buf, sizeof(h));
    size_t size = (size_t)(h.szidx + 1) * ALIGNMENT;
    return h.szidx < SMALL_REQUEST / ALIGNMENT && h.maxnextoffset + size == pool_size &&
           h.nextoffset >= POOL_OVERHEAD + size && h.nextoffset <= pool_size &&
           h.count > 0 && page < pool + h.nextoffset;
}

/* Is the header at pool (copied in buf, pool_size bytes) a pool of that
 * size whose carved blocks reach into `page` (a page with a tracked
 * block)?  Then its free blocks are marked in free_map (a byte a carved
 * block): 1, else 0. */
static int check_pool(uintptr_t pool, const unsigned char *buf, uintptr_t pool_size,
                      uintptr_t page, unsigned char *free_map, pool_header_t *h, size_t *size_out)
{
    memcpy(h, buf, sizeof(*h));
    size_t size = (size_t)(h->szidx + 1) * ALIGNMENT;
    if (h->szidx >= SMALL_REQUEST / ALIGNMENT || h->maxnextoffset + size != pool_size ||
        h->nextoffset < POOL_OVERHEAD + size || h->nextoffset > pool_size ||
        (h->nextoffset - POOL_OVERHEAD) % size != 0)
        return 0;
    size_t carved = (h->nextoffset - POOL_OVERHEAD) / size;
    uintptr_t first = pool + POOL_OVERHEAD, end = pool + h->nextoffset;
    if (h->count == 0 || h->count > carved || page >= end || page + SMALL_POOL <= first)
        return 0;
    memset(free_map, 0, carved);
    size_t listed = 0;
    for (uintptr_t f = h->freeblock; f != 0;) {
        if (f < first || f >= end || (f - first) % size != 0 || listed >= carved)
            return 0;
        size_t k = (f - first) / size;
        if (free_map[k])
            return 0;                   /* a loop */
        free_map[k] = 1;
        listed++;
        memcpy(&f, buf + (f - pool), sizeof(f));
    }
    if (h->count + listed != carved)
        return 0;
    *size_out = size;
    return 1;
}

typedef struct {
    rh_free_range_fn found;
    void *arg;
    uintptr_t start, end;       /* a range waiting to be joined (end 0: none) */
} emit_t;

static int emit(emit_t *e, uintptr_t start, uintptr_t end)
{
    if (e->end != 0 && start <= e->end) {
        if (end > e->end)
            e->end = end;
        return 0;
    }
    if (e->end != 0 && e->found(e->start, e->end, e->arg) < 0)
        return -1;
    e->start = start;
    e->end = end;
    return 0;
}

/* The pool that holds page (a 4 KiB page with a tracked block), read into
 * buf: a large pool at the 16 KiB boundary below it, else a small one at
 * the page.  Emits its free ranges; *pool_end: where it ends (0 when no
 * pool checked out).  0, or -1 when emit stopped. */
static int walk_pool(uintptr_t page, unsigned char *buf, unsigned char *free_map, emit_t *e,
                     uintptr_t *pool_end)
{
    static const uintptr_t sizes[2] = {LARGE_POOL, SMALL_POOL};
    *pool_end = 0;
    for (int i = 0; i < 2; i++) {
        uintptr_t pool = page & ~(sizes[i] - 1);
        pool_header_t h;
        size_t size;
        /* The header alone first: most pages that are no pool's (another
         * allocator's memory) are turned away without reading a pool. */
        if (_rh_safe_read(pool, buf, sizeof(h)) < 0 || !plausible(pool, buf, sizes[i], page) ||
            _rh_safe_read(pool, buf, sizes[i]) < 0 ||
            !check_pool(pool, buf, sizes[i], page, free_map, &h, &size))
            continue;
        uintptr_t first = pool + POOL_OVERHEAD;
        size_t carved = (h.nextoffset - POOL_OVERHEAD) / size;
        for (size_t k = 0; k < carved; k++)
            if (free_map[k] && emit(e, first + k * size, first + (k + 1) * size) < 0)
                return -1;
        if (h.nextoffset < sizes[i] && emit(e, pool + h.nextoffset, pool + sizes[i]) < 0)
            return -1;
        *pool_end = pool + sizes[i];
        return 0;
    }
    return 0;
}

long _rh_poolfree_walk(rh_free_range_fn found, void *arg)
{
    pages_t pages = {NULL, 0, 0, 0};
    if (pages_grow(&pages) < 0)
        return -1;
    _rh_tracker_walk(RH_TABLE_GIL | RH_TABLE_ADOPTED, collect_page, &pages);
    long walked = -1;
    unsigned char *buf = _rh_own_map(LARGE_POOL);
    unsigned char *free_map = _rh_own_map(LARGE_POOL / ALIGNMENT);
    if (pages.failed || buf == NULL || free_map == NULL)
        goto done;
    size_t n = 0;
    for (size_t i = 0; i < pages.cap; i++)
        if (pages.slots[i] != NO_KEY)
            pages.slots[n++] = pages.slots[i];
    sort_words(pages.slots, n);
    emit_t e = {found, arg, 0, 0};
    uintptr_t covered = 0;      /* the end of the last pool walked */
    walked = 0;
    for (size_t i = 0; i < n; i++) {
        if (pages.slots[i] < covered)
            continue;           /* in the pool just walked */
        uintptr_t end;
        if (walk_pool(pages.slots[i], buf, free_map, &e, &end) < 0) {
            walked = -1;
            goto done;
        }
        if (end != 0) {
            covered = end;
            walked++;
        }
    }
    if (e.end != 0 && found(e.start, e.end, arg) < 0)
        walked = -1;
done:
    if (buf != NULL)
        _rh_own_unmap(buf, LARGE_POOL);
    if (free_map != NULL)
        _rh_own_unmap(free_map, LARGE_POOL / ALIGNMENT);
    _rh_own_unmap(pages.slots, pages.cap * sizeof(uintptr_t));
    return walked;
}
