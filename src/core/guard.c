/* guard.c — the guard allocator: memory errors found on a stock Python.
 *
 * Job.  Installed under the PEP 445 raw, mem and obj domains (chaining the
 * allocators that were there, normally pymalloc) and under native.c's
 * malloc-family wrappers (the extensions' own heap), it gives one block in
 * `rate` (every block with rate 1, while slots are free) pages of its own
 * in a region reserved at start (the rate grows 4, 16, 64, 256 times rarer
 * as live blocks fill the slots past half, so long-lived blocks never take
 * them all), the GWP-ASan layout:
 *
 *     | guard | data pages of slot 0 | guard | data pages of slot 1 | guard |
 *
 * A block sits against the guard page behind its data pages, its start
 * rounded down to 16 bytes (what pymalloc guarantees); the pages before the
 * page it starts in stay inaccessible.  So a write past the end faults at
 * the writing instruction, unless it lands in the 0..15 bytes of alignment
 * slack; a write before the start lands in the rest of the block's first
 * page.  The slack and the 64 bytes before the block are red zones filled
 * with a pattern and checked when the block is freed (a write further
 * before the block, still in its page, is not seen).  A freed block's
 * pages become inaccessible (PROT_NONE) and stay so while the slot is in
 * quarantine: a slot is reused only when no fresh one is left, oldest
 * first, so the quarantine holds every freed slot the budget allows.  A later read or
 * write of the dead block (a Py_DECREF landing on a freed object) faults.
 * A second free of a quarantined block is a double free; a free of an
 * address inside the region that is not a live block's start is an
 * invalid free.  Blocks that are not guarded (not sampled, zero bytes,
 * larger than a slot, no slot free) go to the previous allocator; a free
 * or realloc of an address outside the region goes there too, so blocks
 * born before the guard and after it mix freely.
 *
 * Reports.  The first error ends the process: the SIGSEGV/SIGBUS handler
 * (on an alternate stack) or the free hook writes one report to the
 * report descriptor — kind, address, the block's size and domain, the
 * access (or second free) stack, the allocation and free stacks as raw
 * return addresses, the object's type at free time, then a copy of
 * /proc/self/maps so that the reader symbolizes the addresses after this
 * process is gone — with write(2) and hand-made number formatting only.
 * Then the previous handler is put back and the fault happens again (a
 * free-time error raises SIGABRT): faulthandler prints the Python
 * traceback and the process dies of the signal.  Never a hang: nothing in
 * the report path takes a lock, and a second entry into the handler (the
 * previous handler raising the signal again) restores the default action
 * and raises it.  A fault outside the region is not ours: the previous
 * handler is restored and sees the fault again.
 *
 * Invariants.  A slot is UNUSED (never handed out), LIVE (its block
 * accessible, red zones intact until the user breaks them) or FREED
 * (inaccessible, its stacks kept until the slot is reused).  block and
 * size describe the last block of a slot that is not UNUSED.  Guarded
 * blocks are 16-byte aligned except in `exact` mode (the replay of one
 * allocation size, placed against the guard page to the byte).
 *
 * Locking.  The mem and obj domains run under the GIL, the raw domain and
 * the native heap in any thread; guard_lock (a mutex) guards the slots'
 * allocation and release, the fresh counter and the quarantine ring (a
 * fork waits for it: pthread_atfork); `passed` is counted atomically.  The signal
 * handler reads the slots without the lock (the faulting thread is not
 * inside the guard: the guard never touches a block's pages while they
 * are inaccessible) and `reporting` (an atomic flag) lets only one thread
 * report; `entries` counts the handler's entries.  live_slots, countdown
 * and rng: guard_lock.  The guard is installed once and never removed: freed blocks
 * may be referenced for the life of the process.
 *
 * Costs.  A guarded block costs an mprotect on allocation and on free, a
 * page of memory at least, and a stack capture (unwind.c's fast walk, the
 * compiler's unwinder when that stops early); other blocks cost a
 * countdown.  The kernel's share dominates: every live guarded block is a
 * mapping of its own, and splitting and merging mappings is what an
 * mprotect costs (bench/sanitize_overhead.py).
 */
#include "guard.h"
#include "ownmem.h"
#include "native.h"
#include "safemem.h"
#include "unwind.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define DATA_PAGES 4                /* the largest guarded block: 4 pages */
#define ALIGNMENT 16
#define FRAMES 32
#define REDZONE_BYTE 0xFB
#define REDZONE_BEFORE 64           /* red-zone bytes before a block (in its page) */
#define MAX_SLOTS 16384             /* two mappings each at most: far below 65530 */
#define MIN_SLOTS 16

enum { SLOT_UNUSED = 0, SLOT_LIVE = 1, SLOT_FREED = 2 };

typedef struct {
    uintptr_t block;
    size_t size;
    uint8_t state;
    uint8_t domain;
    uint8_t nalloc, nfree;
    uintptr_t type_words[RH_NOBJECT_OFFSETS];  /* ob_type candidates at free */
    uintptr_t alloc_ips[FRAMES];
    uintptr_t free_ips[FRAMES];
} slot_t;

typedef struct {
    int domain;
    PyMemAllocatorEx prev;
} domain_ctx_t;

static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static int installed;
static rh_guard_config_t config;
static size_t page;
static size_t stride;                /* (DATA_PAGES + 1) * page */
static uintptr_t region, region_end; /* read-only after start */
static slot_t *slots;                /* nslots entries, mmap'd */
static uint32_t nslots;
static uint32_t fresh;               /* slots[fresh..] were never used */
static uint32_t live_slots;          /* slots holding a live block */
static uint32_t *ring;               /* FIFO of freed slots */
static uint32_t ring_head, ring_count;
static uint64_t countdown = 1, rng = 0x9E3779B97F4A7C15ull;
static rh_guard_stats_t stats;
static domain_ctx_t raw_ctx = {RH_DOMAIN_RAW}, mem_ctx = {RH_DOMAIN_MEM},
                    obj_ctx = {RH_DOMAIN_OBJ}, native_ctx = {RH_DOMAIN_NATIVE};
static PyMemAllocatorEx our_alloc;
static struct sigaction old_segv, old_bus;
static volatile int reporting;
static volatile int entries;          /* times on_fault was entered */
static int handler_installed;

/* ---- the report (async-signal-safe) ------------------------------------- */

typedef struct {
    char buf[1024];
    size_t n;
    int fd;
} out_t;

static void out_flush(out_t *o)
{
    size_t done = 0;
    while (done < o->n) {
        ssize_t w = write(o->fd, o->buf + done, o->n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    o->n = 0;
}

static void out_str(out_t *o, const char *s)
{
    while (*s) {
        if (o->n == sizeof(o->buf))
            out_flush(o);
        o->buf[o->n++] = *s++;
    }
}

static void out_hex(out_t *o, uintptr_t v)
{
    char tmp[20];
    int i = 0;
    do {
        tmp[i++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    char s[24] = "0x";
    int k = 2;
    while (i)
        s[k++] = tmp[--i];
    s[k] = 0;
    out_str(o, s);
}

static void out_dec(out_t *o, uint64_t v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char s[24];
    int k = 0;
    while (i)
        s[k++] = tmp[--i];
    s[k] = 0;
    out_str(o, s);
}

static void out_ips(out_t *o, const char *label, const uintptr_t *ips, int n)
{
    out_str(o, label);
    for (int i = 0; i < n; i++) {
        out_str(o, " ");
        out_hex(o, ips[i]);
    }
    out_str(o, "\n");
}

/* The name of the type at one of the candidate words, read through
 * safemem (a system call, never a fault); 0 when none is a type. */
static int type_name(const slot_t *s, char *name, size_t cap)
{
    if (s->domain != RH_DOMAIN_OBJ)
        return 0;
    for (int k = 0; k < RH_NOBJECT_OFFSETS; k++) {
        uintptr_t t = s->type_words[k], meta = 0, metameta = 0, np = 0;
        if (t < 4096 || (t & 7))
            continue;
        if (_rh_safe_read(t + offsetof(PyObject, ob_type), &meta, sizeof(meta)) < 0 || meta < 4096)
            continue;
        if (meta != (uintptr_t)&PyType_Type &&
            (_rh_safe_read(meta + offsetof(PyObject, ob_type), &metameta, sizeof(metameta)) < 0 ||
             metameta != (uintptr_t)&PyType_Type))
            continue;
        if (_rh_safe_read(t + offsetof(PyTypeObject, tp_name), &np, sizeof(np)) < 0 || np < 4096)
            continue;
        memset(name, 0, cap);
        size_t want = cap - 1;
        while (want > 0 && _rh_safe_read(np, name, want) < 0)
            want /= 2;     /* the name may end near an unmapped page */
        name[cap - 1] = 0;
        if (name[0] != 0)
            return 1;
    }
    return 0;
}

static void copy_maps(out_t *o)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    out_flush(o);
    char b[4096];
    for (;;) {
        ssize_t r = read(fd, b, sizeof(b));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t done = 0;
        while (done < (size_t)r) {
            ssize_t w = write(o->fd, b + done, (size_t)r - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
    }
    close(fd);
}

static const char *const DOMAIN_NAMES[] = {"raw", "mem", "obj", "adopted", "native"};

/* Write the report of one error.  s may be NULL (an address in no slot). */
static void write_report(const char *kind, const char *detected, uintptr_t addr,
                         const slot_t *s, const uintptr_t *access, int naccess)
{
    out_t o;
    o.n = 0;
    o.fd = config.report_fd;
    if (o.fd < 0)
        o.fd = 2;
    out_str(&o, "refhound-guard 1\nkind ");
    out_str(&o, kind);
    out_str(&o, "\ndetected ");
    out_str(&o, detected);
    out_str(&o, "\naddress ");
    out_hex(&o, addr);
    out_str(&o, "\n");
    if (s != NULL && s->state != SLOT_UNUSED) {
        out_str(&o, "block ");
        out_hex(&o, s->block);
        out_str(&o, "\nsize ");
        out_dec(&o, s->size);
        out_str(&o, "\ndomain ");
        out_str(&o, s->domain <= RH_DOMAIN_NATIVE ? DOMAIN_NAMES[s->domain] : "?");
        out_str(&o, "\n");
        out_ips(&o, "allocated", s->alloc_ips, s->nalloc);
        if (s->state == SLOT_FREED)
            out_ips(&o, "freed", s->free_ips, s->nfree);
        char name[64];
        if (type_name(s, name, sizeof(name))) {          /* recorded at free */
            out_str(&o, "type ");
            for (char *c = name; *c; c++)
                if (*c < ' ' || *c > '~')
                    *c = '?';
            out_str(&o, name);
            out_str(&o, "\n");
        }
    }
    out_ips(&o, "access", access, naccess);
    out_str(&o, "maps\n");
    copy_maps(&o);
    out_flush(&o);
}

/* ---- slots ---------------------------------------------------------------- */

static inline uintptr_t slot_data(uint32_t i) { return region + page + (uintptr_t)i * stride; }
static inline uintptr_t slot_end(uint32_t i) { return slot_data(i) + DATA_PAGES * page; }
static inline int in_region(uintptr_t p) { return p >= region && p < region_end; }

/* The slot whose data pages or following guard page hold p (p in the
 * region, past the first guard page), or -1. */
static int64_t slot_of(uintptr_t p)
{
    if (p < region + page)
        return -1;
    uint64_t i = (p - region - page) / stride;
    return i < nslots ? (int64_t)i : -1;
}

static inline uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The sampling rate now: the configured one while at most half of the
 * slots hold live blocks; then 4, 16, 64, 256 times rarer as live blocks
 * fill each further eighth, so that long-lived blocks never take every
 * slot and blocks born later (the calls under check) still get guarded.
 * guard_lock held. */
static uint64_t rate_now_unlocked(void)
{
    uint64_t rate = config.rate ? config.rate : 1;
    uint32_t half = nslots / 2;
    if (live_slots > half) {
        unsigned k = (unsigned)(((uint64_t)(live_slots - half) * 8) / nslots) + 1;
        rate <<= 2 * (k > 4 ? 4 : k);
    }
    return rate;
}

/* Is this allocation sampled?  guard_lock held. */
static int sampled_unlocked(size_t size)
{
    if (config.only_size != 0)
        return size == config.only_size;
    uint64_t rate = rate_now_unlocked();
    if (rate <= 1)
        return 1;
    if (--countdown > 0)
        return 0;
    countdown = 1 + next_random() % (2 * rate - 1);
    return 1;
}

/* A slot to use, or -1.  guard_lock held. */
static int64_t take_slot_unlocked(void)
{
    if (fresh < nslots)
        return fresh++;
    if (ring_count == 0)
        return -1;
    uint32_t i = ring[ring_head];
    ring_head = (ring_head + 1) % nslots;
    ring_count--;
    return i;
}

/* The first red-zone byte before a block: REDZONE_BEFORE bytes back,
 * within the block's first page (the pages before it are inaccessible). */
static inline uintptr_t redzone_start(uintptr_t block)
{
    uintptr_t first = block & ~(uintptr_t)(page - 1);
    return block - first > REDZONE_BEFORE ? block - REDZONE_BEFORE : first;
}

static int redzone_intact(const slot_t *s, uintptr_t *bad)
{
    const unsigned char *p = (const unsigned char *)redzone_start(s->block);
    const unsigned char *b = (const unsigned char *)s->block;
    for (; p < b; p++)
        if (*p != REDZONE_BYTE) {
            *bad = (uintptr_t)p;
            return 0;
        }
    /* After the block: to the end of its last page (the slack against the
     * guard page, or the rest of the page in `left` placement). */
    const unsigned char *e = (const unsigned char *)s->block + s->size;
    const unsigned char *end =
        (const unsigned char *)((s->block + s->size + page - 1) & ~(uintptr_t)(page - 1));
    for (; e < end; e++)
        if (*e != REDZONE_BYTE) {
            *bad = (uintptr_t)e;
            return 0;
        }
    return 1;
}

/* Report an error found in a hook and end the process. */
static void fail_in_hook(const char *kind, uintptr_t addr, const slot_t *s)
{
    if (__atomic_exchange_n(&reporting, 1, __ATOMIC_ACQ_REL) == 0) {
        uintptr_t ips[FRAMES];
        int n = _rh_native_backtrace(ips, FRAMES);
        write_report(kind, "free", addr, s, ips, n);
    }
    /* faulthandler (when on) prints the Python traceback, then the process
     * dies of SIGABRT. */
    signal(SIGSEGV, SIG_DFL);
    raise(SIGABRT);
    _exit(134);
}

/* A stack for a guarded block: the fast walk (cached CFI rules), or the
 * compiler's unwinder when the fast walk stopped early (a frame without a
 * simple rule) with few frames beyond refhound's own. */
#define MIN_FOREIGN_FRAMES 8
static int capture(uintptr_t *ips)
{
    int n = _rh_fast_backtrace(ips, FRAMES, 0);
    int foreign = 0;
    for (int k = 0; k < n; k++)
        foreign += !_rh_unwind_is_self(ips[k]);
    if (n < FRAMES && foreign < MIN_FOREIGN_FRAMES)
        n = _rh_native_backtrace(ips, FRAMES);
    return n;
}

static void *guard_alloc(domain_ctx_t *ctx, size_t size, int zero)
{
    if (size == 0 || size > DATA_PAGES * page)
        return NULL;
    pthread_mutex_lock(&guard_lock);
    if (!sampled_unlocked(size)) {
        pthread_mutex_unlock(&guard_lock);
        return NULL;
    }
    int64_t i = take_slot_unlocked();
    if (i < 0) {
        stats.budget_full++;        /* sampled, but every slot holds a live block */
        pthread_mutex_unlock(&guard_lock);
        return NULL;
    }
    slot_t *s = &slots[i];
    size_t rounded = config.exact ? size : (size + ALIGNMENT - 1) & ~(size_t)(ALIGNMENT - 1);
    uintptr_t block = config.left ? slot_data((uint32_t)i) : slot_end((uint32_t)i) - rounded;
    uintptr_t first = block & ~(uintptr_t)(page - 1);
    uintptr_t last = config.left ? ((block + rounded + page - 1) & ~(uintptr_t)(page - 1))
                                 : slot_end((uint32_t)i);
    if (mprotect((void *)first, last - first, PROT_READ | PROT_WRITE) != 0) {
        /* The kernel refused (out of mappings): give the slot back. */
        s->state = SLOT_UNUSED;
        ring[(ring_head + ring_count) % nslots] = (uint32_t)i;
        ring_count++;
        stats.budget_full++;
        pthread_mutex_unlock(&guard_lock);
        return NULL;
    }
    memset((void *)redzone_start(block), REDZONE_BYTE, block - redzone_start(block));
    if (zero)
        memset((void *)block, 0, size);
    memset((void *)(block + size), REDZONE_BYTE, last - (block + size));
    s->block = block;
    s->size = size;
    s->state = SLOT_LIVE;
    s->domain = (uint8_t)ctx->domain;
    s->nfree = 0;
    memset(s->type_words, 0, sizeof(s->type_words));    /* known at free */
    live_slots++;
    stats.guarded++;
    pthread_mutex_unlock(&guard_lock);
    s->nalloc = (uint8_t)capture(s->alloc_ips);
    return (void *)block;
}

/* Free a block of the region. */
static void guard_free_block(uintptr_t p)
{
    int64_t i = slot_of(p);
    slot_t *s = i >= 0 ? &slots[i] : NULL;
    if (s == NULL || s->state == SLOT_UNUSED || p != s->block || p >= slot_end((uint32_t)i))
        fail_in_hook("invalid-free", p, s != NULL && s->state != SLOT_UNUSED ? s : NULL);
    if (s->state == SLOT_FREED)
        fail_in_hook("double-free", p, s);
    if (s->domain == RH_DOMAIN_OBJ) {
        for (int k = 0; k < RH_NOBJECT_OFFSETS; k++) {
            size_t off = rh_object_offset(k);
            s->type_words[k] = off + sizeof(PyObject) <= s->size
                ? (uintptr_t)((PyObject *)(p + off))->ob_type : 0;
        }
    }
    uintptr_t bad = 0;
    if (!redzone_intact(s, &bad))
        fail_in_hook(bad < s->block ? "underflow" : "overflow", bad, s);
    s->nfree = (uint8_t)capture(s->free_ips);
    pthread_mutex_lock(&guard_lock);
    uintptr_t first = s->block & ~(uintptr_t)(page - 1);
    mprotect((void *)first, slot_end((uint32_t)i) - first, PROT_NONE);
    s->state = SLOT_FREED;
    ring[(ring_head + ring_count) % nslots] = (uint32_t)i;
    ring_count++;
    live_slots--;
    stats.freed++;
    pthread_mutex_unlock(&guard_lock);
}

/* ---- the hooks ---------------------------------------------------------- */

static void *hook_malloc(void *c, size_t size)
{
    domain_ctx_t *ctx = (domain_ctx_t *)c;
    void *p = guard_alloc(ctx, size, 0);
    if (p != NULL)
        return p;
    __atomic_fetch_add(&stats.passed, 1, __ATOMIC_RELAXED);
    return ctx->prev.malloc(ctx->prev.ctx, size);
}

static void *hook_calloc(void *c, size_t nelem, size_t elsize)
{
    domain_ctx_t *ctx = (domain_ctx_t *)c;
    if (elsize == 0 || nelem <= ((size_t)-1) / elsize) {
        void *p = guard_alloc(ctx, nelem * elsize, 1);
        if (p != NULL)
            return p;
    }
    __atomic_fetch_add(&stats.passed, 1, __ATOMIC_RELAXED);
    return ctx->prev.calloc(ctx->prev.ctx, nelem, elsize);
}

static void hook_free(void *c, void *ptr)
{
    domain_ctx_t *ctx = (domain_ctx_t *)c;
    if (ptr == NULL)
        return;
    if (in_region((uintptr_t)ptr)) {
        guard_free_block((uintptr_t)ptr);
        return;
    }
    ctx->prev.free(ctx->prev.ctx, ptr);
}

/* Realloc of a block of the region: a new block (guarded or not, from
 * alloc), the old one freed as guarded blocks are. */
static void *move_block(void *ptr, size_t size, void *(*alloc)(void *, size_t), void *c)
{
    int64_t i = slot_of((uintptr_t)ptr);
    slot_t *s = i >= 0 ? &slots[i] : NULL;
    if (s == NULL || s->state == SLOT_UNUSED || (uintptr_t)ptr != s->block)
        fail_in_hook("invalid-free", (uintptr_t)ptr, s != NULL && s->state != SLOT_UNUSED ? s : NULL);
    if (s->state == SLOT_FREED)
        fail_in_hook("use-after-free", (uintptr_t)ptr, s);
    void *q = alloc(c, size ? size : 1);
    if (q == NULL)
        return NULL;
    memcpy(q, ptr, s->size < size ? s->size : size);
    guard_free_block((uintptr_t)ptr);
    return q;
}

static void *hook_realloc(void *c, void *ptr, size_t size)
{
    domain_ctx_t *ctx = (domain_ctx_t *)c;
    if (ptr == NULL)
        return hook_malloc(c, size);
    if (!in_region((uintptr_t)ptr)) {
        /* Keep it where it was born: pymalloc's realloc knows its own. */
        return ctx->prev.realloc(ctx->prev.ctx, ptr, size);
    }
    return move_block(ptr, size, hook_malloc, c);
}

/* ---- the native heap ------------------------------------------------------
 * Slotted under native.c's malloc-family wrappers: the extensions' malloc,
 * calloc, realloc and free (in any thread).  Blocks not guarded, and every
 * aligned allocation, come from the C library (_rh_native_libc(), read at
 * each call: in preload mode it is known only once native tracking has
 * started); a free or realloc of an address outside the region goes there. */

static void *native_malloc(size_t size)
{
    void *p = guard_alloc(&native_ctx, size, 0);
    if (p != NULL)
        return p;
    __atomic_fetch_add(&stats.passed, 1, __ATOMIC_RELAXED);
    return _rh_native_libc()->malloc(size);
}

static void *native_malloc_ctx(void *unused, size_t size)
{
    (void)unused;
    return native_malloc(size);
}

static void *native_calloc(size_t nelem, size_t elsize)
{
    if (elsize == 0 || nelem <= ((size_t)-1) / elsize) {
        void *p = guard_alloc(&native_ctx, nelem * elsize, 1);
        if (p != NULL)
            return p;
    }
    __atomic_fetch_add(&stats.passed, 1, __ATOMIC_RELAXED);
    return _rh_native_libc()->calloc(nelem, elsize);
}

static void native_free(void *ptr)
{
    if (ptr != NULL && in_region((uintptr_t)ptr)) {
        guard_free_block((uintptr_t)ptr);
        return;
    }
    _rh_native_libc()->free(ptr);
}

static void *native_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return native_malloc(size);
    if (!in_region((uintptr_t)ptr))
        return _rh_native_libc()->realloc(ptr, size);
    if (size == 0) {                /* the C library's realloc(p, 0): a free */
        native_free(ptr);
        return NULL;
    }
    return move_block(ptr, size, native_malloc_ctx, NULL);
}

static int native_posix_memalign(void **out, size_t alignment, size_t size)
{
    return _rh_native_libc()->posix_memalign(out, alignment, size);
}

static void *native_aligned_alloc(size_t alignment, size_t size)
{
    return _rh_native_libc()->aligned_alloc(alignment, size);
}

static void *native_memalign(size_t alignment, size_t size)
{
    return _rh_native_libc()->memalign(alignment, size);
}

static void *native_valloc(size_t size) { return _rh_native_libc()->valloc(size); }
static void *native_pvalloc(size_t size) { return _rh_native_libc()->pvalloc(size); }

static const rh_native_allocator_t native_heap = {
    native_malloc, native_calloc, native_realloc, native_free, native_posix_memalign,
    native_aligned_alloc, native_memalign, native_valloc, native_pvalloc,
};

/* ---- the fault handler ------------------------------------------------------ */

/* What an access at addr (in the region) is, and to which slot. */
static const char *classify(uintptr_t addr, const slot_t **which)
{
    int64_t i = slot_of(addr);
    *which = NULL;
    if (i < 0) {                            /* the guard page before slot 0 */
        if (nslots > 0 && slots[0].state != SLOT_UNUSED)
            *which = &slots[0];
        return *which && slots[0].state == SLOT_FREED ? "use-after-free" : "underflow";
    }
    const slot_t *s = &slots[i];
    if (addr < slot_end((uint32_t)i)) {     /* in the data pages */
        *which = s->state == SLOT_UNUSED ? NULL : s;
        if (s->state == SLOT_FREED)
            return "use-after-free";
        if (s->state == SLOT_LIVE)
            return addr < s->block ? "underflow" : "overflow";
        return "wild-access";
    }
    /* In the guard page behind slot i: past its block, or before slot i+1's. */
    const slot_t *next = (uint64_t)i + 1 < nslots ? &slots[i + 1] : NULL;
    int near_end = addr - slot_end((uint32_t)i) < page / 2;
    if (near_end && s->state != SLOT_UNUSED) {
        *which = s;
        return s->state == SLOT_FREED ? "use-after-free" : "overflow";
    }
    if (next != NULL && next->state != SLOT_UNUSED) {
        *which = next;
        return next->state == SLOT_FREED ? "use-after-free" : "underflow";
    }
    if (s->state != SLOT_UNUSED) {
        *which = s;
        return s->state == SLOT_FREED ? "use-after-free" : "overflow";
    }
    return "wild-access";
}

static void on_fault(int sig, siginfo_t *info, void *ucontext)
{
    struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
    uintptr_t addr = (uintptr_t)info->si_addr;
    if (__atomic_fetch_add(&entries, 1, __ATOMIC_ACQ_REL) > 0) {
        /* Back again (a previous handler re-raised to us, or a second
         * fault): die now, never loop. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    if (info->si_code > 0 && in_region(addr) &&
        __atomic_exchange_n(&reporting, 1, __ATOMIC_ACQ_REL) == 0) {
        const slot_t *s = NULL;
        const char *kind = classify(addr, &s);
        uintptr_t ips[FRAMES + 8], access[FRAMES];
        int n = _rh_native_backtrace(ips, FRAMES + 8), na = 0;
        uintptr_t pc = 0;
#if defined(__x86_64__)
        pc = (uintptr_t)((ucontext_t *)ucontext)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
        pc = (uintptr_t)((ucontext_t *)ucontext)->uc_mcontext.pc;
#endif
        /* Leave out the handler's and the signal trampoline's frames: the
         * access stack starts at the faulting instruction. */
        int start = -1;
        for (int k = 0; k < n; k++)
            if (ips[k] == pc) {
                start = k;
                break;
            }
        if (start < 0 && pc != 0)
            access[na++] = pc;
        for (int k = start < 0 ? 0 : start; k < n && na < FRAMES; k++)
            access[na++] = ips[k];
        write_report(kind, "fault", addr, s, access, na);
    }
    /* The previous handler (faulthandler, or the default action) sees the
     * fault again when the instruction is retried. */
    sigaction(sig, old, NULL);
}

/* ---- start ---------------------------------------------------------------- */

/* Put on_fault on top again when another handler was installed after
 * it (pytest's faulthandler re-raises with raise(), which loses the
 * faulting address): the one found there becomes the previous handler. */
void _rh_guard_rearm(void)
{
    if (!handler_installed)
        return;
    struct sigaction cur, sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, NULL, &cur) == 0 && cur.sa_sigaction != on_fault)
        sigaction(SIGSEGV, &sa, &old_segv);
    if (sigaction(SIGBUS, NULL, &cur) == 0 && cur.sa_sigaction != on_fault)
        sigaction(SIGBUS, &sa, &old_bus);
}

static int install_handler(const char **why)
{
    static char altstack[1 << 16];
    stack_t ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_sp = altstack;
    ss.ss_size = sizeof(altstack);
    if (sigaltstack(&ss, NULL) != 0) {
        *why = "sigaltstack failed";
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0 || sigaction(SIGBUS, &sa, &old_bus) != 0) {
        *why = "sigaction failed";
        return -1;
    }
    handler_installed = 1;
    return 0;
}

/* A fork while another thread holds guard_lock (the raw domain and the
 * native heap allocate in any thread) must not leave the child's lock held
 * forever: fork waits for it, and the child starts with a fresh one. */
static void atfork_prepare(void) { pthread_mutex_lock(&guard_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&guard_lock); }
static void atfork_child(void) { pthread_mutex_init(&guard_lock, NULL); }

static uint32_t slot_count(size_t budget)
{
    uint64_t n = budget / page;
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char b[32] = {0};
        if (read(fd, b, sizeof(b) - 1) > 0) {
            uint64_t limit = strtoull(b, NULL, 10);
            /* A live slot splits the region into two more mappings; leave
             * half of the limit to the program. */
            if (limit / 4 < n)
                n = limit / 4;
        }
        close(fd);
    }
    if (n > MAX_SLOTS)
        n = MAX_SLOTS;
    if (n < MIN_SLOTS)
        n = MIN_SLOTS;
    return (uint32_t)n;
}

int _rh_guard_start(const rh_guard_config_t *cfg, const char **why)
{
    if (installed) {
        *why = "the guard allocator is already installed";
        return -1;
    }
    config = *cfg;
    if (config.rate == 0)
        config.rate = 1;
    page = (size_t)sysconf(_SC_PAGESIZE);
    stride = (DATA_PAGES + 1) * page;
    nslots = slot_count(config.budget);
    size_t region_size = page + (size_t)nslots * stride;
    void *r = mmap(NULL, region_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (r == MAP_FAILED) {
        *why = "the guarded region could not be reserved (mmap failed)";
        return -1;
    }
    size_t meta = (size_t)nslots * sizeof(slot_t) + (size_t)nslots * sizeof(uint32_t);
    void *m = _rh_own_map(meta);
    if (m == NULL) {
        munmap(r, region_size);
        *why = "the guard's slot table could not be mapped (mmap failed)";
        return -1;
    }
    if (install_handler(why) < 0) {
        munmap(r, region_size);
        _rh_own_unmap(m, meta);
        return -1;
    }
    region = (uintptr_t)r;
    region_end = region + region_size;
    slots = (slot_t *)m;
    ring = (uint32_t *)((char *)m + (size_t)nslots * sizeof(slot_t));
    stats.slots = nslots;
    rng ^= (uint64_t)getpid() << 17;
    countdown = 1 + next_random() % (2 * (uint64_t)config.rate - 1);
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &raw_ctx.prev);
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &mem_ctx.prev);
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &obj_ctx.prev);
    our_alloc.malloc = hook_malloc;
    our_alloc.calloc = hook_calloc;
    our_alloc.realloc = hook_realloc;
    our_alloc.free = hook_free;
    our_alloc.ctx = &raw_ctx;
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &our_alloc);
    our_alloc.ctx = &mem_ctx;
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &our_alloc);
    our_alloc.ctx = &obj_ctx;
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &our_alloc);
    _rh_native_set_allocator(&native_heap);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    installed = 1;
    return 0;
}

int _rh_guard_active(void) { return installed; }

void _rh_guard_stats(rh_guard_stats_t *out)
{
    pthread_mutex_lock(&guard_lock);
    *out = stats;
    out->slots_used = fresh;
    out->live = live_slots;
    out->rate_now = rate_now_unlocked();
    pthread_mutex_unlock(&guard_lock);
}
