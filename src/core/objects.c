/* objects.c — Python objects inside live blocks: recognition, heap walk,
 * refcount snapshots.
 *
 * A block of the obj domain holds an object at offset 0 (no pre-header),
 * 16 (GC head) or 32 (GC head + managed dict on 3.11, + managed weakref
 * list from 3.12).  An object is recognised when the word where ob_type
 * would be is a live type (typeset.c) whose pre-header equals the offset,
 * the refcount is plausible and the smallest instance of the type fits.
 * Adopted blocks (objects that existed before tracking) record the object's
 * offset instead of a size.  Nothing here dereferences a pointer that was
 * not first found in the type set or the block table.
 *
 * Runs under the GIL, never from an allocator hook except
 * _rh_recognize(need_live=0) from the free observer.
 */
#include "rh_internal.h"

#include <stdlib.h>
#include <string.h>

static const size_t offsets[] = {0, 2 * sizeof(void *), 4 * sizeof(void *)};

rh_typeinfo_t *_rh_recognize(const rh_block_t *b, PyObject **out, int need_live)
{
    int domain = rh_block_domain(b);
    if (domain == RH_DOMAIN_ADOPTED) {
        size_t off = rh_block_size(b);
        uintptr_t op = rh_block_addr(b) + off;
        rh_typeinfo_t *ti = _rh_typeset_lookup(*(uintptr_t *)(op + offsetof(PyObject, ob_type)));
        if (ti == NULL || ti->preheader != off)
            return NULL;
        Py_ssize_t rc = Py_REFCNT((PyObject *)op);
        if (need_live && (rc <= 0 || rc >= RH_MAX_REFCNT))
            return NULL;
        *out = (PyObject *)op;
        return ti;
    }
    if (domain != RH_DOMAIN_OBJ)
        return NULL;
    size_t size = rh_block_size(b);
    for (size_t k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++) {
        size_t off = offsets[k];
        if (off + sizeof(PyObject) > size)
            break;
        uintptr_t op = rh_block_addr(b) + off;
        rh_typeinfo_t *ti = _rh_typeset_lookup(*(uintptr_t *)(op + offsetof(PyObject, ob_type)));
        if (ti == NULL || ti->preheader != off)
            continue;
        if ((size_t)ti->minsize + off > size)
            continue;
        Py_ssize_t rc = Py_REFCNT((PyObject *)op);
        if (need_live && (rc <= 0 || rc >= RH_MAX_REFCNT))
            continue;
        *out = (PyObject *)op;
        return ti;
    }
    return NULL;
}

static inline int gc_is_tracked(PyObject *op, const rh_typeinfo_t *ti, int adopted)
{
#if RH_HAS_GC_HEAD
    if (!ti->is_gc)
        return 0;
    /* A static type has no GC head in front of it. */
    if (adopted && PyType_Check(op) &&
        !(((PyTypeObject *)op)->tp_flags & Py_TPFLAGS_HEAPTYPE))
        return 0;
    /* PyGC_Head._gc_next is non-zero while the object is in a GC list. */
    uintptr_t next = *(uintptr_t *)((char *)op - RH_GC_HEAD_SIZE);
    return next != 0;
#else
    return 0;
#endif
}

void _rh_objects_walk(rh_walk_totals_t *out, uint32_t first_epoch)
{
    memset(out, 0, sizeof(*out));
    size_t ncap;
    rh_typeinfo_t *types = _rh_typeset_slots(&ncap);
    for (size_t i = 0; i < ncap; i++)
        types[i].live = types[i].live_new = 0;
    if (!_rh_tracking)
        return;
    const rh_table_t *tables[2] = {&_rh_gil_table, &_rh_old_table};
    for (int k = 0; k < 2; k++)
    for (size_t i = 0; tables[k]->slots && i < tables[k]->capacity; i++) {
        const rh_block_t *b = &tables[k]->slots[i];
        if (rh_block_empty(b))
            continue;
        PyObject *op;
        rh_typeinfo_t *ti = _rh_recognize(b, &op, 1);
        if (ti == NULL)
            continue;
        ti->live++;
        if (rh_block_domain(b) != RH_DOMAIN_ADOPTED && rh_block_epoch(b) >= first_epoch)
            ti->live_new++;
        out->objects++;
        if (!RH_IS_IMMORTAL(op))
            out->refs += Py_REFCNT(op);
        if (gc_is_tracked(op, ti, rh_block_domain(b) == RH_DOMAIN_ADOPTED))
            out->gc_tracked++;
    }
}

static int cmp_snapentry(const void *a, const void *b)
{
    uintptr_t x = ((const rh_snapentry_t *)a)->obj, y = ((const rh_snapentry_t *)b)->obj;
    return x < y ? -1 : x > y;
}

int _rh_snapshot_take(rh_snapshot_t *snap)
{
    snap->entries = NULL;
    snap->count = 0;
    if (!_rh_tracking)
        return 0;
    snap->entries = malloc(sizeof(rh_snapentry_t) * (_rh_gil_table.count + _rh_old_table.count + 1));
    if (snap->entries == NULL)
        return -1;
    const rh_table_t *tables[2] = {&_rh_gil_table, &_rh_old_table};
    for (int k = 0; k < 2; k++)
    for (size_t i = 0; tables[k]->slots && i < tables[k]->capacity; i++) {
        const rh_block_t *b = &tables[k]->slots[i];
        if (rh_block_empty(b))
            continue;
        PyObject *op;
        if (_rh_recognize(b, &op, 1) == NULL || RH_IS_IMMORTAL(op))
            continue;
        snap->entries[snap->count].obj = (uintptr_t)op;
        snap->entries[snap->count].type = (uintptr_t)Py_TYPE(op);
        snap->entries[snap->count].refcnt = Py_REFCNT(op);
        snap->count++;
    }
    qsort(snap->entries, snap->count, sizeof(rh_snapentry_t), cmp_snapentry);
    return 0;
}

void _rh_snapshot_release(rh_snapshot_t *snap)
{
    free(snap->entries);
    snap->entries = NULL;
    snap->count = 0;
}

int _rh_object_is_live(uintptr_t obj, uintptr_t type)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup(type);
    if (ti == NULL || !_rh_tracking || obj < ti->preheader)
        return 0;
    const rh_block_t *b = _rh_tracker_find(obj - ti->preheader);
    PyObject *op;
    return b != NULL && _rh_recognize(b, &op, 1) == ti && (uintptr_t)op == obj;
}
