/* py_valgrind.c — refhound._core: Valgrind client requests (vgclient.c)
 * and the memcheck-annotated pool allocator (vgpool.c).
 */
#include "binding.h"
#include "vgclient.h"
#include "vgpool.h"

static PyObject *py_valgrind_running(PyObject *mod, PyObject *unused)
{
    return PyLong_FromLong(_rh_vg_running());
}

static PyObject *py_valgrind_count_errors(PyObject *mod, PyObject *unused)
{
    return PyLong_FromLong(_rh_vg_count_errors());
}

static PyObject *py_valgrind_leak_check(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"mode", "hide_gc", NULL};
    const char *name = "changed";
    int hide_gc = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|sp", kwlist, &name, &hide_gc))
        return NULL;
    int mode = _rh_vg_mode(name);
    if (mode < 0) {
        PyErr_Format(PyExc_ValueError,
                     "refhound: leak check mode '%s': expected full, added, changed or quick",
                     name);
        return NULL;
    }
    rh_vg_leaks_t r;
    _rh_vg_leak_check(mode, hide_gc, &r);
    return Py_BuildValue("{s:O,s:i,s:k,s:k,s:k,s:k,s:k,s:k,s:k,s:k}",
                         "ran", r.ran ? Py_True : Py_False, "gc_rings_hidden", r.gc_rings_hidden,
                         "leaked_bytes", r.leaked, "dubious_bytes", r.dubious,
                         "reachable_bytes", r.reachable, "suppressed_bytes", r.suppressed,
                         "leaked_blocks", r.b_leaked, "dubious_blocks", r.b_dubious,
                         "reachable_blocks", r.b_reachable, "suppressed_blocks", r.b_suppressed);
}

static PyObject *py_valgrind_printf(PyObject *mod, PyObject *arg)
{
    const char *text = PyUnicode_AsUTF8(arg);
    if (text == NULL)
        return NULL;
    _rh_vg_printf(text);
    Py_RETURN_NONE;
}

static PyObject *py_vgpool_install(PyObject *mod, PyObject *args, PyObject *kw)
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

static PyObject *py_vgpool_stats(PyObject *mod, PyObject *unused)
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

static PyObject *py_vgpool_owns(PyObject *mod, PyObject *arg)
{
    void *p = PyLong_AsVoidPtr(arg);
    if (p == NULL && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(_rh_vgpool_owns(p));
}

PyMethodDef _rh_py_valgrind_methods[] = {
    {"valgrind_running", py_valgrind_running, METH_NOARGS,
     "valgrind_running() -> int: RUNNING_ON_VALGRIND (0 when not under Valgrind)"},
    {"valgrind_count_errors", py_valgrind_count_errors, METH_NOARGS,
     "valgrind_count_errors() -> int: errors memcheck has seen so far (repeats included)"},
    {"valgrind_leak_check", (PyCFunction)(void (*)(void))py_valgrind_leak_check,
     METH_VARARGS | METH_KEYWORDS,
     "valgrind_leak_check(mode='changed', hide_gc=True) -> dict: run memcheck's leak search "
     "(full, added, changed or quick), the GC's links hidden, and return its totals"},
    {"valgrind_printf", py_valgrind_printf, METH_O,
     "valgrind_printf(text): write a marker line into Valgrind's log/XML"},
    {"vgpool_install", (PyCFunction)(void (*)(void))py_vgpool_install,
     METH_VARARGS | METH_KEYWORDS,
     "vgpool_install(quarantine=21000000, annotate=None): make the memcheck-annotated pool "
     "allocator the mem and obj allocator of this process (for good); quarantine: bytes of "
     "freed blocks held back before reuse (at least memcheck's --freelist-vol); annotate: "
     "None when under Valgrind, True always, False never (a blind pool, for measurements)"},
    {"vgpool_stats", py_vgpool_stats, METH_NOARGS, "figures of the pool allocator"},
    {"vgpool_owns", py_vgpool_owns, METH_O,
     "vgpool_owns(address) -> bool: is address a live block of the pool allocator?"},
    {NULL}
};
