/* static_ptrs.c — a C library that keeps static pointers to memory that
 * only looks like Python objects, for the engine's host-process tests
 * (tests/e2e/test_engine_safety.py).  Each pointer sits in this module's
 * .bss, where adoption scans for objects that existed before tracking.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *fake;          /* malloc'd bytes shaped like a float, later freed */
static void *fake_raw;      /* the same from PyMem_RawMalloc */
static void *fake_gc;       /* bytes shaped like an object of a GC type */
static void *unbacked;      /* a readable mapping with no page behind it */

typedef struct {
    Py_ssize_t refcnt;
    void *type;
    double value;
} float_shape_t;

/* make_fake(size) -> address: a plain malloc'd struct whose second word
 * is &PyFloat_Type (a large size is served by mmap and unmapped by free). */
static PyObject *make_fake(PyObject *mod, PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size < (Py_ssize_t)sizeof(float_shape_t))
        return PyErr_Format(PyExc_ValueError, "size too small");
    float_shape_t *f = malloc((size_t)size);
    if (f == NULL)
        return PyErr_NoMemory();
    memset(f, 0, (size_t)size);
    f->refcnt = 1;
    f->type = &PyFloat_Type;
    f->value = 2.5;
    fake = f;
    return PyLong_FromVoidPtr(fake);
}

static PyObject *free_fake(PyObject *mod, PyObject *unused)
{
    free(fake);                 /* the static pointer stays: dangling */
    Py_RETURN_NONE;
}

static PyObject *make_fake_raw(PyObject *mod, PyObject *unused)
{
    float_shape_t *f = PyMem_RawMalloc(sizeof(float_shape_t));
    if (f == NULL)
        return PyErr_NoMemory();
    f->refcnt = 1;
    f->type = &PyFloat_Type;
    f->value = 3.5;
    fake_raw = f;
    return PyLong_FromVoidPtr(fake_raw);
}

static PyObject *free_fake_raw(PyObject *mod, PyObject *unused)
{
    PyMem_RawFree(fake_raw);    /* through the raw domain: dangling too */
    Py_RETURN_NONE;
}

/* make_fake_gc() -> address: bytes with a GC type's pointer in the type
 * word and a plausible refcount, not known to the GC (libpython's
 * _PyOS_optarg once pointed at such bytes in freed argv memory). */
static PyObject *make_fake_gc(PyObject *mod, PyObject *unused)
{
    uintptr_t *w = calloc(8, sizeof(uintptr_t));
    if (w == NULL)
        return PyErr_NoMemory();
    w[0] = 0x4141414141414141;          /* where a GC head would be */
    w[1] = 0x4242424242424242;
    w[2] = 1957;                        /* refcount */
    w[3] = (uintptr_t)&PyAsyncGen_Type; /* type */
    fake_gc = &w[2];
    return PyLong_FromVoidPtr(fake_gc);
}

/* make_unbacked() -> address: a pointer into a readable shared mapping of
 * an empty file: listed readable in /proc/self/maps, SIGBUS on access. */
static PyObject *make_unbacked(PyObject *mod, PyObject *unused)
{
    char path[] = "/tmp/refhound-unbackedXXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    unlink(path);
    void *p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return PyErr_SetFromErrno(PyExc_OSError);
    unbacked = (char *)p + 64;
    return PyLong_FromVoidPtr(unbacked);
}

static PyMethodDef methods[] = {
    {"make_fake", make_fake, METH_O, NULL},
    {"free_fake", free_fake, METH_NOARGS, NULL},
    {"make_fake_raw", make_fake_raw, METH_NOARGS, NULL},
    {"free_fake_raw", free_fake_raw, METH_NOARGS, NULL},
    {"make_fake_gc", make_fake_gc, METH_NOARGS, NULL},
    {"make_unbacked", make_unbacked, METH_NOARGS, NULL},
    {NULL}
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "static_ptrs", NULL, -1, methods};

PyMODINIT_FUNC PyInit_static_ptrs(void) { return PyModule_Create(&def); }
