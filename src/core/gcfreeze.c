/* gcfreeze.c — the old heap set aside from the cyclic collector for the span
 * of one measurement.
 *
 * A full collection of a test runner's heap costs milliseconds (~7 ms for a
 * pytest process with a test suite imported), and a check makes one or two
 * per sample.  After a full collection, gc.freeze() moves every tracked
 * object into the permanent generation: the collections that follow look
 * only at the objects born since, and the garbage of the calls (all of it
 * born since) is freed as before.  What a frozen collection cannot free is
 * an old object that becomes cyclic garbage while frozen; it stays alive
 * until the thaw.  That only ever keeps memory alive, so figures can only
 * look worse: a screen that clears while frozen would clear unfrozen.  A
 * measurement that found growth asks _rh_gc_thaw() how many such objects
 * there were; 0 means every frozen collection freed what a full one would
 * have (garbage never comes back to life), so the samples are the same.
 *
 * Invariants: refhound freezes only when nothing is frozen (a program that
 * froze its own objects keeps them frozen, and refhound then collects in
 * full as before), holds at most one freeze, and every freeze is thawed by
 * its owner (session close, screen end).  Not covered: a target that
 * calls gc.freeze() itself while a check measures has what it froze thawed
 * with refhound's (gc keeps one permanent generation, not one per owner).
 * REFHOUND_FREEZE=0 turns it off (full collections throughout, to
 * compare).  The gc module's functions are looked up once and held for
 * good; the engine's other collections (_rh_gc_collect: the screen's young
 * ones) call the same gc.collect.  GIL held; the calls are the engine's
 * own work.
 */
#include "gcfreeze.h"
#include "tracker.h"
#include <stdlib.h>
#include <string.h>

static PyObject *freeze_fn, *unfreeze_fn, *count_fn, *collect_fn;  /* held for good */
static int frozen;              /* refhound holds a freeze */

/* gc's function `name`, looked up by a name held for good (the type
 * method cache keeps the last name looked up in each slot: a temporary one
 * would be freed later, in the middle of a measurement). */
static PyObject *gc_function(PyObject *gc, const char *name)
{
    PyObject *key = PyUnicode_InternFromString(name);
    if (key == NULL)
        return NULL;
    PyObject *f = PyObject_GetAttr(gc, key);
    if (f == NULL)
        Py_DECREF(key);         /* kept otherwise, for good */
    return f;
}

static int lookup(void)
{
    if (freeze_fn != NULL)
        return 0;
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL)
        return -1;
    PyObject *f = gc_function(gc, "freeze");
    PyObject *u = f ? gc_function(gc, "unfreeze") : NULL;
    PyObject *c = u ? gc_function(gc, "get_freeze_count") : NULL;
    PyObject *k = c ? gc_function(gc, "collect") : NULL;
    Py_DECREF(gc);
    if (k == NULL) {
        Py_XDECREF(f);
        Py_XDECREF(u);
        Py_XDECREF(c);
        return -1;
    }
    freeze_fn = f;
    unfreeze_fn = u;
    count_fn = c;
    collect_fn = k;
    return 0;
}

int _rh_gc_prepare(void)
{
    int engine = _rh_engine_enter();
    int rc = lookup();
    _rh_engine_leave(engine);
    return rc;
}

/* f() as a C integer (-1 with an exception). */
static Py_ssize_t call_ssize(PyObject *f, PyObject *arg)
{
    PyObject *r = arg == NULL ? PyObject_CallNoArgs(f) : PyObject_CallOneArg(f, arg);
    if (r == NULL)
        return -1;
    Py_ssize_t n = r == Py_None ? 0 : PyLong_AsSsize_t(r);
    Py_DECREF(r);
    return n;
}

/* REFHOUND_FREEZE=0: full collections throughout (to compare). */
static int no_freeze(void)
{
    const char *v = getenv("REFHOUND_FREEZE");
    return v != NULL && strcmp(v, "0") == 0;
}

int _rh_gc_freeze(void)
{
    if (frozen || no_freeze())
        return 0;
    int engine = _rh_engine_enter();
    int rc = -1;
    if (lookup() == 0) {
        Py_ssize_t already = call_ssize(count_fn, NULL);
        if (already == 0) {
            if (call_ssize(freeze_fn, NULL) == 0 && !PyErr_Occurred()) {
                frozen = 1;
                rc = 1;
            }
        }
        else if (already > 0)
            rc = 0;
    }
    _rh_engine_leave(engine);
    return rc;
}

int _rh_gc_thaw(Py_ssize_t *found)
{
    if (found != NULL)
        *found = 0;
    if (!frozen)
        return 0;
    int engine = _rh_engine_enter();
    int rc = 0;
    PyObject *two = PyLong_FromLong(2);
    if (two == NULL || (found != NULL && call_ssize(collect_fn, two) < 0))
        rc = -1;
    /* The thaw whatever happened: a freeze left in place would hide the
     * program's old garbage from its collector for good. */
    PyObject *exc_type, *exc, *tb;
    PyErr_Fetch(&exc_type, &exc, &tb);
    frozen = 0;
    if (call_ssize(unfreeze_fn, NULL) < 0)
        rc = -1;
    if (exc_type != NULL)
        PyErr_Restore(exc_type, exc, tb);
    if (rc == 0 && found != NULL) {
        Py_ssize_t n = call_ssize(collect_fn, two);
        if (n < 0)
            rc = -1;
        else
            *found = n;
    }
    Py_XDECREF(two);
    _rh_engine_leave(engine);
    return rc;
}

int _rh_gc_frozen(void) { return frozen; }

int _rh_gc_collect(int generation)
{
    if (lookup() < 0)
        return -1;
    PyObject *g = PyLong_FromLong(generation);
    if (g == NULL)
        return -1;
    Py_ssize_t n = call_ssize(collect_fn, g);
    Py_DECREF(g);
    return n < 0 ? -1 : 0;
}
