/* probes.c — the engine's side of the public probes header
 * (src/refhound/include/refhound/refhound.h): totals, marks and object descriptions for
 * probes compiled into extension modules, published as the capsule
 * refhound._core._C_API.
 *
 * Totals come from a heap walk (typeset refresh + objects walk), so they
 * need tracking on; the cyclic GC is paused during the walk so that a
 * collection triggered by the type-set refresh cannot change the figures
 * being measured.  Every entry point needs the GIL, refuses to re-enter
 * itself, keeps a pending exception intact and never raises: it returns
 * -1 with a static reason instead.
 *
 * An object handed to DESCRIBE may be freed memory: it is looked up in
 * the tables first (which read only what they vouch for), and otherwise
 * its header is copied through safemem.c, never read directly.
 *
 * Owns: the ring of the last RH_MARKS_MAX marks (GIL-guarded), read by
 * _core.probe_marks().
 */
#include "probes.h"
#include "objects.h"
#include "safemem.h"
#include "tracker.h"
#include "typeset.h"

#include <stdio.h>
#include <string.h>

#define RH_MARKS_MAX 256

static rh_mark_t marks[RH_MARKS_MAX];   /* ring; GIL-guarded */
static uint64_t marks_total;            /* marks ever recorded */
static int busy;                        /* a walk is running (GIL-guarded) */

/* ---- the cyclic GC, paused around a walk ------------------------------ */

static int gc_pause(void)
{
#if PY_VERSION_HEX >= 0x030A0000
    return PyGC_Disable();
#else
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL)
        return -1;
    PyObject *was = PyObject_CallMethod(gc, "isenabled", NULL);
    PyObject *r = PyObject_CallMethod(gc, "disable", NULL);
    int enabled = was != NULL ? PyObject_IsTrue(was) : -1;
    Py_XDECREF(was);
    Py_XDECREF(r);
    Py_DECREF(gc);
    return enabled;
#endif
}

static void gc_resume(int was_enabled)
{
    if (was_enabled <= 0)
        return;
#if PY_VERSION_HEX >= 0x030A0000
    PyGC_Enable();
#else
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc != NULL) {
        PyObject *r = PyObject_CallMethod(gc, "enable", NULL);
        Py_XDECREF(r);
        Py_DECREF(gc);
    }
#endif
}

/* ---- totals ----------------------------------------------------------- */

static int usable(const char **why)
{
    if (!PyGILState_Check()) {
        *why = "called without the GIL";
        return 0;
    }
    if (busy) {
        *why = "called again while refhound was walking the heap";
        return 0;
    }
    if (!_rh_tracker_active()) {
        const char *failure = _rh_tracker_failure();
        *why = failure != NULL ? failure
                               : "refhound is loaded but tracking is off "
                                 "(call refhound._core.start(), or run under `refhound check`)";
        return 0;
    }
    return 1;
}

static long long debug_total(void)
{
    PyObject *f = PySys_GetObject("gettotalrefcount");   /* borrowed */
    if (f == NULL)
        return -1;
    PyObject *r = PyObject_CallObject(f, NULL);
    if (r == NULL) {
        PyErr_Clear();
        return -1;
    }
    long long v = PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return v;
}

/* Around every use of the heap: the re-entry flag, the caller's pending
 * exception put aside, the cyclic GC paused, the type set refreshed (types
 * created since the last refresh must be known to recognise objects). */
typedef struct {
    PyObject *et, *ev, *tb;
    int gc_was;
    int engine;
} walk_guard_t;

static int walk_begin(walk_guard_t *g, const char **why)
{
    busy = 1;
    g->engine = _rh_engine_enter();
    PyErr_Fetch(&g->et, &g->ev, &g->tb);
    g->gc_was = gc_pause();
    if (g->gc_was < 0)
        PyErr_Clear();
    if (_rh_typeset_refresh() < 0) {
        PyErr_Clear();
        *why = "refhound could not list the live types (out of memory?)";
        return -1;
    }
    return 0;
}

static void walk_end(walk_guard_t *g)
{
    gc_resume(g->gc_was);
    PyErr_Restore(g->et, g->ev, g->tb);
    _rh_engine_leave(g->engine);
    busy = 0;
}

static int probe_totals(refhound_totals_t *out, const char **why)
{
    out->refs = out->objects = out->debug_refs = -1;
    out->epoch = _rh_epoch_now();
    if (!usable(why))
        return -1;
    walk_guard_t g;
    int rc = walk_begin(&g, why);
    if (rc == 0) {
        rh_walk_totals_t w;
        _rh_objects_walk(&w, 0);
        if (!_rh_tracker_active()) {
            *why = "tracking stopped during the walk";
            rc = -1;
        }
        out->refs = w.refs;
        out->objects = w.objects;
        out->debug_refs = debug_total();
    }
    walk_end(&g);
    return rc;
}

static void copy_text(char *dst, size_t n, const char *src)
{
    if (src == NULL)
        src = "?";
    size_t len = strlen(src);
    if (len >= n) {             /* keep the end: the file name matters most */
        src += len - (n - 1);
        len = n - 1;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int probe_mark(const char *label, const char *file, int line,
                      refhound_totals_t *out, const char **why)
{
    if (probe_totals(out, why) < 0)
        return -1;
    rh_mark_t *m = &marks[marks_total % RH_MARKS_MAX];
    copy_text(m->label, sizeof(m->label), label);
    copy_text(m->file, sizeof(m->file), file);
    m->line = line;
    m->totals = *out;
    marks_total++;
    return 0;
}

/* ---- describe --------------------------------------------------------- */

/* A short value for a few exact builtin types; needs a live object. */
static void value_hint(PyObject *op, char *buf, size_t n)
{
    buf[0] = '\0';
    if (PyLong_CheckExact(op)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(op, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred()))
            snprintf(buf, n, ", value %lld", v);
        PyErr_Clear();
    }
#if PY_VERSION_HEX < 0x030C0000
    else if (PyUnicode_CheckExact(op) && !PyUnicode_IS_READY(op)) {
        /* a legacy string not yet made canonical: no length to read */
    }
#endif
    else if (PyUnicode_CheckExact(op) || PyBytes_CheckExact(op) || PyTuple_CheckExact(op) ||
             PyList_CheckExact(op) || PyDict_CheckExact(op) || Py_IS_TYPE(op, &PySet_Type)) {
        Py_ssize_t len = PyUnicode_CheckExact(op) ? PyUnicode_GET_LENGTH(op)
                         : PyDict_CheckExact(op) ? PyDict_GET_SIZE(op)
                         : Py_IS_TYPE(op, &PySet_Type) ? PySet_GET_SIZE(op)
                                                : Py_SIZE(op);
        snprintf(buf, n, ", len %zd", len);
    }
}

/* The length of a few exact builtin types, from a copy of the object's
 * first bytes (an object the tables do not vouch for). */
static void copied_hint(uintptr_t op, PyTypeObject *tp, char *buf, size_t n)
{
    union {
        PyVarObject var;
        PyASCIIObject str;
        PyDictObject dict;
        PySetObject set;
        char bytes[64];
    } copy;
    buf[0] = '\0';
    size_t want = 0;
    if (tp == &PyTuple_Type || tp == &PyList_Type || tp == &PyBytes_Type)
        want = sizeof(PyVarObject);
    else if (tp == &PyUnicode_Type)
        want = sizeof(PyASCIIObject);
    else if (tp == &PyDict_Type)
        want = offsetof(PyDictObject, ma_used) + sizeof(Py_ssize_t);
    else if (tp == &PySet_Type)
        want = offsetof(PySetObject, used) + sizeof(Py_ssize_t);
    if (want == 0 || want > sizeof(copy) || _rh_safe_read(op, &copy, want) < 0)
        return;
    Py_ssize_t len = tp == &PyUnicode_Type ? copy.str.length
                     : tp == &PyDict_Type ? copy.dict.ma_used
                     : tp == &PySet_Type ? copy.set.used
                                         : copy.var.ob_size;
    snprintf(buf, n, ", len %zd", len);
}

static void refcnt_text(PyObject *op, char *buf, size_t n)
{
    if (RH_IS_IMMORTAL(op))
        snprintf(buf, n, "immortal");
    else
        snprintf(buf, n, "refcnt %zd", Py_REFCNT(op));
}

static int describe_unlocked(PyObject *op, char *buf, size_t bufsize);

static int probe_describe(PyObject *op, char *buf, size_t bufsize, const char **why)
{
    if (!usable(why))
        return -1;
    walk_guard_t g;
    int rc = walk_begin(&g, why);
    if (rc == 0)
        rc = describe_unlocked(op, buf, bufsize);
    walk_end(&g);
    return rc;
}

/* Under walk_begin(): the type set is fresh. */
static int describe_unlocked(PyObject *op, char *buf, size_t bufsize)
{
    static const char *const domains[] = {"raw", "mem", "obj", "adopted"};
    char rc[32], hint[64];
    rh_block_t b;
    if (_rh_object_at((uintptr_t)op, &b) == op) {
        /* A live object the tables vouch for: read it. */
        refcnt_text(op, rc, sizeof(rc));
        value_hint(op, hint, sizeof(hint));
        int gc = PyObject_IS_GC(op) && PyObject_GC_IsTracked(op);
        if (rh_block_domain(&b) == RH_DOMAIN_ADOPTED)
            snprintf(buf, bufsize, "%p: %.80s, %s%s; existed before tracking started%s",
                     (void *)op, Py_TYPE(op)->tp_name, rc, hint, gc ? "; gc-tracked" : "");
        else
            snprintf(buf, bufsize, "%p: %.80s, %s%s; %s block of %zu bytes born in epoch %u "
                     "(now %u)%s",
                     (void *)op, Py_TYPE(op)->tp_name, rc, hint, domains[rh_block_domain(&b)],
                     rh_block_size(&b), rh_block_epoch(&b), (unsigned)_rh_epoch_now(),
                     gc ? "; gc-tracked" : "");
        return 0;
    }
    /* Not in the tables: copy its header, never read it in place. */
    PyObject h;
    const char *unsafe = NULL;
    if (!_rh_safe_available(&unsafe)) {
        snprintf(buf, bufsize, "%p: not in refhound's block table, and refhound cannot read "
                 "memory it does not own here (%s)", (void *)op, unsafe);
        return 0;
    }
    if (_rh_safe_read((uintptr_t)op, &h, sizeof(h)) < 0) {
        snprintf(buf, bufsize, "%p: not a live object (its memory cannot be read)", (void *)op);
        return 0;
    }
    uintptr_t type = (uintptr_t)Py_TYPE(&h);
    if (_rh_typeset_lookup(type) == NULL) {
        snprintf(buf, bufsize, "%p: not a live object known to refhound: its type word %p "
                 "is not a live type (freed memory, or not a PyObject)",
                 (void *)op, (void *)type);
        return 0;
    }
    Py_ssize_t refcnt = Py_REFCNT(&h);
    if (!RH_IS_IMMORTAL(&h) && (refcnt <= 0 || refcnt >= RH_MAX_REFCNT)) {
        snprintf(buf, bufsize, "%p: %.80s header with refcount %zd: not a live object "
                 "(freed?)", (void *)op, ((PyTypeObject *)type)->tp_name, refcnt);
        return 0;
    }
    refcnt_text(&h, rc, sizeof(rc));
    copied_hint((uintptr_t)op, (PyTypeObject *)type, hint, sizeof(hint));
    snprintf(buf, bufsize, "%p: %.80s, %s%s; not in refhound's block table (a static object, "
             "or memory reused from a free list filled before tracking started)",
             (void *)op, ((PyTypeObject *)type)->tp_name, rc, hint);
    return 0;
}

/* ---- the capsule and the marks --------------------------------------------- */

static const refhound_capi_t capi = {
    REFHOUND_CAPI_VERSION,
    sizeof(refhound_capi_t),
    probe_totals,
    probe_mark,
    probe_describe,
};

const refhound_capi_t *_rh_probes_capi(void) { return &capi; }

int _rh_probe_totals(refhound_totals_t *out, const char **why)
{
    return probe_totals(out, why);
}

int _rh_probe_describe(PyObject *op, char *buf, size_t bufsize, const char **why)
{
    return probe_describe(op, buf, bufsize, why);
}

size_t _rh_probe_marks_count(void)
{
    return marks_total > RH_MARKS_MAX ? RH_MARKS_MAX : (size_t)marks_total;
}

const rh_mark_t *_rh_probe_mark(size_t i)
{
    uint64_t first = marks_total > RH_MARKS_MAX ? marks_total - RH_MARKS_MAX : 0;
    return &marks[(first + i) % RH_MARKS_MAX];
}

void _rh_probe_marks_clear(void) { marks_total = 0; }
