/* symbols.c — native address => module, function, source file and line.
 *
 * With elfutils' libdw, loaded at run time (dwapi.c: libdw.so.1, no
 * header needed at build time): the process's modules are reported from
 * /proc/self/maps into one Dwfl session; an address gives its module, its
 * ELF symbol, its line from the DWARF line table and, through the DWARF
 * scopes at that address, the chain of inlined functions with their call
 * sites.  A module that appeared after the last report (dlopen) is found
 * by reporting again.  A module unloaded (dlclose) and perhaps loaded
 * again elsewhere would still answer for its old range: before each
 * symbolization the loader's count of unloads (dl_iterate_phdr's
 * dlpi_subs) is compared with the one the session was made under, and a
 * new session is made when it moved (reporting again into the old session
 * left modules without symbols).  The count is read without dwfl_lock
 * held (the loader's lock is taken before dwfl_lock, never after: a hook
 * may run under the loader's lock).  Without debug information an address
 * still gets symbol+offset and a stated reason.  Without libdw.so.1, dladdr gives the
 * module, the symbol and the address in the module's file (file_address),
 * from which the binding has refhound._dwarf (pyelftools) read the lines,
 * outside the hooks.
 *
 * Symbolization runs outside the allocator hooks and copies every string
 * it returns into the caller's rh_symbolized_t: nothing of the Dwfl
 * session escapes, and nothing is allocated through Python while
 * dwfl_lock is held.  The CFI rules (_rh_cfi_rule) are asked from the
 * hooks of every thread.  The Dwfl session is created on first use and
 * kept until _rh_symbols_forget().
 *
 * Locking: dwfl_lock guards dwfl and callbacks (and libdw's caches inside
 * the session).  The thread-local in_dwfl marks a thread that holds it:
 * should an allocation ever reach the hooks from inside libdw on that
 * thread (libdw uses libc malloc, so none does today), its CFI look-up
 * answers "no rule" instead of waiting for itself.  dw (the function
 * table) is set once by _rh_symbols_init, at module init.
 */
#include "symbols.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dwapi.h"

#include <link.h>

static const rh_dwapi_t *dw;            /* NULL: no libdw */
static Dwfl *dwfl;
static char *debuginfo_path;
static pthread_mutex_t dwfl_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_dwfl;
static Dwfl_Callbacks callbacks;
/* The loader's count of unloads when dwfl was made (guarded by dwfl_lock). */
static unsigned long long session_subs;

/* fork (unwind.c's handlers call these, after taking unwind_lock): a fork
 * waits for dwfl_lock, so the child never inherits it held by a thread
 * that is gone, nor libdw's state half updated. */
void _rh_symbols_fork_prepare(void) { pthread_mutex_lock(&dwfl_lock); }
void _rh_symbols_fork_parent(void) { pthread_mutex_unlock(&dwfl_lock); }
void _rh_symbols_fork_child(void) { pthread_mutex_init(&dwfl_lock, NULL); }

void _rh_symbols_init(void)
{
    dw = _rh_dwapi();
    if (dw != NULL) {
        callbacks.find_elf = dw->dwfl_linux_proc_find_elf;
        callbacks.find_debuginfo = dw->dwfl_standard_find_debuginfo;
        callbacks.debuginfo_path = &debuginfo_path;
    }
}

static int subs_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs))
        *(unsigned long long *)data = info->dlpi_subs;
    return 1;       /* the count is the same in every entry: the first is enough */
}

/* The loader's count of unloads so far (no dwfl_lock held). */
static unsigned long long loader_subs(void)
{
    unsigned long long subs = 0;
    dl_iterate_phdr(subs_cb, &subs);
    return subs;
}

static int report_modules(void)
{
    if (dwfl == NULL) {
        dwfl = dw->dwfl_begin(&callbacks);
        if (dwfl == NULL)
            return -1;
    }
    dw->dwfl_report_begin(dwfl);
    int rc = dw->dwfl_linux_proc_report(dwfl, getpid());
    dw->dwfl_report_end(dwfl, NULL, NULL);
    return rc == 0 ? 0 : -1;
}

static Dwfl_Module *module_of(Dwarf_Addr addr)
{
    if (dwfl == NULL && report_modules() < 0)
        return NULL;
    Dwfl_Module *mod = dw->dwfl_addrmodule(dwfl, addr);
    if (mod == NULL && report_modules() == 0)     /* loaded since: report again */
        mod = dw->dwfl_addrmodule(dwfl, addr);
    return mod;
}

/* Call site (file, line) of an inlined-subroutine DIE. */
static void call_site(Dwarf_Die *die, Dwarf_Files *files, const char **file, int *line)
{
    Dwarf_Attribute attr;
    Dwarf_Word value;
    *file = NULL;
    *line = 0;
    if (dw->dwarf_formudata(dw->dwarf_attr(die, DW_AT_call_line, &attr), &value) == 0)
        *line = (int)value;
    if (files != NULL && dw->dwarf_formudata(dw->dwarf_attr(die, DW_AT_call_file, &attr), &value) == 0)
        *file = dw->dwarf_filesrc(files, value, NULL, NULL);
}

static const char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    Dwarf_Die origin;
    const char *name = dw->dwarf_diename(die);
    if (name == NULL && dw->dwarf_attr_integrate(die, DW_AT_abstract_origin, &attr) &&
        dw->dwarf_formref_die(&attr, &origin))
        name = dw->dwarf_diename(&origin);
    return name;
}

/* A source path as the user can open it: relative names in DWARF are
 * relative to the compilation directory (a package built by setup.py). */
static const char *full_path(const char *file, const char *comp_dir, char *buf, size_t size)
{
    if (file == NULL || file[0] == '/' || comp_dir == NULL || comp_dir[0] == '\0')
        return file;
    snprintf(buf, size, "%s/%s", comp_dir, file);
    return buf;
}

/* Copy a string into out->text; NULL when it is NULL or there is no room
 * left (16 KiB for at most 32 frames: only pathological paths). */
static const char *keep(rh_symbolized_t *out, const char *str)
{
    if (str == NULL)
        return NULL;
    size_t len = strlen(str) + 1;
    if (len > sizeof(out->text) - out->used)
        return NULL;
    char *dst = out->text + out->used;
    memcpy(dst, str, len);
    out->used += len;
    return dst;
}

static void add_frame(rh_symbolized_t *out, const char *module, const char *function,
                      const char *file, int line, int inlined, unsigned long offset,
                      const char *why)
{
    if (out->nframes >= RH_MAX_SOURCE_FRAMES)
        return;
    rh_frame_t *f = &out->frames[out->nframes++];
    f->module = keep(out, module);
    f->function = keep(out, function);
    f->file = keep(out, file);
    f->line = line;
    f->inlined = inlined;
    f->offset = offset;
    f->file_address = 0;
    f->reason = why;
}

#define MAX_NEST 64

/* The function, inlined instances and blocks whose ranges hold pc (an
 * address in the unit's terms), outermost first, found by descending only
 * into the DIEs that hold it: dwarf_getscopes and dwarf_getscopes_die walk
 * every DIE of the unit before them, which in a Cython module's one unit
 * (tens of thousands of DIEs) made the symbolization of a watch's stacks
 * take most of a second.  Returns how many; 0 when no function of the
 * unit's top level holds pc (a C++ function inside a namespace): the
 * caller then asks libdw's walk. */
static int scope_chain(Dwarf_Die *cu, Dwarf_Addr pc, Dwarf_Die *chain)
{
    Dwarf_Die parent = *cu;
    int n = 0;
    while (n < MAX_NEST) {
        Dwarf_Die child;
        if (dw->dwarf_child(&parent, &child) != 0)
            break;
        int found = 0;
        do {
            int tag = dw->dwarf_tag(&child);
            if ((tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine ||
                 tag == DW_TAG_lexical_block) && dw->dwarf_haspc(&child, pc) > 0) {
                found = 1;
                break;
            }
        } while (dw->dwarf_siblingof(&child, &child) == 0);
        if (!found)
            break;
        chain[n++] = child;
        parent = child;
    }
    return n;
}

/* The frames of pc (dwfl_lock held). */
static void symbolize_locked(uintptr_t pc, rh_symbolized_t *out)
{
    Dwfl_Module *m = module_of(pc);
    if (m == NULL) {
        add_frame(out, NULL, NULL, NULL, 0, 0, 0, "address in no loaded module");
        return;
    }
    const char *modname = NULL;
    Dwarf_Addr mod_start;
    modname = dw->dwfl_module_info(m, NULL, &mod_start, NULL, NULL, NULL, NULL, NULL);
    Elf64_Sym sym;
    Elf64_Off sym_off = 0;
    const char *symname = dw->dwfl_module_addrinfo(m, pc, &sym_off, &sym, NULL, NULL, NULL);
    Dwarf_Addr bias = 0;
    Dwarf_Die *cu = dw->dwfl_module_addrdie(m, pc, &bias);
    if (cu == NULL) {
        add_frame(out, modname, symname, NULL, 0, 0, (unsigned long)sym_off,
                  "no DWARF debug information for this module");
        return;
    }
    /* The innermost line: from the line table. */
    const char *file = NULL;
    int line = 0;
    Dwfl_Line *dl = dw->dwfl_module_getsrc(m, pc);
    if (dl != NULL)
        file = dw->dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);
    Dwarf_Files *files = NULL;
    size_t nfiles;
    dw->dwarf_getsrcfiles(cu, &files, &nfiles);
    Dwarf_Attribute cd_attr;
    const char *comp_dir = dw->dwarf_formstring(dw->dwarf_attr(cu, DW_AT_comp_dir, &cd_attr));
    char pathbuf[4096];
    /* The innermost scope at pc, then its concrete nesting (as
     * eu-addr2line -i does): inlined instances, innermost first, up to the
     * function they were inlined into. */
    Dwarf_Die nest[MAX_NEST];
    int nnest = scope_chain(cu, pc - bias, nest);
    Dwarf_Die *chain = NULL;        /* libdw's answer, innermost first */
    int nchain = 0;
    if (nnest == 0) {
        Dwarf_Die *scopes = NULL;
        int nscopes = dw->dwarf_getscopes(cu, pc - bias, &scopes);
        if (nscopes > 0) {
            Dwarf_Die innermost;
            if (dw->dwarf_offdie(dw->dwarf_cu_getdwarf(cu->cu), dw->dwarf_dieoffset(&scopes[0]),
                                 &innermost))
                nchain = dw->dwarf_getscopes_die(&innermost, &chain);
        }
        free(scopes);
    }
    int emitted = 0;
    int nscope = nnest > 0 ? nnest : nchain;
    for (int k = 0; k < nscope; k++) {
        Dwarf_Die *scope = nnest > 0 ? &nest[nnest - 1 - k] : &chain[k];
        int tag = dw->dwarf_tag(scope);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram)
            continue;
        const char *fn = die_name(scope);
        int inlined = tag == DW_TAG_inlined_subroutine;
        add_frame(out, modname, fn ? fn : symname,
                  full_path(file, comp_dir, pathbuf, sizeof(pathbuf)), line, inlined,
                  (unsigned long)sym_off, NULL);
        emitted++;
        if (!inlined)
            break;
        /* The caller's line is this inlined call's call site. */
        call_site(scope, files, &file, &line);
    }
    free(chain);
    if (emitted == 0)
        add_frame(out, modname, symname, full_path(file, comp_dir, pathbuf, sizeof(pathbuf)),
                  line, 0, (unsigned long)sym_off, NULL);
}

/* Without libdw: the module and symbol from the dynamic loader, and the
 * address as the module's ELF file has it (pc less the load bias), for
 * refhound._dwarf to read the lines. */
static void symbolize_dladdr(uintptr_t pc, rh_symbolized_t *out)
{
    Dl_info info;
    struct link_map *map = NULL;
    if (!dladdr1((void *)pc, &info, (void **)&map, RTLD_DL_LINKMAP) || info.dli_fname == NULL) {
        add_frame(out, NULL, NULL, NULL, 0, 0, 0, "address in no loaded module");
        return;
    }
    const char *module = info.dli_fname;
    char exe[4096];
    if (module[0] != '/') {         /* the main program: "" or its argv[0] */
        ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (len > 0) {
            exe[len] = '\0';
            module = exe;
        }
    }
    add_frame(out, module, info.dli_sname, NULL, 0, 0,
              info.dli_saddr ? (unsigned long)(pc - (uintptr_t)info.dli_saddr) : 0,
              _rh_dwapi_failure());
    if (map != NULL)
        out->frames[out->nframes - 1].file_address = pc - (uintptr_t)map->l_addr;
}

void _rh_symbolize(uintptr_t pc, rh_symbolized_t *out)
{
    out->nframes = 0;
    out->used = 0;
    if (dw == NULL) {
        symbolize_dladdr(pc, out);
        return;
    }
    unsigned long long subs = loader_subs();
    pthread_mutex_lock(&dwfl_lock);
    in_dwfl = 1;
    if (dwfl != NULL && subs != session_subs) {     /* unloaded since: a new session */
        dw->dwfl_end(dwfl);
        dwfl = NULL;
    }
    if (dwfl == NULL)
        session_subs = subs;
    symbolize_locked(pc, out);
    in_dwfl = 0;
    pthread_mutex_unlock(&dwfl_lock);
}

/* How to step from a frame at pc to its caller (unwind.c's cache fills
 * itself from here).  0 and *rule filled, or -1: no simple rule (the
 * caller falls back to the compiler's unwinder). */
int _rh_cfi_rule(uintptr_t pc, rh_cfi_rule_t *rule)
{
    if (dw == NULL || in_dwfl)
        return -1;      /* no libdw; or this thread holds dwfl_lock: never wait on ourselves */
    int ok = -1;
    pthread_mutex_lock(&dwfl_lock);
    in_dwfl = 1;
    Dwfl_Module *m = module_of(pc);
    Dwarf_Addr bias = 0;
    Dwarf_CFI *cfi = m ? dw->dwfl_module_eh_cfi(m, &bias) : NULL;
    if (cfi == NULL && m != NULL)
        cfi = dw->dwfl_module_dwarf_cfi(m, &bias);
    Dwarf_Frame *frame = NULL;
    if (cfi != NULL && dw->dwarf_cfi_addrframe(cfi, pc - bias, &frame) == 0) {
        Dwarf_Op *ops;
        size_t nops;
        /* CFA = rsp+N or rbp+N: DW_OP_breg7/6 N, or DW_OP_bregx 7/6 N. */
        int reg = -1;
        Dwarf_Sword off = 0;
        if (dw->dwarf_frame_cfa(frame, &ops, &nops) == 0 && nops == 1) {
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
            if (dw->dwarf_frame_register(frame, 6, mem, &ops, &nops) == 0) {
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
    in_dwfl = 0;
    pthread_mutex_unlock(&dwfl_lock);
    return ok;
}

void _rh_symbols_forget(void)
{
    if (dw == NULL)
        return;
    pthread_mutex_lock(&dwfl_lock);
    if (dwfl != NULL)
        dw->dwfl_end(dwfl);
    dwfl = NULL;
    pthread_mutex_unlock(&dwfl_lock);
}

int _rh_symbols_have_dwarf(void) { return dw != NULL; }

const char *_rh_symbols_failure(void) { return _rh_dwapi_failure(); }
