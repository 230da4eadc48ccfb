/*
 * sampleext -- the C extension behind refhound's pytest sample project.
 *
 * A tiny "codec" with deliberate bugs, each marked with a @culprit comment
 * naming the function whose test must fail under `pytest --refhound`, and
 * a clean twin next to each.  The tests in test_sample.py say which test
 * exercises which function; test_pytest_plugin.py holds the ground truth.
 *
 *   encode(list)        clean: a bytes object with the items' low bytes
 *   encode_leaky(list)  leak: builds an intermediate tuple and never frees it
 *   tag(obj)            clean: returns (obj, "tag")
 *   tag_leaky(obj)      leak: one extra reference to obj per call
 *   scratch(n)          clean: n bytes of raw scratch memory, freed
 *   scratch_leaky(n)    leak: the scratch buffer (PyMem_RawMalloc) is lost
 *   Resource()          a resource object: open() allocates a handle buffer
 *                       that close() forgets to free (the leaky fixture uses it)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *
encode_impl(PyObject *seq, int leak)
{
    if (!PyList_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "encode() takes a list");
        return NULL;
    }
    PyObject *frozen = PyList_AsTuple(seq);  /* @culprit encode_leaky */
    if (frozen == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(frozen);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL) {
        Py_DECREF(frozen);
        return NULL;
    }
    char *p = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(frozen, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(out);
            Py_DECREF(frozen);
            return NULL;
        }
        p[i] = (char)(v & 0xff);
    }
    if (!leak)
        Py_DECREF(frozen);
    /* BUG (leak): `frozen` is never released on the success path */
    return out;
}

static PyObject *
encode(PyObject *m, PyObject *seq)
{
    return encode_impl(seq, 0);
}

static PyObject *
encode_leaky(PyObject *m, PyObject *seq)
{
    return encode_impl(seq, 1);
}

static PyObject *
tag(PyObject *m, PyObject *obj)
{
    return Py_BuildValue("(Os)", obj, "tag");
}

static PyObject *
tag_leaky(PyObject *m, PyObject *obj)
{
    Py_INCREF(obj);  /* @culprit tag_leaky */
    /* BUG: "O" takes its own reference; the one above is never released */
    return Py_BuildValue("(Os)", obj, "tag");
}

static PyObject *
scratch_impl(PyObject *arg, int leak)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1 || n > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "scratch size out of range");
        return NULL;
    }
    unsigned char *buf = PyMem_RawMalloc((size_t)n);  /* @culprit scratch_leaky */
    if (buf == NULL)
        return PyErr_NoMemory();
    memset(buf, 0x5a, (size_t)n);
    unsigned long sum = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        sum += buf[i];
    if (!leak)
        PyMem_RawFree(buf);
    /* BUG (leak): the buffer is forgotten */
    return PyLong_FromUnsignedLong(sum);
}

static PyObject *
scratch(PyObject *m, PyObject *arg)
{
    return scratch_impl(arg, 0);
}

static PyObject *
scratch_leaky(PyObject *m, PyObject *arg)
{
    return scratch_impl(arg, 1);
}

/* Resource: open() allocates a handle; close() forgets to free it. */
typedef struct {
    PyObject_HEAD
    char *handle;
} Resource;

static PyObject *
Resource_open(Resource *self, PyObject *unused)
{
    self->handle = PyMem_Malloc(256);  /* @culprit Resource.open */
    if (self->handle == NULL)
        return PyErr_NoMemory();
    memset(self->handle, 0, 256);
    Py_RETURN_NONE;
}

static PyObject *
Resource_close(Resource *self, PyObject *unused)
{
    /* BUG: PyMem_Free(self->handle) is missing */
    self->handle = NULL;
    Py_RETURN_NONE;
}

static PyObject *
Resource_read(Resource *self, PyObject *unused)
{
    if (self->handle == NULL) {
        PyErr_SetString(PyExc_ValueError, "resource is closed");
        return NULL;
    }
    return PyLong_FromLong((long)self->handle[0]);
}

static PyMethodDef Resource_methods[] = {
    {"open", (PyCFunction)Resource_open, METH_NOARGS, "open the resource"},
    {"close", (PyCFunction)Resource_close, METH_NOARGS, "close the resource"},
    {"read", (PyCFunction)Resource_read, METH_NOARGS, "read one byte"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ResourceType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sampleext.Resource",
    .tp_basicsize = sizeof(Resource),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_methods = Resource_methods,
};

static PyMethodDef methods[] = {
    {"encode", encode, METH_O, "encode(list) -> bytes"},
    {"encode_leaky", encode_leaky, METH_O, "encode(list) -> bytes, leaking a tuple"},
    {"tag", tag, METH_O, "tag(obj) -> (obj, 'tag')"},
    {"tag_leaky", tag_leaky, METH_O, "tag(obj), leaking a reference to obj"},
    {"scratch", scratch, METH_O, "scratch(n) -> checksum of n scratch bytes"},
    {"scratch_leaky", scratch_leaky, METH_O, "scratch(n), leaking the buffer"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "sampleext", "refhound's pytest sample extension", -1, methods,
};

PyMODINIT_FUNC
PyInit_sampleext(void)
{
    if (PyType_Ready(&ResourceType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ResourceType);
    if (PyModule_AddObject(m, "Resource", (PyObject *)&ResourceType) < 0) {
        Py_DECREF(&ResourceType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
