/* refhound_preload.h — the interface between refhound's preload library
 * (src/preload/preload.c, LD_PRELOAD'ed by `refhound run --preload`) and
 * the engine (src/core/native.c).  Plain C, no Python: both sides include
 * it.
 *
 * The preload library defines malloc & co. for the whole process.  Until
 * the engine attaches it hands every call to the C library; once attached
 * it hands every call to the engine's hooks, with the caller's return
 * address, and the engine calls the allocator the preload library gives it
 * back (the C library's) under its own bookkeeping.
 */
#ifndef REFHOUND_PRELOAD_H
#define REFHOUND_PRELOAD_H

#include <stddef.h>

/* An allocator: the functions of the malloc family with the C library's
 * signatures and meaning (errno included).  native.c calls one of these
 * under its wrappers: the C library's by default, or another slotted in
 * (native.h: _rh_native_set_allocator). */
typedef struct {
    void *(*malloc)(size_t size);
    void *(*calloc)(size_t nmemb, size_t size);
    void *(*realloc)(void *ptr, size_t size);
    void (*free)(void *ptr);
    int (*posix_memalign)(void **out, size_t alignment, size_t size);
    void *(*aligned_alloc)(size_t alignment, size_t size);
    void *(*memalign)(size_t alignment, size_t size);
    void *(*valloc)(size_t size);
    void *(*pvalloc)(size_t size);
} rh_native_allocator_t;

#define RH_PRELOAD_ABI 1

/* The engine's hooks, each told who called (a return address). */
typedef struct {
    int abi;                    /* RH_PRELOAD_ABI */
    void *(*malloc)(size_t size, void *caller);
    void *(*calloc)(size_t nmemb, size_t size, void *caller);
    void *(*realloc)(void *ptr, size_t size, void *caller);
    void *(*reallocarray)(void *ptr, size_t nmemb, size_t size, void *caller);
    void (*free)(void *ptr, void *caller);
    int (*posix_memalign)(void **out, size_t alignment, size_t size, void *caller);
    void *(*aligned_alloc)(size_t alignment, size_t size, void *caller);
    void *(*memalign)(size_t alignment, size_t size, void *caller);
    void *(*valloc)(size_t size, void *caller);
    void *(*pvalloc)(size_t size, void *caller);
} rh_preload_hooks_t;

/* Exported by the preload library (found with dlsym).  hooks: route every
 * call to them from now on (NULL: back to the C library).  Returns the C
 * library's allocator, for the engine to call; NULL when the ABI differs. */
typedef const rh_native_allocator_t *(*rh_preload_attach_t)(const rh_preload_hooks_t *hooks);
#define RH_PRELOAD_ATTACH "refhound_preload_attach"

#endif /* REFHOUND_PRELOAD_H */
