/*
 * Bug zoo: native_thread -- a worker thread's scratch buffer is never freed.
 *
 * leaky() starts a POSIX thread (no Python thread state, no GIL) that
 * malloc()s a 96-byte scratch buffer, computes with it and ends without
 * free(); the call waits for it with the GIL released.  One 96-byte native
 * block per call, allocated on a thread Python knows nothing of.  The
 * culprit is the allocation line in the worker.
 *
 * zoo-kind: native
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-native: blocks=1 bytes=96
 * zoo-description: 96-byte scratch buffer of a worker thread without the GIL never freed
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct job {
    int release;            /* the worker frees its scratch buffer */
    int seed;
    int result;
};

static char *volatile sink;   /* the buffer escapes */
static int counter;

static void *
worker(void *arg)
{
    struct job *job = arg;
    char *scratch = malloc(96);  /* @culprit */
    if (scratch == NULL) {
        job->result = -1;
        return NULL;
    }
    memset(scratch, job->seed & 0x7f, 96);
    job->result = scratch[50];
    sink = scratch;
    if (job->release) {
        free(scratch);
    }
    /* BUG (release == 0): the scratch buffer is never freed */
    return NULL;
}

static PyObject *
run_in_thread(void *(*fn)(void *), int release)
{
    struct job job = {release, counter++, 0};
    pthread_t thread;
    if (pthread_create(&thread, NULL, fn, &job) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot start a thread");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_join(thread, NULL);
    Py_END_ALLOW_THREADS
    if (job.result < 0) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return run_in_thread(worker, 0);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return run_in_thread(worker, 1);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "A worker thread leaks one 96-byte buffer per call."},
    {"clean", clean, METH_NOARGS, "Same code, the worker frees its buffer."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_thread", NULL, -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_native_thread(void)
{
    return PyModule_Create(&moduledef);
}
