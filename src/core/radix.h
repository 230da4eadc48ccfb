/* radix.h — a radix sort of records by an address-sized key (radix.c). */
#ifndef RH_RADIX_H
#define RH_RADIX_H

#ifndef REFHOUND_CORE_BUILD
#error "radix.h is internal to refhound's engine (src/core)"
#endif
#include <stddef.h>
#include <stdint.h>

/* Sort n records of `size` bytes at `items` by the uintptr_t at
 * `key_offset` in each, ascending (keys are user-space addresses: 48 bits;
 * records with keys equal above bit 3 keep no particular order).  0, or -1
 * when the scratch buffer cannot be had (items untouched: sort them
 * otherwise). */
int _rh_radix_sort(void *items, size_t n, size_t size, size_t key_offset);

#endif /* RH_RADIX_H */
