/*
 * Bug zoo: incref_returned -- an extra Py_INCREF just before returning
 * the same object.
 *
 * leaky() takes a reference to None "for the caller" and then returns
 * Py_RETURN_NONE, which takes its own: one reference per call is never
 * released.  At -O2 the compiler merges the two increments into a single
 * add of 2 on the return line; the watchpoints see one write of +2 whose
 * returned reference is the caller's, the other one the leak.
 *
 * zoo-kind: extra-incref
 * zoo-expect: refs=1 objects=0 blocks=0
 * zoo-expect-immortal: refs=0
 * zoo-description: extra Py_INCREF merged with the returned reference
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    Py_INCREF(Py_None);  /* @culprit */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one reference to None per call."},
    {"clean", clean, METH_NOARGS, "Same code without the extra Py_INCREF."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "incref_returned", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_incref_returned(void)
{
    return PyModule_Create(&moduledef);
}
