/* py_native.c — refhound._core: native tracking (native.c): start, stop,
 * its figures and how it sees the loaded objects.
 */
#include "binding.h"
#include "native.h"
#include "tracker.h"

static const char *mode_name(int mode)
{
    switch (mode) {
    case RH_NATIVE_GOT: return "got";
    case RH_NATIVE_PRELOAD: return "preload";
    }
    return "off";
}

/* native_start() -> True when this call started it, False when it was on.
 * RuntimeError with the reason when it cannot start (the program goes on
 * untouched). */
static PyObject *py_native_start(PyObject *mod, PyObject *unused)
{
    if (_rh_native_active())
        Py_RETURN_FALSE;
    const char *why = NULL;
    if (_rh_native_start(&why) < 0) {
        PyErr_Format(PyExc_RuntimeError, "refhound: %s", why ? why : "native tracking failed");
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *py_native_stop(PyObject *mod, PyObject *unused)
{
    _rh_native_stop();
    Py_RETURN_NONE;
}

static PyObject *py_native_stats(PyObject *mod, PyObject *unused)
{
    rh_native_stats_t st;
    _rh_native_stats(&st);
    int64_t blocks[RH_NDOMAINS], bytes[RH_NDOMAINS];
    _rh_tracker_totals(blocks, bytes);
    return Py_BuildValue("{s:s,s:n,s:n,s:n,s:n,s:n,s:n,s:K,s:z,s:L,s:L}",
                         "mode", mode_name(st.mode), "objects", (Py_ssize_t)st.objects,
                         "dl_only", (Py_ssize_t)st.dl_only, "skipped", (Py_ssize_t)st.skipped,
                         "slots", (Py_ssize_t)st.slots, "foreign", (Py_ssize_t)st.foreign,
                         "failed", (Py_ssize_t)st.failed, "rescans", (unsigned long long)st.rescans,
                         "failure", st.failure,
                         "blocks", (long long)blocks[RH_DOMAIN_NATIVE],
                         "bytes", (long long)bytes[RH_DOMAIN_NATIVE]);
}

static void add_object(const char *name, const char *how, void *arg)
{
    PyObject *list = (PyObject *)arg;
    PyObject *item = Py_BuildValue("(ss)", name, how);
    if (item == NULL || PyList_Append(list, item) < 0)
        PyErr_Clear();
    Py_XDECREF(item);
}

/* native_objects() -> [(name, "full" | "dl" | "skip")] in load order. */
static PyObject *py_native_objects(PyObject *mod, PyObject *unused)
{
    PyObject *list = PyList_New(0);
    if (list != NULL)
        _rh_native_objects(add_object, list);
    return list;
}

PyMethodDef _rh_py_native_methods[] = {
    {"native_start", py_native_start, METH_NOARGS,
     "native_start() -> bool: intercept malloc & co., strdup and C++ new/delete in the loaded "
     "objects (and those loaded later); True when this call started it.  RuntimeError with "
     "the reason when it cannot."},
    {"native_stop", py_native_stop, METH_NOARGS,
     "native_stop(): put every redirected entry back"},
    {"native_stats", py_native_stats, METH_NOARGS,
     "native_stats() -> {mode: off|got|preload, objects, dl_only, skipped, slots, foreign, "
     "failed, rescans, failure, blocks, bytes}"},
    {"native_objects", py_native_objects, METH_NOARGS,
     "native_objects() -> [(name, full|dl|skip)]: what native tracking patches in each "
     "loaded object"},
    {NULL}
};
