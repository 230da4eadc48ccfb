/*
 * Valgrind case: uaf_read -- an object is read after its last reference is
 * released.
 *
 * leaky() builds a 100-byte bytes object, releases it with Py_DECREF (the
 * only reference: the object is freed) and then reads one of its bytes.
 * The release comes one line too early; memcheck sees a read of a freed
 * block.  The culprit is the Py_DECREF that frees the object (the read is
 * reported with it).  clean() reads first and releases after.
 *
 * Not part of the bug zoo: natively this reads freed memory.  Run it under
 * Valgrind only (tests/test_valgrind.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: bytes object read after the Py_DECREF that freed it
 * valgrind-expect: use-after-free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static volatile long checksum;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *data = PyBytes_FromStringAndSize(NULL, 100);
    if (data == NULL) {
        return NULL;
    }
    memset(PyBytes_AS_STRING(data), 'x', 100);
    Py_DECREF(data);  /* @culprit */
    checksum += PyBytes_AS_STRING(data)[10];   /* BUG: data is freed */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *data = PyBytes_FromStringAndSize(NULL, 100);
    if (data == NULL) {
        return NULL;
    }
    memset(PyBytes_AS_STRING(data), 'x', 100);
    checksum += PyBytes_AS_STRING(data)[10];
    Py_DECREF(data);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "reads a bytes object after freeing it"},
    {"clean", clean, METH_NOARGS, "reads, then releases"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "uaf_read", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_uaf_read(void)
{
    return PyModule_Create(&moduledef);
}
