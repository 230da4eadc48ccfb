/*
 * Bug zoo: gc_cycle_no_traverse -- a GC type whose tp_traverse is missing.
 *
 * Node is a STATIC type with Py_TPFLAGS_HAVE_GC holding one strong reference
 * (self->ref).  leaky() creates a Node that references itself and drops its
 * own reference: a one-object cycle that only the cyclic GC can free.
 *
 * The collector finds cycles by subtracting the references it can SEE
 * through tp_traverse.  CPython 3.11's PyType_Ready rejects a HAVE_GC type
 * whose tp_traverse slot is NULL (SystemError at import), so the missing
 * traverse is written the way it survives in real code: the slot points to
 * a stub that visits nothing.  The GC therefore believes the self-reference
 * is external and the node is never collected.  The culprit is the
 * .tp_traverse line of LeakyNode_Type (where node_traverse belongs; it is
 * not inside any function).  The clean twin, Node_Type, has a real
 * tp_traverse and tp_clear, and its cycles die in gc.collect().
 *
 * zoo-kind: gc-cycle
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: GC type with a do-nothing tp_traverse (stands for a missing one); self-cycle never collected
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *ref;   /* strong reference, may point to self */
} NodeObject;

/* What LeakyNode_Type uses: satisfies PyType_Ready, visits nothing. */
static int
missing_traverse(PyObject *Py_UNUSED(self), visitproc Py_UNUSED(visit),
                 void *Py_UNUSED(arg))
{
    return 0;
}

static int
node_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((NodeObject *)self)->ref);
    return 0;
}

static int
node_clear(PyObject *self)
{
    Py_CLEAR(((NodeObject *)self)->ref);
    return 0;
}

static void
node_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(((NodeObject *)self)->ref);
    PyObject_GC_Del(self);
}

static PyTypeObject LeakyNode_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gc_cycle_no_traverse.LeakyNode",
    .tp_basicsize = sizeof(NodeObject),
    .tp_dealloc = node_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = missing_traverse,  /* @culprit */
    .tp_clear = node_clear,
};

static PyTypeObject Node_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gc_cycle_no_traverse.Node",
    .tp_basicsize = sizeof(NodeObject),
    .tp_dealloc = node_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = node_traverse,
    .tp_clear = node_clear,
};

static PyObject *
make_self_cycle(PyTypeObject *type)
{
    NodeObject *node = PyObject_GC_New(NodeObject, type);
    if (node == NULL) {
        return NULL;
    }
    Py_INCREF(node);
    node->ref = (PyObject *)node;      /* node -> node */
    PyObject_GC_Track(node);
    Py_DECREF(node);                   /* only the cycle keeps it alive */
    Py_RETURN_NONE;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return make_self_cycle(&LeakyNode_Type);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return make_self_cycle(&Node_Type);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Create an uncollectable self-cycle."},
    {"clean", clean, METH_NOARGS, "Create a collectable self-cycle."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "gc_cycle_no_traverse", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_gc_cycle_no_traverse(void)
{
    if (PyType_Ready(&LeakyNode_Type) < 0 || PyType_Ready(&Node_Type) < 0) {
        return NULL;
    }
    return PyModule_Create(&moduledef);
}
