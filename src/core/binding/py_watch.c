/* py_watch.c — refhound._core: hardware watchpoints on refcount words
 * (watch.c): watch() and history().
 */
#include "binding.h"
#include "tracker.h"
#include "watch.h"

static PyObject *frames_tuple(const rh_hit_t *h)
{
    PyObject *frames = PyTuple_New(h->nframes);
    for (uint32_t f = 0; frames != NULL && f < h->nframes; f++) {
        PyObject *v = PyLong_FromUnsignedLong(h->frames[f]);
        if (v == NULL)
            Py_CLEAR(frames);
        else
            PyTuple_SET_ITEM(frames, f, v);
    }
    return frames;
}

/* watch(objects, func, args, kwargs, calls, max_hits=65536) ->
 *     {"hits": [(object index, delta, (addresses...), returned)], "dropped": n}
 *   or {"error": reason} when watchpoints cannot be used. */
static PyObject *py_watch(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"objects", "func", "args", "kwargs", "calls", "max_hits", NULL};
    PyObject *objects, *func, *fargs, *fkwargs;
    Py_ssize_t calls, limit = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OO!On|n", kwlist, &PyList_Type, &objects, &func,
                                     &PyTuple_Type, &fargs, &fkwargs, &calls, &limit))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(objects);
    if (n < 1 || n > RH_MAX_WATCH || calls < 1 || limit < 1) {
        PyErr_Format(PyExc_ValueError, "watch: 1 to %d objects, calls >= 1", RH_MAX_WATCH);
        return NULL;
    }
    PyObject *objs[RH_MAX_WATCH];
    for (Py_ssize_t i = 0; i < n; i++)
        objs[i] = PyList_GET_ITEM(objects, i);
    /* The list keeps them alive during the calls. */
    Py_INCREF(objects);
    rh_hits_t out;
    int rc = _rh_watch_refcounts(objs, (int)n, func, fargs, fkwargs == Py_None ? NULL : fkwargs,
                                 calls, (size_t)limit, &out);
    Py_DECREF(objects);
    if (rc < 0)
        return NULL;            /* the target's exception propagates */
    if (out.error != NULL)
        return Py_BuildValue("{s:s}", "error", out.error);
    int engine = _rh_engine_enter();
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < out.nhits; i++) {
        const rh_hit_t *h = &out.hits[i];
        PyObject *frames = frames_tuple(h);
        PyObject *item = frames ? Py_BuildValue("(IiNO)", h->object, h->delta, frames,
                                                h->returned ? Py_True : Py_False)
                                : NULL;
        if (item == NULL || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    PyObject *result = list == NULL ? NULL
        : Py_BuildValue("{s:N,s:n}", "hits", list, "dropped", (Py_ssize_t)out.dropped);
    _rh_engine_leave(engine);
    _rh_hits_release(&out);
    return result;
}

/* history(address, func, args, kwargs, max_calls=10) -> dict
 * Calls func until an object is allocated from the call site whose return
 * address is `address`, finishes that call, and returns every write to
 * the object's refcount:
 *   {"alive": True, "hits": [(value after, (addresses...))], "refcnt": n, "type": name}
 *   {"alive": False, "hits": None}, or {"error": reason}. */
static PyObject *py_history(PyObject *mod, PyObject *args)
{
    unsigned long address;
    PyObject *func, *fargs, *fkwargs;
    Py_ssize_t max_calls = 10;
    if (!PyArg_ParseTuple(args, "kOO!O|n", &address, &func, &PyTuple_Type, &fargs, &fkwargs,
                          &max_calls))
        return NULL;
    rh_history_t out;
    if (_rh_watch_history((uintptr_t)address, func, fargs, fkwargs == Py_None ? NULL : fkwargs,
                          max_calls, &out) < 0)
        return NULL;
    if (out.hits.error != NULL)
        return Py_BuildValue("{s:s}", "error", out.hits.error);
    if (!out.alive) {
        _rh_hits_release(&out.hits);
        return Py_BuildValue("{s:O,s:O}", "alive", Py_False, "hits", Py_None);
    }
    int engine = _rh_engine_enter();
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < out.hits.nhits; i++) {
        const rh_hit_t *h = &out.hits.hits[i];
        PyObject *frames = frames_tuple(h);
        PyObject *item = frames ? Py_BuildValue("(LN)", (long long)h->value, frames) : NULL;
        if (item == NULL || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    PyObject *op = out.object;
    PyObject *result = list == NULL ? NULL
        : Py_BuildValue("{s:O,s:N,s:n,s:s}", "alive", Py_True, "hits", list, "refcnt",
                        Py_REFCNT(op), "type", Py_TYPE(op)->tp_name);
    _rh_engine_leave(engine);
    _rh_hits_release(&out.hits);
    return result;
}

/* returns(addresses, func, args, kwargs, calls=1) ->
 *     {"hits": [(index, call, rax, rsp, raised)], "dropped": n} or {"error": reason}
 * An execute breakpoint on each instruction (the instruction after a call:
 * rax is what the callee returned; raised is 1 when it left an exception
 * set, 0 when not, -1 unknown). */
static PyObject *py_returns(PyObject *mod, PyObject *args)
{
    PyObject *addresses, *func, *fargs, *fkwargs;
    Py_ssize_t calls = 1;
    if (!PyArg_ParseTuple(args, "O!OO!O|n", &PyList_Type, &addresses, &func, &PyTuple_Type,
                          &fargs, &fkwargs, &calls))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(addresses);
    if (n < 1 || n > RH_MAX_WATCH || calls < 1) {
        PyErr_Format(PyExc_ValueError, "returns: 1 to %d addresses, calls >= 1", RH_MAX_WATCH);
        return NULL;
    }
    uintptr_t addrs[RH_MAX_WATCH];
    for (Py_ssize_t i = 0; i < n; i++) {
        addrs[i] = (uintptr_t)PyLong_AsUnsignedLong(PyList_GET_ITEM(addresses, i));
        if (PyErr_Occurred())
            return NULL;
    }
    rh_exec_hits_t out;
    if (_rh_watch_returns(addrs, (int)n, func, fargs, fkwargs == Py_None ? NULL : fkwargs, calls,
                          4096, &out) < 0)
        return NULL;            /* the target's exception propagates */
    if (out.error != NULL)
        return Py_BuildValue("{s:s}", "error", out.error);
    int engine = _rh_engine_enter();
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < out.nhits; i++) {
        const rh_exec_hit_t *h = &out.hits[i];
        PyObject *item = Py_BuildValue("(IIkki)", h->which, h->call, (unsigned long)h->rax,
                                       (unsigned long)h->rsp, (int)h->raised);
        if (item == NULL || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    PyObject *result = list == NULL ? NULL
        : Py_BuildValue("{s:N,s:n}", "hits", list, "dropped", (Py_ssize_t)out.dropped);
    _rh_engine_leave(engine);
    _rh_exec_hits_release(&out);
    return result;
}

PyMethodDef _rh_py_watch_methods[] = {
    {"returns", py_returns, METH_VARARGS,
     "returns(addresses, func, args, kwargs, calls=1): call func with an execute breakpoint on "
     "each instruction; -> {'hits': [(index, call, rax, rsp, raised)], 'dropped': n} or "
     "{'error': reason}"},
    {"history", py_history, METH_VARARGS,
     "history(address, func, args, kwargs, max_calls=10): follow every write to the refcount "
     "of an object allocated from the call site at `address`, from its birth"},
    {"watch", (PyCFunction)(void (*)(void))py_watch, METH_VARARGS | METH_KEYWORDS,
     "watch(objects, func, args, kwargs, calls, max_hits=65536): call func with a hardware "
     "write watchpoint on each object's refcount; -> {'hits': [(index, delta, addresses, "
     "returned)], 'dropped': n} or {'error': reason}"},
    {NULL}
};
