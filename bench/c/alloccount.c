/* alloccount.c — a bench-only probe: how many allocator calls a workload
 * makes, per PEP 445 domain, and how many raw-domain calls come from a
 * thread that does not hold the GIL.
 *
 * The hooks chain the allocators installed before them and only bump
 * atomic counters, so the probe tells what a tracker has to absorb (calls
 * per second), not what any tracker costs.  Built by bench/overhead.py with
 * tests/cbuild.py; never part of refhound.
 *
 *   start()  install the counting hooks (once; later calls reset counters)
 *   stop()   remove them when they are still on top
 *   counts() {"raw": n, "mem": n, "obj": n, "raw_nogil": n, "frees": n}
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { D_RAW, D_MEM, D_OBJ, D_RAW_NOGIL, D_FREE, D_N };

static unsigned long long counts[D_N];
static PyMemAllocatorEx prev[3], ours[3];
static int domain_ids[3] = {D_RAW, D_MEM, D_OBJ};
static int installed = 0;

static inline void bump(int which)
{
    __atomic_fetch_add(&counts[which], 1, __ATOMIC_RELAXED);
}

static inline void count_call(int d)
{
    bump(d);
    if (d == D_RAW && !PyGILState_Check())
        bump(D_RAW_NOGIL);
}

static void *c_malloc(void *ctx, size_t size)
{
    int d = *(int *)ctx;
    count_call(d);
    return prev[d].malloc(prev[d].ctx, size);
}

static void *c_calloc(void *ctx, size_t nelem, size_t elsize)
{
    int d = *(int *)ctx;
    count_call(d);
    return prev[d].calloc(prev[d].ctx, nelem, elsize);
}

static void *c_realloc(void *ctx, void *ptr, size_t size)
{
    int d = *(int *)ctx;
    count_call(d);
    return prev[d].realloc(prev[d].ctx, ptr, size);
}

static void c_free(void *ctx, void *ptr)
{
    int d = *(int *)ctx;
    if (ptr != NULL)
        bump(D_FREE);
    prev[d].free(prev[d].ctx, ptr);
}

static const PyMemAllocatorDomain domains[3] = {PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM,
                                                PYMEM_DOMAIN_OBJ};

static PyObject *ac_start(PyObject *mod, PyObject *unused)
{
    for (int i = 0; i < D_N; i++)
        __atomic_store_n(&counts[i], 0, __ATOMIC_RELAXED);
    if (!installed) {
        for (int i = 0; i < 3; i++) {
            PyMem_GetAllocator(domains[i], &prev[i]);
            ours[i] = (PyMemAllocatorEx){&domain_ids[i], c_malloc, c_calloc, c_realloc, c_free};
        }
        for (int i = 0; i < 3; i++)
            PyMem_SetAllocator(domains[i], &ours[i]);
        installed = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *ac_stop(PyObject *mod, PyObject *unused)
{
    if (installed) {
        for (int i = 0; i < 3; i++) {
            PyMemAllocatorEx cur;
            PyMem_GetAllocator(domains[i], &cur);
            if (cur.malloc != c_malloc)
                Py_RETURN_FALSE;
        }
        for (int i = 2; i >= 0; i--)
            PyMem_SetAllocator(domains[i], &prev[i]);
        installed = 0;
    }
    Py_RETURN_TRUE;
}

static PyObject *ac_counts(PyObject *mod, PyObject *unused)
{
    unsigned long long c[D_N];
    for (int i = 0; i < D_N; i++)
        c[i] = __atomic_load_n(&counts[i], __ATOMIC_RELAXED);
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K}", "raw", c[D_RAW], "mem", c[D_MEM],
                         "obj", c[D_OBJ], "raw_nogil", c[D_RAW_NOGIL], "frees", c[D_FREE]);
}

static PyMethodDef ac_methods[] = {
    {"start", ac_start, METH_NOARGS, "install the counting hooks and reset the counters"},
    {"stop", ac_stop, METH_NOARGS, "remove the counting hooks"},
    {"counts", ac_counts, METH_NOARGS, "allocator calls per domain since start()"},
    {NULL}
};

static struct PyModuleDef ac_module = {
    PyModuleDef_HEAD_INIT, "alloccount", "allocator call counts (bench probe)", -1, ac_methods,
};

PyMODINIT_FUNC PyInit_alloccount(void)
{
    return PyModule_Create(&ac_module);
}
