/*
 * Bug zoo: new_object -- a new object is created and never released.
 *
 * leaky() builds an int that is too large for the small-int cache, looks at
 * it, and returns without Py_DECREF.  The culprit is the line that creates
 * the leaked reference (PyLong_FromLong).  clean() is the same code with the
 * missing Py_DECREF.
 *
 * zoo-kind: new-object
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: PyLong_FromLong result (a fresh int object) never released
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long counter;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *value = PyLong_FromLong(1000000 + counter++);  /* @culprit */
    if (value == NULL) {
        return NULL;
    }
    if (PyObject_IsTrue(value) < 0) {
        return NULL;
    }
    /* BUG: missing Py_DECREF(value); */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *value = PyLong_FromLong(1000000 + counter++);
    if (value == NULL) {
        return NULL;
    }
    if (PyObject_IsTrue(value) < 0) {
        Py_DECREF(value);
        return NULL;
    }
    Py_DECREF(value);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one new int object per call."},
    {"clean", clean, METH_NOARGS, "Same code, reference released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "new_object", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_new_object(void)
{
    return PyModule_Create(&moduledef);
}
