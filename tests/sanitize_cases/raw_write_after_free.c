/*
 * Sanitize case: raw_write_after_free -- a PyMem_RawMalloc buffer written
 * through a stale pointer after PyMem_RawFree, with the GIL released.
 *
 * leaky() releases the GIL (the raw domain needs none), fills a scratch
 * buffer from the raw domain, keeps a pointer to it in a static slot,
 * frees the buffer and then writes a checksum through the stale slot.  The
 * free came one step too early: it is the culprit, as for any use after
 * free.  clean() writes first, then frees.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * --sanitize only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: 48-byte PyMem_RawMalloc buffer written through a stale pointer after PyMem_RawFree, GIL released
 * sanitize-expect: use-after-free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define LEN 48

static char *volatile last_buffer;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    int ok = 0;
    Py_BEGIN_ALLOW_THREADS
    char *buf = PyMem_RawMalloc(LEN);
    if (buf != NULL) {
        memset(buf, 1, LEN);
        last_buffer = buf;
        PyMem_RawFree(buf);  /* @culprit */
        last_buffer[0] = 2;
        last_buffer = NULL;
        ok = 1;
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    int ok = 0;
    Py_BEGIN_ALLOW_THREADS
    char *buf = PyMem_RawMalloc(LEN);
    if (buf != NULL) {
        memset(buf, 1, LEN);
        last_buffer = buf;
        last_buffer[0] = 2;
        last_buffer = NULL;
        PyMem_RawFree(buf);
        ok = 1;
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "writes a raw buffer after freeing it"},
    {"clean", clean, METH_NOARGS, "writes, then frees"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "raw_write_after_free", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_raw_write_after_free(void)
{
    return PyModule_Create(&moduledef);
}
