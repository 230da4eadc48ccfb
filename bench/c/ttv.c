/* ttv.c — targets for bench/time_to_verdict.py: a function of about 5 us
 * per call (LOOPS steps of integer mixing, set at build time by the
 * benchmark's calibration) in three flavours:
 *
 *   leaky_incref()  one extra Py_INCREF(Py_None) per call: 1 reference,
 *                   no object, no block (invisible to RSS and to tracemalloc)
 *   leaky_object()  one new int leaked per call: 1 reference, 1 object,
 *                   1 block of 32 bytes
 *   clean()         the twin: same work, nothing leaked
 *
 * spin(n) runs n steps alone, for the calibration.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef LOOPS
#define LOOPS 5000
#endif

static volatile uint64_t sink;
static uint64_t counter;

static uint64_t work(long n)
{
    uint64_t x = 0x9E3779B97F4A7C15ull ^ counter;
    for (long i = 0; i < n; i++) {
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x += (uint64_t)i;
    }
    sink = x;
    return x;
}

static PyObject *leaky_incref(PyObject *mod, PyObject *unused)
{
    work(LOOPS);
    Py_INCREF(Py_None);     /* the leak: this reference is never released */
    Py_RETURN_NONE;
}

static PyObject *leaky_object(PyObject *mod, PyObject *unused)
{
    uint64_t x = work(LOOPS);
    /* the leak: a new int (above the small-int cache) that nobody owns */
    PyObject *leaked = PyLong_FromUnsignedLongLong((x | (1ull << 40)) + counter++);
    if (leaked == NULL)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *clean(PyObject *mod, PyObject *unused)
{
    uint64_t x = work(LOOPS);
    PyObject *tmp = PyLong_FromUnsignedLongLong((x | (1ull << 40)) + counter++);
    if (tmp == NULL)
        return NULL;
    Py_DECREF(tmp);
    Py_RETURN_NONE;
}

static PyObject *spin(PyObject *mod, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    work(n);
    Py_RETURN_NONE;
}

static PyMethodDef ttv_methods[] = {
    {"leaky_incref", leaky_incref, METH_NOARGS, "~5 us; leaks one reference to None"},
    {"leaky_object", leaky_object, METH_NOARGS, "~5 us; leaks one int object"},
    {"clean", clean, METH_NOARGS, "~5 us; leaks nothing"},
    {"spin", spin, METH_O, "spin(n): n steps of the work loop"},
    {NULL}
};

static struct PyModuleDef ttv_module = {
    PyModuleDef_HEAD_INIT, "ttv", "time-to-verdict targets (bench only)", -1, ttv_methods,
};

PyMODINIT_FUNC PyInit_ttv(void)
{
    PyObject *m = PyModule_Create(&ttv_module);
    if (m != NULL && PyModule_AddIntConstant(m, "LOOPS", LOOPS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
