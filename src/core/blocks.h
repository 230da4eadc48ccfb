/* blocks.h — the table of live blocks: address => size, domain, epoch
 * (blocks.c).  Open addressing, Robin Hood linear probing; mmap'd memory,
 * never a hooked allocator.  No locking: the owner of a table guards it
 * (tracker.c for the block tables, stacks.c for its side table). */
#ifndef RH_BLOCKS_H
#define RH_BLOCKS_H

#ifndef REFHOUND_CORE_BUILD
#error "blocks.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct {
    rh_block_t *slots;          /* mmap'd, capacity slots */
    size_t capacity;
    size_t count;
    size_t grow_at;             /* grow when count reaches this */
    size_t max_capacity;        /* 0 = no limit (REFHOUND_MAX_BLOCKS, for tests) */
    int64_t live_blocks[RH_NDOMAINS];
    int64_t live_bytes[RH_NDOMAINS];
} rh_table_t;

/* 0, or -1 when the slots cannot be mapped. */
int _rh_table_init(rh_table_t *t, size_t capacity);
void _rh_table_release(rh_table_t *t);
/* Insert or overwrite; -1 when the table cannot grow (out of memory). */
int _rh_table_insert(rh_table_t *t, uintptr_t addr, uint64_t meta);
/* Remove; returns 1 and fills *out (may be NULL) when found, 0 otherwise. */
int _rh_table_remove(rh_table_t *t, uintptr_t addr, rh_block_t *out);
/* The entry of addr, or NULL; valid until the table next changes. */
const rh_block_t *_rh_table_find(const rh_table_t *t, uintptr_t addr);
/* Bytes of slots mapped. */
size_t _rh_table_bytes(const rh_table_t *t);
/* XOR every non-empty key with `mask` (twice restores it): a key still
 * non-empty no longer holds an address (vgclient.c's leak search). */
void _rh_table_flip_keys(rh_table_t *t, uint64_t mask);

#endif /* RH_BLOCKS_H */
