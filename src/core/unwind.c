/* unwind.c — native backtraces: a fast walk for the allocator hooks
 * (x86-64), and the compiler's unwinder for everything else.
 *
 * The compiler's unwinder interprets DWARF call-frame information for every
 * frame of every backtrace, which costs microseconds per allocation.  Almost
 * every frame of a C program follows one of two simple rules — the caller's
 * stack pointer (the CFA) is rsp+N or rbp+N, the return address sits just
 * below the CFA, and the caller's rbp is unchanged or saved at CFA+M — so
 * this file asks libdw for the rule of each return address once
 * (symbols.c), keeps it in a cache keyed by address, and then walks a
 * stack with a few loads per frame.  A frame whose rule is not that simple
 * (or unknown) ends the fast walk; if that leaves too few frames, the
 * compiler's unwinder does the whole backtrace instead.  Given the number
 * of C-to-Python entries on the thread (from the Python frame chain), the
 * walk stops four frames past the outermost eval loop: what lies beyond
 * (Py_RunMain, main, _start) is the same for every block.
 *
 * The walk only reads the current thread's own stack, checking that each
 * CFA moves up by less than a megabyte.  The cache is mmap'd and guarded by
 * unwind_lock (hooks run on any thread; pthread_atfork: a fork waits for
 * it and for libdw's lock, in that order); libdw is reached only on a miss,
 * under symbols.c's own lock.  The fast walk is never used from a signal
 * handler: _rh_native_backtrace (the compiler's unwinder, which steps
 * through the signal frame) is.  Without libdw.so.1 (symbols.c) the fast
 * walk gives no frames and every backtrace is the compiler's unwinder's.
 *
 * Also here: where refhound's own code is (self_lo..self_hi, found once
 * at module init, read-only afterwards), so that its frames are left out;
 * fast_ok (libdw found, set at module init, read-only afterwards).
 */
#include "unwind.h"
#include "symbols.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unwind.h>

#if defined(__x86_64__)
#  define RH_FAST_UNWIND 1
#else
#  define RH_FAST_UNWIND 0
#endif

/* The fast walk's CFI rules come from libdw: set once at module init. */
static int fast_ok;

/* ---- refhound's own code ------------------------------------------------- */

static uintptr_t self_lo, self_hi;

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
    uintptr_t probe = (uintptr_t)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && probe >= lo &&
            probe < lo + ph->p_memsz) {
            self_lo = lo;
            self_hi = lo + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

static pthread_mutex_t unwind_lock = PTHREAD_MUTEX_INITIALIZER;

/* A fork waits for the walk's lock and then for libdw's (the order in
 * which a walk takes them), so a child never inherits either held by a
 * thread that no longer exists: a guarded or tracked allocation in the
 * child would wait on it forever. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&unwind_lock);
    _rh_symbols_fork_prepare();
}

static void atfork_parent(void)
{
    _rh_symbols_fork_parent();
    pthread_mutex_unlock(&unwind_lock);
}

static void atfork_child(void)
{
    _rh_symbols_fork_child();
    pthread_mutex_init(&unwind_lock, NULL);
}

void _rh_unwind_init(void)
{
    static int atfork_done = 0;
    if (!atfork_done) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        atfork_done = 1;
    }
    dl_iterate_phdr(find_self, (void *)(uintptr_t)&_rh_unwind_init);
    _rh_symbols_init();
#if RH_FAST_UNWIND
    fast_ok = _rh_symbols_have_dwarf();
#endif
}

int _rh_unwind_fast_available(void) { return fast_ok; }

int _rh_unwind_is_self(uintptr_t ip) { return ip >= self_lo && ip < self_hi; }

/* ---- the compiler's unwinder ------------------------------------------------ */

typedef struct {
    uintptr_t *ips;
    int n, max;
} trace_t;

static _Unwind_Reason_Code trace_cb(struct _Unwind_Context *ctx, void *arg)
{
    trace_t *t = (trace_t *)arg;
    uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
    if (ip == 0)
        return _URC_END_OF_STACK;
    if (t->n == 0 && _rh_unwind_is_self(ip))
        return _URC_NO_REASON;          /* refhound's own frames */
    t->ips[t->n++] = ip;
    return t->n < t->max ? _URC_NO_REASON : _URC_END_OF_STACK;
}

int _rh_native_backtrace(uintptr_t *ips, int max)
{
    trace_t t = {ips, 0, max};
    _Unwind_Backtrace(trace_cb, &t);
    return t.n;
}

/* ---- the fast walk ---------------------------------------------------------- */

#define CACHE_SLOTS (1u << 16)          /* power of two */
#define MAX_STEP ((uintptr_t)1 << 20)   /* a frame larger than 1 MiB: stop */

typedef struct {
    uintptr_t pc;           /* 0 = empty */
    rh_cfi_rule_t rule;
    int known;              /* 0: no simple rule at this pc */
} cached_rule_t;

static cached_rule_t *cache;

#if RH_FAST_UNWIND
static const cached_rule_t *rule_for(uintptr_t pc)
{
    if (cache == NULL) {
        void *p = mmap(NULL, CACHE_SLOTS * sizeof(cached_rule_t), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        cache = (cached_rule_t *)p;
    }
    size_t i = (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 48) & (CACHE_SLOTS - 1);
    for (int probe = 0; probe < 16; probe++, i = (i + 1) & (CACHE_SLOTS - 1)) {
        cached_rule_t *c = &cache[i];
        if (c->pc == pc)
            return c;
        if (c->pc == 0) {
            c->known = _rh_cfi_rule(pc, &c->rule) == 0;
            c->pc = pc;
            return c;
        }
    }
    return NULL;            /* neighbourhood full: treat as unknown */
}
#endif

/* The eval loop's code, to count its frames (found once at first use). */
static uintptr_t eval_lo, eval_hi;
static int eval_looked_up;

static void find_eval_loop(void)
{
    eval_looked_up = 1;
    void *sym = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
    Dl_info info;
    const ElfW(Sym) *entry = NULL;
    if (sym != NULL && dladdr1(sym, &info, (void **)&entry, RTLD_DL_SYMENT) && entry != NULL &&
        entry->st_size > 0) {
        eval_lo = (uintptr_t)sym;
        eval_hi = eval_lo + entry->st_size;
    }
}

int _rh_fast_backtrace(uintptr_t *ips, int max, int eval_frames)
{
#if RH_FAST_UNWIND
    if (!fast_ok)
        return 0;       /* no libdw: the caller takes the compiler's unwinder */
    if (!eval_looked_up)
        find_eval_loop();
    int after_last_eval = -1;   /* frames still to take after the outermost eval loop */
    /* Start from our caller: this file is built with frame pointers. */
    uintptr_t *fp = (uintptr_t *)__builtin_frame_address(0);
    uintptr_t rip = (uintptr_t)__builtin_return_address(0);
    uintptr_t rsp = (uintptr_t)fp + 16;
    uintptr_t rbp = fp[0];
    int rbp_valid = 1;
    int n = 0;
    pthread_mutex_lock(&unwind_lock);
    while (n < max && rip > 4096 && after_last_eval != 0) {
        ips[n++] = rip;
        if (after_last_eval > 0)
            after_last_eval--;
        else if (eval_frames > 0 && rip >= eval_lo && rip < eval_hi && --eval_frames == 0)
            after_last_eval = 4;
        const cached_rule_t *c = rule_for(rip - 1);     /* rip is a return address */
        if (c == NULL || !c->known)
            break;
        uintptr_t base;
        if (c->rule.cfa_base == RH_CFA_RSP)
            base = rsp;
        else if (rbp_valid)
            base = rbp;
        else
            break;
        uintptr_t cfa = base + (intptr_t)c->rule.cfa_offset;
        if (cfa <= rsp || cfa - rsp > MAX_STEP)
            break;
        uintptr_t next_rip = *(uintptr_t *)(cfa - 8);
        if (c->rule.rbp == RH_RBP_SAVED)
            rbp = *(uintptr_t *)(cfa + (intptr_t)c->rule.rbp_offset);
        else if (c->rule.rbp == RH_RBP_LOST)
            rbp_valid = 0;
        rsp = cfa;
        rip = next_rip;
    }
    pthread_mutex_unlock(&unwind_lock);
    return n;
#else
    (void)ips;
    (void)max;
    (void)eval_frames;
    return 0;
#endif
}

void _rh_unwind_reset(void)
{
    pthread_mutex_lock(&unwind_lock);
    if (cache != NULL)
        munmap(cache, CACHE_SLOTS * sizeof(cached_rule_t));
    cache = NULL;
    pthread_mutex_unlock(&unwind_lock);
}
