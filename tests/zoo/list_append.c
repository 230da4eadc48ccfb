/*
 * Bug zoo: list_append -- the element appended to a list keeps an extra ref.
 *
 * PyList_Append() does NOT steal the reference: the list takes its own.
 * leaky() appends a freshly created int and forgets to release its own
 * reference.  The list itself is released correctly, so the int survives
 * with refcount 1 and nobody pointing at it.  The culprit is the line that
 * creates the leaked reference (PyLong_FromLong).
 *
 * zoo-kind: container-item
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: new int appended with PyList_Append and never released (list freed)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long counter;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    PyObject *item = PyLong_FromLong(1000000 + counter++);  /* @culprit */
    if (item == NULL) {
        Py_DECREF(list);
        return NULL;
    }
    if (PyList_Append(list, item) < 0) {
        Py_DECREF(item);
        Py_DECREF(list);
        return NULL;
    }
    /* BUG: missing Py_DECREF(item); the list holds its own reference */
    Py_DECREF(list);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    PyObject *item = PyLong_FromLong(1000000 + counter++);
    if (item == NULL) {
        Py_DECREF(list);
        return NULL;
    }
    if (PyList_Append(list, item) < 0) {
        Py_DECREF(item);
        Py_DECREF(list);
        return NULL;
    }
    Py_DECREF(item);
    Py_DECREF(list);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak the appended element."},
    {"clean", clean, METH_NOARGS, "Same code, element reference released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "list_append", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_list_append(void)
{
    return PyModule_Create(&moduledef);
}
