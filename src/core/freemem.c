/* freemem.c — the free memory of glibc's main heap, found by walking it.
 *
 * A search for references (lost.c) reads every writable word of the
 * process; a word left in memory the C library has taken back is no
 * reference, yet it names what it named when that memory was freed: a
 * dict's old keys table, a list's array, freed before the blocks now at
 * those addresses were born (pymalloc hands freed addresses out again).
 * Filling freed memory (M_PERTURB) covers only what is freed while it is
 * on, and never the per-thread caches.  Measured in a pytest process on a
 * 64-byte block lost a call: 150 of 200 lost blocks named by such words,
 * nearly all in free chunks of 8 to 13 KiB freed before the filling.
 *
 * glibc's heap is a chain of chunks: a header of two words (the previous
 * chunk's size when that one is free, then this chunk's size, whose low
 * bit says whether the previous chunk is in use), then the user memory; the
 * next chunk starts `size` bytes on.  The main arena's heap is the [heap]
 * mapping (the brk area), its first chunk at the mapping's start, its last
 * the top chunk, which ends where the mapping ends.  Free is:
 *   - a chunk whose next chunk's header says so (the bins);
 *   - a chunk in a per-thread cache (tcache), which looks in use: its
 *     second user word holds the cache's key (a random value since glibc
 *     2.34, learnt here by freeing a chunk of our own);
 *   - the top chunk.
 * The fast bins' chunks also look in use and are left as they are (at most
 * 120 bytes each, and filled while M_PERTURB is on).  Each free range runs
 * from its chunk's user memory to the end of the next chunk's header (the
 * last user word of a chunk in use lends itself to the next header; the
 * header words of a free chunk's neighbour are sizes).
 *
 * Conservative: a header that does not check out (misaligned, too small,
 * past the heap, flags of another arena) ends the walk with no answer,
 * and the caller then keeps every word.  Other arenas (threads' heaps, in
 * mappings of their own) are not walked.  Reads through safemem.c, in runs,
 * into the engine's own memory.  GIL held; a thread that mallocs without it
 * may move a chunk during the walk (the same race any search has).
 */
#include "freemem.h"

#include "ownmem.h"
#include "safemem.h"
#include "vgclient.h"

#include <stdlib.h>
#include <string.h>

#define RUN ((size_t)1 << 20)
#define HEADER (2 * sizeof(size_t))
#define MIN_CHUNK (4 * sizeof(size_t))
#define PREV_INUSE ((size_t)1)
#define IS_MMAPPED ((size_t)2)
#define NON_MAIN_ARENA ((size_t)4)
#define FLAGS (PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA)

/* The tcache key, once learnt (0: not known). */
static uintptr_t tcache_key;

/* A word that cannot be the key: all its bytes the same (a fill pattern,
 * 0: the chunk went to a fast bin, or another allocator took it), or a
 * small integer, which live memory holds often.  glibc's key is random
 * since 2.34 (the cache's address before). */
static int not_a_key(uintptr_t w)
{
    return w == (w & 0xff) * (uintptr_t)0x0101010101010101ULL || w < ((uintptr_t)1 << 32);
}

/* Free a chunk of our own into this thread's cache and read the key it
 * gets.  When that cache's bin is full the chunk goes elsewhere, gets no
 * key, and the next walk tries again. */
static void learn_tcache_key(void)
{
#ifdef __GLIBC__
    uintptr_t *q = malloc(3 * sizeof(uintptr_t));      /* libc: a 32-byte chunk */
    if (q == NULL)
        return;
    q[0] = q[1] = q[2] = 0;
    uintptr_t at = (uintptr_t)q;
    free(q);
    uintptr_t w[2];
    if (_rh_safe_read(at, w, sizeof(w)) == 0 && !not_a_key(w[1]))
        tcache_key = w[1];
#endif
}

typedef struct {
    uintptr_t lo, hi;           /* the heap */
    unsigned char *buf;         /* a copy of [at, at + len) */
    uintptr_t at;
    size_t len;
} reader_t;

/* The word at addr (inside the heap), read through the run buffer: 0, or
 * -1 when it cannot be read. */
static int word_at(reader_t *r, uintptr_t addr, uintptr_t *out)
{
    if (addr < r->at || addr + sizeof(uintptr_t) > r->at + r->len) {
        if (addr + sizeof(uintptr_t) > r->hi)
            return -1;
        size_t len = r->hi - addr < RUN ? (size_t)(r->hi - addr) : RUN;
        if (_rh_safe_read(addr, r->buf, len) < 0)
            return -1;
        r->at = addr;
        r->len = len;
    }
    memcpy(out, r->buf + (addr - r->at), sizeof(*out));
    return 0;
}

/* Hand [start, end) on, joined to the pending range when they touch. */
typedef struct {
    rh_free_range_fn found;
    void *arg;
    uintptr_t start, end;       /* pending (end == 0: none) */
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

int _rh_freemem_heap(uintptr_t lo, uintptr_t hi, rh_free_range_fn found, void *arg)
{
#ifndef __GLIBC__
    (void)lo; (void)hi; (void)found; (void)arg;
    return -1;
#else
    if (_rh_vg_running() || (lo & (HEADER - 1)) != 0 || hi <= lo + MIN_CHUNK)
        return -1;          /* memcheck's malloc keeps no glibc heap */
    if (tcache_key == 0)
        learn_tcache_key();
    reader_t r = {lo, hi, _rh_own_map(RUN), 0, 0};
    if (r.buf == NULL)
        return -1;
    emit_t e = {found, arg, 0, 0};
    int rc = -1;
    uintptr_t p = lo, size_word;
    if (word_at(&r, p + sizeof(size_t), &size_word) < 0)
        goto done;
    for (;;) {
        size_t size = size_word & ~FLAGS;
        if ((size_word & (IS_MMAPPED | NON_MAIN_ARENA)) || size < MIN_CHUNK ||
            (size & (HEADER - 1)) != 0 || size > hi - p)
            break;                              /* not a chunk of this heap */
        uintptr_t next = p + size;
        if (next == hi) {                       /* the top chunk */
            if (emit(&e, p + HEADER, hi) == 0 &&
                (e.end == 0 || found(e.start, e.end, arg) == 0))
                rc = 0;
            break;
        }
        uintptr_t next_word, second;
        if (next + HEADER > hi || word_at(&r, next + sizeof(size_t), &next_word) < 0)
            break;
        int is_free = !(next_word & PREV_INUSE);
        if (!is_free && tcache_key != 0) {
            if (word_at(&r, p + HEADER + sizeof(uintptr_t), &second) < 0)
                break;
            is_free = second == tcache_key;
            /* the next header may have been pushed out of the buffer */
            if (word_at(&r, next + sizeof(size_t), &next_word) < 0)
                break;
        }
        if (is_free && emit(&e, p + HEADER, next + HEADER) < 0)
            break;
        p = next;
        size_word = next_word;
    }
done:
    _rh_own_unmap(r.buf, RUN);
    return rc;
#endif
}
