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
 * returning.  No Python API; the watchpoint probe needs no GIL.
 */
#include "doctor.h"
#include "hwbp.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

static volatile int64_t watched;   /* the watched variable */

void _rh_doctor_watchpoint(rh_watch_probe_t *out)
{
    memset(out, 0, sizeof(*out));
    out->writes = 5;
    int fd = _rh_hwbp_open((uintptr_t)&watched, 0, 0, &out->err);
    if (fd < 0)
        return;
    out->opened = 1;
    _rh_hwbp_enable(fd);
    for (int i = 0; i < out->writes; i++)
        watched = watched + 1;
    _rh_hwbp_disable(fd);
    uint64_t count = 0;
    if (read(fd, &count, sizeof(count)) == (ssize_t)sizeof(count))
        out->hits = (int64_t)count;
    else
        out->err = errno;
    close(fd);
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
const char *const _rh_doctor_sample_names[] = {
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
int _rh_doctor_frame_pointers(void *handle, const char *const *names, int *with_fp)
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
