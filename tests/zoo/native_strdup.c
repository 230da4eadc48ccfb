/*
 * Bug zoo: native_strdup -- a strdup() copy is never freed.
 *
 * leaky() formats a 95-character label on the stack and keeps a copy made
 * with strdup(): the copy (96 bytes with its terminator) is never freed.
 * The C library's strdup() calls malloc() from inside the C library, which
 * no relocation of the extension sees: the copy is seen at the extension's
 * call to strdup() itself, which is the culprit.
 *
 * zoo-kind: native
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-native: blocks=1 bytes=96
 * zoo-description: 96-byte strdup copy of a label never freed
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile sink;              /* the copy escapes */
static volatile unsigned long checksum;  /* keeps the work observable */
static unsigned counter;

static void
format_label(char *buf, size_t size)
{
    int n = snprintf(buf, size, "label-%08u-", counter++);
    memset(buf + n, 'x', 95 - (size_t)n);
    buf[95] = '\0';
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char label[128];
    format_label(label, sizeof(label));
    char *copy = strdup(label);  /* @culprit */
    if (copy == NULL) {
        return PyErr_NoMemory();
    }
    checksum += (unsigned char)copy[7];
    sink = copy;
    /* BUG: missing free(copy); */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char label[128];
    format_label(label, sizeof(label));
    char *copy = strdup(label);
    if (copy == NULL) {
        return PyErr_NoMemory();
    }
    checksum += (unsigned char)copy[7];
    sink = copy;
    free(copy);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one 96-byte strdup copy per call."},
    {"clean", clean, METH_NOARGS, "Same code, copy freed."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_strdup", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_native_strdup(void)
{
    return PyModule_Create(&moduledef);
}
