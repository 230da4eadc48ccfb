/*
 * Bug zoo: error_path_null -- a helper returns NULL without releasing.
 *
 * make_pair() builds the first item, then converts the second argument;
 * when the conversion fails it returns NULL with the exception set and
 * forgets the first item.  leaky() calls it with a bad second argument and
 * clears the TypeError, so it never raises itself.  The culprit is the
 * line that made the reference the error path dropped, in the function
 * that returned NULL.
 *
 * zoo-kind: error-path
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: first item of a pair not released when make_pair returns NULL on an error
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long n;

static PyObject *
make_pair(long a, PyObject *b, int fixed)
{
    PyObject *first = PyLong_FromLong(a);  /* @culprit */
    if (first == NULL) {
        return NULL;
    }
    PyObject *second = PyNumber_Long(b);
    if (second == NULL) {
        if (fixed) {
            Py_DECREF(first);
        }
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, first, second);
    Py_DECREF(first);
    Py_DECREF(second);
    return pair;
}

static PyObject *
finish(PyObject *pair)
{
    if (pair != NULL) {
        Py_DECREF(pair);
        Py_RETURN_NONE;
    }
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
        return NULL;
    }
    PyErr_Clear();
    Py_RETURN_NONE;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return finish(make_pair(1000000 + (n++ % 1000), Py_None, 0));
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return finish(make_pair(1000000 + (n++ % 1000), Py_None, 1));
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Drop the first item when the second fails."},
    {"clean", clean, METH_NOARGS, "Same code, error path releases."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "error_path_null", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_error_path_null(void)
{
    return PyModule_Create(&moduledef);
}
