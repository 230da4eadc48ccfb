/* py_session.c — refhound._core.Session, the Python face of session.c.
 *
 *   Session(func, args, kwargs, clear_caches, calls=1, max_samples=256)
 *   iterate(warmup=False, snapshot=False) -> seconds in the calls
 *       == begin(); `calls` calls of func in C; end(warmup, snapshot)
 *   begin()      a new iteration: the bodies that follow belong to it
 *   end(warmup=False, snapshot=False)   clear caches, two collections, a
 *                sample (and a refcount snapshot)
 *   set_calls(n), series(metric, start=0), last_delta(metric),
 *   snapshot(), growth(limit=20), results(), close()
 *   freeze_old(), thaw() -> old cyclic garbage found: the samples after the
 *                next one collect only the objects born since (gcfreeze.c)
 *   Session.screen(func, args, kwargs, warm, calls, epochs, generation=1,
 *                  clear_caches=None)
 *                a class method: the screen of session.c, no session needed
 *   Session.heap_totals(generation=0), Session.next_epoch(),
 *   Session.survivors(first, last)
 *   Session.container_table_survivors(first, last)
 *   Session.lost_survivors(first, last), Session.count_words(objects)
 *                class methods: a walk's totals, a new birth epoch, the
 *                blocks alive per epoch (the screen's pieces, for callers
 *                that run the calls themselves)
 *   attributes nsamples, calls, warmup_samples
 *
 * After close() the session no longer counts frees; results(), series(),
 * last_delta() and growth() still answer, the methods that measure raise
 * RuntimeError.
 *
 * The session measures; what the samples mean is decided in Python
 * (refhound/verdict.py).
 */
#include "binding.h"
#include "lost.h"
#include "objects.h"
#include "session.h"
#include "tracker.h"
#include "typeset.h"

#include <stdlib.h>

typedef struct {
    PyObject_HEAD
    rh_session_t *s;
    PyObject *func, *args, *kwargs, *clear_caches;
    Py_ssize_t calls;
    int closed;
} Session;

/* ---- helpers -------------------------------------------------------------- */

/* Can the session measure now?  0, or -1 with an exception. */
static int measuring(Session *self)
{
    if (self->closed || self->s == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "refhound: the session is closed");
        return -1;
    }
    if (!_rh_tracker_active()) {
        _rh_py_tracking_stopped();
        return -1;
    }
    return 0;
}

/* After a sample: a table that could not grow during the iteration makes
 * the sample incomplete; say why instead of judging it. */
static int still_tracking(void)
{
    if (_rh_tracker_active())
        return 0;
    _rh_py_tracking_stopped();
    return -1;
}

static PyObject *int_list(const int64_t *v, size_t n)
{
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; out != NULL && i < n; i++) {
        PyObject *x = PyLong_FromLongLong(v[i]);
        if (x == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, (Py_ssize_t)i, x);
    }
    return out;
}

static int metric_of(const char *name)
{
    int k = _rh_metric_index(name);
    if (k < 0)
        PyErr_Format(PyExc_KeyError, "no metric %s", name);
    return k;
}

/* ---- the type ---------------------------------------------------------------- */

static void Session_dealloc(Session *self)
{
    _rh_session_free(self->s);
    self->s = NULL;
    Py_XDECREF(self->func);
    Py_XDECREF(self->args);
    Py_XDECREF(self->kwargs);
    Py_XDECREF(self->clear_caches);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Session_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"func", "args", "kwargs", "clear_caches", "calls",
                             "max_samples", NULL};
    PyObject *func, *fargs, *fkwargs, *clear;
    Py_ssize_t calls = 1;
    int max_samples = 256;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!OO|ni", kwlist, &func, &PyTuple_Type,
                                     &fargs, &fkwargs, &clear, &calls, &max_samples))
        return NULL;
    if (max_samples < 4 || calls < 1) {
        PyErr_SetString(PyExc_ValueError, "refhound: bad session sizes");
        return NULL;
    }
    if (fkwargs != Py_None && !PyDict_Check(fkwargs)) {
        PyErr_SetString(PyExc_TypeError, "refhound: kwargs must be a dict or None");
        return NULL;
    }
    if (!_rh_tracker_active()) {
        if (_rh_tracker_failure() != NULL)
            return _rh_py_tracking_stopped();
        PyErr_SetString(PyExc_RuntimeError, "refhound: tracking is not on");
        return NULL;
    }
    const char *why = NULL;
    rh_session_t *s = _rh_session_new(max_samples, &why);
    if (s == NULL) {
        PyErr_Format(PyExc_RuntimeError, "refhound: %s", why);
        return NULL;
    }
    Session *self = (Session *)type->tp_alloc(type, 0);
    if (self == NULL) {
        _rh_session_free(s);
        return NULL;
    }
    self->s = s;
    self->func = Py_NewRef(func);
    self->args = Py_NewRef(fargs);
    self->kwargs = fkwargs == Py_None ? NULL : Py_NewRef(fkwargs);
    self->clear_caches = clear == Py_None ? NULL : Py_NewRef(clear);
    self->calls = calls;
    return (PyObject *)self;
}

static int parse_end_flags(PyObject *args, PyObject *kw, int *warmup, int *snapshot)
{
    static char *kwlist[] = {"warmup", "snapshot", NULL};
    *warmup = *snapshot = 0;
    return PyArg_ParseTupleAndKeywords(args, kw, "|pp", kwlist, warmup, snapshot) ? 0 : -1;
}

/* iterate(warmup=False, snapshot=False) -> seconds spent in the calls */
static PyObject *Session_iterate(Session *self, PyObject *args, PyObject *kw)
{
    int warmup, snapshot;
    if (parse_end_flags(args, kw, &warmup, &snapshot) < 0 || measuring(self) < 0)
        return NULL;
    _rh_session_begin(self->s);
    double seconds;
    if (_rh_session_call(self->s, self->func, self->args, self->kwargs, self->calls,
                         &seconds) < 0)
        return NULL;
    if (_rh_session_end(self->s, self->clear_caches, warmup, snapshot) < 0 ||
        still_tracking() < 0)
        return NULL;
    /* Our own float, even if it lingers in the float free list. */
    int engine = _rh_engine_enter();
    PyObject *t = PyFloat_FromDouble(seconds);
    _rh_engine_leave(engine);
    return t;
}

static PyObject *Session_begin(Session *self, PyObject *unused)
{
    if (measuring(self) < 0)
        return NULL;
    _rh_session_begin(self->s);
    Py_RETURN_NONE;
}

static PyObject *Session_end(Session *self, PyObject *args, PyObject *kw)
{
    int warmup, snapshot;
    if (parse_end_flags(args, kw, &warmup, &snapshot) < 0 || measuring(self) < 0)
        return NULL;
    if (_rh_session_end(self->s, self->clear_caches, warmup, snapshot) < 0 ||
        still_tracking() < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Session_set_calls(Session *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "calls must be >= 1");
        return NULL;
    }
    self->calls = n;
    Py_RETURN_NONE;
}

static PyObject *Session_snapshot(Session *self, PyObject *unused)
{
    if (measuring(self) < 0 || _rh_session_snapshot(self->s) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* growth(limit=20) -> [(object, [refcnt per snapshot])], largest change
 * first: existing objects whose refcount moved one way in every step. */
static PyObject *Session_growth(Session *self, PyObject *args)
{
    int limit = 20;
    if (!PyArg_ParseTuple(args, "|i", &limit))
        return NULL;
    rh_session_t *s = self->s;
    rh_growth_t *hits = NULL;
    size_t n = 0;
    if (s != NULL && _rh_session_growth(s, limit, &hits, &n) < 0)
        return PyErr_NoMemory();
    int engine = _rh_engine_enter();
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < n; i++) {
        PyObject *series = PyList_New(s->nsnaps);
        for (int j = 0; series != NULL && j < s->nsnaps; j++) {
            PyObject *v = PyLong_FromSsize_t(
                _rh_snapshot_refcnt(&s->snaps[j], (uintptr_t)hits[i].obj));
            if (v == NULL)
                Py_CLEAR(series);
            else
                PyList_SET_ITEM(series, j, v);
        }
        PyObject *item = series ? Py_BuildValue("(ON)", hits[i].obj, series) : NULL;
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    _rh_engine_leave(engine);
    free(hits);
    return out;
}

/* A type's display name: "<freed type>" once the type set no longer
 * vouches for it. */
static PyObject *type_name(uintptr_t type)
{
    if (_rh_typeset_lookup(type) == NULL)
        return PyUnicode_FromString("<freed type>");
    PyTypeObject *tp = (PyTypeObject *)type;
    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE))
        return PyUnicode_FromString(tp->tp_name);
    PyObject *mod = PyObject_GetAttrString((PyObject *)tp, "__module__");
    PyObject *qual = PyObject_GetAttrString((PyObject *)tp, "__qualname__");
    PyObject *name;
    if (mod && qual && PyUnicode_Check(mod) && PyUnicode_Check(qual) &&
        PyUnicode_CompareWithASCIIString(mod, "builtins") != 0)
        name = PyUnicode_FromFormat("%U.%U", mod, qual);
    else
        name = PyUnicode_FromString(tp->tp_name);
    PyErr_Clear();
    Py_XDECREF(mod);
    Py_XDECREF(qual);
    return name;
}

static int set_item(PyObject *d, const char *key, PyObject *v)
{
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

static PyObject *samples_list(const rh_session_t *s)
{
    PyObject *samples = PyList_New(0);
    for (int i = 0; samples != NULL && i < s->nsamples; i++) {
        PyObject *d = PyDict_New();
        if (d == NULL || PyList_Append(samples, d) < 0 ||
            set_item(d, "t", PyFloat_FromDouble(s->samples[i].t)) < 0 ||
            set_item(d, "epoch", PyLong_FromUnsignedLong(s->samples[i].epoch)) < 0) {
            Py_XDECREF(d);
            Py_CLEAR(samples);
            break;
        }
        for (int k = 0; k < RH_NMETRICS; k++) {
            if (set_item(d, _rh_metric_names[k], PyLong_FromLongLong(s->samples[i].m[k])) < 0) {
                Py_CLEAR(samples);
                break;
            }
        }
        Py_DECREF(d);
    }
    return samples;
}

static PyObject *types_list(const rh_session_t *s, int base)
{
    PyObject *types = PyList_New(0);
    for (size_t i = 0; types != NULL && s->stats != NULL && i <= s->stats_mask; i++) {
        rh_typestat_t *st = s->stats[i];
        if (st == NULL || s->nsamples == 0)
            continue;
        int64_t first = st->first_sample <= base ? st->live[base] : 0;
        int64_t last = st->live[s->nsamples - 1];
        int64_t allocs = st->live_new + st->frees_new;
        if (first == last && allocs == 0 && st->frees_old == 0)
            continue;
        PyObject *series = PyList_New(s->nsamples);
        for (int j = 0; series != NULL && j < s->nsamples; j++) {
            PyObject *v = PyLong_FromLongLong(j < st->first_sample ? 0 : st->live[j]);
            if (v == NULL)
                Py_CLEAR(series);
            else
                PyList_SET_ITEM(series, j, v);
        }
        PyObject *name = series ? type_name(st->type) : NULL;
        PyObject *item = name == NULL ? NULL : Py_BuildValue(
            "{s:N,s:N,s:L,s:L,s:L,s:L}", "type", name, "live", series,
            "allocs", (long long)allocs, "frees", (long long)(st->frees_new + st->frees_old),
            "max_live", (long long)st->max_live, "first_sample", (long long)st->first_sample);
        if (item == NULL) {
            Py_XDECREF(series);
            Py_XDECREF(name);
        }
        if (item == NULL || PyList_Append(types, item) < 0)
            Py_CLEAR(types);
        Py_XDECREF(item);
    }
    return types;
}

/* Blocks still alive per birth epoch of the measured iterations. */
static PyObject *survivors_dict(const rh_session_t *s, int base)
{
    if (s->nsamples > 0 && _rh_tracker_active()) {
        uint32_t first = s->samples[base].epoch + 1, last = s->samples[s->nsamples - 1].epoch;
        if (s->nwarmup == 0)
            first = s->first_epoch;
        if (last >= first) {
            size_t n = last - first + 1;
            int64_t *b = calloc(n, sizeof(int64_t)), *y = calloc(n, sizeof(int64_t));
            PyObject *out = NULL;
            if (b != NULL && y != NULL) {
                _rh_tracker_survivors(first, last, b, y);
                PyObject *lb = int_list(b, n), *ly = int_list(y, n);
                if (lb != NULL && ly != NULL)
                    out = Py_BuildValue("{s:k,s:N,s:N}", "first_epoch", (unsigned long)first,
                                        "blocks", lb, "bytes", ly);
                else {
                    Py_XDECREF(lb);
                    Py_XDECREF(ly);
                }
            }
            else
                PyErr_NoMemory();
            free(b);
            free(y);
            return out;
        }
    }
    return Py_BuildValue("{s:k,s:[],s:[]}", "first_epoch", 0ul, "blocks", "bytes");
}

/* results() -> {samples, types, survivors, tracker, calls, warmup_samples,
 *               measured} */
static PyObject *Session_results(Session *self, PyObject *unused)
{
    rh_session_t *s = self->s;
    if (s == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "refhound: the session is closed");
        return NULL;
    }
    int base = _rh_session_base(s);
    int measured = s->nsamples - 1 - base;
    int engine = _rh_engine_enter();
    PyObject *res = PyDict_New();
    const char *fail = _rh_tracker_failure();
    if (res == NULL ||
        set_item(res, "samples", samples_list(s)) < 0 ||
        set_item(res, "types", types_list(s, base)) < 0 ||
        set_item(res, "survivors", survivors_dict(s, base)) < 0 ||
        set_item(res, "tracker", Py_BuildValue(
                     "{s:n,s:n,s:z}", "table_bytes", (Py_ssize_t)_rh_tracker_table_bytes(),
                     "table_entries", (Py_ssize_t)_rh_tracker_table_entries(),
                     "failure", fail)) < 0 ||
        set_item(res, "calls", PyLong_FromSsize_t(self->calls)) < 0 ||
        set_item(res, "warmup_samples", PyLong_FromLong(s->nwarmup)) < 0 ||
        set_item(res, "measured", PyLong_FromLong(measured)) < 0)
        Py_CLEAR(res);
    _rh_engine_leave(engine);
    return res;
}

/* freeze_old(): from the next sample on, the heap alive after its full
 * collection is left out of the collections (gcfreeze.c) until thaw()
 * or close(). */
static PyObject *Session_freeze_old(Session *self, PyObject *unused)
{
    if (measuring(self) < 0)
        return NULL;
    _rh_session_freeze_old(self->s);
    Py_RETURN_NONE;
}

/* thaw() -> the old objects that became cyclic garbage while frozen (0:
 * the samples are what full collections would have given; also 0 when
 * nothing was frozen). */
static PyObject *Session_thaw(Session *self, PyObject *unused)
{
    Py_ssize_t found = 0;
    if (self->s != NULL && _rh_session_thaw(self->s, &found) < 0)
        return NULL;
    return PyLong_FromSsize_t(found);
}

static PyObject *Session_close(Session *self, PyObject *unused)
{
    if (self->s != NULL)
        _rh_session_detach(self->s);
    self->closed = 1;
    Py_RETURN_NONE;
}

/* last_delta(metric) -> change between the last two samples (0 with fewer) */
static PyObject *Session_last_delta(Session *self, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    int k = metric_of(name);
    if (k < 0)
        return NULL;
    const rh_session_t *s = self->s;
    if (s == NULL || s->nsamples < 2)
        return PyLong_FromLong(0);
    return PyLong_FromLongLong(s->samples[s->nsamples - 1].m[k] - s->samples[s->nsamples - 2].m[k]);
}

/* series(metric, start=0) -> [values] from sample `start` on */
static PyObject *Session_series(Session *self, PyObject *args)
{
    const char *name;
    int start = 0;
    if (!PyArg_ParseTuple(args, "s|i", &name, &start))
        return NULL;
    int k = metric_of(name);
    if (k < 0)
        return NULL;
    const rh_session_t *s = self->s;
    PyObject *out = PyList_New(0);
    for (int i = start < 0 ? 0 : start; out && s != NULL && i < s->nsamples; i++) {
        PyObject *v = PyLong_FromLongLong(s->samples[i].m[k]);
        if (v == NULL || PyList_Append(out, v) < 0)
            Py_CLEAR(out);
        Py_XDECREF(v);
    }
    return out;
}

static PyObject *int_pair(const int64_t v[2])
{
    return Py_BuildValue("(LL)", (long long)v[0], (long long)v[1]);
}

/* Session.screen(func, args, kwargs, warm, calls, epochs, generation=1,
 *                clear_caches=None) ->
 * {"first_epoch", "refs": (A, B), "objects": (A, B), "native_bytes": (A, B),
 *  "fds": (A, B), "threads": (A, B), "blocks": [warm epoch, epoch 1, ...,
 *  tail epoch], "bytes": [...], "heap_bytes": [...] (what those blocks take of
 *  malloc's heap at most), "seconds", "walk_seconds", "overhead_seconds"}
 *  (session.c, the screen).
 * The caller turns the automatic collector off around it. */
static PyObject *Session_screen(PyObject *cls, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"func", "args", "kwargs", "warm", "calls", "epochs",
                             "generation", "clear_caches", "lazy_tail", "native_slack",
                             NULL};
    PyObject *func, *fargs, *fkwargs, *clear = Py_None;
    rh_screen_plan_t plan = {1, 1, 1, 1, NULL, 0, 0};
    long long slack = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!Onni|iOpL", kwlist, &func, &PyTuple_Type,
                                     &fargs, &fkwargs, &plan.warm, &plan.calls, &plan.nepochs,
                                     &plan.generation, &clear, &plan.lazy_tail, &slack))
        return NULL;
    plan.native_slack = slack;
    plan.clear_caches = clear == Py_None ? NULL : clear;
    if (fkwargs != Py_None && !PyDict_Check(fkwargs)) {
        PyErr_SetString(PyExc_TypeError, "refhound: kwargs must be a dict or None");
        return NULL;
    }
    if (plan.generation < 0 || plan.generation > 2) {
        PyErr_SetString(PyExc_ValueError, "refhound: generation must be 0, 1 or 2");
        return NULL;
    }
    if (!_rh_tracker_active())
        return _rh_py_tracking_stopped();
    rh_screen_t *r = malloc(sizeof(*r));         /* libc: not the target's */
    if (r == NULL)
        return PyErr_NoMemory();
    PyObject *out = NULL;
    if (_rh_screen_run(&plan, func, fargs, fkwargs == Py_None ? NULL : fkwargs, r) < 0)
        goto done;
    if (still_tracking() < 0)
        goto done;
    int engine = _rh_engine_enter();
    PyObject *lb = int_list(r->blocks, (size_t)plan.nepochs + 2);
    PyObject *ly = int_list(r->bytes, (size_t)plan.nepochs + 2);
    PyObject *lh = int_list(r->heap, (size_t)plan.nepochs + 2);
    if (lb != NULL && ly != NULL && lh != NULL)
        out = Py_BuildValue("{s:k,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:d,s:d,s:d,s:L,s:i}",
                            "first_epoch", (unsigned long)r->first_epoch,
                            "refs", int_pair(r->refs), "objects", int_pair(r->objects),
                            "native_bytes", int_pair(r->native), "fds", int_pair(r->fds),
                            "threads", int_pair(r->threads), "blocks", lb, "bytes", ly,
                            "heap_bytes", lh,
                            "seconds", r->seconds, "walk_seconds", r->walk_seconds,
                            "overhead_seconds", r->overhead_seconds,
                            "free_listed", (long long)r->dead, "tail", r->tail);
    else {
        Py_XDECREF(lb);
        Py_XDECREF(ly);
        Py_XDECREF(lh);
    }
    _rh_engine_leave(engine);
done:
    free(r);
    return out;
}

/* Session.heap_totals(generation=0) -> {"refs", "objects"} after
 * gc.collect(generation) (-1: none), a heap walk. */
static PyObject *Session_heap_totals(PyObject *cls, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"generation", NULL};
    int generation = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|i", kwlist, &generation))
        return NULL;
    if (generation > 2) {
        PyErr_SetString(PyExc_ValueError, "refhound: generation must be -1, 0, 1 or 2");
        return NULL;
    }
    if (!_rh_tracker_active())
        return _rh_py_tracking_stopped();
    int64_t refs = 0, objects = 0;
    if (_rh_screen_totals(generation, &refs, &objects) < 0)
        return NULL;
    int engine = _rh_engine_enter();
    PyObject *out = Py_BuildValue("{s:L,s:L}", "refs", (long long)refs, "objects",
                                  (long long)objects);
    _rh_engine_leave(engine);
    return out;
}

/* Session.next_epoch() -> the new birth epoch (what is born from now on
 * belongs to it). */
static PyObject *Session_next_epoch(PyObject *cls, PyObject *unused)
{
    return PyLong_FromUnsignedLong(_rh_epoch_advance());
}

/* The epochs (first, last) of args, and a third, optional flag when
 * `flag` is not NULL: 0 with *first and *n set, or -1 with an exception
 * (a range of more than 2^20 epochs is refused). */
static int epoch_range(PyObject *args, uint32_t *first, size_t *n, int *flag)
{
    unsigned long f, last;
    if (flag != NULL ? !PyArg_ParseTuple(args, "kk|p", &f, &last, flag)
                     : !PyArg_ParseTuple(args, "kk", &f, &last))
        return -1;
    if (last < f || last - f >= 1u << 20) {
        PyErr_SetString(PyExc_ValueError, "refhound: bad epoch range");
        return -1;
    }
    *first = (uint32_t)f;
    *n = last - f + 1;
    return 0;
}

/* Session.survivors(first, last[, native]) -> [blocks alive per birth
 * epoch of [first, last]], dead objects in free lists left out; with
 * native true, only the native domain's of them (malloc called by
 * extensions). */
static PyObject *Session_survivors(PyObject *cls, PyObject *args)
{
    uint32_t first;
    size_t n;
    int native = 0;
    if (epoch_range(args, &first, &n, &native) < 0)
        return NULL;
    int64_t *b = calloc(n, sizeof(int64_t)), *y = calloc(n, sizeof(int64_t));
    int64_t *v = calloc(n, sizeof(int64_t));
    PyObject *out = NULL;
    if (b == NULL || y == NULL || v == NULL)
        PyErr_NoMemory();
    else {
        _rh_screen_survivors(first, (uint32_t)n, b, y, v);
        int engine = _rh_engine_enter();
        out = int_list(native ? v : b, n);
        _rh_engine_leave(engine);
    }
    free(b);
    free(y);
    free(v);
    return out;
}

/* Session.container_table_survivors(first, last) -> [blocks per birth
 * epoch of [first, last] that are the table of a dict or set older than
 * `first`]. */
static PyObject *Session_container_table_survivors(PyObject *cls, PyObject *args)
{
    uint32_t first;
    size_t n;
    if (epoch_range(args, &first, &n, NULL) < 0)
        return NULL;
    int64_t *t = calloc(n, sizeof(int64_t));
    PyObject *out = NULL;
    if (t == NULL || _rh_container_table_survivors(first, (uint32_t)n, t) < 0)
        PyErr_NoMemory();
    else {
        int engine = _rh_engine_enter();
        out = int_list(t, n);
        _rh_engine_leave(engine);
    }
    free(t);
    return out;
}

/* Session.lost_survivors(first, last) -> {"lost": [blocks per birth epoch
 * of [first, last] that nothing points to], "lost_bytes": [...],
 * "candidates", "lost_total", "scanned_bytes", "mappings", "unreadable",
 * "free_bytes" (free in the allocators, left out), "pools" (pymalloc's,
 * told in the memory read: their free blocks left out), "seconds"};
 * TrackingError when the memory cannot be read. */
static PyObject *Session_lost_survivors(PyObject *cls, PyObject *args)
{
    uint32_t first;
    size_t n;
    if (epoch_range(args, &first, &n, NULL) < 0)
        return NULL;
    int64_t *lost = calloc(n, sizeof(int64_t)), *bytes = calloc(n, sizeof(int64_t));
    PyObject *out = NULL;
    rh_lost_t r;
    const char *why = NULL;
    if (lost == NULL || bytes == NULL)
        PyErr_NoMemory();
    else if (_rh_lost_survivors(first, (uint32_t)n, lost, bytes, &r, &why) < 0)
        PyErr_Format(_rh_TrackingError, "could not search for references: %s", why);
    else {
        int engine = _rh_engine_enter();
        out = PyDict_New();
        if (out != NULL &&
            (set_item(out, "lost", int_list(lost, n)) < 0 ||
             set_item(out, "lost_bytes", int_list(bytes, n)) < 0 ||
             set_item(out, "candidates", PyLong_FromLongLong(r.candidates)) < 0 ||
             set_item(out, "lost_total", PyLong_FromLongLong(r.lost_total)) < 0 ||
             set_item(out, "scanned_bytes", PyLong_FromLongLong(r.scanned_bytes)) < 0 ||
             set_item(out, "mappings", PyLong_FromLongLong(r.mappings)) < 0 ||
             set_item(out, "unreadable", PyLong_FromLongLong(r.unreadable)) < 0 ||
             set_item(out, "free_bytes", PyLong_FromLongLong(r.free_bytes)) < 0 ||
             set_item(out, "pools", PyLong_FromLongLong(r.pools)) < 0 ||
             set_item(out, "seconds", PyFloat_FromDouble(r.seconds)) < 0))
            Py_CLEAR(out);
        _rh_engine_leave(engine);
    }
    free(lost);
    free(bytes);
    return out;
}

#define MAX_COUNTED 8

/* Session.count_words(objects) -> {"counts": [words of the process's
 * writable memory that hold each object's address], "scanned_bytes",
 * "seconds"}; at most MAX_COUNTED objects; TrackingError when the memory
 * cannot be read.  The caller's own frames hold what they hold at both
 * counts: only a difference means something. */
static PyObject *Session_count_words(PyObject *cls, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "count_words() takes a sequence of objects");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_COUNTED) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "count_words() counts at most %d objects", MAX_COUNTED);
        return NULL;
    }
    uintptr_t addrs[MAX_COUNTED];
    int64_t counts[MAX_COUNTED];
    for (Py_ssize_t i = 0; i < n; i++)
        addrs[i] = (uintptr_t)PySequence_Fast_GET_ITEM(seq, i);
    rh_lost_t r;
    const char *why = NULL;
    PyObject *out = NULL;
    if (_rh_lost_count_words(addrs, (size_t)n, counts, &r, &why) < 0)
        PyErr_Format(_rh_TrackingError, "could not search for references: %s", why);
    else {
        int engine = _rh_engine_enter();
        out = PyDict_New();
        if (out != NULL &&
            (set_item(out, "counts", int_list(counts, (size_t)n)) < 0 ||
             set_item(out, "scanned_bytes", PyLong_FromLongLong(r.scanned_bytes)) < 0 ||
             set_item(out, "seconds", PyFloat_FromDouble(r.seconds)) < 0))
            Py_CLEAR(out);
        _rh_engine_leave(engine);
    }
    Py_DECREF(seq);
    return out;
}

static PyObject *Session_get_warmup(Session *self, void *c)
{
    return PyLong_FromLong(self->s ? self->s->nwarmup : 0);
}

static PyObject *Session_get_nsamples(Session *self, void *c)
{
    return PyLong_FromLong(self->s ? self->s->nsamples : 0);
}

static PyObject *Session_get_calls(Session *self, void *c) { return PyLong_FromSsize_t(self->calls); }

static PyMethodDef Session_methods[] = {
    {"iterate", (PyCFunction)(void (*)(void))Session_iterate, METH_VARARGS | METH_KEYWORDS,
     "iterate(warmup=False, snapshot=False) -> seconds spent in the calls: begin(), the "
     "calls, end()"},
    {"begin", (PyCFunction)Session_begin, METH_NOARGS,
     "begin(): a new iteration (the epoch advances: what follows belongs to it)"},
    {"end", (PyCFunction)(void (*)(void))Session_end, METH_VARARGS | METH_KEYWORDS,
     "end(warmup=False, snapshot=False): clear caches, two collections, a sample (and a "
     "refcount snapshot)"},
    {"snapshot", (PyCFunction)Session_snapshot, METH_NOARGS, "store a refcount snapshot"},
    {"growth", (PyCFunction)Session_growth, METH_VARARGS,
     "growth(limit=20) -> [(object, [refcnt per snapshot])] moving one way"},
    {"results", (PyCFunction)Session_results, METH_NOARGS, "results() -> dict"},
    {"set_calls", (PyCFunction)Session_set_calls, METH_O, "set the calls per iteration"},
    {"series", (PyCFunction)Session_series, METH_VARARGS,
     "series(metric, start=0) -> the metric's value at each sample from `start`"},
    {"last_delta", (PyCFunction)Session_last_delta, METH_O,
     "last_delta(metric) -> change between the last two samples"},
    {"screen", (PyCFunction)(void (*)(void))Session_screen,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "screen(func, args, kwargs, warm, calls, epochs, generation=1, clear_caches=None, "
     "lazy_tail=False, native_slack=0) -> dict: warm calls, a "
     "young collection and a walk, `epochs` epochs of `calls` calls, a tail call, a young "
     "collection and a walk, the survivors of each epoch (no session needed; turn the "
     "collector off around it); a lazy tail is called only when a walk before it finds "
     "something (\"tail\": 0 or 1)"},
    {"heap_totals", (PyCFunction)(void (*)(void))Session_heap_totals,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "heap_totals(generation=0) -> {refs, objects}: gc.collect(generation) (-1: none) and a "
     "heap walk"},
    {"next_epoch", (PyCFunction)Session_next_epoch, METH_NOARGS | METH_CLASS,
     "next_epoch() -> the new birth epoch"},
    {"survivors", (PyCFunction)Session_survivors, METH_VARARGS | METH_CLASS,
     "survivors(first, last[, native]) -> [blocks alive per birth epoch], free-listed objects "
     "left out; native: only the native domain's"},
    {"container_table_survivors", (PyCFunction)Session_container_table_survivors,
     METH_VARARGS | METH_CLASS,
     "container_table_survivors(first, last) -> [blocks alive per birth epoch of [first, "
     "last] that are the table of a live dict or set born before first: a later resize "
     "replaces them]"},
    {"lost_survivors", (PyCFunction)Session_lost_survivors, METH_VARARGS | METH_CLASS,
     "lost_survivors(first, last) -> dict: the blocks alive per birth epoch of [first, last] "
     "that no word of the process's writable memory points to (lost for good)"},
    {"count_words", (PyCFunction)Session_count_words, METH_O | METH_CLASS,
     "count_words(objects) -> dict: how many words of the process's writable memory hold "
     "each object's address (at most 8 objects)"},
    {"freeze_old", (PyCFunction)Session_freeze_old, METH_NOARGS,
     "freeze_old(): the next samples collect only what was born after this one's collection"},
    {"thaw", (PyCFunction)Session_thaw, METH_NOARGS,
     "thaw() -> old objects that became cyclic garbage while frozen"},
    {"close", (PyCFunction)Session_close, METH_NOARGS,
     "stop counting frees; the figures stay readable"},
    {NULL}
};

static PyGetSetDef Session_getset[] = {
    {"nsamples", (getter)Session_get_nsamples, NULL, "samples taken", NULL},
    {"calls", (getter)Session_get_calls, NULL, "calls per iteration", NULL},
    {"warmup_samples", (getter)Session_get_warmup, NULL, "samples taken during warm-up", NULL},
    {NULL}
};

PyTypeObject _rh_SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "refhound._core.Session",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Session(func, args, kwargs, clear_caches, calls=1, max_samples=256): the "
              "measurements of one leak check",
    .tp_new = Session_new,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
    .tp_getset = Session_getset,
};
