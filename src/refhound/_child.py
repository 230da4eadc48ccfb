"""Run a command's work in a forked child, so that a crash of the target
(a segfault from a reference count error) is reported with exit status 3
instead of killing refhound with it."""
import faulthandler
import os
import signal
import sys
import traceback

EXIT_TARGET = 3


def run_in_child(work, crashed=None):
    """Run work() -> int in a forked child; a child killed by a signal is 3
    (crashed(signal number), when given, says so instead of the message
    below: --sanitize reads the guard's report first)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            faulthandler.enable()
            code = work()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except KeyboardInterrupt:
            code = 130
        except BrokenPipeError:
            # The reader went away (refhound ... | head): stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            code = 1
        except BaseException:
            traceback.print_exc()
            sys.stderr.write("refhound: internal error (above); please report it\n")
            code = 70
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        signal.signal(signal.SIGINT, previous)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if crashed is not None:
            crashed(sig)
            return EXIT_TARGET
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        print_crash(name)
        return EXIT_TARGET
    return os.WEXITSTATUS(status)


def print_crash(name):
    sys.stderr.write("refhound: the target crashed with %s (traceback above); "
                     "a crash inside a check is most often a reference count error\n" % name)


def print_target_failure(exc):
    """Show why the target failed: one line, then its own traceback."""
    cause = exc.__cause__ or exc
    sys.stderr.write("refhound: the target failed: %s\n" % exc)
    traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
