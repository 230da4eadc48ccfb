/*
 * Bug zoo: inline_incref_helper -- an inlined helper takes the extra reference.
 *
 * The module keeps a str made at import in a static variable.  leaky()
 * marks it as used through note_use(), a static helper the compiler
 * inlines (always_inline: also at -O0), which takes a reference "to keep
 * it alive" that nothing ever releases.  The write lands in object.h's
 * Py_INCREF, inlined into note_use, inlined into leaky: the culprit is the
 * helper's Py_INCREF line.
 *
 * zoo-kind: extra-incref
 * zoo-expect: refs=1 objects=0 blocks=0
 * zoo-description: extra Py_INCREF in an always-inlined static helper, never balanced
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Inlined at every optimisation level (-O0 included). */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

static PyObject *label;
static volatile long uses;

ALWAYS_INLINE void
note_use(PyObject *obj)
{
    Py_INCREF(obj);  /* @culprit */
    uses++;
}

ALWAYS_INLINE void
count_use(PyObject *obj)
{
    (void)obj;
    uses++;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    note_use(label);
    Py_RETURN_NONE;
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    count_use(label);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "Take a reference that is never released."},
    {"clean", clean, METH_NOARGS, "Count the use only."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "inline_incref_helper", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_inline_incref_helper(void)
{
    label = PyUnicode_FromString("refhound_zoo_label");
    if (label == NULL) {
        return NULL;
    }
    return PyModule_Create(&moduledef);
}
