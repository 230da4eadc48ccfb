"""refhound valgrind [OPTIONS] -- COMMAND ... — run a command under memcheck,
quietly: the interpreter's noise suppressed, records filtered to your own
code, leaks classified, each record tied to its test or call."""
import argparse
import os
import shutil
import sys
import tempfile
import time

from ..cli import (EXIT_CLEAN, EXIT_FOUND, EXIT_TARGET, EXIT_USAGE, fail_usage,
                   positive_int, whole_number, MAX_WHOLE, write_json)


def add_parser(sub):
    v = sub.add_parser(
        "valgrind", help="run a command under Valgrind memcheck, filtered to your code",
        description="Run COMMAND under Valgrind's memcheck with an allocator that shows\n"
                    "memcheck every object and suppressions generated for this interpreter;\n"
                    "report the errors and leaks in your own code with their lines, each\n"
                    "tied to its test (pytest) or checked call (refhound.check).",
        epilog="examples:  refhound valgrind -- python -m pytest tests/test_ext.py\n"
               "           refhound valgrind -- python -m refhound check mymod:func\n"
               "           refhound valgrind --json report.json -- python script.py",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("--allocator", choices=("malloc", "pool"), default="malloc",
                   help="malloc: PYTHONMALLOC=malloc, every object a malloc block (default); "
                        "pool: refhound's pool allocator, each object announced to memcheck "
                        "with mempool client requests (same findings; see docs/valgrind.md "
                        "for how the two compare)")
    v.add_argument("--quarantine", type=whole_number(0, MAX_WHOLE), default=None, metavar="BYTES",
                   help="bytes of freed pool blocks held back before reuse, to catch use after "
                        "free (default: memcheck's --freelist-vol, 20000000, plus 5%%)")
    v.add_argument("--json", metavar="FILE", help="write the summary as JSON ('-' for stdout)")
    v.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
    v.add_argument("--user", action="append", default=[], metavar="GLOB",
                   help="only frames whose object or source path matches GLOB are your code "
                        "(repeatable; default: everything but the interpreter, system "
                        "libraries, Valgrind and refhound; site-packages is yours)")
    v.add_argument("--not-user", action="append", default=[], metavar="GLOB",
                   help="frames matching GLOB are not your code (repeatable)")
    v.add_argument("--suppressions", action="append", default=[], metavar="FILE",
                   help="an extra memcheck suppression file (repeatable)")
    v.add_argument("--no-baseline", action="store_true",
                   help="do not generate or use the interpreter's baseline suppressions")
    v.add_argument("--regenerate", action="store_true",
                   help="regenerate the baseline suppressions even if cached")
    v.add_argument("--baseline-import", action="append", default=[], metavar="MODULE",
                   help="also import MODULE in the baseline run (a third-party dependency "
                        "whose import-time noise should be suppressed; repeatable)")
    v.add_argument("--num-callers", type=positive_int, default=24, metavar="N",
                   help="stack depth memcheck records (default 24)")
    v.add_argument("--show-reachable", action="store_true",
                   help="also record possibly lost and still reachable blocks, so growth of "
                        "referenced memory is reported per test (much bigger output)")
    v.add_argument("--track-origins", action="store_true",
                   help="memcheck --track-origins=yes: where uninitialised values come from, "
                        "which tells the interpreter's (CPython 3.11's small-int zero) from "
                        "yours for sure (about 1.7x slower)")
    v.add_argument("--trace-children", action="store_true",
                   help="follow programs the command executes (memcheck --trace-children=yes)")
    v.add_argument("--xml-dir", metavar="DIR",
                   help="keep memcheck's XML files and logs in DIR (default: a temporary "
                        "directory, removed)")
    v.add_argument("--valgrind", metavar="PATH", help="the valgrind executable")
    v.add_argument("--vg-opt", action="append", default=[], metavar="OPTION",
                   help="pass OPTION to valgrind as is (repeatable; e.g. --vg-opt=--freelist-vol=50000000)")
    v.add_argument("--no-test-scopes", action="store_true",
                   help="do not load refhound's per-test scopes plugin into pytest")
    v.add_argument("--quiet", "-q", action="store_true", help="no summary, only the exit status")
    v.add_argument("program", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the command to run")


def run(args):
    from .._valgrind import launcher, report, suppressions
    from .._valgrind.classify import UserFilter, analyze

    command = list(args.program)
    if command and command[0] == "--":
        command = command[1:]
    valgrind = args.valgrind or shutil.which("valgrind")
    if not valgrind or not os.path.exists(valgrind):
        return fail_usage("valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
                          if not args.valgrind else "no valgrind at %s" % args.valgrind)
    for path in args.suppressions:
        if not os.path.isfile(path):
            return fail_usage("no suppression file %s" % path)
    try:
        plan = launcher.plan(command)
    except launcher.PlanError as exc:
        return fail_usage(exc)
    if args.xml_dir:
        os.makedirs(args.xml_dir, exist_ok=True)
        stale = [f for f in os.listdir(args.xml_dir)
                 if f.startswith(("memcheck.", "valgrind.")) and f.endswith((".xml", ".log"))]
        for f in stale:
            os.unlink(os.path.join(args.xml_dir, f))
        xml_dir, tmp = os.path.abspath(args.xml_dir), None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="refhound-valgrind-")
        xml_dir = tmp.name
    try:
        return _run(args, plan, valgrind, xml_dir, launcher, report, suppressions,
                    UserFilter, analyze)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _log(message):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _run(args, plan, valgrind, xml_dir, launcher, report, suppressions, UserFilter, analyze):
    notes = []
    allocator = args.allocator
    if args.quarantine is None:
        args.quarantine = _freelist_vol(args.vg_opt) * 21 // 20
    env = launcher.child_env(allocator)
    info = None
    if plan.kind == "python":
        try:
            info = suppressions.probe_interpreter(plan.python, env)
        except suppressions.BaselineError as exc:
            return fail_usage(exc)
        if allocator == "pool" and not info["refhound_pool"]:
            notes.append("the pool allocator is not available in %s (refhound is not built "
                         "for it, or without Valgrind's headers): PYTHONMALLOC=malloc instead"
                         % plan.python)
            allocator = "malloc"
    else:
        notes.append("%s is not a Python interpreter or script: run as is with "
                     "PYTHONMALLOC=malloc" % plan.argv[0])
        allocator = "malloc"
    if plan.kind == "python" and not args.no_test_scopes:
        plan.with_pytest_scopes()
    opts = launcher.memcheck_options(args.num_callers, args.track_origins, args.trace_children,
                                     args.show_reachable)
    version = launcher.valgrind_version(valgrind)
    supp_files = list(args.suppressions)
    supp_info = {"files": list(args.suppressions), "count": 0, "generated": False}
    if plan.kind == "python" and not args.no_baseline:
        imports = sorted(set(args.baseline_import) | set(_third_party(plan, info)))
        try:
            path, generated, count = suppressions.ensure(
                plan.python, info, valgrind, version, opts,
                launcher.boot_prefix(allocator, args.quarantine), env, allocator,
                opts, imports=imports, regenerate=args.regenerate,
                log=None if args.quiet else _log)
        except suppressions.BaselineError as exc:
            return fail_usage(exc)
        supp_files.insert(0, path)
        supp_info = {"files": supp_files, "baseline": path, "count": count,
                     "generated": generated, "imports": imports}
    cmd = launcher.command_line(valgrind, plan, opts, xml_dir, allocator, args.quarantine,
                                supp_files, args.vg_opt)
    t0 = time.perf_counter()
    try:
        status = launcher.run(cmd, env)
    except launcher.PlanError as exc:
        return fail_usage(exc)
    seconds = time.perf_counter() - t0
    xml_files = sorted(os.path.join(xml_dir, f) for f in os.listdir(xml_dir)
                       if f.startswith("memcheck.") and f.endswith(".xml"))
    if not xml_files:
        log = _valgrind_log(xml_dir)
        return fail_usage("valgrind wrote no report (exit status %d)%s"
                          % (status, (": " + log) if log else ""))
    user = UserFilter(info, include=args.user, exclude=args.not_user)
    analysis = analyze(xml_files, user)
    for p in analysis.processes:
        if p.get("truncated") and not p.get("finished"):
            notes.append("process %s ended without memcheck's final report (killed?): its "
                         "leaks at exit are missing" % p.get("pid"))
    data = report.to_dict({"command": plan.argv, "allocator": allocator,
                           "exit_status": status, "seconds": seconds,
                           "suppressions": supp_info, "notes": notes,
                           "xml_dir": xml_dir if args.xml_dir else None}, analysis)
    stream = sys.stdout
    if args.json:
        stream = write_json(args.json, report.to_json(data))
        if stream is None:
            return EXIT_USAGE
    if not args.quiet:
        from ..report.terminal import use_color
        stream.write(report.render(data, color=use_color(stream), root=os.getcwd()))
    if args.html:
        from ..report.html import write_report
        if not write_report(args.html, data, None if args.quiet else stream):
            return EXIT_USAGE
    if data["errors"] or data["leaks"]:
        return EXIT_FOUND
    if status != 0:
        return EXIT_TARGET
    return EXIT_CLEAN


def _freelist_vol(vg_opts, default=20000000):
    """memcheck's --freelist-vol as the run will use it."""
    vol = default
    for opt in vg_opts:
        if opt.startswith("--freelist-vol="):
            try:
                vol = int(opt.split("=", 1)[1])
            except ValueError:
                pass
    return vol


def _third_party(plan, info):
    """The -m module when it is installed (site-packages), not the user's code."""
    mods = plan.imports()
    if not mods or not info:
        return []
    import subprocess
    code = ("import importlib.util, sys\n"
            "s = importlib.util.find_spec(%r)\n"
            "print(s.origin if s and s.origin else '')\n" % mods[0])
    try:
        out = subprocess.run([plan.python, "-c", code], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    origin = out.stdout.strip()
    dirs = [d for d in (info.get("site") or []) + (info.get("stdlib") or []) if d]
    if origin and any(os.path.realpath(origin).startswith(os.path.realpath(d) + os.sep)
                      for d in dirs):
        return mods
    return []


def _valgrind_log(xml_dir):
    for f in sorted(os.listdir(xml_dir)):
        if f.startswith("valgrind.") and f.endswith(".log"):
            with open(os.path.join(xml_dir, f), errors="replace") as fh:
                text = fh.read().strip()
            if text:
                return text.splitlines()[-1]
    return ""
