/*
 * Bug zoo: incref_none -- an extra Py_INCREF(Py_None).
 *
 * leaky() fetches a "default" value (None) as a new reference, then takes
 * one more reference "to be safe" and only releases one.  Nothing is
 * allocated: the only symptom is None's refcount growing by one per call.
 * The culprit is the extra Py_INCREF line.
 *
 * zoo-kind: extra-incref
 * zoo-expect: refs=1 objects=0 blocks=0
 * zoo-description: extra Py_INCREF(Py_None) never matched by a Py_DECREF
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
get_default(void)
{
    Py_INCREF(Py_None);
    return Py_None;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *value = get_default();
    Py_INCREF(Py_None);  /* @culprit */
    int is_none = (value == Py_None);
    Py_DECREF(value);
    if (!is_none) {
        PyErr_SetString(PyExc_AssertionError, "default is not None");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *value = get_default();
    int is_none = (value == Py_None);
    Py_DECREF(value);
    if (!is_none) {
        PyErr_SetString(PyExc_AssertionError, "default is not None");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one reference to None per call."},
    {"clean", clean, METH_NOARGS, "Same code without the extra Py_INCREF."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "incref_none", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_incref_none(void)
{
    return PyModule_Create(&moduledef);
}
