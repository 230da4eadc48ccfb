/*
 * Valgrind case: uaf_borrowed_decref -- Py_DECREF on a borrowed reference
 * frees an object its container still holds.
 *
 * leaky() builds a one-item list, takes the item with PyList_GET_ITEM (a
 * borrowed reference) and releases it as if it owned it.  The item (its
 * only reference was the list's) is freed there; when the list is released
 * the interpreter's list_dealloc touches the freed item.  The access is in
 * the interpreter; the culprit is the extra Py_DECREF, memcheck's "freed
 * at" stack.  clean() does not release what it borrowed.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * Valgrind only (tests/test_valgrind.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: Py_DECREF of a borrowed list item frees it under the list
 * valgrind-expect: use-after-free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static volatile Py_ssize_t total;

static PyObject *
make_list(void)
{
    PyObject *item = PyLong_FromLong(7000000 + total);
    if (item == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        Py_DECREF(item);
        return NULL;
    }
    PyList_SET_ITEM(list, 0, item);     /* steals the reference */
    return list;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *list = make_list();
    if (list == NULL) {
        return NULL;
    }
    PyObject *item = PyList_GET_ITEM(list, 0);   /* borrowed */
    total += PyLong_AsLong(item);
    Py_DECREF(item);  /* @culprit */
    Py_DECREF(list);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *list = make_list();
    if (list == NULL) {
        return NULL;
    }
    PyObject *item = PyList_GET_ITEM(list, 0);   /* borrowed */
    total += PyLong_AsLong(item);
    Py_DECREF(list);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "releases a borrowed list item"},
    {"clean", clean, METH_NOARGS, "borrows correctly"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "uaf_borrowed_decref", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_uaf_borrowed_decref(void)
{
    return PyModule_Create(&moduledef);
}
