/*
 * Bug zoo: buildvalue_tuple -- the tuple returned by Py_BuildValue leaks.
 *
 * leaky() builds a 3-tuple of small ints with Py_BuildValue("(iii)"),
 * inspects it and never releases it.  Per call that is one object and one
 * block (the tuple; small ints -5..256 are static and allocate nothing), but
 * FOUR references: the tuple's own plus one on each of the three small ints
 * it holds (on 3.11 small ints are not immortal; from 3.12 on, 1 ref).
 * The culprit is the Py_BuildValue line.
 * zoo-kind: new-object
 * zoo-expect: refs=4 objects=1 blocks=1
 * zoo-expect-immortal: refs=1
 * zoo-description: tuple of three small ints from Py_BuildValue never released
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *tuple = Py_BuildValue("(iii)", 1, 2, 3);  /* @culprit */
    if (tuple == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_Size(tuple);
    /* BUG: missing Py_DECREF(tuple); */
    if (n != 3) {
        PyErr_SetString(PyExc_AssertionError, "expected a 3-tuple");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *tuple = Py_BuildValue("(iii)", 1, 2, 3);
    if (tuple == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_Size(tuple);
    Py_DECREF(tuple);
    if (n != 3) {
        PyErr_SetString(PyExc_AssertionError, "expected a 3-tuple");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one Py_BuildValue tuple per call."},
    {"clean", clean, METH_NOARGS, "Same code, tuple released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "buildvalue_tuple", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_buildvalue_tuple(void)
{
    return PyModule_Create(&moduledef);
}
