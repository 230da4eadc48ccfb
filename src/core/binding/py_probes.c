/* py_probes.c — refhound._core: the probes of refhound.h seen from Python
 * (probes.c), and the capsule _C_API through which extension modules
 * reach them.
 */
#include "binding.h"
#include "probes.h"

int _rh_py_add_probes_capsule(PyObject *module)
{
    PyObject *cap = PyCapsule_New((void *)_rh_probes_capi(), REFHOUND_CAPSULE_NAME, NULL);
    if (cap == NULL)
        return -1;
    if (PyModule_AddObject(module, "_C_API", cap) < 0) {
        Py_DECREF(cap);
        return -1;
    }
    return 0;
}

static PyObject *py_probe_totals(PyObject *mod, PyObject *unused)
{
    refhound_totals_t t;
    const char *why = NULL;
    if (_rh_probe_totals(&t, &why) < 0) {
        PyErr_Format(PyExc_RuntimeError, "refhound: %s", why);
        return NULL;
    }
    return Py_BuildValue("{s:L,s:L,s:L,s:k}", "refs", t.refs, "objects", t.objects,
                         "debug_refs", t.debug_refs, "epoch", t.epoch);
}

static PyObject *py_probe_marks(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"clear", NULL};
    int clear = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwlist, &clear))
        return NULL;
    PyObject *out = PyList_New(0);
    size_t n = _rh_probe_marks_count();
    for (size_t i = 0; out != NULL && i < n; i++) {
        const rh_mark_t *m = _rh_probe_mark(i);
        PyObject *item = Py_BuildValue("{s:s,s:s,s:i,s:L,s:L,s:L,s:k}", "label", m->label,
                                       "file", m->file, "line", m->line,
                                       "refs", m->totals.refs, "objects", m->totals.objects,
                                       "debug_refs", m->totals.debug_refs,
                                       "epoch", m->totals.epoch);
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    if (out != NULL && clear)
        _rh_probe_marks_clear();
    return out;
}

static PyObject *py_probe_describe(PyObject *mod, PyObject *obj)
{
    char buf[320];
    const char *why = NULL;
    if (_rh_probe_describe(obj, buf, sizeof(buf), &why) < 0) {
        PyErr_Format(PyExc_RuntimeError, "refhound: %s", why);
        return NULL;
    }
    return PyUnicode_FromString(buf);
}

PyMethodDef _rh_py_probes_methods[] = {
    {"probe_totals", py_probe_totals, METH_NOARGS,
     "probe_totals() -> {refs, objects, debug_refs, epoch}: what REFHOUND_COUNTREFS() sees"},
    {"probe_marks", (PyCFunction)(void (*)(void))py_probe_marks, METH_VARARGS | METH_KEYWORDS,
     "probe_marks(clear=False) -> [{label, file, line, refs, objects, debug_refs, epoch}] "
     "recorded by REFHOUND_MARK()"},
    {"probe_describe", py_probe_describe, METH_O,
     "probe_describe(obj) -> str: what REFHOUND_DESCRIBE(obj) prints"},
    {NULL}
};
