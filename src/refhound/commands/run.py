"""refhound run SCRIPT.py [ARGS] | refhound run -m MODULE [ARGS] — run a program
with tracking on from its first import; the loops it marks with
refhound.loop(...) are checked, and their verdicts decide the exit status.

Native memory (malloc & co. in extension modules) is tracked as in
`refhound check`: the allocator entries of the loaded objects are redirected
at start and those of every object loaded later.  --preload tracks the whole
process instead: the program is started again with refhound's preload library
in LD_PRELOAD, so every malloc of every object (libpython's and the C
library's own included) goes through refhound from the first instruction.

Exit status: 0 every checked loop is clean (or the program marks none),
1 a loop leaks or drops references (or stays inconclusive with --strict),
2 bad usage, 3 the program raised, exited with a non-zero status, crashed,
ended the process itself (os._exit) or ran past --timeout.
"""
import argparse
import os
import sys

from ..cli import EXIT_CLEAN, EXIT_FOUND, EXIT_TARGET, EXIT_USAGE, fail_usage
from ..options import add_arguments


def add_parser(sub):
    r = sub.add_parser(
        "run", help="run a program with tracking on; check its refhound.loop() bodies",
        description="Run a Python program as `python SCRIPT` or `python -m MODULE` would, with "
                    "refhound tracking on before its first import.  Loop bodies marked with "
                    "refhound.loop(...) are leak-checked; their reports go to stderr.",
        epilog="exit status: 0 every checked loop is clean, 1 a loop leaks, 2 bad usage, "
               "3 the program failed (it raised, exited with a non-zero status, crashed, "
               "ended the process or ran past --timeout)")
    r.add_argument("-m", dest="module_args", nargs=argparse.REMAINDER, metavar="MODULE [ARGS]",
                   help="run a module as a script, like python -m (the rest of the line is "
                        "its arguments)")
    r.add_argument("--json", metavar="FILE",
                   help="write the loops' results as JSON ('-' for stdout): a list, one entry "
                        "per loop, in the schema of refhound check")
    r.add_argument("--html", metavar="FILE",
                   help="write one self-contained HTML report of the loops to FILE")
    r.add_argument("--quiet", "-q", action="store_true",
                   help="no loop reports, only the summary line and the exit status")
    r.add_argument("--strict", action="store_true",
                   help="exit 1 when a loop's check stays inconclusive")
    r.add_argument("--preload", action="store_true",
                   help="track every malloc of the whole process: start the program again with "
                        "refhound's preload library in LD_PRELOAD")
    r.add_argument("--no-native", dest="native", action="store_false",
                   help="do not track malloc & co. (PEP 445 domains only)")
    add_arguments(r, names=("timeout",))
    from .check import add_sanitize_arguments
    add_sanitize_arguments(r)
    r.add_argument("program", nargs=argparse.REMAINDER, metavar="SCRIPT.py [ARGS]",
                   help="the script and its arguments (with -m: the module's arguments)")


def run(args):
    argv = list(args.program)
    args.module = None
    if args.module_args is not None:
        if not args.module_args:
            return fail_usage("-m needs a module name")
        if argv:
            return fail_usage("give a script or -m MODULE, not both")
        args.module, argv = args.module_args[0], list(args.module_args[1:])
    if args.module is None:
        if not argv:
            return fail_usage("run needs a script (refhound run SCRIPT.py [ARGS]) "
                              "or a module (refhound run -m MODULE [ARGS])")
        path = argv[0]
        if not os.path.exists(path):
            return fail_usage("no such file: %s" % path)
        if os.path.isdir(path) and not os.path.exists(os.path.join(path, "__main__.py")):
            return fail_usage("%s is a directory without __main__.py" % path)
    else:
        if not all(part.isidentifier() for part in args.module.split(".")):
            return fail_usage("%r is not a module name" % args.module)
    if args.preload and args.native and os.environ.get(PRELOADED) != "1":
        return _exec_preloaded(args, argv)
    from .._child import run_in_child
    what = "the program %s" % (args.module if args.module is not None else argv[0])
    if args.sanitize:
        from .check import run_sanitized_command
        target = ("-m " + args.module) if args.module else argv[0]
        return run_sanitized_command(args, lambda: _run(args, argv), target=target,
                                     as_list=True, timeout=args.timeout, what=what)
    return run_in_child(lambda: _run(args, argv), timeout=args.timeout, what=what)


PRELOADED = "REFHOUND_PRELOADED"


def preload_library():
    """The path of refhound's preload library (refhound/_preload*.so), or None."""
    import importlib.machinery
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, "_preload" + suffix)
        if os.path.exists(path):
            return path
    return None


def _exec_preloaded(args, argv):
    """Start `refhound run` again with the preload library in LD_PRELOAD."""
    path = preload_library()
    if path is None:
        return fail_usage("--preload: refhound's preload library (refhound/_preload) is not "
                          "built; build it with: python3 setup.py build_ext --inplace")
    if os.environ.get("LD_PRELOAD"):
        return fail_usage("--preload: LD_PRELOAD is already set (%s); refhound's preload "
                          "library replaces malloc and cannot share it"
                          % os.environ["LD_PRELOAD"])
    line = [sys.executable, "-m", "refhound", "run", "--preload"]
    for flag, value in (("--json", args.json), ("--html", args.html)):
        if value:
            line += [flag, value]
    line += ["--quiet"] if args.quiet else []
    line += ["--strict"] if args.strict else []
    line += ["--timeout", repr(args.timeout)] if args.timeout is not None else []
    if args.sanitize:
        line += ["--sanitize", "--sanitize-rate", str(args.sanitize_rate)]
    line += ["-m", args.module] + argv if args.module is not None else argv
    env = dict(os.environ, LD_PRELOAD=path)
    env[PRELOADED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, line, env)


def _run(args, argv):
    import importlib.util
    import runpy
    import traceback

    from .. import _child, _core, _loop

    _core.start()   # before the program's first import
    if os.environ.pop(PRELOADED, None) == "1":
        os.environ.pop("LD_PRELOAD", None)      # the program's own children go without it
    if args.native:
        try:
            _core.native_start()
        except RuntimeError as exc:
            _child.stderr().write("refhound run: native memory is not tracked: %s\n"
                                  % str(exc).replace("refhound: ", ""))
    _loop.DEFAULT_REPORT = not args.quiet
    failed = None
    try:
        if args.module is not None:
            sys.path.insert(0, os.getcwd())
            try:
                spec = importlib.util.find_spec(args.module)
            except (ImportError, ValueError) as exc:
                return fail_usage("cannot find module %r: %s" % (args.module, exc))
            if spec is None:
                return fail_usage("no module named %r" % args.module)
            sys.argv = [spec.origin or args.module] + argv
            runpy.run_module(args.module, run_name="__main__", alter_sys=True)
        else:
            path = argv[0]
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code not in (None, 0):
            failed = "the program exited with status %s" % (code,)
            if not isinstance(code, int):
                _child.stderr().write("%s\n" % (code,))
    except KeyboardInterrupt:
        raise
    except BaseException:
        traceback.print_exc(file=_child.stderr())
        failed = "the program raised (traceback above)"
    checks = _loop.finish_all()
    return _summary(args, checks, failed)


def _summary(args, checks, failed):
    import json

    from .. import _child
    out, err = _child.stdout(), _child.stderr()

    entries = []
    found = inconclusive = 0
    for c in checks:
        if c.result is not None:
            entries.append(c.result.to_dict())
            found += c.result.verdict in ("leak", "error")
            inconclusive += c.result.verdict == "inconclusive"
        else:
            entries.append({"target": c.name, "verdict": None, "notes": [c.unchecked]})
    if args.json:
        text = json.dumps(entries, indent=2)
        if args.json == "-":
            out.write(text + "\n")
        else:
            try:
                with open(args.json, "w") as f:
                    f.write(text + "\n")
            except OSError as exc:
                return fail_usage("cannot write %s: %s" % (args.json, exc.strerror or exc))
    if args.html:
        from ..report.html import write_report
        if not write_report(args.html, entries, None if args.quiet else sys.stderr):
            return EXIT_USAGE
    if not checks:
        err.write("refhound run: the program marks no loop with refhound.loop(); "
                         "nothing was checked\n")
    else:
        verdicts = ", ".join(
            "%s %s" % (c.name, c.result.verdict if c.result is not None else "unchecked")
            for c in checks)
        err.write("refhound run: %d loop%s checked: %s\n"
                         % (len(checks), "" if len(checks) == 1 else "s", verdicts))
    if failed:
        err.write("refhound run: %s\n" % failed)
        return EXIT_TARGET
    if found or (args.strict and inconclusive):
        return EXIT_FOUND
    return EXIT_CLEAN
