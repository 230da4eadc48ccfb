/* objects.c — Python objects inside live blocks: recognition, heap walk,
 * refcount snapshots.
 *
 * A block of the obj domain holds an object at one of the offsets of
 * rh_object_offset(): 0 (no pre-header), 16 (GC head) or 32 (GC head +
 * managed dict on 3.11, + managed weakref list from 3.12).  An object is
 * recognised when the word where ob_type would be is a live type
 * (typeset.c) whose pre-header equals the offset, the refcount is
 * plausible and the smallest instance of the type fits.  Adopted blocks
 * (objects that existed before tracking) record the object's offset
 * instead of a size.
 *
 * What is read, and why it is safe:
 *   GIL and ADOPTED entries: the block is live (its free goes through a
 *     hook that needs the GIL, which we hold); reads stay inside it.
 *   STATIC entries (seen through static data at start): nothing vouches
 *     for the memory, so the object's header is copied by safemem.c and
 *     checked again (type still a live type with that pre-header,
 *     plausible refcount); an entry that fails is dropped for good.
 *
 * Runs under the GIL; only _rh_recognize() also runs in a hook (the
 * session's free observer), and it reads nothing outside the block.
 * State: `sorted`, the STATIC entries in address order, rebuilt when the
 * table's generation changes; guarded by the GIL.
 */
#include "objects.h"
#include "radix.h"
#include "safemem.h"
#include "tracker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- recognition --------------------------------------------------------- */

static inline int plausible(Py_ssize_t rc) { return rc > 0 && rc < RH_MAX_REFCNT; }

rh_typeinfo_t *_rh_recognize(const rh_block_t *b, PyObject **out, int need_live)
{
    int domain = rh_block_domain(b);
    if (domain == RH_DOMAIN_ADOPTED) {
        if (rh_block_epoch(b) != RH_ADOPTED_LIVE)
            return NULL;            /* STATIC: through static_objects() only */
        size_t off = rh_block_size(b);
        uintptr_t op = rh_block_addr(b) + off;
        rh_typeinfo_t *ti = _rh_typeset_lookup(*(uintptr_t *)(op + offsetof(PyObject, ob_type)));
        if (ti == NULL || ti->preheader != off)
            return NULL;
        if (need_live && !plausible(Py_REFCNT((PyObject *)op)))
            return NULL;
        *out = (PyObject *)op;
        return ti;
    }
    if (domain != RH_DOMAIN_OBJ)
        return NULL;
    size_t size = rh_block_size(b);
    for (int k = 0; k < RH_NOBJECT_OFFSETS; k++) {
        size_t off = rh_object_offset(k);
        if (off + sizeof(PyObject) > size)
            break;
        uintptr_t op = rh_block_addr(b) + off;
        rh_typeinfo_t *ti = _rh_typeset_lookup(*(uintptr_t *)(op + offsetof(PyObject, ob_type)));
        if (ti == NULL || ti->preheader != off)
            continue;
        if ((size_t)ti->minsize + off > size)
            continue;
        if (need_live && !plausible(Py_REFCNT((PyObject *)op)))
            continue;
        *out = (PyObject *)op;
        return ti;
    }
    return NULL;
}

/* ---- STATIC entries: copied, checked, dropped when gone -------------------- */

typedef struct {
    uintptr_t block;
    size_t offset;
} static_ref_t;

typedef struct {
    static_ref_t *items;
    size_t count, cap;
    int failed;
} static_list_t;

static void collect_static(const rh_block_t *b, void *arg)
{
    static_list_t *l = (static_list_t *)arg;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        static_ref_t *more = realloc(l->items, cap * sizeof(static_ref_t));   /* libc */
        if (more == NULL) {
            l->failed = 1;
            return;
        }
        l->items = more;
        l->cap = cap;
    }
    l->items[l->count].block = rh_block_addr(b);
    l->items[l->count].offset = rh_block_size(b);
    l->count++;
}

/* A checked copy of a STATIC object's header. */
typedef struct {
    PyObject *op;               /* its address (do not dereference) */
    rh_typeinfo_t *ti;
    PyObject header;            /* refcount and type, as copied */
    uintptr_t gc_next;          /* its GC head's first word, as copied (0: none) */
} static_seen_t;

typedef void (*static_visit_t)(const static_seen_t *seen, void *arg);

/* Check a copied header: 1 when it still holds an object of a live type
 * with the recorded pre-header. */
static int header_ok(const PyObject *h, size_t offset, rh_typeinfo_t **ti)
{
    *ti = _rh_typeset_lookup((uintptr_t)Py_TYPE(h));
    return *ti != NULL && (*ti)->preheader == offset &&
           (plausible(Py_REFCNT(h)) || RH_IS_IMMORTAL(h));
}

static int cmp_ref(const void *a, const void *b)
{
    uintptr_t x = ((const static_ref_t *)a)->block + ((const static_ref_t *)a)->offset;
    uintptr_t y = ((const static_ref_t *)b)->block + ((const static_ref_t *)b)->offset;
    return x < y ? -1 : x > y;
}

/* The STATIC entries sorted by object address, kept between walks while
 * the table does not change (GIL-guarded). */
static static_list_t sorted;
static uint64_t sorted_gen = (uint64_t)-1;

static int sorted_refs(void)
{
    uint64_t gen = _rh_tracker_static_generation();
    if (gen == sorted_gen && !sorted.failed)
        return 0;
    sorted.count = 0;
    sorted.failed = 0;
    _rh_tracker_walk(RH_TABLE_STATIC, collect_static, &sorted);
    if (sorted.failed)
        return -1;                  /* out of memory: left out of this walk */
    qsort(sorted.items, sorted.count, sizeof(static_ref_t), cmp_ref);
    sorted_gen = gen;
    return 0;
}

/* Visit every STATIC entry whose header checks out; drop the others.  What
 * is copied of each entry runs from its block's start to the end of the
 * object's header (the GC head included), by page runs: the entries
 * cluster (the static strings and singletons of libpython). */
static void static_objects(static_visit_t visit, void *arg)
{
    if (sorted_refs() < 0 || sorted.count == 0)
        return;
    size_t n = sorted.count;
    enum { MAXLEN = 4 * sizeof(void *) + sizeof(PyObject) };
    uintptr_t *addrs = malloc(n * sizeof(uintptr_t));
    size_t *index = malloc(n * sizeof(size_t));
    unsigned char *copies = malloc(n * MAXLEN);
    unsigned char *ok = malloc(n);
    for (int k = 0; addrs && index && copies && ok && k < RH_NOBJECT_OFFSETS; k++) {
        /* The entries whose object sits at this offset in its block. */
        size_t off = rh_object_offset(k), len = off + sizeof(PyObject), m = 0;
        for (size_t i = 0; i < n; i++) {
            if (sorted.items[i].offset == off) {
                index[m] = i;
                addrs[m++] = sorted.items[i].block;
            }
        }
        _rh_safe_gather(addrs, m, len, copies, ok);
        for (size_t j = 0; j < m; j++) {
            const static_ref_t *r = &sorted.items[index[j]];
            static_seen_t seen;
            memcpy(&seen.header, copies + j * len + off, sizeof(PyObject));
            if (!ok[j] || !header_ok(&seen.header, off, &seen.ti)) {
                _rh_tracker_drop_static(r->block);
                continue;
            }
            seen.op = (PyObject *)(r->block + off);
            seen.gc_next = 0;
#if RH_HAS_GC_HEAD
            if (off >= RH_GC_HEAD_SIZE)
                memcpy(&seen.gc_next, copies + j * len + off - RH_GC_HEAD_SIZE, sizeof(uintptr_t));
#endif
            visit(&seen, arg);
        }
    }
    free(addrs);
    free(index);
    free(copies);
    free(ok);
}

/* The object of a STATIC entry, checked now; NULL (and dropped) if gone. */
static PyObject *static_object(const rh_block_t *b, rh_typeinfo_t **ti)
{
    PyObject h;
    size_t off = rh_block_size(b);
    uintptr_t op = rh_block_addr(b) + off;
    if (_rh_safe_read(op, &h, sizeof(h)) < 0 || !header_ok(&h, off, ti)) {
        _rh_tracker_drop_static(rh_block_addr(b));
        return NULL;
    }
    return (PyObject *)op;
}

/* ---- the heap walk --------------------------------------------------------- */

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

typedef struct {
    rh_walk_totals_t *out;
    uint32_t first_epoch;
    rh_epoch_survivors_t *sv;   /* or NULL */
    rh_typeinfo_t *types;       /* the type set's slots, when `live` is given */
    int64_t *live;              /* or a helper's own per-type counts: 2 per slot */
} walk_arg_t;

static void count_object(const rh_block_t *b, void *arg)
{
    walk_arg_t *w = (walk_arg_t *)arg;
    PyObject *op;
    rh_typeinfo_t *ti = _rh_recognize(b, &op, 1);
    if (ti == NULL)
        return;
    int adopted = rh_block_domain(b) == RH_DOMAIN_ADOPTED;
    int born_new = !adopted && rh_block_epoch(b) >= w->first_epoch;
    if (w->live != NULL) {
        size_t k = (size_t)(ti - w->types);
        w->live[2 * k]++;
        w->live[2 * k + 1] += born_new;
    }
    else {
        ti->live++;
        ti->live_new += born_new;
    }
    w->out->objects++;
    if (!RH_IS_IMMORTAL(op))
        w->out->refs += Py_REFCNT(op);
    if (gc_is_tracked(op, ti, adopted))
        w->out->gc_tracked++;
}

static void count_static(const static_seen_t *s, void *arg)
{
    walk_arg_t *w = (walk_arg_t *)arg;
    s->ti->live++;
    w->out->objects++;
    if (!RH_IS_IMMORTAL((PyObject *)&s->header))
        w->out->refs += Py_REFCNT(&s->header);
    if (s->ti->is_gc && s->gc_next != 0)
        w->out->gc_tracked++;
}

/* A dict's keys table waiting in the interpreter's free list (3.11 and
 * 3.12 keep up to 80 of the smallest unicode ones; they fill over the
 * first calls of many tests): the block is exactly one such table (header
 * of four words, 8 index bytes, 5 entries of two words), its reference
 * count (the first word) is 0, where a table in use has 1 or more, and
 * its size and kind bytes say "smallest" and "unicode".  3.13 links its
 * free lists through the first word: not recognised there. */
static int free_listed_keys(const rh_block_t *b)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
    enum { KEYS_MIN_SIZE = 4 * sizeof(Py_ssize_t) + 8 + 5 * 2 * sizeof(void *) };
    if (rh_block_size(b) != KEYS_MIN_SIZE)
        return 0;
    const unsigned char *p = (const unsigned char *)rh_block_addr(b);
    return *(const Py_ssize_t *)p == 0 && p[sizeof(Py_ssize_t)] == 3 /* log2 size */ &&
           p[sizeof(Py_ssize_t) + 2] == 1 /* DICT_KEYS_UNICODE */;
#else
    (void)b;
    return 0;
#endif
}

int _rh_block_dead(const rh_block_t *b, PyObject **object)
{
    PyObject *op = NULL;
    int dead = 0;
    if (rh_block_domain(b) == RH_DOMAIN_OBJ) {
        if (_rh_recognize(b, &op, 0) == NULL)
            op = NULL;
        dead = (op != NULL && Py_REFCNT(op) == 0) || free_listed_keys(b);
    }
    if (object != NULL)
        *object = op;
    return dead;
}

void _rh_epoch_survivor(const rh_block_t *b, void *arg)
{
    rh_epoch_survivors_t *sv = (rh_epoch_survivors_t *)arg;
    uint32_t e = rh_block_epoch(b);
    int domain = rh_block_domain(b);
    if (domain == RH_DOMAIN_ADOPTED || e < sv->first || e - sv->first >= sv->n)
        return;
    if (_rh_block_dead(b, NULL)) {
        sv->dead++;
        return;
    }
    size_t size = rh_block_size(b);
    sv->blocks[e - sv->first]++;
    sv->bytes[e - sv->first] += (int64_t)size;
    if (sv->native != NULL && domain == RH_DOMAIN_NATIVE)
        sv->native[e - sv->first]++;
    if (sv->heap != NULL && RH_HEAP_BLOCK(domain, size))
        sv->heap[e - sv->first] += (int64_t)(size + RH_CHUNK_OVERHEAD);
}

/* ---- survivors that are the tables of dicts and sets -----------------------------
 *
 * A dict or a set whose keys come and go (an attribute set and deleted on
 * every call, a class's subclasses registered and dropped, threading's set
 * of the running threads' locks) is resized every so many calls: its new
 * table is born in the epoch of the resize and lives until the next one.
 * Such a survivor is state a later call replaces, told apart without
 * calling again: the block is the table of a live dict (ma_keys) or set
 * (table, once it outgrew the set's small table) born before the epochs
 * asked about.  A container the calls took from the interpreter's free
 * list keeps its block's older epoch and passes for older: a caller counts
 * objects and references too (a new container kept, or a key kept, moves
 * those counts). */

typedef struct {
    uintptr_t addr;
    uint32_t epoch;
} table_block_t;

typedef struct {
    table_block_t *items;       /* libc memory */
    size_t count, cap;
    uint32_t first, n;
    int failed;
    int64_t *tables;            /* n: tables found per epoch */
} table_arg_t;

static void collect_survivor(const rh_block_t *b, void *arg)
{
    table_arg_t *t = (table_arg_t *)arg;
    uint32_t e = rh_block_epoch(b);
    int domain = rh_block_domain(b);
    if ((domain != RH_DOMAIN_OBJ && domain != RH_DOMAIN_MEM) || e < t->first ||
        e - t->first >= t->n || t->failed)
        return;
    if (t->count == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        table_block_t *more = realloc(t->items, cap * sizeof(table_block_t));   /* libc */
        if (more == NULL) {
            t->failed = 1;
            return;
        }
        t->items = more;
        t->cap = cap;
    }
    t->items[t->count].addr = rh_block_addr(b);
    t->items[t->count].epoch = e;
    t->count++;
}

static int cmp_table_block(const void *a, const void *b)
{
    uintptr_t x = ((const table_block_t *)a)->addr, y = ((const table_block_t *)b)->addr;
    return x < y ? -1 : x > y;
}

/* A container's table at `table`: counted in its birth epoch when it is
 * one of the blocks collected, once (a table has one container). */
static void count_table(table_arg_t *t, uintptr_t table)
{
    if (table == 0)
        return;
    table_block_t key = {table, 0};
    table_block_t *hit = bsearch(&key, t->items, t->count, sizeof(table_block_t),
                                 cmp_table_block);
    if (hit != NULL && hit->epoch != 0) {
        t->tables[hit->epoch - t->first]++;
        hit->epoch = 0;
    }
}

static void match_container_table(const rh_block_t *b, void *arg)
{
    table_arg_t *t = (table_arg_t *)arg;
    PyObject *op;
    if (rh_block_epoch(b) >= t->first && rh_block_domain(b) != RH_DOMAIN_ADOPTED)
        return;                 /* a container of the calls: its table is its own growth */
    if (_rh_recognize(b, &op, 1) == NULL)
        return;
    if (PyDict_Check(op))
        count_table(t, (uintptr_t)((PyDictObject *)op)->ma_keys);
    else if (PyAnySet_Check(op)) {
        PySetObject *so = (PySetObject *)op;
        if (so->table != so->smalltable)
            count_table(t, (uintptr_t)so->table);
    }
}

/* A dict or set of the STATIC table (memory from before tracking, found
 * through a reference): its table pointer read through safemem. */
static void match_static_container_table(const static_seen_t *s, void *arg)
{
    table_arg_t *t = (table_arg_t *)arg;
    PyTypeObject *type = (PyTypeObject *)s->ti->type;
    uintptr_t table;
    if (type->tp_flags & Py_TPFLAGS_DICT_SUBCLASS) {
        if (_rh_safe_read((uintptr_t)s->op + offsetof(PyDictObject, ma_keys), &table,
                          sizeof(table)) == 0)
            count_table(t, table);
    }
    else if (PyType_IsSubtype(type, &PySet_Type) || PyType_IsSubtype(type, &PyFrozenSet_Type)) {
        if (_rh_safe_read((uintptr_t)s->op + offsetof(PySetObject, table), &table,
                          sizeof(table)) == 0 &&
            table != (uintptr_t)s->op + offsetof(PySetObject, smalltable))
            count_table(t, table);
    }
}

int _rh_container_table_survivors(uint32_t first, uint32_t n, int64_t *tables)
{
    memset(tables, 0, sizeof(int64_t) * n);
    if (!_rh_tracker_active() || first == 0)
        return 0;
    table_arg_t t = {NULL, 0, 0, first, n, 0, tables};
    _rh_tracker_walk(RH_TABLE_GIL, collect_survivor, &t);
    if (!t.failed && t.count > 0) {
        qsort(t.items, t.count, sizeof(table_block_t), cmp_table_block);
        _rh_tracker_walk(RH_TABLE_GIL | RH_TABLE_ADOPTED, match_container_table, &t);
        static_objects(match_static_container_table, &t);
    }
    free(t.items);
    return t.failed ? -1 : 0;
}

static void count_object_survivor(const rh_block_t *b, void *arg)
{
    walk_arg_t *w = (walk_arg_t *)arg;
    if (rh_block_epoch(b) >= w->sv->first)
        _rh_epoch_survivor(b, w->sv);
    count_object(b, arg);
}

/* The walk by two threads (tracker.c, _rh_tracker_walk_split): the helper
 * counts into totals, survivors and per-type counts of its own, added to
 * the caller's after the join.  Its counters live in `scratch`, mmap'd and
 * kept (GIL-guarded): malloc here would move the heap figure the screen
 * compares.  -1: not done (no memory, no thread). */
static int64_t *scratch = NULL;
static size_t scratch_len = 0;          /* int64s */

static int64_t *scratch_for(size_t n)
{
    if (n > scratch_len) {
        size_t len = n + n / 2 + 1024;
        void *p = mmap(NULL, len * sizeof(int64_t), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        if (scratch != NULL)
            munmap(scratch, scratch_len * sizeof(int64_t));
        scratch = p;
        scratch_len = len;
    }
    memset(scratch, 0, n * sizeof(int64_t));
    return scratch;
}

static int split_walk(rh_visit_t visit, walk_arg_t *w, rh_typeinfo_t *types, size_t ncap)
{
    rh_walk_totals_t out2;
    memset(&out2, 0, sizeof(out2));
    rh_epoch_survivors_t sv2;
    size_t nsv = w->sv != NULL ? 3 * (size_t)w->sv->n : 0;
    int64_t *live = scratch_for(2 * ncap + nsv);
    if (live == NULL)
        return -1;
    if (w->sv != NULL) {
        sv2 = *w->sv;
        sv2.blocks = live + 2 * ncap;
        sv2.bytes = sv2.blocks + sv2.n;
        sv2.heap = w->sv->heap != NULL ? sv2.bytes + sv2.n : NULL;
        sv2.dead = 0;
    }
    walk_arg_t w2 = {&out2, w->first_epoch, w->sv != NULL ? &sv2 : NULL, types, live};
    void *args[2] = {w, &w2};
    int rc = _rh_tracker_walk_split(RH_TABLE_GIL | RH_TABLE_ADOPTED, visit, args);
    if (rc == 0) {
        w->out->refs += out2.refs;
        w->out->objects += out2.objects;
        w->out->gc_tracked += out2.gc_tracked;
        for (size_t k = 0; k < ncap; k++) {
            types[k].live += live[2 * k];
            types[k].live_new += live[2 * k + 1];
        }
        if (w->sv != NULL) {
            for (uint32_t e = 0; e < sv2.n; e++) {
                w->sv->blocks[e] += sv2.blocks[e];
                w->sv->bytes[e] += sv2.bytes[e];
                if (sv2.heap != NULL)
                    w->sv->heap[e] += sv2.heap[e];
            }
            w->sv->dead += sv2.dead;
        }
    }
    return rc;
}

void _rh_objects_walk_survivors(rh_walk_totals_t *out, uint32_t first_epoch,
                                rh_epoch_survivors_t *sv, int threads)
{
    memset(out, 0, sizeof(*out));
    size_t ncap;
    rh_typeinfo_t *types = _rh_typeset_slots(&ncap);
    for (size_t i = 0; i < ncap; i++)
        types[i].live = types[i].live_new = 0;
    if (!_rh_tracker_active())
        return;
    walk_arg_t w = {out, first_epoch, sv, NULL, NULL};
    rh_visit_t visit = sv != NULL ? count_object_survivor : count_object;
    const char *alone = getenv("REFHOUND_WALK_THREADS");    /* "1": one thread only */
    if (alone != NULL && strcmp(alone, "1") == 0)
        threads = 1;
    if (threads < 2 || _rh_tracker_table_entries() < SPLIT_MIN_BLOCKS ||
        split_walk(visit, &w, types, ncap) < 0)
        _rh_tracker_walk(RH_TABLE_GIL | RH_TABLE_ADOPTED, visit, &w);
    static_objects(count_static, &w);
}

void _rh_objects_walk(rh_walk_totals_t *out, uint32_t first_epoch)
{
    _rh_objects_walk_survivors(out, first_epoch, NULL, 1);
}

/* ---- snapshots ---------------------------------------------------------------- */

typedef struct {
    rh_snapshot_t *snap;
    size_t cap;
    int failed;
} snap_arg_t;

static void snap_add(snap_arg_t *a, uintptr_t obj, uintptr_t type, Py_ssize_t refcnt)
{
    rh_snapshot_t *s = a->snap;
    if (s->count == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 4096;
        rh_snapentry_t *more = realloc(s->entries, cap * sizeof(rh_snapentry_t));   /* libc */
        if (more == NULL) {
            a->failed = 1;
            return;
        }
        s->entries = more;
        a->cap = cap;
    }
    s->entries[s->count].obj = obj;
    s->entries[s->count].type = type;
    s->entries[s->count].refcnt = refcnt;
    s->count++;
}

static void snap_object(const rh_block_t *b, void *arg)
{
    PyObject *op;
    if (_rh_recognize(b, &op, 1) == NULL || RH_IS_IMMORTAL(op))
        return;
    snap_add((snap_arg_t *)arg, (uintptr_t)op, (uintptr_t)Py_TYPE(op), Py_REFCNT(op));
}

static void snap_static(const static_seen_t *s, void *arg)
{
    if (RH_IS_IMMORTAL((PyObject *)&s->header))
        return;
    snap_add((snap_arg_t *)arg, (uintptr_t)s->op, (uintptr_t)Py_TYPE(&s->header),
             Py_REFCNT(&s->header));
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
    if (!_rh_tracker_active())
        return 0;
    snap_arg_t a = {snap, 0, 0};
    _rh_tracker_walk(RH_TABLE_GIL | RH_TABLE_ADOPTED, snap_object, &a);
    static_objects(snap_static, &a);
    if (a.failed) {
        _rh_snapshot_release(snap);
        return -1;
    }
    if (_rh_radix_sort(snap->entries, snap->count, sizeof(rh_snapentry_t),
                       offsetof(rh_snapentry_t, obj)) < 0)
        qsort(snap->entries, snap->count, sizeof(rh_snapentry_t), cmp_snapentry);
    return 0;
}

void _rh_snapshot_release(rh_snapshot_t *snap)
{
    free(snap->entries);
    snap->entries = NULL;
    snap->count = 0;
}

Py_ssize_t _rh_snapshot_refcnt(const rh_snapshot_t *snap, uintptr_t obj)
{
    size_t lo = 0, hi = snap->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (snap->entries[mid].obj < obj)
            lo = mid + 1;
        else if (snap->entries[mid].obj > obj)
            hi = mid;
        else
            return snap->entries[mid].refcnt;
    }
    return -1;
}

/* ---- single objects -------------------------------------------------------------- */

/* The live object `want` if the block that starts at `block` holds it, or
 * NULL; *ti_out and *entry (each may be NULL) get its type and entry. */
static PyObject *object_in(uintptr_t block, uintptr_t want, rh_typeinfo_t **ti_out,
                           rh_block_t *entry)
{
    rh_block_t b;
    PyObject *op = NULL;
    rh_typeinfo_t *ti = NULL;
    if (_rh_tracker_find(block, RH_TABLE_GIL | RH_TABLE_ADOPTED, &b))
        ti = _rh_recognize(&b, &op, 1);
    else if (_rh_tracker_find(block, RH_TABLE_STATIC, &b))
        op = static_object(&b, &ti);
    if (ti == NULL || op == NULL || (uintptr_t)op != want)
        return NULL;
    if (ti_out != NULL)
        *ti_out = ti;
    if (entry != NULL)
        *entry = b;
    return op;
}

int _rh_object_is_live(uintptr_t obj, uintptr_t type)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup(type), *found = NULL;
    if (ti == NULL || !_rh_tracker_active() || obj < ti->preheader)
        return 0;
    return object_in(obj - ti->preheader, obj, &found, NULL) != NULL && found == ti;
}

PyObject *_rh_object_at(uintptr_t addr, rh_block_t *entry)
{
    for (int k = 0; _rh_tracker_active() && k < RH_NOBJECT_OFFSETS; k++) {
        size_t off = rh_object_offset(k);
        if (addr < off)
            break;
        PyObject *op = object_in(addr - off, addr, NULL, entry);
        if (op != NULL)
            return op;
    }
    return NULL;
}

PyObject *_rh_object_in_block(uintptr_t block)
{
    rh_block_t b;
    PyObject *op;
    if (_rh_tracker_find(block, RH_TABLE_GIL, &b) && _rh_recognize(&b, &op, 1) != NULL)
        return op;
    return NULL;
}

int _rh_object_block(PyObject *op, rh_block_t *out)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup((uintptr_t)Py_TYPE(op));
    if (ti == NULL || (uintptr_t)op < ti->preheader)
        return 0;
    return _rh_tracker_find((uintptr_t)op - ti->preheader,
                            RH_TABLE_GIL | RH_TABLE_ADOPTED | RH_TABLE_STATIC, out);
}
