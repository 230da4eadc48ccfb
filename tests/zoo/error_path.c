/*
 * Bug zoo: error_path -- a temporary leaks only when a conversion fails.
 *
 * parse_number() creates a str from its C argument, then converts it with
 * PyLong_FromUnicodeObject().  On the success path everything is released;
 * on the error path it returns -1 without Py_DECREF(text).  leaky() parses
 * one good input ("42", no leak) and one bad input ("12x", leaks the str
 * "12x") and clears the ValueError, so it never raises.  The culprit is the
 * line that creates the leaked reference (PyUnicode_FromString).
 *
 * zoo-kind: error-path
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: str temporary not released on the error branch of a failed int conversion
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int
parse_number(const char *s, long *out)
{
    PyObject *text = PyUnicode_FromString(s);  /* @culprit */
    if (text == NULL) {
        return -1;
    }
    PyObject *number = PyLong_FromUnicodeObject(text, 10);
    if (number == NULL) {
        return -1;          /* BUG: missing Py_DECREF(text) */
    }
    *out = PyLong_AsLong(number);
    Py_DECREF(number);
    Py_DECREF(text);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int
parse_number_fixed(const char *s, long *out)
{
    PyObject *text = PyUnicode_FromString(s);
    if (text == NULL) {
        return -1;
    }
    PyObject *number = PyLong_FromUnicodeObject(text, 10);
    if (number == NULL) {
        Py_DECREF(text);
        return -1;
    }
    *out = PyLong_AsLong(number);
    Py_DECREF(number);
    Py_DECREF(text);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
run(int (*parse)(const char *, long *))
{
    long a = 0, b = 0;
    if (parse("42", &a) < 0) {          /* success path: no leak */
        return NULL;
    }
    if (parse("12x", &b) < 0) {         /* error path: ValueError */
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return run(parse_number);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return run(parse_number_fixed);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak a str on a failed conversion."},
    {"clean", clean, METH_NOARGS, "Same code, error branch fixed."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "error_path", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_error_path(void)
{
    return PyModule_Create(&moduledef);
}
