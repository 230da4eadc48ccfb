/* ownmem.c — the registry of the engine's own mapped memory.
 *
 * A fixed array of ranges under a spin lock: mapping happens in allocator
 * hooks (a block table that grows), on any thread, where neither malloc
 * nor a blocking lock may be used.  The lock is held only to copy a few
 * words.  A full registry still maps (the range is just not registered):
 * the only reader (lost.c) then counts more references, a conservative
 * answer.
 *
 * fork: the callers that map inside allocator hooks do it under locks that
 * their pthread_atfork handlers take before a fork (tracker.c's tables,
 * native.c's patch lock, guard.c's), so no fork finds this lock held by them.
 *
 * Invariants: every registered range is mapped read-write by this file
 * and is removed before it is unmapped; ranges never overlap.
 */
#include "ownmem.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_RANGES 256

static rh_range_t ranges[MAX_RANGES];
static size_t nranges;
static atomic_flag lock = ATOMIC_FLAG_INIT;

static void take(void)
{
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire))
        ;
}

static void give(void)
{
    atomic_flag_clear_explicit(&lock, memory_order_release);
}

void *_rh_own_map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    take();
    if (nranges < MAX_RANGES) {
        ranges[nranges].start = (uintptr_t)p;
        ranges[nranges].end = (uintptr_t)p + len;
        nranges++;
    }
    give();
    return p;
}

void _rh_own_unmap(void *p, size_t len)
{
    if (p == NULL)
        return;
    take();
    for (size_t i = 0; i < nranges; i++)
        if (ranges[i].start == (uintptr_t)p) {
            ranges[i] = ranges[--nranges];
            break;
        }
    give();
    munmap(p, len);
}

size_t _rh_own_ranges(rh_range_t *out, size_t max)
{
    take();
    size_t n = nranges;
    memcpy(out, ranges, (n < max ? n : max) * sizeof(rh_range_t));
    give();
    size_t m = n < max ? n : max;
    for (size_t i = 1; i < m; i++) {        /* insertion sort: a few dozen */
        rh_range_t r = out[i];
        size_t j = i;
        while (j > 0 && out[j - 1].start > r.start) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = r;
    }
    return n;
}
