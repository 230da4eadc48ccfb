/*
 * Bug zoo: extra_decref -- one Py_DECREF too many on a long-lived object.
 *
 * The module keeps a str in a static variable and hands out borrowed
 * references to it.  leaky() "releases" the borrowed reference it never
 * owned: the str's refcount falls by one per call, and the day it reaches
 * zero the object is freed under everyone who still uses it (a crash far
 * from the bug).  To keep the zoo itself safe the module holds a million
 * references at import, so the check can watch it fall without freeing it.
 * The culprit is the extra Py_DECREF line.  The verdict is "error".
 *
 * zoo-kind: over-decref
 * zoo-expect: refs=-1 objects=0 blocks=0
 * zoo-description: Py_DECREF on a borrowed reference to a long-lived cached str
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *shared_name;   /* strong references: 1 + a million spares */

static PyObject *
borrow_name(void)
{
    return shared_name;         /* borrowed */
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *name = borrow_name();
    Py_ssize_t len = PyUnicode_GetLength(name);
    Py_DECREF(name);  /* @culprit */
    if (len < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *name = borrow_name();
    Py_ssize_t len = PyUnicode_GetLength(name);
    if (len < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "releases a reference it does not own"},
    {"clean", clean, METH_NOARGS, "the same work, borrowing correctly"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "extra_decref", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_extra_decref(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    shared_name = PyUnicode_FromString("refhound_zoo_shared_name");
    if (shared_name == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    for (int i = 0; i < 1000000; i++) {
        Py_INCREF(shared_name);
    }
    return m;
}
