/* typeset.c — the set of live type objects: type address => layout facts.
 *
 * Built by walking type.__subclasses__() from `object`, which reaches every
 * readied type (static and heap, of the interpreter and of extensions).
 * The set lets the engine decide whether a word in a block is a type
 * pointer without dereferencing it, and stores per type what the heap walk
 * needs (pre-header size, GC flag, basic size) and the counters it fills.
 *
 * Guarded by the GIL.  Refresh builds a new table and swaps it in, so a
 * hook that runs during the refresh (the walk allocates) sees a whole
 * table.  Memory from libc malloc, which PEP 445 hooks never see.  The
 * refresh calls type.__subclasses__, whose lists are the engine's own
 * work (_rh_engine_enter): they never count for an iteration.
 */
#include "typeset.h"
#include "tracker.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    rh_typeinfo_t *slots;
    size_t mask;    /* capacity - 1, capacity a power of two */
    size_t count;
} typetable_t;

static typetable_t current = {NULL, 0, 0};

static inline size_t slot_of(uintptr_t type, size_t mask)
{
    uint64_t h = (uint64_t)type * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & mask;
}

rh_typeinfo_t *_rh_typeset_lookup(uintptr_t type)
{
    if (current.slots == NULL || type == 0)
        return NULL;
    size_t i = slot_of(type, current.mask);
    for (;;) {
        rh_typeinfo_t *s = &current.slots[i];
        if (s->type == type)
            return s;
        if (s->type == 0)
            return NULL;
        i = (i + 1) & current.mask;
    }
}

size_t _rh_typeset_count(void) { return current.count; }

/* Bytes of the C heap the type set holds (left out of native_bytes). */
size_t _rh_typeset_heap_bytes(void)
{
    return current.slots ? malloc_usable_size(current.slots) : 0;
}

rh_typeinfo_t *_rh_typeset_slots(size_t *capacity)
{
    *capacity = current.slots ? current.mask + 1 : 0;
    return current.slots;
}

void _rh_typeset_detach_stats(void)
{
    for (size_t i = 0; current.slots != NULL && i <= current.mask; i++)
        current.slots[i].stat = NULL;
}

void _rh_typeset_clear(void)
{
    free(current.slots);
    current.slots = NULL;
    current.mask = current.count = 0;
}

static int table_add(typetable_t *t, PyTypeObject *tp)
{
    if ((t->count + 1) * 2 > t->mask + 1) {
        size_t cap = (t->mask + 1) * 2;
        rh_typeinfo_t *slots = calloc(cap, sizeof(rh_typeinfo_t));
        if (slots == NULL)
            return -1;
        for (size_t i = 0; i <= t->mask; i++) {
            if (t->slots[i].type == 0)
                continue;
            size_t j = slot_of(t->slots[i].type, cap - 1);
            while (slots[j].type != 0)
                j = (j + 1) & (cap - 1);
            slots[j] = t->slots[i];
        }
        free(t->slots);
        t->slots = slots;
        t->mask = cap - 1;
    }
    uintptr_t key = (uintptr_t)tp;
    size_t i = slot_of(key, t->mask);
    while (t->slots[i].type != 0) {
        if (t->slots[i].type == key)
            return 0;       /* already there (multiple inheritance) */
        i = (i + 1) & t->mask;
    }
    rh_typeinfo_t *s = &t->slots[i];
    memset(s, 0, sizeof(*s));
    s->type = key;
    s->is_gc = PyType_IS_GC(tp) ? 1 : 0;
    s->preheader = (uint32_t)((s->is_gc ? RH_GC_HEAD_SIZE : 0) +
                              ((tp->tp_flags & RH_PREHEADER_FLAGS) ? RH_MANAGED_PREHEADER_SIZE : 0));
    /* The smallest block an instance can live in: compact str objects are
     * smaller than PyUnicodeObject; a naive datetime.datetime or
     * datetime.time is allocated without its tzinfo pointer (the
     * _datetime module's own allocators). */
    s->minsize = PyType_IsSubtype(tp, &PyUnicode_Type) ? (Py_ssize_t)sizeof(PyASCIIObject) + 1
                                                       : tp->tp_basicsize;
    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) && tp->tp_name != NULL &&
            (strcmp(tp->tp_name, "datetime.datetime") == 0 ||
             strcmp(tp->tp_name, "datetime.time") == 0))
        s->minsize -= (Py_ssize_t)sizeof(PyObject *);
    t->count++;
    return 1;
}

/* Types still to visit: borrowed from nobody (each holds a reference). */
typedef struct {
    PyObject **items;
    size_t count, cap;
} pending_t;

static int pending_push(pending_t *p, PyObject *tp)
{
    if (p->count == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        PyObject **more = realloc(p->items, cap * sizeof(PyObject *));
        if (more == NULL)
            return -1;
        p->items = more;
        p->cap = cap;
    }
    p->items[p->count++] = Py_NewRef(tp);
    return 0;
}

static int refresh(typetable_t *t)
{
    /* Looked up once: a fresh name string per refresh would land in the
     * interpreter's method cache and show up as a block per sample.  The
     * name is held for good too: the cache keeps the last name looked up
     * in each slot, so a name freed when a later lookup takes its slot
     * showed as an object less in the first screen of a session. */
    static PyObject *subclasses = NULL, *name = NULL;
    if (name == NULL && (name = PyUnicode_InternFromString("__subclasses__")) == NULL)
        return -1;
    if (subclasses == NULL)
        subclasses = PyObject_GetAttr((PyObject *)&PyType_Type, name);
    if (subclasses == NULL)
        return -1;
    pending_t pending = {NULL, 0, 0};
    int rc = -1;
    if (table_add(t, &PyBaseObject_Type) < 0 ||
        pending_push(&pending, (PyObject *)&PyBaseObject_Type) < 0)
        goto done;
    /* Depth-first over subclasses. */
    while (pending.count > 0) {
        PyObject *tp = pending.items[--pending.count];
        /* type.__subclasses__(tp): works for metatypes too. */
        PyObject *subs = PyObject_CallOneArg(subclasses, tp);
        Py_DECREF(tp);
        if (subs == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(subs); i++) {
            PyObject *sub = PyList_GET_ITEM(subs, i);
            if (!PyType_Check(sub))
                continue;
            int added = table_add(t, (PyTypeObject *)sub);
            if (added < 0 || (added && pending_push(&pending, sub) < 0)) {
                Py_DECREF(subs);
                goto done;
            }
        }
        Py_DECREF(subs);
    }
    rc = 0;
done:
    while (pending.count > 0)
        Py_DECREF(pending.items[--pending.count]);
    free(pending.items);
    if (rc < 0 && !PyErr_Occurred())
        PyErr_NoMemory();
    return rc;
}

int _rh_typeset_refresh(void)
{
    typetable_t t;
    t.mask = 1023;
    t.count = 0;
    t.slots = calloc(t.mask + 1, sizeof(rh_typeinfo_t));
    if (t.slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int engine = _rh_engine_enter();
    int rc = refresh(&t);
    _rh_engine_leave(engine);
    if (rc < 0) {
        free(t.slots);
        return -1;
    }
    /* Keep the session counters attached to types that survive (a refresh
     * outside a sample, e.g. from a probe, must not detach them). */
    if (current.slots != NULL) {
        for (size_t i = 0; i <= t.mask; i++) {
            if (t.slots[i].type == 0)
                continue;
            rh_typeinfo_t *old = _rh_typeset_lookup(t.slots[i].type);
            if (old != NULL)
                t.slots[i].stat = old->stat;
        }
    }
    free(current.slots);
    current = t;
    return 0;
}
