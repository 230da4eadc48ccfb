/* radix.c — records sorted by an address key, in linear time.
 *
 * The refcount snapshots (objects.c) hold one record per live object, up
 * to hundreds of thousands after a leak has been watched for a while, and
 * are sorted by address so that later ones can be searched; qsort spent
 * some 15 ms on each such snapshot.  This is a least-significant-digit
 * radix sort on bits 4..47 of the key (objects are 16-byte aligned, and
 * user-space addresses end at bit 47): four stable passes of 11 bits
 * between the records and a scratch buffer of the same size, every
 * histogram counted in one pass first.
 *
 * Invariants: the scratch buffer comes from libc's malloc and is freed
 * before returning (the callers run as the engine's own work, whose libc
 * allocations are not counted); no state between calls.
 */
#include "radix.h"

#include <stdlib.h>
#include <string.h>

#define DIGIT_BITS 11
#define DIGITS 4
#define FIRST_BIT 4
#define BUCKETS (1u << DIGIT_BITS)

static inline unsigned key_digit(const unsigned char *rec, size_t key_offset, int d)
{
    uintptr_t key;
    memcpy(&key, rec + key_offset, sizeof(key));
    return (unsigned)(key >> (FIRST_BIT + d * DIGIT_BITS)) & (BUCKETS - 1);
}

int _rh_radix_sort(void *items, size_t n, size_t size, size_t key_offset)
{
    if (n < 2)
        return 0;
    unsigned char *scratch = malloc(n * size);
    size_t *counts = calloc((size_t)DIGITS * BUCKETS, sizeof(size_t));
    if (scratch == NULL || counts == NULL) {
        free(scratch);
        free(counts);
        return -1;
    }
    unsigned char *src = items, *dst = scratch;
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < DIGITS; d++)
            counts[d * BUCKETS + key_digit(src + i * size, key_offset, d)]++;
    for (int d = 0; d < DIGITS; d++) {
        size_t *c = counts + d * BUCKETS, sum = 0;
        for (unsigned v = 0; v < BUCKETS; v++) {
            size_t k = c[v];
            c[v] = sum;
            sum += k;
        }
        for (size_t i = 0; i < n; i++) {
            const unsigned char *rec = src + i * size;
            memcpy(dst + c[key_digit(rec, key_offset, d)]++ * size, rec, size);
        }
        unsigned char *swap = src;
        src = dst;
        dst = swap;
    }
    /* DIGITS is even: the sorted records are back in `items`. */
    free(scratch);
    free(counts);
    return 0;
}
