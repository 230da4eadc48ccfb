/*
 * Sanitize case: native_use_after_free -- a calloc'd table read after
 * free() in a helper thread of the extension's own, without the GIL.
 *
 * leaky() starts a thread that builds a table with calloc, frees it, then
 * reads its first entry to return it; clean() reads the entry first.  The
 * free came one step too early: it is the culprit, as for any use after
 * free.  Native blocks are guarded in any thread.
 *
 * Not part of the bug zoo: natively this reads freed memory.  Run it under
 * --sanitize only (tests/e2e/test_sanitize.py).
 *
 * zoo-kind: memory-error
 * zoo-expect: refs=0 objects=0 blocks=0
 * zoo-description: calloc'd table read after free() in a thread of the extension's
 * sanitize-expect: use-after-free
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdlib.h>

#define ENTRIES 16

typedef struct {
    int early;
    long result;
} job_t;

static void *
work(void *arg)
{
    job_t *job = arg;
    long *volatile table = calloc(ENTRIES, sizeof(long));
    if (table == NULL) {
        job->result = -1;
        return NULL;
    }
    for (int i = 0; i < ENTRIES; i++) {
        table[i] = i + 1;
    }
    if (job->early) {
        free(table);  /* @culprit */
        job->result = table[0];
    }
    else {
        job->result = table[0];
        free(table);
    }
    return NULL;
}

static PyObject *
run(int early)
{
    job_t job = {early, 0};
    pthread_t t;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&t, NULL, work, &job);
    if (rc == 0) {
        pthread_join(t, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0 || job.result < 0) {
        return PyErr_NoMemory();
    }
    return PyLong_FromLong(job.result);
}

static PyObject *
leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return run(1);
}

static PyObject *
clean(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return run(0);
}

static PyMethodDef methods[] = {
    {"leaky", leaky, METH_NOARGS, "reads a calloc'd table after freeing it, in a thread"},
    {"clean", clean, METH_NOARGS, "reads, then frees"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_use_after_free", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_native_use_after_free(void)
{
    return PyModule_Create(&moduledef);
}
