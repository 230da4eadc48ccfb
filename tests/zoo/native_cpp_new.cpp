/*
 * Bug zoo: native_cpp_new -- a C++ object made with new is never deleted.
 *
 * leaky() makes a 96-byte Reading with operator new, fills it, keeps a
 * pointer to the newest one only and never deletes the previous one: one
 * 96-byte native block per call, from the C++ runtime's allocator, never
 * seen by the PEP 445 domains.  The culprit is the new-expression.
 *
 * zoo-kind: native
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-native: blocks=1 bytes=96
 * zoo-description: 96-byte C++ object from operator new never deleted
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

struct Reading {
    double values[10];
    long id;
    long flags;
};
static_assert(sizeof(Reading) == 96, "a Reading is 96 bytes");

static Reading *volatile newest;       /* the last reading only */
static volatile double checksum;       /* keeps the work observable */
static long counter;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    Reading *r = new Reading();  /* @culprit */
    r->id = counter++;
    r->values[3] = 0.5 * (double)r->id;
    checksum = checksum + r->values[3];
    /* BUG: the previous reading is dropped without delete */
    newest = r;
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    Reading *r = new Reading();
    r->id = counter++;
    r->values[3] = 0.5 * (double)r->id;
    checksum = checksum + r->values[3];
    Reading *previous = newest;
    newest = r;
    delete previous;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one 96-byte C++ object per call."},
    {"clean", clean, METH_NOARGS, "Same code, the previous object deleted."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_cpp_new", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_native_cpp_new(void)
{
    return PyModule_Create(&moduledef);
}
