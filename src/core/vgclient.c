/* vgclient.c — talking to Valgrind from inside the process, and the
 * Python binding of the Valgrind feature (this file and vgpool.c).
 *
 * Client requests are a few instructions that do nothing on a real CPU and
 * ask Valgrind's core or memcheck for a service when run under it:
 *   valgrind_running()        RUNNING_ON_VALGRIND (0 natively)
 *   valgrind_count_errors()   VALGRIND_COUNT_ERRORS, every error so far,
 *                             repeats of a known error included
 *   valgrind_leak_check(mode) VALGRIND_DO_{,ADDED_,CHANGED_,QUICK_}LEAK_CHECK
 *                             then VALGRIND_COUNT_LEAKS/LEAK_BLOCKS: the
 *                             totals of that search
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

static PyObject *vg_leak_check(PyObject *mod, PyObject *args)
{
    const char *mode = "changed";
    if (!PyArg_ParseTuple(args, "|s", &mode))
        return NULL;
    if (strcmp(mode, "full") && strcmp(mode, "added") && strcmp(mode, "changed") &&
        strcmp(mode, "quick")) {
        PyErr_Format(PyExc_ValueError,
                     "refhound: leak check mode %R: expected full, added, changed or quick",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
    unsigned long b_leaked = 0, b_dubious = 0, b_reachable = 0, b_suppressed = 0;
    int ran = 0;
#ifdef HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        if (!strcmp(mode, "full"))
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
    return Py_BuildValue("{s:O,s:k,s:k,s:k,s:k,s:k,s:k,s:k,s:k}",
                         "ran", ran ? Py_True : Py_False,
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
    Py_ssize_t quarantine = 32768;
    int annotate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|np", kwlist, &quarantine, &annotate))
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
    return Py_BuildValue("{s:O,s:O,s:n,s:n,s:L,s:L,s:L,s:L,s:L,s:L}",
                         "installed", s.installed ? Py_True : Py_False,
                         "annotated", s.annotated ? Py_True : Py_False,
                         "quarantine", (Py_ssize_t)s.quarantine,
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
    {"valgrind_leak_check", vg_leak_check, METH_VARARGS,
     "valgrind_leak_check(mode='changed') -> dict: run memcheck's leak search "
     "(full, added, changed or quick) and return its totals"},
    {"valgrind_printf", vg_printf, METH_O,
     "valgrind_printf(text): write a marker line into Valgrind's log/XML"},
    {"vgpool_install", (PyCFunction)(void (*)(void))vgpool_install,
     METH_VARARGS | METH_KEYWORDS,
     "vgpool_install(quarantine=32768, annotate=False): make the memcheck-annotated pool "
     "allocator the mem and obj allocator of this process (for good)"},
    {"vgpool_stats", vgpool_stats, METH_NOARGS, "figures of the pool allocator"},
    {"vgpool_owns", vgpool_owns, METH_O,
     "vgpool_owns(address) -> bool: is address a live block of the pool allocator?"},
    {NULL}
};
