/*
 * Valgrind case: uninit_read -- a decision taken on memory never written.
 *
 * leaky() allocates a 16-byte PyMem_Malloc buffer, fills only its first
 * half and branches on a byte of the second half.  memcheck reports a
 * conditional jump on an uninitialised value at the branch (the culprit).
 * clean() fills the whole buffer.
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: branch on an unwritten byte of a PyMem_Malloc buffer
 * valgrind-expect: uninitialised
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static volatile long hits;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(16);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 'q', 8);                /* BUG: bytes 8..15 never written */
    if (buf[12] == 'q') {  /* @culprit */
        hits++;
    }
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(16);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 'q', 16);
    if (buf[12] == 'q') {
        hits++;
    }
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "branches on uninitialised memory"},
    {"clean", clean, METH_NOARGS, "initialises it first"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "uninit_read", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_uninit_read(void)
{
    return PyModule_Create(&moduledef);
}
