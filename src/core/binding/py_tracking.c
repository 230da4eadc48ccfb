/* py_tracking.c — refhound._core: start/stop, the tracker's figures, and
 * questions about single objects and blocks (tracker.c, adopt.c,
 * objects.c).
 */
#include "binding.h"
#include "lost.h"
#include "adopt.h"
#include "native.h"
#include "objects.h"
#include "stacks.h"
#include "tracker.h"
#include "typeset.h"
#include "unwind.h"

#include <stdlib.h>

static rh_adopt_stats_t last_adoption;

PyObject *_rh_py_tracking_stopped(void)
{
    const char *why = _rh_tracker_failure();
    PyErr_Format(_rh_TrackingError, "tracking stopped%s%s", why ? ": " : "", why ? why : "");
    return NULL;
}

static void stop_everything(void)
{
    _rh_native_stop();
    _rh_stacks_reset();
    _rh_unwind_reset();
    _rh_tracker_stop();
    _rh_typeset_clear();
}

/* start(adopt=True) -> bool: True when this call started tracking.  When
 * the tracker runs out of memory while adopting, start() still returns
 * True: tracking is then off and stats()["failure"] says why. */
static PyObject *core_start(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"adopt", NULL};
    int adopt = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwlist, &adopt))
        return NULL;
    if (_rh_tracker_active())
        Py_RETURN_FALSE;
    const char *why = NULL;
    if (_rh_tracker_start(&why) < 0) {
        PyErr_Format(PyExc_MemoryError, "refhound: %s", why);
        return NULL;
    }
    memset(&last_adoption, 0, sizeof(last_adoption));
    if (adopt && _rh_adopt_existing(&last_adoption) < 0) {
        stop_everything();
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* adopt() -> {"types", "gc", "referents", "static_data"}: adopt again the
 * live objects the tables do not know.  An object made since tracking
 * started in a block from before it (an interpreter's free list: a float
 * constant unmarshalled when the target was imported) has no entry; the
 * callers run this once after importing what they check. */
static PyObject *core_adopt(PyObject *mod, PyObject *unused)
{
    if (!_rh_tracker_active())
        return _rh_py_tracking_stopped();
    rh_adopt_stats_t more;
    if (_rh_adopt_existing(&more) < 0)
        return NULL;
    last_adoption.from_types += more.from_types;
    last_adoption.from_gc += more.from_gc;
    last_adoption.from_referents += more.from_referents;
    last_adoption.from_static_data += more.from_static_data;
    return Py_BuildValue("{s:L,s:L,s:L,s:L}", "types", (long long)more.from_types,
                         "gc", (long long)more.from_gc, "referents",
                         (long long)more.from_referents, "static_data",
                         (long long)more.from_static_data);
}

static PyObject *core_stop(PyObject *mod, PyObject *unused)
{
    stop_everything();
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
    return Py_BuildValue(
        "{s:O,s:{s:L,s:L,s:L,s:L,s:L},s:{s:L,s:L,s:L,s:L},s:n,s:n,s:z,s:k,"
        "s:{s:L,s:L,s:L,s:L,s:L,s:z}}",
        "tracking", _rh_tracker_active() ? Py_True : Py_False,
        "blocks", "raw", (long long)blocks[RH_DOMAIN_RAW], "mem", (long long)blocks[RH_DOMAIN_MEM],
        "obj", (long long)blocks[RH_DOMAIN_OBJ], "adopted", (long long)blocks[RH_DOMAIN_ADOPTED],
        "native", (long long)blocks[RH_DOMAIN_NATIVE],
        "bytes", "raw", (long long)bytes[RH_DOMAIN_RAW], "mem", (long long)bytes[RH_DOMAIN_MEM],
        "obj", (long long)bytes[RH_DOMAIN_OBJ], "native", (long long)bytes[RH_DOMAIN_NATIVE],
        "table_bytes", (Py_ssize_t)_rh_tracker_table_bytes(),
        "table_entries", (Py_ssize_t)_rh_tracker_table_entries(),
        "failure", _rh_tracker_failure(),
        "epoch", (unsigned long)_rh_epoch_now(),
        "adopted", "types", (long long)last_adoption.from_types,
        "gc", (long long)last_adoption.from_gc,
        "referents", (long long)last_adoption.from_referents,
        "static_data", (long long)last_adoption.from_static_data,
        "static_rejected", (long long)last_adoption.static_rejected,
        "static_skipped", last_adoption.static_skipped);
}

/* object_at(address) -> the live object there, or None: only what the
 * block table and the type set vouch for is read, so any integer is safe
 * to ask about. */
static PyObject *core_object_at(PyObject *mod, PyObject *arg)
{
    uintptr_t addr = (uintptr_t)PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *op = _rh_object_at(addr, NULL);
    return Py_NewRef(op != NULL ? op : Py_None);
}

/* block_of(obj) -> (domain, birth epoch) of the object's block, or None. */
static PyObject *core_block_of(PyObject *mod, PyObject *obj)
{
    static const char *const names[] = {"raw", "mem", "obj", "adopted", "native", "?", "?", "?"};
    rh_block_t b;
    if (!_rh_object_block(obj, &b))
        Py_RETURN_NONE;
    return Py_BuildValue("(sk)", names[rh_block_domain(&b)], (unsigned long)rh_block_epoch(&b));
}

/* fill_freed(on) -> bool: the C library fills freed memory while on
 * (lost.c); False when it cannot (not glibc). */
static PyObject *core_fill_freed(PyObject *mod, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    return PyBool_FromLong(_rh_lost_fill_freed(on));
}

PyMethodDef _rh_py_tracking_methods[] = {
    {"adopt", core_adopt, METH_NOARGS,
     "adopt() -> {types, gc, referents, static_data}: adopt the live objects the tables "
     "do not know yet (made since start in blocks from before it); tracking must be on"},
    {"start", (PyCFunction)(void (*)(void))core_start, METH_VARARGS | METH_KEYWORDS,
     "start(adopt=True) -> bool: install the allocator hooks and adopt existing objects; "
     "True when this call started tracking (if the tracker then runs out of memory, "
     "tracking is off and stats()['failure'] says why)"},
    {"stop", core_stop, METH_NOARGS, "stop tracking and remove the hooks when possible"},
    {"is_tracking", core_is_tracking, METH_NOARGS, "is tracking on?"},
    {"stats", core_stats, METH_NOARGS,
     "tracker figures: live blocks, bytes, table size, failure (why tracking stopped, or "
     "None), epoch, what adoption found"},
    {"object_at", core_object_at, METH_O,
     "object_at(address) -> the live object there, or None (never reads unknown memory)"},
    {"fill_freed", core_fill_freed, METH_O,
     "fill_freed(on) -> bool: have the C library fill the memory it frees (on), or put the "
     "process's own setting back (off), so that pointers left in freed memory are no "
     "references for lost_survivors; False when the C library cannot"},
    {"block_of", core_block_of, METH_O,
     "block_of(obj) -> (domain, birth epoch) of the object's block, or None"},
    {NULL}
};
