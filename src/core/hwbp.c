/* hwbp.c — a hardware write (or execute) breakpoint through perf_event_open.
 *
 * _rh_hwbp_open_exec: an execute breakpoint on one instruction, with the
 * same synchronous SIGTRAP, raised before the instruction runs (the kernel
 * resumes past it with the resume flag, so it fires once per execution).
 *
 * PERF_TYPE_BREAKPOINT, HW_BREAKPOINT_W, 8 bytes, user space only, this
 * thread only (pid 0, any CPU), created disabled, closed on exec.  With
 * sigtrap=1 (Linux 5.13+) every write raises a synchronous SIGTRAP right
 * after the writing instruction, si_code TRAP_PERF, carrying sig_data;
 * without it the event counts writes, read with read(2).
 *
 * No state; every call is a system call, so never from an allocator hook.
 */
#include "hwbp.h"

#include <errno.h>
#include <string.h>

#if defined(__linux__)
#  include <linux/hw_breakpoint.h>
#  include <linux/perf_event.h>
#  include <sys/ioctl.h>
#  include <sys/syscall.h>
#  include <unistd.h>
#  define RH_HAVE_PERF 1
#else
#  define RH_HAVE_PERF 0
#endif

int _rh_hwbp_open(uintptr_t addr, int sigtrap, unsigned long sig_data, int *err)
{
#if RH_HAVE_PERF
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.type = PERF_TYPE_BREAKPOINT;
    attr.size = sizeof(attr);
    attr.bp_type = HW_BREAKPOINT_W;
    attr.bp_addr = (uint64_t)addr;
    attr.bp_len = HW_BREAKPOINT_LEN_8;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    if (sigtrap) {
        attr.sample_period = 1;
        attr.sigtrap = 1;
        attr.remove_on_exec = 1;     /* required with sigtrap */
        attr.sig_data = sig_data;
    }
    long fd = syscall(SYS_perf_event_open, &attr, 0 /* this thread */, -1, -1,
                      PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        *err = errno;
    return (int)fd;
#else
    *err = ENOSYS;
    return -1;
#endif
}

int _rh_hwbp_open_exec(uintptr_t addr, unsigned long sig_data, int *err)
{
#if RH_HAVE_PERF
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.type = PERF_TYPE_BREAKPOINT;
    attr.size = sizeof(attr);
    attr.bp_type = HW_BREAKPOINT_X;
    attr.bp_addr = (uint64_t)addr;
    attr.bp_len = sizeof(long);          /* the kernel's only length for X */
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.sample_period = 1;
    attr.sigtrap = 1;
    attr.remove_on_exec = 1;
    attr.sig_data = sig_data;
    long fd = syscall(SYS_perf_event_open, &attr, 0 /* this thread */, -1, -1,
                      PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        *err = errno;
    return (int)fd;
#else
    *err = ENOSYS;
    return -1;
#endif
}

void _rh_hwbp_enable(int fd)
{
#if RH_HAVE_PERF
    ioctl(fd, PERF_EVENT_IOC_RESET, 0);
    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
#endif
}

void _rh_hwbp_disable(int fd)
{
#if RH_HAVE_PERF
    ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
#endif
}

const char *_rh_hwbp_refusal(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return "the kernel refuses hardware watchpoints (see /proc/sys/kernel/perf_event_paranoid, "
               "or a seccomp filter)";
    case ENOENT:
    case EOPNOTSUPP:
        return "this machine has no hardware breakpoints for perf_event_open";
    case EINVAL:
        return "the kernel does not support synchronous perf signals (Linux 5.13+ needed)";
    case ENOSPC:
        return "no free debug register (a debugger may be using them)";
    case ENOSYS:
        return "perf_event_open is not available (seccomp or an old kernel)";
    default:
        return "perf_event_open failed";
    }
}
