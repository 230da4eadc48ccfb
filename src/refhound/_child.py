"""Run a command's work in a forked child and watch over it from the parent.

The target runs in the child; the parent only waits.  Whatever the target
does -- crash, call os._exit(), close sys.stdout, never return -- refhound
still answers, and its exit status keeps the contract:

    the child's own status when its work returned (0 clean, 1 found,
    2 usage, 3 the target failed, 70 internal error);
    3 when the child ended any other way: killed by a signal (a crash),
    ended by the target (os._exit(), exit() in C code), or stopped because
    --timeout ran out (the target's Python stacks at that moment are shown);
    the same signal when refhound itself gets SIGTERM, SIGINT or SIGHUP: it
    is forwarded to the child, the child is waited for (and killed after
    GRACE_SECONDS), then refhound ends by that signal, as a shell expects.

How the parent knows the child reached its end: just before os._exit() the
child writes its pid and status into a page of shared memory mapped before
the fork.  A child that ends without writing it was ended by the target.  A
page, unlike a pipe, cannot be closed by the target.

The child dies with the parent (PR_SET_PDEATHSIG, then a getppid() check for
a parent that died before the call), keeps its own duplicates of stdout and
stderr for refhound's report (stdout(), stderr()), has faulthandler on its
stderr, and DUMP_SIGNAL writes every thread's Python stack to a file the
parent reads when the time is up.

Only the main thread of the parent may call run_in_child: signal handlers
are installed there, and PR_SET_PDEATHSIG fires when the forking thread ends.
"""
import faulthandler
import mmap
import os
import select
import signal
import struct
import sys
import tempfile
import time
import traceback

EXIT_TARGET = 3
EXIT_INTERNAL = 70
GRACE_SECONDS = 5.0         # after a forwarded signal, SIGKILL if the child still runs
DUMP_SECONDS = 2.0          # the longest wait for the stack dump on a timeout
FORWARDED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP")
                  if hasattr(signal, name))
# A real-time signal, unlikely to be one the target uses for itself.
DUMP_SIGNAL = signal.SIGRTMIN + 6 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR2
CRASH_SIGNALS = {getattr(signal, name) for name in
                 ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS")
                 if hasattr(signal, name)}
_STATUS = struct.Struct("=qq")      # (pid, status + 1): all zero until the child writes it
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_OWN = {}                   # "stdout"/"stderr" -> refhound's own stream in the child


def stdout():
    """refhound's stdout: in the child, the duplicate of descriptor 1 taken
    before the target ran (the target may close or redirect sys.stdout).
    Whatever the target left in sys.stdout and sys.stderr is flushed first,
    so its output comes before refhound's report."""
    return _own("stdout")


def stderr():
    """refhound's stderr; see stdout()."""
    return _own("stderr")


def _own(name):
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:       # closed descriptor, broken pipe: the target's business
            pass
    stream = _OWN.get(name)
    if stream is None:
        stream = getattr(sys, name)
    if stream is None or getattr(stream, "closed", False):
        stream = _OWN[name] = open(os.devnull, "w")
    return stream


def _keep_own_streams():
    """In the child: duplicates of descriptors 1 and 2 (close-on-exec, above
    the low numbers a program reuses) wrapped as text streams like sys's."""
    import fcntl
    for name, fd in (("stdout", 1), ("stderr", 2)):
        like = getattr(sys, name)
        try:
            copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64)
        except OSError:
            continue
        _OWN[name] = open(copy, "w", encoding=getattr(like, "encoding", None) or "utf-8",
                          errors=getattr(like, "errors", None) or "backslashreplace",
                          buffering=1)


def _die_with_parent(parent):
    """SIGKILL when the parent ends (Linux), and end now if it already has."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError, ImportError):
        pass
    if os.getppid() != parent:
        os._exit(EXIT_INTERNAL)


def _interrupt_once(signum, frame):
    """The child's SIGINT: one KeyboardInterrupt.  On a terminal a Ctrl-C
    reaches the child twice (from the terminal and forwarded by the parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def run_in_child(work, timeout=None, what="the target", crashed=None):
    """Run work() -> int in a forked child; return the exit status (see the
    module's docstring).  `timeout`: seconds, or None for no limit.  `what`
    names what runs in the child, for the parent's messages.  `crashed`:
    called with the signal when the child crashed; when it returns True the
    caller reports the crash (--sanitize: the guard's report) and the
    message about a crash is left out."""
    import ctypes  # noqa: F401  (imported here, before the fork, for _die_with_parent)
    parent = os.getpid()
    shared = mmap.mmap(-1, mmap.PAGESIZE)
    stacks = tempfile.TemporaryFile()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    forwarded = [sig for sig in FORWARDED if signal.getsignal(sig) is not signal.SIG_IGN]
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        raise
    if pid == 0:
        _child(work, parent, shared, stacks, blocked)      # never returns
    try:
        return _supervise(pid, shared, stacks, timeout, what, forwarded, blocked, crashed)
    finally:
        stacks.close()
        shared.close()


def _child(work, parent, shared, stacks, blocked):
    me = os.getpid()
    code = EXIT_INTERNAL
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt_once)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        _die_with_parent(parent)
        _keep_own_streams()
        faulthandler.enable(file=stderr())
        faulthandler.register(DUMP_SIGNAL, file=stacks, all_threads=True, chain=False)
        code = work()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (refhound ... | head): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (_OWN.get("stdout"), sys.stdout):
            try:
                os.dup2(devnull, stream.fileno())
            except Exception:
                pass
        code = 1
    except BaseException:
        try:
            err = stderr()
            traceback.print_exc(file=err)
            err.write("refhound: internal error (above); please report it\n")
        except BaseException:
            pass
        code = EXIT_INTERNAL
    finally:
        try:
            if not isinstance(code, int) or not 0 <= code <= 255:
                code = EXIT_INTERNAL
            if os.getpid() == me:
                for stream in list(_OWN.values()) + [sys.stdout, sys.stderr]:
                    try:
                        stream.flush()
                    except BaseException:
                        pass
                shared[:_STATUS.size] = _STATUS.pack(me, code + 1)
        finally:
            os._exit(code)


def _send(pid, pidfd, sig):
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, OSError):
        pass


def _open_pidfd(pid):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _supervise(pid, shared, stacks, timeout, what, forwarded, blocked, crashed=None):
    pidfd = _open_pidfd(pid)
    received = []

    def forward(signum, frame):
        received.append(signum)
        _send(pid, pidfd, signum)

    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        status, timed_out = _wait(pid, pidfd, timeout, received, stacks)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pidfd is not None:
            os.close(pidfd)
    err = sys.stderr
    if timed_out:
        err.write("refhound: %s was still running after --timeout %s s; it was stopped. "
                  "Where it was (most recent call first):\n%s"
                  % (what, "%g" % timeout, format_stacks(_read_stacks(stacks))))
        err.flush()
        return EXIT_TARGET
    if received:
        sig = received[0]
        err.write("refhound: stopped by %s; %s did not finish\n" % (_signame(sig), what))
        err.flush()
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig        # not reached unless the signal is blocked
    child_pid, code = _STATUS.unpack(shared[:_STATUS.size])
    if child_pid == pid and code > 0:
        return code - 1
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in CRASH_SIGNALS and crashed is not None and crashed(sig):
            return EXIT_TARGET
        if sig in CRASH_SIGNALS:
            err.write("refhound: %s crashed with %s (traceback above); a crash inside a check "
                      "is most often a reference count error\n" % (what, _signame(sig)))
        else:
            err.write("refhound: %s was killed by %s before it finished (by itself, or from "
                      "outside: out of memory?)\n" % (what, _signame(sig)))
    else:
        err.write("refhound: %s ended the process with exit status %d before it finished "
                  "(os._exit(), or exit() in C code)\n" % (what, os.WEXITSTATUS(status)))
    err.flush()
    return EXIT_TARGET


def _wait(pid, pidfd, timeout, received, stacks):
    """Wait for the child; on a timeout dump its stacks and kill it; after a
    forwarded signal kill it when it outlives the grace period.
    Returns (wait status, timed out)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    kill_at = None
    timed_out = False
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:       # reaped elsewhere: nothing more to learn
            return 0, timed_out
        if done:
            return status, timed_out
        now = time.monotonic()
        if received and kill_at is None:
            kill_at = now + GRACE_SECONDS
        if deadline is not None and now >= deadline and not timed_out:
            timed_out = True
            _dump_stacks(pid, pidfd, stacks)
            _send(pid, pidfd, signal.SIGKILL)
            continue
        if kill_at is not None and now >= kill_at:
            _send(pid, pidfd, signal.SIGKILL)
            kill_at = now + 3600
        wake = [t - now for t in (deadline, kill_at) if t is not None and t > now]
        pause = min([0.25] + wake)
        if pidfd is not None:
            select.select([pidfd], [], [], pause)
        else:
            time.sleep(min(pause, 0.05))


def _dump_stacks(pid, pidfd, stacks):
    """Ask the child for its Python stacks; wait until the dump stops growing."""
    _send(pid, pidfd, DUMP_SIGNAL)
    end = time.monotonic() + DUMP_SECONDS
    size = -1
    while time.monotonic() < end:
        time.sleep(0.05)
        now = os.fstat(stacks.fileno()).st_size
        if now and now == size:
            return
        size = now


def _read_stacks(stacks):
    try:
        stacks.seek(0)
        return stacks.read().decode("utf-8", "replace")
    except OSError:
        return ""


def format_stacks(dump, package=_PACKAGE):
    """faulthandler's dump of every thread, indented, without refhound's own
    frames (unless a thread shows nothing else: then refhound was the one busy)."""
    if not dump.strip():
        return "  (no Python stack: the target did not answer the signal that asks for it)\n"
    out = []
    for block in dump.strip("\n").split("\n\n"):
        lines = block.splitlines()
        head = [line.replace(" (most recent call first):", ":") for line in lines[:1]]
        frames = lines[1:]
        theirs = [f for f in frames if not _is_own_frame(f, package)]
        out.append("\n".join("  " + line for line in head + (theirs or frames)))
    return "\n\n".join(out) + "\n"


def _is_own_frame(line, package):
    line = line.strip()
    return (line.startswith('File "%s' % package) or line.startswith('File "<frozen runpy>"')
            or line.startswith('File "%s' % os.path.join(os.path.dirname(os.__file__), "runpy.py")))


def _signame(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "signal %d" % sig


def print_target_failure(exc):
    """Show why the target failed: one line, then its own traceback."""
    cause = exc.__cause__ or exc
    err = stderr()
    err.write("refhound: the target failed: %s\n" % exc)
    traceback.print_exception(type(cause), cause, cause.__traceback__, file=err)
