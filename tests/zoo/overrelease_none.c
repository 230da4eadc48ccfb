/*
 * Bug zoo: overrelease_none -- one Py_DECREF too many on None.
 *
 * lookup() returns a borrowed reference (None when the key is missing);
 * leaky() releases it as if it owned it.  None's reference count falls by
 * one per call; on 3.11 the day it reaches zero the interpreter aborts
 * ("deallocating None").  To keep the zoo itself safe the module takes a
 * million references to None at import.  The verdict is "error"; the
 * culprit is the Py_DECREF line.
 *
 * zoo-kind: over-decref
 * zoo-expect: refs=-1 objects=0 blocks=0
 * zoo-description: Py_DECREF on a borrowed reference to None
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *table;

static PyObject *
lookup(const char *key)
{
    PyObject *value = PyDict_GetItemString(table, key);   /* borrowed */
    return value != NULL ? value : Py_None;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *value = lookup("missing");
    int missing = value == Py_None;
    Py_DECREF(value);  /* @culprit */
    if (!missing) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *value = lookup("missing");
    int missing = value == Py_None;
    if (!missing) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Release a borrowed None."},
    {"clean", clean, METH_NOARGS, "Borrow None correctly."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "overrelease_none", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_overrelease_none(void)
{
    table = PyDict_New();
    if (table == NULL) {
        return NULL;
    }
    for (int i = 0; i < 1000000; i++) {
        Py_INCREF(Py_None);
    }
    return PyModule_Create(&moduledef);
}
