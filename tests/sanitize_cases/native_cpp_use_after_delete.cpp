/*
 * Sanitize case: native_cpp_use_after_delete -- a C++ object read after
 * delete.
 *
 * leaky() makes a Reading with operator new, fills it, deletes it and then
 * reads its id through the pointer it still holds; clean() reads first.
 * The delete came one step too early: it is the culprit, as for any use
 * after free.  The C++ runtime's operator new and delete reach malloc and
 * free through native tracking's wrappers, so the block is guarded.
 *
 * Not part of the bug zoo: natively this reads freed memory.  Run it under
 * --sanitize only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: a C++ object from operator new read after delete
 * sanitize-expect: use-after-free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

struct Reading {
    double values[10];
    long id;
    long flags;
};

static long counter;

static PyObject *
run(bool early)
{
    Reading *volatile r = new Reading();
    r->id = ++counter;
    for (int i = 0; i < 10; i++) {
        r->values[i] = i * 0.5;
    }
    long id;
    if (early) {
        delete r;  /* @culprit */
        id = r->id;
    }
    else {
        id = r->id;
        delete r;
    }
    return PyLong_FromLong(id);
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return run(true);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return run(false);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "reads a C++ object after deleting it"},
    {"clean", clean, METH_NOARGS, "reads, then deletes"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_cpp_use_after_delete", NULL, -1, methods, NULL, NULL, NULL,
    NULL
};

PyMODINIT_FUNC
PyInit_native_cpp_use_after_delete(void)
{
    return PyModule_Create(&moduledef);
}
