/*
 * Sanitize case: write_after_free -- a PyMem_Malloc buffer written through
 * a stale pointer after it was freed.
 *
 * leaky() keeps a pointer to its scratch buffer in a static "last buffer"
 * slot, frees the buffer, then records a checksum through the stale slot.
 * The free came one step too early: it is the culprit (the line to move),
 * as for any use after free.  clean() writes first, then frees.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * --sanitize or Valgrind only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: 64-byte PyMem_Malloc buffer written through a stale pointer after PyMem_Free
 * sanitize-expect: use-after-free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static char *last_buffer;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(64);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 3, 64);
    last_buffer = buf;
    PyMem_Free(buf);  /* @culprit */
    last_buffer[63] = 1;                  /* BUG: written after the free */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = PyMem_Malloc(64);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 3, 64);
    last_buffer = buf;
    last_buffer[63] = 1;
    PyMem_Free(buf);
    last_buffer = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "writes a buffer after freeing it"},
    {"clean", clean, METH_NOARGS, "writes, then frees"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "write_after_free", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_write_after_free(void)
{
    return PyModule_Create(&moduledef);
}
