/* symbols.c — native address => module, function, source file and line.
 *
 * With elfutils' libdw (HAVE_LIBDW): the process's modules are reported
 * from /proc/self/maps into one Dwfl session; an address gives its module,
 * its ELF symbol, its line from the DWARF line table and, through the
 * DWARF scopes at that address, the chain of inlined functions with their
 * call sites.  A module that appeared after the last report (dlopen) is
 * found by reporting again.  Without debug information an address still
 * gets symbol+offset and a stated reason; without libdw, dladdr gives the
 * same.
 *
 * Runs outside the allocator hooks, under the GIL (the Python binding);
 * the Dwfl session is created on first use and kept.  Results are
 * cached per address.
 */
#include "rh_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_LIBDW
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

static Dwfl *dwfl;
static char *debuginfo_path;
/* Guards the Dwfl session: symbolization (GIL) and CFI look-ups from the
 * allocator hooks (any thread).  symbolizer_thread marks the thread that
 * holds it while building Python objects, whose allocations come back
 * into the hooks: there the unwinder must not wait for the lock. */
static pthread_mutex_t dwfl_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile uintptr_t symbolizer_thread;
static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .debuginfo_path = &debuginfo_path,
};

static int report_modules(void)
{
    if (dwfl == NULL) {
        dwfl = dwfl_begin(&callbacks);
        if (dwfl == NULL)
            return -1;
    }
    dwfl_report_begin(dwfl);
    int rc = dwfl_linux_proc_report(dwfl, getpid());
    dwfl_report_end(dwfl, NULL, NULL);
    return rc == 0 ? 0 : -1;
}

static Dwfl_Module *module_of(Dwarf_Addr addr)
{
    if (dwfl == NULL && report_modules() < 0)
        return NULL;
    Dwfl_Module *mod = dwfl_addrmodule(dwfl, addr);
    if (mod == NULL && report_modules() == 0)     /* loaded since: report again */
        mod = dwfl_addrmodule(dwfl, addr);
    return mod;
}

/* Call site (file, line) of an inlined-subroutine DIE. */
static void call_site(Dwarf_Die *die, Dwarf_Files *files, const char **file, int *line)
{
    Dwarf_Attribute attr;
    Dwarf_Word value;
    *file = NULL;
    *line = 0;
    if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &value) == 0)
        *line = (int)value;
    if (files != NULL && dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &value) == 0)
        *file = dwarf_filesrc(files, value, NULL, NULL);
}

static const char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    Dwarf_Die origin;
    const char *name = dwarf_diename(die);
    if (name == NULL && dwarf_attr_integrate(die, DW_AT_abstract_origin, &attr) &&
        dwarf_formref_die(&attr, &origin))
        name = dwarf_diename(&origin);
    return name;
}
#endif /* HAVE_LIBDW */

/* A source path as the user can open it: relative names in DWARF are
 * relative to the compilation directory (a package built by setup.py). */
static const char *full_path(const char *file, const char *comp_dir, char *buf, size_t size)
{
    if (file == NULL || file[0] == '/' || comp_dir == NULL || comp_dir[0] == '\0')
        return file;
    snprintf(buf, size, "%s/%s", comp_dir, file);
    return buf;
}

static PyObject *frame_dict(const char *module, const char *function, const char *file, int line,
                            int inlined, unsigned long offset, const char *why)
{
    return Py_BuildValue("{s:z,s:z,s:z,s:i,s:O,s:k,s:z}", "module", module, "function", function,
                         "file", file, "line", line, "inlined", inlined ? Py_True : Py_False,
                         "offset", offset, "reason", why);
}

/* symbolize(address, is_return_address=True) -> [frame, ...] innermost first:
 * an address inside inlined code gives the inlined functions first, then
 * the function they were inlined into, each with its own file:line. */
#ifdef HAVE_LIBDW
/* The frames of pc, appended to out (dwfl_lock held). */
static PyObject *symbolize_locked(uintptr_t pc, PyObject *out)
{
    Dwfl_Module *m = module_of(pc);
    if (m == NULL) {
        PyObject *f = frame_dict(NULL, NULL, NULL, 0, 0, 0, "address in no loaded module");
        if (f == NULL || PyList_Append(out, f) < 0)
            Py_CLEAR(out);
        Py_XDECREF(f);
        return out;
    }
    const char *modname = NULL;
    Dwarf_Addr mod_start;
    modname = dwfl_module_info(m, NULL, &mod_start, NULL, NULL, NULL, NULL, NULL);
    GElf_Sym sym;
    GElf_Off sym_off = 0;
    const char *symname = dwfl_module_addrinfo(m, pc, &sym_off, &sym, NULL, NULL, NULL);
    Dwarf_Addr bias = 0;
    Dwarf_Die *cu = dwfl_module_addrdie(m, pc, &bias);
    if (cu == NULL) {
        PyObject *f = frame_dict(modname, symname, NULL, 0, 0, (unsigned long)sym_off,
                                 "no DWARF debug information for this module");
        if (f == NULL || PyList_Append(out, f) < 0)
            Py_CLEAR(out);
        Py_XDECREF(f);
        return out;
    }
    /* The innermost line: from the line table. */
    const char *file = NULL;
    int line = 0;
    Dwfl_Line *dl = dwfl_module_getsrc(m, pc);
    if (dl != NULL)
        file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);
    Dwarf_Files *files = NULL;
    size_t nfiles;
    dwarf_getsrcfiles(cu, &files, &nfiles);
    Dwarf_Attribute cd_attr;
    const char *comp_dir = dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &cd_attr));
    char pathbuf[4096];
    /* The innermost scope at pc, then its concrete nesting (as
     * eu-addr2line -i does): inlined instances, innermost first, up to the
     * function they were inlined into. */
    Dwarf_Die *scopes = NULL;
    int nscopes = dwarf_getscopes(cu, pc - bias, &scopes);
    Dwarf_Die *chain = NULL;
    int nchain = 0;
    if (nscopes > 0) {
        Dwarf_Die innermost;
        if (dwarf_offdie(dwarf_cu_getdwarf(cu->cu), dwarf_dieoffset(&scopes[0]), &innermost))
            nchain = dwarf_getscopes_die(&innermost, &chain);
    }
    free(scopes);
    int emitted = 0;
    for (int i = 0; i < nchain; i++) {
        int tag = dwarf_tag(&chain[i]);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram)
            continue;
        const char *fn = die_name(&chain[i]);
        int inlined = tag == DW_TAG_inlined_subroutine;
        PyObject *f = frame_dict(modname, fn ? fn : symname,
                                 full_path(file, comp_dir, pathbuf, sizeof(pathbuf)), line,
                                 inlined, (unsigned long)sym_off, NULL);
        if (f == NULL || PyList_Append(out, f) < 0) {
            Py_XDECREF(f);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(f);
        emitted++;
        if (!inlined)
            break;
        /* The caller's line is this inlined call's call site. */
        call_site(&chain[i], files, &file, &line);
    }
    free(chain);
    if (out != NULL && emitted == 0) {
        PyObject *f = frame_dict(modname, symname,
                                 full_path(file, comp_dir, pathbuf, sizeof(pathbuf)), line, 0,
                                 (unsigned long)sym_off, NULL);
        if (f == NULL || PyList_Append(out, f) < 0)
            Py_CLEAR(out);
        Py_XDECREF(f);
    }
    return out;
}
#endif

static PyObject *symbols_symbolize(PyObject *mod, PyObject *args)
{
    unsigned long address;
    int is_return = 1;
    if (!PyArg_ParseTuple(args, "k|p", &address, &is_return))
        return NULL;
    /* A return address points after the call; the call is one byte back. */
    uintptr_t pc = is_return && address > 0 ? address - 1 : address;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
#ifdef HAVE_LIBDW
    pthread_mutex_lock(&dwfl_lock);
    __atomic_store_n(&symbolizer_thread, (uintptr_t)pthread_self(), __ATOMIC_RELAXED);
    out = symbolize_locked(pc, out);
    __atomic_store_n(&symbolizer_thread, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&dwfl_lock);
    return out;
#else
    Dl_info info;
    PyObject *f;
    if (dladdr((void *)pc, &info) && info.dli_fname)
        f = frame_dict(info.dli_fname, info.dli_sname, NULL, 0, 0,
                       info.dli_saddr ? (unsigned long)(pc - (uintptr_t)info.dli_saddr) : 0,
                       "refhound was built without libdw (install libdw-dev and rebuild)");
    else
        f = frame_dict(NULL, NULL, NULL, 0, 0, 0, "address in no loaded module");
    if (f == NULL || PyList_Append(out, f) < 0)
        Py_CLEAR(out);
    Py_XDECREF(f);
    return out;
#endif
}

/* How to step from a frame at pc to its caller (unwind.c's cache fills
 * itself from here).  0 and *rule filled, or -1: no simple rule (the
 * caller falls back to the compiler's unwinder). */
int _rh_cfi_rule(uintptr_t pc, rh_cfi_rule_t *rule)
{
#ifdef HAVE_LIBDW
    if (__atomic_load_n(&symbolizer_thread, __ATOMIC_RELAXED) == (uintptr_t)pthread_self())
        return -1;      /* we are inside the symbolizer: never wait on ourselves */
    int ok = -1;
    pthread_mutex_lock(&dwfl_lock);
    Dwfl_Module *m = module_of(pc);
    Dwarf_Addr bias = 0;
    Dwarf_CFI *cfi = m ? dwfl_module_eh_cfi(m, &bias) : NULL;
    if (cfi == NULL && m != NULL)
        cfi = dwfl_module_dwarf_cfi(m, &bias);
    Dwarf_Frame *frame = NULL;
    if (cfi != NULL && dwarf_cfi_addrframe(cfi, pc - bias, &frame) == 0) {
        Dwarf_Op *ops;
        size_t nops;
        /* CFA = rsp+N or rbp+N: DW_OP_breg7/6 N, or DW_OP_bregx 7/6 N. */
        int reg = -1;
        Dwarf_Sword off = 0;
        if (dwarf_frame_cfa(frame, &ops, &nops) == 0 && nops == 1) {
            if (ops[0].atom == DW_OP_breg7 || ops[0].atom == DW_OP_breg6) {
                reg = ops[0].atom - DW_OP_breg0;
                off = (Dwarf_Sword)ops[0].number;
            }
            else if (ops[0].atom == DW_OP_bregx) {
                reg = (int)ops[0].number;
                off = (Dwarf_Sword)ops[0].number2;
            }
        }
        if (reg == 7 || reg == 6) {
            rule->cfa_base = reg == 7 ? RH_CFA_RSP : RH_CFA_RBP;
            rule->cfa_offset = (int32_t)off;
            Dwarf_Op mem[3];
            if (dwarf_frame_register(frame, 6, mem, &ops, &nops) == 0) {
                if (nops == 0) {
                    rule->rbp = ops == NULL ? RH_RBP_SAME : RH_RBP_LOST;
                    ok = 0;
                }
                else if (nops == 3 && ops[0].atom == DW_OP_call_frame_cfa &&
                         ops[1].atom == DW_OP_consts && ops[2].atom == DW_OP_plus) {
                    rule->rbp = RH_RBP_SAVED;
                    rule->rbp_offset = (int32_t)(Dwarf_Sword)ops[1].number;
                    ok = 0;
                }
                else if (nops == 2 && ops[0].atom == DW_OP_call_frame_cfa &&
                         ops[1].atom == DW_OP_plus_uconst) {
                    rule->rbp = RH_RBP_SAVED;
                    rule->rbp_offset = (int32_t)ops[1].number;
                    ok = 0;
                }
            }
        }
    }
    free(frame);
    pthread_mutex_unlock(&dwfl_lock);
    return ok;
#else
    return -1;
#endif
}

static PyObject *symbols_forget(PyObject *mod, PyObject *unused)
{
#ifdef HAVE_LIBDW
    pthread_mutex_lock(&dwfl_lock);
    if (dwfl != NULL)
        dwfl_end(dwfl);
    dwfl = NULL;
    pthread_mutex_unlock(&dwfl_lock);
#endif
    Py_RETURN_NONE;
}

static PyObject *symbols_have_dwarf(PyObject *mod, PyObject *unused)
{
#ifdef HAVE_LIBDW
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

PyMethodDef _rh_symbols_methods[] = {
    {"symbols_have_dwarf", symbols_have_dwarf, METH_NOARGS, "was refhound built with libdw?"},
    {"symbolize", symbols_symbolize, METH_VARARGS,
     "symbolize(address, is_return_address=True) -> [{module, function, file, line, "
     "inlined, offset, reason}] innermost first"},
    {"forget_symbols", symbols_forget, METH_NOARGS, "drop the symbol session (re-read modules)"},
    {NULL}
};
