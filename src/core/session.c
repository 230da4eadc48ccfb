/* session.c — one leak check's measurements: iterations, samples, per-type
 * counts, refcount snapshots.
 *
 * An iteration is begin() (the epoch advances: every block born from then
 * on belongs to the iteration), the calls of the target (in C, from
 * _rh_session_call, or from Python for loops driven from outside), then
 * end(): the interpreter caches cleared (a Python callable given by the
 * caller), a full collection (a second one when the first found garbage)
 * and a sample: references, objects,
 * gc-tracked objects, blocks and bytes per domain, tracked native blocks
 * and bytes, the C library's heap, RSS/USS,
 * descriptors, threads, pymalloc's arenas/pools/blocks, and
 * sys.gettotalrefcount() on debug builds.  end() is the engine's own work
 * (_rh_engine_enter): what it allocates belongs to no iteration and gets
 * no stack.  All samples live in C memory (libc), so the bookkeeping of
 * the check itself never shows up in what it measures.
 *
 * Per type (COUNT_ALLOCS figures): live count at every sample, objects
 * freed (counted by the free observer while the session is attached; born
 * during the session or before), allocations = live-born-during +
 * freed-born-during.
 *
 * Fork: a target that forks and whose child returns from the call would
 * run the rest of the check in the child.  The call loop compares the
 * tracker's fork count after every call and end() compares getpid(); a
 * changed one means this is the target's child, which leaves at once
 * with _exit(0): no atexit handler, no stdio buffer of the parent's
 * flushed twice.
 *
 * State: `attached` is the one session that counts frees; it and every
 * session's fields are guarded by the GIL (the free observer runs in
 * mem/obj hooks, which hold it).
 */
#include "session.h"
#include "gcfreeze.h"
#include "native.h"
#include "pymalloc_stats.h"
#include "procstat.h"
#include "tracker.h"
#include "typeset.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *const _rh_metric_names[RH_NMETRICS] = {
    "refs", "objects", "gc_objects", "blocks", "bytes",
    "raw_blocks", "mem_blocks", "obj_blocks", "raw_bytes", "mem_bytes", "obj_bytes",
    "native_bytes", "rss_bytes", "uss_bytes", "fds", "threads", "debug_refs",
    "arenas", "pools", "pymalloc_blocks", "native_blocks", "heap_bytes",
};

int _rh_metric_index(const char *name)
{
    for (int k = 0; k < RH_NMETRICS; k++)
        if (strcmp(name, _rh_metric_names[k]) == 0)
            return k;
    return -1;
}

int _rh_metric_optional(int k)
{
    switch (k) {
    case RH_M_NATIVE: case RH_M_RSS: case RH_M_USS: case RH_M_FDS: case RH_M_THREADS:
    case RH_M_DEBUG_REFS: case RH_M_ARENAS: case RH_M_POOLS: case RH_M_PYMALLOC_BLOCKS:
    case RH_M_NATIVE_BLOCKS: case RH_M_HEAP:
        return 1;
    }
    return 0;
}

static rh_session_t *attached = NULL;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- per-type counters ----------------------------------------------------- */

static inline size_t stat_slot(uintptr_t type, size_t mask)
{
    return ((uint64_t)type * 0x9E3779B97F4A7C15ull >> 20) & mask;
}

static rh_typestat_t *stat_for(rh_session_t *s, uintptr_t type)
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
            size_t j = stat_slot(st->type, cap - 1);
            while (tab[j] != NULL)
                j = (j + 1) & (cap - 1);
            tab[j] = st;
        }
        free(s->stats);
        s->stats = tab;
        s->stats_mask = cap - 1;
    }
    size_t i = stat_slot(type, s->stats_mask);
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

/* The free observer (mem/obj hooks, GIL held). */
static void observe_free(const rh_block_t *b)
{
    rh_session_t *s = attached;
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

static const rh_observer_t free_observer = {
    RH_DOMAIN_BIT(RH_DOMAIN_MEM) | RH_DOMAIN_BIT(RH_DOMAIN_OBJ) | RH_DOMAIN_BIT(RH_DOMAIN_ADOPTED),
    NULL, observe_free, NULL,
};

/* ---- life cycle -------------------------------------------------------------- */

rh_session_t *_rh_session_new(int max_samples, const char **why)
{
    if (attached != NULL) {
        *why = "a check is already running";
        return NULL;
    }
    rh_session_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        *why = "out of memory";
        return NULL;
    }
    s->max_samples = max_samples;
    s->samples = calloc(max_samples, sizeof(rh_sample_t));
    s->stats = calloc(1024, sizeof(rh_typestat_t *));
    if (s->samples == NULL || s->stats == NULL || _rh_tracker_observe(&free_observer) < 0) {
        free(s->samples);
        free(s->stats);
        free(s);
        *why = "out of memory";
        return NULL;
    }
    s->stats_mask = 1023;
    s->totalrefcount = PySys_GetObject("gettotalrefcount");     /* borrowed */
    Py_XINCREF(s->totalrefcount);
    s->first_epoch = _rh_epoch_now() + 1;
    s->t0 = now();
    s->pid = (int64_t)getpid();
    s->attached = 1;
    attached = s;
    return s;
}

void _rh_session_freeze_old(rh_session_t *s)
{
    s->freeze_old = 1;
}

int _rh_session_thaw(rh_session_t *s, Py_ssize_t *found)
{
    s->freeze_old = 0;
    if (found != NULL)
        *found = 0;
    if (!s->froze)
        return 0;
    s->froze = 0;
    return _rh_gc_thaw(found);
}

void _rh_session_detach(rh_session_t *s)
{
    if (s->froze) {
        /* Closed (or freed) while frozen: thaw, keeping any exception. */
        PyObject *exc_type, *exc, *tb;
        PyErr_Fetch(&exc_type, &exc, &tb);
        if (_rh_session_thaw(s, NULL) < 0)
            PyErr_Clear();
        PyErr_Restore(exc_type, exc, tb);
    }
    if (!s->attached)
        return;
    s->attached = 0;
    if (attached == s) {
        attached = NULL;
        _rh_tracker_unobserve(&free_observer);
        /* Our counters leave the type set before anything frees them. */
        _rh_typeset_detach_stats();
    }
}

void _rh_session_free(rh_session_t *s)
{
    if (s == NULL)
        return;
    _rh_session_detach(s);
    for (size_t i = 0; s->stats && i <= s->stats_mask; i++) {
        if (s->stats[i]) {
            free(s->stats[i]->live);
            free(s->stats[i]);
        }
    }
    free(s->stats);
    for (int i = 0; i < s->nsnaps; i++)
        _rh_snapshot_release(&s->snaps[i]);
    free(s->snaps);
    free(s->samples);
    Py_XDECREF(s->totalrefcount);
    free(s);
}

int _rh_session_base(const rh_session_t *s)
{
    return s->nwarmup > 0 ? s->nwarmup - 1 : 0;
}

/* ---- sampling -------------------------------------------------------------------- */

/* Bytes of the C heap refhound itself holds now: heap_bytes is the
 * process's whole glibc heap, and the engine's own tables grow when new
 * types appear; that is not the target's growth. */
static int64_t own_heap_bytes(rh_session_t *s)
{
    size_t n = _rh_typeset_heap_bytes();
    n += malloc_usable_size(s->samples) + malloc_usable_size(s->stats) +
         malloc_usable_size(s->snaps) + malloc_usable_size(s);
    for (size_t i = 0; s->stats && i <= s->stats_mask; i++) {
        if (s->stats[i] != NULL)
            n += malloc_usable_size(s->stats[i]) + malloc_usable_size(s->stats[i]->live);
    }
    for (int i = 0; i < s->nsnaps; i++)
        n += s->snaps[i].entries ? malloc_usable_size(s->snaps[i].entries) : 0;
    return (int64_t)n;
}

static int read_pymalloc(void *out) { return _rh_pymalloc_read((rh_pymalloc_t *)out); }

static int take_sample(rh_session_t *s)
{
    if (s->nsamples >= s->max_samples) {
        PyErr_SetString(PyExc_RuntimeError, "refhound: session is full");
        return -1;
    }
    if (_rh_typeset_refresh() < 0)
        return -1;
    size_t ncap;
    rh_typeinfo_t *types = _rh_typeset_slots(&ncap);
    for (size_t i = 0; s->attached && i < ncap; i++) {
        if (types[i].type != 0 && types[i].stat == NULL)
            types[i].stat = stat_for(s, types[i].type);
    }
    rh_sample_t *x = &s->samples[s->nsamples];
    memset(x, 0, sizeof(*x));
    x->m[RH_M_DEBUG_REFS] = -1;
    if (s->totalrefcount != NULL) {
        PyObject *r = PyObject_CallNoArgs(s->totalrefcount);
        if (r == NULL)
            return -1;
        x->m[RH_M_DEBUG_REFS] = PyLong_AsLongLong(r);
        Py_DECREF(r);
    }
    rh_walk_totals_t w;
    _rh_objects_walk_survivors(&w, s->first_epoch, NULL, 2);    /* two threads, as the screen's */
    int64_t blocks[RH_NDOMAINS], bytes[RH_NDOMAINS];
    _rh_tracker_totals(blocks, bytes);
    rh_procstat_t ps;
    _rh_procstat_read(&ps, 1);

    x->t = now() - s->t0;
    x->epoch = _rh_epoch_now();
    x->m[RH_M_REFS] = w.refs;
    x->m[RH_M_OBJECTS] = w.objects;
    x->m[RH_M_GC] = w.gc_tracked;
    x->m[RH_M_RAW_BLOCKS] = blocks[RH_DOMAIN_RAW];
    x->m[RH_M_MEM_BLOCKS] = blocks[RH_DOMAIN_MEM];
    x->m[RH_M_OBJ_BLOCKS] = blocks[RH_DOMAIN_OBJ];
    x->m[RH_M_RAW_BYTES] = bytes[RH_DOMAIN_RAW];
    x->m[RH_M_MEM_BYTES] = bytes[RH_DOMAIN_MEM];
    x->m[RH_M_OBJ_BYTES] = bytes[RH_DOMAIN_OBJ];
    x->m[RH_M_BLOCKS] = blocks[RH_DOMAIN_RAW] + blocks[RH_DOMAIN_MEM] + blocks[RH_DOMAIN_OBJ];
    x->m[RH_M_BYTES] = bytes[RH_DOMAIN_RAW] + bytes[RH_DOMAIN_MEM] + bytes[RH_DOMAIN_OBJ];
    x->m[RH_M_HEAP] = ps.native_bytes < 0 ? -1 : ps.native_bytes - own_heap_bytes(s);
    x->m[RH_M_NATIVE] = x->m[RH_M_NATIVE_BLOCKS] = -1;
    if (_rh_native_active()) {
        x->m[RH_M_NATIVE] = bytes[RH_DOMAIN_NATIVE];
        x->m[RH_M_NATIVE_BLOCKS] = blocks[RH_DOMAIN_NATIVE];
    }
    x->m[RH_M_RSS] = ps.rss_bytes;
    x->m[RH_M_USS] = ps.uss_bytes;
    x->m[RH_M_FDS] = ps.fds;
    x->m[RH_M_THREADS] = ps.threads;
    /* pymalloc's own figures, as PYTHONMALLOCSTATS prints them (-1 when
     * pymalloc is not the allocator). */
    rh_pymalloc_t pm;
    x->m[RH_M_ARENAS] = x->m[RH_M_POOLS] = x->m[RH_M_PYMALLOC_BLOCKS] = -1;
    if (_rh_tracker_call_unhooked(read_pymalloc, &pm) == 0 && pm.enabled) {
        x->m[RH_M_ARENAS] = pm.arenas_current;
        x->m[RH_M_POOLS] = pm.pools_in_use;
        x->m[RH_M_PYMALLOC_BLOCKS] = pm.blocks_in_use;
    }

    for (size_t i = 0; s->attached && i < ncap; i++) {
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

/* ---- iterations ------------------------------------------------------------------- */

void _rh_session_begin(rh_session_t *s)
{
    (void)s;
    _rh_epoch_advance();
}

int _rh_session_call(rh_session_t *s, PyObject *func, PyObject *args, PyObject *kwargs,
                     Py_ssize_t calls, double *seconds)
{
    (void)s;
    uint64_t forks = _rh_tracker_forks();
    double t = now();
    for (Py_ssize_t i = 0; i < calls; i++) {
        PyObject *r = PyObject_Call(func, args, kwargs);
        if (_rh_tracker_forks() != forks)
            _exit(0);           /* the target's child: see the top of this file */
        if (r == NULL) {
            *seconds = now() - t;
            return -1;
        }
        Py_DECREF(r);
    }
    *seconds = now() - t;
    return 0;
}

int _rh_session_end(rh_session_t *s, PyObject *clear_caches, int warmup, int snapshot)
{
    if ((int64_t)getpid() != s->pid)
        _exit(0);               /* the target's child (a fork without atfork handlers) */
    if (!warmup && s->nwarmup == 0 && s->nsamples > 0)
        s->nwarmup = s->nsamples;
    int engine = _rh_engine_enter();
    int rc = -1;
    if (s->freeze_old && !s->froze && _rh_gc_prepare() < 0)
        goto done;
    if (clear_caches != NULL) {
        PyObject *r = PyObject_CallNoArgs(clear_caches);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    /* A second collection frees what the first one's finalizers and
     * weakref callbacks left as new cyclic garbage; when the first found
     * nothing unreachable, nothing ran and the second would find nothing
     * either (a full collection of a pytest process's heap: ~17 ms). */
    if (PyGC_Collect() > 0)
        PyGC_Collect();
    if (s->freeze_old && !s->froze) {
        /* After a full collection: from now on the collections above look
         * at what was born since (gcfreeze.c).  Before the sample, which
         * then counts what the first freeze makes.  A freeze refused or
         * failed keeps full collections. */
        int f = _rh_gc_freeze();
        if (f < 0)
            PyErr_Clear();
        s->froze = f > 0;
        s->freeze_old = 0;
    }
    if (take_sample(s) < 0)
        goto done;
    if (snapshot && _rh_session_snapshot(s) < 0)
        goto done;
    if (warmup)
        s->nwarmup = s->nsamples;
    rc = 0;
done:
    _rh_engine_leave(engine);
    return rc;
}

int _rh_session_snapshot(rh_session_t *s)
{
    int engine = _rh_engine_enter();
    int rc = -1;
    rh_snapshot_t *more = realloc(s->snaps, sizeof(rh_snapshot_t) * (s->nsnaps + 1));
    if (more != NULL) {
        s->snaps = more;
        if (_rh_snapshot_take(&s->snaps[s->nsnaps]) == 0) {
            s->nsnaps++;
            rc = 0;
        }
    }
    _rh_engine_leave(engine);
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

/* ---- refcount growth ---------------------------------------------------------------- */

static Py_ssize_t abs_change(const rh_growth_t *g)
{
    return g->change < 0 ? -g->change : g->change;
}

/* Largest change first; equal changes by address (the snapshot's order). */
static int cmp_growth(const void *a, const void *b)
{
    Py_ssize_t x = abs_change(a), y = abs_change(b);
    if (x != y)
        return x < y ? 1 : -1;
    uintptr_t p = (uintptr_t)((const rh_growth_t *)a)->obj, q = (uintptr_t)((const rh_growth_t *)b)->obj;
    return p < q ? -1 : p > q;
}

int _rh_session_growth(rh_session_t *s, int limit, rh_growth_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int k = s->nsnaps;
    if (k < 2 || limit <= 0)
        return 0;
    const rh_snapshot_t *last = &s->snaps[k - 1];
    Py_ssize_t *rc = malloc(sizeof(Py_ssize_t) * k);
    size_t nhits = 0, caphits = 64;
    rh_growth_t *hits = malloc(sizeof(rh_growth_t) * caphits);
    if (rc == NULL || hits == NULL)
        goto nomem;
    for (size_t i = 0; i < last->count; i++) {
        uintptr_t obj = last->entries[i].obj;
        int up = 0, down = 0, present = 1;
        rc[k - 1] = last->entries[i].refcnt;
        for (int j = k - 2; j >= 0; j--) {
            rc[j] = _rh_snapshot_refcnt(&s->snaps[j], obj);
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
            rh_growth_t *more = realloc(hits, sizeof(rh_growth_t) * caphits * 2);
            if (more == NULL)
                goto nomem;
            hits = more;
            caphits *= 2;
        }
        hits[nhits].obj = (PyObject *)obj;
        hits[nhits].change = rc[k - 1] - rc[0];
        nhits++;
    }
    free(rc);
    qsort(hits, nhits, sizeof(rh_growth_t), cmp_growth);
    *out = hits;
    *n = nhits < (size_t)limit ? nhits : (size_t)limit;
    return 0;
nomem:
    free(rc);
    free(hits);
    return -1;
}

/* ---- the screen ------------------------------------------------------------------------
 *
 * A look at a callable cheap enough for every test of a suite: no session,
 * no full collection, two walks.  The calls run with the automatic
 * collector off (the caller's job), so everything they made is young: one
 * young collection frees all their cyclic garbage and leaves the free
 * lists alone (a full collection would empty them, and refill them with
 * blocks of the next epoch); one follows every call.  Walk A follows the warm calls, which fill
 * what fills on first use; walk B follows the screened epochs.  A leak
 * leaves survivors in every screened epoch, or moves the reference total
 * from A to B; a cache leaves them in the warm epoch only.  The
 * interpreter's caches are cleared before each walk, as end() does before
 * a sample, so the screen sees what the full check would.  What this
 * means is decided in Python (verdict.py, the screen rules). */

/* The collection and walk at point `k` (0: A, 1: B), as the engine's own
 * work; B also counts the survivors of each epoch (out->blocks, bytes,
 * dead), zeroed by the caller. */
static int screen_walk(const rh_screen_plan_t *plan, rh_screen_t *out, int k, int freeze)
{
    double t = now();
    int engine = _rh_engine_enter();
    /* gc's functions looked up before the cache clearing: what a first
     * look-up leaves in the type cache is cleared before walk A. */
    int rc = k == 0 ? _rh_gc_prepare() : 0;
    if (plan->clear_caches != NULL) {
        PyObject *r = PyObject_CallNoArgs(plan->clear_caches);
        if (r == NULL)
            rc = -1;
        Py_XDECREF(r);
    }
    if (rc == 0)
        rc = _rh_gc_collect(plan->generation);
    /* Frozen or not, the screen judges the same (gcfreeze.c); frozen
     * before the walk, so that what the first freeze makes is walked. */
    if (rc == 0 && k == 0 && freeze && plan->generation == 2 && _rh_gc_freeze() < 0)
        PyErr_Clear();
    if (rc == 0 && k == 0)
        rc = _rh_typeset_refresh();
    if (rc == 0) {
        rh_walk_totals_t w;
        rh_epoch_survivors_t sv = {out->first_epoch, (uint32_t)plan->nepochs + 2, out->blocks,
                                   out->bytes, out->heap, 0, NULL};
        /* B also counts the survivors of the screened epochs, in the same
         * pass (the GIL table), then the raw table's. */
        _rh_objects_walk_survivors(&w, out->first_epoch, k == 1 ? &sv : NULL, 2);
        if (k == 1) {
            _rh_tracker_walk(RH_TABLE_RAW, _rh_epoch_survivor, &sv);
            out->dead = sv.dead;
        }
        rh_procstat_t ps;
        _rh_procstat_read(&ps, 0);
        out->refs[k] = w.refs;
        out->objects[k] = w.objects;
        out->native[k] = ps.native_bytes;
        out->fds[k] = ps.fds;
        out->threads[k] = ps.threads;
    }
    _rh_engine_leave(engine);
    out->walk_seconds += now() - t;
    return rc;
}

/* `calls` calls of func, each followed by a young collection (the
 * engine's work): the garbage of a call is freed before the next one, as
 * the automatic collector would over a long run, so free lists reach the
 * same steady state in every epoch instead of taking every epoch's
 * garbage at once at the end. */
static int screen_calls(const rh_screen_plan_t *plan, PyObject *func, PyObject *args,
                        PyObject *kwargs, Py_ssize_t calls, rh_screen_t *out)
{
    uint64_t forks = _rh_tracker_forks();
    for (Py_ssize_t i = 0; i < calls; i++) {
        double t = now();
        PyObject *r = PyObject_Call(func, args, kwargs);
        if (_rh_tracker_forks() != forks)
            _exit(0);           /* the target's child: see the top of this file */
        out->seconds += now() - t;
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        int engine = _rh_engine_enter();
        int rc = _rh_gc_collect(0);
        _rh_engine_leave(engine);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Survivors per epoch of [first, first + n), as _rh_tracker_survivors
 * counts them, less the blocks that hold a dead object of a known type
 * (reference count 0): those sit in a free list (tuples, lists, dicts
 * keep their type there), ready for the next allocation, and say nothing
 * of a leak.  A block whose content is not an object counts
 * (objects.c, _rh_epoch_survivor). */
static int figures_moved(const rh_screen_plan_t *plan, const rh_screen_t *out);

/* Did walk B find anything the tail could explain: a block of a screened
 * epoch alive, references, objects, descriptors or threads moved from
 * walk A, native bytes grown past the plan's slack? */
static int screen_moved(const rh_screen_plan_t *plan, const rh_screen_t *out)
{
    for (int e = 1; e <= plan->nepochs; e++)
        if (out->blocks[e] != 0)
            return 1;
    return figures_moved(plan, out);
}

/* Did walk B find blocks of the screened epochs alive that are all the
 * tables of dicts or sets older than those epochs (a resize by the calls:
 * the next one replaces them), and nothing else moved (malloc's heap
 * within the slack, as verdict.py's rule for blocks alone asks)?  Then the
 * tail has nothing to show: that rule decides, after a full collection,
 * without another call. */
static int only_older_tables(const rh_screen_plan_t *plan, const rh_screen_t *out)
{
    if (figures_moved(plan, out))
        return 0;
    int64_t tables[RH_SCREEN_MAX_EPOCHS];
    if (_rh_container_table_survivors(out->first_epoch + 1, (uint32_t)plan->nepochs,
                                      tables) < 0)
        return 0;
    for (int e = 1; e <= plan->nepochs; e++)
        if (out->blocks[e] != tables[e - 1])
            return 0;
    return 1;
}

/* References, objects, descriptors or threads moved from walk A, or
 * native bytes grown past the plan's slack? */
static int figures_moved(const rh_screen_plan_t *plan, const rh_screen_t *out)
{
    if (out->refs[0] != out->refs[1] || out->objects[0] != out->objects[1])
        return 1;
    const int64_t *pairs[] = {out->fds, out->threads};
    for (int k = 0; k < 2; k++)
        if (pairs[k][0] >= 0 && pairs[k][1] >= 0 && pairs[k][0] != pairs[k][1])
            return 1;
    return out->native[0] >= 0 && out->native[1] >= 0 &&
           out->native[1] - out->native[0] > plan->native_slack;
}

int64_t _rh_screen_survivors(uint32_t first, uint32_t n, int64_t *blocks, int64_t *bytes,
                             int64_t *native)
{
    memset(blocks, 0, sizeof(int64_t) * n);
    memset(bytes, 0, sizeof(int64_t) * n);
    memset(native, 0, sizeof(int64_t) * n);
    rh_epoch_survivors_t sv = {first, n, blocks, bytes, NULL, 0, native};
    _rh_tracker_walk(RH_TABLE_GIL | RH_TABLE_RAW, _rh_epoch_survivor, &sv);
    return sv.dead;
}

int _rh_screen_totals(int generation, int64_t *refs, int64_t *objects)
{
    int engine = _rh_engine_enter();
    int rc = generation < 0 ? 0 : _rh_gc_collect(generation);
    if (rc == 0) {
        rh_walk_totals_t w;
        _rh_objects_walk(&w, _rh_epoch_now());
        *refs = w.refs;
        *objects = w.objects;
    }
    _rh_engine_leave(engine);
    return rc;
}

/* Walk B.  Made frozen (the screen froze at walk A), a walk that found
 * something is made again after the thaw, with a full collection: an old
 * object the calls turned into cyclic garbage is freed by it, as without
 * the freeze.  So walk B's figures are those of a full collection whenever
 * they show anything, and the screen judges as it did unfrozen (what shows
 * nothing frozen shows nothing unfrozen: a freeze only keeps things
 * alive).  again = 0: the caller makes the tail call and walks again, so a
 * frozen walk that found something leaves the freeze in place (the tail
 * call runs frozen like the others: a body that collects in full itself
 * pays for the young heap only) and the later walk thaws if it must. */
static int walk_b(const rh_screen_plan_t *plan, rh_screen_t *out, int own_freeze, int again)
{
    for (int pass = 0; pass < 2; pass++) {
        out->dead = 0;
        memset(out->blocks, 0, sizeof(out->blocks));
        memset(out->bytes, 0, sizeof(out->bytes));
        memset(out->heap, 0, sizeof(out->heap));
        if (screen_walk(plan, out, 1, 0) < 0)
            return -1;
        if (!(own_freeze && _rh_gc_frozen()) || !screen_moved(plan, out) || !again)
            return 0;
        if (_rh_gc_thaw(NULL) < 0)
            return -1;
    }
    return 0;
}

static int screen_run(const rh_screen_plan_t *plan, PyObject *func, PyObject *args,
                      PyObject *kwargs, rh_screen_t *out, int own_freeze);

/* The screen, with the heap alive at walk A frozen (gcfreeze.c) when walk A
 * collects in full: walk B's collection then looks at what the calls
 * made, and a walk B that finds something is made again unfrozen
 * (walk_b).  The freeze is thawed by the end, whatever happens. */
int _rh_screen_run(const rh_screen_plan_t *plan, PyObject *func, PyObject *args,
                   PyObject *kwargs, rh_screen_t *out)
{
    int was_frozen = _rh_gc_frozen();
    int rc = screen_run(plan, func, args, kwargs, out, !was_frozen);
    if (!was_frozen && _rh_gc_frozen()) {
        PyObject *exc_type, *exc, *tb;
        PyErr_Fetch(&exc_type, &exc, &tb);
        if (_rh_gc_thaw(NULL) < 0)
            PyErr_Clear();
        PyErr_Restore(exc_type, exc, tb);
    }
    return rc;
}

static int screen_run(const rh_screen_plan_t *plan, PyObject *func, PyObject *args,
                      PyObject *kwargs, rh_screen_t *out, int own_freeze)
{
    memset(out, 0, sizeof(*out));
    int nepochs = plan->nepochs;
    if (nepochs < 1 || nepochs > RH_SCREEN_MAX_EPOCHS || plan->warm < 0 || plan->calls < 1) {
        PyErr_SetString(PyExc_ValueError, "refhound: bad screen plan");
        return -1;
    }
    if (_rh_epoch_now() + (uint32_t)nepochs + 3 >= RH_EPOCH_MAX) {
        PyErr_SetString(PyExc_RuntimeError, "refhound: the birth epochs are used up");
        return -1;
    }
    double t0 = now();
    out->first_epoch = _rh_epoch_advance();
    if (screen_calls(plan, func, args, kwargs, plan->warm, out) < 0 ||
        screen_walk(plan, out, 0, own_freeze) < 0)
        return -1;
    for (int e = 0; e < nepochs; e++) {
        _rh_epoch_advance();
        if (screen_calls(plan, func, args, kwargs, plan->calls, out) < 0)
            return -1;
    }
    if (plan->lazy_tail) {
        /* Frozen, a walk that finds something is not made again: the tail
         * follows, still frozen, and the walk after it thaws if it finds
         * something too (a tail call where none was needed only makes the
         * screen more lenient). */
        if (walk_b(plan, out, own_freeze, 0) < 0)
            return -1;
        if (!screen_moved(plan, out) || only_older_tables(plan, out)) {
            _rh_epoch_advance();    /* what follows the screen is not its calls' */
            goto done;
        }
        /* Something to look at: the tail and walk B again. */
    }
    /* The last epoch is the tail: one call whose leftovers (what a call
     * keeps until the next one replaces it) are not judged. */
    _rh_epoch_advance();
    if (screen_calls(plan, func, args, kwargs, 1, out) < 0)
        return -1;
    out->tail = 1;
    if (walk_b(plan, out, own_freeze, 1) < 0)
        return -1;
done:
    out->overhead_seconds = now() - t0 - out->seconds;
    return 0;
}
