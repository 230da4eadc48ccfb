/* blocks.c — the table of live blocks: address => (size, domain, birth epoch).
 *
 * Open addressing with Robin Hood linear probing: an entry never sits
 * farther from its home slot than the entry it displaced, which keeps probe
 * sequences short and lets a lookup stop as soon as it meets an entry
 * closer to its home than the probe is.  Each key carries that distance in
 * its top 16 bits (user-space addresses fit in 48), so deletion shifts the
 * following entries back without recomputing a hash.  Any capacity (the
 * home slot is picked by multiply-high), so the table grows by 1.5x: load
 * stays between 0.5 and 0.75 and a live block costs 16/load = 21..32 bytes.
 * Slots come from mmap (ownmem.c: registered as the engine's), never from
 * a hooked allocator.  No locking here:
 * the owner of a table (tracker.c, stacks.c) holds the lock that guards it.
 * Growth failure returns -1 and leaves the table as it was.
 */
#include "blocks.h"

#include <string.h>
#include "ownmem.h"

#define MAX_LOAD_NUM 3
#define MAX_LOAD_DEN 4
#define DIST_SHIFT 48
#define MAX_DIST 0xffff

static inline size_t home_slot(uintptr_t addr, size_t capacity)
{
    uint64_t h = (uint64_t)addr;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    return (size_t)(((unsigned __int128)h * capacity) >> 64);
}

static inline uint64_t dist_of(uint64_t key) { return key >> DIST_SHIFT; }
static inline uint64_t with_dist(uint64_t addr, uint64_t d) { return addr | (d << DIST_SHIFT); }

static rh_block_t *map_slots(size_t capacity)
{
    return (rh_block_t *)_rh_own_map(capacity * sizeof(rh_block_t));
}

int _rh_table_init(rh_table_t *t, size_t capacity)
{
    memset(t, 0, sizeof(*t));
    if (capacity < 1024)
        capacity = 1024;
    t->slots = map_slots(capacity);
    if (t->slots == NULL)
        return -1;
    t->capacity = capacity;
    t->grow_at = capacity * MAX_LOAD_NUM / MAX_LOAD_DEN;
    return 0;
}

void _rh_table_release(rh_table_t *t)
{
    if (t->slots)
        _rh_own_unmap(t->slots, t->capacity * sizeof(rh_block_t));
    memset(t, 0, sizeof(*t));
}

size_t _rh_table_bytes(const rh_table_t *t)
{
    return t->capacity * sizeof(rh_block_t);
}

/* Robin Hood placement of an address known to be absent; no counters.
 * Returns 0, or -1 if a probe distance would overflow its 16 bits. */
static int place(rh_block_t *slots, size_t capacity, uint64_t addr, uint64_t meta)
{
    size_t i = home_slot(addr, capacity);
    uint64_t d = 0;
    for (;;) {
        rh_block_t *s = &slots[i];
        if (s->key == 0) {
            s->key = with_dist(addr, d);
            s->meta = meta;
            return 0;
        }
        uint64_t sd = dist_of(s->key);
        if (sd < d) {
            /* Take the slot from the richer entry and carry it on. */
            uint64_t a2 = s->key & RH_ADDR_MASK, m2 = s->meta;
            s->key = with_dist(addr, d);
            s->meta = meta;
            addr = a2;
            meta = m2;
            d = sd;
        }
        if (++d > MAX_DIST)
            return -1;
        if (++i == capacity)
            i = 0;
    }
}

static int grow(rh_table_t *t)
{
    size_t capacity = t->capacity + t->capacity / 2;
    if (t->max_capacity && capacity > t->max_capacity)
        return -1;
    rh_block_t *slots = map_slots(capacity);
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < t->capacity; i++) {
        const rh_block_t *b = &t->slots[i];
        if (b->key != 0 && place(slots, capacity, b->key & RH_ADDR_MASK, b->meta) < 0) {
            _rh_own_unmap(slots, capacity * sizeof(rh_block_t));
            return -1;
        }
    }
    _rh_own_unmap(t->slots, t->capacity * sizeof(rh_block_t));
    t->slots = slots;
    t->capacity = capacity;
    t->grow_at = capacity * MAX_LOAD_NUM / MAX_LOAD_DEN;
    return 0;
}

/* The slot holding addr, or NULL. */
static rh_block_t *lookup(const rh_table_t *t, uint64_t addr)
{
    if (t->slots == NULL)
        return NULL;
    size_t i = home_slot(addr, t->capacity);
    for (uint64_t d = 0;; d++) {
        rh_block_t *s = &t->slots[i];
        if (s->key == 0 || dist_of(s->key) < d)
            return NULL;    /* Robin Hood: it would have been placed by now */
        if ((s->key & RH_ADDR_MASK) == addr)
            return s;
        if (++i == t->capacity)
            i = 0;
    }
}

int _rh_table_insert(rh_table_t *t, uintptr_t addr, uint64_t meta)
{
    rh_block_t *old = lookup(t, addr);
    if (old != NULL) {
        /* A block we never saw freed (freed through another path): replace. */
        t->live_blocks[rh_block_domain(old)]--;
        t->live_bytes[rh_block_domain(old)] -= (int64_t)rh_block_size(old);
        old->meta = meta;
    }
    else {
        if (t->count + 1 > t->grow_at && grow(t) < 0)
            return -1;
        if (place(t->slots, t->capacity, addr, meta) < 0)
            return -1;
        t->count++;
    }
    rh_block_t b = {addr, meta};
    t->live_blocks[rh_block_domain(&b)]++;
    t->live_bytes[rh_block_domain(&b)] += (int64_t)rh_block_size(&b);
    return 0;
}

const rh_block_t *_rh_table_find(const rh_table_t *t, uintptr_t addr)
{
    return lookup(t, addr);
}

int _rh_table_remove(rh_table_t *t, uintptr_t addr, rh_block_t *out)
{
    rh_block_t *s = lookup(t, addr);
    if (s == NULL)
        return 0;
    rh_block_t gone = {addr, s->meta};
    if (out)
        *out = gone;
    t->live_blocks[rh_block_domain(&gone)]--;
    t->live_bytes[rh_block_domain(&gone)] -= (int64_t)rh_block_size(&gone);
    t->count--;
    /* Backward shift: pull each following displaced entry one step home. */
    size_t hole = (size_t)(s - t->slots);
    for (;;) {
        size_t next = hole + 1 == t->capacity ? 0 : hole + 1;
        rh_block_t *n = &t->slots[next];
        if (n->key == 0 || dist_of(n->key) == 0)
            break;
        t->slots[hole].key = n->key - ((uint64_t)1 << DIST_SHIFT);
        t->slots[hole].meta = n->meta;
        hole = next;
    }
    t->slots[hole].key = 0;
    t->slots[hole].meta = 0;
    return 1;
}

void _rh_table_flip_keys(rh_table_t *t, uint64_t mask)
{
    for (size_t i = 0; t->slots != NULL && i < t->capacity; i++) {
        if (!rh_block_empty(&t->slots[i]))
            t->slots[i].key ^= mask;
    }
}
