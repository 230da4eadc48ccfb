/*
 * Valgrind case: double_free -- a PyMem_Malloc buffer freed twice.
 *
 * leaky() frees its scratch buffer on an early path and again at the
 * common exit.  memcheck reports the second free (the culprit) with the
 * stack of the first.  clean() forgets the pointer after the first free.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * Valgrind only (tests/test_valgrind.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: PyMem_Free called twice on the same scratch buffer
 * valgrind-expect: double-free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static volatile unsigned long checksum;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(48);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 1, 48);
    checksum += (unsigned char)buf[0];
    if (checksum > 0) {
        PyMem_Free(buf);                /* the early release... */
    }
    PyMem_Free(buf);  /* @culprit */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(48);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 1, 48);
    checksum += (unsigned char)buf[0];
    if (checksum > 0) {
        PyMem_Free(buf);
        buf = NULL;
    }
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "frees a buffer twice"},
    {"clean", clean, METH_NOARGS, "frees it once"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "double_free", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_double_free(void)
{
    return PyModule_Create(&moduledef);
}
