/*
 * Bug zoo: nested_list -- a whole list with its items leaks.
 *
 * leaky() builds a list of three fresh ints and never releases the list.
 * Per call that leaks 4 objects (the list and three ints), 4 references
 * (each held once) and 5 blocks: a non-empty list owns a separate item
 * array (PyMem domain) besides the list object itself.  The culprit is the
 * line that creates the leaked reference (PyList_New).
 *
 * zoo-kind: new-object
 * zoo-expect: refs=4 objects=4 blocks=5
 * zoo-description: list of three new ints never released (list object + item array + 3 ints)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NITEMS 3

static long counter;

/* Fill a fresh list with NITEMS new ints; the list owns them afterwards. */
static int
fill_list(PyObject *list)
{
    for (Py_ssize_t i = 0; i < NITEMS; i++) {
        PyObject *item = PyLong_FromLong(1000000 + counter++);
        if (item == NULL) {
            return -1;
        }
        PyList_SET_ITEM(list, i, item);   /* steals the reference */
    }
    return 0;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(NITEMS);  /* @culprit */
    if (list == NULL) {
        return NULL;
    }
    if (fill_list(list) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    Py_ssize_t n = PyList_Size(list);
    /* BUG: missing Py_DECREF(list); */
    if (n != NITEMS) {
        PyErr_SetString(PyExc_AssertionError, "wrong length");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(NITEMS);
    if (list == NULL) {
        return NULL;
    }
    if (fill_list(list) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    Py_ssize_t n = PyList_Size(list);
    Py_DECREF(list);
    if (n != NITEMS) {
        PyErr_SetString(PyExc_AssertionError, "wrong length");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak a 3-item list per call."},
    {"clean", clean, METH_NOARGS, "Same code, list released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "nested_list", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_nested_list(void)
{
    return PyModule_Create(&moduledef);
}
