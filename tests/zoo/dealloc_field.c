/*
 * Bug zoo: dealloc_field -- tp_dealloc forgets to release a field.
 *
 * Two STATIC extension types (no GC) share one layout: a Holder owns a
 * bytes payload.  LeakyHolder's tp_dealloc frees the instance but forgets
 * Py_XDECREF(self->payload); Holder's tp_dealloc (the clean twin) releases
 * it.  leaky() creates and drops one LeakyHolder per call: the holder is
 * freed, its 100-byte bytes payload survives.  The culprit is the line that
 * creates the leaked reference (the payload's PyBytes_FromStringAndSize in
 * leaky); the fix belongs in leaky_holder_dealloc().
 *
 * zoo-kind: dealloc
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: static type whose tp_dealloc forgets Py_XDECREF of its bytes payload field
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PAYLOAD_SIZE 100

typedef struct {
    PyObject_HEAD
    PyObject *payload;   /* strong reference */
} HolderObject;

static void
leaky_holder_dealloc(PyObject *self)
{
    /* BUG: missing Py_XDECREF(((HolderObject *)self)->payload); */
    Py_TYPE(self)->tp_free(self);
}

static void
holder_dealloc(PyObject *self)
{
    Py_XDECREF(((HolderObject *)self)->payload);
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject LeakyHolder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dealloc_field.LeakyHolder",
    .tp_basicsize = sizeof(HolderObject),
    .tp_dealloc = leaky_holder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Holds a payload; its dealloc forgets the payload.",
};

static PyTypeObject Holder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dealloc_field.Holder",
    .tp_basicsize = sizeof(HolderObject),
    .tp_dealloc = holder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Holds a payload and releases it.",
};

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    HolderObject *h = PyObject_New(HolderObject, &LeakyHolder_Type);
    if (h == NULL) {
        return NULL;
    }
    h->payload = PyBytes_FromStringAndSize(NULL, PAYLOAD_SIZE);  /* @culprit */
    if (h->payload == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    memset(PyBytes_AS_STRING(h->payload), 'z', PAYLOAD_SIZE);
    Py_DECREF(h);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    HolderObject *h = PyObject_New(HolderObject, &Holder_Type);
    if (h == NULL) {
        return NULL;
    }
    h->payload = PyBytes_FromStringAndSize(NULL, PAYLOAD_SIZE);
    if (h->payload == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    memset(PyBytes_AS_STRING(h->payload), 'z', PAYLOAD_SIZE);
    Py_DECREF(h);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Create and drop one LeakyHolder."},
    {"clean", clean, METH_NOARGS, "Create and drop one Holder."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "dealloc_field", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_dealloc_field(void)
{
    if (PyType_Ready(&LeakyHolder_Type) < 0 || PyType_Ready(&Holder_Type) < 0) {
        return NULL;
    }
    return PyModule_Create(&moduledef);
}
