/*
 * Bug zoo: gc_cycle_no_gc -- a container type without GC support.
 *
 * LeakyBox is a STATIC type that holds an arbitrary object (self->ref) but
 * does not declare Py_TPFLAGS_HAVE_GC, so the cyclic collector never sees
 * it.  leaky() creates a box that contains itself and drops its own
 * reference: the self-cycle can never be freed.  The culprit is the
 * .tp_flags line of LeakyBox_Type (Py_TPFLAGS_HAVE_GC and the GC slots are
 * missing there; it is not inside any function).  The clean twin, Box_Type,
 * is the same type with GC support (HAVE_GC, tp_traverse, tp_clear,
 * PyObject_GC_New/Track/UnTrack/Del).
 *
 * zoo-kind: gc-cycle
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: container type without Py_TPFLAGS_HAVE_GC; self-cycle never collected
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *ref;   /* strong reference, may point to self */
} BoxObject;

/* ---- the buggy type: no GC support ---- */

static void
leaky_box_dealloc(PyObject *self)
{
    Py_CLEAR(((BoxObject *)self)->ref);
    PyObject_Free(self);
}

static PyTypeObject LeakyBox_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gc_cycle_no_gc.LeakyBox",
    .tp_basicsize = sizeof(BoxObject),
    .tp_dealloc = leaky_box_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,  /* @culprit */
};

/* ---- the fixed type: same box, with GC support ---- */

static int
box_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((BoxObject *)self)->ref);
    return 0;
}

static int
box_clear(PyObject *self)
{
    Py_CLEAR(((BoxObject *)self)->ref);
    return 0;
}

static void
box_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(((BoxObject *)self)->ref);
    PyObject_GC_Del(self);
}

static PyTypeObject Box_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gc_cycle_no_gc.Box",
    .tp_basicsize = sizeof(BoxObject),
    .tp_dealloc = box_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = box_traverse,
    .tp_clear = box_clear,
};

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    BoxObject *box = PyObject_New(BoxObject, &LeakyBox_Type);
    if (box == NULL) {
        return NULL;
    }
    Py_INCREF(box);
    box->ref = (PyObject *)box;        /* box -> box */
    Py_DECREF(box);                    /* only the cycle keeps it alive */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    BoxObject *box = PyObject_GC_New(BoxObject, &Box_Type);
    if (box == NULL) {
        return NULL;
    }
    Py_INCREF(box);
    box->ref = (PyObject *)box;        /* box -> box */
    PyObject_GC_Track(box);
    Py_DECREF(box);                    /* only the cycle keeps it alive */
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Create an uncollectable self-cycle."},
    {"clean", clean, METH_NOARGS, "Create a collectable self-cycle."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "gc_cycle_no_gc", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_gc_cycle_no_gc(void)
{
    if (PyType_Ready(&LeakyBox_Type) < 0 || PyType_Ready(&Box_Type) < 0) {
        return NULL;
    }
    return PyModule_Create(&moduledef);
}
