/*
 * Bug zoo: getbuffer_none -- a buffer export's placeholder None is lost.
 *
 * The shape of Cython's generated __getbuffer__ when the .pyx calls
 * PyBuffer_FillInfo (msgpack 1.2.4's Packer): the export first stores
 * Py_None in view->obj with a reference of its own, then
 * PyBuffer_FillInfo stores the exporter there over it without releasing
 * it, and the export's exit path releases view->obj only while it is
 * still None.  One reference to None is lost per export.
 *
 * Two static types share one layout and their tp_new/tp_dealloc: an Owner
 * keeps a `fallback` field set to None in owner_new (a reference of its
 * own) and released in owner_dealloc, as Cython does for every object
 * field.  leaky() creates a LeakyOwner, exports its buffer once through a
 * memoryview and drops both.  The deallocator's release of `fallback`
 * balances owner_new's increment, not the export's: the culprit is the
 * export's Py_INCREF.
 *
 * zoo-kind: extra-incref
 * zoo-expect: refs=1 objects=0 blocks=0
 * zoo-expect-immortal: refs=0
 * zoo-description: buffer export stores a referenced Py_None in view->obj, then PyBuffer_FillInfo overwrites it (Cython's __getbuffer__ shape)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *fallback;  /* strong reference, None until set */
    char data[16];
} OwnerObject;

static PyObject *
owner_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    OwnerObject *self = (OwnerObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->fallback = Py_None;
    Py_INCREF(Py_None);
    memset(self->data, 'o', sizeof(self->data));
    return (PyObject *)self;
}

static void
owner_dealloc(PyObject *self)
{
    Py_CLEAR(((OwnerObject *)self)->fallback);
    Py_TYPE(self)->tp_free(self);
}

static int
leaky_owner_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    view->obj = Py_None;
    Py_INCREF(Py_None);  /* @culprit */
    /* PyBuffer_FillInfo stores self in view->obj over the None. */
    if (PyBuffer_FillInfo(view, self, ((OwnerObject *)self)->data,
                          sizeof(((OwnerObject *)self)->data), 1, flags) < 0) {
        return -1;
    }
    return 0;
}

static int
owner_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, self, ((OwnerObject *)self)->data,
                             sizeof(((OwnerObject *)self)->data), 1, flags);
}

static PyBufferProcs leaky_owner_as_buffer = {leaky_owner_getbuffer, NULL};
static PyBufferProcs owner_as_buffer = {owner_getbuffer, NULL};

static PyTypeObject LeakyOwner_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "getbuffer_none.LeakyOwner",
    .tp_basicsize = sizeof(OwnerObject),
    .tp_dealloc = owner_dealloc,
    .tp_as_buffer = &leaky_owner_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = owner_new,
    .tp_doc = "Exports its bytes; each export loses a reference to None.",
};

static PyTypeObject Owner_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "getbuffer_none.Owner",
    .tp_basicsize = sizeof(OwnerObject),
    .tp_dealloc = owner_dealloc,
    .tp_as_buffer = &owner_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = owner_new,
    .tp_doc = "Exports its bytes.",
};

static PyObject *
export_once(PyTypeObject *type)
{
    PyObject *owner = PyObject_CallNoArgs((PyObject *)type);
    if (owner == NULL) {
        return NULL;
    }
    PyObject *view = PyMemoryView_FromObject(owner);
    Py_DECREF(owner);
    if (view == NULL) {
        return NULL;
    }
    Py_DECREF(view);
    Py_RETURN_NONE;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return export_once(&LeakyOwner_Type);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return export_once(&Owner_Type);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Create a LeakyOwner, export its buffer once, drop both."},
    {"clean", clean, METH_NOARGS, "Create an Owner, export its buffer once, drop both."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "getbuffer_none", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_getbuffer_none(void)
{
    if (PyType_Ready(&LeakyOwner_Type) < 0 || PyType_Ready(&Owner_Type) < 0) {
        return NULL;
    }
    return PyModule_Create(&moduledef);
}
