"""refhound check MODULE:CALLABLE | FILE.py:CALLABLE — leak-check one callable."""
from ..cli import EXIT_CLEAN, EXIT_FOUND, EXIT_TARGET, EXIT_USAGE, fail_usage, write_json
from ..options import OptionError, add_arguments, from_namespace

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
    return run_in_child(lambda: _check(args, options), timeout=options.timeout,
                        what="the target %s" % args.target)


def _check(args, options):
    from .. import _child, _core
    from .._child import print_target_failure
    from .._run import TargetFailed
    from .._target import BadTarget, TargetImportFailed, as_plain_callable, resolve
    from ..api import Checker
    from ..report.terminal import ProgressLine, render_for

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
    progress = ProgressLine(stream=_child.stderr(), enabled=False if args.no_progress else None,
                            options=options)
    checker = Checker(progress=progress, **options.to_dict())
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
        report_stream.write(render_for(result, report_stream))
    if args.html:
        from ..report.html import write_report
        if not write_report(args.html, result.to_dict(), None if args.quiet else report_stream):
            return EXIT_USAGE
    if result.verdict in ("leak", "error"):
        return EXIT_FOUND
    if result.verdict == "inconclusive" and options.strict:
        return EXIT_FOUND
    return EXIT_CLEAN
