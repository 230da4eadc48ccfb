/*
 * Sanitize case: underflow_write -- one byte written before a PyMem_Malloc
 * buffer.
 *
 * leaky() fills a 40-byte buffer backwards and its loop runs one step too
 * far: the last write goes to index -1.  The culprit is that write.
 * clean() stops at index 0.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * --sanitize or Valgrind only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: backwards fill of a 40-byte PyMem_Malloc buffer writes index -1
 * sanitize-expect: underflow
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define LEN 40

static volatile unsigned long checksum;
static volatile Py_ssize_t stop = -1;     /* the bug: should be 0 */

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(LEN);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = LEN - 1; i >= stop; i--) {
        buf[i] = (char)i;  /* @culprit */
    }
    checksum += (unsigned char)buf[5];
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(LEN);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = LEN - 1; i >= 0; i--) {
        buf[i] = (char)i;
    }
    checksum += (unsigned char)buf[5];
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "writes one byte before a buffer"},
    {"clean", clean, METH_NOARGS, "stays inside it"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "underflow_write", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_underflow_write(void)
{
    return PyModule_Create(&moduledef);
}
