/*
 * Sanitize case: overflow_object -- a field written one word past the end
 * of an object whose type declares too small a size.
 *
 * The Counter type's tp_basicsize leaves out its last field (it was added
 * to the struct, not to the size: offsetof(CounterObject, last) instead of
 * sizeof(CounterObject)).  leaky() makes an instance and sets that field:
 * the write lands past the end of the object's block.  The culprit is the
 * write.  clean() does the same with a type whose size is right.
 *
 * Not part of the bug zoo: natively this corrupts the heap.  Run it under
 * --sanitize or Valgrind only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: a field written past an object whose tp_basicsize leaves it out
 * sanitize-expect: overflow
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

typedef struct {
    PyObject_HEAD
    long count;
    long last;          /* added later; BadCounter's size forgot it */
} CounterObject;

static PyTypeObject BadCounter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "overflow_object.BadCounter",
    .tp_basicsize = offsetof(CounterObject, last),      /* BUG: sizeof(CounterObject) */
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
};

static PyTypeObject Counter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "overflow_object.Counter",
    .tp_basicsize = sizeof(CounterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
};

static volatile long total;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    CounterObject *c = PyObject_New(CounterObject, &BadCounter_Type);
    if (c == NULL) {
        return NULL;
    }
    c->count = 1;
    c->last = total;  /* @culprit */
    total += c->count;
    Py_DECREF(c);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    CounterObject *c = PyObject_New(CounterObject, &Counter_Type);
    if (c == NULL) {
        return NULL;
    }
    c->count = 1;
    c->last = total;
    total += c->count;
    Py_DECREF(c);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "writes a field past its object"},
    {"clean", clean, METH_NOARGS, "the same with a type of the right size"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "overflow_object", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_overflow_object(void)
{
    if (PyType_Ready(&BadCounter_Type) < 0 || PyType_Ready(&Counter_Type) < 0) {
        return NULL;
    }
    return PyModule_Create(&moduledef);
}
