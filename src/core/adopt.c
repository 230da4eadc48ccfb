/* adopt.c — bring the objects that existed before tracking into the tables.
 *
 * Objects born before the hooks were installed are not in the block table,
 * yet a reference leak often lands on one of them (None, an interned string
 * cached by a module, a static type).  They are found, once, at start:
 *   1. every live type (typeset.c);
 *   2. every object the cyclic GC knows (gc.get_objects()) and each object
 *      they refer to (tp_traverse), which reaches the non-GC ones (str,
 *      int, float, bytes) held by containers, code and modules; and what
 *      the holders the GC does not list refer to: code objects' constants,
 *      untracked tuples and frozensets of constants;
 *   3. the writable data segments of every loaded ELF object: objects that
 *      live there (static singletons, small ints, static strings) and
 *      pointers stored there (a module's `static PyObject *cache`).
 * 1 and 2 are live objects by construction: ADOPTED entries, read directly
 * from then on.  What 3 finds is only bytes that look like an object, in
 * memory the engine does not own: a STATIC entry, read through safemem.c
 * (never directly) now and at every later use, and dropped when it no
 * longer checks out.
 *
 * What makes a static find trustworthy enough to adopt:
 *   - the segment and every pointer target are copied by safemem.c (an
 *     unmapped or unbacked page, a sanitizer's shadow memory, the red zone
 *     after a global: never touched directly);
 *   - the type word names a live type with that pre-header, the refcount
 *     is plausible;
 *   - an object of a GC type that gc.get_objects() did not list must sit
 *     in a whole GC list (the next head's back link points at it: the
 *     permanent generation, immortal mro tuples), or, untracked, be a
 *     tuple whose items all check out or a dict of sane size whose keys
 *     table can be read;
 *   - a str or bytes must be well formed (kind, length, terminating NUL).
 * (libpython's _PyOS_optarg points into freed argv memory whose bytes
 * once read as an "async_generator" with refcount 1957: the GC rule turns
 * such bytes away.)
 *
 * Runs under the GIL with tracking on, as the engine's own work; memory
 * for the lists from libc.  State (stats, writable, targets) lives for one
 * _rh_adopt_existing() call, guarded by the GIL.
 */
#include "adopt.h"
#include "blocks.h"
#include "safemem.h"
#include "tracker.h"
#include "typeset.h"

#include <link.h>   /* dl_iterate_phdr; Python.h defines _GNU_SOURCE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK ((size_t)64 << 10)
#define MAX_TUPLE_CHECK 1024

static rh_adopt_stats_t *stats;

/* ---- live objects ------------------------------------------------------ */

/* Adopt one object known to be live; returns 1 when newly added. */
static int adopt_live(PyObject *op)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup((uintptr_t)Py_TYPE(op));
    if (ti == NULL)
        return 0;
    uintptr_t block = (uintptr_t)op - ti->preheader;
    return _rh_tracker_adopt(block, ti->preheader, RH_ADOPTED_LIVE) > 0;
}

/* Objects the GC does not list hold constants too: a code object (not a
 * GC type) its co_consts, and the tuples and frozensets of constants the
 * GC untracks.  A constant passed to an extension whose reference the
 * extension keeps (ext.keep(0.6)) is reachable only through them: each
 * such holder is expanded in turn (a work list; `queued`, a block table
 * of its own, keeps a code object shared by a thousand closures from
 * being expanded twice). */
static PyObject **holders;
static size_t nholders, capholders;
static rh_table_t queued;

static int first_time(uintptr_t p)
{
    if (queued.slots == NULL && _rh_table_init(&queued, 4096) < 0)
        return 0;
    if (_rh_table_find(&queued, p) != NULL)
        return 0;
    return _rh_table_insert(&queued, p, 0) == 0;
}

/* Queue op when it holds constants the GC does not list (known to the
 * tables or not: a code object made under tracking may hold a float from
 * a free list whose block is older than tracking). */
static void push_holder(PyObject *op)
{
    int holder = PyCode_Check(op) ||
                 (PyObject_IS_GC(op) && !PyObject_GC_IsTracked(op) &&
                  Py_TYPE(op)->tp_traverse != NULL);
    if (!holder || !first_time((uintptr_t)op))
        return;
    if (nholders == capholders) {
        size_t cap = capholders ? 2 * capholders : 1024;
        PyObject **more = realloc(holders, cap * sizeof(PyObject *));  /* libc */
        if (more == NULL)
            return;                 /* out of memory: fewer constants adopted */
        holders = more;
        capholders = cap;
    }
    holders[nholders++] = op;
}

static int visit_referent(PyObject *op, void *arg)
{
    if (op == NULL)
        return 0;
    if (adopt_live(op))
        stats->from_referents++;
    push_holder(op);
    return 0;
}

static void expand_holders(void)
{
    while (nholders > 0 && _rh_tracker_active()) {
        PyObject *op = holders[--nholders];
        if (PyCode_Check(op))
            visit_referent(((PyCodeObject *)op)->co_consts, NULL);
        else
            Py_TYPE(op)->tp_traverse(op, visit_referent, NULL);
    }
    free(holders);
    holders = NULL;
    nholders = capholders = 0;
    _rh_table_release(&queued);
    memset(&queued, 0, sizeof(queued));
}

static int adopt_gc_objects(void)
{
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL)
        return -1;
    PyObject *all = PyObject_CallMethod(gc, "get_objects", NULL);
    Py_DECREF(gc);
    if (all == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all) && _rh_tracker_active(); i++) {
        PyObject *op = PyList_GET_ITEM(all, i);
        if (adopt_live(op))
            stats->from_gc++;
        traverseproc trav = Py_TYPE(op)->tp_traverse;
        if (trav != NULL)
            trav(op, visit_referent, NULL);
    }
    Py_DECREF(all);
    expand_holders();
    return 0;
}

/* ---- writable mappings (a cheap filter before the safe reads) --------------
 * An object's refcount is written: objects live in writable memory (the
 * heaps, the data segments).  A pointer into code or read-only data (most
 * of the words in a data segment) is not followed. */

typedef struct { uintptr_t lo, hi; } range_t;
static range_t *writable;
static size_t nwritable;

static void load_writable_ranges(void)
{
    size_t cap = 256;
    nwritable = 0;
    writable = malloc(cap * sizeof(range_t));
    if (writable == NULL)
        return;
    FILE *f = fopen("/proc/self/maps", "re");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' || perms[1] != 'w')
            continue;
        if (strstr(line, "[vvar]") || strstr(line, "[vsyscall]"))
            continue;
        if (nwritable == cap) {
            range_t *more = realloc(writable, 2 * cap * sizeof(range_t));
            if (more == NULL)
                break;
            writable = more;
            cap *= 2;
        }
        writable[nwritable].lo = lo;
        writable[nwritable].hi = hi;
        nwritable++;
    }
    fclose(f);
}

/* Is [p, p+len) inside one writable mapping?  (maps is sorted) */
static int is_writable(uintptr_t p, size_t len)
{
    size_t lo = 0, hi = nwritable;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (writable[mid].hi <= p)
            lo = mid + 1;
        else if (writable[mid].lo > p)
            hi = mid;
        else
            return p + len <= writable[mid].hi;
    }
    return 0;
}

/* ---- checks of a static find, on copies ------------------------------------ */

/* A copy of [lo, hi) made by safemem.c; reads outside it are copied now. */
typedef struct {
    uintptr_t lo, hi;
    const unsigned char *bytes;
} view_t;

static int view_read(const view_t *v, uintptr_t addr, void *out, size_t len)
{
    if (addr >= v->lo && addr + len >= addr && addr + len <= v->hi) {
        memcpy(out, v->bytes + (addr - v->lo), len);
        return 0;
    }
    return _rh_safe_read(addr, out, len);
}

/* The type of a copied header if it names a live type with a plausible
 * refcount, else NULL. */
static rh_typeinfo_t *header_type(const PyObject *h)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup((uintptr_t)Py_TYPE(h));
    if (ti == NULL)
        return NULL;
    Py_ssize_t rc = Py_REFCNT(h);
    if (rc <= 0 || rc >= RH_MAX_REFCNT)
        return NULL;
    return ti;
}

/* Is the block already in a table? */
static int known(uintptr_t block)
{
    rh_block_t b;
    return _rh_tracker_find(block, RH_TABLE_ADOPTED | RH_TABLE_STATIC | RH_TABLE_GIL, &b);
}

static int str_well_formed(const view_t *v, uintptr_t op)
{
    PyASCIIObject a;
    if (view_read(v, op, &a, sizeof(a)) < 0)
        return 0;
    unsigned kind = a.state.kind, compact = a.state.compact, ascii = a.state.ascii;
    if ((kind != 1 && kind != 2 && kind != 4) || (ascii && kind != 1) ||
        a.length < 0 || a.length > ((Py_ssize_t)1 << 32))
        return 0;
    if (!compact)
        return 1;               /* a legacy string: its data is elsewhere */
    size_t head = ascii ? sizeof(PyASCIIObject) : sizeof(PyCompactUnicodeObject);
    unsigned char nul[4] = {1, 1, 1, 1};
    if (view_read(v, op + head + (size_t)a.length * kind, nul, kind) < 0)
        return 0;
    return nul[0] == 0 && (kind < 2 || nul[1] == 0) && (kind < 4 || (nul[2] == 0 && nul[3] == 0));
}

static int bytes_well_formed(const view_t *v, uintptr_t op)
{
    PyVarObject var;
    char nul = 1;
    if (view_read(v, op, &var, sizeof(var)) < 0 || var.ob_size < 0 ||
        var.ob_size > ((Py_ssize_t)1 << 40))
        return 0;
    if (view_read(v, op + offsetof(PyBytesObject, ob_sval) + (size_t)var.ob_size, &nul, 1) < 0)
        return 0;
    return nul == 0;
}

/* An untracked GC object from static data: a tuple whose items are all
 * objects of live types, or a dict of sane size whose keys table can be
 * read (dicts of atomic values leave the GC's lists). */
static int untracked_ok(const view_t *v, uintptr_t op, PyTypeObject *tp)
{
    if (tp == &PyDict_Type) {
        PyDictObject d;
        uintptr_t keys_head;
        return view_read(v, op, &d, sizeof(d)) == 0 && d.ma_used >= 0 &&
               d.ma_used < ((Py_ssize_t)1 << 32) && d.ma_keys != NULL &&
               _rh_safe_read((uintptr_t)d.ma_keys, &keys_head, sizeof(keys_head)) == 0;
    }
    if (tp != &PyTuple_Type)
        return 0;
    PyVarObject var;
    if (view_read(v, op, &var, sizeof(var)) < 0 || var.ob_size < 0 ||
        var.ob_size > MAX_TUPLE_CHECK)
        return 0;
    size_t n = (size_t)var.ob_size, unknown = 0;
    if (n == 0)
        return 1;
    uintptr_t *items = malloc(n * sizeof(uintptr_t));
    PyObject *heads = malloc(n * sizeof(PyObject));
    unsigned char *ok = malloc(n);
    int good = items != NULL && heads != NULL && ok != NULL &&
               view_read(v, op + offsetof(PyTupleObject, ob_item), items, n * sizeof(uintptr_t)) == 0;
    /* Items the tables know need no copy; the others are copied at once. */
    for (size_t i = 0; good && i < n; i++) {
        int seen = 0;
        for (int k = 0; k < RH_NOBJECT_OFFSETS && !seen; k++)
            seen = items[i] >= rh_object_offset(k) && known(items[i] - rh_object_offset(k));
        if (!seen)
            items[unknown++] = items[i];
    }
    if (good && unknown > 0) {
        good = _rh_safe_read_many(items, unknown, sizeof(PyObject), (unsigned char *)heads, ok) ==
               unknown;
        for (size_t i = 0; good && i < unknown; i++)
            good = header_type(&heads[i]) != NULL;
    }
    free(items);
    free(heads);
    free(ok);
    return good;
}

/* Checks of the object at op (its header already copied and typed). */
static int static_object_ok(const view_t *v, uintptr_t op, rh_typeinfo_t *ti)
{
    PyTypeObject *tp = (PyTypeObject *)ti->type;
    if (ti->is_gc) {
#if RH_HAS_GC_HEAD
        /* PyGC_Head: _gc_next (the next head, 0 when untracked) and
         * _gc_prev (the previous head, flags in its 2 low bits). */
        uintptr_t head[2], next[2];
        uintptr_t self = op - RH_GC_HEAD_SIZE;
        if (op < RH_GC_HEAD_SIZE || view_read(v, self, head, sizeof(head)) < 0)
            return 0;
        if (head[0] != 0) {
            /* Tracked, yet not among gc.get_objects() (the permanent
             * generation, immortal mro tuples): an object only if the
             * GC's list is whole around it. */
            return view_read(v, head[0] & ~(uintptr_t)3, next, sizeof(next)) == 0 &&
                   (next[1] & ~(uintptr_t)3) == self;
        }
#endif
        return untracked_ok(v, op, tp);
    }
    if (PyType_IsSubtype(tp, &PyUnicode_Type))
        return str_well_formed(v, op);
    if (PyType_IsSubtype(tp, &PyBytes_Type))
        return bytes_well_formed(v, op);
    return 1;
}

/* ---- data segments --------------------------------------------------------- */

typedef struct {
    uintptr_t *items;           /* pointer values seen in static data */
    size_t count, cap;
} words_t;

static words_t targets;

static void add_target(uintptr_t w)
{
    if (targets.count == targets.cap) {
        size_t cap = targets.cap ? 2 * targets.cap : 4096;
        uintptr_t *more = realloc(targets.items, cap * sizeof(uintptr_t));
        if (more == NULL)
            return;             /* fewer finds, nothing worse */
        targets.items = more;
        targets.cap = cap;
    }
    targets.items[targets.count++] = w;
}

/* Objects that live in a copied piece of static data at `base`, and the
 * pointers it holds (kept for later). */
static void scan_copy(uintptr_t base, const uintptr_t *words, size_t n)
{
    view_t v = {base, base + n * sizeof(uintptr_t), (const unsigned char *)words};
    for (size_t i = 0; i < n && _rh_tracker_active(); i++) {
        /* An object that lives here (static types are in the type set
         * already; only non-GC static objects can live here). */
        if (i + 1 < n) {
            PyObject h;
            memcpy(&h, &words[i], sizeof(h));
            rh_typeinfo_t *ti = header_type(&h);
            if (ti != NULL && ti->preheader == 0 && !ti->is_gc) {
                uintptr_t p = base + i * sizeof(uintptr_t);
                if (known(p))
                    ;
                else if (!static_object_ok(&v, p, ti))
                    stats->static_rejected++;
                else if (_rh_tracker_adopt(p, 0, RH_ADOPTED_STATIC) > 0)
                    stats->from_static_data++;
                i++;            /* its type word is not a pointer to follow */
                continue;
            }
        }
        uintptr_t w = words[i];
        if (w >= 4096 && (w & 7) == 0 && is_writable(w, sizeof(PyObject)))
            add_target(w);
    }
}

/* Copy [lo, hi) piece by piece; an unreadable piece is retried page by
 * page so that the readable pages around a hole are still scanned. */
static void scan_segment(uintptr_t lo, uintptr_t hi, uintptr_t *buf)
{
    static long page = 0;
    if (page == 0)
        page = sysconf(_SC_PAGESIZE);
    lo = (lo + 7) & ~(uintptr_t)7;
    for (uintptr_t p = lo; p < hi && _rh_tracker_active();) {
        size_t len = hi - p < CHUNK ? (size_t)(hi - p) & ~(size_t)7 : CHUNK;
        if (len == 0)
            break;
        if (_rh_safe_read(p, buf, len) == 0) {
            scan_copy(p, buf, len / sizeof(uintptr_t));
            p += len;
            continue;
        }
        uintptr_t end = p + len;
        while (p < end) {
            uintptr_t next = (p | ((uintptr_t)page - 1)) + 1;
            if (next > end)
                next = end;
            if (_rh_safe_read(p, buf, next - p) == 0)
                scan_copy(p, buf, (next - p) / sizeof(uintptr_t));
            p = next;
        }
    }
}

static int phdr_callback(struct dl_phdr_info *info, size_t size, void *data)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        scan_segment(lo, lo + ph->p_memsz, (uintptr_t *)data);
    }
    return 0;
}

static int cmp_word(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Bytes copied around each pointer target: the GC head in front of it and
 * the first bytes of the object (a short string's text included), so that
 * most checks need no further copy. */
#define AROUND_BEFORE 16
#define AROUND 128

/* Check and adopt the object at target w; v holds a copy around it. */
static void adopt_target(const view_t *v, uintptr_t w)
{
    PyObject h;
    if (view_read(v, w, &h, sizeof(h)) < 0)
        return;
    rh_typeinfo_t *ti = header_type(&h);
    if (ti == NULL || w < ti->preheader || known(w - ti->preheader))
        return;
    if (!static_object_ok(v, w, ti)) {
        stats->static_rejected++;
        return;
    }
    if (_rh_tracker_adopt(w - ti->preheader, ti->preheader, RH_ADOPTED_STATIC) > 0)
        stats->from_static_data++;
}

/* Follow the pointers found in static data: a first pass copies the
 * header of every target and keeps those that name a live type and are
 * not known yet; a second copies the bytes around each of those; then
 * check and adopt.  Targets are sorted so that the copies go by page runs. */
static void adopt_targets(void)
{
    qsort(targets.items, targets.count, sizeof(uintptr_t), cmp_word);
    size_t n = 0, m = 0;
    for (size_t i = 0; i < targets.count; i++)
        if (n == 0 || targets.items[n - 1] != targets.items[i])
            targets.items[n++] = targets.items[i];
    PyObject *heads = malloc(n * sizeof(PyObject) + 1);
    unsigned char *ok = malloc(n + 1);
    uintptr_t *from = NULL;
    unsigned char *copies = NULL;
    if (heads == NULL || ok == NULL)
        goto done;
    /* 1: headers; the candidates stay, in place and in order. */
    _rh_safe_gather(targets.items, n, sizeof(PyObject), (unsigned char *)heads, ok);
    for (size_t i = 0; i < n; i++) {
        uintptr_t w = targets.items[i];
        rh_typeinfo_t *ti = ok[i] ? header_type(&heads[i]) : NULL;
        if (ti != NULL && w >= ti->preheader && !known(w - ti->preheader))
            targets.items[m++] = w;
    }
    /* 2: the bytes around each candidate. */
    from = malloc(m * sizeof(uintptr_t) + 1);
    copies = malloc(m * AROUND + 1);
    if (from == NULL || copies == NULL)
        goto done;
    for (size_t i = 0; i < m; i++)
        from[i] = targets.items[i] - AROUND_BEFORE;
    _rh_safe_gather(from, m, AROUND, copies, ok);
    for (size_t i = 0; i < m && _rh_tracker_active(); i++) {
        /* Near the end of a mapping the wide copy fails: then each read
         * is copied on its own. */
        view_t v = {from[i], ok[i] ? from[i] + AROUND : from[i], copies + i * AROUND};
        adopt_target(&v, targets.items[i]);
    }
done:
    free(heads);
    free(ok);
    free(from);
    free(copies);
}

static void adopt_static_data(void)
{
    if (!_rh_safe_available(&stats->static_skipped))
        return;
    uintptr_t *buf = malloc(CHUNK);
    load_writable_ranges();
    if (buf != NULL && writable != NULL && nwritable > 0) {
        dl_iterate_phdr(phdr_callback, buf);
        adopt_targets();
    }
    else
        stats->static_skipped = "out of memory";
    free(buf);
    free(writable);
    writable = NULL;
    nwritable = 0;
    free(targets.items);
    memset(&targets, 0, sizeof(targets));
}

int _rh_adopt_existing(rh_adopt_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    stats = out;
    if (_rh_typeset_refresh() < 0)
        return -1;
    int engine = _rh_engine_enter();
    int rc = 0;
    size_t ncap;
    rh_typeinfo_t *types = _rh_typeset_slots(&ncap);
    for (size_t i = 0; i < ncap && _rh_tracker_active(); i++) {
        if (types[i].type != 0 && adopt_live((PyObject *)types[i].type))
            out->from_types++;
    }
    if (_rh_tracker_active() && adopt_gc_objects() < 0)
        rc = -1;
    if (rc == 0 && _rh_tracker_active())
        adopt_static_data();
    _rh_engine_leave(engine);
    return rc;
}
