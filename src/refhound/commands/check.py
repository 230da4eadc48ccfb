"""refhound check MODULE:CALLABLE | FILE.py:CALLABLE — leak-check one callable."""
import sys

from ..cli import (EXIT_CLEAN, EXIT_FOUND, EXIT_TARGET, EXIT_USAGE, fail_usage,
                   non_negative_int, positive_int, write_json)


def add_parser(sub):
    c = sub.add_parser("check", help="leak-check one callable (no arguments)",
                       description="Call the target in measured iterations and say whether "
                                   "it leaks memory or references.")
    c.add_argument("target", help="MODULE:CALLABLE or FILE.py:CALLABLE")
    c.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stdout)")
    c.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
    c.add_argument("--iterations", type=positive_int, default=60, metavar="N",
                   help="at most N measured iterations (default 60; stops early when sure)")
    c.add_argument("--min-iterations", type=positive_int, default=8, metavar="N",
                   help="at least N measured iterations (default 8, at least 3)")
    c.add_argument("--warmup", type=non_negative_int, default=3, metavar="N",
                   help="warm-up iterations before measuring (default 3)")
    c.add_argument("--calls", type=positive_int, default=None, metavar="N",
                   help="calls per iteration (default: a power of ten, ~5 ms per iteration)")
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
    return run_in_child(lambda: _check(args))


def _check(args):
    from .. import _core
    from .._checker import Checker, TargetFailed
    from .._child import print_target_failure
    from ..report.terminal import ProgressLine, render
    from .._target import BadTarget, TargetImportFailed, resolve

    # Track before the target is imported, so its import-time objects are known.
    _core.start()
    try:
        func, name = resolve(args.target)
    except BadTarget as exc:
        return fail_usage(exc)
    except TargetImportFailed as exc:
        print_target_failure(exc)
        return EXIT_TARGET
    progress = ProgressLine(enabled=False if args.no_progress else None)
    checker = Checker(warmup=args.warmup, iterations=args.iterations,
                      min_iterations=args.min_iterations, calls=args.calls, progress=progress)
    try:
        result = checker.run(func, (), {}, name)
    except TargetFailed as exc:
        progress.clear()
        print_target_failure(exc)
        return EXIT_TARGET
    progress.clear()
    report_stream = sys.stdout
    if args.json:
        report_stream = write_json(args.json, result.to_json())
        if report_stream is None:
            return EXIT_USAGE
    if not args.quiet:
        report_stream.write(render(result, color=report_stream.isatty()))
    if args.html:
        from ..report.html import write_report
        if not write_report(args.html, result.to_dict(), None if args.quiet else report_stream):
            return EXIT_USAGE
    if result.verdict in ("leak", "error"):
        return EXIT_FOUND
    if result.verdict == "inconclusive" and args.strict:
        return EXIT_FOUND
    return EXIT_CLEAN
