/* doctor.c — what this machine allows, tried for real for `refhound doctor`.
 *
 * - A hardware write watchpoint: perf_event_open(PERF_TYPE_BREAKPOINT,
 *   HW_BREAKPOINT_W) on a variable of this file, in counting mode (no
 *   signal), then a known number of writes and a read of the count.
 * - Frame pointers in loaded code: the first bytes of a sample of exported
 *   functions, looking for the x86-64 frame set-up `mov %rsp,%rbp`
 *   (48 89 e5) near the entry.
 *
 * Nothing here keeps state between calls; every resource is closed before
 * returning.  Runs with the GIL (only because callers hold it).
 */
#include "rh_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#if defined(__linux__)
#  include <linux/hw_breakpoint.h>
#  include <linux/perf_event.h>
#  include <sys/syscall.h>
#  define RH_HAVE_PERF 1
#else
#  define RH_HAVE_PERF 0
#endif

static volatile int64_t watched;   /* the watched variable */

void _rh_doctor_watchpoint(rh_watch_probe_t *out)
{
    memset(out, 0, sizeof(*out));
    out->writes = 5;
#if RH_HAVE_PERF
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.type = PERF_TYPE_BREAKPOINT;
    attr.size = sizeof(attr);
    attr.bp_type = HW_BREAKPOINT_W;
    attr.bp_addr = (uint64_t)(uintptr_t)&watched;
    attr.bp_len = HW_BREAKPOINT_LEN_8;
    attr.sample_period = 0;          /* counting only: no signal */
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.disabled = 1;
    long fd = syscall(SYS_perf_event_open, &attr, 0 /* this thread */, -1, -1, 0UL);
    if (fd < 0) {
        out->err = errno;
        return;
    }
    out->opened = 1;
    ioctl((int)fd, PERF_EVENT_IOC_RESET, 0);
    ioctl((int)fd, PERF_EVENT_IOC_ENABLE, 0);
    for (int i = 0; i < out->writes; i++)
        watched = watched + 1;
    ioctl((int)fd, PERF_EVENT_IOC_DISABLE, 0);
    uint64_t count = 0;
    if (read((int)fd, &count, sizeof(count)) == (ssize_t)sizeof(count))
        out->hits = (int64_t)count;
    else
        out->err = errno;
    close((int)fd);
#else
    out->err = ENOSYS;
#endif
}

/* Does the code at fn set up a frame pointer near its entry? */
static int has_frame_setup(const unsigned char *fn)
{
#if defined(__x86_64__)
    for (int i = 0; i + 2 < 48; i++) {
        if (fn[i] == 0x48 && fn[i + 1] == 0x89 && fn[i + 2] == 0xe5)
            return 1;
    }
    return 0;
#else
    (void)fn;
    return -1;
#endif
}

/* Exported functions of libpython large enough to need a frame. */
static const char *const sample_names[] = {
    "PyObject_GetAttr", "PyObject_SetAttr", "PyObject_Repr", "PyObject_Str",
    "PyObject_RichCompare", "PyObject_Hash", "PyObject_GetItem", "PyObject_SetItem",
    "PyObject_Call", "PyObject_Format", "PyNumber_Add", "PyNumber_Multiply",
    "PyDict_SetItem", "PyDict_GetItemWithError", "PyDict_Merge", "PyList_Append",
    "PyList_Sort", "PyTuple_New", "PyUnicode_FromFormatV", "PyUnicode_Concat",
    "PyUnicode_Join", "PyLong_FromString", "PyLong_AsLongLong", "PyFloat_FromString",
    "PyBytes_FromFormatV", "PyErr_Format", "PyImport_ImportModule", "PyType_Ready",
    "PyArg_ParseTuple", "Py_BuildValue", "PyEval_EvalCode", "PyRun_StringFlags",
    NULL
};

/* Frame pointer sample over the functions `names` found in `handle`
 * (RTLD_DEFAULT: the process).  Returns functions checked; *with_fp gets
 * those with a frame set-up; -1 when the architecture is not known. */
static int frame_pointer_sample(void *handle, const char *const *names, int *with_fp)
{
    int checked = 0;
    *with_fp = 0;
    for (int i = 0; names[i] != NULL; i++) {
        const unsigned char *fn = dlsym(handle, names[i]);
        if (fn == NULL)
            continue;
        int r = has_frame_setup(fn);
        if (r < 0)
            return -1;
        checked++;
        *with_fp += r;
    }
    return checked;
}

/* ---- Python ---------------------------------------------------------------- */

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
    const char *const *names = sample_names;
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
    int checked = frame_pointer_sample(handle, names, &with_fp);
    if (handle != RTLD_DEFAULT)
        dlclose(handle);
    Py_XDECREF(fast);
    if (checked < 0)
        Py_RETURN_NONE;          /* not an architecture we can read */
    return Py_BuildValue("{s:i,s:i}", "checked", checked, "with_frame_pointer", with_fp);
}

PyMethodDef _rh_doctor_methods[] = {
    {"watchpoint_probe", py_watchpoint_probe, METH_NOARGS,
     "watchpoint_probe() -> {opened, errno, error, hits, writes}: a real hardware write "
     "watchpoint through perf_event_open on a variable written `writes` times"},
    {"frame_pointer_sample", py_frame_pointer_sample, METH_VARARGS,
     "frame_pointer_sample(path=None, names=None) -> {checked, with_frame_pointer} or None: "
     "exported functions (of the process, or of the already loaded library at path) "
     "that set up a frame pointer near their entry"},
    {NULL}
};
