/*
 * Bug zoo: incref_new_object -- an extra Py_INCREF on a new object.
 *
 * leaky() builds an int, takes one more reference "before storing it",
 * appends it to a list (which takes its own reference), releases its own
 * reference and the list.  The extra reference is never released, so the
 * int outlives the list.  The allocation line is not wrong: the culprit is
 * the Py_INCREF that nothing balances.
 *
 * zoo-kind: extra-incref-new
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: extra Py_INCREF on a new int stored in a list, never balanced
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long n;

static PyObject *
store(int extra)
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    PyObject *item = PyLong_FromLong(1000000 + (n++ % 1000));  /* @allocation */
    if (item == NULL) {
        Py_DECREF(list);
        return NULL;
    }
    if (extra) {
        Py_INCREF(item);  /* @culprit */
    }
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    Py_DECREF(list);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return store(1);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return store(0);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Keep an extra reference to a new int."},
    {"clean", clean, METH_NOARGS, "Same code without the extra Py_INCREF."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "incref_new_object", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_incref_new_object(void)
{
    return PyModule_Create(&moduledef);
}
