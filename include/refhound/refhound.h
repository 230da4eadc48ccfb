/* refhound/refhound.h — probes for the C code of a CPython extension.
 *
 * Include it after <Python.h>.  Every probe compiles to nothing unless
 * REFHOUND_PROBES is defined (cc -DREFHOUND_PROBES ...), so the probes can
 * stay in the source of a release.
 *
 *   REFHOUND_MARK("label")        record a named point (totals, file:line)
 *   REFHOUND_COUNTREFS()          print total references and live objects
 *                                 at file:line, and the change since the
 *                                 previous COUNTREFS of this file
 *   REFHOUND_DESCRIBE(obj)        print type, refcount and address of obj,
 *                                 and what refhound knows of its block
 *   REFHOUND_DELTA_BEGIN(r);      start a region named r (declares r)
 *   REFHOUND_EXPECT_DELTA(r, refs, objects)
 *                                 0 when the region changed the totals by
 *                                 exactly refs references and objects live
 *                                 objects (REFHOUND_ANY: do not check), or
 *                                 when nothing can be measured (a one-line
 *                                 notice says why); -1 with AssertionError
 *                                 set when the change differs
 *   REFHOUND_AVAILABLE()          1 when the probes can measure right now
 *
 * The figures come from refhound's engine (the extension refhound._core),
 * through the capsule "refhound._core._C_API": a walk over every live
 * object that refhound tracks, so they work on a release interpreter.
 * They need the engine loaded and tracking on (`refhound check ...`, or
 * `refhound._core.start()`).  The header never imports refhound: when the
 * engine is not loaded, a probe prints one line saying so and does
 * nothing.  On a Py_REF_DEBUG (debug) interpreter the probes fall back to
 * sys.gettotalrefcount() for references when the engine is absent.
 *
 * Rules: call probes with the GIL held (a probe without it prints a notice
 * and does nothing); a pending exception is kept intact, except that a
 * failing REFHOUND_EXPECT_DELTA replaces it with its AssertionError.
 * Output goes to REFHOUND_PROBE_STREAM (default stderr), one line per
 * probe, prefixed "refhound: ".
 *
 * refhound.get_include() (or `python -m refhound --include`) gives the
 * directory to pass to the compiler with -I.
 */
#ifndef REFHOUND_REFHOUND_H
#define REFHOUND_REFHOUND_H

#ifndef Py_PYTHON_H
#  error "include <Python.h> before <refhound/refhound.h>"
#endif

#define REFHOUND_CAPI_VERSION 1
#define REFHOUND_CAPSULE_NAME "refhound._core._C_API"
/* "do not check this figure" in REFHOUND_EXPECT_DELTA */
#define REFHOUND_ANY (-0x7fffffffffffffffLL - 1)

/* Totals at one point; -1 for a figure that is not available. */
typedef struct refhound_totals {
    long long refs;         /* sum of the refcounts of live objects */
    long long objects;      /* live objects */
    long long debug_refs;   /* sys.gettotalrefcount(), -1 on release builds */
    unsigned long epoch;    /* refhound's epoch counter */
} refhound_totals_t;

/* The engine's side, reached through the capsule.  Functions return 0 on
 * success and -1 when they cannot measure, with *why set to a static
 * one-line reason.  All need the GIL. */
typedef struct refhound_capi {
    unsigned int version;        /* REFHOUND_CAPI_VERSION of the engine */
    unsigned int size;           /* sizeof(refhound_capi_t) in the engine */
    int (*totals)(refhound_totals_t *out, const char **why);
    int (*mark)(const char *label, const char *file, int line,
                refhound_totals_t *out, const char **why);
    /* One line about op into buf (never dereferences op unless its block
     * and type are known to be live); -1 when tracking is off. */
    int (*describe)(PyObject *op, char *buf, size_t bufsize, const char **why);
} refhound_capi_t;

#if defined(REFHOUND_PROBES) && !defined(REFHOUND_CORE_BUILD)

#include <stdio.h>
#include <string.h>

#ifndef REFHOUND_PROBE_STREAM
#  define REFHOUND_PROBE_STREAM stderr
#endif

typedef struct refhound_region {
    const char *name;
    const char *file;
    int line;
    int ok;                      /* how start was measured (0: not) */
    refhound_totals_t start;
} refhound_region_t;

/* Per translation unit: the engine's table once found, the last reason
 * printed (so a reason is printed once, not per call), the last COUNTREFS. */
static const refhound_capi_t *refhound__capi;
static const char *refhound__said;
static refhound_totals_t refhound__last_count = {-1, -1, -1, 0};
static const char *refhound__last_file;
static int refhound__last_line;
static int refhound__last_kind;     /* what refhound__measure returned */

static inline void refhound__notice(const char *file, int line, const char *why)
{
    if (refhound__said == why)
        return;
    refhound__said = why;
    fprintf(REFHOUND_PROBE_STREAM, "refhound: probes at %s:%d do nothing: %s\n", file, line, why);
    fflush(REFHOUND_PROBE_STREAM);
}

/* The engine's API, or NULL with *why.  Never imports refhound: only a
 * refhound._core that is already in sys.modules is used. */
static inline const refhound_capi_t *refhound__api(const char **why)
{
    if (refhound__capi != NULL)
        return refhound__capi;
    PyObject *modules = PyImport_GetModuleDict();
    if (modules == NULL || PyDict_GetItemString(modules, "refhound._core") == NULL) {
        *why = "refhound._core is not loaded (run under `refhound check`, "
               "or import refhound._core and call start())";
        return NULL;
    }
    const refhound_capi_t *api = (const refhound_capi_t *)PyCapsule_Import(REFHOUND_CAPSULE_NAME, 0);
    if (api == NULL) {
        PyErr_Clear();
        *why = "this refhound._core has no probe API (capsule _C_API missing)";
        return NULL;
    }
    if (api->version != REFHOUND_CAPI_VERSION || api->size < sizeof(refhound_capi_t)) {
        *why = "refhound._core's probe API is a different version from this header";
        return NULL;
    }
    refhound__capi = api;
    return api;
}

#if defined(Py_REF_DEBUG)
/* sys.gettotalrefcount(), or -1 */
static inline long long refhound__debug_total(void)
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
#else
static inline long long refhound__debug_total(void) { return -1; }
#endif

/* Fill *out: 1 from the engine, 2 references only (debug interpreter
 * without the engine), 0 nothing (notice printed).  Keeps any pending
 * exception. */
static inline int refhound__measure(refhound_totals_t *out, const char *label,
                                    const char *file, int line)
{
    const char *why = NULL;
    int got = 0;
    if (!PyGILState_Check()) {
        refhound__notice(file, line, "called without the GIL");
        return 0;
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    const refhound_capi_t *api = refhound__api(&why);
    if (api != NULL) {
        int rc = label != NULL ? api->mark(label, file, line, out, &why)
                               : api->totals(out, &why);
        if (rc == 0)
            got = 1;
    }
    if (!got) {
        long long debug = refhound__debug_total();
        if (debug >= 0) {
            out->refs = out->debug_refs = debug;
            out->objects = -1;
            out->epoch = 0;
            got = 2;
        }
    }
    PyErr_Restore(et, ev, tb);
    if (!got)
        refhound__notice(file, line, why);
    return got;
}

static inline void refhound__figure(char *buf, size_t n, const char *name, long long v)
{
    if (v < 0)
        snprintf(buf, n, " %s=?", name);
    else
        snprintf(buf, n, " %s=%lld", name, v);
}

static inline void refhound__mark(const char *label, const char *file, int line)
{
    refhound_totals_t t;
    if (!refhound__measure(&t, label, file, line))
        return;
    char refs[40], objs[40];
    refhound__figure(refs, sizeof(refs), "refs", t.refs);
    refhound__figure(objs, sizeof(objs), "objects", t.objects);
    fprintf(REFHOUND_PROBE_STREAM, "refhound: MARK %s at %s:%d%s%s epoch=%lu\n",
            label, file, line, refs, objs, t.epoch);
    fflush(REFHOUND_PROBE_STREAM);
}

static inline void refhound__countrefs(const char *file, int line)
{
    refhound_totals_t t;
    int kind = refhound__measure(&t, NULL, file, line);
    if (!kind)
        return;
    char refs[40], objs[40], dbg[48] = "", since[160] = "";
    refhound__figure(refs, sizeof(refs), "refs", t.refs);
    refhound__figure(objs, sizeof(objs), "objects", t.objects);
    if (t.debug_refs >= 0 && t.objects >= 0)
        snprintf(dbg, sizeof(dbg), " gettotalrefcount=%lld", t.debug_refs);
    if (refhound__last_file != NULL && refhound__last_kind == kind) {
        if (t.objects >= 0 && refhound__last_count.objects >= 0)
            snprintf(since, sizeof(since), " (%+lld refs, %+lld objects since %s:%d)",
                     t.refs - refhound__last_count.refs,
                     t.objects - refhound__last_count.objects,
                     refhound__last_file, refhound__last_line);
        else
            snprintf(since, sizeof(since), " (%+lld refs since %s:%d)",
                     t.refs - refhound__last_count.refs, refhound__last_file, refhound__last_line);
    }
    fprintf(REFHOUND_PROBE_STREAM, "refhound: COUNTREFS %s:%d%s%s%s%s\n",
            file, line, refs, objs, dbg, since);
    fflush(REFHOUND_PROBE_STREAM);
    refhound__last_count = t;
    refhound__last_file = file;
    refhound__last_line = line;
    refhound__last_kind = kind;
}

static inline void refhound__describe(PyObject *op, const char *expr, const char *file, int line)
{
    char buf[320];
    const char *why = NULL;
    if (!PyGILState_Check()) {
        refhound__notice(file, line, "called without the GIL");
        return;
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    const refhound_capi_t *api = refhound__api(&why);
    if (op == NULL) {
        snprintf(buf, sizeof(buf), "NULL");
    }
    else if (api == NULL || api->describe(op, buf, sizeof(buf), &why) < 0) {
        /* Without the engine the pointer is trusted as a live object. */
        (void)why;
        snprintf(buf, sizeof(buf), "%p: %.80s, refcnt %lld (no block details: refhound is "
                 "not tracking)", (void *)op, Py_TYPE(op)->tp_name, (long long)Py_REFCNT(op));
    }
    PyErr_Restore(et, ev, tb);
    fprintf(REFHOUND_PROBE_STREAM, "refhound: DESCRIBE %s at %s:%d: %s\n", expr, file, line, buf);
    fflush(REFHOUND_PROBE_STREAM);
}

static inline refhound_region_t refhound__region_begin(const char *name, const char *file, int line)
{
    refhound_region_t r;
    r.name = name;
    r.file = file;
    r.line = line;
    r.ok = refhound__measure(&r.start, NULL, file, line);
    return r;
}

static inline int refhound__expect_delta(const refhound_region_t *r, long long refs,
                                         long long objects, const char *file, int line)
{
    refhound_totals_t end;
    if (!r->ok)
        return 0;                 /* the notice was printed at the start */
    int got = refhound__measure(&end, NULL, file, line);
    if (!got)
        return 0;
    if (got != r->ok) {
        refhound__notice(file, line, "the engine appeared or went away inside a region: not checked");
        return 0;
    }
    long long d_refs = end.refs - r->start.refs;
    int objects_known = end.objects >= 0 && r->start.objects >= 0;
    long long d_objects = objects_known ? end.objects - r->start.objects : 0;
    int bad = (refs != REFHOUND_ANY && d_refs != refs) ||
              (objects != REFHOUND_ANY && objects_known && d_objects != objects);
    if (!bad)
        return 0;
    char want[80], seen[120];
    if (objects == REFHOUND_ANY)
        snprintf(want, sizeof(want), "%+lld refs", refs);
    else if (refs == REFHOUND_ANY)
        snprintf(want, sizeof(want), "%+lld objects", objects);
    else
        snprintf(want, sizeof(want), "%+lld refs, %+lld objects", refs, objects);
    if (objects_known)
        snprintf(seen, sizeof(seen), "%+lld refs, %+lld objects", d_refs, d_objects);
    else
        snprintf(seen, sizeof(seen), "%+lld refs (gettotalrefcount)", d_refs);
    char msg[400];
    snprintf(msg, sizeof(msg),
             "refhound: reference delta of region %s (%s:%d to %s:%d): expected %s, got %s",
             r->name, r->file, r->line, file, line, want, seen);
    fprintf(REFHOUND_PROBE_STREAM, "%s\n", msg);
    fflush(REFHOUND_PROBE_STREAM);
    PyErr_SetString(PyExc_AssertionError, msg);
    return -1;
}

static inline int refhound__available(void)
{
    const char *why = NULL;
    if (!PyGILState_Check())
        return 0;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    const refhound_capi_t *api = refhound__api(&why);
    refhound_totals_t t;
    int ok = api != NULL && api->totals(&t, &why) == 0;
    if (!ok)
        ok = refhound__debug_total() >= 0;
    PyErr_Restore(et, ev, tb);
    return ok;
}

#define REFHOUND_MARK(label) refhound__mark((label), __FILE__, __LINE__)
#define REFHOUND_COUNTREFS() refhound__countrefs(__FILE__, __LINE__)
#define REFHOUND_DESCRIBE(obj) refhound__describe((PyObject *)(obj), #obj, __FILE__, __LINE__)
#define REFHOUND_DELTA_BEGIN(region) \
    refhound_region_t region = refhound__region_begin(#region, __FILE__, __LINE__)
#define REFHOUND_EXPECT_DELTA(region, refs, objects) \
    refhound__expect_delta(&(region), (refs), (objects), __FILE__, __LINE__)
#define REFHOUND_AVAILABLE() refhound__available()

#else /* probes disabled: nothing is compiled in */

/* Arguments appear only inside sizeof: never evaluated, no code, and no
 * "unused" warnings for variables that exist only for the probes. */
#define REFHOUND_MARK(label) ((void)sizeof(label))
#define REFHOUND_COUNTREFS() ((void)0)
#define REFHOUND_DESCRIBE(obj) ((void)sizeof(obj))
#define REFHOUND_DELTA_BEGIN(region) ((void)0)
/* A statement expression: usable in `if (...)` and as a statement without
 * an "unused value" warning (gcc and clang). */
#define REFHOUND_EXPECT_DELTA(region, refs, objects) \
    (__extension__({ (void)sizeof(refs); (void)sizeof(objects); 0; }))
#define REFHOUND_AVAILABLE() (__extension__({ 0; }))

#endif /* REFHOUND_PROBES */

#endif /* REFHOUND_REFHOUND_H */
