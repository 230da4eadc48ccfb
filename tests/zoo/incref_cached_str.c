/*
 * Bug zoo: incref_cached_str -- extra Py_INCREF on a str cached at init.
 *
 * The module interns a str once at import time and keeps it in a static
 * variable.  leaky() takes a reference to it "to use it", uses it, and never
 * gives the reference back.  No allocation happens per call; the cached
 * str's refcount grows by one per call.  The culprit is the Py_INCREF line.
 *
 * zoo-kind: extra-incref
 * zoo-expect: refs=1 objects=0 blocks=0
 * zoo-description: extra Py_INCREF on a module-level cached (interned) str
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *cached_name;   /* strong reference, created at init */

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *name = cached_name;
    Py_INCREF(name);  /* @culprit */
    Py_ssize_t len = PyUnicode_GetLength(name);
    if (len < 0) {
        return NULL;
    }
    /* BUG: missing Py_DECREF(name); */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *name = cached_name;
    Py_INCREF(name);
    Py_ssize_t len = PyUnicode_GetLength(name);
    if (len < 0) {
        Py_DECREF(name);
        return NULL;
    }
    Py_DECREF(name);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one reference to a cached str."},
    {"clean", clean, METH_NOARGS, "Same code, reference released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "incref_cached_str", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_incref_cached_str(void)
{
    if (cached_name == NULL) {
        cached_name = PyUnicode_InternFromString("refhound_zoo_cached_name");
        if (cached_name == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&moduledef);
}
