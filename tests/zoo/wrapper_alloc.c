/*
 * Bug zoo: wrapper_alloc -- a leak through the extension's own allocator.
 *
 * The module allocates every buffer through xmalloc(), a wrapper around
 * PyMem_Malloc that sets MemoryError on failure.  leaky() takes a scratch
 * buffer and a record buffer from it, frees the scratch buffer and forgets
 * the record buffer.  The block was allocated inside xmalloc(), but the
 * wrapper only hands it to its caller: the culprit is the line that asked
 * it for the block that leaked.
 *
 * zoo-kind: wrapper
 * zoo-expect: refs=0 objects=0 blocks=1
 * zoo-description: PyMem_Malloc block from the module's own xmalloc() wrapper never freed
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static volatile unsigned long checksum;

static void *
xmalloc(size_t size)
{
    void *p = PyMem_Malloc(size);  /* @allocation */
    if (p == NULL) {
        PyErr_NoMemory();
    }
    return p;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    unsigned char *scratch = xmalloc(32);
    if (scratch == NULL) {
        return NULL;
    }
    unsigned char *record = xmalloc(48);  /* @culprit */
    if (record == NULL) {
        PyMem_Free(scratch);
        return NULL;
    }
    memset(scratch, 1, 32);
    memset(record, 2, 48);
    checksum += scratch[3] + record[5];
    PyMem_Free(scratch);
    /* BUG: missing PyMem_Free(record); */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    unsigned char *scratch = xmalloc(32);
    if (scratch == NULL) {
        return NULL;
    }
    unsigned char *record = xmalloc(48);
    if (record == NULL) {
        PyMem_Free(scratch);
        return NULL;
    }
    memset(scratch, 1, 32);
    memset(record, 2, 48);
    checksum += scratch[3] + record[5];
    PyMem_Free(scratch);
    PyMem_Free(record);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one block from the module's allocator per call."},
    {"clean", clean, METH_NOARGS, "Same code, both blocks freed."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "wrapper_alloc", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_wrapper_alloc(void)
{
    return PyModule_Create(&moduledef);
}
