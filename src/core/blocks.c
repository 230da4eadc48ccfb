/* blocks.c — the table of live blocks: address => (size, domain, birth epoch).
 *
 * Open addressing, linear probing, backward-shift deletion (no tombstones),
 * any capacity (the slot is picked by multiply-high, not by a mask), so the
 * table can grow by 1.5x: load stays between 0.5 and 0.75 and a live block
 * costs 16/load = 21..32 bytes.  Slots come from mmap, never from a
 * hooked allocator.  No locking here: the caller (tracker.c) holds the GIL
 * or the raw-domain mutex.  Growth failure returns -1 and leaves the table
 * as it was.
 */
#include "rh_internal.h"

#include <string.h>
#include <sys/mman.h>

#define MAX_LOAD_NUM 3
#define MAX_LOAD_DEN 4

static inline size_t home_slot(uintptr_t addr, size_t capacity)
{
    uint64_t h = (uint64_t)addr * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return (size_t)(((unsigned __int128)h * capacity) >> 64);
}

static rh_block_t *map_slots(size_t capacity)
{
    void *p = mmap(NULL, capacity * sizeof(rh_block_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : (rh_block_t *)p;
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
        munmap(t->slots, t->capacity * sizeof(rh_block_t));
    memset(t, 0, sizeof(*t));
}

size_t _rh_table_bytes(const rh_table_t *t)
{
    return t->capacity * sizeof(rh_block_t);
}

/* Put a block known to be absent into slots (no counters). */
static void place(rh_block_t *slots, size_t capacity, rh_block_t b)
{
    size_t i = home_slot(b.addr, capacity);
    while (slots[i].addr != 0) {
        if (++i == capacity)
            i = 0;
    }
    slots[i] = b;
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
        if (t->slots[i].addr != 0)
            place(slots, capacity, t->slots[i]);
    }
    munmap(t->slots, t->capacity * sizeof(rh_block_t));
    t->slots = slots;
    t->capacity = capacity;
    t->grow_at = capacity * MAX_LOAD_NUM / MAX_LOAD_DEN;
    return 0;
}

int _rh_table_insert(rh_table_t *t, uintptr_t addr, uint64_t meta)
{
    rh_block_t b = {addr, meta};
    size_t i = home_slot(addr, t->capacity);
    while (t->slots[i].addr != 0) {
        if (t->slots[i].addr == addr) {
            /* A block we never saw freed (freed through another path):
             * replace it. */
            rh_block_t *old = &t->slots[i];
            t->live_blocks[rh_block_domain(old)]--;
            t->live_bytes[rh_block_domain(old)] -= (int64_t)rh_block_size(old);
            *old = b;
            goto count;
        }
        if (++i == t->capacity)
            i = 0;
    }
    if (t->count + 1 > t->grow_at) {
        if (grow(t) < 0)
            return -1;
        place(t->slots, t->capacity, b);
    }
    else {
        t->slots[i] = b;
    }
    t->count++;
count:
    t->live_blocks[rh_block_domain(&b)]++;
    t->live_bytes[rh_block_domain(&b)] += (int64_t)rh_block_size(&b);
    return 0;
}

const rh_block_t *_rh_table_find(const rh_table_t *t, uintptr_t addr)
{
    if (t->slots == NULL)
        return NULL;
    size_t i = home_slot(addr, t->capacity);
    while (t->slots[i].addr != 0) {
        if (t->slots[i].addr == addr)
            return &t->slots[i];
        if (++i == t->capacity)
            i = 0;
    }
    return NULL;
}

int _rh_table_remove(rh_table_t *t, uintptr_t addr, rh_block_t *out)
{
    if (t->slots == NULL)
        return 0;
    size_t cap = t->capacity;
    size_t i = home_slot(addr, cap);
    while (t->slots[i].addr != addr) {
        if (t->slots[i].addr == 0)
            return 0;
        if (++i == cap)
            i = 0;
    }
    rh_block_t gone = t->slots[i];
    if (out)
        *out = gone;
    t->live_blocks[rh_block_domain(&gone)]--;
    t->live_bytes[rh_block_domain(&gone)] -= (int64_t)rh_block_size(&gone);
    t->count--;
    /* Backward-shift: pull later members of the cluster into the hole. */
    size_t hole = i, j = i;
    for (;;) {
        if (++j == cap)
            j = 0;
        if (t->slots[j].addr == 0)
            break;
        size_t k = home_slot(t->slots[j].addr, cap);
        /* The entry at j may move to hole unless its home lies cyclically
         * in (hole, j]. */
        int stays = (hole <= j) ? (hole < k && k <= j) : (hole < k || k <= j);
        if (!stays) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole].addr = 0;
    t->slots[hole].meta = 0;
    return 1;
}
