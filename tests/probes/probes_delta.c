/*
 * Probes case: probes_delta -- the public header's probes in a C test.
 *
 * leaky() builds a list of three new ints and forgets the Py_DECREF that
 * balances each PyList_Append, so when the list goes the ints stay: the
 * region assertion REFHOUND_EXPECT_DELTA(region, 0, 0) must fail with
 * "+3 refs, +3 objects".  clean() is the same code with the Py_DECREF.
 * incref_none_leaky() / incref_none_clean() do the same for an extra
 * Py_INCREF(Py_None): "+1 refs, +0 objects".
 *
 * Built twice by tests/test_probes.py: with -DREFHOUND_PROBES (probes
 * live) and without (every probe compiles to nothing, the assertions
 * return 0).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <refhound/refhound.h>

static PyObject *kept;   /* hold(): objects kept on purpose */

static int
build_items(int leak)
{
    PyObject *items = PyList_New(0);
    if (items == NULL)
        return -1;
    for (long i = 0; i < 3; i++) {
        PyObject *v = PyLong_FromLong(7000000 + i);
        if (v == NULL || PyList_Append(items, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(items);
            return -1;
        }
        if (!leak)
            Py_DECREF(v);   /* leaky() forgets this one */
    }
    Py_DECREF(items);
    return 0;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    REFHOUND_DELTA_BEGIN(items_region);
    if (build_items(1) < 0)
        return NULL;
    if (REFHOUND_EXPECT_DELTA(items_region, 0, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    REFHOUND_DELTA_BEGIN(items_region);
    if (build_items(0) < 0)
        return NULL;
    if (REFHOUND_EXPECT_DELTA(items_region, 0, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
incref_none_leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    REFHOUND_DELTA_BEGIN(none_region);
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);   /* one too many */
    Py_DECREF(Py_None);
    if (REFHOUND_EXPECT_DELTA(none_region, 0, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
incref_none_clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    REFHOUND_DELTA_BEGIN(none_region);
    Py_INCREF(Py_None);
    Py_DECREF(Py_None);
    if (REFHOUND_EXPECT_DELTA(none_region, 0, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* COUNTREFS before and after keeping one new int: "+1 refs, +1 objects". */
static PyObject *
hold(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (kept == NULL && (kept = PyList_New(0)) == NULL)
        return NULL;
    /* Room for the append first, so the list's own array does not move
     * between the two probes. */
    if (PyList_Append(kept, Py_None) < 0 || PySequence_DelItem(kept, PyList_GET_SIZE(kept) - 1) < 0)
        return NULL;
    REFHOUND_COUNTREFS();
    PyObject *v = PyLong_FromLong(8000000 + PyList_GET_SIZE(kept));
    if (v == NULL)
        return NULL;
    int rc = PyList_Append(kept, v);
    Py_DECREF(v);
    REFHOUND_COUNTREFS();
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
describe(PyObject *Py_UNUSED(module), PyObject *obj)
{
    REFHOUND_DESCRIBE(obj);
    Py_RETURN_NONE;
}

/* DESCRIBE on a dangling pointer: only ever called with the engine
 * tracking, which never dereferences what it cannot vouch for. */
static PyObject *
describe_freed(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *gone = PyBytes_FromString("a bytes object that is freed before it is described");
    if (gone == NULL)
        return NULL;
    Py_DECREF(gone);
    REFHOUND_DESCRIBE(gone);
    Py_RETURN_NONE;
}

static PyObject *
mark(PyObject *Py_UNUSED(module), PyObject *arg)
{
    const char *label = PyUnicode_AsUTF8(arg);
    if (label == NULL)
        return NULL;
    REFHOUND_MARK(label);
    Py_RETURN_NONE;
}

static PyObject *
available(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(REFHOUND_AVAILABLE());
}

/* Probes on an error path keep the pending exception. */
static PyObject *
raises(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyErr_SetString(PyExc_KeyError, "kept");
    REFHOUND_COUNTREFS();
    REFHOUND_DESCRIBE(Py_None);
    return NULL;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Region assertion over a leak of three ints."},
    {"clean", clean, METH_NOARGS, "The same region without the leak."},
    {"incref_none_leaky", incref_none_leaky, METH_NOARGS, "Region with an extra Py_INCREF(Py_None)."},
    {"incref_none_clean", incref_none_clean, METH_NOARGS, "The same region, balanced."},
    {"hold", hold, METH_NOARGS, "COUNTREFS around keeping one new int."},
    {"describe", describe, METH_O, "REFHOUND_DESCRIBE(obj)."},
    {"describe_freed", describe_freed, METH_NOARGS, "REFHOUND_DESCRIBE of a freed object."},
    {"mark", mark, METH_O, "REFHOUND_MARK(label)."},
    {"available", available, METH_NOARGS, "REFHOUND_AVAILABLE()."},
    {"raises", raises, METH_NOARGS, "Probes with a KeyError pending; raises it."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "probes_delta", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_probes_delta(void)
{
    return PyModule_Create(&moduledef);
}
