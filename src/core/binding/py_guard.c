/* py_guard.c — refhound._core: the guard allocator behind --sanitize
 * (guard.c).
 */
#include "binding.h"
#include "guard.h"

/* guard_start(report_fd, rate=1, budget=64 MiB, only_size=0, exact=False,
 * left=False) -> None: install the guard allocator and its fault handler
 * (once per process, before start()). */
static PyObject *core_guard_start(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"report_fd", "rate", "budget", "only_size", "exact", "left", NULL};
    int fd = -1, exact = 0, left = 0;
    unsigned int rate = 1;
    Py_ssize_t budget = 64 << 20, only_size = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "i|Innpp", kwlist, &fd, &rate, &budget,
                                     &only_size, &exact, &left))
        return NULL;
    if (budget < 0 || only_size < 0) {
        PyErr_SetString(PyExc_ValueError, "budget and only_size must not be negative");
        return NULL;
    }
    rh_guard_config_t config = {
        .rate = rate, .budget = (size_t)budget, .only_size = (size_t)only_size,
        .exact = exact, .left = left, .report_fd = fd,
    };
    const char *why = NULL;
    if (_rh_guard_start(&config, &why) < 0) {
        PyErr_Format(PyExc_RuntimeError, "refhound: %s", why);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *core_guard_stats(PyObject *mod, PyObject *unused)
{
    rh_guard_stats_t s;
    _rh_guard_stats(&s);
    return Py_BuildValue("{s:O,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
                         "active", _rh_guard_active() ? Py_True : Py_False,
                         "guarded", (unsigned long long)s.guarded,
                         "freed", (unsigned long long)s.freed,
                         "passed", (unsigned long long)s.passed,
                         "slots", (unsigned long long)s.slots,
                         "slots_used", (unsigned long long)s.slots_used,
                         "budget_full", (unsigned long long)s.budget_full,
                         "live", (unsigned long long)s.live,
                         "rate_now", (unsigned long long)s.rate_now);
}

static PyObject *core_guard_rearm(PyObject *mod, PyObject *unused)
{
    _rh_guard_rearm();
    Py_RETURN_NONE;
}

PyMethodDef _rh_py_guard_methods[] = {
    {"guard_rearm", core_guard_rearm, METH_NOARGS,
     "put the guard's fault handler back on top of handlers installed after it"},
    {"guard_start", (PyCFunction)(void (*)(void))core_guard_start, METH_VARARGS | METH_KEYWORDS,
     "guard_start(report_fd, rate=1, budget=64 MiB, only_size=0, exact=False, left=False): "
     "install the guard allocator (--sanitize) under the mem and obj domains, once, before "
     "start(); the first memory error is written to report_fd and ends the process"},
    {"guard_stats", core_guard_stats, METH_NOARGS,
     "guard allocator figures: active, guarded, freed, passed, slots, slots_used, "
     "budget_full, live, rate_now"},
    {NULL}
};
