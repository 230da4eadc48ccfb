/*
 * Bug zoo: buildvalue_o_format -- "O" instead of "N" in Py_BuildValue.
 *
 * Py_BuildValue's "O" format takes a NEW reference to its argument ("N"
 * would steal it).  leaky() formats a label with PyUnicode_FromFormat(),
 * packs it into a 1-tuple with "(O)", releases the tuple and forgets that it
 * still owns the label.  The str survives.  The culprit is the line that
 * creates the leaked reference (PyUnicode_FromFormat).
 *
 * zoo-kind: new-object
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: PyUnicode_FromFormat str passed to Py_BuildValue("(O)") and never released
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long counter;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *label = PyUnicode_FromFormat("item-%ld", counter++);  /* @culprit */
    if (label == NULL) {
        return NULL;
    }
    PyObject *args = Py_BuildValue("(O)", label);
    /* BUG: "O" took its own reference; missing Py_DECREF(label) */
    if (args == NULL) {
        return NULL;
    }
    Py_DECREF(args);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *label = PyUnicode_FromFormat("item-%ld", counter++);
    if (label == NULL) {
        return NULL;
    }
    PyObject *args = Py_BuildValue("(O)", label);
    Py_DECREF(label);
    if (args == NULL) {
        return NULL;
    }
    Py_DECREF(args);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one formatted str per call."},
    {"clean", clean, METH_NOARGS, "Same code, label released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "buildvalue_o_format", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_buildvalue_o_format(void)
{
    return PyModule_Create(&moduledef);
}
