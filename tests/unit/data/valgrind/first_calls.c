/*
 * Capture-only case for the saved Valgrind XML (tests/unit/data/valgrind):
 * a one-time allocation, not a per-call leak.
 *
 * leaky() loses one 48-byte raw block on each of its first three calls
 * only (a cache set up once and dropped, an import-time table): memcheck's
 * searches in the warm-up iterations see it grow, the measured ones do
 * not, so the launcher reports a one-time allocation and no finding.
 * clean() allocates and frees.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int calls;
static volatile void *last;

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (calls++ < 3) {
        last = PyMem_RawMalloc(48);     /* lost on the next call: one-time */
    }
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    void *p = PyMem_RawMalloc(48);
    PyMem_RawFree(p);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, NULL},
    {"clean", clean, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "first_calls", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_first_calls(void)
{
    return PyModule_Create(&module);
}
