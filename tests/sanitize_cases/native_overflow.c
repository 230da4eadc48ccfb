/*
 * Sanitize case: native_overflow -- one byte written past a malloc'd
 * buffer of the extension's own.
 *
 * leaky() copies a 24-byte record into a malloc'd buffer sized for the
 * record without its terminator, then terminates it: the terminating
 * write lands one byte past the block.  clean() sizes the buffer for the
 * terminator.  Native blocks (the malloc family called by the extension)
 * are guarded like the PEP 445 domains' once native tracking runs.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * --sanitize only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: one byte written past a 24-byte malloc'd buffer
 * sanitize-expect: overflow
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#define LEN 24

static const char record[LEN + 1] = "abcdefghijklmnopqrstuvwx";

static PyObject *
fill(size_t size)
{
    char *volatile buf = malloc(size);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memcpy(buf, record, LEN);
    buf[LEN] = '\0';  /* @culprit */
    long sum = 0;
    for (size_t i = 0; i < LEN; i++) {
        sum += buf[i];
    }
    free(buf);
    return PyLong_FromLong(sum);
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return fill(LEN);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return fill(LEN + 1);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "terminates a malloc'd record one byte past its end"},
    {"clean", clean, METH_NOARGS, "sizes the buffer for the terminator"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_overflow", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_native_overflow(void)
{
    return PyModule_Create(&moduledef);
}
