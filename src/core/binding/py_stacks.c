/* py_stacks.c — refhound._core: allocation stacks and sites (stacks.c),
 * symbolization (symbols.c), the unwinders' self-check (unwind.c).
 */
#include "binding.h"
#include "objects.h"
#include "pyframes.h"
#include "stacks.h"
#include "symbols.h"
#include "tracker.h"
#include "typeset.h"
#include "unwind.h"

#include <stdlib.h>

static PyObject *py_capture_stacks(PyObject *mod, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    if (_rh_stacks_capture(on) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "refhound: no free observer slot for stacks");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_reset_stacks(PyObject *mod, PyObject *unused)
{
    _rh_stacks_reset();
    Py_RETURN_NONE;
}

/* sites(first_epoch, last_epoch) ->
 *     ([(stack id, blocks, bytes, root blocks, a root object or None)],
 *      unattributed blocks) */
static PyObject *py_sites(PyObject *mod, PyObject *args)
{
    unsigned long first, last;
    if (!PyArg_ParseTuple(args, "kk", &first, &last))
        return NULL;
    rh_site_t *sites;
    size_t n;
    int64_t unattributed;
    if (_rh_stacks_sites((uint32_t)first, (uint32_t)last, &sites, &n, &unattributed) < 0)
        return PyErr_NoMemory();
    int engine = _rh_engine_enter();
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < n; i++) {
        /* The sample is still alive: no Python code ran since the walk. */
        PyObject *item = Py_BuildValue(
            "(kLLLO)", (unsigned long)sites[i].stack, (long long)sites[i].blocks,
            (long long)sites[i].bytes, (long long)sites[i].roots,
            sites[i].sample != NULL ? sites[i].sample : Py_None);
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    free(sites);
    PyObject *res = out == NULL ? NULL : Py_BuildValue("(NL)", out, (long long)unattributed);
    _rh_engine_leave(engine);
    return res;
}

/* freed_stacks() -> {stack id: blocks released} for the stacks some of
 * whose blocks were released while recorded */
static PyObject *py_freed_stacks(PyObject *mod, PyObject *unused)
{
    rh_freed_t *freed;
    size_t n;
    if (_rh_stacks_freed(&freed, &n) < 0)
        return PyErr_NoMemory();
    int engine = _rh_engine_enter();
    PyObject *out = PyDict_New();
    for (size_t i = 0; out != NULL && i < n; i++) {
        PyObject *k = PyLong_FromUnsignedLong(freed[i].stack);
        PyObject *v = PyLong_FromLongLong(freed[i].freed);
        if (k == NULL || v == NULL || PyDict_SetItem(out, k, v) < 0)
            Py_CLEAR(out);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    free(freed);
    _rh_engine_leave(engine);
    return out;
}

/* stack(id) -> ([native return addresses], [(code or None, bytecode offset)]) */
static PyObject *py_stack(PyObject *mod, PyObject *arg)
{
    unsigned long id = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred())
        return NULL;
    uintptr_t native[RH_MAX_NATIVE], py[2 * RH_MAX_PY];
    int nn, npy;
    if (_rh_stack_copy((uint32_t)id, native, &nn, py, &npy) < 0)
        return Py_BuildValue("([][])");
    PyObject *ln = PyList_New(nn), *lp = PyList_New(npy);
    if (ln == NULL || lp == NULL)
        goto error;
    for (int i = 0; i < nn; i++) {
        PyObject *v = PyLong_FromUnsignedLong(native[i]);
        if (v == NULL)
            goto error;
        PyList_SET_ITEM(ln, i, v);
    }
    for (int i = 0; i < npy; i++) {
        /* Only a code object that is still alive can be named. */
        uintptr_t co = py[2 * i];
        PyObject *code = _rh_object_is_live(co, (uintptr_t)&PyCode_Type) ? (PyObject *)co : Py_None;
        PyObject *item = Py_BuildValue("(Ok)", code, (unsigned long)py[2 * i + 1]);
        if (item == NULL)
            goto error;
        PyList_SET_ITEM(lp, i, item);
    }
    return Py_BuildValue("(NN)", ln, lp);
error:
    Py_XDECREF(ln);
    Py_XDECREF(lp);
    return NULL;
}

/* stack_of(obj) -> the stack id of the object's block, 0 if none */
static PyObject *py_stack_of(PyObject *mod, PyObject *obj)
{
    rh_typeinfo_t *ti = _rh_typeset_lookup((uintptr_t)Py_TYPE(obj));
    uintptr_t block = (uintptr_t)obj - (ti ? ti->preheader : 0);
    return PyLong_FromUnsignedLong(_rh_stack_of(block));
}

/* Without libdw: the frames refhound._dwarf (pyelftools) reads for the
 * address in the module's file, or NULL (no exception) to keep the
 * engine's frame.  The engine's own work: its blocks belong to no
 * iteration and get no stack. */
static PyObject *dwarf_frames(const rh_frame_t *f)
{
    if (f->file_address == 0 || f->module == NULL)
        return NULL;
    int engine = _rh_engine_enter();
    PyObject *frames = NULL;
    PyObject *mod = PyImport_ImportModule("refhound._dwarf");
    if (mod != NULL) {
        frames = PyObject_CallMethod(mod, "resolve", "skzk", f->module,
                                     (unsigned long)f->file_address, f->function,
                                     f->offset);
        Py_DECREF(mod);
    }
    if (frames != NULL && !PyList_Check(frames))
        Py_CLEAR(frames);           /* None: no DWARF there */
    PyErr_Clear();
    _rh_engine_leave(engine);
    return frames;
}

/* Why a frame has no line when pyelftools gave none: libdw's absence, and
 * what refhound._dwarf says of the module. */
static PyObject *fallback_reason(const rh_frame_t *f)
{
    PyObject *why = NULL;
    int engine = _rh_engine_enter();
    PyObject *mod = f->module ? PyImport_ImportModule("refhound._dwarf") : NULL;
    if (mod != NULL) {
        why = PyObject_CallMethod(mod, "reason", "s", f->module);
        Py_DECREF(mod);
    }
    PyErr_Clear();
    _rh_engine_leave(engine);
    if (why == NULL || why == Py_None) {
        Py_XDECREF(why);
        why = PyUnicode_FromString(f->reason ? f->reason : "no source line");
    }
    return why;
}

/* symbolize(address, is_return_address=True) -> [frame, ...] innermost first */
static PyObject *py_symbolize(PyObject *mod, PyObject *args)
{
    unsigned long address;
    int is_return = 1;
    if (!PyArg_ParseTuple(args, "k|p", &address, &is_return))
        return NULL;
    /* A return address points after the call; the call is one byte back. */
    uintptr_t pc = is_return && address > 0 ? address - 1 : address;
    rh_symbolized_t *sym = malloc(sizeof(rh_symbolized_t));
    if (sym == NULL)
        return PyErr_NoMemory();
    _rh_symbolize(pc, sym);
    if (!_rh_symbols_have_dwarf() && sym->nframes == 1) {
        PyObject *frames = dwarf_frames(&sym->frames[0]);
        if (frames != NULL) {
            free(sym);
            return frames;
        }
    }
    PyObject *out = PyList_New(0);
    for (int i = 0; out != NULL && i < sym->nframes; i++) {
        const rh_frame_t *f = &sym->frames[i];
        PyObject *why;
        if (!_rh_symbols_have_dwarf() && f->file_address != 0)
            why = fallback_reason(f);
        else if (f->reason != NULL)
            why = PyUnicode_FromString(f->reason);
        else
            why = Py_NewRef(Py_None);
        PyObject *d = why == NULL ? NULL : Py_BuildValue(
            "{s:z,s:z,s:z,s:i,s:O,s:k,s:N}", "module", f->module, "function", f->function,
            "file", f->file, "line", f->line, "inlined", f->inlined ? Py_True : Py_False,
            "offset", f->offset, "reason", why);
        if (d == NULL || PyList_Append(out, d) < 0)
            Py_CLEAR(out);
        Py_XDECREF(d);
    }
    free(sym);
    return out;
}

static PyObject *py_forget_symbols(PyObject *mod, PyObject *unused)
{
    _rh_symbols_forget();
    Py_RETURN_NONE;
}

static PyObject *py_symbols_have_dwarf(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(_rh_symbols_have_dwarf());
}

/* native_paths() -> {"symbols": "libdw" | "pyelftools", "unwinder":
 * "cached-cfi" | "compiler", "libdw": None or why it is not used} */
static PyObject *py_native_paths(PyObject *mod, PyObject *unused)
{
    int dwarf = _rh_symbols_have_dwarf();
    return Py_BuildValue("{s:s,s:s,s:z}", "symbols", dwarf ? "libdw" : "pyelftools",
                         "unwinder", _rh_unwind_fast_available() ? "cached-cfi" : "compiler",
                         "libdw", _rh_symbols_failure());
}

static PyObject *address_list(const uintptr_t *a, int n)
{
    PyObject *out = PyList_New(n);
    for (int i = 0; out != NULL && i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLong(a[i]);
        if (v == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, v);
    }
    return out;
}

/* unwind_check() -> (fast addresses, compiler-unwinder addresses) from
 * here: for tests, the two walks must agree where the fast one goes. */
static PyObject *py_unwind_check(PyObject *mod, PyObject *unused)
{
    uintptr_t fast[64], slow[64];
    int nf = _rh_fast_backtrace(fast, 64, 0);
    int ns = _rh_native_backtrace(slow, 64);
    PyObject *a = address_list(fast, nf), *b = address_list(slow, ns);
    if (a == NULL || b == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    return Py_BuildValue("(NN)", a, b);
}

/* python_frames() -> ([(code, bytecode offset)] innermost first, C-to-Python
 * entries) of the calling thread, as the allocator hooks read them. */
static PyObject *py_python_frames(PyObject *mod, PyObject *unused)
{
    uintptr_t pairs[2 * 64];
    int entries = 0;
    int n = _rh_python_frames(pairs, 64, &entries);
    PyObject *out = PyList_New(n);
    for (int i = 0; out != NULL && i < n; i++) {
        PyObject *item = Py_BuildValue("(Ok)", (PyObject *)pairs[2 * i],
                                       (unsigned long)pairs[2 * i + 1]);
        if (item == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, item);
    }
    return out == NULL ? NULL : Py_BuildValue("(Ni)", out, entries);
}

PyMethodDef _rh_py_stacks_methods[] = {
    {"capture_stacks", py_capture_stacks, METH_O,
     "capture_stacks(on): record an allocation stack for every new block"},
    {"reset_stacks", py_reset_stacks, METH_NOARGS, "forget every recorded stack"},
    {"sites", py_sites, METH_VARARGS,
     "sites(first_epoch, last_epoch) -> ([(stack id, blocks, bytes, root blocks, sample "
     "object)], unattributed blocks)"},
    {"freed_stacks", py_freed_stacks, METH_NOARGS,
     "freed_stacks() -> {stack id: blocks released while recorded}"},
    {"stack", py_stack, METH_O, "stack(id) -> ([native addresses], [(code, offset)])"},
    {"stack_of", py_stack_of, METH_O, "stack_of(obj) -> stack id of its block, 0 if none"},
    {"symbols_have_dwarf", py_symbols_have_dwarf, METH_NOARGS,
     "is libdw (libdw.so.1, loaded at run time) in use?"},
    {"native_paths", py_native_paths, METH_NOARGS,
     "native_paths() -> {symbols: libdw|pyelftools, unwinder: cached-cfi|compiler, libdw: "
     "why not, or None}"},
    {"symbolize", py_symbolize, METH_VARARGS,
     "symbolize(address, is_return_address=True) -> [{module, function, file, line, "
     "inlined, offset, reason}] innermost first"},
    {"forget_symbols", py_forget_symbols, METH_NOARGS, "drop the symbol session (re-read modules)"},
    {"python_frames", py_python_frames, METH_NOARGS,
     "python_frames() -> ([(code, offset)] innermost first, C-to-Python entries): the frame "
     "chain as the hooks read it"},
    {"unwind_check", py_unwind_check, METH_NOARGS,
     "unwind_check() -> (fast walk, compiler unwinder) return addresses from here"},
    {NULL}
};
