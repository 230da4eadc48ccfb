"""Run a command under memcheck the way refhound needs it.

plan(command) works out what the command is:

  * a Python interpreter (`python3 -m pytest`, `python x.py`, `python -c`):
    its interpreter options are kept and the program is started through
    refhound._valgrind.boot, which installs the annotated pool allocator;
  * a script whose #! line names Python (`pytest`, console scripts): the
    same, with that interpreter;
  * anything else: run as it is, with PYTHONMALLOC=malloc in its
    environment so that any Python it starts shows memcheck every object.

pyenv-style shims (shell scripts named python*) are resolved by asking
them for sys.executable: Valgrind must start the real interpreter, not a
shell.

memcheck_options() is the one list of options both the run and its
suppression baseline use: XML output (one file per process), full leak
search showing lost blocks (definitely and indirectly; refhound's own
searches hide the GC's links, so a leaked container is lost too), no error
limit.  --show-reachable adds "possibly lost" and "still reachable"
records: thousands on a large program (pytest), hundreds of megabytes of
XML per search.
"""
import os
import re
import shutil
import subprocess

PY_NAME = re.compile(r"^python[\d.]*(?:-dbg|d|m|-debug)?$")

# interpreter options that take a value (python -W ignore, -X dev, ...)
_OPTS_WITH_VALUE = set("WX")
_LONG_WITH_VALUE = ("--check-hash-based-pycs",)


class PlanError(Exception):
    """The command cannot be run; the message says why (exit status 2)."""


class Plan:
    def __init__(self, kind, argv, python=None, interp_opts=(), program=()):
        self.kind = kind                  # "python" | "other"
        self.argv = list(argv)            # as the user gave it
        self.python = python              # the real interpreter executable
        self.interp_opts = list(interp_opts)
        self.program = list(program)      # -c CMD ... | -m MOD ... | - ... | SCRIPT ...

    def is_pytest(self):
        if len(self.program) >= 2 and self.program[0] == "-m":
            return self.program[1] in ("pytest", "py.test")
        return bool(self.program) and os.path.basename(self.program[0]) in ("pytest", "py.test")

    def with_pytest_scopes(self):
        """pytest gets refhound's per-test scopes plugin (-p ...)."""
        if not self.is_pytest():
            return
        at = 2 if self.program[0] == "-m" else 1
        self.program[at:at] = ["-p", "refhound._valgrind.pytest_scopes"]

    def imports(self):
        """Modules worth importing in the suppression baseline: the -m module."""
        if len(self.program) >= 2 and self.program[0] == "-m":
            return [self.program[1].split(".")[0]]
        return []


def _is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _shebang(path):
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").split()
    if not parts:
        return None
    if os.path.basename(parts[0]) == "env" and len(parts) > 1:
        args = [a for a in parts[1:] if not a.startswith("-")]
        return args or None
    return parts


def real_python(path):
    """sys.executable of the interpreter behind `path` (resolves shims)."""
    if _is_elf(path):
        return os.path.abspath(path)
    try:
        out = subprocess.run([path, "-c", "import sys; print(sys.executable)"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    exe = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    return exe if exe and _is_elf(exe) else None


def split_python_args(args):
    """(interpreter options, program part) of a python command line."""
    opts = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-" or not a.startswith("-"):
            return opts, args[i:]
        if a == "--":
            return opts, args[i + 1:]
        if a.startswith("--"):
            name = a.split("=", 1)[0]
            if name in _LONG_WITH_VALUE and "=" not in a:
                opts += args[i:i + 2]
                i += 2
            else:
                opts.append(a)
                i += 1
            continue
        j = 1
        while j < len(a):
            c = a[j]
            if c in "cm":
                if j > 1:
                    opts.append(a[:j])
                value = a[j + 1:]
                if value:
                    return opts, ["-" + c, value] + args[i + 1:]
                if i + 1 >= len(args):
                    raise PlanError("python option -%s needs an argument" % c)
                return opts, ["-" + c] + args[i + 1:]
            if c in _OPTS_WITH_VALUE:
                if a[j + 1:]:
                    opts.append(a)
                    i += 1
                else:
                    if i + 1 >= len(args):
                        raise PlanError("python option -%s needs an argument" % c)
                    opts += [a, args[i + 1]]
                    i += 2
                break
            j += 1
        else:
            opts.append(a)
            i += 1
    return opts, []


def _unshim(path):
    """pyenv's shims are shell scripts: the program they run, for Valgrind
    must start that program itself."""
    if os.path.basename(os.path.dirname(path)) != "shims" or _is_elf(path):
        return path
    try:
        out = subprocess.run(["pyenv", "which", os.path.basename(path)], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return path
    real = out.stdout.strip()
    return real if out.returncode == 0 and real and os.path.exists(real) else path


def plan(argv):
    if not argv:
        raise PlanError("no command given (refhound valgrind [OPTIONS] -- COMMAND ...)")
    exe = argv[0]
    path = exe if os.sep in exe else shutil.which(exe)
    if path is None or not os.path.exists(path):
        raise PlanError("command not found: %s" % exe)
    path = _unshim(path)
    base = os.path.basename(path)
    if PY_NAME.match(base):
        python = real_python(path)
        if python is None:
            raise PlanError("cannot tell which interpreter %s runs" % exe)
        opts, program = split_python_args(argv[1:])
        if not program:
            raise PlanError("give the Python program to run (-c, -m, a script or -); "
                            "an interactive interpreter is not supported")
        return Plan("python", argv, python, opts, program)
    if not _is_elf(path):
        bang = _shebang(path)
        if bang and PY_NAME.match(os.path.basename(bang[0])):
            interp = bang[0] if os.sep in bang[0] else shutil.which(bang[0])
            python = real_python(interp) if interp else None
            if python is not None:
                return Plan("python", argv, python, bang[1:], [path] + argv[1:])
    return Plan("other", [path] + argv[1:])


def valgrind_version(valgrind):
    try:
        out = subprocess.run([valgrind, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def memcheck_options(num_callers=24, track_origins=False, trace_children=False,
                     show_reachable=False):
    kinds = "all" if show_reachable else "definite,indirect"
    opts = ["--tool=memcheck", "--leak-check=full", "--show-leak-kinds=" + kinds,
            "--errors-for-leak-kinds=none", "--num-callers=%d" % num_callers,
            "--error-limit=no", "--keep-debuginfo=yes", "--child-silent-after-fork=no",
            "--trace-children=%s" % ("yes" if trace_children else "no")]
    if track_origins:
        opts.append("--track-origins=yes")
    return opts


def boot_prefix(allocator, quarantine):
    return ["-m", "refhound._valgrind.boot", "--allocator", allocator,
            "--quarantine", str(quarantine), "--"]


def child_env(allocator, base=None):
    """Environment for the program: PYTHONMALLOC=malloc (the pool is
    installed by the boot module on top), refhound importable."""
    env = dict(os.environ if base is None else base)
    env["PYTHONMALLOC"] = "malloc"
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if pkg_parent not in parts:
        env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + parts)
    env["REFHOUND_VALGRIND"] = allocator
    return env


def command_line(valgrind, plan_, opts, xml_dir, allocator, quarantine, suppressions=(),
                 extra=()):
    cmd = [valgrind] + list(opts)
    cmd += ["--xml=yes", "--xml-file=" + os.path.join(xml_dir, "memcheck.%p.xml"),
            "--log-file=" + os.path.join(xml_dir, "valgrind.%p.log")]
    cmd += ["--suppressions=" + s for s in suppressions]
    cmd += list(extra)
    if plan_.kind == "python":
        cmd += [plan_.python] + plan_.interp_opts + boot_prefix(allocator, quarantine) + \
            plan_.program
    else:
        cmd += plan_.argv
    return cmd


def run(cmd, env):
    """Run the command in the foreground; returns its exit status (a signal
    is 128 + signal number, as a shell reports it)."""
    try:
        proc = subprocess.Popen(cmd, env=env)
    except OSError as exc:
        raise PlanError("cannot run %s: %s" % (cmd[0], exc))
    while True:
        try:
            status = proc.wait()
            break
        except KeyboardInterrupt:
            continue      # the child got the signal too; wait for it to finish
    return 128 - status if status < 0 else status
