/* native_helpers.c — an extension module for tests/e2e/test_native.py:
 * native allocations in every shape the native tracker must survive.
 *
 *   make_untracked(n) / free_untracked() / grow_untracked()
 *                       blocks born before tracking, freed or realloc'd after
 *   malloc_is_real()    does this module's GOT entry of malloc hold the C
 *                       library's malloc (not refhound's wrapper)?
 *   hammer_start(n) / hammer_stop()
 *                       n POSIX threads (no GIL) allocating and freeing with
 *                       every function of the family until stopped
 *   fork_and_alloc()    fork(); the child allocates and exits; the status
 *   leak96() / leak_sparse() / clean96()
 *                       96 bytes per call; 32 bytes every 100th call; none
 *   log_append()        a buffer that realloc() grows by 96 bytes per call
 *   map_leak() / map_clean()
 *                       16 KiB of anonymous mmap, touched, kept / unmapped
 *   libc_leak() / libc_clean()
 *                       a 40-byte string from asprintf() (allocated inside
 *                       the C library: no wrapper sees it), kept / freed
 *   load_side() / side_leak()
 *                       dlopen("libnative_side.so") by its bare name (found on
 *                       this module's RUNPATH only), and its leaking function
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char *volatile sink;

/* ---- blocks born before tracking ---------------------------------------- */

#define MAX_UNTRACKED 1024
static char *untracked[MAX_UNTRACKED];
static int nuntracked;

static PyObject *
make_untracked(PyObject *m, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n < 0 || n > MAX_UNTRACKED)
        return PyErr_Format(PyExc_ValueError, "0..%d", MAX_UNTRACKED);
    for (nuntracked = 0; nuntracked < n; nuntracked++) {
        untracked[nuntracked] = malloc(48);
        if (untracked[nuntracked] == NULL)
            return PyErr_NoMemory();
        memset(untracked[nuntracked], 1, 48);
    }
    Py_RETURN_NONE;
}

static PyObject *
grow_untracked(PyObject *m, PyObject *unused)
{
    for (int i = 0; i < nuntracked; i += 2) {
        char *p = realloc(untracked[i], 480);
        if (p == NULL)
            return PyErr_NoMemory();
        untracked[i] = p;
    }
    Py_RETURN_NONE;
}

static PyObject *
free_untracked(PyObject *m, PyObject *unused)
{
    for (int i = 0; i < nuntracked; i++)
        free(untracked[i]);
    nuntracked = 0;
    Py_RETURN_NONE;
}

static PyObject *
malloc_is_real(PyObject *m, PyObject *unused)
{
    void *(*mine)(size_t) = malloc;         /* through this module's GOT */
    void *libc = dlsym(RTLD_DEFAULT, "malloc");
    return PyBool_FromLong((void *)mine == libc);
}

/* ---- threads without the GIL ----------------------------------------------- */

#define MAX_THREADS 16
static pthread_t threads[MAX_THREADS];
static int nthreads;
static volatile int hammering;
static long ops[MAX_THREADS];

static void *
hammer(void *arg)
{
    long *count = arg;
    char *keep[8] = {0};
    unsigned k = 0;
    while (hammering) {
        unsigned i = k++ % 8;
        free(keep[i]);
        switch (k % 7) {
        case 0: keep[i] = malloc(16 + k % 200); break;
        case 1: keep[i] = calloc(4, 8 + k % 50); break;
        case 2: keep[i] = realloc(malloc(10), 100 + k % 300); break;
        case 3: keep[i] = strdup("some text from a thread"); break;
        case 4: if (posix_memalign((void **)&keep[i], 64, 128) != 0) keep[i] = NULL; break;
        case 5: keep[i] = aligned_alloc(32, 96); break;
        default: keep[i] = memalign(16, 40); break;
        }
        (*count)++;
    }
    for (int i = 0; i < 8; i++)
        free(keep[i]);
    return NULL;
}

static PyObject *
hammer_start(PyObject *m, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n < 1 || n > MAX_THREADS || nthreads != 0)
        return PyErr_Format(PyExc_ValueError, "1..%d threads, once", MAX_THREADS);
    hammering = 1;
    for (nthreads = 0; nthreads < n; nthreads++) {
        ops[nthreads] = 0;
        if (pthread_create(&threads[nthreads], NULL, hammer, &ops[nthreads]) != 0)
            return PyErr_Format(PyExc_RuntimeError, "pthread_create failed");
    }
    Py_RETURN_NONE;
}

static PyObject *
hammer_stop(PyObject *m, PyObject *unused)
{
    long total = 0;
    hammering = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < nthreads; i++)
        total += ops[i];
    nthreads = 0;
    return PyLong_FromLong(total);
}

/* ---- fork ---------------------------------------------------------------------- */

static PyObject *
fork_and_alloc(PyObject *m, PyObject *unused)
{
    pid_t pid = fork();
    if (pid < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (pid == 0) {
        for (int i = 0; i < 1000; i++) {
            char *p = malloc(64);
            char *q = strdup("in the child");
            free(p);
            free(q);
        }
        _exit(0);
    }
    int status = 0;
    pid_t r;
    Py_BEGIN_ALLOW_THREADS
    do {
        r = waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* ---- leaks of given sizes ------------------------------------------------------- */

static PyObject *
leak96(PyObject *m, PyObject *unused)
{
    char *p = malloc(96);  /* helpers: leak96 */
    if (p == NULL)
        return PyErr_NoMemory();
    memset(p, 3, 96);
    sink = p;
    Py_RETURN_NONE;
}

static PyObject *
clean96(PyObject *m, PyObject *unused)
{
    char *p = malloc(96);
    if (p == NULL)
        return PyErr_NoMemory();
    memset(p, 3, 96);
    sink = p;
    free(p);
    Py_RETURN_NONE;
}

static unsigned sparse_calls;

static PyObject *
leak_sparse(PyObject *m, PyObject *unused)
{
    if (sparse_calls++ % 100 == 0) {
        char *p = malloc(32);
        if (p == NULL)
            return PyErr_NoMemory();
        memset(p, 3, 32);
        sink = p;
    }
    Py_RETURN_NONE;
}

static char *log_buffer;
static size_t log_size;

static PyObject *
log_append(PyObject *m, PyObject *unused)
{
    char *bigger = realloc(log_buffer, log_size + 96);  /* helpers: log_append */
    if (bigger == NULL)
        return PyErr_NoMemory();
    memset(bigger + log_size, 'l', 96);
    log_buffer = bigger;
    log_size += 96;
    Py_RETURN_NONE;
}

/* ---- mmap --------------------------------------------------------------------------- */

#define MAP_BYTES (16 * 1024)

static void *
map_touched(void)
{
    char *p = mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 9, MAP_BYTES);
    return p;
}

static PyObject *
map_leak(PyObject *m, PyObject *unused)
{
    if (map_touched() == NULL)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *
map_clean(PyObject *m, PyObject *unused)
{
    void *p = map_touched();
    if (p == NULL)
        return PyErr_NoMemory();
    munmap(p, MAP_BYTES);
    Py_RETURN_NONE;
}

/* ---- a library found on this module's RUNPATH ---------------------------------- */

static char *volatile kept_string;

static PyObject *
libc_leak(PyObject *m, PyObject *unused)
{
    char *s;
    if (asprintf(&s, "%040d", 7) < 0)
        return PyErr_NoMemory();
    kept_string = s;            /* never freed: a 48-byte chunk per call */
    Py_RETURN_NONE;
}

static PyObject *
libc_clean(PyObject *m, PyObject *unused)
{
    char *s;
    if (asprintf(&s, "%040d", 7) < 0)
        return PyErr_NoMemory();
    free(s);
    Py_RETURN_NONE;
}

static int (*side_leak96)(void);

static PyObject *
load_side(PyObject *m, PyObject *unused)
{
    void *h = dlopen("libnative_side.so", RTLD_NOW);
    if (h == NULL)
        return PyUnicode_FromString(dlerror());
    side_leak96 = (int (*)(void))dlsym(h, "side_leak96");
    return PyBool_FromLong(side_leak96 != NULL);
}

static PyObject *
side_leak(PyObject *m, PyObject *unused)
{
    if (side_leak96 == NULL)
        return PyErr_Format(PyExc_RuntimeError, "load_side() first");
    return PyLong_FromLong(side_leak96());
}

static PyMethodDef methods[] = {
    {"make_untracked", make_untracked, METH_O, NULL},
    {"grow_untracked", grow_untracked, METH_NOARGS, NULL},
    {"free_untracked", free_untracked, METH_NOARGS, NULL},
    {"malloc_is_real", malloc_is_real, METH_NOARGS, NULL},
    {"hammer_start", hammer_start, METH_O, NULL},
    {"hammer_stop", hammer_stop, METH_NOARGS, NULL},
    {"fork_and_alloc", fork_and_alloc, METH_NOARGS, NULL},
    {"leak96", leak96, METH_NOARGS, NULL},
    {"clean96", clean96, METH_NOARGS, NULL},
    {"leak_sparse", leak_sparse, METH_NOARGS, NULL},
    {"log_append", log_append, METH_NOARGS, NULL},
    {"map_leak", map_leak, METH_NOARGS, NULL},
    {"map_clean", map_clean, METH_NOARGS, NULL},
    {"libc_leak", libc_leak, METH_NOARGS, NULL},
    {"libc_clean", libc_clean, METH_NOARGS, NULL},
    {"load_side", load_side, METH_NOARGS, NULL},
    {"side_leak", side_leak, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_helpers", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_native_helpers(void)
{
    return PyModule_Create(&moduledef);
}
