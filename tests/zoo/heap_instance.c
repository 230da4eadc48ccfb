/*
 * Bug zoo: heap_instance -- an instance of a heap type leaks.
 *
 * The module creates a heap type (PyType_FromSpec, no GC) at import.
 * leaky() instantiates it and never releases the instance.  Every instance
 * of a heap type holds a strong reference to its type, so per call that is
 * one object, one block, and TWO references (the instance's own and the
 * type's refcount).  The culprit is the line that creates the leaked
 * reference (the call that instantiates the type).
 *
 * zoo-kind: new-object
 * zoo-expect: refs=2 objects=1 blocks=1
 * zoo-description: instance of a heap type (PyType_FromSpec) never released; it also pins a type reference
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    long value;
} PointObject;

static PyObject *Point_Type;   /* heap type, created at import */

static void
point_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);   /* heap-type instances own a reference to their type */
}

static PyType_Slot point_slots[] = {
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, point_dealloc},
    {0, NULL}
};

static PyType_Spec point_spec = {
    "heap_instance.Point", sizeof(PointObject), 0,
    Py_TPFLAGS_DEFAULT, point_slots
};

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *point = PyObject_CallObject(Point_Type, NULL);  /* @culprit */
    if (point == NULL) {
        return NULL;
    }
    ((PointObject *)point)->value = 42;
    /* BUG: missing Py_DECREF(point); */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *point = PyObject_CallObject(Point_Type, NULL);
    if (point == NULL) {
        return NULL;
    }
    ((PointObject *)point)->value = 42;
    Py_DECREF(point);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one Point instance per call."},
    {"clean", clean, METH_NOARGS, "Same code, instance released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "heap_instance", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_heap_instance(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) {
        return NULL;
    }
    if (Point_Type == NULL) {
        Point_Type = PyType_FromSpec(&point_spec);
        if (Point_Type == NULL) {
            Py_DECREF(m);
            return NULL;
        }
    }
    Py_INCREF(Point_Type);
    if (PyModule_AddObject(m, "Point", Point_Type) < 0) {
        Py_DECREF(Point_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
