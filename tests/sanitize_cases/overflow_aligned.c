/*
 * Sanitize case: overflow_aligned -- one byte written past a 32-byte
 * PyMem_Malloc buffer (a size with no alignment slack: the write meets the
 * guard page at once).
 *
 * leaky() copies a 32-character key and its terminating NUL into a buffer
 * sized for the characters only.  The culprit is the NUL's write.
 * clean() allocates 33 bytes.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * --sanitize or Valgrind only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: NUL terminator written one byte past a 32-byte PyMem_Malloc buffer
 * sanitize-expect: overflow
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define LEN 32

static volatile unsigned long checksum;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(LEN);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 'k', LEN);
    buf[LEN] = '\0';  /* @culprit */
    checksum += (unsigned char)buf[7];
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(LEN + 1);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 'k', LEN);
    buf[LEN] = '\0';
    checksum += (unsigned char)buf[7];
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "writes one byte past a buffer"},
    {"clean", clean, METH_NOARGS, "allocates room for the terminator"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "overflow_aligned", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_overflow_aligned(void)
{
    return PyModule_Create(&moduledef);
}
