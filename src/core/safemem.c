/* safemem.c — copies of memory the engine does not own, made by the kernel.
 *
 * process_vm_readv(getpid(), ...) copies from our own address space the
 * way a debugger would: a page that is not mapped, or mapped but not
 * backed (a file mapping past its end, a PROT_NONE guard), makes the call
 * stop with EFAULT instead of raising SIGSEGV/SIGBUS, and a sanitizer's
 * instrumentation never sees the access.  A call transfers whole iovecs
 * up to the first one that fails, so a batch of reads costs one system
 * call per failure, not per read.
 *
 * When the call is not allowed (a seccomp profile without it, ENOSYS,
 * EPERM) every read reports "unreadable" and _rh_safe_available() says
 * why: callers then leave out what they cannot read safely.
 *
 * No state but the availability flag (an int written once, benign race);
 * no locking; never used in an allocator hook or a signal handler.
 */
#include "safemem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define BATCH 512               /* below IOV_MAX (1024) */
#define PAGE ((uintptr_t)4096)
#define MAX_RUN ((size_t)1 << 20)  /* bytes copied at once by _rh_safe_gather */

static int state;               /* 0 unknown, 1 available, -1 refused */
static const char *refusal;

static ssize_t vm_read(const struct iovec *local, const struct iovec *remote, size_t n)
{
    return process_vm_readv(getpid(), local, n, remote, n, 0);
}

static int check_available(void)
{
    if (state != 0)
        return state > 0;
    static volatile uint64_t probe = 0x5eed;
    uint64_t copy = 0;
    struct iovec l = {&copy, sizeof(copy)}, r = {(void *)&probe, sizeof(probe)};
    if (vm_read(&l, &r, 1) == (ssize_t)sizeof(copy) && copy == probe) {
        state = 1;
        return 1;
    }
    refusal = errno == ENOSYS ? "process_vm_readv is not available (old kernel or seccomp)"
                              : "process_vm_readv is refused in this process (seccomp or "
                                "ptrace restrictions)";
    state = -1;
    return 0;
}

int _rh_safe_available(const char **why)
{
    int ok = check_available();
    if (!ok && why != NULL)
        *why = refusal;
    return ok;
}

int _rh_safe_read(uintptr_t addr, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (!check_available() || addr == 0 || addr + len < addr)
        return -1;
    struct iovec l = {buf, len}, r = {(void *)addr, len};
    return vm_read(&l, &r, 1) == (ssize_t)len ? 0 : -1;
}

size_t _rh_safe_read_many(const uintptr_t *addrs, size_t n, size_t len,
                          unsigned char *bufs, unsigned char *ok)
{
    memset(ok, 0, n);
    if (n == 0 || len == 0 || len > 256 || !check_available())
        return 0;
    struct iovec l[BATCH], r[BATCH];
    size_t good = 0, i = 0;
    while (i < n) {
        /* One batch of reads from i. */
        size_t k = 0;
        for (; i + k < n && k < BATCH; k++) {
            l[k].iov_base = bufs + (i + k) * len;
            l[k].iov_len = len;
            r[k].iov_base = (void *)addrs[i + k];
            r[k].iov_len = len;
        }
        ssize_t got = vm_read(l, r, k);
        size_t whole = got > 0 ? (size_t)got / len : 0;
        for (size_t m = 0; m < whole && m < k; m++) {
            ok[i + m] = 1;
            good++;
        }
        /* The read after the last whole one failed (or was partial): skip
         * it and go on after it. */
        i += whole < k ? whole + 1 : k;
    }
    return good;
}

size_t _rh_safe_gather(const uintptr_t *addrs, size_t n, size_t len,
                       unsigned char *bufs, unsigned char *ok)
{
    memset(ok, 0, n);
    if (n == 0 || len == 0 || len > 256 || !check_available())
        return 0;
    unsigned char *run = malloc(MAX_RUN);
    if (run == NULL)
        return _rh_safe_read_many(addrs, n, len, bufs, ok);
    size_t good = 0;
    for (size_t i = 0; i < n;) {
        /* A run of reads whose pages touch or nearly touch. */
        uintptr_t lo = addrs[i] & ~(PAGE - 1), hi = addrs[i] + len;
        size_t j = i + 1;
        while (j < n && addrs[j] >= addrs[j - 1] && addrs[j] <= hi + PAGE &&
               addrs[j] + len - lo <= MAX_RUN) {
            if (addrs[j] + len > hi)
                hi = addrs[j] + len;
            j++;
        }
        if (hi < lo || _rh_safe_read(lo, run, hi - lo) < 0) {
            /* A hole in the run (or a wrap): each read on its own. */
            good += _rh_safe_read_many(addrs + i, j - i, len, bufs + i * len, ok + i);
        }
        else {
            for (size_t k = i; k < j; k++) {
                memcpy(bufs + k * len, run + (addrs[k] - lo), len);
                ok[k] = 1;
                good++;
            }
        }
        i = j;
    }
    free(run);
    return good;
}
