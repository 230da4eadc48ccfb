/*
 * zoo_probe -- measurement helper for tests/zoo/verify_truth.py.
 *
 * NOT a zoo case.  It wraps the three PEP 445 allocator domains (raw, mem,
 * obj) and keeps a table of every block allocated since install() until it
 * is freed (address, size, domain, birth epoch).  snapshot(slot, types)
 * counts the live tracked blocks per domain and how many of the live
 * obj-domain blocks hold a live Python object (refcount >= 1, ob_type one of
 * the given type objects, the object header at the offset that the type's
 * GC / managed-dict pre-header implies), per type.  delta() compares
 * snapshot 1 with snapshot 0.  That gives verify_truth.py a live-object
 * count that includes the objects gc.get_objects() cannot see (ints, strs,
 * bytes, untracked tuples and dicts, non-GC extension types).
 *
 * Blocks allocated before install() are unknown to the probe, so objects
 * that were born before install() and die between two snapshots are missed
 * (tracemalloc has the same blind spot for blocks allocated before
 * tracemalloc.start()).  Install it early, but after tracemalloc.start(), so
 * that tracemalloc's own internal allocations (made with the allocator it
 * saved) do not pass through it.  It is meant for a single-threaded
 * measurement process; a mutex still guards the table because the raw
 * domain may be used without the GIL.  CPython 3.8+ object layout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NDOMAINS 3
#define DOMAIN_OBJ 2
#define TOMBSTONE ((void *)1)

typedef struct {
    void *ptr;          /* NULL: empty slot, TOMBSTONE: deleted */
    size_t size;
    unsigned int domain;
    unsigned int epoch;
} entry_t;

static entry_t *table;
static size_t capacity;      /* power of two */
static size_t nused;         /* live entries */
static size_t nfilled;       /* live entries + tombstones */
static unsigned int epoch;
static int installed;
static int table_oom;        /* set if the table could not grow */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static PyMemAllocatorEx orig[NDOMAINS];
static const PyMemAllocatorDomain domains[NDOMAINS] = {
    PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ
};

/* ---- the block table (libc memory only: invisible to the hooks) ---- */

static size_t
hash_ptr(void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 33;
    x *= (uintptr_t)0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int
table_grow(void)
{
    size_t newcap = capacity ? capacity * 2 : (size_t)1 << 16;
    while (nused * 2 >= newcap) {
        newcap *= 2;
    }
    entry_t *newtab = calloc(newcap, sizeof(entry_t));
    if (newtab == NULL) {
        table_oom = 1;
        return -1;
    }
    size_t mask = newcap - 1;
    for (size_t i = 0; i < capacity; i++) {
        if (table[i].ptr != NULL && table[i].ptr != TOMBSTONE) {
            size_t j = hash_ptr(table[i].ptr) & mask;
            while (newtab[j].ptr != NULL) {
                j = (j + 1) & mask;
            }
            newtab[j] = table[i];
        }
    }
    free(table);
    table = newtab;
    capacity = newcap;
    nfilled = nused;
    return 0;
}

static void
table_insert(void *p, size_t size, unsigned int domain)
{
    if ((nfilled + 1) * 4 >= capacity * 3 && table_grow() < 0) {
        return;
    }
    size_t mask = capacity - 1;
    size_t i = hash_ptr(p) & mask;
    size_t first_tomb = (size_t)-1;
    while (table[i].ptr != NULL) {
        if (table[i].ptr == p) {        /* stale entry: overwrite */
            break;
        }
        if (table[i].ptr == TOMBSTONE && first_tomb == (size_t)-1) {
            first_tomb = i;
        }
        i = (i + 1) & mask;
    }
    if (table[i].ptr == p) {
        nused--;                         /* replaced below */
    }
    else if (first_tomb != (size_t)-1) {
        i = first_tomb;
    }
    else {
        nfilled++;
    }
    table[i].ptr = p;
    table[i].size = size;
    table[i].domain = domain;
    table[i].epoch = epoch;
    nused++;
}

/* Remove p; return its entry's address inside the table, or NULL. */
static entry_t *
table_find(void *p)
{
    if (capacity == 0 || p == NULL) {
        return NULL;
    }
    size_t mask = capacity - 1;
    size_t i = hash_ptr(p) & mask;
    while (table[i].ptr != NULL) {
        if (table[i].ptr == p) {
            return &table[i];
        }
        i = (i + 1) & mask;
    }
    return NULL;
}

static void
table_remove(void *p)
{
    entry_t *e = table_find(p);
    if (e != NULL) {
        e->ptr = TOMBSTONE;
        nused--;
    }
}

/* ---- allocator hooks ----
 *
 * Nested calls are passed straight through: pymalloc serves large requests
 * (> 512 bytes) by calling PyMem_RawMalloc() through the public API, which
 * comes back through the raw hook while the mem/obj hook is still running.
 * Only the outermost call records the block, under its own domain (this is
 * also what tracemalloc does with its reentrancy guard).
 */

#define DOM(ctx) ((unsigned int)(uintptr_t)(ctx))

static __thread int hook_depth;

static void *
hook_malloc(void *ctx, size_t size)
{
    unsigned int d = DOM(ctx);
    if (hook_depth) {
        return orig[d].malloc(orig[d].ctx, size);
    }
    hook_depth++;
    void *p = orig[d].malloc(orig[d].ctx, size);
    hook_depth--;
    if (p != NULL) {
        pthread_mutex_lock(&lock);
        table_insert(p, size, d);
        pthread_mutex_unlock(&lock);
    }
    return p;
}

static void *
hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
    unsigned int d = DOM(ctx);
    if (hook_depth) {
        return orig[d].calloc(orig[d].ctx, nelem, elsize);
    }
    hook_depth++;
    void *p = orig[d].calloc(orig[d].ctx, nelem, elsize);
    hook_depth--;
    if (p != NULL) {
        pthread_mutex_lock(&lock);
        table_insert(p, nelem * elsize, d);
        pthread_mutex_unlock(&lock);
    }
    return p;
}

static void *
hook_realloc(void *ctx, void *ptr, size_t size)
{
    unsigned int d = DOM(ctx);
    if (hook_depth) {
        return orig[d].realloc(orig[d].ctx, ptr, size);
    }
    hook_depth++;
    void *q = orig[d].realloc(orig[d].ctx, ptr, size);
    hook_depth--;
    if (q == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&lock);
    /* A tracked block keeps its birth epoch when it moves (tracemalloc also
       treats realloc as the same block); an untracked one (born before
       install()) stays untracked. */
    entry_t *e = table_find(ptr);
    if (e != NULL) {
        unsigned int born = e->epoch;
        table_remove(ptr);
        table_insert(q, size, d);
        e = table_find(q);
        if (e != NULL) {
            e->epoch = born;
        }
    }
    else if (ptr == NULL) {
        table_insert(q, size, d);
    }
    pthread_mutex_unlock(&lock);
    return q;
}

static void
hook_free(void *ctx, void *ptr)
{
    unsigned int d = DOM(ctx);
    if (hook_depth) {
        orig[d].free(orig[d].ctx, ptr);
        return;
    }
    if (ptr != NULL) {
        pthread_mutex_lock(&lock);
        table_remove(ptr);
        pthread_mutex_unlock(&lock);
    }
    hook_depth++;
    orig[d].free(orig[d].ctx, ptr);
    hook_depth--;
}

/* ---- object recognition ---- */

static int
cmp_uintptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Size of what precedes the object header in an object of this type. */
static size_t
preheader_size(PyTypeObject *tp)
{
    size_t pre = 0;
    unsigned long flags = PyType_GetFlags(tp);
    if (flags & Py_TPFLAGS_HAVE_GC) {
        pre += 2 * sizeof(void *);                 /* PyGC_Head */
    }
#if PY_VERSION_HEX >= 0x030B0000
    /* 3.11: Py_TPFLAGS_MANAGED_DICT (1<<4); 3.12+: also MANAGED_WEAKREF
       (1<<3).  Either adds a two-pointer pre-header. */
    unsigned long managed = 1UL << 4;
#  if PY_VERSION_HEX >= 0x030C0000
    managed |= 1UL << 3;
#  endif
    if (flags & managed) {
        pre += 2 * sizeof(void *);
    }
#endif
    return pre;
}

/* If the block at p (size bytes) holds a live object, return its index in
   the sorted types array, else -1; *op_out receives the object. */
static Py_ssize_t
object_in_block(char *p, size_t size, const uintptr_t *types, size_t ntypes,
                PyObject **op_out)
{
    static const size_t offsets[] = {0, 2 * sizeof(void *), 4 * sizeof(void *)};
    for (size_t k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++) {
        size_t off = offsets[k];
        if (size < off + sizeof(PyObject)) {
            break;
        }
        PyObject *op = (PyObject *)(p + off);
        uintptr_t key = (uintptr_t)Py_TYPE(op);
        const uintptr_t *hit = bsearch(&key, types, ntypes, sizeof(uintptr_t),
                                       cmp_uintptr);
        if (hit == NULL || preheader_size((PyTypeObject *)key) != off) {
            continue;
        }
        /* refcount 0: a dead object parked in a free list */
        if (Py_REFCNT(op) < 1 || Py_REFCNT(op) > ((Py_ssize_t)1 << 40)) {
            continue;
        }
        /* (no tp_basicsize check: a compact str is smaller than
           PyUnicode_Type.tp_basicsize) */
        *op_out = op;
        return hit - types;
    }
    return -1;
}

/* ---- snapshots ---- */

#define MAX_SAMPLES 64

typedef struct {
    int valid;
    size_t blocks[NDOMAINS];
    size_t objects;
    size_t born_blocks;          /* blocks born since the last mark() */
    size_t born_objects;
    size_t ntypes;
    uintptr_t *types;            /* sorted */
    size_t *counts;              /* live objects per type */
    char **names;                /* strdup'ed tp_name per type */
    size_t nsamples;
    PyObject *samples[MAX_SAMPLES];   /* borrowed; born since mark() */
    unsigned int sample_epoch;
} snap_t;

static snap_t snaps[2];

static void
snap_clear(snap_t *s)
{
    for (size_t i = 0; i < s->ntypes; i++) {
        free(s->names[i]);
    }
    free(s->types);
    free(s->counts);
    free(s->names);
    memset(s, 0, sizeof(*s));
}

static PyObject *
probe_install(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (!installed) {
        for (int d = 0; d < NDOMAINS; d++) {
            PyMem_GetAllocator(domains[d], &orig[d]);
        }
        for (int d = 0; d < NDOMAINS; d++) {
            PyMemAllocatorEx hook = {
                (void *)(uintptr_t)d, hook_malloc, hook_calloc, hook_realloc,
                hook_free
            };
            PyMem_SetAllocator(domains[d], &hook);
        }
        installed = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *
probe_uninstall(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (installed) {
        for (int d = 0; d < NDOMAINS; d++) {
            PyMem_SetAllocator(domains[d], &orig[d]);
        }
        installed = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *
probe_mark(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&lock);
    epoch++;
    pthread_mutex_unlock(&lock);
    Py_RETURN_NONE;
}

/* snapshot(slot, types, nsamples=0): count live tracked blocks and objects
   into C storage (nothing Python-visible is created). */
static PyObject *
probe_snapshot(PyObject *Py_UNUSED(module), PyObject *args)
{
    int slot;
    PyObject *arg;
    Py_ssize_t want = 0;
    if (!PyArg_ParseTuple(args, "iO|n:snapshot", &slot, &arg, &want)) {
        return NULL;
    }
    if (slot < 0 || slot > 1) {
        PyErr_SetString(PyExc_ValueError, "slot must be 0 or 1");
        return NULL;
    }
    if (!installed) {
        PyErr_SetString(PyExc_RuntimeError, "zoo_probe: install() first");
        return NULL;
    }
    if (want > MAX_SAMPLES) {
        want = MAX_SAMPLES;
    }
    PyObject *seq = PySequence_Fast(arg, "snapshot() needs a sequence of types");
    if (seq == NULL) {
        return NULL;
    }
    snap_t *s = &snaps[slot];
    snap_clear(s);
    size_t ntypes = (size_t)PySequence_Fast_GET_SIZE(seq);
    s->types = malloc((ntypes + 1) * sizeof(uintptr_t));
    s->counts = calloc(ntypes + 1, sizeof(size_t));
    s->names = calloc(ntypes + 1, sizeof(char *));
    if (s->types == NULL || s->counts == NULL || s->names == NULL) {
        snap_clear(s);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < ntypes; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i);
        if (!PyType_Check(t)) {
            snap_clear(s);
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "snapshot() needs types");
            return NULL;
        }
        s->types[i] = (uintptr_t)t;
    }
    qsort(s->types, ntypes, sizeof(uintptr_t), cmp_uintptr);
    /* drop duplicates */
    size_t u = 0;
    for (size_t i = 0; i < ntypes; i++) {
        if (u == 0 || s->types[u - 1] != s->types[i]) {
            s->types[u++] = s->types[i];
        }
    }
    s->ntypes = u;
    for (size_t i = 0; i < s->ntypes; i++) {
        s->names[i] = strdup(((PyTypeObject *)s->types[i])->tp_name);
    }

    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < capacity; i++) {
        entry_t *e = &table[i];
        if (e->ptr == NULL || e->ptr == TOMBSTONE) {
            continue;
        }
        int born = (e->epoch == epoch && epoch != 0);
        s->blocks[e->domain]++;
        s->born_blocks += born;
        if (e->domain != DOMAIN_OBJ) {
            continue;
        }
        PyObject *op = NULL;
        Py_ssize_t k = object_in_block(e->ptr, e->size, s->types, s->ntypes, &op);
        if (k < 0) {
            continue;
        }
        s->objects++;
        s->counts[k]++;
        if (born) {
            s->born_objects++;
            if (s->nsamples < (size_t)want) {
                s->samples[s->nsamples++] = op;
            }
        }
    }
    s->sample_epoch = epoch;
    s->valid = 1;
    pthread_mutex_unlock(&lock);
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static int
add_count(PyObject *dict, const char *name, Py_ssize_t delta)
{
    if (delta == 0) {
        return 0;
    }
    PyObject *key = PyUnicode_FromString(name ? name : "?");
    if (key == NULL) {
        return -1;
    }
    PyObject *old = PyDict_GetItemWithError(dict, key);
    if (old == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    Py_ssize_t v = delta + (old ? PyLong_AsSsize_t(old) : 0);
    PyObject *val = PyLong_FromSsize_t(v);
    int rc = val ? PyDict_SetItem(dict, key, val) : -1;
    Py_XDECREF(val);
    Py_DECREF(key);
    return rc;
}

/* delta() -> dict: snapshot 1 minus snapshot 0. */
static PyObject *
probe_delta(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    snap_t *a = &snaps[0], *b = &snaps[1];
    if (!a->valid || !b->valid) {
        PyErr_SetString(PyExc_RuntimeError, "zoo_probe: take snapshots 0 and 1 first");
        return NULL;
    }
    PyObject *by_type = PyDict_New();
    PyObject *samples = PyList_New(0);
    PyObject *result = NULL;
    if (by_type == NULL || samples == NULL) {
        goto done;
    }
    /* merge the two sorted type arrays */
    size_t i = 0, j = 0;
    while (i < a->ntypes || j < b->ntypes) {
        if (j >= b->ntypes || (i < a->ntypes && a->types[i] < b->types[j])) {
            if (add_count(by_type, a->names[i], -(Py_ssize_t)a->counts[i]) < 0) {
                goto done;
            }
            i++;
        }
        else if (i >= a->ntypes || b->types[j] < a->types[i]) {
            if (add_count(by_type, b->names[j], (Py_ssize_t)b->counts[j]) < 0) {
                goto done;
            }
            j++;
        }
        else {
            if (add_count(by_type, b->names[j],
                          (Py_ssize_t)b->counts[j] - (Py_ssize_t)a->counts[i]) < 0) {
                goto done;
            }
            i++;
            j++;
        }
    }
    /* samples: only those that are still live, tracked blocks */
    for (size_t k = 0; k < b->nsamples; k++) {
        PyObject *op = b->samples[k];
        int alive = 0;
        static const size_t offsets[] = {0, 2 * sizeof(void *), 4 * sizeof(void *)};
        pthread_mutex_lock(&lock);
        for (size_t o = 0; o < 3 && !alive; o++) {
            entry_t *e = table_find((char *)op - offsets[o]);
            alive = (e != NULL && e->epoch == b->sample_epoch
                     && e->domain == DOMAIN_OBJ);
        }
        pthread_mutex_unlock(&lock);
        if (alive && Py_REFCNT(op) >= 1 && PyList_Append(samples, op) < 0) {
            goto done;
        }
    }
    result = Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:O,s:O,s:O}",
        "raw", (Py_ssize_t)b->blocks[0] - (Py_ssize_t)a->blocks[0],
        "mem", (Py_ssize_t)b->blocks[1] - (Py_ssize_t)a->blocks[1],
        "obj", (Py_ssize_t)b->blocks[2] - (Py_ssize_t)a->blocks[2],
        "objects", (Py_ssize_t)b->objects - (Py_ssize_t)a->objects,
        "born_blocks", (Py_ssize_t)b->born_blocks,
        "born_objects", (Py_ssize_t)b->born_objects,
        "by_type", by_type,
        "samples", samples,
        "table_oom", table_oom ? Py_True : Py_False);
done:
    Py_XDECREF(by_type);
    Py_XDECREF(samples);
    return result;
}

/* live_objects(types) -> list of the live objects (of one of the given
   types) in tracked obj-domain blocks.  The addresses are collected under
   the table lock, then the list is built with the collector disabled, so
   that no object on the list can be freed before it is referenced. */
static PyObject *
probe_live_objects(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!installed) {
        PyErr_SetString(PyExc_RuntimeError, "zoo_probe: install() first");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(arg, "live_objects() needs a sequence of types");
    if (seq == NULL) {
        return NULL;
    }
    size_t ntypes = (size_t)PySequence_Fast_GET_SIZE(seq);
    uintptr_t *types = malloc((ntypes + 1) * sizeof(uintptr_t));
    if (types == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < ntypes; i++) {
        types[i] = (uintptr_t)PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i);
    }
    qsort(types, ntypes, sizeof(uintptr_t), cmp_uintptr);
    int was_enabled = PyGC_Disable();
    PyObject **found = NULL;
    size_t nfound = 0;
    pthread_mutex_lock(&lock);
    found = malloc((nused + 1) * sizeof(PyObject *));
    if (found != NULL) {
        for (size_t i = 0; i < capacity; i++) {
            entry_t *e = &table[i];
            if (e->ptr == NULL || e->ptr == TOMBSTONE || e->domain != DOMAIN_OBJ) {
                continue;
            }
            PyObject *op = NULL;
            if (object_in_block(e->ptr, e->size, types, ntypes, &op) >= 0) {
                found[nfound++] = op;
            }
        }
    }
    pthread_mutex_unlock(&lock);
    PyObject *result = NULL;
    if (found == NULL) {
        PyErr_NoMemory();
    }
    else if ((result = PyList_New((Py_ssize_t)nfound)) != NULL) {
        for (size_t i = 0; i < nfound; i++) {
            PyList_SET_ITEM(result, (Py_ssize_t)i, Py_NewRef(found[i]));
        }
    }
    if (was_enabled) {
        PyGC_Enable();
    }
    free(found);
    free(types);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"install", probe_install, METH_NOARGS,
     "Wrap the raw/mem/obj allocators and start tracking every block."},
    {"uninstall", probe_uninstall, METH_NOARGS, "Restore the saved allocators."},
    {"mark", probe_mark, METH_NOARGS,
     "Start a new birth epoch (for born_* counts and samples)."},
    {"snapshot", probe_snapshot, METH_VARARGS,
     "snapshot(slot, types, nsamples=0): count live blocks and objects."},
    {"delta", probe_delta, METH_NOARGS,
     "delta() -> dict of snapshot 1 minus snapshot 0."},
    {"live_objects", probe_live_objects, METH_O,
     "live_objects(types) -> list of the live objects in tracked blocks."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "zoo_probe", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_zoo_probe(void)
{
    return PyModule_Create(&moduledef);
}
