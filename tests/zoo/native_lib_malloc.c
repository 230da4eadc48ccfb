/*
 * Bug zoo: native_lib_malloc -- a record malloc'd by a second shared library
 * is never given back to it.
 *
 * This file is two objects.  Built with ZOO_LIBRARY defined it is a plain C
 * library, libzoo_native_lib.so (no Python), that hands out 96-byte records
 * from malloc() and takes them back with zoolib_record_free().  Built
 * without, it is the extension module, linked against that library.
 * leaky() asks the library for a record, reads it and drops it without
 * zoolib_record_free(): one 96-byte native block per call, allocated
 * inside the library, never seen by the PEP 445 domains.  The block is
 * allocated in the library (the site's line, marked @allocation), but
 * zoolib_record_new() returns what it allocates: an allocation wrapper, so
 * the culprit is the line of leaky() that asked for the record.
 *
 * zoo-kind: native
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-native: blocks=1 bytes=96
 * zoo-library: zoo_native_lib
 * zoo-description: 96-byte malloc record from a linked shared library never released
 */
#ifdef ZOO_LIBRARY
#include <stdlib.h>
#include <string.h>

#define RECORD_SIZE 96

char *zoolib_record_new(int seed);
void zoolib_record_free(char *rec);

char *
zoolib_record_new(int seed)
{
    char *rec = malloc(RECORD_SIZE);  /* @allocation */
    if (rec != NULL) {
        memset(rec, seed & 0x7f, RECORD_SIZE);
    }
    return rec;
}

void
zoolib_record_free(char *rec)
{
    free(rec);
}

#else
#define PY_SSIZE_T_CLEAN
#include <Python.h>

char *zoolib_record_new(int seed);
void zoolib_record_free(char *rec);

static volatile unsigned long checksum;  /* keeps the work observable */
static int counter;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *rec = zoolib_record_new(counter++);  /* @culprit */
    if (rec == NULL) {
        return PyErr_NoMemory();
    }
    checksum += (unsigned char)rec[17];
    /* BUG: missing zoolib_record_free(rec); */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *rec = zoolib_record_new(counter++);
    if (rec == NULL) {
        return PyErr_NoMemory();
    }
    checksum += (unsigned char)rec[17];
    zoolib_record_free(rec);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one 96-byte record of the library per call."},
    {"clean", clean, METH_NOARGS, "Same code, record given back."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_lib_malloc", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_native_lib_malloc(void)
{
    return PyModule_Create(&moduledef);
}
#endif
