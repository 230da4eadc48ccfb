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
 * Owns: the ring of the last RH_MARKS_MAX marks (GIL-guarded), read by
 * _core.probe_marks().
 */
#include "rh_internal.h"
#include "refhound/refhound.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define RH_MARKS_MAX 256

typedef struct {
    char label[64];
    char file[160];
    int line;
    refhound_totals_t totals;
} rh_mark_t;

static rh_mark_t marks[RH_MARKS_MAX];   /* ring; GIL-guarded */
static uint64_t marks_total;            /* marks ever recorded */
static int busy;                        /* a walk is running (GIL-guarded) */

static const size_t obj_offsets[] = {0, 2 * sizeof(void *), 4 * sizeof(void *)};

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
} walk_guard_t;

static int walk_begin(walk_guard_t *g, const char **why)
{
    busy = 1;
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
    busy = 0;
}

static int probe_totals(refhound_totals_t *out, const char **why)
{
    out->refs = out->objects = out->debug_refs = -1;
    out->epoch = _rh_epoch;
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

/* Are the pages holding [addr, addr + n) mapped?  mincore() fails with
 * ENOMEM on an unmapped page, so a dangling pointer is never read. */
static int mapped(uintptr_t addr, size_t n)
{
    static long page = 0;
    if (page == 0)
        page = sysconf(_SC_PAGESIZE);
    uintptr_t first = addr & ~((uintptr_t)page - 1);
    uintptr_t last = (addr + n - 1) & ~((uintptr_t)page - 1);
    unsigned char vec[2];
    return mincore((void *)first, (size_t)(last - first) + (size_t)page, vec) == 0;
}

/* The block holding op, when op is a live object refhound tracks. */
static const rh_block_t *find_object_block(PyObject *op, rh_typeinfo_t **ti_out)
{
    for (size_t k = 0; k < sizeof(obj_offsets) / sizeof(obj_offsets[0]); k++) {
        uintptr_t addr = (uintptr_t)op - obj_offsets[k];
        if (addr > (uintptr_t)op)
            break;
        const rh_block_t *b = _rh_tracker_find(addr);
        if (b == NULL)
            continue;
        PyObject *found;
        rh_typeinfo_t *ti = _rh_recognize(b, &found, 0);
        if (ti != NULL && found == op) {
            *ti_out = ti;
            return b;
        }
    }
    return NULL;
}

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
    rh_typeinfo_t *ti = NULL;
    const rh_block_t *b = find_object_block(op, &ti);
    if (b != NULL) {
        refcnt_text(op, rc, sizeof(rc));
        value_hint(op, hint, sizeof(hint));
        int gc = ti->is_gc && PyObject_IS_GC(op) && PyObject_GC_IsTracked(op);
        if (rh_block_domain(b) == RH_DOMAIN_ADOPTED)
            snprintf(buf, bufsize, "%p: %.80s, %s%s; existed before tracking started%s",
                     (void *)op, Py_TYPE(op)->tp_name, rc, hint, gc ? "; gc-tracked" : "");
        else
            snprintf(buf, bufsize, "%p: %.80s, %s%s; %s block of %zu bytes born in epoch %u "
                     "(now %u)%s",
                     (void *)op, Py_TYPE(op)->tp_name, rc, hint, domains[rh_block_domain(b)],
                     rh_block_size(b), rh_block_epoch(b), (unsigned)_rh_epoch,
                     gc ? "; gc-tracked" : "");
        return 0;
    }
    /* Not in the block table.  Read the type word only if it names a live
     * type; otherwise the memory is not (or no longer) an object. */
    uintptr_t word = (uintptr_t)op + offsetof(PyObject, ob_type);
    if (!mapped(word, sizeof(uintptr_t))) {
        snprintf(buf, bufsize, "%p: not a live object (its memory is not mapped)", (void *)op);
        return 0;
    }
    uintptr_t type = *(volatile uintptr_t *)word;
    if (_rh_typeset_lookup(type) == NULL) {
        snprintf(buf, bufsize, "%p: not a live object known to refhound: its type word %p "
                 "is not a live type (freed memory, or not a PyObject)",
                 (void *)op, (void *)type);
        return 0;
    }
    Py_ssize_t refcnt = Py_REFCNT(op);
    if (!RH_IS_IMMORTAL(op) && (refcnt <= 0 || refcnt >= RH_MAX_REFCNT)) {
        snprintf(buf, bufsize, "%p: %.80s header with refcount %zd: not a live object "
                 "(freed?)", (void *)op, ((PyTypeObject *)type)->tp_name, refcnt);
        return 0;
    }
    refcnt_text(op, rc, sizeof(rc));
    value_hint(op, hint, sizeof(hint));
    snprintf(buf, bufsize, "%p: %.80s, %s%s; not in refhound's block table (a static object, "
             "or memory reused from a free list filled before tracking started)",
             (void *)op, ((PyTypeObject *)type)->tp_name, rc, hint);
    return 0;
}

/* ---- the capsule and the Python functions ------------------------------ */

static const refhound_capi_t capi = {
    REFHOUND_CAPI_VERSION,
    sizeof(refhound_capi_t),
    probe_totals,
    probe_mark,
    probe_describe,
};

int _rh_probes_add_capsule(PyObject *module)
{
    PyObject *cap = PyCapsule_New((void *)&capi, REFHOUND_CAPSULE_NAME, NULL);
    if (cap == NULL)
        return -1;
    if (PyModule_AddObject(module, "_C_API", cap) < 0) {
        Py_DECREF(cap);
        return -1;
    }
    return 0;
}

static PyObject *totals_dict(const refhound_totals_t *t)
{
    return Py_BuildValue("{s:L,s:L,s:L,s:k}", "refs", t->refs, "objects", t->objects,
                         "debug_refs", t->debug_refs, "epoch", t->epoch);
}

static PyObject *py_probe_totals(PyObject *mod, PyObject *unused)
{
    refhound_totals_t t;
    const char *why = NULL;
    if (probe_totals(&t, &why) < 0) {
        PyErr_Format(PyExc_RuntimeError, "refhound: %s", why);
        return NULL;
    }
    return totals_dict(&t);
}

static PyObject *py_probe_marks(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"clear", NULL};
    int clear = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwlist, &clear))
        return NULL;
    uint64_t first = marks_total > RH_MARKS_MAX ? marks_total - RH_MARKS_MAX : 0;
    PyObject *out = PyList_New(0);
    for (uint64_t i = first; out != NULL && i < marks_total; i++) {
        const rh_mark_t *m = &marks[i % RH_MARKS_MAX];
        PyObject *item = Py_BuildValue("{s:s,s:s,s:i,s:L,s:L,s:L,s:k}", "label", m->label,
                                       "file", m->file, "line", m->line,
                                       "refs", m->totals.refs, "objects", m->totals.objects,
                                       "debug_refs", m->totals.debug_refs,
                                       "epoch", m->totals.epoch);
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    if (out != NULL && clear)
        marks_total = 0;
    return out;
}

static PyObject *py_probe_describe(PyObject *mod, PyObject *obj)
{
    char buf[320];
    const char *why = NULL;
    if (probe_describe(obj, buf, sizeof(buf), &why) < 0) {
        PyErr_Format(PyExc_RuntimeError, "refhound: %s", why);
        return NULL;
    }
    return PyUnicode_FromString(buf);
}

PyMethodDef _rh_probes_methods[] = {
    {"probe_totals", py_probe_totals, METH_NOARGS,
     "probe_totals() -> {refs, objects, debug_refs, epoch}: what REFHOUND_COUNTREFS() sees"},
    {"probe_marks", (PyCFunction)(void (*)(void))py_probe_marks, METH_VARARGS | METH_KEYWORDS,
     "probe_marks(clear=False) -> [{label, file, line, refs, objects, debug_refs, epoch}] "
     "recorded by REFHOUND_MARK()"},
    {"probe_describe", py_probe_describe, METH_O,
     "probe_describe(obj) -> str: what REFHOUND_DESCRIBE(obj) prints"},
    {NULL}
};
