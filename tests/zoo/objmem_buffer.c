/*
 * Bug zoo: objmem_buffer -- a PyObject_Malloc buffer is never freed.
 *
 * leaky() allocates a 64-byte scratch buffer with PyObject_Malloc(), which
 * comes from the object domain (PYMEM_DOMAIN_OBJ) although it is not an
 * object, fills it, computes a checksum and returns without
 * PyObject_Free().  No Python object is involved: refs and objects do not
 * change, one block per call stays alive.  The culprit is the allocation
 * line.
 *
 * zoo-kind: raw-buffer
 * zoo-expect: refs=0 objects=0 blocks=1
 * zoo-description: 64-byte PyObject_Malloc scratch buffer never released with PyObject_Free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define BUFSIZE 64

static volatile unsigned long checksum;  /* keeps the work observable */

static unsigned long
sum_bytes(const unsigned char *buf, size_t n)
{
    unsigned long s = 0;
    for (size_t i = 0; i < n; i++) {
        s += buf[i];
    }
    return s;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    unsigned char *buf = PyObject_Malloc(BUFSIZE);  /* @culprit */
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 0x5a, BUFSIZE);
    checksum += sum_bytes(buf, BUFSIZE);
    /* BUG: missing PyObject_Free(buf); */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    unsigned char *buf = PyObject_Malloc(BUFSIZE);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 0x5a, BUFSIZE);
    checksum += sum_bytes(buf, BUFSIZE);
    PyObject_Free(buf);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one PyObject_Malloc block per call."},
    {"clean", clean, METH_NOARGS, "Same code, buffer freed."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "objmem_buffer", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_objmem_buffer(void)
{
    return PyModule_Create(&moduledef);
}
