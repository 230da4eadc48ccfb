/* dwapi.h — elfutils' libdw, loaded at run time (dwapi.c): the few types,
 * constants and functions symbols.c uses, declared here so that no
 * elfutils header is needed to build refhound.  Only libdw.so.1 (Debian:
 * libdw1, pulled in by perf, gdb, GStreamer, debuginfod, ...) is needed to
 * use it.
 *
 * The declarations copy elfutils' public ABI, stable since 0.158: the
 * types whose layout refhound touches (Dwarf_Die, Dwarf_Attribute,
 * Dwarf_Op, Dwfl_Callbacks) and opaque pointers for the rest.
 */
#ifndef RH_DWAPI_H
#define RH_DWAPI_H

#ifndef REFHOUND_CORE_BUILD
#error "dwapi.h is internal to refhound's engine (src/core)"
#endif
#include <elf.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef uint64_t Dwarf_Addr, Dwarf_Word, Dwarf_Off;
typedef int64_t Dwarf_Sword;
typedef struct Dwfl Dwfl;
typedef struct Dwfl_Module Dwfl_Module;
typedef struct Dwfl_Line Dwfl_Line;
typedef struct Dwarf Dwarf;
typedef struct Dwarf_CU Dwarf_CU;
typedef struct Dwarf_Files_s Dwarf_Files;
typedef struct Dwarf_CFI_s Dwarf_CFI;
typedef struct Dwarf_Frame_s Dwarf_Frame;
typedef struct Dwarf_Abbrev Dwarf_Abbrev;
typedef struct Elf Elf;

typedef struct {            /* libdw.h */
    void *addr;
    Dwarf_CU *cu;
    Dwarf_Abbrev *abbrev;
    long int padding__;
} Dwarf_Die;

typedef struct {            /* libdw.h */
    unsigned int code;
    unsigned int form;
    unsigned char *valp;
    Dwarf_CU *cu;
} Dwarf_Attribute;

typedef struct {            /* libdw.h */
    uint8_t atom;
    Dwarf_Word number;
    Dwarf_Word number2;
    Dwarf_Word offset;
} Dwarf_Op;

typedef int rh_find_elf_fn(Dwfl_Module *, void **, const char *, Dwarf_Addr, char **, Elf **);
typedef int rh_find_debuginfo_fn(Dwfl_Module *, void **, const char *, Dwarf_Addr,
                                 const char *, const char *, Elf64_Word, char **);
typedef struct {            /* libdwfl.h */
    rh_find_elf_fn *find_elf;
    rh_find_debuginfo_fn *find_debuginfo;
    void *section_address;
    char **debuginfo_path;
} Dwfl_Callbacks;

/* dwarf.h */
enum {
    DW_TAG_lexical_block = 0x0b,
    DW_TAG_inlined_subroutine = 0x1d,
    DW_TAG_subprogram = 0x2e,
    DW_AT_comp_dir = 0x1b,
    DW_AT_abstract_origin = 0x31,
    DW_AT_call_file = 0x58,
    DW_AT_call_line = 0x59,
    DW_OP_consts = 0x11,
    DW_OP_plus = 0x22,
    DW_OP_plus_uconst = 0x23,
    DW_OP_breg0 = 0x70,
    DW_OP_breg6 = 0x76,
    DW_OP_breg7 = 0x77,
    DW_OP_bregx = 0x92,
    DW_OP_call_frame_cfa = 0x9c,
};

/* The functions, one X-macro line each: name, return type, parameters. */
#define RH_DW_FUNCTIONS(X) \
    X(dwfl_begin, Dwfl *, (const Dwfl_Callbacks *)) \
    X(dwfl_end, void, (Dwfl *)) \
    X(dwfl_report_begin, void, (Dwfl *)) \
    X(dwfl_report_end, int, (Dwfl *, void *, void *)) \
    X(dwfl_linux_proc_report, int, (Dwfl *, pid_t)) \
    X(dwfl_addrmodule, Dwfl_Module *, (Dwfl *, Dwarf_Addr)) \
    X(dwfl_module_info, const char *, (Dwfl_Module *, void ***, Dwarf_Addr *, Dwarf_Addr *, \
                                        Dwarf_Addr *, Dwarf_Addr *, const char **, \
                                        const char **)) \
    X(dwfl_module_addrinfo, const char *, (Dwfl_Module *, Dwarf_Addr, Elf64_Off *, Elf64_Sym *, \
                                            Elf64_Word *, Elf **, Dwarf_Addr *)) \
    X(dwfl_module_addrdie, Dwarf_Die *, (Dwfl_Module *, Dwarf_Addr, Dwarf_Addr *)) \
    X(dwfl_module_getsrc, Dwfl_Line *, (Dwfl_Module *, Dwarf_Addr)) \
    X(dwfl_lineinfo, const char *, (Dwfl_Line *, Dwarf_Addr *, int *, int *, Dwarf_Word *, \
                                     Dwarf_Word *)) \
    X(dwfl_module_eh_cfi, Dwarf_CFI *, (Dwfl_Module *, Dwarf_Addr *)) \
    X(dwfl_module_dwarf_cfi, Dwarf_CFI *, (Dwfl_Module *, Dwarf_Addr *)) \
    X(dwarf_getsrcfiles, int, (Dwarf_Die *, Dwarf_Files **, size_t *)) \
    X(dwarf_filesrc, const char *, (Dwarf_Files *, size_t, Dwarf_Word *, Dwarf_Word *)) \
    X(dwarf_attr, Dwarf_Attribute *, (Dwarf_Die *, unsigned int, Dwarf_Attribute *)) \
    X(dwarf_attr_integrate, Dwarf_Attribute *, (Dwarf_Die *, unsigned int, Dwarf_Attribute *)) \
    X(dwarf_formstring, const char *, (Dwarf_Attribute *)) \
    X(dwarf_formudata, int, (Dwarf_Attribute *, Dwarf_Word *)) \
    X(dwarf_formref_die, Dwarf_Die *, (Dwarf_Attribute *, Dwarf_Die *)) \
    X(dwarf_diename, const char *, (Dwarf_Die *)) \
    X(dwarf_tag, int, (Dwarf_Die *)) \
    X(dwarf_getscopes, int, (Dwarf_Die *, Dwarf_Addr, Dwarf_Die **)) \
    X(dwarf_child, int, (Dwarf_Die *, Dwarf_Die *)) \
    X(dwarf_siblingof, int, (Dwarf_Die *, Dwarf_Die *)) \
    X(dwarf_haspc, int, (Dwarf_Die *, Dwarf_Addr)) \
    X(dwarf_getscopes_die, int, (Dwarf_Die *, Dwarf_Die **)) \
    X(dwarf_offdie, Dwarf_Die *, (Dwarf *, Dwarf_Off, Dwarf_Die *)) \
    X(dwarf_dieoffset, Dwarf_Off, (Dwarf_Die *)) \
    X(dwarf_cu_getdwarf, Dwarf *, (Dwarf_CU *)) \
    X(dwarf_cfi_addrframe, int, (Dwarf_CFI *, Dwarf_Addr, Dwarf_Frame **)) \
    X(dwarf_frame_cfa, int, (Dwarf_Frame *, Dwarf_Op **, size_t *)) \
    X(dwarf_frame_register, int, (Dwarf_Frame *, int, Dwarf_Op *, Dwarf_Op **, size_t *))

#define RH_DW_POINTER(name, ret, params) ret (*name) params;
typedef struct {
    RH_DW_FUNCTIONS(RH_DW_POINTER)
    /* The standard callbacks, functions of libdw whose addresses go into a
     * Dwfl_Callbacks. */
    rh_find_elf_fn *dwfl_linux_proc_find_elf;
    rh_find_debuginfo_fn *dwfl_standard_find_debuginfo;
} rh_dwapi_t;
#undef RH_DW_POINTER

/* libdw's functions, or NULL when libdw.so.1 could not be loaded (or
 * REFHOUND_NO_LIBDW=1 was set); loads it on the first call, once per
 * process.  Call it first outside the allocator hooks (module init does):
 * dlopen takes the loader's lock. */
const rh_dwapi_t *_rh_dwapi(void);
/* Why _rh_dwapi() is NULL (a static string), or NULL when it is not. */
const char *_rh_dwapi_failure(void);

#endif /* RH_DWAPI_H */
