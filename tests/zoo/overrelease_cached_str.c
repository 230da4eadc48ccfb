/*
 * Bug zoo: overrelease_cached_str -- one Py_DECREF too many on an interned str.
 *
 * The module caches an interned key string in a dict at import.  leaky()
 * fetches it with PyDict_GetItemWithError (a borrowed reference) and
 * releases it.  The interned str's count falls by one per call.  The
 * module takes a million references at import to keep the zoo safe.
 * Verdict "error"; the culprit is the Py_DECREF line.
 *
 * zoo-kind: over-decref
 * zoo-expect: refs=-1 objects=0 blocks=0
 * zoo-description: Py_DECREF on a borrowed reference to an interned str from a cache dict
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *cache;
static PyObject *slot;
static volatile Py_ssize_t total;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *key = PyDict_GetItemWithError(cache, slot);    /* borrowed */
    if (key == NULL) {
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_KeyError, "slot");
    }
    total += PyUnicode_GET_LENGTH(key);
    Py_DECREF(key);  /* @culprit */
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *key = PyDict_GetItemWithError(cache, slot);    /* borrowed */
    if (key == NULL) {
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_KeyError, "slot");
    }
    total += PyUnicode_GET_LENGTH(key);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Release a borrowed interned str."},
    {"clean", clean, METH_NOARGS, "Borrow it correctly."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "overrelease_cached_str", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_overrelease_cached_str(void)
{
    cache = PyDict_New();
    slot = PyLong_FromLong(1000001);
    PyObject *key = PyUnicode_InternFromString("refhound_zoo_cached_key");
    if (cache == NULL || slot == NULL || key == NULL ||
            PyDict_SetItem(cache, slot, key) < 0) {
        return NULL;
    }
    for (int i = 0; i < 1000000; i++) {
        Py_INCREF(key);
    }
    Py_DECREF(key);
    return PyModule_Create(&moduledef);
}
