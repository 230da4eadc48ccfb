/* vgclient.c — talking to Valgrind from inside the process.
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
 * (binding/py_valgrind.c is their Python face, with the pool allocator's.)
 *
 * Built without Valgrind's headers (HAVE_VALGRIND undefined) the same
 * functions exist: the requests answer 0 and do nothing.  refhound._core's
 * HAVE_VALGRIND attribute says which build this is.
 */
#include "vgclient.h"
#include "tracker.h"

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

/* Run one leak search with the GC's links (and the tracker's tables)
 * hidden; returns how many rings were hidden, -1 if none could be (the
 * search then ran as usual; an exception may be set). */
static void leak_search(int mode)
{
    if (mode == RH_VG_FULL)
        VALGRIND_DO_LEAK_CHECK;
    else if (mode == RH_VG_ADDED)
        VALGRIND_DO_ADDED_LEAK_CHECK;
    else if (mode == RH_VG_CHANGED)
        VALGRIND_DO_CHANGED_LEAK_CHECK;
    else
        VALGRIND_DO_QUICK_LEAK_CHECK;
}

static int search_hidden(int mode)
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
    if (tables)
        _rh_tracker_hide_addresses(1);
    leak_search(mode);
    if (tables)
        _rh_tracker_hide_addresses(0);
#if RH_HAS_GC_HEAD
    for (int i = n - 1; i >= 0; i--)
        ring_flip(starts[i], 1);
#endif
    (void)n;
    return hidden;
}
#endif /* HAVE_VALGRIND */

/* ---- the requests ---------------------------------------------------------- */

long _rh_vg_count_errors(void)
{
#ifdef HAVE_VALGRIND
    return (long)VALGRIND_COUNT_ERRORS;
#else
    return 0;
#endif
}

void _rh_vg_printf(const char *text)
{
#ifdef HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND)
        VALGRIND_PRINTF("%s\n", text);
#else
    (void)text;
#endif
}

int _rh_vg_mode(const char *name)
{
    static const char *const names[] = {"full", "added", "changed", "quick"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void _rh_vg_leak_check(int mode, int hide_gc, rh_vg_leaks_t *out)
{
    memset(out, 0, sizeof(*out));
#ifdef HAVE_VALGRIND
    if (!RUNNING_ON_VALGRIND)
        return;
    if (hide_gc) {
        out->gc_rings_hidden = search_hidden(mode);
        PyErr_Clear();      /* could not hide: the search ran as usual */
    }
    else
        leak_search(mode);
    VALGRIND_COUNT_LEAKS(out->leaked, out->dubious, out->reachable, out->suppressed);
    VALGRIND_COUNT_LEAK_BLOCKS(out->b_leaked, out->b_dubious, out->b_reachable, out->b_suppressed);
    out->ran = 1;
#else
    (void)mode;
    (void)hide_gc;
#endif
}
