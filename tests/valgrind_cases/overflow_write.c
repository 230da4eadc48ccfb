/*
 * Valgrind case: overflow_write -- one byte written past a PyMem_Malloc
 * buffer.
 *
 * leaky() allocates a 24-byte buffer for 24 characters and writes the
 * terminating NUL at index 24, one past the end (an off-by-one).  memcheck
 * reports an invalid write just after the block.  The culprit is the write.
 * clean() allocates 25 bytes.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * Valgrind only (tests/test_valgrind.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: NUL terminator written one byte past a 24-byte PyMem_Malloc buffer
 * valgrind-expect: overflow
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define LEN 24

static volatile unsigned long checksum;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(LEN);              /* BUG: no room for the NUL */
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 'a', LEN);
    buf[LEN] = '\0';  /* @culprit */
    checksum += (unsigned char)buf[3];
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
    memset(buf, 'a', LEN);
    buf[LEN] = '\0';
    checksum += (unsigned char)buf[3];
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "writes one byte past a buffer"},
    {"clean", clean, METH_NOARGS, "allocates room for the terminator"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "overflow_write", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_overflow_write(void)
{
    return PyModule_Create(&moduledef);
}
