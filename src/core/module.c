/* module.c — the extension module refhound._core: argument conversion and
 * exceptions only; the work is in the other files of src/core.
 */
#include "rh_internal.h"

static rh_adopt_stats_t last_adoption;
PyObject *_rh_TrackingError = NULL;

static PyObject *core_start(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"adopt", NULL};
    int adopt = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwlist, &adopt))
        return NULL;
    if (_rh_tracker_active())
        Py_RETURN_FALSE;
    if (_rh_tracker_start() < 0)
        return NULL;
    if (adopt && _rh_adopt_existing(&last_adoption) < 0) {
        _rh_tracker_stop();
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *core_stop(PyObject *mod, PyObject *unused)
{
    _rh_tracker_stop();
    _rh_typeset_clear();
    Py_RETURN_NONE;
}

static PyObject *core_is_tracking(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(_rh_tracker_active());
}

static PyObject *core_stats(PyObject *mod, PyObject *unused)
{
    int64_t blocks[RH_NDOMAINS], bytes[RH_NDOMAINS];
    _rh_tracker_totals(blocks, bytes);
    const char *why = _rh_tracker_failure();
    return Py_BuildValue(
        "{s:O,s:{s:L,s:L,s:L,s:L},s:{s:L,s:L,s:L},s:n,s:n,s:z,s:k,"
        "s:{s:L,s:L,s:L,s:L}}",
        "tracking", _rh_tracker_active() ? Py_True : Py_False,
        "blocks", "raw", (long long)blocks[RH_DOMAIN_RAW], "mem", (long long)blocks[RH_DOMAIN_MEM],
        "obj", (long long)blocks[RH_DOMAIN_OBJ], "adopted", (long long)blocks[RH_DOMAIN_ADOPTED],
        "bytes", "raw", (long long)bytes[RH_DOMAIN_RAW], "mem", (long long)bytes[RH_DOMAIN_MEM],
        "obj", (long long)bytes[RH_DOMAIN_OBJ],
        "table_bytes", (Py_ssize_t)_rh_tracker_table_bytes(),
        "table_entries", (Py_ssize_t)_rh_tracker_table_entries(),
        "failure", why,
        "epoch", (unsigned long)_rh_epoch,
        "adopted", "types", (long long)last_adoption.from_types,
        "gc", (long long)last_adoption.from_gc,
        "referents", (long long)last_adoption.from_referents,
        "static_data", (long long)last_adoption.from_static_data);
}

static PyObject *core_procstat(PyObject *mod, PyObject *unused)
{
    rh_procstat_t ps;
    _rh_procstat_read(&ps, 1);
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L}", "rss_bytes", (long long)ps.rss_bytes,
                         "uss_bytes", (long long)ps.uss_bytes, "fds", (long long)ps.fds,
                         "threads", (long long)ps.threads,
                         "native_bytes", (long long)ps.native_bytes);
}

static int to_doubles(PyObject *seq, double **out, Py_ssize_t *n)
{
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of numbers");
    if (fast == NULL)
        return -1;
    *n = PySequence_Fast_GET_SIZE(fast);
    *out = PyMem_Malloc(sizeof(double) * (*n + 1));
    if (*out == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        (*out)[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if ((*out)[i] == -1.0 && PyErr_Occurred()) {
            PyMem_Free(*out);
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

static PyObject *core_trend(PyObject *mod, PyObject *args)
{
    PyObject *seq;
    double alpha = 0.001;
    if (!PyArg_ParseTuple(args, "O|d", &seq, &alpha))
        return NULL;
    double *x;
    Py_ssize_t n;
    if (to_doubles(seq, &x, &n) < 0)
        return NULL;
    rh_trend_result_t r;
    _rh_trend_classify(x, (int)n, alpha, &r);
    PyMem_Free(x);
    static const char *names[] = {"flat", "noise", "unclear", "growing", "falling"};
    return Py_BuildValue("{s:s,s:d,s:d,s:d}", "trend", names[r.trend], "slope", r.slope,
                         "p_up", r.p_up, "p_down", r.p_down);
}

/* The live object at an address, or None: only what the block table and
 * the type set vouch for is read, so any integer is safe to ask about. */
static PyObject *core_object_at(PyObject *mod, PyObject *arg)
{
    uintptr_t addr = (uintptr_t)PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    static const size_t pre[] = {0, 2 * sizeof(void *), 4 * sizeof(void *)};
    for (size_t i = 0; _rh_tracker_active() && i < 3; i++) {
        if (addr < pre[i])
            break;
        const rh_block_t *b = _rh_tracker_find(addr - pre[i]);
        PyObject *op;
        if (b != NULL && _rh_recognize(b, &op, 1) != NULL && (uintptr_t)op == addr)
            return Py_NewRef(op);
    }
    Py_RETURN_NONE;
}

/* Where the table has an object: (domain, epoch) or None. For tests. */
static PyObject *core_block_of(PyObject *mod, PyObject *obj)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup((uintptr_t)Py_TYPE(obj));
    if (ti == NULL || !_rh_tracker_active())
        Py_RETURN_NONE;
    const rh_block_t *b = _rh_tracker_find((uintptr_t)obj - ti->preheader);
    if (b == NULL)
        Py_RETURN_NONE;
    static const char *names[] = {"raw", "mem", "obj", "adopted"};
    return Py_BuildValue("(sk)", names[rh_block_domain(b)], (unsigned long)rh_block_epoch(b));
}

/* Blocks born in one epoch, for tests and debugging: [(addr, size, domain)] */
static PyObject *core_blocks_of_epoch(PyObject *mod, PyObject *arg)
{
    unsigned long epoch = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred())
        return NULL;
    PyObject *out = PyList_New(0);
    const rh_table_t *t = &_rh_gil_table;
    for (size_t i = 0; out && t->slots && i < t->capacity; i++) {
        const rh_block_t *b = &t->slots[i];
        if (rh_block_empty(b) || rh_block_epoch(b) != epoch || rh_block_domain(b) == RH_DOMAIN_ADOPTED)
            continue;
        PyObject *item = Py_BuildValue("(kni)", (unsigned long)rh_block_addr(b),
                                       (Py_ssize_t)rh_block_size(b), rh_block_domain(b));
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
        }
        Py_XDECREF(item);
    }
    return out;
}

static PyMethodDef core_methods[] = {
    {"object_at", core_object_at, METH_O,
     "object_at(address) -> the live object there, or None (never reads unknown memory)"},
    {"block_of", core_block_of, METH_O,
     "block_of(obj) -> (domain, birth epoch) of the object's block, or None"},
    {"blocks_of_epoch", core_blocks_of_epoch, METH_O,
     "blocks_of_epoch(epoch) -> [(address, size, domain)] of live mem/obj blocks"},
    {"start", (PyCFunction)(void (*)(void))core_start, METH_VARARGS | METH_KEYWORDS,
     "start(adopt=True) -> bool: install the allocator hooks and adopt existing objects"},
    {"stop", core_stop, METH_NOARGS, "stop tracking and remove the hooks when possible"},
    {"is_tracking", core_is_tracking, METH_NOARGS, "is tracking on?"},
    {"stats", core_stats, METH_NOARGS, "tracker figures: live blocks, bytes, table size"},
    {"procstat", core_procstat, METH_NOARGS, "RSS, USS, fds, threads, native heap bytes"},
    {"trend", core_trend, METH_VARARGS, "trend(series, alpha=0.001) -> classification"},
    {NULL}
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "refhound._core",
    "refhound's engine: allocator hooks, heap walks, samples and statistics.", -1, core_methods,
};

/* Method tables of the other files of the engine, each NULL-terminated.
 * A file that offers functions to Python declares its table in
 * rh_internal.h and adds it here. */
static PyMethodDef *const extra_methods[] = {
    _rh_stacks_methods,
    _rh_symbols_methods,
    _rh_watch_methods,
    _rh_unwind_methods,
    _rh_probes_methods,
    _rh_pymalloc_methods,
    _rh_doctor_methods,
    _rh_vgclient_methods,   /* vgclient.c: Valgrind client requests, pool allocator */
    NULL
};

PyMODINIT_FUNC PyInit__core(void)
{
    if (PyType_Ready(&_rh_SessionType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL)
        return NULL;
    _rh_stacks_init();
    for (int i = 0; extra_methods[i] != NULL; i++) {
        if (PyModule_AddFunctions(m, extra_methods[i]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
#ifdef HAVE_VALGRIND
    if (PyModule_AddIntConstant(m, "HAVE_VALGRIND", 1) < 0) {
#else
    if (PyModule_AddIntConstant(m, "HAVE_VALGRIND", 0) < 0) {
#endif
        Py_DECREF(m);
        return NULL;
    }
    if (_rh_probes_add_capsule(m) < 0) {     /* probes.c: the C API of refhound.h */
        Py_DECREF(m);
        return NULL;
    }
    _rh_TrackingError = PyErr_NewExceptionWithDoc(
        "refhound._core.TrackingError",
        "Tracking stopped under a check (the tracker ran out of memory); the "
        "program goes on, the check cannot conclude.", NULL, NULL);
    if (_rh_TrackingError == NULL || PyModule_AddObject(m, "TrackingError", Py_NewRef(_rh_TrackingError)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&_rh_SessionType);
    if (PyModule_AddObject(m, "Session", (PyObject *)&_rh_SessionType) < 0) {
        Py_DECREF(&_rh_SessionType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
