/* procstat.c — process figures from /proc/self and the C allocator.
 *
 * RSS from statm (cheap), USS from smaps_rollup (Private_Clean +
 * Private_Dirty; costs a page-table walk, so optional), open descriptors
 * by counting /proc/self/fd, threads from /proc/self/stat, and the bytes
 * in use in glibc's heap (mallinfo2: every malloc, hooked or not; without
 * the freed chunks parked in the main thread's tcache).  A
 * figure that cannot be read is -1.  No Python API, no allocation through
 * Python's allocators.
 */
#include "procstat.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int64_t read_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (f == NULL)
        return -1;
    long size, resident;
    int n = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : -1;
}

static int64_t read_uss(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "re");
    if (f == NULL)
        return -1;
    char line[256];
    int64_t kb = 0;
    int seen = 0;
    while (fgets(line, sizeof(line), f)) {
        long v;
        if (sscanf(line, "Private_Clean: %ld kB", &v) == 1 ||
            sscanf(line, "Private_Dirty: %ld kB", &v) == 1) {
            kb += v;
            seen++;
        }
    }
    fclose(f);
    return seen ? kb * 1024 : -1;
}

static int64_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1;   /* the descriptor opendir itself holds */
}

static int64_t count_threads(void)
{
    FILE *f = fopen("/proc/self/stat", "re");
    if (f == NULL)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Field 20 (num_threads) counts from the ')' closing the name. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    long threads;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
                      "%*d %*d %*d %*d %ld", &threads) != 1)
        return -1;
    return threads;
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
/* glibc's per-thread cache of freed chunks (tcache) keeps up to 7 freed
 * chunks of each of 64 sizes, and mallinfo2 counts them as in use: the
 * figure climbs by a few KB as a program frees chunks of sizes it had not
 * freed before, then stops (measured: a clean loop's heap +2.5 KB over 8
 * iterations, flat with GLIBC_TUNABLES=glibc.malloc.tcache_count=0).  The
 * main thread's cache is the first chunk of the main arena's heap (its
 * first malloc makes it): a chunk of 0x290 bytes holding uint16_t
 * counts[64] (glibc 2.30 and later) and the 64 list heads.  Its bytes are
 * taken off the heap's figure.  The heap's start is read once from
 * /proc/self/maps; a heap that does not start with such a chunk (another
 * allocator, another layout, no brk heap) leaves the figure as it is. */
#define TCACHE_BINS 64
#define TCACHE_CHUNK_HEADER 0x291      /* size 0x290, previous chunk in use */

static uintptr_t main_heap_start(void)
{
    static uintptr_t start = 1;         /* 1: not read yet; 0: none */
    if (start != 1)
        return start;
    uintptr_t found = 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof line, f) != NULL) {
            size_t n = strlen(line);
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' '))
                line[--n] = '\0';
            if (n >= 6 && strcmp(line + n - 6, "[heap]") == 0) {
                unsigned long lo;
                if (sscanf(line, "%lx-", &lo) == 1)
                    found = (uintptr_t)lo;
                break;
            }
        }
        fclose(f);
    }
    start = found;
    return start;
}

static int64_t main_tcache_bytes(void)
{
    uintptr_t heap = main_heap_start();
    if (heap == 0 || *(const size_t *)(heap + sizeof(size_t)) != TCACHE_CHUNK_HEADER)
        return 0;
    const volatile uint16_t *counts = (const volatile uint16_t *)(heap + 2 * sizeof(size_t));
    int64_t bytes = 0;
    for (int i = 0; i < TCACHE_BINS; i++)
        bytes += (int64_t)counts[i] * (32 + 16 * i);    /* chunk size of bin i */
    return bytes;
}
#endif

static int64_t native_heap_bytes(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    int64_t bytes = (int64_t)(mi.uordblks + mi.hblkhd) - main_tcache_bytes();
    return bytes >= 0 ? bytes : (int64_t)(mi.uordblks + mi.hblkhd);
#else
    return -1;
#endif
}

void _rh_procstat_read(rh_procstat_t *out, int with_uss)
{
    out->rss_bytes = read_rss();
    out->uss_bytes = with_uss ? read_uss() : -1;
    out->fds = count_fds();
    out->threads = count_threads();
    out->native_bytes = native_heap_bytes();
}
