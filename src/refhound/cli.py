"""The `refhound` command.

    refhound check MODULE:CALLABLE | FILE.py:CALLABLE [--json FILE] ...
    refhound demo

Exit status: 0 clean, 1 leak or error found, 2 bad usage or input (one
line on stderr, never a traceback), 3 the target itself raised or crashed.
The check runs in a forked child so that a crash of the target (a
segfault from a refcount error) is reported as such instead of killing
the command.
"""
import argparse
import faulthandler
import os
import signal
import sys
import traceback

EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE, EXIT_TARGET = 0, 1, 2, 3


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text)
    if value < 1:
        raise argparse.ArgumentTypeError("%r must be at least 1" % text)
    return value


def _non_negative(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text)
    if value < 0:
        raise argparse.ArgumentTypeError("%r must be 0 or more" % text)
    return value


def build_parser():
    p = _Parser(prog="refhound", description="Find memory and reference leaks in C extensions.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser("check", help="leak-check one callable (no arguments)")
    c.add_argument("target", help="MODULE:CALLABLE or FILE.py:CALLABLE")
    c.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stdout)")
    c.add_argument("--iterations", type=_positive, default=60, metavar="N",
                   help="at most N measured iterations (default 60; stops early when sure)")
    c.add_argument("--min-iterations", type=_positive, default=8, metavar="N",
                   help="at least N measured iterations (default 8)")
    c.add_argument("--warmup", type=_non_negative, default=3, metavar="N",
                   help="warm-up iterations before measuring (default 3)")
    c.add_argument("--calls", type=_positive, default=None, metavar="N",
                   help="calls per iteration (default: a power of ten, ~5 ms per iteration)")
    c.add_argument("--no-progress", action="store_true", help="no live progress line")
    c.add_argument("--quiet", "-q", action="store_true", help="no report, only the exit status")
    c.add_argument("--strict", action="store_true", help="exit 1 when the result is inconclusive")
    d = sub.add_parser("demo", help="check the bundled example extension and show the reports")
    d.add_argument("--no-progress", action="store_true", help="no live progress line")
    return p


def _fail_usage(message):
    sys.stderr.write("refhound: error: %s\n" % message)
    return EXIT_USAGE


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _fail_usage(exc)
    if args.command is None:
        return _fail_usage("no command given (try: refhound check MODULE:CALLABLE, refhound demo)")
    if args.command == "check":
        if args.min_iterations > args.iterations:
            return _fail_usage("--min-iterations (%d) is above --iterations (%d)"
                               % (args.min_iterations, args.iterations))
        return _in_child(lambda: _check(args))
    if args.command == "demo":
        return _in_child(lambda: _demo(args))
    return _fail_usage("unknown command %r" % args.command)


def _in_child(work):
    """Run work() in a forked child; a child killed by a signal is exit 3."""
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
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        sys.stderr.write("refhound: the target crashed with %s (traceback above); "
                         "a crash inside a check is most often a reference count error\n" % name)
        return EXIT_TARGET
    return os.WEXITSTATUS(status)


def _print_target_failure(exc):
    cause = exc.__cause__ or exc
    sys.stderr.write("refhound: the target failed: %s\n" % exc)
    traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)


def _check(args):
    from . import _core
    from ._checker import Checker, TargetFailed
    from ._report import ProgressLine, render
    from ._target import BadTarget, TargetImportFailed, resolve

    # Track before the target is imported, so its import-time objects are known.
    _core.start()
    try:
        func, name = resolve(args.target)
    except BadTarget as exc:
        return _fail_usage(exc)
    except TargetImportFailed as exc:
        _print_target_failure(exc)
        return EXIT_TARGET
    progress = ProgressLine(enabled=False if args.no_progress else None)
    checker = Checker(warmup=args.warmup, iterations=args.iterations,
                      min_iterations=args.min_iterations, calls=args.calls, progress=progress)
    try:
        result = checker.run(func, (), {}, name)
    except TargetFailed as exc:
        progress.clear()
        _print_target_failure(exc)
        return EXIT_TARGET
    progress.clear()
    report_stream = sys.stdout
    if args.json:
        text = result.to_json()
        if args.json == "-":
            sys.stdout.write(text + "\n")
            report_stream = sys.stderr
        else:
            try:
                with open(args.json, "w") as f:
                    f.write(text + "\n")
            except OSError as exc:
                return _fail_usage("cannot write %s: %s" % (args.json, exc.strerror or exc))
    if not args.quiet:
        report_stream.write(render(result, color=report_stream.isatty()))
    if result.verdict in ("leak", "error"):
        return EXIT_FOUND
    if result.verdict == "inconclusive" and args.strict:
        return EXIT_FOUND
    return EXIT_CLEAN


def _demo(args):
    from . import _core
    from ._checker import Checker
    from ._report import ProgressLine, render

    _core.start()
    from . import _demo as demo

    progress = ProgressLine(enabled=False if args.no_progress else None)
    checker = Checker(progress=progress)
    print("refhound demo: checking three functions of the bundled extension refhound._demo\n")
    for name in ("parse_items", "tag_none", "checksum"):
        result = checker.run(getattr(demo, name), (), {}, "refhound._demo:" + name)
        progress.clear()
        sys.stdout.write(render(result, color=sys.stdout.isatty()) + "\n")
    return EXIT_CLEAN
