/*
 * Bug zoo: dict_value -- a dict value keeps an extra reference.
 *
 * PyDict_SetItem() does NOT steal references.  leaky() stores a freshly
 * created int in a fresh dict and forgets to release its own reference to
 * the value.  The dict (and its key) are released correctly, so only the
 * value survives.  The culprit is the line that creates the leaked
 * reference (PyLong_FromLong).
 *
 * zoo-kind: container-item
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: new int stored with PyDict_SetItem and never released (dict freed)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long counter;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    PyObject *key = PyUnicode_FromString("answer");
    if (key == NULL) {
        Py_DECREF(dict);
        return NULL;
    }
    PyObject *value = PyLong_FromLong(1000000 + counter++);  /* @culprit */
    if (value == NULL) {
        Py_DECREF(key);
        Py_DECREF(dict);
        return NULL;
    }
    int rc = PyDict_SetItem(dict, key, value);
    Py_DECREF(key);
    /* BUG: missing Py_DECREF(value); the dict holds its own reference */
    Py_DECREF(dict);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    PyObject *key = PyUnicode_FromString("answer");
    if (key == NULL) {
        Py_DECREF(dict);
        return NULL;
    }
    PyObject *value = PyLong_FromLong(1000000 + counter++);
    if (value == NULL) {
        Py_DECREF(key);
        Py_DECREF(dict);
        return NULL;
    }
    int rc = PyDict_SetItem(dict, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    Py_DECREF(dict);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak the stored dict value."},
    {"clean", clean, METH_NOARGS, "Same code, value reference released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "dict_value", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_dict_value(void)
{
    return PyModule_Create(&moduledef);
}
