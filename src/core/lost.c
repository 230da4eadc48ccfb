/* lost.c — survivors that nothing points to: Valgrind's "definitely
 * lost", in the process, in tens of milliseconds.
 *
 * A block that survived the calls and that no word of the process's
 * memory points into can never be freed: no cache holds it, no later call
 * can give it back.  A leak measured on such blocks needs no patience
 * (the wait that tells a slowly filling cache from a leak).
 *
 * The candidates are the live blocks of the GIL and RAW tables (PyMem,
 * PyObject, raw and native blocks) born in the epochs asked about, less
 * the dead objects kept in free lists.  Every readable and writable
 * mapping of /proc/self/maps is read through the kernel (safemem's
 * process_vm_readv, in 1 MiB runs, a run that fails page by page: a
 * mapping unmapped meanwhile by another thread, or a file mapping past its
 * file's end, is unreadable pages, never a fault), less the engine's
 * own tables (ownmem.c: they hold every block's address), the free memory
 * of the allocators (freemem.c: glibc's main heap, its free chunks, its
 * per-thread caches and its top chunk, walked before the search;
 * poolfree.c: pymalloc's free blocks and the pools' uncarved parts, told
 * in each run as it is read, which runs end on 16 KiB boundaries so that
 * pools lie whole in one), device mappings, and the calling
 * thread's stack below its current frame (dead frames, the candidate
 * walk's among them).  Each aligned word that falls
 * inside a candidate is a reference to it; for an object the range starts
 * at the object, after its GC header (the collector's list links point at
 * the header of every tracked object, a leaked one too), and a word at the
 * glibc chunk header that a block's last word overlaps is a free list's
 * link to the next chunk, not a reference (next_chunk_header).  A reference
 * from inside another candidate is an edge; a candidate is reachable when
 * a word outside every candidate, or a reachable candidate, points into
 * it.  The others are lost (directly or through lost blocks).  Over
 * MAX_SCAN bytes of such mappings (a sanitizer's shadow memory, a huge
 * heap) there is no answer rather than a partial one.
 *
 * Freed memory keeps the words it held: a block whose last pointer was in
 * a struct freed since looks referenced.  The allocators' free memory is
 * left out (above) where their structures can be walked; what they cannot
 * (the fast bins, other threads' arenas, an object in a free list) is
 * covered in part by filling: while a check measures, the C
 * library fills what it frees (glibc's M_PERTURB, as PYTHONMALLOC=debug
 * fills freed PyMem blocks): _rh_lost_fill_freed.  The last iteration's
 * blocks are not judged (verdict.py): the live memory of the calls just
 * made (a list's spare slots, a data stack's dead part) still names some.
 *
 * Conservative by construction: stale words in freed memory, an integer
 * that looks like an address, a pointer in the engine's libc memory all
 * count as references, so a block called lost is unreferenced (unless a
 * thread running without the GIL moves the only pointer to it across the
 * scan, or holds it only in a register).  Swapped-out pages are read back
 * by the kernel like any other.
 *
 * The same memory, read the same way, also answers how many words hold
 * given addresses (_rh_lost_count_words): an object whose reference count
 * grows while no more words hold its address gains references that
 * nothing holds, an unbalanced Py_INCREF (the caller compares two counts;
 * stale words make each count a little off, never the difference large).
 * Never in a hook; GIL held.
 */
#include "lost.h"

#include "freemem.h"
#include "poolfree.h"
#include "objects.h"
#include "ownmem.h"
#include "safemem.h"
#include "tracker.h"
#include "vgclient.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUN ((size_t)1 << 20)           /* bytes read at once */
#define PAGE ((size_t)4096)
#define MAX_OWN 256
#define MAX_EDGES ((size_t)1 << 24)
#define MAX_SCAN ((size_t)2 << 30)      /* bytes of writable mappings searched at most */

typedef struct {
    uintptr_t block, end;       /* the block */
    uintptr_t target;           /* first address a reference may point to */
    uintptr_t next_chunk;       /* the next malloc chunk's header, when inside (or 0) */
    uint32_t epoch;
    uint32_t reached;
} cand_t;

typedef struct {
    uint32_t from, to;
} edge_t;

/* A growable array in the engine's own memory (ownmem: its words are
 * never taken for references). */
typedef struct {
    void *items;
    size_t count, cap, size;
} vec_t;

/* Room for `extra` more items: 0, or -1 out of memory. */
static int vec_reserve(vec_t *v, size_t extra)
{
    if (v->cap - v->count >= extra)
        return 0;
    size_t cap = v->cap ? v->cap : 1024;
    while (cap - v->count < extra)
        cap *= 2;
    void *p = _rh_own_map(cap * v->size);
    if (p == NULL)
        return -1;
    if (v->items != NULL) {
        memcpy(p, v->items, v->count * v->size);
        _rh_own_unmap(v->items, v->cap * v->size);
    }
    v->items = p;
    v->cap = cap;
    return 0;
}

static void *vec_push(vec_t *v)
{
    if (vec_reserve(v, 1) < 0)
        return NULL;
    return (char *)v->items + v->size * v->count++;
}

static void vec_free(vec_t *v)
{
    if (v->items != NULL)
        _rh_own_unmap(v->items, v->cap * v->size);
    memset(v, 0, sizeof(*v));
}

typedef struct {
    vec_t *cands;
    uint32_t first, n;
    int failed;
} collect_t;

/* glibc's malloc keeps the size of a chunk in the word before its user
 * memory and lends the last word of an in-use chunk to the next chunk's
 * header: a request of 24 bytes gets a 32-byte chunk whose user memory
 * [mem, mem + 24) ends over the next chunk's first word, at mem + 16.  The
 * lists of free chunks (small, large and unsorted bins, and the arena's
 * bin heads) link chunk headers: a free chunk after a block is named by a
 * word that points into the block, 8 bytes before its end.  No reference
 * (measured: one to four of msgpack's nine leaked tracebacks a call, each
 * 24 bytes, kept "referenced" so).  The address, or 0 when the header
 * lies past the block or the C library is not glibc's. */
static uintptr_t next_chunk_header(uintptr_t block, uintptr_t end)
{
#ifdef __GLIBC__
    const uintptr_t align = 2 * sizeof(size_t);    /* also the header's size */
    uintptr_t chunk = (end - block + sizeof(size_t) + align - 1) & ~(align - 1);
    if (chunk < 2 * align)
        chunk = 2 * align;
    uintptr_t next = block - align + chunk;     /* past the block's start: chunk > align */
    if ((block & (align - 1)) == 0 && next < end)
        return next;
#else
    (void)block;
    (void)end;
#endif
    return 0;
}

static void collect(const rh_block_t *b, void *arg)
{
    collect_t *c = (collect_t *)arg;
    uint32_t e = rh_block_epoch(b);
    if (c->failed || rh_block_domain(b) == RH_DOMAIN_ADOPTED || e < c->first ||
        e - c->first >= c->n)
        return;
    PyObject *op;
    if (_rh_block_dead(b, &op))
        return;
    cand_t *k = vec_push(c->cands);
    if (k == NULL) {
        c->failed = 1;
        return;
    }
    k->block = rh_block_addr(b);
    k->end = k->block + rh_block_size(b);
    k->target = op != NULL ? (uintptr_t)op : k->block;
    if (k->target >= k->end)
        k->target = k->block;
    k->next_chunk = next_chunk_header(k->block, k->end);
    k->epoch = e;
    k->reached = 0;
}

static int cmp_cand(const void *a, const void *b)
{
    uintptr_t x = ((const cand_t *)a)->block, y = ((const cand_t *)b)->block;
    return x < y ? -1 : x > y;
}

static int cmp_edge(const void *a, const void *b)
{
    uint32_t x = ((const edge_t *)a)->from, y = ((const edge_t *)b)->from;
    return x < y ? -1 : x > y;
}

/* The candidate whose block holds addr, or -1 (candidates sorted). */
static long find_block(const cand_t *c, size_t n, uintptr_t addr)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && c[lo].block <= addr ? (long)lo : -1;
}

typedef struct scan scan_t;
struct scan {
    /* what is done with the words of buf, copied from address `at` */
    void (*words)(scan_t *s, const uintptr_t *buf, size_t words, uintptr_t at);
    cand_t *c;
    size_t n;
    uintptr_t lo, hi;           /* every candidate (every address counted) lies in [lo, hi) */
    vec_t edges;
    const uintptr_t *addrs;     /* the addresses counted (count_words), and their counts */
    int64_t *counts;
    int failed;
};

/* The references into candidates among the words of buf, copied from
 * address `at`. */
static void scan_words(scan_t *s, const uintptr_t *buf, size_t words, uintptr_t at)
{
    const uintptr_t lo = s->lo, span = s->hi - s->lo;
    for (size_t i = 0; i < words; i++) {
        uintptr_t v = buf[i];
        if (v - lo >= span)
            continue;
        long t = find_block(s->c, s->n, v);
        if (t < 0 || v < s->c[t].target || v == s->c[t].next_chunk)
            continue;
        uintptr_t where = at + i * sizeof(uintptr_t);
        long from = find_block(s->c, s->n, where);
        if (from == t)
            continue;                   /* a block pointing into itself */
        if (from < 0) {
            s->c[t].reached = 1;
            continue;
        }
        edge_t *e = s->edges.count < MAX_EDGES ? vec_push(&s->edges) : NULL;
        if (e == NULL) {
            s->failed = 1;
            return;
        }
        e->from = (uint32_t)from;
        e->to = (uint32_t)t;
    }
}

/* The words of a run copied from `at` (len bytes in buf) through
 * s->words, less the free blocks and the never-carved part of each
 * pymalloc pool that lies whole in the run (poolfree.c). */
static void scan_run(scan_t *s, const uintptr_t *buf, size_t len, uintptr_t at,
                     rh_lost_t *out)
{
    const unsigned char *bytes = (const unsigned char *)buf;
    const uintptr_t end = at + len;
    uintptr_t done = at;                /* words before this are handed on */
    rh_pool_t pool;
    for (uintptr_t p = (at + RH_POOL_SMALL - 1) & ~(uintptr_t)(RH_POOL_SMALL - 1);
         p + RH_POOL_SMALL <= end && !s->failed;) {
        size_t size = _rh_pool_at(bytes + (p - at), (size_t)(end - p), p, &pool);
        if (size == 0) {
            p += RH_POOL_SMALL;
            continue;
        }
        out->pools++;
        /* What lies before the pool, then its header, then its blocks in
         * use (runs of them at once). */
        uintptr_t live = pool.header + p;
        if (live > done)
            s->words(s, buf + (done - at) / sizeof(uintptr_t),
                     (size_t)(live - done) / sizeof(uintptr_t), done);
        for (size_t k = 0; k < pool.carved && !s->failed;) {
            size_t j = k;
            while (j < pool.carved && pool.free[j] == pool.free[k])
                j++;
            uintptr_t a = p + pool.header + k * pool.block_size;
            uintptr_t b = p + pool.header + j * pool.block_size;
            if (pool.free[k])
                out->free_bytes += (int64_t)(b - a);
            else
                s->words(s, buf + (a - at) / sizeof(uintptr_t),
                         (size_t)(b - a) / sizeof(uintptr_t), a);
            k = j;
        }
        uintptr_t carved_end = p + pool.header + pool.carved * pool.block_size;
        out->free_bytes += (int64_t)(p + size - carved_end);
        done = p += size;
    }
    if (end > done && !s->failed)
        s->words(s, buf + (done - at) / sizeof(uintptr_t),
                 (size_t)(end - done) / sizeof(uintptr_t), done);
}

static void scan_range(scan_t *s, uintptr_t start, uintptr_t end, uintptr_t *buf,
                       rh_lost_t *out)
{
    start = (start + sizeof(uintptr_t) - 1) & ~(uintptr_t)(sizeof(uintptr_t) - 1);
    for (uintptr_t at = start; at < end && !s->failed;) {
        /* Runs end on a 16 KiB boundary: pymalloc's pools lie whole in one. */
        uintptr_t stop = ((at + RUN) & ~(uintptr_t)(RH_POOL_LARGE - 1));
        if (stop <= at || stop > end)
            stop = end;
        size_t len = (size_t)(stop - at) & ~(sizeof(uintptr_t) - 1);
        if (len == 0)
            break;
        if (_rh_safe_read(at, buf, len) == 0) {
            out->scanned_bytes += (int64_t)len;
            scan_run(s, buf, len, at, out);
            at += len;
            continue;
        }
        /* Page by page: a page past the end of its file, or unmapped
         * since, holds nothing; the others are read. */
        for (size_t off = 0; off < len && !s->failed; off += PAGE) {
            size_t n = len - off < PAGE ? len - off : PAGE;
            if (_rh_safe_read(at + off, buf, n) < 0) {
                out->unreadable++;
                continue;
            }
            out->scanned_bytes += (int64_t)n;
            s->words(s, buf, n / sizeof(uintptr_t), at + off);
        }
        at += len;
    }
}

/* [start, end) less the ranges to skip (sorted by start) and the dead
 * part of the calling thread's stack. */
static void scan_mapping(scan_t *s, uintptr_t start, uintptr_t end, const rh_range_t *skip,
                         size_t nskip, uintptr_t sp, uintptr_t *buf, rh_lost_t *out)
{
    if (sp >= start && sp < end)
        start = sp;                     /* below the current frame: dead frames */
    uintptr_t at = start;
    for (size_t i = 0; i < nskip && at < end && skip[i].start < end; i++) {
        if (skip[i].end <= at)
            continue;
        if (skip[i].start > at)
            scan_range(s, at, skip[i].start, buf, out);
        at = skip[i].end;
    }
    if (at < end)
        scan_range(s, at, end, buf, out);
    out->mappings++;
}

/* /proc/self/maps into the engine's own memory, NUL-terminated: 0, or -1. */
static int read_maps(vec_t *text)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    for (;;) {
        if (vec_reserve(text, 4096) < 0) {
            close(fd);
            return -1;
        }
        ssize_t r = read(fd, (char *)text->items + text->count, text->cap - text->count - 1);
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        text->count += (size_t)r;
    }
    close(fd);
    ((char *)text->items)[text->count] = '\0';
    return 0;
}

/* The mappings to read, from the text of /proc/self/maps (modified: lines
 * cut): readable and writable, not a device's.  *total: their bytes;
 * [*heap_lo, *heap_hi): the one named [heap] (the main heap), if any.
 * 0, or -1 out of memory. */
static int writable_mappings(char *text, vec_t *maps, size_t *total, uintptr_t *heap_lo,
                             uintptr_t *heap_hi)
{
    for (char *line = text; *line;) {
        char *next = strchr(line, '\n');
        if (next != NULL)
            *next = '\0';
        unsigned long a, b;
        char perms[8] = "";
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &a, &b, perms, &path_at) >= 3 &&
            perms[0] == 'r' && perms[1] == 'w' && b > a) {
            const char *path = path_at > 0 ? line + path_at : "";
            if (strncmp(path, "/dev/", 5) != 0 && strcmp(path, "[vvar]") != 0) {
                rh_range_t *r = vec_push(maps);
                if (r == NULL)
                    return -1;
                r->start = a;
                r->end = b;
                *total += b - a;
                if (strcmp(path, "[heap]") == 0) {
                    *heap_lo = a;
                    *heap_hi = b;
                }
            }
        }
        if (next == NULL)
            break;
        line = next + 1;
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void reach(scan_t *s)
{
    edge_t *e = s->edges.items;
    size_t ne = s->edges.count;
    if (ne == 0)
        return;
    qsort(e, ne, sizeof(edge_t), cmp_edge);
    /* The queue: candidates reached, their edges followed once. */
    vec_t queue = {NULL, 0, 0, sizeof(uint32_t)};
    for (size_t i = 0; i < s->n; i++)
        if (s->c[i].reached) {
            uint32_t *q = vec_push(&queue);
            if (q == NULL)
                goto out;
            *q = (uint32_t)i;
        }
    for (size_t head = 0; head < queue.count; head++) {
        uint32_t from = ((uint32_t *)queue.items)[head];
        size_t lo = 0, hi = ne;         /* first edge from `from` */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (e[mid].from < from)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t k = lo; k < ne && e[k].from == from; k++)
            if (!s->c[e[k].to].reached) {
                s->c[e[k].to].reached = 1;
                uint32_t *q = vec_push(&queue);
                if (q == NULL)
                    goto out;
                *q = e[k].to;
            }
    }
    vec_free(&queue);
    return;
out:
    /* out of memory: call everything reached (conservative) */
    for (size_t i = 0; i < s->n; i++)
        s->c[i].reached = 1;
    vec_free(&queue);
}

/* A free range of the heap onto the vec of ranges to leave out. */
static int push_free(uintptr_t start, uintptr_t end, void *arg)
{
    rh_range_t *r = vec_push((vec_t *)arg);
    if (r == NULL)
        return -1;
    r->start = start;
    r->end = end;
    return 0;
}

/* a and b (each sorted by start) into out, sorted: 0, or -1 out of memory. */
static int merge_ranges(const rh_range_t *a, size_t na, const rh_range_t *b, size_t nb,
                        vec_t *out)
{
    if (vec_reserve(out, na + nb + 1) < 0)
        return -1;
    size_t i = 0, j = 0;
    while (i < na || j < nb) {
        const rh_range_t *next = j >= nb || (i < na && a[i].start <= b[j].start) ? &a[i++]
                                                                              : &b[j++];
        *(rh_range_t *)vec_push(out) = *next;
    }
    return 0;
}

/* The ranges left out of the search, sorted by start into `skip`: the
 * engine's own (own, sorted) and the free memory of the main heap
 * [heap_lo, heap_hi) (freemem.c; none when its walk fails).  0, or -1 out
 * of memory. */
static int ranges_to_skip(const rh_range_t *own, size_t nown, uintptr_t heap_lo,
                          uintptr_t heap_hi, vec_t *skip, rh_lost_t *out)
{
    vec_t heap = {NULL, 0, 0, sizeof(rh_range_t)};
    if (heap_hi > heap_lo && _rh_freemem_heap(heap_lo, heap_hi, push_free, &heap) < 0)
        heap.count = 0;                 /* no answer: every word of the heap is read */
    const rh_range_t *f = heap.items;
    for (size_t i = 0; i < heap.count; i++)
        out->free_bytes += (int64_t)(f[i].end - f[i].start);
    int rc = merge_ranges(own, nown, f, heap.count, skip);
    vec_free(&heap);
    return rc;
}

/* Every readable and writable mapping of the process through s->words
 * (less the engine's own ranges, the free memory of the main heap, and
 * the dead part of this thread's stack).  0, or -1 with *why. */
static int scan_process(scan_t *s, rh_lost_t *out, const char **why)
{
    vec_t text = {NULL, 0, 0, 1};
    vec_t maps = {NULL, 0, 0, sizeof(rh_range_t)};
    vec_t skip = {NULL, 0, 0, sizeof(rh_range_t)};
    uintptr_t *buf = _rh_own_map(RUN);
    rh_range_t own[MAX_OWN];
    int rc = 0;
    if (buf == NULL || read_maps(&text) < 0) {
        *why = "/proc/self/maps could not be read";
        rc = -1;
        goto done;
    }
    size_t total = 0;
    uintptr_t heap_lo = 0, heap_hi = 0;
    if (writable_mappings(text.items, &maps, &total, &heap_lo, &heap_hi) < 0) {
        *why = "no memory for the list of mappings";
        rc = -1;
        goto done;
    }
    if (total > MAX_SCAN) {
        /* A sanitizer's shadow memory, or a heap too large to read in
         * the time of a check: no answer rather than a partial one. */
        *why = "too much writable memory to search (over 2 GiB mapped)";
        rc = -1;
        goto done;
    }
    /* Taken after every map of ours: the text and the run buffer too
     * (the heap walk's maps come and go before the search). */
    size_t nown = _rh_own_ranges(own, MAX_OWN);
    if (nown > MAX_OWN)
        nown = MAX_OWN;
    if (ranges_to_skip(own, nown, heap_lo, heap_hi, &skip, out) < 0) {
        *why = "no memory for the ranges to leave out";
        rc = -1;
        goto done;
    }
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    for (size_t i = 0; i < maps.count && !s->failed; i++) {
        const rh_range_t *m = (const rh_range_t *)maps.items + i;
        scan_mapping(s, m->start, m->end, skip.items, skip.count, sp, buf, out);
    }
done:
    if (buf != NULL)
        _rh_own_unmap(buf, RUN);
    vec_free(&skip);
    vec_free(&maps);
    vec_free(&text);
    return rc;
}

/* Can the process's memory be searched now?  0, or -1 with *why. */
static int searchable(const char **why)
{
    if (!_rh_tracker_active()) {
        *why = "not tracking";
        return -1;
    }
#ifdef Py_GIL_DISABLED
    *why = "a free-threaded build: other threads move pointers during the search";
    return -1;
#endif
    if (!_rh_safe_available(why))
        return -1;
    return 0;
}

int _rh_lost_survivors(uint32_t first, uint32_t n, int64_t *lost, int64_t *lost_bytes,
                       rh_lost_t *out, const char **why)
{
    memset(lost, 0, sizeof(int64_t) * n);
    memset(lost_bytes, 0, sizeof(int64_t) * n);
    memset(out, 0, sizeof(*out));
    double t0 = now();
    if (searchable(why) < 0)
        return -1;
    vec_t cands = {NULL, 0, 0, sizeof(cand_t)};
    collect_t c = {&cands, first, n, 0};
    _rh_tracker_walk(RH_TABLE_GIL | RH_TABLE_RAW, collect, &c);
    if (c.failed) {
        vec_free(&cands);
        *why = "no memory for the candidates";
        return -1;
    }
    out->candidates = (int64_t)cands.count;
    if (cands.count == 0) {
        out->seconds = now() - t0;
        return 0;
    }
    cand_t *cs = cands.items;
    qsort(cs, cands.count, sizeof(cand_t), cmp_cand);
    scan_t s = {scan_words, cs, cands.count, cs[0].target, cs[cands.count - 1].end,
                {NULL, 0, 0, sizeof(edge_t)}, NULL, NULL, 0};
    for (size_t i = 0; i < cands.count; i++)
        if (cs[i].target < s.lo)
            s.lo = cs[i].target;
    int rc = scan_process(&s, out, why);
    if (rc == 0 && s.failed) {
        *why = "too many references between the candidates";
        rc = -1;
    }
    if (rc == 0) {
        reach(&s);
        for (size_t i = 0; i < cands.count; i++)
            if (!cs[i].reached) {
                lost[cs[i].epoch - first]++;
                lost_bytes[cs[i].epoch - first] += (int64_t)(cs[i].end - cs[i].block);
                out->lost_total++;
            }
    }
    vec_free(&s.edges);
    vec_free(&cands);
    out->seconds = now() - t0;
    return rc;
}

/* ---- words that hold an address ------------------------------------------ */

static void count_words(scan_t *s, const uintptr_t *buf, size_t words, uintptr_t at)
{
    (void)at;
    const uintptr_t lo = s->lo, span = s->hi - s->lo;
    for (size_t i = 0; i < words; i++) {
        uintptr_t v = buf[i];
        if (v - lo > span)
            continue;
        for (size_t k = 0; k < s->n; k++)
            if (v == s->addrs[k])
                s->counts[k]++;
    }
}

int _rh_lost_count_words(const uintptr_t *addrs, size_t n, int64_t *counts, rh_lost_t *out,
                         const char **why)
{
    memset(counts, 0, sizeof(int64_t) * n);
    memset(out, 0, sizeof(*out));
    double t0 = now();
    if (n == 0)
        return 0;
    if (searchable(why) < 0)
        return -1;
    scan_t s = {count_words, NULL, n, addrs[0], addrs[0], {NULL, 0, 0, sizeof(edge_t)},
                addrs, counts, 0};
    for (size_t k = 1; k < n; k++) {
        if (addrs[k] < s.lo)
            s.lo = addrs[k];
        if (addrs[k] > s.hi)
            s.hi = addrs[k];
    }
    int rc = scan_process(&s, out, why);
    out->seconds = now() - t0;
    return rc;
}

/* ---- freed memory filled while a check measures ------------------------- */

#ifdef __GLIBC__
/* The perturb byte the process started with: MALLOC_PERTURB_, or the
 * glibc.malloc.perturb tunable (GLIBC_TUNABLES=a=1:glibc.malloc.perturb=N). */
static int initial_perturb(void)
{
    const char *v = getenv("MALLOC_PERTURB_");
    int byte = v != NULL ? atoi(v) : 0;
    const char *t = getenv("GLIBC_TUNABLES");
    const char *key = "glibc.malloc.perturb=";
    const char *at = t != NULL ? strstr(t, key) : NULL;
    if (at != NULL)
        byte = atoi(at + strlen(key));
    return byte & 0xff;
}
#endif

int _rh_lost_fill_freed(int on)
{
    if (_rh_vg_running())
        return 0;       /* memcheck's malloc ignores mallopt, and knows what is lost itself */
#ifdef __GLIBC__
    static int initial = -1;
    if (initial < 0)
        initial = initial_perturb();
    mallopt(M_PERTURB, on ? (initial ? initial : 0x55) : initial);
    if (on)
        malloc_trim(0);     /* free pages freed before: given back, read as zeros */
    return 1;
#else
    (void)on;
    return 0;
#endif
}
