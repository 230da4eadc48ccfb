/* procstat.c — process figures from /proc/self and the C allocator.
 *
 * RSS from statm (cheap), USS from smaps_rollup (Private_Clean +
 * Private_Dirty; costs a page-table walk, so optional), open descriptors
 * by counting /proc/self/fd, threads from /proc/self/stat, and the bytes
 * in use in glibc's heap (mallinfo2: every malloc, hooked or not).  A
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

static int64_t native_heap_bytes(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return (int64_t)(mi.uordblks + mi.hblkhd);
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
