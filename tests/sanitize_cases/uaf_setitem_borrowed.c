/*
 * Sanitize case: uaf_setitem_borrowed -- a borrowed reference given to
 * PyList_SetItem, which steals it: releasing the list frees the item while
 * its owner still holds it.
 *
 * leaky() makes a one-item tuple (it owns its item), borrows the item with
 * PyTuple_GET_ITEM and puts it in a new list with PyList_SetItem, which
 * steals a reference the caller never owned.  Py_DECREF(list) frees the
 * item (list_dealloc releases what it was given); Py_DECREF(owner) then
 * touches the freed item (tupledealloc).  The free stack runs through the
 * list's deallocator from the Py_DECREF(list) line, but the line that is
 * wrong is the PyList_SetItem: the culprit.  clean() takes a reference of
 * its own first.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * --sanitize only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: a borrowed tuple item given to PyList_SetItem, freed with the list
 * sanitize-expect: use-after-free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static volatile Py_ssize_t total;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *owner = Py_BuildValue("(n)", (Py_ssize_t)7000000 + total);
    if (owner == NULL) {
        return NULL;
    }
    PyObject *item = PyTuple_GET_ITEM(owner, 0);   /* borrowed */
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        Py_DECREF(owner);
        return NULL;
    }
    PyList_SetItem(list, 0, item);  /* @culprit */
    total += PyList_GET_SIZE(list);
    Py_DECREF(list);
    Py_DECREF(owner);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *owner = Py_BuildValue("(n)", (Py_ssize_t)7000000 + total);
    if (owner == NULL) {
        return NULL;
    }
    PyObject *item = PyTuple_GET_ITEM(owner, 0);   /* borrowed */
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        Py_DECREF(owner);
        return NULL;
    }
    Py_INCREF(item);
    PyList_SetItem(list, 0, item);
    total += PyList_GET_SIZE(list);
    Py_DECREF(list);
    Py_DECREF(owner);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "gives a borrowed item to PyList_SetItem"},
    {"clean", clean, METH_NOARGS, "gives it a reference of its own"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "uaf_setitem_borrowed", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_uaf_setitem_borrowed(void)
{
    return PyModule_Create(&moduledef);
}
