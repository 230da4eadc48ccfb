/*
 * Bug zoo: setitem_borrowed -- a borrowed reference given to PyList_SetItem.
 *
 * leaky() reads the module's cached string from a dict (PyDict_GetItemString:
 * a borrowed reference) and puts it in a new list with PyList_SetItem, which
 * steals a reference the caller never owned.  Freeing the list releases the
 * string: its count falls by one per call.  The module takes a million
 * references at import to keep the zoo safe.  Verdict "error"; the culprit
 * is the PyList_SetItem line, though the count falls in the list's
 * deallocator, called from the Py_DECREF two lines later.
 *
 * zoo-kind: over-decref
 * zoo-expect: refs=-1 objects=0 blocks=0
 * zoo-description: a borrowed reference given to PyList_SetItem (which steals it)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *cache;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *item = PyDict_GetItemString(cache, "key");   /* borrowed */
    if (item == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        return NULL;
    }
    PyList_SetItem(list, 0, item);  /* @culprit */
    Py_ssize_t n = PyList_GET_SIZE(list);
    Py_DECREF(list);
    return PyLong_FromSsize_t(n);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *item = PyDict_GetItemString(cache, "key");   /* borrowed */
    if (item == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        return NULL;
    }
    Py_INCREF(item);
    PyList_SetItem(list, 0, item);
    Py_ssize_t n = PyList_GET_SIZE(list);
    Py_DECREF(list);
    return PyLong_FromSsize_t(n);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Give a borrowed reference to PyList_SetItem."},
    {"clean", clean, METH_NOARGS, "Give it one of its own."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "setitem_borrowed", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_setitem_borrowed(void)
{
    cache = PyDict_New();
    PyObject *value = PyUnicode_FromString("a cached value of setitem_borrowed");
    if (cache == NULL || value == NULL || PyDict_SetItemString(cache, "key", value) < 0) {
        return NULL;
    }
    for (int i = 0; i < 1000000; i++) {
        Py_INCREF(value);       /* so that the falling count never frees it */
    }
    Py_DECREF(value);
    return PyModule_Create(&moduledef);
}
