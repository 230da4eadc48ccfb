/* preload.c — refhound's preload library: malloc & co. for a whole process.
 *
 * `refhound run --preload` starts the program again with this library in
 * LD_PRELOAD, so the C allocator's entry points resolve here for every
 * object of the process (libpython, the C library's own strdup, libstdc++'s
 * operator new, libraries loaded before Python starts): nothing to patch.
 * Until the engine attaches (refhound._core, native.c) every call goes
 * straight to the C library; once attached, to the engine's hooks with the
 * caller's return address, and the engine calls the allocator returned by
 * refhound_preload_attach (the C library's) under its bookkeeping.
 *
 * No state but `hooks` (written by attach, read with one atomic load per
 * call) and the C library's entry points, found once: __libc_malloc & co.
 * need no lookup (so the first malloc of the process, before any
 * constructor ran, works), posix_memalign, aligned_alloc and reallocarray
 * are looked up with dlsym(RTLD_NEXT) in the constructor and emulated on
 * __libc_memalign / __libc_realloc until then.  Every entry point ends in a
 * tail call, so this library leaves no frame in the stacks the engine
 * records.  Nothing here locks or allocates.
 */
#define _GNU_SOURCE
#include "refhound_preload.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

static const rh_preload_hooks_t *volatile hooks;

static int (*next_posix_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);
static void *(*next_reallocarray)(void *, size_t, size_t);

static inline const rh_preload_hooks_t *current(void)
{
    return __atomic_load_n(&hooks, __ATOMIC_ACQUIRE);
}

#define CALLER __builtin_return_address(0)

/* ---- the C library's allocator, as the engine calls it ------------------ */

static int libc_posix_memalign(void **out, size_t alignment, size_t size)
{
    if (next_posix_memalign != NULL)
        return next_posix_memalign(out, alignment, size);
    if (alignment == 0 || alignment % sizeof(void *) != 0 ||
        (alignment & (alignment - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

static void *libc_aligned_alloc(size_t alignment, size_t size)
{
    if (next_aligned_alloc != NULL)
        return next_aligned_alloc(alignment, size);
    return __libc_memalign(alignment, size);
}

static void *libc_reallocarray(void *ptr, size_t nmemb, size_t size)
{
    if (next_reallocarray != NULL)
        return next_reallocarray(ptr, nmemb, size);
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(ptr, total);
}

static const rh_native_allocator_t libc_allocator = {
    __libc_malloc, __libc_calloc, __libc_realloc, __libc_free, libc_posix_memalign,
    libc_aligned_alloc, __libc_memalign, __libc_valloc, __libc_pvalloc,
};

__attribute__((constructor)) static void find_next(void)
{
    next_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    next_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    next_reallocarray = (void *(*)(void *, size_t, size_t))dlsym(RTLD_NEXT, "reallocarray");
}

EXPORT const rh_native_allocator_t *refhound_preload_attach(const rh_preload_hooks_t *h)
{
    if (h != NULL && h->abi != RH_PRELOAD_ABI)
        return NULL;
    __atomic_store_n(&hooks, h, __ATOMIC_RELEASE);
    return &libc_allocator;
}

/* ---- the process's allocator -------------------------------------------- */

EXPORT void *malloc(size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->malloc(size, CALLER);
    return __libc_malloc(size);
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->calloc(nmemb, size, CALLER);
    return __libc_calloc(nmemb, size);
}

EXPORT void *realloc(void *ptr, size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->realloc(ptr, size, CALLER);
    return __libc_realloc(ptr, size);
}

EXPORT void *reallocarray(void *ptr, size_t nmemb, size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->reallocarray(ptr, nmemb, size, CALLER);
    return libc_reallocarray(ptr, nmemb, size);
}

EXPORT void free(void *ptr)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL && ptr != NULL) {
        h->free(ptr, CALLER);
        return;
    }
    __libc_free(ptr);
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->posix_memalign(out, alignment, size, CALLER);
    return libc_posix_memalign(out, alignment, size);
}

EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->aligned_alloc(alignment, size, CALLER);
    return libc_aligned_alloc(alignment, size);
}

EXPORT void *memalign(size_t alignment, size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->memalign(alignment, size, CALLER);
    return __libc_memalign(alignment, size);
}

EXPORT void *valloc(size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->valloc(size, CALLER);
    return __libc_valloc(size);
}

EXPORT void *pvalloc(size_t size)
{
    const rh_preload_hooks_t *h = current();
    if (h != NULL)
        return h->pvalloc(size, CALLER);
    return __libc_pvalloc(size);
}
