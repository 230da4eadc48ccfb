/* py_system.c — refhound._core: figures of the process and the machine
 * (procstat.c, pymalloc_stats.c, doctor.c) and the trend test (trend.c).
 */
#include "binding.h"
#include "doctor.h"
#include "procstat.h"
#include "pymalloc_stats.h"
#include "tracker.h"
#include "trend.h"

#include <dlfcn.h>
#include <string.h>

static PyObject *py_procstat(PyObject *mod, PyObject *unused)
{
    rh_procstat_t ps;
    _rh_procstat_read(&ps, 1);
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L}", "rss_bytes", (long long)ps.rss_bytes,
                         "uss_bytes", (long long)ps.uss_bytes, "fds", (long long)ps.fds,
                         "threads", (long long)ps.threads,
                         "native_bytes", (long long)ps.native_bytes);
}

/* trend(series) -> {slope, p_up, p_down, s}: the statistics of trend.c */
static PyObject *py_trend(PyObject *mod, PyObject *args)
{
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "O", &seq))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of numbers");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > INT32_MAX) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "refhound: series too long");
        return NULL;
    }
    double *x = PyMem_Malloc(sizeof(double) * (n + 1));
    if (x == NULL) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        x[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (x[i] == -1.0 && PyErr_Occurred()) {
            PyMem_Free(x);
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    rh_trend_stats_t r;
    _rh_trend_stats(x, (int)n, &r);
    PyMem_Free(x);
    return Py_BuildValue("{s:d,s:d,s:d,s:d}", "slope", r.slope, "p_up", r.p_up,
                         "p_down", r.p_down, "s", r.s);
}

static int read_pymalloc(void *out) { return _rh_pymalloc_read((rh_pymalloc_t *)out); }
static int read_debug_hooks(void *out)
{
    *(int *)out = _rh_pymalloc_debug_hooks();
    return 0;
}

static PyObject *py_pymalloc_stats(PyObject *mod, PyObject *unused)
{
    rh_pymalloc_t st;
    int hooks;
    /* With the hooks out of the way: CPython reports pymalloc's figures
     * only while pymalloc is the installed allocator. */
    int rc = _rh_tracker_call_unhooked(read_pymalloc, &st);
    _rh_tracker_call_unhooked(read_debug_hooks, &hooks);
    PyObject *debug_hooks = hooks < 0 ? Py_None : hooks ? Py_True : Py_False;
    if (rc < 0 || !st.enabled)
        return Py_BuildValue("{s:O,s:s,s:O}", "enabled", Py_False, "reason", st.why,
                             "debug_hooks", debug_hooks);
    PyObject *classes = PyList_New(0);
    if (classes == NULL)
        return NULL;
    for (int i = 0; i < st.nclasses; i++) {
        const rh_pymalloc_class_t *k = &st.classes[i];
        if (k->pools == 0)
            continue;
        PyObject *item = Py_BuildValue("{s:i,s:L,s:L,s:L,s:L}", "index", i,
                                       "size", (long long)k->size, "pools", (long long)k->pools,
                                       "blocks_in_use", (long long)k->blocks_in_use,
                                       "avail_blocks", (long long)k->avail_blocks);
        if (item == NULL || PyList_Append(classes, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(classes);
            return NULL;
        }
        Py_DECREF(item);
    }
    return Py_BuildValue(
        "{s:O,s:O,s:L,s:i,s:{s:L,s:L,s:L,s:L,s:L},s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,"
        "s:L,s:L,s:N}",
        "enabled", Py_True,
        "debug_hooks", debug_hooks,
        "small_block_threshold", (long long)st.small_block_threshold,
        "size_classes_total", st.nclasses,
        "arenas", "allocated_total", (long long)st.arenas_allocated_total,
        "reclaimed", (long long)st.arenas_reclaimed,
        "highwater", (long long)st.arenas_highwater,
        "current", (long long)st.arenas_current,
        "size", (long long)st.arena_size,
        "pool_size", (long long)st.pool_size,
        "pools_in_use", (long long)st.pools_in_use,
        "free_pools", (long long)st.free_pools,
        "blocks_in_use", (long long)st.blocks_in_use,
        "avail_blocks", (long long)st.avail_blocks,
        "bytes_in_allocated_blocks", (long long)st.bytes_in_allocated_blocks,
        "bytes_in_available_blocks", (long long)st.bytes_in_available_blocks,
        "bytes_in_free_pools", (long long)st.bytes_in_free_pools,
        "bytes_pool_headers", (long long)st.bytes_pool_headers,
        "bytes_quantization", (long long)st.bytes_quantization,
        "bytes_arena_alignment", (long long)st.bytes_arena_alignment,
        "bytes_total", (long long)st.bytes_total,
        "size_classes", classes);
}

static PyObject *py_watchpoint_probe(PyObject *mod, PyObject *unused)
{
    rh_watch_probe_t w;
    Py_BEGIN_ALLOW_THREADS
    _rh_doctor_watchpoint(&w);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("{s:O,s:i,s:z,s:L,s:i}", "opened", w.opened ? Py_True : Py_False,
                         "errno", w.err, "error", w.err ? strerror(w.err) : NULL,
                         "hits", (long long)w.hits, "writes", w.writes);
}

static PyObject *py_frame_pointer_sample(PyObject *mod, PyObject *args)
{
    const char *path = NULL;
    PyObject *names_obj = NULL;
    if (!PyArg_ParseTuple(args, "|zO", &path, &names_obj))
        return NULL;
    const char *names_buf[65];
    const char *const *names = _rh_doctor_sample_names;
    PyObject *fast = NULL;
    if (names_obj != NULL && names_obj != Py_None) {
        fast = PySequence_Fast(names_obj, "names must be a sequence of str");
        if (fast == NULL)
            return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
        if (n > 64) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "at most 64 names");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            names_buf[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(fast, i));
            if (names_buf[i] == NULL) {
                Py_DECREF(fast);
                return NULL;
            }
        }
        names_buf[n] = NULL;
        names = names_buf;
    }
    void *handle = RTLD_DEFAULT;
    if (path != NULL) {
        /* RTLD_NOLOAD: only a library that is already loaded. */
        handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (handle == NULL) {
            Py_XDECREF(fast);
            PyErr_Format(PyExc_OSError, "refhound: %s is not loaded in this process", path);
            return NULL;
        }
    }
    int with_fp = 0;
    int checked = _rh_doctor_frame_pointers(handle, names, &with_fp);
    if (handle != RTLD_DEFAULT)
        dlclose(handle);
    Py_XDECREF(fast);
    if (checked < 0)
        Py_RETURN_NONE;          /* not an architecture we can read */
    return Py_BuildValue("{s:i,s:i}", "checked", checked, "with_frame_pointer", with_fp);
}

PyMethodDef _rh_py_system_methods[] = {
    {"procstat", py_procstat, METH_NOARGS, "RSS, USS, fds, threads, native heap bytes"},
    {"trend", py_trend, METH_VARARGS,
     "trend(series) -> {slope: Theil-Sen per sample, p_up, p_down: Mann-Kendall, s}"},
    {"pymalloc_stats", py_pymalloc_stats, METH_NOARGS,
     "pymalloc_stats() -> dict: pymalloc's arenas, pools and blocks per size class as "
     "numbers ({'enabled': False, 'reason': ...} when pymalloc is not in use); "
     "'debug_hooks': are CPython's allocator debug hooks on"},
    {"watchpoint_probe", py_watchpoint_probe, METH_NOARGS,
     "watchpoint_probe() -> {opened, errno, error, hits, writes}: a real hardware write "
     "watchpoint through perf_event_open on a variable written `writes` times"},
    {"frame_pointer_sample", py_frame_pointer_sample, METH_VARARGS,
     "frame_pointer_sample(path=None, names=None) -> {checked, with_frame_pointer} or None: "
     "exported functions (of the process, or of the already loaded library at path) "
     "that set up a frame pointer near their entry"},
    {NULL}
};
