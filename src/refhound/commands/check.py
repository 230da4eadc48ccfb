"""refhound check MODULE:CALLABLE | FILE.py:CALLABLE — leak-check one callable."""
from ..cli import (EXIT_CLEAN, EXIT_FOUND, EXIT_TARGET, EXIT_USAGE, MAX_CALLS, MAX_ITERATIONS,
                   MAX_SECONDS, calls_int, fail_usage, non_negative_int, positive_int, seconds,
                   write_json)

EXIT_STATUS = ("exit status: 0 clean, 1 leak or error found, 2 bad usage or input, 3 the "
               "target failed (it raised, crashed, ended the process or ran past --timeout)")


def add_parser(sub):
    c = sub.add_parser("check", help="leak-check one callable (no arguments)",
                       description="Call the target in measured iterations and say whether "
                                   "it leaks memory or references.  A generator function is "
                                   "run to exhaustion at each call, a coroutine function "
                                   "(async def) to completion in an event loop.",
                       epilog=EXIT_STATUS)
    c.add_argument("target", help="MODULE:CALLABLE or FILE.py:CALLABLE")
    c.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stdout)")
    c.add_argument("--iterations", type=positive_int, default=60, metavar="N",
                   help="at most N measured iterations (default 60, at most %d; stops early "
                        "when sure)" % MAX_ITERATIONS)
    c.add_argument("--min-iterations", type=positive_int, default=8, metavar="N",
                   help="at least N measured iterations (default 8; 3 to %d)" % MAX_ITERATIONS)
    c.add_argument("--warmup", type=non_negative_int, default=3, metavar="N",
                   help="warm-up iterations before measuring (default 3, at most %d)"
                        % MAX_ITERATIONS)
    c.add_argument("--calls", type=calls_int, default=None, metavar="N",
                   help="calls per iteration (default: a power of ten, ~5 ms per iteration; "
                        "at most %d)" % MAX_CALLS)
    c.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                   help="stop a check that runs longer and show where the target was "
                        "(exit status 3; default: no limit, at most %d)" % MAX_SECONDS)
    c.add_argument("--no-progress", action="store_true", help="no live progress line")
    c.add_argument("--quiet", "-q", action="store_true", help="no report, only the exit status")
    c.add_argument("--strict", action="store_true", help="exit 1 when the result is inconclusive")


def run(args):
    if args.min_iterations > args.iterations:
        return fail_usage("--min-iterations (%d) is above --iterations (%d)"
                          % (args.min_iterations, args.iterations))
    if args.min_iterations < 3:
        return fail_usage("--min-iterations must be at least 3")
    from .._child import run_in_child
    return run_in_child(lambda: _check(args), timeout=args.timeout,
                        what="the target %s" % args.target)


def _check(args):
    from .. import _child, _core
    from .._checker import Checker, TargetFailed
    from .._child import print_target_failure
    from ..report.terminal import ProgressLine, render
    from .._target import BadTarget, TargetImportFailed, as_plain_callable, resolve

    # Track before the target is imported, so its import-time objects are known.
    _core.start()
    try:
        func, name = resolve(args.target)
        func, note = as_plain_callable(func)
    except BadTarget as exc:
        return fail_usage(exc)
    except TargetImportFailed as exc:
        print_target_failure(exc)
        return EXIT_TARGET
    progress = ProgressLine(stream=_child.stderr(), enabled=False if args.no_progress else None)
    checker = Checker(warmup=args.warmup, iterations=args.iterations,
                      min_iterations=args.min_iterations, calls=args.calls, progress=progress)
    try:
        result = checker.run(func, (), {}, name)
    except TargetFailed as exc:
        progress.clear()
        if isinstance(exc.__cause__, KeyboardInterrupt):
            raise exc.__cause__     # stopped by the user, not a failure of the target
        print_target_failure(exc)
        return EXIT_TARGET
    progress.clear()
    if note:
        result.notes.insert(0, note)
    report_stream = _child.stdout()
    if args.json:
        report_stream = write_json(args.json, result.to_json())
        if report_stream is None:
            return EXIT_USAGE
    if not args.quiet:
        report_stream.write(render(result, color=report_stream.isatty()))
    if result.verdict in ("leak", "error"):
        return EXIT_FOUND
    if result.verdict == "inconclusive" and args.strict:
        return EXIT_FOUND
    return EXIT_CLEAN
