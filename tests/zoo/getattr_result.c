/*
 * Bug zoo: getattr_result -- a PyObject_GetAttr result is not released.
 *
 * PyObject_GetAttr() returns a NEW reference, even when the attribute is an
 * existing object.  leaky() reads the module's VERSION string (created once
 * at import) and never releases it.  Nothing is allocated per call; the
 * existing str's refcount grows by one per call.  The culprit is the line
 * that creates the leaked reference (PyObject_GetAttr).
 *
 * The attribute name is interned once at import on purpose: with
 * PyObject_GetAttrString() every call makes a fresh name str, and on 3.11
 * the type attribute cache (4096 slots indexed by the name's ADDRESS) keeps
 * a reference to the last name seen per slot, so even the clean twin would
 * leave a few dozen stale name strs alive before settling.
 *
 * zoo-kind: existing-object-ref
 * zoo-expect: refs=1 objects=0 blocks=0
 * zoo-description: new reference from PyObject_GetAttr to an existing module attribute never released
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *version_name;   /* interned "VERSION", created at init */

static PyObject *
leaky(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyObject *version = PyObject_GetAttr(module, version_name);  /* @culprit */
    if (version == NULL) {
        return NULL;
    }
    int ok = PyUnicode_Check(version);
    /* BUG: missing Py_DECREF(version); */
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "VERSION is not a str");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyObject *version = PyObject_GetAttr(module, version_name);
    if (version == NULL) {
        return NULL;
    }
    int ok = PyUnicode_Check(version);
    Py_DECREF(version);
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "VERSION is not a str");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one reference to VERSION per call."},
    {"clean", clean, METH_NOARGS, "Same code, reference released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "getattr_result", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_getattr_result(void)
{
    if (version_name == NULL) {
        version_name = PyUnicode_InternFromString("VERSION");
        if (version_name == NULL) {
            return NULL;
        }
    }
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "VERSION", "zoo-1.0") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
