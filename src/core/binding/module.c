/* module.c — the extension module refhound._core: PyInit and the table of
 * functions, assembled from the method table of each py_*.c file, the
 * Session type, TrackingError, the probes' capsule and HAVE_VALGRIND.
 * Nothing else: the work is in the engine files of src/core.
 */
#include "binding.h"
#include "unwind.h"

PyObject *_rh_TrackingError = NULL;

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "refhound._core",
    "refhound's engine: allocator hooks, heap walks, samples and statistics.", -1, NULL,
};

/* Method tables of the binding files, each NULL-terminated. */
static PyMethodDef *const method_tables[] = {
    _rh_py_tracking_methods,
    _rh_py_stacks_methods,
    _rh_py_watch_methods,
    _rh_py_probes_methods,
    _rh_py_system_methods,
    _rh_py_valgrind_methods,
    _rh_py_native_methods,
    _rh_py_guard_methods,
    NULL
};

PyMODINIT_FUNC PyInit__core(void)
{
    if (PyType_Ready(&_rh_SessionType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL)
        return NULL;
    _rh_unwind_init();
    for (int i = 0; method_tables[i] != NULL; i++) {
        if (PyModule_AddFunctions(m, method_tables[i]) < 0)
            goto error;
    }
#ifdef HAVE_VALGRIND
    if (PyModule_AddIntConstant(m, "HAVE_VALGRIND", 1) < 0)
        goto error;
#else
    if (PyModule_AddIntConstant(m, "HAVE_VALGRIND", 0) < 0)
        goto error;
#endif
    if (_rh_py_add_probes_capsule(m) < 0)
        goto error;
    if (_rh_TrackingError == NULL) {
        _rh_TrackingError = PyErr_NewExceptionWithDoc(
            "refhound._core.TrackingError",
            "Tracking stopped under a check (the tracker ran out of memory); the "
            "program goes on, the check cannot conclude.", NULL, NULL);
        if (_rh_TrackingError == NULL)
            goto error;
    }
    if (PyModule_AddObject(m, "TrackingError", Py_NewRef(_rh_TrackingError)) < 0) {
        Py_DECREF(_rh_TrackingError);
        goto error;
    }
    Py_INCREF(&_rh_SessionType);
    if (PyModule_AddObject(m, "Session", (PyObject *)&_rh_SessionType) < 0) {
        Py_DECREF(&_rh_SessionType);
        goto error;
    }
    return m;
error:
    Py_DECREF(m);
    return NULL;
}
