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
 * Symbolization runs outside the allocator hooks and copies every string
 * it returns into the caller's rh_symbolized_t: nothing of the Dwfl
 * session escapes, and nothing is allocated through Python while
 * dwfl_lock is held.  The CFI rules (_rh_cfi_rule) are asked from the
 * hooks of every thread.  The Dwfl session is created on first use and
 * kept until _rh_symbols_forget().
 *
 * Locking: dwfl_lock guards dwfl (and libdw's caches inside it).  The
 * thread-local in_dwfl marks a thread that holds it: should an allocation
 * ever reach the hooks from inside libdw on that thread (libdw uses libc
 * malloc, so none does today), its CFI look-up answers "no rule" instead
 * of waiting for itself.
 */
#include "symbols.h"

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
static pthread_mutex_t dwfl_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_dwfl;
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
    f->reason = why;
}

#ifdef HAVE_LIBDW
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
    modname = dwfl_module_info(m, NULL, &mod_start, NULL, NULL, NULL, NULL, NULL);
    GElf_Sym sym;
    GElf_Off sym_off = 0;
    const char *symname = dwfl_module_addrinfo(m, pc, &sym_off, &sym, NULL, NULL, NULL);
    Dwarf_Addr bias = 0;
    Dwarf_Die *cu = dwfl_module_addrdie(m, pc, &bias);
    if (cu == NULL) {
        add_frame(out, modname, symname, NULL, 0, 0, (unsigned long)sym_off,
                  "no DWARF debug information for this module");
        return;
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
        add_frame(out, modname, fn ? fn : symname,
                  full_path(file, comp_dir, pathbuf, sizeof(pathbuf)), line, inlined,
                  (unsigned long)sym_off, NULL);
        emitted++;
        if (!inlined)
            break;
        /* The caller's line is this inlined call's call site. */
        call_site(&chain[i], files, &file, &line);
    }
    free(chain);
    if (emitted == 0)
        add_frame(out, modname, symname, full_path(file, comp_dir, pathbuf, sizeof(pathbuf)),
                  line, 0, (unsigned long)sym_off, NULL);
}
#endif

void _rh_symbolize(uintptr_t pc, rh_symbolized_t *out)
{
    out->nframes = 0;
    out->used = 0;
#ifdef HAVE_LIBDW
    pthread_mutex_lock(&dwfl_lock);
    in_dwfl = 1;
    symbolize_locked(pc, out);
    in_dwfl = 0;
    pthread_mutex_unlock(&dwfl_lock);
#else
    Dl_info info;
    if (dladdr((void *)pc, &info) && info.dli_fname)
        add_frame(out, info.dli_fname, info.dli_sname, NULL, 0, 0,
                  info.dli_saddr ? (unsigned long)(pc - (uintptr_t)info.dli_saddr) : 0,
                  "refhound was built without libdw (install libdw-dev and rebuild)");
    else
        add_frame(out, NULL, NULL, NULL, 0, 0, 0, "address in no loaded module");
#endif
}

/* How to step from a frame at pc to its caller (unwind.c's cache fills
 * itself from here).  0 and *rule filled, or -1: no simple rule (the
 * caller falls back to the compiler's unwinder). */
int _rh_cfi_rule(uintptr_t pc, rh_cfi_rule_t *rule)
{
#ifdef HAVE_LIBDW
    if (in_dwfl)
        return -1;      /* this thread holds dwfl_lock: never wait on ourselves */
    int ok = -1;
    pthread_mutex_lock(&dwfl_lock);
    in_dwfl = 1;
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
    in_dwfl = 0;
    pthread_mutex_unlock(&dwfl_lock);
    return ok;
#else
    return -1;
#endif
}

void _rh_symbols_forget(void)
{
#ifdef HAVE_LIBDW
    pthread_mutex_lock(&dwfl_lock);
    if (dwfl != NULL)
        dwfl_end(dwfl);
    dwfl = NULL;
    pthread_mutex_unlock(&dwfl_lock);
#endif
}

int _rh_symbols_have_dwarf(void)
{
#ifdef HAVE_LIBDW
    return 1;
#else
    return 0;
#endif
}
