/*
 * Bug zoo: overrelease_small_int -- one Py_DECREF too many on a small int.
 *
 * The module keeps a tuple of two small ints (7, 8).  leaky() reads the
 * first with PyTuple_GetItem (a borrowed reference) and releases it.  The
 * small int 7 is one of the interpreter's cached objects: its count falls
 * by one per call, and on 3.11 it would be freed under everyone using 7.
 * The module takes a million references to it at import to keep the zoo
 * safe.  Verdict "error"; the culprit is the Py_DECREF line.
 *
 * zoo-kind: over-decref
 * zoo-expect: refs=-1 objects=0 blocks=0
 * zoo-description: Py_DECREF on a borrowed reference to the cached small int 7
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *pair;
static volatile long total;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *first = PyTuple_GetItem(pair, 0);     /* borrowed */
    if (first == NULL) {
        return NULL;
    }
    total += PyLong_AsLong(first);
    Py_DECREF(first);  /* @culprit */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *first = PyTuple_GetItem(pair, 0);     /* borrowed */
    if (first == NULL) {
        return NULL;
    }
    total += PyLong_AsLong(first);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Release a borrowed small int."},
    {"clean", clean, METH_NOARGS, "Borrow it correctly."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "overrelease_small_int", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_overrelease_small_int(void)
{
    pair = Py_BuildValue("(ii)", 7, 8);
    if (pair == NULL) {
        return NULL;
    }
    PyObject *seven = PyTuple_GET_ITEM(pair, 0);
    for (int i = 0; i < 1000000; i++) {
        Py_INCREF(seven);
    }
    return PyModule_Create(&moduledef);
}
