/* guard_alloc.c — an object allocator that serves small blocks right
 * after a PROT_NONE page, so that reading even one byte before a block
 * faults (an electric fence), for the engine's host-process tests.
 *
 * install() puts it in front of the obj domain's allocator and arms it:
 * requests of up to 64 bytes get fenced blocks, everything else (and
 * every block it did not hand out) goes to the previous allocator.
 * disarm() stops fencing new blocks; the allocator stays installed so the
 * fenced blocks still alive are freed here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_FENCED 4096

static PyMemAllocatorEx prev, ours;
static void *fenced[MAX_FENCED];
static size_t sizes[MAX_FENCED];
static int nfenced, armed, installed;

static long page(void) { return sysconf(_SC_PAGESIZE); }

static int find(void *p)
{
    for (int i = 0; i < nfenced; i++)
        if (fenced[i] == p)
            return i;
    return -1;
}

static void *fence(size_t size)
{
    if (!armed || size > 64 || nfenced == MAX_FENCED)
        return NULL;
    char *base = mmap(NULL, 2 * page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    mprotect(base, page(), PROT_NONE);
    fenced[nfenced] = base + page();
    sizes[nfenced] = size;
    return fenced[nfenced++];
}

static void unfence(int i)
{
    munmap((char *)fenced[i] - page(), 2 * page());
    fenced[i] = fenced[--nfenced];
    sizes[i] = sizes[nfenced];
}

static void *g_malloc(void *ctx, size_t size)
{
    void *p = fence(size);
    return p != NULL ? p : prev.malloc(prev.ctx, size);
}

static void *g_calloc(void *ctx, size_t n, size_t size)
{
    void *p = n != 0 && size <= 64 / n ? fence(n * size) : NULL;
    if (p != NULL)
        memset(p, 0, n * size);
    return p != NULL ? p : prev.calloc(prev.ctx, n, size);
}

static void *g_realloc(void *ctx, void *ptr, size_t size)
{
    int i = ptr != NULL ? find(ptr) : -1;
    if (i < 0)
        return prev.realloc(prev.ctx, ptr, size);
    void *q = g_malloc(ctx, size);
    if (q == NULL)
        return NULL;
    memcpy(q, ptr, sizes[i] < size ? sizes[i] : size);
    unfence(find(ptr));
    return q;
}

static void g_free(void *ctx, void *ptr)
{
    int i = ptr != NULL ? find(ptr) : -1;
    if (i >= 0)
        unfence(i);
    else
        prev.free(prev.ctx, ptr);
}

static PyObject *install(PyObject *mod, PyObject *unused)
{
    if (!installed) {
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &prev);
        ours = (PyMemAllocatorEx){NULL, g_malloc, g_calloc, g_realloc, g_free};
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &ours);
        installed = 1;
    }
    armed = 1;
    Py_RETURN_NONE;
}

static PyObject *disarm(PyObject *mod, PyObject *unused)
{
    armed = 0;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"install", install, METH_NOARGS, NULL},
    {"disarm", disarm, METH_NOARGS, NULL},
    {NULL}
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "guard_alloc", NULL, -1, methods};

PyMODINIT_FUNC PyInit_guard_alloc(void) { return PyModule_Create(&def); }
