/* pymalloc_stats.c — pymalloc's pool and arena figures as numbers.
 *
 * CPython prints them (PYTHONMALLOCSTATS, sys._debugmallocstats()) with
 * _PyObject_DebugMallocStats(FILE *); this file has it print into an
 * open_memstream buffer (libc memory, never a Python allocator; released
 * with _rh_native_release, as the C library allocated it) and parses the
 * text into an rh_pymalloc_t.  The function is exported by libpython
 * 3.9-3.13 but declared only in internal headers from 3.11, so it is found
 * with dlsym at run time: a build without it degrades to "no figures".
 *
 * The text parsed (3.9-3.13, Objects/obmalloc.c, same layout throughout):
 *   Small block threshold = 512, in 32 size classes.
 *   class   size   num pools   blocks in use  avail blocks
 *       5     96           9            1526             4
 *   # arenas allocated total           =                    4
 *   # arenas reclaimed                 =                    0
 *   # arenas highwater mark            =                    4
 *   # arenas allocated current         =                    4
 *   4 arenas * 1048576 bytes/arena     =            4,194,304
 *   # bytes in allocated blocks        =            3,497,584
 *   # bytes in available blocks        =              324,896
 *   19 unused pools * 16384 bytes      =              311,296
 *   # bytes lost to pool headers       =               11,280
 *   # bytes lost to quantization       =               16,480
 *   # bytes lost to arena alignment    =               32,768
 * It prints nothing and returns 0 when pymalloc is not the object
 * allocator (PYTHONMALLOC=malloc, --without-pymalloc, mimalloc).
 *
 * Needs the GIL (the allocator's state is read without a lock).
 */
#include "pymalloc_stats.h"
#include "native.h"
#include "tracker.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*stats_fn_t)(FILE *);

/* Value after the last '=' on the line, commas removed; -1 if none. */
static int64_t value_after_equals(const char *line)
{
    const char *eq = strrchr(line, '=');
    if (eq == NULL)
        return -1;
    int64_t v = 0;
    int digits = 0;
    for (const char *p = eq + 1; *p && *p != '\n'; p++) {
        if (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p - '0');
            digits++;
        }
        else if (*p != ',' && *p != ' ')
            break;
    }
    return digits ? v : -1;
}

static int starts(const char *line, const char *prefix)
{
    return strncmp(line, prefix, strlen(prefix)) == 0;
}

static void parse_line(const char *line, rh_pymalloc_t *out)
{
    long long a, b, c, d, e;
    if (sscanf(line, "Small block threshold = %lld, in %lld size classes", &a, &b) == 2) {
        out->small_block_threshold = a;
        out->nclasses = b > RH_PYMALLOC_MAX_CLASSES ? RH_PYMALLOC_MAX_CLASSES : (int)b;
        return;
    }
    if (starts(line, "# arenas allocated total"))
        out->arenas_allocated_total = value_after_equals(line);
    else if (starts(line, "# arenas reclaimed"))
        out->arenas_reclaimed = value_after_equals(line);
    else if (starts(line, "# arenas highwater mark"))
        out->arenas_highwater = value_after_equals(line);
    else if (starts(line, "# arenas allocated current"))
        out->arenas_current = value_after_equals(line);
    else if (starts(line, "# bytes in allocated blocks"))
        out->bytes_in_allocated_blocks = value_after_equals(line);
    else if (starts(line, "# bytes in available blocks"))
        out->bytes_in_available_blocks = value_after_equals(line);
    else if (starts(line, "# bytes lost to pool headers"))
        out->bytes_pool_headers = value_after_equals(line);
    else if (starts(line, "# bytes lost to quantization"))
        out->bytes_quantization = value_after_equals(line);
    else if (starts(line, "# bytes lost to arena alignment"))
        out->bytes_arena_alignment = value_after_equals(line);
    else if (sscanf(line, "%lld arenas * %lld bytes/arena", &a, &b) == 2) {
        out->arena_size = b;
        out->bytes_total = value_after_equals(line);
    }
    else if (sscanf(line, "%lld unused pools * %lld bytes", &a, &b) == 2) {
        out->free_pools = a;
        out->pool_size = b;
        out->bytes_in_free_pools = value_after_equals(line);
    }
    else if (sscanf(line, " %lld %lld %lld %lld %lld", &a, &b, &c, &d, &e) == 5 &&
             a >= 0 && a < RH_PYMALLOC_MAX_CLASSES && strchr(line, '=') == NULL) {
        rh_pymalloc_class_t *k = &out->classes[a];
        k->size = b;
        k->pools = c;
        k->blocks_in_use = d;
        k->avail_blocks = e;
        out->pools_in_use += c;
        out->blocks_in_use += d;
        out->avail_blocks += e;
    }
}

int _rh_pymalloc_read(rh_pymalloc_t *out)
{
    memset(out, 0, sizeof(*out));
    static stats_fn_t stats = NULL;
    static int looked = 0;
    if (!looked) {
        stats = (stats_fn_t)dlsym(RTLD_DEFAULT, "_PyObject_DebugMallocStats");
        looked = 1;
    }
    if (stats == NULL) {
        out->why = "this interpreter does not export _PyObject_DebugMallocStats";
        return -1;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        out->why = "open_memstream failed (out of memory)";
        return -1;
    }
    int printed = stats(f);
    if (fclose(f) != 0 || text == NULL) {
        _rh_native_release(text);
        out->why = "could not collect the statistics text (out of memory)";
        return -1;
    }
    if (!printed) {
        _rh_native_release(text);
        out->why = "pymalloc is not the object allocator (PYTHONMALLOC=malloc, "
                   "--without-pymalloc or mimalloc)";
        return 0;
    }
    for (char *line = text; line != NULL && *line; ) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        parse_line(line, out);
        line = nl != NULL ? nl + 1 : NULL;
    }
    _rh_native_release(text);
    if (out->nclasses == 0 || out->arena_size == 0) {
        out->why = "the statistics text has a layout refhound does not know";
        return -1;
    }
    out->enabled = 1;
    return 0;
}

/* The debug hooks (Objects/obmalloc.c, 3.6-3.13) fill every byte of a
 * block they hand out with PYMEM_CLEANBYTE (0xCD), and the bytes a realloc
 * adds too; no other allocator writes that pattern into a fresh block.
 * Only the bytes of the block are read (the frame around it is not ours
 * to read: under PYTHONMALLOC=malloc it is the C allocator's header). */
int _rh_pymalloc_debug_hooks(void)
{
    const size_t n = 24, more = 48;
    int engine = _rh_engine_enter();
    unsigned char *q = PyObject_Malloc(n);
    int framed = -1;
    if (q != NULL) {
        framed = 1;
        for (size_t i = 0; framed && i < n; i++)
            framed = q[i] == 0xCD;
        if (framed) {
            unsigned char *r = PyObject_Realloc(q, more);
            if (r != NULL) {
                q = r;
                for (size_t i = n; framed && i < more; i++)
                    framed = q[i] == 0xCD;
            }
        }
        PyObject_Free(q);
    }
    _rh_engine_leave(engine);
    return framed;
}
