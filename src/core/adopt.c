/* adopt.c — bring the objects that existed before tracking into the table.
 *
 * Objects born before the hooks were installed are not in the block table,
 * yet a reference leak often lands on one of them (None, an interned string
 * cached by a module, a static type).  They are found, once, at start:
 *   1. every live type (typeset.c);
 *   2. every object the cyclic GC knows (gc.get_objects()) and each object
 *      they refer to (tp_traverse), which reaches the non-GC ones (str,
 *      int, float, bytes) held by containers, code and modules;
 *   3. the writable data segments of every loaded ELF object: objects that
 *      live there (static singletons, small ints, static strings) and
 *      pointers stored there (a module's `static PyObject *cache`).  A
 *      pointer is followed only when it lands in a readable mapping of
 *      /proc/self/maps and its type word is a live type.
 * Each is recorded as an "adopted" block: address of the object's block,
 * the object's offset in it, epoch 0.  Its free goes through the obj hook
 * and removes it like any other block.
 *
 * Runs under the GIL with tracking on; memory for the map list from libc.
 */
#include "rh_internal.h"

#include <link.h>   /* dl_iterate_phdr; Python.h defines _GNU_SOURCE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rh_adopt_stats_t *stats;

/* Adopt one object known to be live; returns 1 when newly added. */
static int adopt_live(PyObject *op)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup((uintptr_t)Py_TYPE(op));
    if (ti == NULL)
        return 0;
    uintptr_t block = (uintptr_t)op - ti->preheader;
    return _rh_tracker_adopt(block, ti->preheader) > 0;
}

static int visit_referent(PyObject *op, void *arg)
{
    if (op != NULL && adopt_live(op))
        stats->from_referents++;
    return 0;
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
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++) {
        PyObject *op = PyList_GET_ITEM(all, i);
        if (adopt_live(op))
            stats->from_gc++;
        traverseproc trav = Py_TYPE(op)->tp_traverse;
        if (trav != NULL)
            trav(op, visit_referent, NULL);
    }
    Py_DECREF(all);
    return 0;
}

/* ---- data segments ---------------------------------------------------- */

typedef struct { uintptr_t lo, hi; } range_t;
static range_t *readable;
static size_t nreadable;

static void load_readable_ranges(void)
{
    size_t cap = 256;
    nreadable = 0;
    readable = malloc(cap * sizeof(range_t));
    if (readable == NULL)
        return;
    FILE *f = fopen("/proc/self/maps", "re");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r')
            continue;
        if (strstr(line, "[vvar]") || strstr(line, "[vsyscall]"))
            continue;
        if (nreadable == cap) {
            range_t *more = realloc(readable, 2 * cap * sizeof(range_t));
            if (more == NULL)
                break;
            readable = more;
            cap *= 2;
        }
        readable[nreadable].lo = lo;
        readable[nreadable].hi = hi;
        nreadable++;
    }
    fclose(f);
}

/* Is [p, p+len) inside one readable mapping?  (maps is sorted) */
static int is_readable(uintptr_t p, size_t len)
{
    size_t lo = 0, hi = nreadable;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (readable[mid].hi <= p)
            lo = mid + 1;
        else if (readable[mid].lo > p)
            hi = mid;
        else
            return p + len <= readable[mid].hi;
    }
    return 0;
}

/* Is there a plausible object at readable address p? */
static rh_typeinfo_t *object_at(uintptr_t p)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup(*(uintptr_t *)(p + offsetof(PyObject, ob_type)));
    if (ti == NULL)
        return NULL;
    Py_ssize_t rc = Py_REFCNT((PyObject *)p);
    if (rc <= 0 || rc >= RH_MAX_REFCNT)
        return NULL;
    return ti;
}

static void scan_range(uintptr_t lo, uintptr_t hi);

/* A writable PT_LOAD segment can span several mappings (RELRO made
 * read-only, .data, .bss continued in anonymous memory): scan the parts
 * that are readable, one mapping at a time. */
static void scan_segment(uintptr_t lo, uintptr_t hi)
{
    for (size_t i = 0; i < nreadable; i++) {
        uintptr_t a = readable[i].lo > lo ? readable[i].lo : lo;
        uintptr_t b = readable[i].hi < hi ? readable[i].hi : hi;
        if (a < b)
            scan_range(a, b);
    }
}

static void scan_range(uintptr_t lo, uintptr_t hi)
{
    lo = (lo + 7) & ~(uintptr_t)7;
    for (uintptr_t p = lo; p + sizeof(void *) <= hi; p += sizeof(void *)) {
        /* An object that lives here (static types are in the typeset;
         * only non-GC static objects can be here). */
        rh_typeinfo_t *ti = p + sizeof(PyObject) <= hi ? object_at(p) : NULL;
        if (ti != NULL && ti->preheader == 0) {
            if (_rh_tracker_adopt(p, 0) > 0)
                stats->from_static_data++;
            continue;
        }
        /* A pointer to an object stored here. */
        uintptr_t w = *(uintptr_t *)p;
        if (w < 4096 || (w & 7) != 0 || !is_readable(w, sizeof(PyObject)))
            continue;
        ti = object_at(w);
        if (ti == NULL || w < ti->preheader || !is_readable(w - ti->preheader, ti->preheader))
            continue;
        if (_rh_tracker_adopt(w - ti->preheader, ti->preheader) > 0)
            stats->from_static_data++;
    }
}

static int phdr_callback(struct dl_phdr_info *info, size_t size, void *data)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        scan_segment(lo, lo + ph->p_memsz);
    }
    return 0;
}

int _rh_adopt_existing(rh_adopt_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    stats = out;
    if (_rh_typeset_refresh() < 0)
        return -1;
    size_t ncap;
    rh_typeinfo_t *types = _rh_typeset_slots(&ncap);
    for (size_t i = 0; i < ncap; i++) {
        if (types[i].type != 0 && adopt_live((PyObject *)types[i].type))
            out->from_types++;
    }
    if (adopt_gc_objects() < 0)
        return -1;
    load_readable_ranges();
    if (readable != NULL && nreadable > 0)
        dl_iterate_phdr(phdr_callback, NULL);
    free(readable);
    readable = NULL;
    nreadable = 0;
    return 0;
}
