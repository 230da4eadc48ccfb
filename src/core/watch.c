/* watch.c — hardware write watchpoints on the refcount fields of objects.
 *
 * For an object whose refcount grows (or falls) call after call but that
 * nothing allocates (an extra Py_INCREF on None), the only trace of the bug
 * is the write itself.  watch() arms one x86 debug register per object
 * (perf_event_open, PERF_TYPE_BREAKPOINT, HW_BREAKPOINT_W, 8 bytes on
 * ob_refcnt, this thread only) with sigtrap=1, so every write raises a
 * synchronous SIGTRAP right after the writing instruction.  The handler
 * only records: which object, the change of its refcount since the last
 * write, the interrupted instruction and the return addresses of its
 * callers (the compiler's unwinder, which steps through the signal frame),
 * into memory mapped before arming.  The target runs `calls` times, the
 * watchpoints are closed, and the hits go back to Python for symbolization.
 *
 * Up to four objects at once (four debug registers on x86-64).  When the
 * kernel refuses (perf_event_paranoid, seccomp, no hardware breakpoints),
 * watch() says why and the check goes on without this detail.  One watch
 * at a time; the previous SIGTRAP disposition is restored afterwards.
 */
#include "rh_internal.h"

#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define MAX_WATCH 4
#define HIT_DEPTH 24

#ifndef TRAP_PERF
#define TRAP_PERF 6
#endif

typedef struct {
    int64_t value;                 /* the refcount word after the write */
    uint32_t object;
    int32_t delta;
    uint16_t nframes;
    uint16_t returned;             /* the increment the call returned to us */
    uintptr_t frames[HIT_DEPTH];   /* frames[0]: the instruction after the write */
} hit_t;

typedef struct {
    uintptr_t addr;                /* &ob_refcnt */
    Py_ssize_t last;
    int fd;
} watched_t;

static watched_t watched[MAX_WATCH];
static int nwatched;
static hit_t *hits;
static size_t max_hits;
static volatile size_t nhits;
static volatile size_t dropped;
static volatile int in_handler;
static struct sigaction previous;

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
    /* Which object: the breakpoint address, else the event's sig_data. */
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
        Py_ssize_t delta = now - watched[k].last;
        watched[k].last = now;
        size_t n = nhits;
        if (n < max_hits) {
            hit_t *h = &hits[n];
            h->value = (int64_t)now;
            ucontext_t *uc = (ucontext_t *)ctx;
            uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
            uintptr_t raw[HIT_DEPTH + 8];
            int nraw = _rh_native_backtrace(raw, HIT_DEPTH + 8);
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
            for (int i = start + 1; start >= 0 && i < nraw && h->nframes < HIT_DEPTH; i++)
                h->frames[h->nframes++] = raw[i];
            nhits = n + 1;
        }
        else {
            dropped++;
        }
    }
    in_handler = 0;
}

static int open_watchpoint(uintptr_t addr, int index, int *err)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.type = PERF_TYPE_BREAKPOINT;
    attr.size = sizeof(attr);
    attr.bp_type = HW_BREAKPOINT_W;
    attr.bp_addr = addr;
    attr.bp_len = HW_BREAKPOINT_LEN_8;
    attr.sample_period = 1;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.sigtrap = 1;
    attr.remove_on_exec = 1;
    attr.sig_data = (unsigned long)index;
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        *err = errno;
    return (int)fd;
}

static const char *refusal(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return "the kernel refuses hardware watchpoints (see /proc/sys/kernel/perf_event_paranoid, "
               "or a seccomp filter)";
    case ENOENT:
    case EOPNOTSUPP:
        return "this machine has no hardware breakpoints for perf_event_open";
    case EINVAL:
        return "the kernel does not support synchronous perf signals (Linux 5.13+ needed)";
    case ENOSPC:
        return "no free debug register (a debugger may be using them)";
    case ENOSYS:
        return "perf_event_open is not available (seccomp or an old kernel)";
    default:
        return "perf_event_open failed";
    }
}

static void disarm(void)
{
    for (int i = 0; i < nwatched; i++) {
        if (watched[i].fd >= 0) {
            ioctl(watched[i].fd, PERF_EVENT_IOC_DISABLE, 0);
            close(watched[i].fd);
        }
        watched[i].fd = -1;
    }
    nwatched = 0;
    sigaction(SIGTRAP, &previous, NULL);
}

/* watch(objects, func, args, kwargs, calls, max_hits=65536) ->
 *     {"hits": [(object index, delta, (addresses...))], "dropped": n}
 *   or {"error": reason} when watchpoints cannot be used. */
static PyObject *watch_watch(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"objects", "func", "args", "kwargs", "calls", "max_hits", NULL};
    PyObject *objects, *func, *fargs, *fkwargs;
    Py_ssize_t calls, limit = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OO!On|n", kwlist, &PyList_Type, &objects, &func,
                                     &PyTuple_Type, &fargs, &fkwargs, &calls, &limit))
        return NULL;
#ifdef Py_GIL_DISABLED
    return Py_BuildValue("{s:s}", "error", "watchpoints are not implemented for free-threaded builds");
#endif
    Py_ssize_t n = PyList_GET_SIZE(objects);
    if (n < 1 || n > MAX_WATCH || calls < 1 || limit < 1) {
        PyErr_Format(PyExc_ValueError, "watch: 1 to %d objects, calls >= 1", MAX_WATCH);
        return NULL;
    }
    if (fkwargs == Py_None)
        fkwargs = NULL;
    max_hits = (size_t)limit;
    hits = mmap(NULL, max_hits * sizeof(hit_t), PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (hits == MAP_FAILED) {
        hits = NULL;
        return PyErr_NoMemory();
    }
    /* Touch the pages now: the handler must not fault them in lazily
     * while a lock the kernel needs could be held. */
    memset(hits, 0, max_hits * sizeof(hit_t));
    nhits = dropped = 0;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTRAP, &sa, &previous);

    const char *why = NULL;
    nwatched = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *op = PyList_GET_ITEM(objects, i);
        int err = 0;
        watched[i].addr = (uintptr_t)&op->ob_refcnt;
        watched[i].fd = open_watchpoint(watched[i].addr, (int)i, &err);
        nwatched = (int)i + 1;
        if (watched[i].fd < 0) {
            why = refusal(err);
            break;
        }
    }
    PyObject *result = NULL;
    if (why != NULL) {
        disarm();
        result = Py_BuildValue("{s:s}", "error", why);
        goto done;
    }
    /* Arm; from here on every write to a watched refcount is recorded. */
    for (int i = 0; i < nwatched; i++)
        watched[i].last = Py_REFCNT((PyObject *)PyList_GET_ITEM(objects, i));
    for (int i = 0; i < nwatched; i++)
        ioctl(watched[i].fd, PERF_EVENT_IOC_ENABLE, 0);
    int failed = 0;
    for (Py_ssize_t c = 0; c < calls; c++) {
        size_t before = nhits;
        PyObject *r = PyObject_Call(func, fargs, fkwargs);
        if (r == NULL) {
            failed = 1;
            break;
        }
        /* A call that returns a watched object hands us a reference: its
         * last increment in this call is that reference, not a leak (our
         * DECREF below balances it). */
        for (int k = 0; k < nwatched; k++) {
            if ((PyObject *)PyList_GET_ITEM(objects, k) != r)
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
    for (int i = 0; i < nwatched; i++)
        ioctl(watched[i].fd, PERF_EVENT_IOC_DISABLE, 0);
    disarm();
    if (failed)
        goto done;      /* the target's exception propagates */
    PyObject *list = PyList_New(0);
    if (list == NULL)
        goto done;
    for (size_t i = 0; i < nhits; i++) {
        hit_t *h = &hits[i];
        PyObject *frames = PyTuple_New(h->nframes);
        if (frames == NULL) {
            Py_DECREF(list);
            goto done;
        }
        for (uint32_t f = 0; f < h->nframes; f++)
            PyTuple_SET_ITEM(frames, f, PyLong_FromUnsignedLong(h->frames[f]));
        PyObject *item = Py_BuildValue("(IiNO)", h->object, h->delta, frames,
                                       h->returned ? Py_True : Py_False);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            goto done;
        }
        Py_DECREF(item);
    }
    result = Py_BuildValue("{s:N,s:n}", "hits", list, "dropped", (Py_ssize_t)dropped);
done:
    munmap(hits, max_hits * sizeof(hit_t));
    hits = NULL;
    return result;
}

/* ---- life history of one new object ----------------------------------- */

static const size_t history_offsets[] = {0, 2 * sizeof(void *), 4 * sizeof(void *)};
static volatile uintptr_t history_block;

/* Called from an allocator hook (stacks.c) for the first block allocated
 * from the watched call site: watch each word where its refcount can be
 * (the object's offset is known only once its type is set). */
void _rh_history_arm(uintptr_t block)
{
    if (history_block != 0 || hits == NULL)
        return;
    history_block = block;
    _rh_history_ip = 0;
    for (int i = 0; i < 3; i++) {
        int err = 0;
        watched[i].addr = block + history_offsets[i];
        watched[i].last = *(volatile Py_ssize_t *)watched[i].addr;
        watched[i].fd = open_watchpoint(watched[i].addr, i, &err);
        nwatched = i + 1;
        if (watched[i].fd >= 0)
            ioctl(watched[i].fd, PERF_EVENT_IOC_ENABLE, 0);
    }
}

/* history(address, func, args, kwargs, max_calls=10) -> dict
 * Calls func (recording allocation stacks) until a block is allocated from
 * the call site whose return address is `address`, finishes that call, and
 * returns every write to the object's refcount:
 *   {"hits": [(value after, (addresses...))], "alive": bool, "refcnt": n}
 *   or {"error": reason}. */
static PyObject *watch_history(PyObject *mod, PyObject *args)
{
    unsigned long address;
    PyObject *func, *fargs, *fkwargs;
    Py_ssize_t max_calls = 10;
    if (!PyArg_ParseTuple(args, "kOO!O|n", &address, &func, &PyTuple_Type, &fargs, &fkwargs,
                          &max_calls))
        return NULL;
#ifdef Py_GIL_DISABLED
    return Py_BuildValue("{s:s}", "error", "watchpoints are not implemented for free-threaded builds");
#endif
    if (fkwargs == Py_None)
        fkwargs = NULL;
    /* Probe once that watchpoints are allowed, to say why if not. */
    int err = 0;
    static volatile Py_ssize_t probe;
    int fd = open_watchpoint((uintptr_t)&probe, 0, &err);
    if (fd < 0)
        return Py_BuildValue("{s:s}", "error", refusal(err));
    close(fd);
    max_hits = 16384;
    hits = mmap(NULL, max_hits * sizeof(hit_t), PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (hits == MAP_FAILED) {
        hits = NULL;
        return PyErr_NoMemory();
    }
    memset(hits, 0, max_hits * sizeof(hit_t));
    nhits = dropped = 0;
    nwatched = 0;
    history_block = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTRAP, &sa, &previous);

    int capture = _rh_capture_stacks;
    _rh_capture_stacks = 1;
    _rh_history_ip = (uintptr_t)address;
    int failed = 0;
    for (Py_ssize_t c = 0; c < max_calls && history_block == 0; c++) {
        PyObject *r = PyObject_Call(func, fargs, fkwargs);
        if (r == NULL) {
            failed = 1;
            break;
        }
        Py_DECREF(r);
    }
    _rh_history_ip = 0;
    _rh_capture_stacks = capture;
    for (int i = 0; i < nwatched; i++)
        if (watched[i].fd >= 0)
            ioctl(watched[i].fd, PERF_EVENT_IOC_DISABLE, 0);
    disarm();
    PyObject *result = NULL;
    if (failed)
        goto done;
    if (history_block == 0) {
        result = Py_BuildValue("{s:s}", "error", "no allocation from that call site was seen");
        goto done;
    }
    /* Which word was the refcount: the object recognised in the block now. */
    const rh_block_t *b = _rh_tracker_find(history_block);
    PyObject *op = NULL;
    int alive = b != NULL && _rh_recognize(b, &op, 1) != NULL;
    int k = -1;
    for (int i = 0; alive && i < 3; i++)
        if ((uintptr_t)op == history_block + history_offsets[i])
            k = i;
    if (k < 0) {
        result = Py_BuildValue("{s:O,s:O}", "alive", Py_False, "hits", Py_None);
        goto done;
    }
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < nhits; i++) {
        hit_t *h = &hits[i];
        if (h->object != (uint32_t)k)
            continue;
        PyObject *frames = PyTuple_New(h->nframes);
        if (frames == NULL) {
            Py_CLEAR(list);
            break;
        }
        for (uint32_t f = 0; f < h->nframes; f++)
            PyTuple_SET_ITEM(frames, f, PyLong_FromUnsignedLong(h->frames[f]));
        PyObject *item = Py_BuildValue("(LN)", (long long)h->value, frames);
        if (item == NULL || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    if (list != NULL)
        result = Py_BuildValue("{s:O,s:N,s:n,s:s}", "alive", Py_True, "hits", list, "refcnt",
                               Py_REFCNT(op), "type", Py_TYPE(op)->tp_name);
done:
    munmap(hits, max_hits * sizeof(hit_t));
    hits = NULL;
    history_block = 0;
    return result;
}

PyMethodDef _rh_watch_methods[] = {
    {"history", watch_history, METH_VARARGS,
     "history(address, func, args, kwargs, max_calls=10): follow every write to the refcount "
     "of the first object allocated from the call site at `address`"},
    {"watch", (PyCFunction)(void (*)(void))watch_watch, METH_VARARGS | METH_KEYWORDS,
     "watch(objects, func, args, kwargs, calls, max_hits=65536): call func with a hardware "
     "write watchpoint on each object's refcount; -> {'hits': [(index, delta, addresses)], "
     "'dropped': n} or {'error': reason}"},
    {NULL}
};
