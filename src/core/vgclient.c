/* vgclient.c — talking to Valgrind from inside the process, and the
 * Python binding of the Valgrind feature (this file and vgpool.c).
 *
 * Client requests are a few instructions that do nothing on a real CPU and
 * ask Valgrind's core or memcheck for a service when run under it:
 *   valgrind_running()        RUNNING_ON_VALGRIND (0 natively)
 *   valgrind_count_errors()   VALGRIND_COUNT_ERRORS, every error so far,
 *                             repeats of a known error included
 *   valgrind_leak_check(mode) VALGRIND_DO_{,ADDED_,CHANGED_,QUICK_}LEAK_CHECK
 *                             with the GC's links hidden (below), then
 *                             VALGRIND_COUNT_LEAKS/LEAK_BLOCKS: the totals
 *                             of that search
 *   valgrind_printf(text)     VALGRIND_PRINTF: a marker in Valgrind's log
 *                             (a <clientmsg> in its XML), which ties what
 *                             follows to a test or a call
 * and the pool allocator: vgpool_install(), vgpool_stats(), vgpool_owns().
 *
 * Built without Valgrind's headers (HAVE_VALGRIND undefined) the same
 * functions exist: the requests answer 0 and do nothing, vgpool_install
 * raises RuntimeError naming the missing package.  refhound._core's
 * HAVE_VALGRIND attribute says which build this is.
 */
#include "rh_internal.h"

#include <string.h>

#ifdef HAVE_VALGRIND
#include <valgrind/valgrind.h>
#include <valgrind/memcheck.h>
#endif

int _rh_vg_running(void)
{
#ifdef HAVE_VALGRIND
    return (int)RUNNING_ON_VALGRIND;
#else
    return 0;
#endif
}

/* ---- a leak search blind to the GC's lists ------------------------------
 *
 * Every object the cyclic GC tracks is linked into a circular list of its
 * generation through the two words before it (PyGC_Head), and those links
 * are start pointers: to memcheck every tracked object is "still
 * reachable", a leaked container just as much as a live one.  For the
 * length of one leak search we XOR every link word of every generation
 * ring (heads included) with FLIP, which turns them into values no block
 * contains, search, and XOR them back.  A leaked container is then what it
 * is, definitely lost, while live objects stay reachable through the
 * references that keep them alive.
 *
 * The tracker's block tables (mmap'd, so a root for memcheck) hold the
 * address of every tracked block; their address fields get the same
 * treatment while a check runs.
 *
 * Safety: the caller holds the GIL, so no other thread touches the GC
 * lists or the GIL tables, and nothing runs inside the client request;
 * each ring is walked read-only first (closed within a step limit) before
 * anything is written.  Natively (not under Valgrind) none of this runs.
 */
#ifdef HAVE_VALGRIND
#if RH_HAS_GC_HEAD
#define FLIP ((uintptr_t)0xa5a5a5a5a5a5a5a5ULL)
#define RING_LIMIT ((size_t)1 << 30)

typedef struct {
    uintptr_t next, prev;       /* the layout of PyGC_Head (3.8 and newer) */
} gc_link_t;

/* One node of each non-empty generation ring, from gc.get_objects(g). */
static int ring_starts(gc_link_t **starts, int max)
{
    int n = 0;
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL)
        return -1;
    PyObject *lists[3] = {NULL, NULL, NULL};
    for (int g = 0; g < 3 && g < max; g++) {
        lists[g] = PyObject_CallMethod(gc, "get_objects", "(i)", g);
        if (lists[g] == NULL || !PyList_Check(lists[g])) {
            for (int k = 0; k <= g; k++)
                Py_XDECREF(lists[k]);
            Py_DECREF(gc);
            return -1;
        }
    }
    for (int g = 0; g < 3 && g < max; g++) {
        if (PyList_GET_SIZE(lists[g]) > 0)
            starts[n++] = (gc_link_t *)PyList_GET_ITEM(lists[g], 0) - 1;
    }
    /* The lists go (they are GC objects themselves); their first items
     * stay alive, linked where they were. */
    for (int g = 0; g < 3 && g < max; g++)
        Py_DECREF(lists[g]);
    Py_DECREF(gc);
    return n;
}

static int ring_closed(gc_link_t *start)
{
    gc_link_t *h = start;
    for (size_t i = 0; i < RING_LIMIT; i++) {
        gc_link_t *next = (gc_link_t *)h->next;
        if (next == NULL)
            return 0;
        h = next;
        if (h == start)
            return 1;
    }
    return 0;
}

static void ring_flip(gc_link_t *start, int restore)
{
    gc_link_t *h = start;
    do {
        gc_link_t *next = (gc_link_t *)(restore ? h->next ^ FLIP : h->next);
        h->next ^= FLIP;
        h->prev ^= FLIP;
        h = next;
    } while (h != start);
}
#endif /* RH_HAS_GC_HEAD */

static void table_flip(rh_table_t *t)
{
    /* The whole key word (address and probe distance) flips: a non-empty
     * key stays non-empty, and no longer holds an address. */
    for (size_t i = 0; t->slots != NULL && i < t->capacity; i++) {
        if (!rh_block_empty(&t->slots[i]))
            t->slots[i].key ^= 0xa5a5a5a5a5a5a5a5ULL;
    }
}

/* Run one leak search with the GC's links (and the tracker's tables)
 * hidden; returns how many rings were hidden, -1 if none could be (the
 * search then ran as usual; an exception may be set). */
static int search_hidden(const char *mode)
{
    int hidden = 0;
#if RH_HAS_GC_HEAD
    gc_link_t *starts[3];
    int n = ring_starts(starts, 3);
    if (n < 0)
        hidden = -1;
    for (int i = 0; i < n; i++) {
        if (!ring_closed(starts[i])) {
            n = 0;
            hidden = -1;
            break;
        }
    }
    for (int i = 0; i < n; i++)
        ring_flip(starts[i], 0);
    if (hidden == 0)
        hidden = n;
#else
    int n = 0;
    hidden = -1;
#endif
    int tables = _rh_tracker_active();
    if (tables) {
        table_flip(&_rh_gil_table);
        table_flip(&_rh_old_table);
    }
    if (!strcmp(mode, "full"))
        VALGRIND_DO_LEAK_CHECK;
    else if (!strcmp(mode, "added"))
        VALGRIND_DO_ADDED_LEAK_CHECK;
    else if (!strcmp(mode, "changed"))
        VALGRIND_DO_CHANGED_LEAK_CHECK;
    else
        VALGRIND_DO_QUICK_LEAK_CHECK;
    if (tables) {
        table_flip(&_rh_old_table);
        table_flip(&_rh_gil_table);
    }
#if RH_HAS_GC_HEAD
    for (int i = n - 1; i >= 0; i--)
        ring_flip(starts[i], 1);
#endif
    (void)n;
    return hidden;
}
#endif /* HAVE_VALGRIND */

/* ---- binding ------------------------------------------------------------ */

static PyObject *vg_running(PyObject *mod, PyObject *unused)
{
    return PyLong_FromLong(_rh_vg_running());
}

static PyObject *vg_count_errors(PyObject *mod, PyObject *unused)
{
    long n = 0;
#ifdef HAVE_VALGRIND
    n = (long)VALGRIND_COUNT_ERRORS;
#endif
    return PyLong_FromLong(n);
}

static PyObject *vg_leak_check(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"mode", "hide_gc", NULL};
    const char *mode = "changed";
    int hide_gc = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|sp", kwlist, &mode, &hide_gc))
        return NULL;
    if (strcmp(mode, "full") && strcmp(mode, "added") && strcmp(mode, "changed") &&
        strcmp(mode, "quick")) {
        PyErr_Format(PyExc_ValueError,
                     "refhound: leak check mode %R: expected full, added, changed or quick",
                     PyUnicode_FromString(mode));
        return NULL;
    }
    unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
    unsigned long b_leaked = 0, b_dubious = 0, b_reachable = 0, b_suppressed = 0;
    int ran = 0, hidden = 0;
#ifdef HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        if (hide_gc) {
            hidden = search_hidden(mode);
            PyErr_Clear();      /* could not hide: the search ran as usual */
        }
        else if (!strcmp(mode, "full"))
            VALGRIND_DO_LEAK_CHECK;
        else if (!strcmp(mode, "added"))
            VALGRIND_DO_ADDED_LEAK_CHECK;
        else if (!strcmp(mode, "changed"))
            VALGRIND_DO_CHANGED_LEAK_CHECK;
        else
            VALGRIND_DO_QUICK_LEAK_CHECK;
        VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, suppressed);
        VALGRIND_COUNT_LEAK_BLOCKS(b_leaked, b_dubious, b_reachable, b_suppressed);
        ran = 1;
    }
#endif
    return Py_BuildValue("{s:O,s:i,s:k,s:k,s:k,s:k,s:k,s:k,s:k,s:k}",
                         "ran", ran ? Py_True : Py_False, "gc_rings_hidden", hidden,
                         "leaked_bytes", leaked, "dubious_bytes", dubious,
                         "reachable_bytes", reachable, "suppressed_bytes", suppressed,
                         "leaked_blocks", b_leaked, "dubious_blocks", b_dubious,
                         "reachable_blocks", b_reachable, "suppressed_blocks", b_suppressed);
}

static PyObject *vg_printf(PyObject *mod, PyObject *arg)
{
    const char *text = PyUnicode_AsUTF8(arg);
    if (text == NULL)
        return NULL;
#ifdef HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND)
        VALGRIND_PRINTF("%s\n", text);
#endif
    Py_RETURN_NONE;
}

static PyObject *vgpool_install(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"quarantine", "annotate", NULL};
    Py_ssize_t quarantine = 21000000;
    PyObject *annotate_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|nO", kwlist, &quarantine, &annotate_obj))
        return NULL;
    int annotate = -1;
    if (annotate_obj != Py_None && (annotate = PyObject_IsTrue(annotate_obj)) < 0)
        return NULL;
    if (quarantine < 0) {
        PyErr_SetString(PyExc_ValueError, "refhound: quarantine must be 0 or more");
        return NULL;
    }
    const char *why;
    if (_rh_vgpool_install((size_t)quarantine, annotate, &why) < 0) {
        PyErr_Format(PyExc_RuntimeError, "refhound: cannot install the pool allocator: %s", why);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *vgpool_stats(PyObject *mod, PyObject *unused)
{
    rh_vgpool_stats_t s;
    _rh_vgpool_stats(&s);
    return Py_BuildValue("{s:O,s:O,s:n,s:n,s:n,s:L,s:L,s:L,s:L,s:L,s:L}",
                         "installed", s.installed ? Py_True : Py_False,
                         "annotated", s.annotated ? Py_True : Py_False,
                         "quarantine", (Py_ssize_t)s.quarantine,
                         "quarantined", (Py_ssize_t)s.quarantined,
                         "red_zone", (Py_ssize_t)s.red_zone,
                         "allocs", (long long)s.allocs, "frees", (long long)s.frees,
                         "live", (long long)s.live, "bad_frees", (long long)s.bad_frees,
                         "arenas", (long long)s.arenas, "pools", (long long)s.pools);
}

static PyObject *vgpool_owns(PyObject *mod, PyObject *arg)
{
    void *p = PyLong_AsVoidPtr(arg);
    if (p == NULL && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(_rh_vgpool_owns(p));
}

PyMethodDef _rh_vgclient_methods[] = {
    {"valgrind_running", vg_running, METH_NOARGS,
     "valgrind_running() -> int: RUNNING_ON_VALGRIND (0 when not under Valgrind)"},
    {"valgrind_count_errors", vg_count_errors, METH_NOARGS,
     "valgrind_count_errors() -> int: errors memcheck has seen so far (repeats included)"},
    {"valgrind_leak_check", (PyCFunction)(void (*)(void))vg_leak_check,
     METH_VARARGS | METH_KEYWORDS,
     "valgrind_leak_check(mode='changed', hide_gc=True) -> dict: run memcheck's leak search "
     "(full, added, changed or quick), the GC's links hidden, and return its totals"},
    {"valgrind_printf", vg_printf, METH_O,
     "valgrind_printf(text): write a marker line into Valgrind's log/XML"},
    {"vgpool_install", (PyCFunction)(void (*)(void))vgpool_install,
     METH_VARARGS | METH_KEYWORDS,
     "vgpool_install(quarantine=21000000, annotate=None): make the memcheck-annotated pool "
     "allocator the mem and obj allocator of this process (for good); quarantine: bytes of "
     "freed blocks held back before reuse (at least memcheck's --freelist-vol); annotate: "
     "None when under Valgrind, True always, False never (a blind pool, for measurements)"},
    {"vgpool_stats", vgpool_stats, METH_NOARGS, "figures of the pool allocator"},
    {"vgpool_owns", vgpool_owns, METH_O,
     "vgpool_owns(address) -> bool: is address a live block of the pool allocator?"},
    {NULL}
};
