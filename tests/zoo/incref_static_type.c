/*
 * Bug zoo: incref_static_type -- extra Py_INCREF on a static type object.
 *
 * leaky() takes a reference to the static type &PyLong_Type (as code does
 * before returning or storing a type), uses it, and never releases it.
 * Static types are not allocated, so only the refcount of int's type object
 * grows.  The culprit is the Py_INCREF line.
 *
 * zoo-kind: extra-incref
 * zoo-expect: refs=1 objects=0 blocks=0
 * zoo-description: extra Py_INCREF on the static type object PyLong_Type
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *type = (PyObject *)&PyLong_Type;
    Py_INCREF(type);  /* @culprit */
    int ok = PyType_Check(type);
    /* BUG: missing Py_DECREF(type); */
    if (!ok) {
        PyErr_SetString(PyExc_AssertionError, "not a type");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *type = (PyObject *)&PyLong_Type;
    Py_INCREF(type);
    int ok = PyType_Check(type);
    Py_DECREF(type);
    if (!ok) {
        PyErr_SetString(PyExc_AssertionError, "not a type");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one reference to int per call."},
    {"clean", clean, METH_NOARGS, "Same code, reference released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "incref_static_type", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_incref_static_type(void)
{
    return PyModule_Create(&moduledef);
}
