/*
 * Bug zoo: proportional -- leaks one object per input item.
 *
 * leaky() sums a fixed internal input of N = 7 items, converting each C
 * long to an int object and adding it to a running total, but it never
 * releases the per-item int.  The leak is proportional to the input size:
 * 7 objects, 7 references and 7 blocks per call (the values are > 256, so
 * every conversion allocates).  The running totals are released properly.
 * The culprit is the line that creates the leaked reference
 * (PyLong_FromLong inside the loop).
 *
 * zoo-kind: proportional
 * zoo-expect: refs=7 objects=7 blocks=7
 * zoo-description: per-item int temporary never released while summing a 7-item input
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define N_ITEMS 7

static const long input[N_ITEMS] = {1001, 2002, 3003, 4004, 5005, 6006, 7007};
static volatile long last_total;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *total = PyLong_FromLong(0);
    if (total == NULL) {
        return NULL;
    }
    for (int i = 0; i < N_ITEMS; i++) {
        PyObject *item = PyLong_FromLong(input[i]);  /* @culprit */
        if (item == NULL) {
            Py_DECREF(total);
            return NULL;
        }
        PyObject *sum = PyNumber_Add(total, item);
        /* BUG: missing Py_DECREF(item); */
        Py_DECREF(total);
        if (sum == NULL) {
            return NULL;
        }
        total = sum;
    }
    last_total = PyLong_AsLong(total);
    Py_DECREF(total);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *total = PyLong_FromLong(0);
    if (total == NULL) {
        return NULL;
    }
    for (int i = 0; i < N_ITEMS; i++) {
        PyObject *item = PyLong_FromLong(input[i]);
        if (item == NULL) {
            Py_DECREF(total);
            return NULL;
        }
        PyObject *sum = PyNumber_Add(total, item);
        Py_DECREF(item);
        Py_DECREF(total);
        if (sum == NULL) {
            return NULL;
        }
        total = sum;
    }
    last_total = PyLong_AsLong(total);
    Py_DECREF(total);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Leak 7 ints per call."},
    {"clean", clean, METH_NOARGS, "Same code, items released."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "proportional", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_proportional(void)
{
    return PyModule_Create(&moduledef);
}
