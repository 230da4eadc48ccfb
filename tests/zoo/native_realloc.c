/*
 * Bug zoo: native_realloc -- a buffer grown with realloc() is never freed.
 *
 * leaky() starts a message in a 32-byte malloc() buffer, grows it to 96
 * bytes with realloc() to append a second part, and returns without
 * free(): one 96-byte native block per call.  The block that survives is
 * the one realloc() made (it may have moved): its allocation site is the
 * realloc() line in grow() (marked @allocation, where memray and heaptrack
 * put it too); grow() returns that block, so the culprit is the line of
 * leaky() that called it.
 *
 * zoo-kind: native
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-native: blocks=1 bytes=96
 * zoo-description: message buffer grown from 32 to 96 bytes with realloc and never freed
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

static char *volatile sink;              /* the buffer escapes: no allocation is elided */
static volatile unsigned long checksum;  /* keeps the work observable */

static char *
grow(char *msg)
{
    char *bigger = realloc(msg, 96);  /* @allocation */
    if (bigger == NULL) {
        free(msg);
        return NULL;
    }
    memset(bigger + 32, 'b', 63);
    bigger[95] = '\0';
    return bigger;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *msg = malloc(32);
    if (msg == NULL) {
        return PyErr_NoMemory();
    }
    memset(msg, 'a', 32);
    msg = grow(msg);  /* @culprit */
    if (msg == NULL) {
        return PyErr_NoMemory();
    }
    checksum += (unsigned char)msg[40];
    sink = msg;
    /* BUG: missing free(msg); */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *msg = malloc(32);
    if (msg == NULL) {
        return PyErr_NoMemory();
    }
    memset(msg, 'a', 32);
    msg = grow(msg);
    if (msg == NULL) {
        return PyErr_NoMemory();
    }
    checksum += (unsigned char)msg[40];
    sink = msg;
    free(msg);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one 96-byte realloc'd buffer per call."},
    {"clean", clean, METH_NOARGS, "Same code, buffer freed."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_realloc", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_native_realloc(void)
{
    return PyModule_Create(&moduledef);
}
