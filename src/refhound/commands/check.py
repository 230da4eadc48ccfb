"""refhound check MODULE:CALLABLE | FILE.py:CALLABLE — leak-check one callable."""
import sys

from ..cli import EXIT_CLEAN, EXIT_FOUND, EXIT_TARGET, EXIT_USAGE, fail_usage, write_json
from ..options import OptionError, add_arguments, from_namespace


def add_parser(sub):
    c = sub.add_parser("check", help="leak-check one callable (no arguments)",
                       description="Call the target in measured iterations and say whether "
                                   "it leaks memory or references.")
    c.add_argument("target", help="MODULE:CALLABLE or FILE.py:CALLABLE")
    c.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stdout)")
    c.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
    add_arguments(c)
    c.add_argument("--no-progress", action="store_true", help="no live progress line")
    c.add_argument("--quiet", "-q", action="store_true", help="no report, only the exit status")
    c.add_argument("--strict", action="store_true", help="exit 1 when the result is inconclusive")


def run(args):
    try:
        options = from_namespace(args, strict=args.strict)
    except OptionError as exc:
        return fail_usage(exc)
    from .._child import run_in_child
    return run_in_child(lambda: _check(args, options))


def _check(args, options):
    from .. import _core
    from .._child import print_target_failure
    from .._run import TargetFailed
    from .._target import BadTarget, TargetImportFailed, resolve
    from ..api import Checker
    from ..report.terminal import ProgressLine, render

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
    checker = Checker(progress=progress, **options.to_dict())
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
    if result.verdict == "inconclusive" and options.strict:
        return EXIT_FOUND
    return EXIT_CLEAN
