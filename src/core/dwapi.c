/* dwapi.c — elfutils' libdw, loaded at run time with dlopen.
 *
 * refhound names native frames file:line through libdw when the system
 * has its run-time library (libdw.so.1), and builds without its headers:
 * the functions are found with dlsym into one table, filled once
 * (pthread_once) and read-only afterwards.  A missing library, a missing
 * function or REFHOUND_NO_LIBDW=1 leaves the table unset with a reason;
 * symbols.c then names frames from the ELF symbol table and the Python
 * side reads DWARF with pyelftools (refhound._dwarf).
 *
 * The library handle is never closed: libdw's caches live as long as the
 * process, and a Dwfl session may still point into it.
 */
#include "dwapi.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static rh_dwapi_t api;
static const rh_dwapi_t *loaded;        /* &api once every function was found */
static const char *failure;             /* static string, when loaded is NULL */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    const char *off = getenv("REFHOUND_NO_LIBDW");
    if (off != NULL && strcmp(off, "1") == 0) {
        failure = "libdw is switched off (REFHOUND_NO_LIBDW=1)";
        return;
    }
    void *h = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        failure = "libdw.so.1 is not installed (apt-get install libdw1)";
        return;
    }
#define RH_DW_FIND(name, ret, params) \
    if ((*(void **)&api.name = dlsym(h, #name)) == NULL) \
        goto missing;
    RH_DW_FUNCTIONS(RH_DW_FIND)
    RH_DW_FIND(dwfl_linux_proc_find_elf, , )
    RH_DW_FIND(dwfl_standard_find_debuginfo, , )
#undef RH_DW_FIND
    loaded = &api;
    return;
missing:
    failure = "libdw.so.1 is too old (elfutils 0.158 or newer is needed)";
    memset(&api, 0, sizeof(api));
}

const rh_dwapi_t *_rh_dwapi(void)
{
    pthread_once(&once, load);
    return loaded;
}

const char *_rh_dwapi_failure(void)
{
    pthread_once(&once, load);
    return loaded != NULL ? NULL : failure;
}
