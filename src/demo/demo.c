/* demo.c — refhound._demo: a small extension with known bugs, for `refhound demo`.
 *
 *   parse_items()   leaks the list it builds on every call (missing DECREF)
 *   tag_none()      takes a reference to None that it never gives back
 *   checksum()      clean: the same work done right
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *parse_items(PyObject *self, PyObject *unused)
{
    PyObject *items = PyList_New(0);
    if (items == NULL)
        return NULL;
    for (long i = 0; i < 3; i++) {
        PyObject *v = PyLong_FromLong(1000 + i);
        if (v == NULL || PyList_Append(items, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(items);
            return NULL;
        }
        Py_DECREF(v);
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    /* bug: `items` is never released */
    return PyLong_FromSsize_t(n);
}

static PyObject *tag_none(PyObject *self, PyObject *unused)
{
    Py_INCREF(Py_None);      /* bug: one reference too many */
    Py_INCREF(Py_None);
    return Py_None;
}

static PyObject *checksum(PyObject *self, PyObject *unused)
{
    PyObject *items = PyList_New(0);
    if (items == NULL)
        return NULL;
    long sum = 0;
    for (long i = 0; i < 3; i++) {
        PyObject *v = PyLong_FromLong(1000 + i);
        if (v == NULL || PyList_Append(items, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(items);
            return NULL;
        }
        sum += PyLong_AsLong(v);
        Py_DECREF(v);
    }
    Py_DECREF(items);
    return PyLong_FromLong(sum);
}

static PyMethodDef demo_methods[] = {
    {"parse_items", parse_items, METH_NOARGS, "leaks a list of three ints per call"},
    {"tag_none", tag_none, METH_NOARGS, "leaks a reference to None per call"},
    {"checksum", checksum, METH_NOARGS, "clean"},
    {NULL}
};

static struct PyModuleDef demo_module = {
    PyModuleDef_HEAD_INIT, "refhound._demo", "A bundled example with known leaks.", -1, demo_methods,
};

PyMODINIT_FUNC PyInit__demo(void) { return PyModule_Create(&demo_module); }
