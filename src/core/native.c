/* native.c — the native heap: the malloc family, the strdup family and C++
 * operator new/delete called by extension modules and the libraries they
 * load, recorded in the tracker's tables (RH_DOMAIN_NATIVE, tracker.h).
 *
 * Two ways in, one set of wrappers:
 *
 *   GOT     (started at run time, no launcher) every loaded object calls
 *           the C library through its relocation entries: the GOT slots
 *           of R_X86_64_JUMP_SLOT and R_X86_64_GLOB_DAT relocations.  For
 *           each hooked name (HOOKS below) the slot is pointed at our
 *           wrapper, which calls the real function and tells the tracker.
 *           Objects: every one but the loader, the C library's family
 *           (libc, libm, libpthread, ...), refhound itself and the
 *           libraries only it uses (libdw, libelf), and the sanitizer
 *           runtimes (libasan & co.: allocators); libpython and the
 *           interpreter get only dlopen/dlmopen/dlclose, so that the
 *           extension modules they load are patched before their PyInit
 *           runs.  libstdc++ is patched in full: its std::string and
 *           iostream code allocates through its own operator new, and the
 *           operator's own malloc is not counted twice (below).
 *   PRELOAD (refhound run --preload) the preload library (src/preload)
 *           defines malloc & co. for the whole process and hands every
 *           call here with its caller; calls from refhound itself, libdw,
 *           libelf and the loader pass through.
 *
 * Recording: a wrapper does nothing but call the real function when
 * native tracking is off or the thread is already inside one of the
 * engine's hooks (_rh_in_hook: the tracker's observers capturing a stack
 * through libdw, a PEP 445 hook's own allocator, an outer wrapper: operator
 * new calling malloc, strdup calling malloc).  Otherwise it marks the
 * thread, calls the allocator, and reports the block: a free is reported
 * before the memory goes back (so its address cannot be handed out and
 * recorded meanwhile), a realloc as the free of the old block, then a new
 * block (born now, at the realloc's stack).  Frees of blocks the tracker
 * never saw (born before tracking, by code that is not patched) pass
 * through untouched.  The throwing operator new is called as its nothrow
 * twin, so no exception ever crosses a wrapper that has state to undo; the
 * throwing one is called only to throw (or when the twin is missing).
 *
 * The allocator under the malloc-family wrappers is a table (`under`):
 * the C library's, or another slotted in (_rh_native_set_allocator: the
 * guard allocator).  With another one slotted, a stop leaves the wrappers
 * in place (`kept`: they record nothing, and hand every call to it), since
 * only it can free the blocks it gave out.
 *
 * Patching (GOT mode): passes over the loaded objects (dl_iterate_phdr,
 * which holds the loader's list lock: no object is added or unmapped
 * while a pass looks at it) at start, after every dlopen/dlmopen a patched
 * object makes (the dlopen wrapper), after every dlclose (records of
 * objects that went away are dropped, never written), and a last one at
 * stop that puts every slot back.  While a pass redirects slots no new
 * block is recorded (an object's malloc may already be ours and its free
 * not yet: a block recorded then could be freed unseen).  A slot is
 * redirected only when it holds
 * the definition the wrapper calls (dlsym(RTLD_DEFAULT)) or a lazy-binding
 * stub of its own object; anything else (another allocator bound locally,
 * a namespace of its own, another tool's hook) is left alone.  A slot is
 * written back only if it still holds our wrapper.  Slots in RELRO pages:
 * the page's protection is read from /proc/self/maps inside the pass; a
 * read-only page is made writable for the one store and read-only again;
 * an object whose RELRO pages are still writable is being loaded by
 * another thread right now and is left for the next pass (the loader is
 * not done writing it).  Stores are single aligned 8-byte writes: another
 * thread calling through the slot sees the old or the new function.
 * dlopen of a bare name: the loader searches the caller's RPATH/RUNPATH,
 * and the caller is now this file, so for a caller that has either the
 * search is redone on its behalf (dlinfo RTLD_DI_SERINFO), as memray does.
 *
 * State and locks:
 *   native_on, mode     written under the GIL (start/stop), read by every
 *                       wrapper without a lock (a late or early call is
 *                       recorded or not; the tracker re-checks under its
 *                       lock).
 *   pass_running,       set and cleared under patch_lock by the passes
 *                       (set first at start, before native_on);
 *   cxx_loaded          read without a lock (atomic loads) by the wrappers
 *                       and by resolve_missing().
 *   real[], under        function pointers: written once each (a name not
 *                       found yet may be found after a dlopen), atomically;
 *                       read by the wrappers.
 *   objects, patches,   patch_lock, a mutex taken before dl_iterate_phdr
 *   maps buffer         (never inside it, and never around another dl*
 *                       call: the loader's locks come after ours).  Kept in
 *                       mmap'd memory.  pthread_atfork makes it usable in a
 *                       forked child.
 *   own ranges          (preload mode) written at attach under the GIL.
 * Signals: a wrapper interrupted by a signal whose handler allocates (which
 * is not async-signal-safe to begin with) finds the thread marked and
 * passes through; nothing here blocks on a lock the interrupted code holds.
 */
#include "native.h"
#include "ownmem.h"
#include "tracker.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <wchar.h>

#if defined(__x86_64__)
#  define RH_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#  define RH_R_GLOB_DAT R_X86_64_GLOB_DAT
#  define RH_NATIVE_SUPPORTED 1
#elif defined(__aarch64__)
#  define RH_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#  define RH_R_GLOB_DAT R_AARCH64_GLOB_DAT
#  define RH_NATIVE_SUPPORTED 1
#else
#  define RH_NATIVE_SUPPORTED 0
#endif

/* ---- the hooked functions --------------------------------------------------- */

/* X(id, symbol, wrapper, set): set FULL = the allocator family, patched in
 * ordinary objects; DL = also patched in libpython and the interpreter. */
#define HOOKS(X)                                                                  \
    X(MALLOC, "malloc", w_malloc, FULL)                                           \
    X(CALLOC, "calloc", w_calloc, FULL)                                           \
    X(REALLOC, "realloc", w_realloc, FULL)                                        \
    X(REALLOCARRAY, "reallocarray", w_reallocarray, FULL)                         \
    X(FREE, "free", w_free, FULL)                                                 \
    X(POSIX_MEMALIGN, "posix_memalign", w_posix_memalign, FULL)                   \
    X(ALIGNED_ALLOC, "aligned_alloc", w_aligned_alloc, FULL)                      \
    X(MEMALIGN, "memalign", w_memalign, FULL)                                     \
    X(VALLOC, "valloc", w_valloc, FULL)                                           \
    X(PVALLOC, "pvalloc", w_pvalloc, FULL)                                        \
    X(STRDUP, "strdup", w_strdup, FULL)                                           \
    X(STRDUP2, "__strdup", w_strdup2, FULL)                                       \
    X(STRNDUP, "strndup", w_strndup, FULL)                                        \
    X(STRNDUP2, "__strndup", w_strndup2, FULL)                                    \
    X(WCSDUP, "wcsdup", w_wcsdup, FULL)                                           \
    X(GETLINE, "getline", w_getline, FULL)                                        \
    X(GETDELIM, "getdelim", w_getdelim, FULL)                                     \
    X(GETDELIM2, "__getdelim", w_getdelim2, FULL)                                 \
    X(NEW, "_Znwm", w_new, FULL)                                                  \
    X(NEW_A, "_Znam", w_new_a, FULL)                                              \
    X(NEW_NT, "_ZnwmRKSt9nothrow_t", w_new_nt, FULL)                              \
    X(NEW_A_NT, "_ZnamRKSt9nothrow_t", w_new_a_nt, FULL)                          \
    X(NEW_AL, "_ZnwmSt11align_val_t", w_new_al, FULL)                             \
    X(NEW_A_AL, "_ZnamSt11align_val_t", w_new_a_al, FULL)                         \
    X(NEW_AL_NT, "_ZnwmSt11align_val_tRKSt9nothrow_t", w_new_al_nt, FULL)         \
    X(NEW_A_AL_NT, "_ZnamSt11align_val_tRKSt9nothrow_t", w_new_a_al_nt, FULL)     \
    X(DEL, "_ZdlPv", w_del, FULL)                                                 \
    X(DEL_A, "_ZdaPv", w_del_a, FULL)                                             \
    X(DEL_SZ, "_ZdlPvm", w_del_sz, FULL)                                          \
    X(DEL_A_SZ, "_ZdaPvm", w_del_a_sz, FULL)                                      \
    X(DEL_NT, "_ZdlPvRKSt9nothrow_t", w_del_nt, FULL)                             \
    X(DEL_A_NT, "_ZdaPvRKSt9nothrow_t", w_del_a_nt, FULL)                         \
    X(DEL_AL, "_ZdlPvSt11align_val_t", w_del_al, FULL)                            \
    X(DEL_A_AL, "_ZdaPvSt11align_val_t", w_del_a_al, FULL)                        \
    X(DEL_SZ_AL, "_ZdlPvmSt11align_val_t", w_del_sz_al, FULL)                     \
    X(DEL_A_SZ_AL, "_ZdaPvmSt11align_val_t", w_del_a_sz_al, FULL)                 \
    X(DEL_AL_NT, "_ZdlPvSt11align_val_tRKSt9nothrow_t", w_del_al_nt, FULL)        \
    X(DEL_A_AL_NT, "_ZdaPvSt11align_val_tRKSt9nothrow_t", w_del_a_al_nt, FULL)    \
    X(DLOPEN, "dlopen", w_dlopen, DL)                                             \
    X(DLMOPEN, "dlmopen", w_dlmopen, DL)                                          \
    X(DLCLOSE, "dlclose", w_dlclose, DL)

#define AS_ID(id, name, fn, set) H_##id,
enum { HOOKS(AS_ID) NHOOKS };
#undef AS_ID

enum { SET_FULL = 1, SET_DL = 2 };
enum { HOW_SKIP = 0, HOW_DL = SET_DL, HOW_FULL = SET_FULL | SET_DL };

static const char *const hook_names[NHOOKS] = {
#define AS_NAME(id, name, fn, set) name,
    HOOKS(AS_NAME)
#undef AS_NAME
};
static const unsigned char hook_sets[NHOOKS] = {
#define AS_SET(id, name, fn, set) SET_##set,
    HOOKS(AS_SET)
#undef AS_SET
};
static uintptr_t hook_wrappers[NHOOKS];       /* filled by init_tables() */

/* The definitions the wrappers call: dlsym(RTLD_DEFAULT, name), found at
 * start and again after a dlopen for names still missing (libstdc++ may
 * come later).  0 = not found. */
static uintptr_t real[NHOOKS];
static const void *nothrow_tag;               /* &std::nothrow, or a dummy */
static const char nothrow_dummy;

#define REAL(id, type) ((type)__atomic_load_n(&real[H_##id], __ATOMIC_ACQUIRE))

/* ---- state ---------------------------------------------------------------------- */

static volatile int native_on = 0;
/* A pass is redirecting slots: an object's malloc may be redirected before
 * its free, so no new block is recorded until the pass is over (frees are
 * still looked up). */
static volatile int pass_running = 0;
static int mode = RH_NATIVE_OFF;
static const char *failure = NULL;

static rh_native_allocator_t libc_alloc;          /* GOT mode: from real[] */
static const rh_native_allocator_t *next_alloc;   /* the C library's (either mode) */
static const rh_native_allocator_t *volatile under;
static int kept;            /* stopped with the wrappers left in place (stop) */

static inline const rh_native_allocator_t *under_now(void)
{
    return __atomic_load_n(&under, __ATOMIC_ACQUIRE);
}

static inline int recording(void)
{
    return __builtin_expect(native_on && !_rh_in_hook, 1);
}

static inline int hook_enter(void)
{
    int saved = _rh_in_hook;
    _rh_in_hook = 1;
    return saved;
}

static inline void hook_leave(int saved) { _rh_in_hook = saved; }

/* May a block be recorded now?  Asked again by the tracker under its lock,
 * with the insert (a thread preempted after its first answer must not
 * record into the next session while a pass is redirecting slots).  At
 * start pass_running is set before native_on; at stop native_on is
 * cleared before the native blocks are dropped (under the same lock). */
static int recording_allowed(void)
{
    return __atomic_load_n(&native_on, __ATOMIC_ACQUIRE) &&
           !__atomic_load_n(&pass_running, __ATOMIC_ACQUIRE);
}

static inline void record(void *p, size_t size)
{
    if (p != NULL && recording_allowed())
        _rh_tracker_native_alloc((uintptr_t)p, size, recording_allowed);
}

static inline void forget(void *p)
{
    if (p != NULL)
        _rh_tracker_native_free((uintptr_t)p, NULL);
}

/* ---- the malloc family ------------------------------------------------------------ */

static void *w_malloc(size_t size)
{
    const rh_native_allocator_t *a = under_now();
    if (!recording())
        return a->malloc(size);
    int s = hook_enter();
    void *p = a->malloc(size);
    record(p, size);
    hook_leave(s);
    return p;
}

static void *w_calloc(size_t nmemb, size_t size)
{
    const rh_native_allocator_t *a = under_now();
    if (!recording())
        return a->calloc(nmemb, size);
    int s = hook_enter();
    void *p = a->calloc(nmemb, size);
    record(p, nmemb * size);        /* no overflow when it succeeded */
    hook_leave(s);
    return p;
}

/* The old block is forgotten before the call (once realloc releases it,
 * another thread may be handed the address); put back if the call fails
 * and keeps it. */
static void *realloc_recorded(const rh_native_allocator_t *a, void *ptr, size_t size)
{
    int s = hook_enter();
    rh_block_t old;
    int had = ptr != NULL && _rh_tracker_native_free((uintptr_t)ptr, &old);
    void *p = a->realloc(ptr, size);
    if (p != NULL)
        record(p, size);
    else if (had && size != 0)
        _rh_tracker_native_restore(&old);
    hook_leave(s);
    return p;
}

static void *w_realloc(void *ptr, size_t size)
{
    const rh_native_allocator_t *a = under_now();
    if (!recording())
        return a->realloc(ptr, size);
    return realloc_recorded(a, ptr, size);
}

static void *w_reallocarray(void *ptr, size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    const rh_native_allocator_t *a = under_now();
    if (!recording())
        return a->realloc(ptr, total);
    return realloc_recorded(a, ptr, total);
}

static void w_free(void *ptr)
{
    const rh_native_allocator_t *a = under_now();
    if (ptr == NULL || !recording()) {
        a->free(ptr);
        return;
    }
    int s = hook_enter();
    forget(ptr);
    a->free(ptr);
    hook_leave(s);
}

static int w_posix_memalign(void **out, size_t alignment, size_t size)
{
    const rh_native_allocator_t *a = under_now();
    if (!recording())
        return a->posix_memalign(out, alignment, size);
    int s = hook_enter();
    int rc = a->posix_memalign(out, alignment, size);
    if (rc == 0)
        record(*out, size);
    hook_leave(s);
    return rc;
}

#define ALIGNED_WRAPPER(fn, field)                                \
    static void *fn(size_t alignment, size_t size)                \
    {                                                             \
        const rh_native_allocator_t *a = under_now();             \
        if (!recording())                                         \
            return a->field(alignment, size);                     \
        int s = hook_enter();                                     \
        void *p = a->field(alignment, size);                      \
        record(p, size);                                          \
        hook_leave(s);                                            \
        return p;                                                 \
    }
ALIGNED_WRAPPER(w_aligned_alloc, aligned_alloc)
ALIGNED_WRAPPER(w_memalign, memalign)

#define PAGE_WRAPPER(fn, field)                                   \
    static void *fn(size_t size)                                  \
    {                                                             \
        const rh_native_allocator_t *a = under_now();             \
        if (!recording())                                         \
            return a->field(size);                                \
        int s = hook_enter();                                     \
        void *p = a->field(size);                                 \
        record(p, size);                                          \
        hook_leave(s);                                            \
        return p;                                                 \
    }
PAGE_WRAPPER(w_valloc, valloc)
PAGE_WRAPPER(w_pvalloc, pvalloc)

/* ---- the strdup family and getline ------------------------------------------------ */

#define STRDUP_WRAPPER(fn, id)                                    \
    static char *fn(const char *str)                              \
    {                                                             \
        char *(*f)(const char *) = REAL(id, char *(*)(const char *)); \
        if (!recording())                                         \
            return f(str);                                        \
        int s = hook_enter();                                     \
        char *r = f(str);                                         \
        if (r != NULL)                                            \
            record(r, strlen(r) + 1);                             \
        hook_leave(s);                                            \
        return r;                                                 \
    }
STRDUP_WRAPPER(w_strdup, STRDUP)
STRDUP_WRAPPER(w_strdup2, STRDUP2)

#define STRNDUP_WRAPPER(fn, id)                                   \
    static char *fn(const char *str, size_t n)                    \
    {                                                             \
        char *(*f)(const char *, size_t) = REAL(id, char *(*)(const char *, size_t)); \
        if (!recording())                                         \
            return f(str, n);                                     \
        int s = hook_enter();                                     \
        char *r = f(str, n);                                      \
        if (r != NULL)                                            \
            record(r, strlen(r) + 1);                             \
        hook_leave(s);                                            \
        return r;                                                 \
    }
STRNDUP_WRAPPER(w_strndup, STRNDUP)
STRNDUP_WRAPPER(w_strndup2, STRNDUP2)

static wchar_t *w_wcsdup(const wchar_t *str)
{
    wchar_t *(*f)(const wchar_t *) = REAL(WCSDUP, wchar_t *(*)(const wchar_t *));
    if (!recording())
        return f(str);
    int s = hook_enter();
    wchar_t *r = f(str);
    if (r != NULL)
        record(r, (wcslen(r) + 1) * sizeof(wchar_t));
    hook_leave(s);
    return r;
}

/* With another allocator slotted (the guard), the caller's buffer may be
 * one of its blocks, which the C library's realloc inside getdelim would
 * abort on: it is first moved to a block of the C library's, recorded in
 * its place (the caller frees it through the wrappers, which hand an
 * address outside the guard's region back to the C library). */
static void buffer_to_libc(char **lineptr, size_t *n, int recorded)
{
    const rh_native_allocator_t *a = under_now();
    if (a == next_alloc || next_alloc == NULL || *lineptr == NULL)
        return;
    size_t size = *n ? *n : 1;
    char *copy = next_alloc->malloc(size);
    if (copy == NULL)
        return;                 /* left as it is: the line may fit */
    memcpy(copy, *lineptr, *n);
    if (recorded)
        forget(*lineptr);
    a->free(*lineptr);
    *lineptr = copy;
    if (recorded)
        record(copy, size);
}

/* getline/getdelim grow the caller's buffer with the C library's own
 * realloc: a realloc of *lineptr, recorded as one (its size: *n). */
static ssize_t getdelim_recorded(ssize_t (*f)(char **, size_t *, int, FILE *), char **lineptr,
                                 size_t *n, int delim, FILE *stream)
{
    if (lineptr == NULL || n == NULL)
        return f(lineptr, n, delim, stream);
    if (!recording()) {
        buffer_to_libc(lineptr, n, 0);
        return f(lineptr, n, delim, stream);
    }
    int s = hook_enter();
    buffer_to_libc(lineptr, n, 1);
    rh_block_t old;
    char *before = *lineptr;
    int had = before != NULL && _rh_tracker_native_free((uintptr_t)before, &old);
    ssize_t r = f(lineptr, n, delim, stream);
    if (*lineptr != NULL && (*lineptr != before || had))
        record(*lineptr, *n);
    hook_leave(s);
    return r;
}

static ssize_t w_getdelim(char **lineptr, size_t *n, int delim, FILE *stream)
{
    return getdelim_recorded(REAL(GETDELIM, ssize_t (*)(char **, size_t *, int, FILE *)), lineptr,
                             n, delim, stream);
}

static ssize_t w_getdelim2(char **lineptr, size_t *n, int delim, FILE *stream)
{
    return getdelim_recorded(REAL(GETDELIM2, ssize_t (*)(char **, size_t *, int, FILE *)),
                             lineptr, n, delim, stream);
}

static ssize_t w_getline(char **lineptr, size_t *n, FILE *stream)
{
    ssize_t (*gl)(char **, size_t *, FILE *) = REAL(GETLINE, ssize_t (*)(char **, size_t *, FILE *));
    ssize_t (*gd)(char **, size_t *, int, FILE *) =
        REAL(GETDELIM, ssize_t (*)(char **, size_t *, int, FILE *));
    if (gd != NULL)
        return getdelim_recorded(gd, lineptr, n, '\n', stream);
    return gl(lineptr, n, stream);
}

/* ---- C++ operator new and delete ------------------------------------------------ */

typedef void *(*new_fn)(size_t);
typedef void *(*new_nt_fn)(size_t, const void *);
typedef void *(*new_al_fn)(size_t, size_t);
typedef void *(*new_al_nt_fn)(size_t, size_t, const void *);

/* Throwing new: its nothrow twin under the mark; if that fails, the
 * throwing one, unmarked, to throw (or to succeed after a new_handler
 * freed memory: then recorded afterwards; its own malloc may have been
 * recorded too, under the same address). */
#define NEW_WRAPPER(fn, id, nt_id)                                              \
    static void *fn(size_t size)                                                \
    {                                                                           \
        new_fn thrower = REAL(id, new_fn);                                      \
        if (!recording())                                                       \
            return thrower(size);                                               \
        new_nt_fn twin = REAL(nt_id, new_nt_fn);                                \
        void *p = NULL;                                                         \
        if (twin != NULL) {                                                     \
            int s = hook_enter();                                               \
            p = twin(size, nothrow_tag);                                        \
            record(p, size);                                                    \
            hook_leave(s);                                                      \
        }                                                                       \
        if (p == NULL) {                                                        \
            p = thrower(size);                                                  \
            if (recording())                                                    \
                record(p, size);                                                \
        }                                                                       \
        return p;                                                               \
    }
NEW_WRAPPER(w_new, NEW, NEW_NT)
NEW_WRAPPER(w_new_a, NEW_A, NEW_A_NT)

#define NEW_AL_WRAPPER(fn, id, nt_id)                                           \
    static void *fn(size_t size, size_t alignment)                              \
    {                                                                           \
        new_al_fn thrower = REAL(id, new_al_fn);                                \
        if (!recording())                                                       \
            return thrower(size, alignment);                                    \
        new_al_nt_fn twin = REAL(nt_id, new_al_nt_fn);                          \
        void *p = NULL;                                                         \
        if (twin != NULL) {                                                     \
            int s = hook_enter();                                               \
            p = twin(size, alignment, nothrow_tag);                             \
            record(p, size);                                                    \
            hook_leave(s);                                                      \
        }                                                                       \
        if (p == NULL) {                                                        \
            p = thrower(size, alignment);                                       \
            if (recording())                                                    \
                record(p, size);                                                \
        }                                                                       \
        return p;                                                               \
    }
NEW_AL_WRAPPER(w_new_al, NEW_AL, NEW_AL_NT)
NEW_AL_WRAPPER(w_new_a_al, NEW_A_AL, NEW_A_AL_NT)

#define NEW_NT_WRAPPER(fn, id)                                                  \
    static void *fn(size_t size, const void *tag)                               \
    {                                                                           \
        new_nt_fn f = REAL(id, new_nt_fn);                                      \
        if (!recording())                                                       \
            return f(size, tag);                                                \
        int s = hook_enter();                                                   \
        void *p = f(size, tag);                                                 \
        record(p, size);                                                        \
        hook_leave(s);                                                          \
        return p;                                                               \
    }
NEW_NT_WRAPPER(w_new_nt, NEW_NT)
NEW_NT_WRAPPER(w_new_a_nt, NEW_A_NT)

#define NEW_AL_NT_WRAPPER(fn, id)                                               \
    static void *fn(size_t size, size_t alignment, const void *tag)             \
    {                                                                           \
        new_al_nt_fn f = REAL(id, new_al_nt_fn);                                \
        if (!recording())                                                       \
            return f(size, alignment, tag);                                     \
        int s = hook_enter();                                                   \
        void *p = f(size, alignment, tag);                                      \
        record(p, size);                                                        \
        hook_leave(s);                                                          \
        return p;                                                               \
    }
NEW_AL_NT_WRAPPER(w_new_al_nt, NEW_AL_NT)
NEW_AL_NT_WRAPPER(w_new_a_al_nt, NEW_A_AL_NT)

/* delete(p), delete(p, a), delete(p, a, b): forget p, then the real one
 * under the mark (its free() is not looked up again). */
#define DEL1_WRAPPER(fn, id)                                                    \
    static void fn(void *p)                                                     \
    {                                                                           \
        void (*f)(void *) = REAL(id, void (*)(void *));                         \
        if (p == NULL || !recording()) {                                        \
            f(p);                                                               \
            return;                                                             \
        }                                                                       \
        int s = hook_enter();                                                   \
        forget(p);                                                              \
        f(p);                                                                   \
        hook_leave(s);                                                          \
    }
#define DEL2_WRAPPER(fn, id, T)                                                 \
    static void fn(void *p, T a)                                                \
    {                                                                           \
        void (*f)(void *, T) = REAL(id, void (*)(void *, T));                   \
        if (p == NULL || !recording()) {                                        \
            f(p, a);                                                            \
            return;                                                             \
        }                                                                       \
        int s = hook_enter();                                                   \
        forget(p);                                                              \
        f(p, a);                                                                \
        hook_leave(s);                                                          \
    }
#define DEL3_WRAPPER(fn, id, T, U)                                              \
    static void fn(void *p, T a, U b)                                           \
    {                                                                           \
        void (*f)(void *, T, U) = REAL(id, void (*)(void *, T, U));             \
        if (p == NULL || !recording()) {                                        \
            f(p, a, b);                                                         \
            return;                                                             \
        }                                                                       \
        int s = hook_enter();                                                   \
        forget(p);                                                              \
        f(p, a, b);                                                             \
        hook_leave(s);                                                          \
    }
DEL1_WRAPPER(w_del, DEL)
DEL1_WRAPPER(w_del_a, DEL_A)
DEL2_WRAPPER(w_del_sz, DEL_SZ, size_t)
DEL2_WRAPPER(w_del_a_sz, DEL_A_SZ, size_t)
DEL2_WRAPPER(w_del_nt, DEL_NT, const void *)
DEL2_WRAPPER(w_del_a_nt, DEL_A_NT, const void *)
DEL2_WRAPPER(w_del_al, DEL_AL, size_t)
DEL2_WRAPPER(w_del_a_al, DEL_A_AL, size_t)
DEL3_WRAPPER(w_del_sz_al, DEL_SZ_AL, size_t, size_t)
DEL3_WRAPPER(w_del_a_sz_al, DEL_A_SZ_AL, size_t, size_t)
DEL3_WRAPPER(w_del_al_nt, DEL_AL_NT, size_t, const void *)
DEL3_WRAPPER(w_del_a_al_nt, DEL_A_AL_NT, size_t, const void *)

/* The loader's entry points (defined after the patcher they call). */
static void *w_dlopen(const char *file, int flags);
static void *w_dlmopen(Lmid_t lmid, const char *file, int flags);
static int w_dlclose(void *handle);

/* ---- the tables ------------------------------------------------------------------ */

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Hooked names by hash: open addressing, 128 slots of (hash, id + 1). */
#define NAME_SLOTS 128
static uint32_t name_slot_hash[NAME_SLOTS];
static uint8_t name_slot_id[NAME_SLOTS];

static void init_tables(void)
{
    static int done = 0;
    if (done)
        return;
#define AS_WRAP(id, name, fn, set) hook_wrappers[H_##id] = (uintptr_t)&fn;
    HOOKS(AS_WRAP)
#undef AS_WRAP
    for (int i = 0; i < NHOOKS; i++) {
        uint32_t h = name_hash(hook_names[i]);
        size_t j = h & (NAME_SLOTS - 1);
        while (name_slot_id[j] != 0)
            j = (j + 1) & (NAME_SLOTS - 1);
        name_slot_hash[j] = h;
        name_slot_id[j] = (uint8_t)(i + 1);
    }
    done = 1;
}

/* The hook of a symbol name, -1 if none. */
static int hook_of(const char *name)
{
    uint32_t h = name_hash(name);
    for (size_t j = h & (NAME_SLOTS - 1); name_slot_id[j] != 0; j = (j + 1) & (NAME_SLOTS - 1)) {
        if (name_slot_hash[j] == h && strcmp(hook_names[name_slot_id[j] - 1], name) == 0)
            return name_slot_id[j] - 1;
    }
    return -1;
}

/* A C++ runtime (libstdc++, libc++) is loaded: the operators can be looked
 * up.  Set by the passes. */
static volatile int cxx_loaded;

/* dlsym the names still missing.  Never under patch_lock (dlsym takes the
 * loader's lock).  The C++ names only once a C++ runtime is loaded: a
 * lookup that fails would leave its message for the program's dlerror(). */
static void resolve_missing(void)
{
    for (int i = 0; i < NHOOKS; i++) {
        if (__atomic_load_n(&real[i], __ATOMIC_ACQUIRE) != 0)
            continue;
        if (hook_names[i][0] == '_' && hook_names[i][1] == 'Z' && !cxx_loaded)
            continue;
        void *p = dlsym(RTLD_DEFAULT, hook_names[i]);
        if (p != NULL && (uintptr_t)p != hook_wrappers[i])
            __atomic_store_n(&real[i], (uintptr_t)p, __ATOMIC_RELEASE);
    }
    if (nothrow_tag == NULL)
        nothrow_tag = &nothrow_dummy;       /* the operators never read it */
    if (nothrow_tag == &nothrow_dummy && cxx_loaded) {
        const void *tag = dlsym(RTLD_DEFAULT, "_ZSt7nothrow");
        if (tag != NULL)
            nothrow_tag = tag;
    }
}

/* ---- the patcher (GOT mode) -------------------------------------------------------- */

typedef struct {
    uintptr_t base;
    uint32_t name;          /* hash of the object's name */
    uint32_t stamp;         /* the last pass that saw it */
    int how;                /* HOW_* */
    int done;               /* patched (or nothing to do) */
} object_t;

typedef struct {
    uintptr_t *slot;
    uintptr_t original;
    uintptr_t base;
    uint32_t name;
    int hook;
} patch_t;

typedef struct {
    uintptr_t lo, hi;
    int writable;
} region_t;

static pthread_mutex_t patch_lock = PTHREAD_MUTEX_INITIALIZER;
static object_t *objects;
static size_t nobjects, objects_cap;
static patch_t *patches;
static size_t npatches, patches_cap;
static region_t *regions;               /* /proc/self/maps, read in a pass */
static size_t nregions, regions_cap;
static char *maps_text;
static size_t maps_cap;
static uint32_t pass_stamp;
static uintptr_t self_base;             /* this library's load address */
static size_t page_size;
static rh_native_stats_t counts;        /* objects/dl_only/skipped: the last pass */

/* Grow an mmap'd array to hold `need` items of `size` bytes. */
static int grow_array(void **items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *p = _rh_own_map(cap2 * size);
    if (p == NULL)
        return -1;
    if (*items != NULL) {
        memcpy(p, *items, *cap * size);
        _rh_own_unmap(*items, *cap * size);
    }
    *items = p;
    *cap = cap2;
    return 0;
}

/* Read /proc/self/maps into regions[] (sorted by address).  Only system
 * calls: it runs inside dl_iterate_phdr.  0, or -1. */
static int read_maps(void)
{
    nregions = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        if (len + 4096 > maps_cap) {
            size_t cap = maps_cap ? maps_cap : 1 << 16;
            while (len + 4096 > cap)
                cap *= 2;
            char *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                close(fd);
                return -1;
            }
            if (maps_text != NULL) {
                memcpy(p, maps_text, len);
                munmap(maps_text, maps_cap);
            }
            maps_text = p;
            maps_cap = cap;
        }
        ssize_t n = read(fd, maps_text + len, maps_cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    maps_text[len] = '\0';
    for (char *line = maps_text; line < maps_text + len;) {
        char *end = strchr(line, '\n');
        if (end == NULL)
            end = maps_text + len;
        char *q;
        uintptr_t lo = (uintptr_t)strtoull(line, &q, 16);
        if (*q == '-') {
            uintptr_t hi = (uintptr_t)strtoull(q + 1, &q, 16);
            if (*q == ' ' && q + 3 < end) {
                if (grow_array((void **)&regions, &regions_cap, nregions + 1, sizeof(region_t)) < 0)
                    return -1;
                regions[nregions++] = (region_t){lo, hi, q[2] == 'w'};
            }
        }
        line = end + 1;
    }
    return 0;
}

/* 1 writable, 0 read-only, -1 unknown (not mapped, or maps unreadable). */
static int page_writable(uintptr_t addr)
{
    size_t lo = 0, hi = nregions;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (addr < regions[mid].lo)
            hi = mid;
        else if (addr >= regions[mid].hi)
            lo = mid + 1;
        else
            return regions[mid].writable;
    }
    return -1;
}

/* Store into a slot whose page is writable (1) or read-only (0). */
static int store_slot(uintptr_t *slot, uintptr_t value, int writable)
{
    if (writable) {
        __atomic_store_n(slot, value, __ATOMIC_RELEASE);
        return 0;
    }
    void *page = (void *)((uintptr_t)slot & ~(uintptr_t)(page_size - 1));
    if (mprotect(page, page_size, PROT_READ | PROT_WRITE) != 0)
        return -1;
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    mprotect(page, page_size, PROT_READ);
    return 0;
}

typedef struct {
    uintptr_t base;
    const ElfW(Phdr) *phdr;
    int phnum;
    uintptr_t relro_lo, relro_hi;       /* page range the loader makes read-only */
    const ElfW(Sym) *symtab;
    const char *strtab;
    size_t strsz;
    const ElfW(Rela) *rela, *jmprel;
    size_t relasz, pltrelsz;
} elf_t;

static inline uintptr_t dyn_addr(uintptr_t v, uintptr_t base)
{
    return v < base ? base + v : v;     /* relocated in place by glibc, or not */
}

static int elf_parse(struct dl_phdr_info *info, elf_t *e)
{
    memset(e, 0, sizeof(*e));
    e->base = info->dlpi_addr;
    e->phdr = info->dlpi_phdr;
    e->phnum = info->dlpi_phnum;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < e->phnum; i++) {
        const ElfW(Phdr) *ph = &e->phdr[i];
        if (ph->p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(e->base + ph->p_vaddr);
        else if (ph->p_type == PT_GNU_RELRO) {
            e->relro_lo = (e->base + ph->p_vaddr) & ~(uintptr_t)(page_size - 1);
            e->relro_hi = (e->base + ph->p_vaddr + ph->p_memsz) & ~(uintptr_t)(page_size - 1);
        }
    }
    if (dyn == NULL)
        return -1;
    int pltrel = DT_RELA;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: e->symtab = (const ElfW(Sym) *)dyn_addr(dyn->d_un.d_ptr, e->base); break;
        case DT_STRTAB: e->strtab = (const char *)dyn_addr(dyn->d_un.d_ptr, e->base); break;
        case DT_STRSZ: e->strsz = dyn->d_un.d_val; break;
        case DT_RELA: e->rela = (const ElfW(Rela) *)dyn_addr(dyn->d_un.d_ptr, e->base); break;
        case DT_RELASZ: e->relasz = dyn->d_un.d_val; break;
        case DT_JMPREL: e->jmprel = (const ElfW(Rela) *)dyn_addr(dyn->d_un.d_ptr, e->base); break;
        case DT_PLTRELSZ: e->pltrelsz = dyn->d_un.d_val; break;
        case DT_PLTREL: pltrel = (int)dyn->d_un.d_val; break;
        }
    }
    if (pltrel != DT_RELA)
        e->jmprel = NULL;       /* x86-64 and aarch64 use RELA only */
    return e->symtab != NULL && e->strtab != NULL ? 0 : -1;
}

/* Is [addr, addr + 8) inside one of the object's writable PT_LOADs? */
static int in_writable_segment(const elf_t *e, uintptr_t addr)
{
    for (int i = 0; i < e->phnum; i++) {
        const ElfW(Phdr) *ph = &e->phdr[i];
        uintptr_t lo = e->base + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) && addr >= lo &&
            addr + sizeof(uintptr_t) <= lo + ph->p_memsz)
            return 1;
    }
    return 0;
}

/* Does `value` point into the object's own mapped segments (a lazy
 * binding stub in its PLT)? */
static int in_object(const elf_t *e, uintptr_t value)
{
    for (int i = 0; i < e->phnum; i++) {
        const ElfW(Phdr) *ph = &e->phdr[i];
        uintptr_t lo = e->base + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && value >= lo && value < lo + ph->p_memsz)
            return 1;
    }
    return 0;
}

static int classify(const char *name, uintptr_t base, int first)
{
    static const char *const skip[] = {
        "ld-linux", "ld64.so", "ld.so", "linux-vdso", "linux-gate", "libc.so", "libm.so",
        "libmvec.so", "libpthread.so", "libdl.so", "librt.so", "libresolv.so", "libnss_",
        "libutil.so", "libanl.so", "libBrokenLocale", "libthread_db", "libc_malloc_debug",
        "libmemusage", "libdw.so", "libdw-", "libelf.so", "libelf-", "libdebuginfod",
        "vgpreload_",
        /* sanitizer runtimes: allocators themselves, their own calls are
         * their bookkeeping (blocks they free without a GOT slot) */
        "libasan", "libtsan", "libmsan", "liblsan", "libubsan", "libhwasan", "libclang_rt.",
        NULL,
    };
    if (base == self_base)
        return HOW_SKIP;
    if (first || name == NULL || name[0] == '\0')
        return HOW_DL;          /* the interpreter */
    const char *slash = strrchr(name, '/');
    const char *file = slash ? slash + 1 : name;
    if (strstr(name, "/refhound/_preload") != NULL)
        return HOW_SKIP;
    for (int i = 0; skip[i] != NULL; i++)
        if (strncmp(file, skip[i], strlen(skip[i])) == 0)
            return HOW_SKIP;
    if (strncmp(file, "libpython", 9) == 0)
        return HOW_DL;
    return HOW_FULL;
}

static object_t *object_for(uintptr_t base, uint32_t name)
{
    for (size_t i = 0; i < nobjects; i++)
        if (objects[i].base == base && objects[i].name == name)
            return &objects[i];
    if (grow_array((void **)&objects, &objects_cap, nobjects + 1, sizeof(object_t)) < 0)
        return NULL;
    object_t *o = &objects[nobjects++];
    memset(o, 0, sizeof(*o));
    o->base = base;
    o->name = name;
    return o;
}

typedef struct {
    int restore;            /* put the slots back */
    int prune_only;         /* only notice objects that went away */
    int index;
    int maps_read;          /* -1 failed, 0 not yet, 1 read */
    int unresolved;         /* a slot was skipped: its name is not looked up yet */
} pass_t;

static int ensure_maps(pass_t *ps)
{
    if (ps->maps_read == 0)
        ps->maps_read = read_maps() == 0 ? 1 : -1;
    return ps->maps_read;
}

/* Patch one relocation table of an object; -1 when the object must wait
 * (its RELRO pages are still being written by the loader). */
static int patch_table(const elf_t *e, object_t *o, const ElfW(Rela) *table, size_t bytes,
                       pass_t *ps)
{
    size_t n = table ? bytes / sizeof(ElfW(Rela)) : 0;
    for (size_t i = 0; i < n; i++) {
        const ElfW(Rela) *r = &table[i];
        unsigned type = (unsigned)ELF64_R_TYPE(r->r_info);
        size_t sym = ELF64_R_SYM(r->r_info);
        if ((type != RH_R_JUMP_SLOT && type != RH_R_GLOB_DAT) || sym == 0)
            continue;
        uint32_t off = e->symtab[sym].st_name;
        if (e->strsz != 0 && off >= e->strsz)
            continue;
        int hook = hook_of(e->strtab + off);
        if (hook < 0 || !(hook_sets[hook] & o->how))
            continue;
        uintptr_t *slot = (uintptr_t *)(e->base + r->r_offset);
        if (!in_writable_segment(e, (uintptr_t)slot))
            continue;
        uintptr_t cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        uintptr_t want = hook_wrappers[hook];
        uintptr_t def = __atomic_load_n(&real[hook], __ATOMIC_ACQUIRE);
        if (cur == want)
            continue;
        if (def == 0) {
            ps->unresolved = 1;         /* its definition came with this pass */
            continue;
        }
        if (cur != def && !in_object(e, cur)) {
            counts.foreign++;
            continue;
        }
        int relro = (uintptr_t)slot >= e->relro_lo && (uintptr_t)slot < e->relro_hi;
        int writable = 1;
        if (relro) {
            if (ensure_maps(ps) < 0) {
                counts.failed++;
                continue;
            }
            writable = page_writable((uintptr_t)slot);
            if (writable == 1)
                return -1;          /* RELRO not applied yet: being loaded */
            if (writable < 0) {
                counts.failed++;
                continue;
            }
        }
        if (grow_array((void **)&patches, &patches_cap, npatches + 1, sizeof(patch_t)) < 0 ||
            store_slot(slot, want, writable) < 0) {
            counts.failed++;
            continue;
        }
        patches[npatches++] = (patch_t){slot, cur, e->base, o->name, hook};
    }
    return 0;
}

/* Put back the slots recorded for this object (still loaded: we are in
 * its pass) that still hold our wrapper. */
static void restore_object(const elf_t *e, uint32_t name, pass_t *ps)
{
    for (size_t i = 0; i < npatches; i++) {
        patch_t *p = &patches[i];
        if (p->base != e->base || p->name != name)
            continue;
        uintptr_t *slot = p->slot;
        if (!in_writable_segment(e, (uintptr_t)slot) ||
            __atomic_load_n(slot, __ATOMIC_ACQUIRE) != hook_wrappers[p->hook])
            continue;
        int writable = 1;
        if ((uintptr_t)slot >= e->relro_lo && (uintptr_t)slot < e->relro_hi) {
            if (ensure_maps(ps) < 0)
                continue;
            writable = page_writable((uintptr_t)slot);
            if (writable < 0)
                continue;
        }
        store_slot(slot, p->original, writable);
    }
}

static int pass_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    pass_t *ps = (pass_t *)arg;
    int first = ps->index++ == 0;
    uint32_t name = name_hash(info->dlpi_name ? info->dlpi_name : "");
    elf_t e;
    if (ps->restore) {
        if (elf_parse(info, &e) == 0)
            restore_object(&e, name, ps);
        return 0;
    }
    object_t *o = object_for(info->dlpi_addr, name);
    if (o == NULL)
        return 0;
    o->stamp = pass_stamp;
    if (o->done || ps->prune_only)
        return 0;
    o->how = classify(info->dlpi_name, info->dlpi_addr, first);
    const char *slash = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
    if (slash != NULL && (strncmp(slash + 1, "libstdc++", 9) == 0 ||
                          strncmp(slash + 1, "libc++", 6) == 0))
        cxx_loaded = 1;
    if (o->how == HOW_SKIP || elf_parse(info, &e) < 0) {
        o->done = 1;
        return 0;
    }
    int unresolved = ps->unresolved;
    ps->unresolved = 0;
    if (patch_table(&e, o, e.jmprel, e.pltrelsz, ps) == 0 &&
        patch_table(&e, o, e.rela, e.relasz, ps) == 0 && !ps->unresolved)
        o->done = 1;
    ps->unresolved |= unresolved;
    return 0;
}

/* Drop what belongs to objects the last pass did not see (unloaded): their
 * slots are gone with them, never written again. */
static void drop_unseen(void)
{
    size_t k = 0;
    for (size_t i = 0; i < nobjects; i++) {
        if (objects[i].stamp != pass_stamp) {
            for (size_t j = 0; j < npatches;) {
                if (patches[j].base == objects[i].base && patches[j].name == objects[i].name)
                    patches[j] = patches[--npatches];
                else
                    j++;
            }
            continue;
        }
        objects[k++] = objects[i];
    }
    nobjects = k;
}

static void count_objects(void)
{
    counts.objects = counts.dl_only = counts.skipped = 0;
    for (size_t i = 0; i < nobjects; i++) {
        if (objects[i].how == HOW_FULL)
            counts.objects++;
        else if (objects[i].how == HOW_DL)
            counts.dl_only++;
        else
            counts.skipped++;
    }
    counts.slots = npatches;
}

/* A pass over the loaded objects: patch the new ones (prune_only: only
 * forget those that went away). */
static void rescan(int prune_only)
{
    int saved = hook_enter();
    for (int round = 0; round < 2; round++) {
        int cxx = cxx_loaded;
        if (!prune_only)
            resolve_missing();          /* before patch_lock: dlsym locks the loader */
        pthread_mutex_lock(&patch_lock);
        pass_t ps = {0, prune_only, 0, 0, 0};
        pass_stamp++;
        if (!prune_only)
            __atomic_store_n(&pass_running, 1, __ATOMIC_RELEASE);
        dl_iterate_phdr(pass_cb, &ps);
        __atomic_store_n(&pass_running, 0, __ATOMIC_RELEASE);
        drop_unseen();
        count_objects();
        counts.rescans++;
        pthread_mutex_unlock(&patch_lock);
        /* A C++ runtime came with this pass: look its operators up, once more. */
        if (prune_only || !ps.unresolved || cxx == cxx_loaded)
            break;
    }
    hook_leave(saved);
}

static void restore_all(void)
{
    int saved = hook_enter();
    pthread_mutex_lock(&patch_lock);
    pass_t ps = {1, 0, 0, 0, 0};
    dl_iterate_phdr(pass_cb, &ps);
    npatches = 0;
    nobjects = 0;
    count_objects();
    pthread_mutex_unlock(&patch_lock);
    hook_leave(saved);
}

static void atfork_prepare(void) { pthread_mutex_lock(&patch_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&patch_lock); }
static void atfork_child(void) { pthread_mutex_init(&patch_lock, NULL); }

/* ---- dlopen, dlmopen, dlclose ------------------------------------------------------ */

typedef void *(*dlopen_fn)(const char *, int);
typedef void *(*dlmopen_fn)(Lmid_t, const char *, int);
typedef int (*dlclose_fn)(void *);

/* A loaded object whose soname or file name is `file`: its path into
 * `out` (the loader matches a bare name against the loaded objects before
 * it searches anything). */
typedef struct {
    const char *file;
    char *out;
    size_t cap;
    int found;
} loaded_query_t;

static int find_loaded(struct dl_phdr_info *info, size_t size, void *arg)
{
    loaded_query_t *q = (loaded_query_t *)arg;
    const char *name = info->dlpi_name;
    if (name == NULL || name[0] != '/')
        return 0;
    const char *base = strrchr(name, '/') + 1;
    int match = strcmp(base, q->file) == 0;
    elf_t e;
    if (!match && elf_parse(info, &e) == 0) {
        for (int i = 0; i < e.phnum; i++) {
            if (e.phdr[i].p_type != PT_DYNAMIC)
                continue;
            for (const ElfW(Dyn) *d = (const ElfW(Dyn) *)(e.base + e.phdr[i].p_vaddr);
                 d->d_tag != DT_NULL; d++)
                if (d->d_tag == DT_SONAME && (e.strsz == 0 || d->d_un.d_val < e.strsz))
                    match = strcmp(e.strtab + d->d_un.d_val, q->file) == 0;
        }
    }
    if (!match || strlen(name) >= q->cap)
        return 0;
    strcpy(q->out, name);
    q->found = 1;
    return 1;
}

/* A bare name the caller asked for: the loader would have searched the
 * caller's own RPATH/RUNPATH, and we are the caller now.  Returns the
 * handle, NULL to let the plain call decide (the caller has no path of its
 * own, or nothing is found on it).  *lmid: the caller's namespace.  Makes
 * no call that can fail for a reason of its own (dlerror() stays the
 * program's). */
static void *open_on_callers_path(void *caller, const char *file, int flags, Lmid_t *lmid)
{
    dlopen_fn real_dlopen = REAL(DLOPEN, dlopen_fn);
    dlmopen_fn real_dlmopen = REAL(DLMOPEN, dlmopen_fn);
    Dl_info di;
    struct link_map *lm = NULL;
    if (!dladdr1(caller, &di, (void **)&lm, RTLD_DL_LINKMAP) || lm == NULL || lm->l_ld == NULL)
        return NULL;
    if (dlinfo(lm, RTLD_DI_LMID, lmid) != 0)
        *lmid = LM_ID_BASE;
    int has_paths = 0;
    for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; d++)
        has_paths |= d->d_tag == DT_RPATH || d->d_tag == DT_RUNPATH;
    if (!has_paths || *lmid != LM_ID_BASE)
        return NULL;
    char path[4096];
    loaded_query_t q = {file, path, sizeof(path), 0};
    dl_iterate_phdr(find_loaded, &q);
    if (q.found)
        return real_dlopen(path, flags);        /* the same object: its handle */
    void *found = NULL;
    Dl_serinfo size;
    if (dlinfo(lm, RTLD_DI_SERINFOSIZE, &size) != 0 || size.dls_size > (1 << 20))
        return NULL;
    Dl_serinfo *info = malloc(size.dls_size);      /* our own GOT: the C library's */
    if (info == NULL)
        return NULL;
    memcpy(info, &size, sizeof(size));
    if (dlinfo(lm, RTLD_DI_SERINFOSIZE, info) == 0 && dlinfo(lm, RTLD_DI_SERINFO, info) == 0) {
        for (unsigned i = 0; found == NULL && i < info->dls_cnt; i++) {
            const char *dir = info->dls_serpath[i].dls_name;
            if (dir == NULL || dir[0] == '\0')
                continue;
            int n = snprintf(path, sizeof(path), "%s/%s", dir, file);
            if (n > 0 && (size_t)n < sizeof(path) && access(path, R_OK) == 0)
                found = real_dlopen(path, flags);
        }
    }
    free(info);
    (void)real_dlmopen;
    return found;
}

static void *w_dlopen(const char *file, int flags)
{
    void *caller = __builtin_extract_return_addr(__builtin_return_address(0));
    dlopen_fn real_dlopen = REAL(DLOPEN, dlopen_fn);
    void *h = NULL;
    Lmid_t lmid = LM_ID_BASE;
    if (file != NULL && file[0] != '\0' && strchr(file, '/') == NULL)
        h = open_on_callers_path(caller, file, flags, &lmid);
    if (h == NULL) {
        dlmopen_fn real_dlmopen = REAL(DLMOPEN, dlmopen_fn);
        h = lmid != LM_ID_BASE && real_dlmopen != NULL ? real_dlmopen(lmid, file, flags)
                                                        : real_dlopen(file, flags);
    }
    if (h != NULL && native_on && mode == RH_NATIVE_GOT)
        rescan(0);
    return h;
}

static void *w_dlmopen(Lmid_t lmid, const char *file, int flags)
{
    void *h = REAL(DLMOPEN, dlmopen_fn)(lmid, file, flags);
    if (h != NULL && native_on && mode == RH_NATIVE_GOT)
        rescan(0);
    return h;
}

static int w_dlclose(void *handle)
{
    int rc = REAL(DLCLOSE, dlclose_fn)(handle);
    if (rc == 0 && (native_on || kept) && mode == RH_NATIVE_GOT)
        rescan(1);
    return rc;
}

/* ---- the preload library ------------------------------------------------------------ */

/* Calls from these ranges pass through: refhound itself, libdw, libelf,
 * libdebuginfod and the loader. */
#define MAX_OWN 8
static uintptr_t own_lo[MAX_OWN], own_hi[MAX_OWN];
static int nown;

static inline int is_own(void *caller)
{
    uintptr_t c = (uintptr_t)caller;
    for (int i = 0; i < nown; i++)
        if (c >= own_lo[i] && c < own_hi[i])
            return 1;
    return 0;
}

static int find_own(struct dl_phdr_info *info, size_t size, void *arg)
{
    static const char *const own[] = {"libdw.so", "libdw-", "libelf.so", "libelf-",
                                      "libdebuginfod", "ld-linux", "ld64.so", NULL};
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    const char *slash = strrchr(name, '/');
    const char *file = slash ? slash + 1 : name;
    int mine = info->dlpi_addr == self_base && self_base != 0;
    for (int i = 0; !mine && own[i] != NULL; i++)
        mine = strncmp(file, own[i], strlen(own[i])) == 0;
    if (!mine)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && nown < MAX_OWN; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            own_lo[nown] = info->dlpi_addr + ph->p_vaddr;
            own_hi[nown] = own_lo[nown] + ph->p_memsz;
            nown++;
        }
    }
    return 0;
}

#define OWN_OR(call_under, call_wrapper) \
    do { if (is_own(caller)) return call_under; return call_wrapper; } while (0)

static void *pre_malloc(size_t size, void *caller)
{
    OWN_OR(under_now()->malloc(size), w_malloc(size));
}
static void *pre_calloc(size_t nmemb, size_t size, void *caller)
{
    OWN_OR(under_now()->calloc(nmemb, size), w_calloc(nmemb, size));
}
static void *pre_realloc(void *ptr, size_t size, void *caller)
{
    OWN_OR(under_now()->realloc(ptr, size), w_realloc(ptr, size));
}
static void *pre_reallocarray(void *ptr, size_t nmemb, size_t size, void *caller)
{
    return w_reallocarray(ptr, nmemb, size);        /* checks the product itself */
}

void _rh_native_release(void *p)
{
    if (p == NULL)
        return;
    if (mode != RH_NATIVE_PRELOAD) {
        free(p);                    /* the wrappers never saw it */
        return;
    }
    if (recording()) {
        int s = hook_enter();
        forget(p);
        hook_leave(s);
    }
    under_now()->free(p);
}

static void pre_free(void *ptr, void *caller)
{
    if (is_own(caller))
        under_now()->free(ptr);
    else
        w_free(ptr);
}
static int pre_posix_memalign(void **out, size_t alignment, size_t size, void *caller)
{
    OWN_OR(under_now()->posix_memalign(out, alignment, size),
           w_posix_memalign(out, alignment, size));
}
static void *pre_aligned_alloc(size_t alignment, size_t size, void *caller)
{
    OWN_OR(under_now()->aligned_alloc(alignment, size), w_aligned_alloc(alignment, size));
}
static void *pre_memalign(size_t alignment, size_t size, void *caller)
{
    OWN_OR(under_now()->memalign(alignment, size), w_memalign(alignment, size));
}
static void *pre_valloc(size_t size, void *caller)
{
    OWN_OR(under_now()->valloc(size), w_valloc(size));
}
static void *pre_pvalloc(size_t size, void *caller)
{
    OWN_OR(under_now()->pvalloc(size), w_pvalloc(size));
}

static const rh_preload_hooks_t preload_hooks = {
    RH_PRELOAD_ABI, pre_malloc, pre_calloc, pre_realloc, pre_reallocarray, pre_free,
    pre_posix_memalign, pre_aligned_alloc, pre_memalign, pre_valloc, pre_pvalloc,
};

/* ---- life cycle ------------------------------------------------------------------------ */

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
    uintptr_t probe = (uintptr_t)arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && probe >= lo && probe < lo + ph->p_memsz) {
            self_base = info->dlpi_addr;
            return 1;
        }
    }
    return 0;
}

static int fill_libc_allocator(void)
{
    libc_alloc.malloc = REAL(MALLOC, void *(*)(size_t));
    libc_alloc.calloc = REAL(CALLOC, void *(*)(size_t, size_t));
    libc_alloc.realloc = REAL(REALLOC, void *(*)(void *, size_t));
    libc_alloc.free = REAL(FREE, void (*)(void *));
    libc_alloc.posix_memalign = REAL(POSIX_MEMALIGN, int (*)(void **, size_t, size_t));
    libc_alloc.aligned_alloc = REAL(ALIGNED_ALLOC, void *(*)(size_t, size_t));
    libc_alloc.memalign = REAL(MEMALIGN, void *(*)(size_t, size_t));
    libc_alloc.valloc = REAL(VALLOC, void *(*)(size_t));
    libc_alloc.pvalloc = REAL(PVALLOC, void *(*)(size_t));
    return libc_alloc.malloc && libc_alloc.calloc && libc_alloc.realloc && libc_alloc.free &&
           libc_alloc.posix_memalign && libc_alloc.aligned_alloc && libc_alloc.memalign &&
           libc_alloc.valloc && libc_alloc.pvalloc && real[H_DLOPEN] && real[H_DLCLOSE]
               ? 0 : -1;
}

int _rh_native_start(const char **why)
{
    if (native_on)
        return 0;
    failure = NULL;
#if !RH_NATIVE_SUPPORTED
    *why = failure = "native tracking needs x86-64 or aarch64 Linux";
    return -1;
#else
    static int once = 0;
    if (!once) {
        page_size = (size_t)sysconf(_SC_PAGESIZE);
        dl_iterate_phdr(find_self, (void *)(uintptr_t)&_rh_native_start);
        init_tables();
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        once = 1;
    }
    rh_preload_attach_t attach = (rh_preload_attach_t)dlsym(RTLD_DEFAULT, RH_PRELOAD_ATTACH);
    if (attach != NULL) {
        nown = 0;
        dl_iterate_phdr(find_own, NULL);
        const rh_native_allocator_t *next = attach(NULL);
        if (next == NULL) {
            *why = failure = "the preload library in LD_PRELOAD is from another refhound version";
            return -1;
        }
        next_alloc = next;
        if (__atomic_load_n(&under, __ATOMIC_ACQUIRE) == NULL)
            __atomic_store_n(&under, next, __ATOMIC_RELEASE);
        mode = RH_NATIVE_PRELOAD;
        __atomic_store_n(&native_on, 1, __ATOMIC_RELEASE);
        attach(&preload_hooks);
        return 0;
    }
    resolve_missing();
    if (fill_libc_allocator() < 0) {
        *why = failure = "the C library's allocator functions cannot be found (dlsym)";
        return -1;
    }
    next_alloc = &libc_alloc;
    if (__atomic_load_n(&under, __ATOMIC_ACQUIRE) == NULL)
        __atomic_store_n(&under, &libc_alloc, __ATOMIC_RELEASE);
    mode = RH_NATIVE_GOT;
    /* A wrapper entered before the last stop may only now come to record
     * its block, while the slots still hold the real functions (its free
     * would go unseen): nothing is recorded until the first pass is over. */
    __atomic_store_n(&pass_running, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&native_on, 1, __ATOMIC_RELEASE);
    rescan(0);
    return 0;
#endif
}

void _rh_native_stop(void)
{
    if (!native_on)
        return;
    __atomic_store_n(&native_on, 0, __ATOMIC_RELEASE);
    if (under_now() != next_alloc) {
        /* Another allocator is slotted under the wrappers (the guard): the
         * blocks it handed out may be freed after this stop, and only it
         * can free them (the C library aborts on an address of its
         * region).  The wrappers stay in place and record nothing. */
        kept = 1;
        _rh_tracker_native_drop();
        return;
    }
    if (mode == RH_NATIVE_PRELOAD) {
        rh_preload_attach_t attach = (rh_preload_attach_t)dlsym(RTLD_DEFAULT, RH_PRELOAD_ATTACH);
        if (attach != NULL)
            attach(NULL);
    }
    else {
        restore_all();
    }
    /* What is recorded can no longer be seen freed: forget it. */
    _rh_tracker_native_drop();
    mode = RH_NATIVE_OFF;
}

int _rh_native_active(void) { return native_on; }

void _rh_native_stats(rh_native_stats_t *out)
{
    pthread_mutex_lock(&patch_lock);
    *out = counts;
    pthread_mutex_unlock(&patch_lock);
    out->mode = native_on ? mode : RH_NATIVE_OFF;
    out->failure = failure;
}

typedef struct {
    void (*fn)(const char *, const char *, void *);
    void *arg;
    int index;
} list_arg_t;

static int list_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    list_arg_t *l = (list_arg_t *)arg;
    int how = classify(info->dlpi_name, info->dlpi_addr, l->index++ == 0);
    const char *name = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : "(the program)";
    l->fn(name, how == HOW_FULL ? "full" : how == HOW_DL ? "dl" : "skip", l->arg);
    return 0;
}

void _rh_native_objects(void (*fn)(const char *name, const char *how, void *arg), void *arg)
{
    if (self_base == 0)
        dl_iterate_phdr(find_self, (void *)(uintptr_t)&_rh_native_start);
    list_arg_t l = {fn, arg, 0};
    dl_iterate_phdr(list_cb, &l);
}

const rh_native_allocator_t *_rh_native_libc(void)
{
    if (next_alloc == NULL) {
        resolve_missing();
        if (fill_libc_allocator() == 0)
            next_alloc = &libc_alloc;
    }
    return next_alloc;
}

void _rh_native_set_allocator(const rh_native_allocator_t *a)
{
    const rh_native_allocator_t *libc = _rh_native_libc();
    __atomic_store_n(&under, a != NULL ? a : libc, __ATOMIC_RELEASE);
}
