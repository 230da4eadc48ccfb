/* session.c — one leak check: iterations, samples, per-type counts, verdict.
 *
 * A session calls the target `calls` times per iteration, each iteration in
 * its own birth epoch, then collects garbage, clears the interpreter caches
 * (a Python callable given by the caller) and takes a sample: references,
 * objects, gc-tracked objects, blocks and bytes per domain, native heap,
 * RSS/USS, descriptors, threads, pymalloc's arenas/pools/blocks, and
 * `sys.gettotalrefcount()` on debug builds.  All samples live in C memory (libc), so the bookkeeping of
 * the check itself never shows up in what it measures.
 *
 * Per type (COUNT_ALLOCS figures): live count at every sample, objects
 * freed (counted by the free observer while the session runs; born during
 * the session or before), allocations = live-born-during + freed-born-during.
 *
 * decide() applies the trend test (trend.c) to the recent window of the
 * measured samples and says whether to stop.  Runs under the GIL; one
 * session at a time receives free notifications (active_session).
 */
#include "rh_internal.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    M_REFS, M_OBJECTS, M_GC, M_BLOCKS, M_BYTES,
    M_RAW_BLOCKS, M_MEM_BLOCKS, M_OBJ_BLOCKS, M_RAW_BYTES, M_MEM_BYTES, M_OBJ_BYTES,
    M_NATIVE, M_RSS, M_USS, M_FDS, M_THREADS, M_DEBUG_REFS,
    M_ARENAS, M_POOLS, M_PYMALLOC_BLOCKS,
    NMETRICS
};

static const char *const metric_names[NMETRICS] = {
    "refs", "objects", "gc_objects", "blocks", "bytes",
    "raw_blocks", "mem_blocks", "obj_blocks", "raw_bytes", "mem_bytes", "obj_bytes",
    "native_bytes", "rss_bytes", "uss_bytes", "fds", "threads", "debug_refs",
    "arenas", "pools", "pymalloc_blocks",
};

/* Metrics whose growth makes a leak (the others are shown only). */
static const int verdict_metrics[] = {M_REFS, M_OBJECTS, M_BLOCKS, M_BYTES, M_NATIVE, M_FDS, M_THREADS};
#define NVERDICT ((int)(sizeof(verdict_metrics) / sizeof(verdict_metrics[0])))

typedef struct {
    double t;
    uint32_t epoch;
    int64_t m[NMETRICS];
} sample_t;

struct rh_typestat {
    uintptr_t type;
    int64_t frees_new, frees_old;
    int64_t max_live;
    int64_t live_new;
    int first_sample;
    int64_t *live;          /* per sample */
};

typedef struct {
    PyObject_HEAD
    PyObject *func, *args, *kwargs, *clear_caches, *totalrefcount;
    Py_ssize_t calls;
    int max_samples, nsamples, nwarmup;
    int min_measured, max_measured;
    double alpha;
    int leak_streak, error_streak;
    uint32_t first_epoch;
    double t0;
    sample_t *samples;
    rh_typestat_t **stats;  /* open addressing by type address */
    size_t stats_mask, nstats;
    rh_snapshot_t *snaps;
    int nsnaps;
    rh_trend_result_t trends[NMETRICS];
    int closed;
} Session;

static Session *active_session = NULL;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- per-type counters --------------------------------------------------- */

static rh_typestat_t *stat_for(Session *s, uintptr_t type)
{
    if ((s->nstats + 1) * 2 > s->stats_mask + 1) {
        size_t cap = (s->stats_mask + 1) * 2;
        rh_typestat_t **tab = calloc(cap, sizeof(*tab));
        if (tab == NULL)
            return NULL;
        for (size_t i = 0; i <= s->stats_mask; i++) {
            rh_typestat_t *st = s->stats[i];
            if (st == NULL)
                continue;
            size_t j = ((uint64_t)st->type * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
            while (tab[j] != NULL)
                j = (j + 1) & (cap - 1);
            tab[j] = st;
        }
        free(s->stats);
        s->stats = tab;
        s->stats_mask = cap - 1;
    }
    size_t i = ((uint64_t)type * 0x9E3779B97F4A7C15ull >> 20) & s->stats_mask;
    while (s->stats[i] != NULL) {
        if (s->stats[i]->type == type)
            return s->stats[i];
        i = (i + 1) & s->stats_mask;
    }
    rh_typestat_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->live = calloc(s->max_samples, sizeof(int64_t));
    if (st->live == NULL) {
        free(st);
        return NULL;
    }
    st->type = type;
    st->first_sample = s->nsamples;
    s->stats[i] = st;
    s->nstats++;
    return st;
}

static void observe_free(const rh_block_t *b)
{
    Session *s = active_session;
    PyObject *op;
    if (s == NULL)
        return;
    rh_typeinfo_t *ti = _rh_recognize(b, &op, 0);
    if (ti == NULL || ti->stat == NULL)
        return;
    if (rh_block_domain(b) != RH_DOMAIN_ADOPTED && rh_block_epoch(b) >= s->first_epoch)
        ti->stat->frees_new++;
    else
        ti->stat->frees_old++;
}

/* ---- sampling ------------------------------------------------------------ */

/* Bytes of the C heap refhound itself holds now: native_bytes is the
 * process's whole glibc heap, and the engine's own tables grow when new
 * types appear; that is not the target's growth. */
static int64_t own_heap_bytes(Session *s)
{
    size_t n = _rh_typeset_heap_bytes();
    n += malloc_usable_size(s->samples) + malloc_usable_size(s->stats);
    for (size_t i = 0; s->stats && i <= s->stats_mask; i++) {
        if (s->stats[i] != NULL)
            n += malloc_usable_size(s->stats[i]) + malloc_usable_size(s->stats[i]->live);
    }
    for (int i = 0; i < s->nsnaps; i++)
        n += s->snaps[i].entries ? malloc_usable_size(s->snaps[i].entries) : 0;
    return (int64_t)n;
}

static int read_pymalloc(void *out) { return _rh_pymalloc_read((rh_pymalloc_t *)out); }

static int take_sample(Session *s)
{
    if (s->nsamples >= s->max_samples) {
        PyErr_SetString(PyExc_RuntimeError, "refhound: session is full");
        return -1;
    }
    if (_rh_typeset_refresh() < 0)
        return -1;
    size_t ncap;
    rh_typeinfo_t *types = _rh_typeset_slots(&ncap);
    for (size_t i = 0; i < ncap; i++) {
        if (types[i].type != 0 && types[i].stat == NULL)
            types[i].stat = stat_for(s, types[i].type);
    }
    sample_t *x = &s->samples[s->nsamples];
    memset(x, 0, sizeof(*x));
    x->m[M_DEBUG_REFS] = -1;
    if (s->totalrefcount != NULL) {
        PyObject *r = PyObject_CallNoArgs(s->totalrefcount);
        if (r == NULL)
            return -1;
        x->m[M_DEBUG_REFS] = PyLong_AsLongLong(r);
        Py_DECREF(r);
    }
    rh_walk_totals_t w;
    _rh_objects_walk(&w, s->first_epoch);
    int64_t blocks[RH_NDOMAINS], bytes[RH_NDOMAINS];
    _rh_tracker_totals(blocks, bytes);
    rh_procstat_t ps;
    _rh_procstat_read(&ps, 1);

    x->t = now() - s->t0;
    x->epoch = _rh_epoch;
    x->m[M_REFS] = w.refs;
    x->m[M_OBJECTS] = w.objects;
    x->m[M_GC] = w.gc_tracked;
    x->m[M_RAW_BLOCKS] = blocks[RH_DOMAIN_RAW];
    x->m[M_MEM_BLOCKS] = blocks[RH_DOMAIN_MEM];
    x->m[M_OBJ_BLOCKS] = blocks[RH_DOMAIN_OBJ];
    x->m[M_RAW_BYTES] = bytes[RH_DOMAIN_RAW];
    x->m[M_MEM_BYTES] = bytes[RH_DOMAIN_MEM];
    x->m[M_OBJ_BYTES] = bytes[RH_DOMAIN_OBJ];
    x->m[M_BLOCKS] = blocks[RH_DOMAIN_RAW] + blocks[RH_DOMAIN_MEM] + blocks[RH_DOMAIN_OBJ];
    x->m[M_BYTES] = bytes[RH_DOMAIN_RAW] + bytes[RH_DOMAIN_MEM] + bytes[RH_DOMAIN_OBJ];
    x->m[M_NATIVE] = ps.native_bytes < 0 ? -1 : ps.native_bytes - own_heap_bytes(s);
    x->m[M_RSS] = ps.rss_bytes;
    x->m[M_USS] = ps.uss_bytes;
    x->m[M_FDS] = ps.fds;
    x->m[M_THREADS] = ps.threads;
    /* pymalloc's own figures, as PYTHONMALLOCSTATS prints them (-1 when
     * pymalloc is not the allocator). */
    rh_pymalloc_t pm;
    x->m[M_ARENAS] = x->m[M_POOLS] = x->m[M_PYMALLOC_BLOCKS] = -1;
    if (_rh_tracker_call_unhooked(read_pymalloc, &pm) == 0 && pm.enabled) {
        x->m[M_ARENAS] = pm.arenas_current;
        x->m[M_POOLS] = pm.pools_in_use;
        x->m[M_PYMALLOC_BLOCKS] = pm.blocks_in_use;
    }

    for (size_t i = 0; i < ncap; i++) {
        rh_typestat_t *st = types[i].stat;
        if (types[i].type == 0 || st == NULL)
            continue;
        st->live[s->nsamples] = types[i].live;
        st->live_new = types[i].live_new;
        if (types[i].live > st->max_live)
            st->max_live = types[i].live;
    }
    s->nsamples++;
    return 0;
}

/* ---- the Python type ------------------------------------------------------ */

static void session_close(Session *s)
{
    if (s->closed)
        return;
    s->closed = 1;
    if (active_session == s) {
        active_session = NULL;
        _rh_free_observer = NULL;
    }
    /* Detach our counters from the type set before freeing them. */
    size_t ncap;
    rh_typeinfo_t *types = _rh_typeset_slots(&ncap);
    for (size_t i = 0; i < ncap; i++)
        types[i].stat = NULL;
    for (size_t i = 0; s->stats && i <= s->stats_mask; i++) {
        if (s->stats[i]) {
            free(s->stats[i]->live);
            free(s->stats[i]);
        }
    }
    free(s->stats);
    s->stats = NULL;
    for (int i = 0; i < s->nsnaps; i++)
        _rh_snapshot_release(&s->snaps[i]);
    free(s->snaps);
    s->snaps = NULL;
    s->nsnaps = 0;
}

static void Session_dealloc(Session *s)
{
    session_close(s);
    free(s->samples);
    Py_XDECREF(s->func);
    Py_XDECREF(s->args);
    Py_XDECREF(s->kwargs);
    Py_XDECREF(s->clear_caches);
    Py_XDECREF(s->totalrefcount);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *Session_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"func", "args", "kwargs", "clear_caches", "calls",
                             "max_samples", "min_measured", "max_measured", "alpha", NULL};
    PyObject *func, *fargs, *fkwargs, *clear;
    Py_ssize_t calls = 1;
    int max_samples = 256, min_measured = 8, max_measured = 60;
    double alpha = 0.001;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!OO|niiid", kwlist, &func, &PyTuple_Type,
                                     &fargs, &fkwargs, &clear, &calls, &max_samples,
                                     &min_measured, &max_measured, &alpha))
        return NULL;
    if (!_rh_tracker_active()) {
        PyErr_SetString(PyExc_RuntimeError, "refhound: tracking is not on");
        return NULL;
    }
    if (active_session != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "refhound: a check is already running");
        return NULL;
    }
    if (max_samples < 4 || calls < 1) {
        PyErr_SetString(PyExc_ValueError, "refhound: bad session sizes");
        return NULL;
    }
    Session *s = (Session *)type->tp_alloc(type, 0);
    if (s == NULL)
        return NULL;
    s->samples = calloc(max_samples, sizeof(sample_t));
    s->stats = calloc(1024, sizeof(rh_typestat_t *));
    if (s->samples == NULL || s->stats == NULL) {
        Py_DECREF(s);
        return PyErr_NoMemory();
    }
    s->stats_mask = 1023;
    s->func = Py_NewRef(func);
    s->args = Py_NewRef(fargs);
    s->kwargs = fkwargs == Py_None ? NULL : Py_NewRef(fkwargs);
    s->clear_caches = clear == Py_None ? NULL : Py_NewRef(clear);
    s->totalrefcount = PySys_GetObject("gettotalrefcount");
    Py_XINCREF(s->totalrefcount);
    s->calls = calls;
    s->max_samples = max_samples;
    s->min_measured = min_measured;
    s->max_measured = max_measured;
    s->alpha = alpha;
    s->first_epoch = _rh_epoch + 1;
    s->t0 = now();
    active_session = s;
    _rh_free_observer = observe_free;
    return (PyObject *)s;
}

/* One iteration: `calls` calls in a new epoch, clean-up, sample. */
static PyObject *Session_snapshot(Session *s, PyObject *unused);

static PyObject *Session_iterate(Session *s, PyObject *args)
{
    int warmup = 0, snapshot = 0;
    if (!PyArg_ParseTuple(args, "|pp", &warmup, &snapshot))
        return NULL;
    if (s->closed || !_rh_tracker_active()) {
        PyErr_Format(_rh_TrackingError, "tracking stopped%s%s",
                     _rh_tracker_failure() ? ": " : "",
                     _rh_tracker_failure() ? _rh_tracker_failure() : "");
        return NULL;
    }
    if (!warmup && s->nwarmup == 0 && s->nsamples > 0)
        s->nwarmup = s->nsamples;
    _rh_epoch_advance();
    double t = now();
    for (Py_ssize_t i = 0; i < s->calls; i++) {
        PyObject *r = PyObject_Call(s->func, s->args, s->kwargs);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    t = now() - t;
    if (s->clear_caches != NULL) {
        PyObject *r = PyObject_CallNoArgs(s->clear_caches);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    PyGC_Collect();
    PyGC_Collect();
    if (take_sample(s) < 0)
        return NULL;
    if (!_rh_tracker_active()) {
        /* The table could not grow during this iteration: the sample is
         * incomplete; say why instead of judging it. */
        PyErr_Format(_rh_TrackingError, "tracking stopped: %s",
                     _rh_tracker_failure() ? _rh_tracker_failure() : "unknown reason");
        return NULL;
    }
    if (snapshot) {
        PyObject *r = Session_snapshot(s, NULL);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    if (warmup)
        s->nwarmup = s->nsamples;
    return PyFloat_FromDouble(t);
}

static PyObject *Session_set_calls(Session *s, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "calls must be >= 1");
        return NULL;
    }
    s->calls = n;
    Py_RETURN_NONE;
}

static const char *trend_name(rh_trend_t t)
{
    switch (t) {
    case RH_TREND_FLAT: return "flat";
    case RH_TREND_NOISE: return "noise";
    case RH_TREND_UNCLEAR: return "unclear";
    case RH_TREND_GROWING: return "growing";
    case RH_TREND_FALLING: return "falling";
    }
    return "?";
}

/* Classify every metric over the recent window of measured samples. */
static int classify_all(Session *s, int *measured)
{
    int base = s->nwarmup > 0 ? s->nwarmup - 1 : 0;
    int m = s->nsamples - 1 - base;     /* measured iterations */
    *measured = m;
    int npoints = m + 1;
    int window = (2 * npoints + 2) / 3;
    if (window < 8)
        window = npoints < 8 ? npoints : 8;
    int start = s->nsamples - window;
    double *x = malloc(sizeof(double) * (window > 0 ? window : 1));
    if (x == NULL)
        return -1;
    for (int k = 0; k < NMETRICS; k++) {
        int missing = 0;
        for (int i = 0; i < window; i++) {
            int64_t v = s->samples[start + i].m[k];
            if (v < 0 && (k == M_NATIVE || k == M_RSS || k == M_USS || k == M_FDS ||
                          k == M_THREADS || k == M_DEBUG_REFS || k == M_ARENAS ||
                          k == M_POOLS || k == M_PYMALLOC_BLOCKS))
                missing = 1;
            x[i] = (double)v;
        }
        if (missing)
            memset(&s->trends[k], 0, sizeof(s->trends[k]));
        else
            _rh_trend_classify(x, window, s->alpha, &s->trends[k]);
    }
    free(x);
    return 0;
}

/* -> (verdict, stop): verdict in leak/error/clean/inconclusive/continue */
static PyObject *Session_decide(Session *s, PyObject *unused)
{
    int m;
    if (classify_all(s, &m) < 0)
        return PyErr_NoMemory();
    /* unclear: leaning one way without significance.  leaning: any hint of
     * net growth or loss over the window (p < 0.1), which forbids an early
     * "clean": a leak every 10th call, checked one call per iteration,
     * shows as a rare step that needs more iterations to tell from noise.
     * The glibc heap figure is too noisy to hold a check back. */
    int growing = 0, falling = 0, unclear = 0, leaning = 0, flat = 1;
    for (int i = 0; i < NVERDICT; i++) {
        int k = verdict_metrics[i];
        const rh_trend_result_t *t = &s->trends[k];
        if (t->trend == RH_TREND_GROWING)
            growing = 1;
        if (t->trend == RH_TREND_UNCLEAR)
            unclear = 1;
        if (k != M_NATIVE && ((t->p_up < 0.1 && t->window_growth > 0) ||
                              (t->p_down < 0.1 && t->window_growth < 0)))
            leaning = 1;
        if (t->trend != RH_TREND_FLAT && k != M_NATIVE)
            flat = 0;
    }
    if (s->trends[M_REFS].trend == RH_TREND_FALLING)
        falling = 1;
    s->leak_streak = growing ? s->leak_streak + 1 : 0;
    s->error_streak = falling ? s->error_streak + 1 : 0;
    const char *verdict = "continue";
    int stop = 0;
    if (m >= s->min_measured) {
        if (falling && s->error_streak >= 2) {
            verdict = "error";
            stop = 1;
        }
        else if (growing && s->leak_streak >= 3) {
            verdict = "leak";
            stop = 1;
        }
        else if (!growing && !falling && !unclear && flat) {
            verdict = "clean";
            stop = 1;
        }
        else if (!growing && !falling && !unclear && !leaning && m >= 2 * s->min_measured) {
            verdict = "clean";
            stop = 1;
        }
    }
    if (!stop && (m >= s->max_measured || s->nsamples >= s->max_samples - 1)) {
        stop = 1;
        if (falling)
            verdict = "error";
        else if (growing)
            verdict = "leak";
        else if (unclear)
            verdict = "inconclusive";
        else
            verdict = "clean";
    }
    return Py_BuildValue("(si)", verdict, stop);
}

static PyObject *Session_snapshot(Session *s, PyObject *unused)
{
    rh_snapshot_t *more = realloc(s->snaps, sizeof(rh_snapshot_t) * (s->nsnaps + 1));
    if (more == NULL)
        return PyErr_NoMemory();
    s->snaps = more;
    if (_rh_snapshot_take(&s->snaps[s->nsnaps]) < 0)
        return PyErr_NoMemory();
    s->nsnaps++;
    Py_RETURN_NONE;
}

static Py_ssize_t find_refcnt(const rh_snapshot_t *snap, uintptr_t obj)
{
    size_t lo = 0, hi = snap->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (snap->entries[mid].obj < obj)
            lo = mid + 1;
        else if (snap->entries[mid].obj > obj)
            hi = mid;
        else
            return snap->entries[mid].refcnt;
    }
    return -1;
}

/* Objects present in every snapshot whose refcount moved one way in every
 * step (or in most steps and never the other way).  Snapshots are taken at
 * the end of iterate(snapshot=True), so the steps are alike; an object is
 * returned only if it is still alive in the table now.
 * -> [(object, [refcnt per snapshot])], largest change first. */
static PyObject *Session_growth(Session *s, PyObject *args)
{
    int limit = 20;
    if (!PyArg_ParseTuple(args, "|i", &limit))
        return NULL;
    int k = s->nsnaps;
    PyObject *out = PyList_New(0);
    if (out == NULL || k < 2)
        return out;
    const rh_snapshot_t *last = &s->snaps[k - 1];
    Py_ssize_t *rc = malloc(sizeof(Py_ssize_t) * k);
    typedef struct { uintptr_t obj; Py_ssize_t change; } hit_t;
    size_t nhits = 0, caphits = 64;
    hit_t *hits = malloc(sizeof(hit_t) * caphits);
    if (rc == NULL || hits == NULL)
        goto nomem;
    for (size_t i = 0; i < last->count; i++) {
        uintptr_t obj = last->entries[i].obj;
        int up = 0, down = 0, present = 1;
        rc[k - 1] = last->entries[i].refcnt;
        for (int j = k - 2; j >= 0; j--) {
            rc[j] = find_refcnt(&s->snaps[j], obj);
            if (rc[j] < 0) {
                present = 0;
                break;
            }
        }
        if (!present)
            continue;
        for (int j = 1; j < k; j++) {
            up += rc[j] > rc[j - 1];
            down += rc[j] < rc[j - 1];
        }
        int steps = k - 1;
        if (!((up > 0 && down == 0 && 2 * up >= steps) || (down > 0 && up == 0 && 2 * down >= steps)))
            continue;
        if (!_rh_object_is_live(obj, last->entries[i].type))
            continue;
        if (nhits == caphits) {
            hit_t *more = realloc(hits, sizeof(hit_t) * caphits * 2);
            if (more == NULL)
                goto nomem;
            hits = more;
            caphits *= 2;
        }
        hits[nhits].obj = obj;
        hits[nhits].change = rc[k - 1] - rc[0];
        nhits++;
    }
    /* Largest absolute change first (selection of the top `limit`). */
    for (size_t a = 0; a < nhits && (int)a < limit; a++) {
        size_t best = a;
        for (size_t b = a + 1; b < nhits; b++) {
            Py_ssize_t x = hits[b].change < 0 ? -hits[b].change : hits[b].change;
            Py_ssize_t y = hits[best].change < 0 ? -hits[best].change : hits[best].change;
            if (x > y)
                best = b;
        }
        hit_t tmp = hits[a];
        hits[a] = hits[best];
        hits[best] = tmp;
        PyObject *series = PyList_New(k);
        if (series == NULL)
            goto error;
        for (int j = 0; j < k; j++) {
            Py_ssize_t v = find_refcnt(&s->snaps[j], hits[a].obj);
            PyList_SET_ITEM(series, j, PyLong_FromSsize_t(v));
        }
        PyObject *item = Py_BuildValue("(ON)", (PyObject *)hits[a].obj, series);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    free(rc);
    free(hits);
    return out;
nomem:
    PyErr_NoMemory();
error:
    free(rc);
    free(hits);
    Py_DECREF(out);
    return NULL;
}

/* A type's display name, or NULL if the type is gone. */
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

static PyObject *Session_results(Session *s, PyObject *unused)
{
    int measured;
    if (classify_all(s, &measured) < 0)
        return PyErr_NoMemory();
    PyObject *res = PyDict_New(), *samples = PyList_New(0), *types = PyList_New(0);
    PyObject *trends = PyDict_New(), *surv = NULL;
    if (!res || !samples || !types || !trends)
        goto error;
    for (int i = 0; i < s->nsamples; i++) {
        PyObject *d = PyDict_New();
        if (d == NULL || PyList_Append(samples, d) < 0) {
            Py_XDECREF(d);
            goto error;
        }
        Py_DECREF(d);
        PyObject *v = PyFloat_FromDouble(s->samples[i].t);
        if (v == NULL || PyDict_SetItemString(d, "t", v) < 0) { Py_XDECREF(v); goto error; }
        Py_DECREF(v);
        v = PyLong_FromUnsignedLong(s->samples[i].epoch);
        if (v == NULL || PyDict_SetItemString(d, "epoch", v) < 0) { Py_XDECREF(v); goto error; }
        Py_DECREF(v);
        for (int k = 0; k < NMETRICS; k++) {
            v = PyLong_FromLongLong(s->samples[i].m[k]);
            if (v == NULL || PyDict_SetItemString(d, metric_names[k], v) < 0) { Py_XDECREF(v); goto error; }
            Py_DECREF(v);
        }
    }
    int base = s->nwarmup > 0 ? s->nwarmup - 1 : 0;
    for (size_t i = 0; i <= s->stats_mask; i++) {
        rh_typestat_t *st = s->stats[i];
        if (st == NULL || s->nsamples == 0)
            continue;
        int64_t first = st->first_sample <= base ? st->live[base] : 0;
        int64_t last = st->live[s->nsamples - 1];
        int64_t allocs = st->live_new + st->frees_new;
        if (first == last && allocs == 0 && st->frees_old == 0)
            continue;
        PyObject *series = PyList_New(0);
        if (series == NULL)
            goto error;
        for (int j = 0; j < s->nsamples; j++) {
            PyObject *v = PyLong_FromLongLong(j < st->first_sample ? 0 : st->live[j]);
            if (v == NULL || PyList_Append(series, v) < 0) {
                Py_XDECREF(v);
                Py_DECREF(series);
                goto error;
            }
            Py_DECREF(v);
        }
        PyObject *name = type_name(st->type);
        PyObject *item = Py_BuildValue("{s:N,s:N,s:L,s:L,s:L,s:L}", "type", name, "live", series,
                                       "allocs", (long long)allocs,
                                       "frees", (long long)(st->frees_new + st->frees_old),
                                       "max_live", (long long)st->max_live,
                                       "first_sample", (long long)st->first_sample);
        if (item == NULL || PyList_Append(types, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    for (int k = 0; k < NMETRICS; k++) {
        rh_trend_result_t *t = &s->trends[k];
        PyObject *d = Py_BuildValue("{s:s,s:d,s:d,s:d,s:i}", "trend", trend_name(t->trend),
                                    "slope", t->slope, "p_up", t->p_up, "p_down", t->p_down,
                                    "window", t->window);
        if (d == NULL || PyDict_SetItemString(trends, metric_names[k], d) < 0) {
            Py_XDECREF(d);
            goto error;
        }
        Py_DECREF(d);
    }
    /* Blocks still alive per birth epoch of the measured iterations. */
    if (s->nsamples > 0) {
        uint32_t first = s->samples[base].epoch + 1, last = s->samples[s->nsamples - 1].epoch;
        if (s->nwarmup == 0)
            first = s->first_epoch;
        if (last >= first) {
            size_t n = last - first + 1;
            int64_t *b = calloc(n, sizeof(int64_t)), *y = calloc(n, sizeof(int64_t));
            if (b == NULL || y == NULL) {
                free(b);
                free(y);
                goto error;
            }
            _rh_tracker_survivors(first, last, b, y);
            PyObject *lb = PyList_New(n), *ly = PyList_New(n);
            for (size_t i = 0; lb && ly && i < n; i++) {
                PyList_SET_ITEM(lb, i, PyLong_FromLongLong(b[i]));
                PyList_SET_ITEM(ly, i, PyLong_FromLongLong(y[i]));
            }
            free(b);
            free(y);
            surv = Py_BuildValue("{s:k,s:N,s:N}", "first_epoch", (unsigned long)first,
                                 "blocks", lb, "bytes", ly);
            if (surv == NULL)
                goto error;
        }
    }
    if (surv == NULL)
        surv = Py_BuildValue("{s:k,s:[],s:[]}", "first_epoch", 0ul, "blocks", "bytes");
    PyObject *fail = _rh_tracker_failure() ? PyUnicode_FromString(_rh_tracker_failure())
                                           : Py_NewRef(Py_None);
    PyObject *tracker = Py_BuildValue("{s:n,s:n,s:N}", "table_bytes",
                                      (Py_ssize_t)_rh_tracker_table_bytes(), "table_entries",
                                      (Py_ssize_t)_rh_tracker_table_entries(), "failure", fail);
    if (tracker == NULL ||
        PyDict_SetItemString(res, "tracker", tracker) < 0 ||
        PyDict_SetItemString(res, "samples", samples) < 0 ||
        PyDict_SetItemString(res, "types", types) < 0 ||
        PyDict_SetItemString(res, "trends", trends) < 0 ||
        PyDict_SetItemString(res, "survivors", surv) < 0) {
        Py_XDECREF(tracker);
        goto error;
    }
    Py_DECREF(tracker);
    PyObject *v = Py_BuildValue("{s:n,s:i,s:i}", "calls", s->calls, "warmup_samples", s->nwarmup,
                                "measured", measured);
    if (v == NULL || PyDict_Update(res, v) < 0) {
        Py_XDECREF(v);
        goto error;
    }
    Py_DECREF(v);
    Py_DECREF(samples);
    Py_DECREF(types);
    Py_DECREF(trends);
    Py_DECREF(surv);
    return res;
error:
    Py_XDECREF(res);
    Py_XDECREF(samples);
    Py_XDECREF(types);
    Py_XDECREF(trends);
    Py_XDECREF(surv);
    return NULL;
}

static PyObject *Session_close(Session *s, PyObject *unused)
{
    session_close(s);
    Py_RETURN_NONE;
}

/* Change of one metric between the last two samples (0 with fewer). */
static PyObject *Session_last_delta(Session *s, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    for (int k = 0; k < NMETRICS; k++) {
        if (strcmp(name, metric_names[k]) != 0)
            continue;
        if (s->nsamples < 2)
            return PyLong_FromLong(0);
        return PyLong_FromLongLong(s->samples[s->nsamples - 1].m[k] -
                                   s->samples[s->nsamples - 2].m[k]);
    }
    PyErr_Format(PyExc_KeyError, "no metric %s", name);
    return NULL;
}

/* series(metric, start=0) -> [values] from sample `start` on */
static PyObject *Session_series(Session *s, PyObject *args)
{
    const char *name;
    int start = 0;
    if (!PyArg_ParseTuple(args, "s|i", &name, &start))
        return NULL;
    for (int k = 0; k < NMETRICS; k++) {
        if (strcmp(name, metric_names[k]) != 0)
            continue;
        PyObject *out = PyList_New(0);
        for (int i = start < 0 ? 0 : start; out && i < s->nsamples; i++) {
            PyObject *v = PyLong_FromLongLong(s->samples[i].m[k]);
            if (v == NULL || PyList_Append(out, v) < 0)
                Py_CLEAR(out);
            Py_XDECREF(v);
        }
        return out;
    }
    PyErr_Format(PyExc_KeyError, "no metric %s", name);
    return NULL;
}

static PyObject *Session_get_warmup(Session *s, void *c) { return PyLong_FromLong(s->nwarmup); }

static PyObject *Session_get_nsamples(Session *s, void *c) { return PyLong_FromLong(s->nsamples); }
static PyObject *Session_get_calls(Session *s, void *c) { return PyLong_FromSsize_t(s->calls); }

static PyMethodDef Session_methods[] = {
    {"iterate", (PyCFunction)Session_iterate, METH_VARARGS,
     "iterate(warmup=False) -> seconds spent in the calls; one iteration and a sample"},
    {"decide", (PyCFunction)Session_decide, METH_NOARGS, "decide() -> (verdict, stop)"},
    {"snapshot", (PyCFunction)Session_snapshot, METH_NOARGS, "store a refcount snapshot"},
    {"growth", (PyCFunction)Session_growth, METH_VARARGS,
     "growth(limit=20) -> [(object, [refcnt per snapshot])] moving one way"},
    {"results", (PyCFunction)Session_results, METH_NOARGS, "results() -> dict"},
    {"set_calls", (PyCFunction)Session_set_calls, METH_O, "set the calls per iteration"},
    {"series", (PyCFunction)Session_series, METH_VARARGS,
     "series(metric, start=0) -> the metric's value at each sample from `start`"},
    {"last_delta", (PyCFunction)Session_last_delta, METH_O,
     "last_delta(metric) -> change between the last two samples"},
    {"close", (PyCFunction)Session_close, METH_NOARGS, "stop receiving free notifications"},
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
    .tp_doc = "Session(func, args, kwargs, clear_caches, calls=1, max_samples=256, "
              "min_measured=8, max_measured=60, alpha=0.001): one leak check",
    .tp_new = Session_new,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
    .tp_getset = Session_getset,
};
