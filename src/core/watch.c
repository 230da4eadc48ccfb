/* watch.c — hardware write watchpoints on the refcount words of objects.
 *
 * For an object whose refcount grows (or falls) call after call but that
 * nothing allocates (an extra Py_INCREF on None), the only trace of the bug
 * is the write itself.  _rh_watch_refcounts() arms one x86 debug register
 * per object (hwbp.c: 8 bytes on ob_refcnt, this thread only, a
 * synchronous SIGTRAP after every write), runs the target, and returns the
 * hits.  The handler only records: which word, the change since the last
 * write, the interrupted instruction and the return addresses of its
 * callers (the compiler's unwinder, which steps through the signal frame),
 * into memory mapped and touched before arming.  Up to four words at once
 * (four debug registers on x86-64).  When the kernel refuses, the caller
 * is told why and the check goes on without this detail.
 *
 * The life history (_rh_watch_history) follows one new object from a call
 * site through its birth call.  Its watchpoints are never armed inside an
 * allocator hook: a first call learns the size the site asks for (a
 * provider of the tracker looks for the site's return address in the
 * allocating stack, no system call); before the next call, at a safe
 * point, a spare block of that size is taken from the allocator under the
 * hooks and its possible refcount words are armed; during the call the
 * provider hands that very block to the site's allocation, so every write
 * from the object's first one on is seen.
 *
 * _rh_watch_returns() arms execute breakpoints instead (up to four
 * instructions: the instruction after a call, in the function that made
 * it) and records, per execution, the return value register, the stack
 * pointer and whether an exception is set: what a function returned to its
 * caller, and whether it returned with an error.
 *
 * Shared state and what guards it (one watch at a time, GIL held):
 *   watched[], nwatched   written only while no watchpoint is enabled
 *                         (before enabling, after disabling); the handler
 *                         reads them.
 *   hits, nhits, dropped, watched[].last
 *                         written by the handler only.  The breakpoints
 *                         belong to the calling thread, so the handler runs
 *                         on that thread, between two instructions of the
 *                         calls; the loops read them after each call
 *                         returns, on the same thread (program order).
 *   in_handler            the handler's own re-entry flag.
 *   previous              the SIGTRAP disposition before ours: written
 *                         before ours is installed, restored after.
 *   history (struct)      written by the provider (the obj-domain hook,
 *                         GIL held, on the history's thread only) and by
 *                         the history loop (GIL held, same thread): never
 *                         at the same time.
 */
#include "watch.h"
#include "hwbp.h"
#include "objects.h"
#include "tracker.h"
#include "unwind.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef TRAP_PERF
#define TRAP_PERF 6
#endif

typedef struct {
    uintptr_t addr;                /* the watched word */
    Py_ssize_t last;
    int fd;
} watched_t;

static watched_t watched[RH_MAX_WATCH];   /* words, or instructions (exec_mode) */
static int nwatched;
/* _rh_watch_returns: executions of watched instructions, not writes. */
static int exec_mode;
static rh_exec_hit_t *exec_hits;
static volatile size_t exec_nhits;
static uint32_t exec_call;
static rh_hit_t *hits;
static size_t max_hits;
static volatile size_t nhits;
static volatile size_t dropped;
static volatile int in_handler;
static struct sigaction previous;

/* ---- the signal handler ----------------------------------------------------- */

/* Is an exception set on this thread?  1, 0, or -1 when this version's
 * thread state is not known here.  A plain read of our own thread state. */
static int exception_set(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyThreadState *ts = PyThreadState_GetUnchecked();
    return ts == NULL ? -1 : ts->current_exception != NULL;
#elif PY_VERSION_HEX >= 0x030C0000
    PyThreadState *ts = _PyThreadState_UncheckedGet();
    return ts == NULL ? -1 : ts->current_exception != NULL;
#elif PY_VERSION_HEX >= 0x03090000
    PyThreadState *ts = _PyThreadState_UncheckedGet();
    return ts == NULL ? -1 : ts->curexc_type != NULL;
#else
    return -1;
#endif
}

/* A watched instruction is about to run: which one, the return value
 * register and the stack pointer, whether an exception is set. */
static void on_exec(siginfo_t *si, void *ctx)
{
    ucontext_t *uc = (ucontext_t *)ctx;
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    int k = -1;
    for (int i = 0; i < nwatched; i++)
        if (pc == watched[i].addr)
            k = i;
    if (k < 0) {
        unsigned long data = *(unsigned long *)((char *)si + 24);   /* si_perf_data */
        if (data < (unsigned long)nwatched)
            k = (int)data;
    }
    if (k < 0)
        return;
    size_t n = exec_nhits;
    if (exec_hits == NULL || n >= max_hits) {
        dropped++;
        return;
    }
    rh_exec_hit_t *h = &exec_hits[n];
    h->which = (uint32_t)k;
    h->call = exec_call;
    h->raised = exception_set();
    h->rax = (uintptr_t)uc->uc_mcontext.gregs[REG_RAX];
    h->rsp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    exec_nhits = n + 1;
}

static void on_trap(int sig, siginfo_t *si, void *ctx)
{
    if (si->si_code != TRAP_PERF) {
        /* Not ours: hand it to whoever had SIGTRAP before. */
        if (previous.sa_flags & SA_SIGINFO) {
            if (previous.sa_sigaction)
                previous.sa_sigaction(sig, si, ctx);
        }
        else if (previous.sa_handler != SIG_IGN && previous.sa_handler != SIG_DFL) {
            previous.sa_handler(sig);
        }
        return;
    }
    if (in_handler)
        return;
    in_handler = 1;
    if (exec_mode) {
        on_exec(si, ctx);
        in_handler = 0;
        return;
    }
    /* Which word: the breakpoint address, else the event's sig_data. */
    int k = -1;
    for (int i = 0; i < nwatched; i++)
        if ((uintptr_t)si->si_addr == watched[i].addr)
            k = i;
    if (k < 0) {
        unsigned long data = *(unsigned long *)((char *)si + 24);   /* si_perf_data */
        if (data < (unsigned long)nwatched)
            k = (int)data;
    }
    if (k >= 0) {
        Py_ssize_t now = *(volatile Py_ssize_t *)watched[k].addr;
        /* Unsigned arithmetic: a freed object's word may hold anything, and a
         * signed overflow is undefined; a real refcount step is small. */
        Py_ssize_t delta = (Py_ssize_t)((size_t)now - (size_t)watched[k].last);
        watched[k].last = now;
        size_t n = nhits;
        if (hits != NULL && n < max_hits) {
            rh_hit_t *h = &hits[n];
            h->value = (int64_t)now;
            ucontext_t *uc = (ucontext_t *)ctx;
            uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
            uintptr_t raw[RH_HIT_DEPTH + 8];
            int nraw = _rh_native_backtrace(raw, RH_HIT_DEPTH + 8);
            /* Keep the interrupted frame and its callers. */
            int start = -1;
            for (int i = 0; i < nraw; i++)
                if (raw[i] == pc) {
                    start = i;
                    break;
                }
            h->object = (uint32_t)k;
            h->delta = (int32_t)delta;
            h->frames[0] = pc;
            h->nframes = 1;
            h->returned = 0;
            for (int i = start + 1; start >= 0 && i < nraw && h->nframes < RH_HIT_DEPTH; i++)
                h->frames[h->nframes++] = raw[i];
            nhits = n + 1;
        }
        else {
            dropped++;
        }
    }
    in_handler = 0;
}

/* ---- arming ------------------------------------------------------------------- */

/* Map and touch the hit buffer, install the handler.  -1 out of memory. */
static int begin(size_t limit)
{
    max_hits = limit;
    void *p = mmap(NULL, max_hits * sizeof(rh_hit_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    /* Touch the pages now: the handler must not fault them in lazily
     * while a lock the kernel needs could be held. */
    memset(p, 0, max_hits * sizeof(rh_hit_t));
    hits = (rh_hit_t *)p;
    nhits = dropped = 0;
    nwatched = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTRAP, &sa, &previous);
    return 0;
}

/* Open a watchpoint on each word (disabled); NULL, or why not. */
static const char *open_all(const uintptr_t *addrs, int n)
{
    for (int i = 0; i < n; i++) {
        int err = 0;
        watched[i].addr = addrs[i];
        watched[i].last = *(volatile Py_ssize_t *)addrs[i];
        watched[i].fd = _rh_hwbp_open(addrs[i], 1, (unsigned long)i, &err);
        nwatched = i + 1;
        if (watched[i].fd < 0)
            return _rh_hwbp_refusal(err);
    }
    return NULL;
}

static void enable_all(void)
{
    for (int i = 0; i < nwatched; i++)
        if (watched[i].fd >= 0)
            _rh_hwbp_enable(watched[i].fd);
}

/* Disable and close every watchpoint. */
static void close_all(void)
{
    for (int i = 0; i < nwatched; i++) {
        if (watched[i].fd >= 0) {
            _rh_hwbp_disable(watched[i].fd);
            close(watched[i].fd);
        }
        watched[i].fd = -1;
    }
    nwatched = 0;
}

/* Close everything and hand the hits (and the buffer) to out. */
static void end(rh_hits_t *out)
{
    close_all();
    sigaction(SIGTRAP, &previous, NULL);
    out->hits = hits;
    out->nhits = nhits;
    out->dropped = dropped;
    out->max_hits = max_hits;
    hits = NULL;
}

void _rh_hits_release(rh_hits_t *h)
{
    if (h->hits != NULL)
        munmap(h->hits, h->max_hits * sizeof(rh_hit_t));
    h->hits = NULL;
    h->nhits = 0;
}

/* The target forked and this is its child returning into our loop: leave
 * at once, flushing nothing of the parent's (see session.c). */
static inline void leave_if_forked(uint64_t forks)
{
    if (_rh_tracker_forks() != forks)
        _exit(0);
}

/* ---- refcount words of existing objects ---------------------------------------- */

int _rh_watch_refcounts(PyObject *const *objects, int n, PyObject *func, PyObject *args,
                        PyObject *kwargs, Py_ssize_t calls, size_t limit, rh_hits_t *out)
{
    memset(out, 0, sizeof(*out));
#ifdef Py_GIL_DISABLED
    out->error = "watchpoints are not implemented for free-threaded builds";
    return 0;
#endif
    if (begin(limit) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    uintptr_t addrs[RH_MAX_WATCH];
    for (int i = 0; i < n; i++)
        addrs[i] = (uintptr_t)&objects[i]->ob_refcnt;
    out->error = open_all(addrs, n);
    if (out->error != NULL) {
        end(out);
        _rh_hits_release(out);
        return 0;
    }
    /* Armed: from here on every write to a watched refcount is recorded. */
    enable_all();
    int failed = 0;
    uint64_t forks = _rh_tracker_forks();
    for (Py_ssize_t c = 0; c < calls; c++) {
        size_t before = nhits;
        PyObject *r = PyObject_Call(func, args, kwargs);
        leave_if_forked(forks);
        if (r == NULL) {
            failed = 1;
            break;
        }
        /* A call that returns a watched object hands us a reference: its
         * last increment in this call is that reference, not a leak (our
         * DECREF below balances it). */
        for (int k = 0; k < nwatched; k++) {
            if (objects[k] != r)
                continue;
            for (size_t i = nhits; i-- > before;) {
                if (hits[i].object == (uint32_t)k && hits[i].delta > 0) {
                    hits[i].returned = 1;
                    break;
                }
            }
        }
        Py_DECREF(r);
    }
    end(out);
    if (failed) {
        _rh_hits_release(out);
        return -1;          /* the target's exception propagates */
    }
    return 0;
}

/* ---- executions of instructions: what a function returned ------------------------- */

void _rh_exec_hits_release(rh_exec_hits_t *h)
{
    if (h->hits != NULL)
        munmap(h->hits, h->max_hits * sizeof(rh_exec_hit_t));
    h->hits = NULL;
    h->nhits = 0;
}

int _rh_watch_returns(const uintptr_t *addrs, int n, PyObject *func, PyObject *args,
                      PyObject *kwargs, Py_ssize_t calls, size_t limit, rh_exec_hits_t *out)
{
    memset(out, 0, sizeof(*out));
#ifdef Py_GIL_DISABLED
    out->error = "watchpoints are not implemented for free-threaded builds";
    return 0;
#endif
    void *p = mmap(NULL, limit * sizeof(rh_exec_hit_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        PyErr_NoMemory();
        return -1;
    }
    memset(p, 0, limit * sizeof(rh_exec_hit_t));   /* touched before arming */
    exec_hits = (rh_exec_hit_t *)p;
    exec_nhits = 0;
    exec_call = 0;
    max_hits = limit;
    dropped = 0;
    nwatched = 0;
    exec_mode = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTRAP, &sa, &previous);
    for (int i = 0; i < n; i++) {
        int err = 0;
        watched[i].addr = addrs[i];
        watched[i].fd = _rh_hwbp_open_exec(addrs[i], (unsigned long)i, &err);
        nwatched = i + 1;
        if (watched[i].fd < 0) {
            out->error = _rh_hwbp_refusal(err);
            break;
        }
    }
    int failed = 0;
    if (out->error == NULL) {
        enable_all();
        uint64_t forks = _rh_tracker_forks();
        for (Py_ssize_t c = 0; c < calls; c++) {
            exec_call = (uint32_t)c;
            PyObject *r = PyObject_Call(func, args, kwargs);
            leave_if_forked(forks);
            if (r == NULL) {
                failed = 1;
                break;
            }
            Py_DECREF(r);
        }
    }
    close_all();
    sigaction(SIGTRAP, &previous, NULL);
    exec_mode = 0;
    out->hits = exec_hits;
    out->nhits = exec_nhits;
    out->dropped = dropped;
    out->max_hits = max_hits;
    exec_hits = NULL;
    if (failed || out->error != NULL) {
        _rh_exec_hits_release(out);
        return failed ? -1 : 0;
    }
    return 0;
}

/* ---- the life history of one new object ------------------------------------------- */

enum { H_OFF, H_LEARN, H_ARMED, H_SERVED };

static struct {
    int mode;
    pthread_t thread;
    uintptr_t site;              /* the call site's return address */
    size_t want;                 /* the size the site asked for last, 0 unknown */
    void *spare;                 /* armed block waiting for the site */
    size_t spare_size;
    void *served;                /* the block handed to the site */
} history;

/* Is the call site on the current stack?  (From an allocator hook.) */
static int site_on_stack(void)
{
    uintptr_t ips[40];
    int n = _rh_fast_backtrace(ips, 40, 0);
    if (n < 4)
        n = _rh_native_backtrace(ips, 40);
    for (int i = 0; i < n; i++)
        if (ips[i] == history.site)
            return 1;
    return 0;
}

/* The tracker's provider: obj-domain malloc/calloc, GIL held. */
static void *history_provide(size_t size)
{
    if (history.mode != H_LEARN && history.mode != H_ARMED)
        return NULL;
    if (!pthread_equal(pthread_self(), history.thread) || !site_on_stack())
        return NULL;
    if (history.mode == H_ARMED && size == history.spare_size) {
        void *p = history.spare;
        history.spare = NULL;
        history.served = p;
        history.mode = H_SERVED;
        return p;
    }
    if (history.want == 0 || history.mode == H_ARMED)
        history.want = size;        /* learnt (or the site asked for another size) */
    return NULL;
}

/* Before a call: take a spare block of the learnt size and arm its
 * possible refcount words (the object's offset is known only once its
 * type is set).  0, or -1 when watchpoints are refused (*why). */
static int arm_spare(const char **why)
{
    history.spare_size = history.want;
    history.spare = _rh_tracker_prev_malloc(history.spare_size);
    if (history.spare == NULL)
        return 0;                   /* try again at the next call */
    uintptr_t addrs[RH_NOBJECT_OFFSETS];
    int n = 0;
    for (int k = 0; k < RH_NOBJECT_OFFSETS; k++)
        if (rh_object_offset(k) + sizeof(Py_ssize_t) <= history.spare_size)
            addrs[n++] = (uintptr_t)history.spare + rh_object_offset(k);
    *why = open_all(addrs, n);
    if (*why != NULL) {
        close_all();
        _rh_tracker_prev_free(history.spare);
        history.spare = NULL;
        return -1;
    }
    nhits = dropped = 0;
    enable_all();
    history.mode = H_ARMED;
    return 0;
}

/* After a call that did not take the spare: give it back. */
static void disarm_spare(void)
{
    close_all();
    if (history.spare != NULL)
        _rh_tracker_prev_free(history.spare);
    history.spare = NULL;
    history.mode = H_LEARN;
}

int _rh_watch_history(uintptr_t address, PyObject *func, PyObject *args, PyObject *kwargs,
                      Py_ssize_t max_calls, rh_history_t *out)
{
    memset(out, 0, sizeof(*out));
#ifdef Py_GIL_DISABLED
    out->hits.error = "watchpoints are not implemented for free-threaded builds";
    return 0;
#endif
    /* Probe once that watchpoints are allowed, to say why if not. */
    int err = 0;
    static volatile Py_ssize_t probe;
    int fd = _rh_hwbp_open((uintptr_t)&probe, 1, 0, &err);
    if (fd < 0) {
        out->hits.error = _rh_hwbp_refusal(err);
        return 0;
    }
    close(fd);
    if (begin(16384) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    memset(&history, 0, sizeof(history));
    history.mode = H_LEARN;
    history.thread = pthread_self();
    history.site = address;
    _rh_tracker_set_provider(history_provide);
    int failed = 0;
    const char *why = NULL;
    uint64_t forks = _rh_tracker_forks();
    for (Py_ssize_t c = 0; c < max_calls && history.mode != H_SERVED; c++) {
        if (history.mode == H_LEARN && history.want != 0 && arm_spare(&why) < 0)
            break;
        PyObject *r = PyObject_Call(func, args, kwargs);
        leave_if_forked(forks);
        /* The release of the call's result is part of the birth call:
         * an object it held lets go of its references there. */
        Py_XDECREF(r);
        if (history.mode == H_SERVED)
            close_all();            /* the birth call is over */
        else if (history.mode == H_ARMED)
            disarm_spare();
        if (r == NULL) {
            failed = 1;
            break;
        }
    }
    _rh_tracker_set_provider(NULL);
    if (history.mode == H_ARMED)
        disarm_spare();
    uintptr_t served = (uintptr_t)history.served;
    history.mode = H_OFF;
    end(&out->hits);
    if (failed) {
        _rh_hits_release(&out->hits);
        return -1;
    }
    if (why != NULL || served == 0) {
        out->hits.error = why != NULL ? why : "no allocation from that call site was seen";
        _rh_hits_release(&out->hits);
        return 0;
    }
    out->followed = 1;
    /* Which word was the refcount: the object recognised in the block now. */
    int k = -1;
    PyObject *op = _rh_object_in_block(served);
    for (int i = 0; op != NULL && i < RH_NOBJECT_OFFSETS; i++)
        if ((uintptr_t)op == served + rh_object_offset(i))
            k = i;
    out->alive = k >= 0;
    out->object = k >= 0 ? op : NULL;
    /* Keep the hits of that word only. */
    size_t m = 0;
    for (size_t i = 0; k >= 0 && i < out->hits.nhits; i++)
        if (out->hits.hits[i].object == (uint32_t)k)
            out->hits.hits[m++] = out->hits.hits[i];
    out->hits.nhits = m;
    return 0;
}
