/* keep_arg.c — an extension function that keeps a reference to its
 * argument (the leak), and its twin that takes one and gives it back.
 * Called with literal constants from Python code: the leaked reference
 * lands on a constant of a code object, which the cyclic GC does not list
 * (tests/e2e/test_constants.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
keep(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_INCREF(arg);     /* the leak: never released */
    Py_RETURN_NONE;
}

static PyObject *
look(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_INCREF(arg);
    Py_DECREF(arg);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"keep", keep, METH_O, "Keep a reference to the argument (a leak)."},
    {"look", look, METH_O, "Take a reference and give it back."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "keep_arg", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_keep_arg(void)
{
    return PyModule_Create(&moduledef);
}
