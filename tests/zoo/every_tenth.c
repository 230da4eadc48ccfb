/*
 * Bug zoo: every_tenth -- leaks on every 10th call only.
 *
 * leaky() counts its calls in a static counter and, every 10th call, builds
 * a progress message with PyUnicode_FromFormat(), uses it and forgets to
 * release it.  The other nine calls allocate nothing that survives.  Per
 * call on average: 0.1 of everything.  The culprit is the line that creates
 * the leaked reference (PyUnicode_FromFormat).  Warm-up and measured call
 * counts that are multiples of 10 give exact figures.
 *
 * zoo-kind: intermittent
 * zoo-expect: refs=0.1 objects=0.1 blocks=0.1
 * zoo-description: periodic report str built every 10th call and never released
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PERIOD 10

static long leaky_calls;
static long clean_calls;
static volatile Py_ssize_t last_length;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (++leaky_calls % PERIOD == 0) {
        PyObject *report = PyUnicode_FromFormat("progress: %ld calls", leaky_calls);  /* @culprit */
        if (report == NULL) {
            return NULL;
        }
        last_length = PyUnicode_GetLength(report);
        /* BUG: missing Py_DECREF(report); */
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (++clean_calls % PERIOD == 0) {
        PyObject *report = PyUnicode_FromFormat("progress: %ld calls", clean_calls);
        if (report == NULL) {
            return NULL;
        }
        last_length = PyUnicode_GetLength(report);
        Py_DECREF(report);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak one str every 10th call."},
    {"clean", clean, METH_NOARGS, "Same code, str released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "every_tenth", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_every_tenth(void)
{
    return PyModule_Create(&moduledef);
}
