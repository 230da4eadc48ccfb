"""refhound build-python SOURCE_DIR --prefix DIR — a leak-hunting CPython.

Configures, builds and installs a CPython source tree that the user
supplies (a release tarball or a git checkout, 3.9 or newer) with what a
leak hunt wants:

  --with-pydebug        Py_DEBUG: sys.gettotalrefcount(), assertions, the
                        allocator debug hooks
  --without-pymalloc    every object a separate malloc block (Valgrind and
                        ASan see each one)
  free lists off        the per-version way (FREELISTS below)
  --with-valgrind       when Valgrind's headers are installed (only
                        matters when pymalloc is kept: --with-pymalloc)
  --with-trace-refs     on request (--trace-refs): sys.getobjects()
  CFLAGS                -fno-omit-frame-pointer: cheap native stacks

The build happens out of tree, in PREFIX/build (the source tree is not
touched), then `make install` into PREFIX.  Progress is shown; logs are
kept in the build directory.  Exit status: 0 built (or configured, with
--configure-only), 2 bad usage or source tree, 3 configure/make failed.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from ..cli import EXIT_CLEAN, EXIT_TARGET, fail_usage

MIN_VERSION = (3, 9)

# How to switch the free lists off, per CPython version.  Read in CPython's
# sources (the `search` tool over python/cpython and the headers installed
# with 3.10.13, 3.11.7, 3.12.1 and 3.13.0 on the build machine):
#
# 3.9   Objects/floatobject.c   #ifndef PyFloat_MAXFREELIST   (100)
#       Objects/listobject.c    #ifndef PyList_MAXFREELIST    (80)
#       Objects/dictobject.c    #ifndef PyDict_MAXFREELIST    (80; dicts and keys)
#       Objects/tupleobject.c   #ifndef PyTuple_MAXFREELIST   (2000 per size)
#       Objects/genobject.c     #ifndef _PyAsyncGen_MAXFREELIST (80)
#       Frames (Objects/frameobject.c: `#define PyFrame_MAXFREELIST 200`, no
#       #ifndef) and contexts (Python/context.c) cannot be switched off by a
#       flag.  PyTuple_MAXSAVESIZE stays 20: with 0 the empty-tuple
#       singleton would go too.
# 3.10  Include/internal/pycore_interp.h: #ifndef PyTuple_MAXSAVESIZE,
#       PyTuple_MAXFREELIST, PyList_MAXFREELIST, PyDict_MAXFREELIST,
#       _PyAsyncGen_MAXFREELIST; Objects/floatobject.c #ifndef
#       PyFloat_MAXFREELIST (v3.10.0).  Frames: `#define PyFrame_MAXFREELIST
#       200` without #ifndef, as in 3.9.
# 3.11, 3.12  configure --without-freelists (Doc/using/configure.rst: "Added
#       in version 3.11"): pyconfig.h loses WITH_FREELISTS and every
#       pycore_*.h sets its *_MAXFREELIST to 0 (`#ifndef WITH_FREELISTS`);
#       the -D macros would work as well, but configure is the supported
#       way.
# 3.13+ configure --without-freelists: Include/internal/pycore_freelist.h
#       defines every *_MAXFREELIST unconditionally under
#       `#ifdef WITH_FREELISTS ... #else ... 0`, so -D macros no longer
#       take effect.  Later versions are assumed to keep the option.
FREELIST_MACROS_39_310 = ["PyFloat_MAXFREELIST", "PyList_MAXFREELIST", "PyDict_MAXFREELIST",
                          "PyTuple_MAXFREELIST", "_PyAsyncGen_MAXFREELIST"]


def add_parser(sub):
    b = sub.add_parser("build-python",
                       help="configure, build and install a leak-hunting CPython from a "
                            "source tree")
    b.add_argument("source", metavar="SOURCE_DIR",
                   help="a CPython source tree (3.9 or newer): release tarball or git checkout")
    b.add_argument("--prefix", required=True, metavar="DIR",
                   help="where to install it (DIR/bin/python3); built in DIR/build")
    b.add_argument("--jobs", "-j", type=_positive, default=os.cpu_count() or 1, metavar="N",
                   help="parallel make jobs (default: the number of CPUs)")
    b.add_argument("--trace-refs", action="store_true",
                   help="also --with-trace-refs (sys.getobjects(); a different ABI before 3.13)")
    b.add_argument("--with-pymalloc", action="store_true",
                   help="keep pymalloc (default: off, each object its own malloc block)")
    b.add_argument("--no-valgrind", action="store_true", help="leave out --with-valgrind")
    b.add_argument("--configure-only", action="store_true",
                   help="stop after configure (check the options, build later with make)")
    b.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    b.add_argument("--configure-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for configure, e.g. --configure-arg=--enable-shared "
                        "(repeatable)")


def _positive(text):
    from ..cli import positive_int
    return positive_int(text)


# ---- the plan ----------------------------------------------------------------------

def source_version(source):
    """(major, minor, micro, level) from Include/patchlevel.h, or None."""
    try:
        with open(os.path.join(source, "Include", "patchlevel.h")) as fh:
            text = fh.read()
    except OSError:
        return None
    fields = {}
    for name in ("PY_MAJOR_VERSION", "PY_MINOR_VERSION", "PY_MICRO_VERSION"):
        m = re.search(r"#define\s+%s\s+(\d+)" % name, text)
        if not m:
            return None
        fields[name] = int(m.group(1))
    m = re.search(r"#define\s+PY_VERSION\s+\"([^\"]+)\"", text)
    return (fields["PY_MAJOR_VERSION"], fields["PY_MINOR_VERSION"], fields["PY_MICRO_VERSION"],
            m.group(1) if m else "%d.%d.%d" % (fields["PY_MAJOR_VERSION"],
                                               fields["PY_MINOR_VERSION"],
                                               fields["PY_MICRO_VERSION"]))


def valgrind_headers():
    return os.path.isfile("/usr/include/valgrind/valgrind.h")


def plan(version, prefix, trace_refs=False, with_pymalloc=False, valgrind=True,
         extra_args=(), environ=None):
    """Configure arguments, environment additions and what each choice does."""
    environ = os.environ if environ is None else environ
    args = ["--prefix=" + prefix, "--with-pydebug"]
    enabled = [("Py_DEBUG", "--with-pydebug: sys.gettotalrefcount(), assertions, "
                            "allocator debug hooks")]
    cflags = ["-fno-omit-frame-pointer"]
    cppflags = []
    if not with_pymalloc:
        args.append("--without-pymalloc")
        enabled.append(("pymalloc off", "--without-pymalloc: every object is its own malloc "
                                        "block"))
    else:
        enabled.append(("pymalloc kept", "--with-pymalloc asked for"))
    if version[:2] >= (3, 11):
        args.append("--without-freelists")
        enabled.append(("free lists off", "--without-freelists (3.11+)"))
    else:
        cppflags += ["-D%s=0" % m for m in FREELIST_MACROS_39_310]
        enabled.append(("free lists off", "CPPFLAGS %s (frames and contexts keep theirs: "
                                          "no macro for them in %d.%d)"
                        % (" ".join("-D%s=0" % m for m in FREELIST_MACROS_39_310),
                           version[0], version[1])))
    if valgrind:
        if valgrind_headers():
            args.append("--with-valgrind")
            enabled.append(("Valgrind support", "--with-valgrind" + (
                ": pymalloc steps aside under Valgrind" if with_pymalloc
                else " (no effect while pymalloc is off; it matters with --with-pymalloc)")))
        else:
            enabled.append(("Valgrind support: left out", "no /usr/include/valgrind/valgrind.h"
                                                          " (apt-get install valgrind)"))
    if trace_refs:
        args.append("--with-trace-refs")
        enabled.append(("Py_TRACE_REFS", "--with-trace-refs: sys.getobjects()"))
    enabled.append(("frame pointers", "CFLAGS -fno-omit-frame-pointer"))
    args += list(extra_args)
    env = {"CFLAGS": " ".join(filter(None, [environ.get("CFLAGS", "")] + cflags))}
    if cppflags:
        env["CPPFLAGS"] = " ".join(filter(None, [environ.get("CPPFLAGS", "")] + cppflags))
    return args, env, enabled


# ---- running ----------------------------------------------------------------------

class _Progress:
    """One live line on a terminal, plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.width = shutil.get_terminal_size((100, 20)).columns - 1

    def update(self, text):
        if self.tty:
            self.stream.write("\r" + text[:self.width].ljust(self.width))
            self.stream.flush()

    def line(self, text):
        if self.tty:
            self.stream.write("\r" + " " * self.width + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


_COMPILED = re.compile(r"\s-o\s+(\S+\.o)\b")


def run_step(label, cmd, cwd, env, log_path, progress):
    """Run one step with its output in log_path; a live line counts the
    files compiled.  Returns the exit status."""
    t0 = time.monotonic()
    compiled = 0
    progress.line("refhound build-python: %s: %s" % (label, " ".join(shlex.quote(c) for c in cmd)))
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace")
        except OSError as exc:
            log.write("cannot run %s: %s\n" % (cmd[0], exc))
            return 127
        last = ""
        for line in proc.stdout:
            log.write(line)
            m = _COMPILED.search(line)
            if m:
                compiled += 1
                last = os.path.basename(m.group(1))
            elif line.strip():
                last = line.strip()[:60]
            progress.update("  %s: %ds, %d files compiled  %s"
                            % (label, time.monotonic() - t0, compiled, last))
        status = proc.wait()
    progress.line("  %s: %s in %.0fs%s (log: %s)"
                  % (label, "done" if status == 0 else "FAILED (exit %d)" % status,
                     time.monotonic() - t0, ", %d files compiled" % compiled if compiled else "",
                     log_path))
    return status


def verify_pyconfig(build_dir):
    """What the generated pyconfig.h says, or None when there is none."""
    path = os.path.join(build_dir, "pyconfig.h")
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        return None

    def defined(name):
        return re.search(r"^#define\s+%s\b" % name, text, re.M) is not None

    return {name: defined(name) for name in ("Py_DEBUG", "WITH_PYMALLOC", "WITH_FREELISTS",
                                             "WITH_VALGRIND", "Py_TRACE_REFS")}


VERIFY = (
    "import json, sys, sysconfig\n"
    "try:\n"
    "    import _testcapi; alloc = _testcapi.pymem_getallocatorsname()\n"
    "except Exception:\n"
    "    alloc = None\n"
    "print(json.dumps({'version': sys.version.split()[0],\n"
    "  'gettotalrefcount': hasattr(sys, 'gettotalrefcount'),\n"
    "  'getobjects': hasattr(sys, 'getobjects'), 'allocator': alloc,\n"
    "  'WITH_PYMALLOC': sysconfig.get_config_var('WITH_PYMALLOC'),\n"
    "  'WITH_FREELISTS': sysconfig.get_config_var('WITH_FREELISTS'),\n"
    "  'WITH_VALGRIND': sysconfig.get_config_var('WITH_VALGRIND')}))\n"
)


def verify_installed(python):
    """Ask the freshly installed interpreter what it is."""
    import json
    try:
        proc = subprocess.run([python, "-I", "-c", VERIFY], capture_output=True, text=True,
                              timeout=120)
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def run(args):
    source = os.path.abspath(args.source)
    if not os.path.isdir(source):
        return fail_usage("no such directory: %s" % args.source)
    configure = os.path.join(source, "configure")
    if not os.path.isfile(configure):
        return fail_usage("%s has no configure script: not a CPython source tree" % args.source)
    version = source_version(source)
    if version is None:
        return fail_usage("cannot read the version from %s"
                          % os.path.join(args.source, "Include", "patchlevel.h"))
    if version[:2] < MIN_VERSION:
        return fail_usage("%s is CPython %s; refhound supports 3.9 and newer"
                          % (args.source, version[3]))
    prefix = os.path.abspath(args.prefix)
    if prefix == source or source.startswith(prefix + os.sep):
        return fail_usage("--prefix must not be the source tree or contain it")
    build_dir = os.path.join(prefix, "build")
    if os.path.isfile(os.path.join(source, "pyconfig.h")) or \
            os.path.isfile(os.path.join(source, "Makefile")):
        return fail_usage("%s has been configured in place; run `make distclean` there first "
                          "(the build happens in %s)" % (args.source, build_dir))
    cfg_args, env_add, enabled = plan(version, prefix, trace_refs=args.trace_refs,
                                      with_pymalloc=args.with_pymalloc,
                                      valgrind=not args.no_valgrind,
                                      extra_args=args.configure_arg)
    steps = [("configure", [configure] + cfg_args),
             ("make", ["make", "-j%d" % args.jobs]),
             ("install", ["make", "install"])]
    if args.configure_only:
        steps = steps[:1]
    out = sys.stdout
    out.write("refhound build-python: CPython %s from %s\n" % (version[3], source))
    if args.dry_run:
        out.write("  cd %s\n" % build_dir)
        for _, cmd in steps:
            envs = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(env_add.items()))
            out.write("  %s%s\n" % (envs + " " if cmd[0] == configure and envs else "",
                                    " ".join(shlex.quote(c) for c in cmd)))
        _summary(out, enabled, None, None, prefix, build_dir, dry=True)
        return EXIT_CLEAN
    try:
        os.makedirs(build_dir, exist_ok=True)
    except OSError as exc:
        return fail_usage("cannot create %s: %s" % (build_dir, exc.strerror))
    env = dict(os.environ)
    env.update(env_add)
    progress = _Progress()
    for label, cmd in steps:
        log = os.path.join(build_dir, "refhound-%s.log" % label)
        status = run_step(label, cmd, build_dir, env, log, progress)
        if status != 0:
            sys.stderr.write("refhound: error: %s failed (exit %d); the last lines of %s say "
                             "why\n" % (label, status, log))
            return EXIT_TARGET
    pyconfig = verify_pyconfig(build_dir)
    installed = None
    if not args.configure_only:
        python = os.path.join(prefix, "bin", "python%d.%d" % version[:2])
        if not os.path.exists(python):
            python = os.path.join(prefix, "bin", "python3")
        installed = verify_installed(python)
    _summary(out, enabled, pyconfig, installed, prefix, build_dir, dry=False,
             configure_only=args.configure_only, version=version)
    return EXIT_CLEAN


def _summary(out, enabled, pyconfig, installed, prefix, build_dir, dry, configure_only=False,
             version=None):
    out.write("\nEnabled for leak hunting:\n")
    for name, how in enabled:
        out.write("  %-28s %s\n" % (name, how))
    if pyconfig is not None:
        out.write("\nConfigured (read back from %s):\n" % os.path.join(build_dir, "pyconfig.h"))
        for name, value in pyconfig.items():
            out.write("  %-28s %s\n" % (name, "defined" if value else "not defined"))
    if installed is not None:
        out.write("\nInstalled interpreter says:\n")
        out.write("  %-28s %s\n" % ("version", installed["version"]))
        out.write("  %-28s %s\n" % ("sys.gettotalrefcount", "yes" if installed["gettotalrefcount"]
                                    else "NO"))
        out.write("  %-28s %s\n" % ("sys.getobjects", "yes" if installed["getobjects"] else "no"))
        out.write("  %-28s %s\n" % ("allocator", installed["allocator"] or "unknown"))
        out.write("  %-28s %s\n" % ("WITH_FREELISTS", "n/a before 3.11 (macros)"
                                    if installed["WITH_FREELISTS"] is None
                                    else "defined" if installed["WITH_FREELISTS"]
                                    else "not defined"))
    python = os.path.join(prefix, "bin", "python3")
    if dry:
        out.write("\n(dry run: nothing was run)\n")
    elif configure_only:
        out.write("\nConfigured in %s; build and install with: make -C %s -j && make -C %s "
                  "install\n" % (build_dir, build_dir, build_dir))
    else:
        out.write("\nNext: %s -m pip install refhound, build your extension with %s, and run\n"
                  "  %s -m refhound check MODULE:CALLABLE\n"
                  "(extensions must be compiled for this interpreter: its modules end in "
                  ".cpython-%d%dd-...so)\n" % (python, python, python, version[0], version[1]))
