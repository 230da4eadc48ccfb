/* symbols.h — native address => module, function, file:line through libdw
 * (symbols.c; libdw.so.1 loaded at run time, dwapi.c), and the CFI rules
 * unwind.c caches.  dladdr and the address in the module's file without
 * libdw (the binding then reads the lines with refhound._dwarf). */
#ifndef RH_SYMBOLS_H
#define RH_SYMBOLS_H

#ifndef REFHOUND_CORE_BUILD
#error "symbols.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

/* How to step from a frame to its caller. */
enum { RH_CFA_RSP = 1, RH_CFA_RBP = 2 };
enum { RH_RBP_SAME = 0, RH_RBP_SAVED = 1, RH_RBP_LOST = 2 };
typedef struct {
    uint8_t cfa_base;       /* RH_CFA_*: CFA = that register + cfa_offset */
    uint8_t rbp;            /* RH_RBP_*: where the caller's rbp is */
    int32_t cfa_offset;
    int32_t rbp_offset;     /* RH_RBP_SAVED: at CFA + rbp_offset */
} rh_cfi_rule_t;

/* 0 and *rule filled, or -1: no simple rule at pc (or no libdw).  Called
 * from the allocator hooks (unwind.c's cache misses). */
int _rh_cfi_rule(uintptr_t pc, rh_cfi_rule_t *rule);

/* One source frame of an address; the strings point into the
 * rh_symbolized_t that holds it. */
typedef struct {
    const char *module, *function, *file;   /* NULL when unknown */
    int line;
    int inlined;
    unsigned long offset;                   /* from the ELF symbol */
    uintptr_t file_address;                 /* without libdw: the address in
                                               the module's ELF file; else 0 */
    const char *reason;                     /* static: why detail is missing */
} rh_frame_t;

#define RH_MAX_SOURCE_FRAMES 32
typedef struct {
    int nframes;
    rh_frame_t frames[RH_MAX_SOURCE_FRAMES];
    size_t used;
    char text[16384];                       /* the strings, copied */
} rh_symbolized_t;

/* The frames of pc (an exact address: subtract 1 from a return address),
 * innermost first: the inlined functions, then the function they were
 * inlined into, each with its own file:line.  Never allocates through
 * Python. */
void _rh_symbolize(uintptr_t pc, rh_symbolized_t *out);
/* Load libdw (once, at module init: outside the allocator hooks). */
void _rh_symbols_init(void);
/* pthread_atfork's three steps for dwfl_lock (registered by unwind.c, which
 * takes its own lock first: the order of the walk that asks for CFI). */
void _rh_symbols_fork_prepare(void);
void _rh_symbols_fork_parent(void);
void _rh_symbols_fork_child(void);
/* Drop the DWARF session (the modules are read again on next use). */
void _rh_symbols_forget(void);
/* Is libdw in use (libdw.so.1 loaded)? */
int _rh_symbols_have_dwarf(void);
/* Why not (a static string), or NULL when it is. */
const char *_rh_symbols_failure(void);

#endif /* RH_SYMBOLS_H */
