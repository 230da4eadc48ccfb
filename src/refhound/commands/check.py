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
    c.add_argument("--no-native", dest="native", action="store_false",
                   help="do not track malloc & co. in extension modules (PEP 445 domains only)")
    add_sanitize_arguments(c)


def add_sanitize_arguments(parser):
    """--sanitize and --sanitize-rate (check and run)."""
    from ..options import SANITIZE_RATE as DEFAULT_RATE
    parser.add_argument("--sanitize", action="store_true",
                        help="find memory errors (use after free, double free, overflow, "
                             "underflow) with the guard allocator; the first one ends the "
                             "run and is reported with its culprit line")
    parser.add_argument("--sanitize-rate", type=_positive, default=DEFAULT_RATE, metavar="N",
                        help="with --sanitize, guard one block in N (default %d: every block "
                             "while the guard's budget lasts)" % DEFAULT_RATE)


def _positive(text):
    import argparse
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("sanitize-rate=%r is not a whole number from 1 to "
                                         "1000000" % text)
    return value


def run(args):
    try:
        options = from_namespace(args, strict=args.strict, native=args.native)
    except OptionError as exc:
        return fail_usage(exc)
    from .._child import run_in_child
    if args.sanitize:
        return run_sanitized_command(args, lambda: _check(args, options),
                                     timeout=options.timeout,
                                     what="the target %s" % args.target)
    return run_in_child(lambda: _check(args, options), timeout=options.timeout,
                        what="the target %s" % args.target)


def run_sanitized_command(args, work, target=None, as_list=False, timeout=None,
                          what="the target"):
    """Run work() under the guard allocator; report the first memory error
    (exit 1) or pass the child's own exit status on.  as_list: the JSON is
    a list of results (refhound run)."""
    import json
    import sys
    from .._child import run_in_child
    from .._sanitize import render, result_dict, run_sanitized

    def child(w, crashed):
        return run_in_child(w, timeout=timeout, what=what, crashed=crashed)

    code, errors = run_sanitized(child, work, rate=args.sanitize_rate)
    if not errors:
        return code
    target = target or args.target
    data = result_dict(target, errors)
    stream = sys.stdout
    if getattr(args, "json", None):
        stream = write_json(args.json, json.dumps([data] if as_list else data, indent=2))
        if stream is None:
            return EXIT_USAGE
    if not getattr(args, "quiet", False):
        stream.write(render(target, errors, color=stream.isatty()))
    if getattr(args, "html", None):
        from ..report.html import write_report
        if not write_report(args.html, [data] if as_list else data,
                            None if getattr(args, "quiet", False) else stream):
            return EXIT_USAGE
    return EXIT_FOUND


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
    # What the import made in blocks from before tracking (the interpreter's
    # free lists: a float constant of the target's code) has no entry yet.
    _core.adopt()
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
