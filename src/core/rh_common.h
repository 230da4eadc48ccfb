/* rh_common.h — what every file of refhound's engine shares: the version
 * guards (everything that differs between CPython releases) and the basic
 * types that cross files (allocator domains, the block entry).
 *
 * Internal: extension authors use src/refhound/include/refhound/refhound.h.
 * Each engine file has its own header (blocks.h, tracker.h, ...) declaring
 * its API only; its state stays static in its .c file.
 */
#ifndef RH_COMMON_H
#define RH_COMMON_H

#ifndef REFHOUND_CORE_BUILD
#error "rh_common.h is internal to refhound's engine (src/core)"
#endif

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* ---- version guards ------------------------------------------------- */

/* Bytes in front of an object inside its allocator block. */
#if defined(Py_GIL_DISABLED)
#  define RH_HAS_GC_HEAD 0             /* free-threaded: no PyGC_Head */
#  define RH_GC_HEAD_SIZE 0
#else
#  define RH_HAS_GC_HEAD 1
#  define RH_GC_HEAD_SIZE (2 * sizeof(void *))
#endif
#if PY_VERSION_HEX >= 0x030C0000
#  define RH_PREHEADER_FLAGS (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF)
#elif PY_VERSION_HEX >= 0x030B0000
#  define RH_PREHEADER_FLAGS Py_TPFLAGS_MANAGED_DICT
#else
#  define RH_PREHEADER_FLAGS 0
#endif
/* The bytes of the managed dict/values (3.11) and weakref (3.12+) pointers. */
#define RH_MANAGED_PREHEADER_SIZE (2 * sizeof(PyObject *))

/* Where an object can start in its block: no pre-header, a GC head, or a
 * GC head plus the managed pointers.  Every file that looks for an object
 * in a block uses these offsets, in this order. */
#define RH_NOBJECT_OFFSETS 3
static inline size_t rh_object_offset(int k)
{
    return (size_t)k * 2 * sizeof(void *);      /* 0, 16, 32 on 64-bit */
}

/* Immortal objects (3.12+) never change their refcount: leave them out. */
#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_GIL_DISABLED)
#  define RH_IS_IMMORTAL(op) _Py_IsImmortal(op)
#else
#  define RH_IS_IMMORTAL(op) 0
#endif
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o) { Py_INCREF(o); return o; }
#endif
/* A refcount above this is not a refcount (addresses are above 2^40). */
#define RH_MAX_REFCNT ((Py_ssize_t)1 << 40)

/* ---- allocator domains and block entries ----------------------------- */

enum {
    RH_DOMAIN_RAW = 0,      /* PyMem_RawMalloc & co. */
    RH_DOMAIN_MEM = 1,      /* PyMem_Malloc & co. */
    RH_DOMAIN_OBJ = 2,      /* PyObject_Malloc & co. */
    RH_DOMAIN_ADOPTED = 3,  /* an object that existed before tracking */
    RH_DOMAIN_NATIVE = 4,   /* malloc & co. called by extensions (native.c) */
    RH_NDOMAINS = 5
};
#define RH_DOMAIN_BIT(d) (1u << (d))

#define RH_SIZE_BITS 37
#define RH_SIZE_MASK (((uint64_t)1 << RH_SIZE_BITS) - 1)
#define RH_EPOCH_MAX ((1u << 24) - 1)
/* The epoch of blocks that belong to no iteration: born before the first
 * one, or allocated by the engine itself (tracker.h, _rh_engine_enter). */
#define RH_EPOCH_NONE 0u

/* One live block.  For adopted blocks the size field holds the object's
 * offset in its block, and the epoch field how it was found
 * (RH_ADOPTED_*, tracker.h). */
typedef struct {
    uint64_t key;     /* address:48 | distance from its home slot:16; 0 = empty */
    uint64_t meta;    /* size:37 | domain:3 | epoch:24 */
} rh_block_t;

#define RH_ADDR_MASK (((uint64_t)1 << 48) - 1)
static inline uintptr_t rh_block_addr(const rh_block_t *b) { return (uintptr_t)(b->key & RH_ADDR_MASK); }
static inline int rh_block_empty(const rh_block_t *b) { return b->key == 0; }
static inline size_t rh_block_size(const rh_block_t *b) { return (size_t)(b->meta & RH_SIZE_MASK); }
static inline int rh_block_domain(const rh_block_t *b) { return (int)((b->meta >> RH_SIZE_BITS) & 7); }
static inline uint32_t rh_block_epoch(const rh_block_t *b) { return (uint32_t)(b->meta >> 40); }
static inline uint64_t rh_block_meta(size_t size, int domain, uint32_t epoch)
{
    uint64_t s = size > RH_SIZE_MASK ? RH_SIZE_MASK : (uint64_t)size;
    return s | ((uint64_t)domain << RH_SIZE_BITS) | ((uint64_t)epoch << 40);
}

#endif /* RH_COMMON_H */
