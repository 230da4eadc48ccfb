/*
 * Bug zoo: nodebug_buffer -- a leak in a module built without debug information.
 *
 * The same bug as pymem_buffer (a PyMem_Malloc buffer never freed), in a
 * module compiled with -g0, as PyPI wheels and distribution packages ship:
 * no DWARF, so no line can be known.  The culprit names the module and the
 * function by its ELF symbol and offset, says that the line is not known
 * and how to get it (rebuild with -g).  `@culprit` marks the line a build
 * with -g would name; the expected line is None.
 *
 * zoo-kind: stripped
 * zoo-expect: refs=0 objects=0 blocks=1
 * zoo-description: 64-byte PyMem_Malloc buffer never freed, in a module built with -g0
 * zoo-cflags: -g0
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static volatile unsigned long checksum;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    unsigned char *buf = PyMem_Malloc(64);  /* @culprit */
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 0x5a, 64);
    checksum += buf[7];
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    unsigned char *buf = PyMem_Malloc(64);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    memset(buf, 0x5a, 64);
    checksum += buf[7];
    PyMem_Free(buf);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one PyMem_Malloc block per call."},
    {"clean", clean, METH_NOARGS, "Same code, buffer freed."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "nodebug_buffer", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_nodebug_buffer(void)
{
    return PyModule_Create(&moduledef);
}
