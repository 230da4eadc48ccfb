"""Suppressions generated for the interpreter that runs the program.

The suppression file shipped with CPython is written by hand for one
version and one build; it goes stale.  refhound instead runs a clean
baseline under memcheck with --gen-suppressions=all: the same interpreter,
the same allocator and options, starting up, importing the program's
third-party entry module (pytest for `-m pytest`) and collecting garbage.
Every error and loss record of that run is the interpreter's own noise
(the records of its leak search at exit; not a search while everything is
alive: its thousands of records as suppressions would make every later
leak search several times slower, and the user-frame filter drops them):

* loss records become suppressions with their whole stack (as deep as
  --num-callers), so they only ever match the same allocation path and can
  never hide an allocation made from the user's code;
* errors (uninitialised values seen by the interpreter, and the like) keep
  their top ERROR_FRAMES frames only: the same fault reached from another
  Python call path is the same noise.

The file is cached per interpreter build under ~/.cache/refhound/valgrind
(XDG_CACHE_HOME and REFHOUND_CACHE_DIR are honoured), keyed by the
executable and its libpython (path, size, mtime), sys.version, the build
flags, Valgrind's version, the allocator and the options that shape
stacks; a change of any of them makes a new file.
"""
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

from .xmlparse import read_events

ERROR_FRAMES = 6
FORMAT = 5               # bump when the way files are generated changes
NAME = "refhound-baseline"

_PROBE = r"""
import json, os, sys, sysconfig
libpython = None
try:
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if "libpython" in os.path.basename(path):
                libpython = path
                break
except OSError:
    pass
paths = sysconfig.get_paths()
try:
    import refhound._core as core
    refhound_ok = bool(getattr(core, "HAVE_VALGRIND", 0))
    refhound_dir = os.path.dirname(os.path.abspath(core.__file__))
except Exception:
    refhound_ok, refhound_dir = False, None
print(json.dumps({
    "executable": sys.executable,
    "realpath": os.path.realpath(sys.executable),
    "version": sys.version,
    "hexversion": sys.hexversion,
    "abiflags": getattr(sys, "abiflags", ""),
    "config_args": sysconfig.get_config_var("CONFIG_ARGS") or "",
    "py_debug": bool(sysconfig.get_config_var("Py_DEBUG")),
    "with_valgrind": bool(sysconfig.get_config_var("WITH_VALGRIND")),
    "libpython": libpython,
    "stdlib": [paths.get("stdlib"), paths.get("platstdlib")],
    "include": [paths.get("include"), paths.get("platinclude")],
    "site": [paths.get("purelib"), paths.get("platlib")],
    "refhound_pool": refhound_ok,
    "refhound_dir": refhound_dir,
}))
"""


class BaselineError(Exception):
    """The baseline run failed; the message says how."""


def probe_interpreter(python, env):
    """Facts about the target interpreter (run natively, not under Valgrind)."""
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True,
                              env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BaselineError("cannot run %s: %s" % (python, exc))
    if proc.returncode != 0:
        raise BaselineError("%s failed to describe itself:\n%s" % (python, proc.stderr.strip()))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _stat(path):
    try:
        st = os.stat(path)
        return [path, st.st_size, int(st.st_mtime)]
    except (OSError, TypeError):
        return [path, None, None]


def cache_dir():
    base = os.environ.get("REFHOUND_CACHE_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                            os.path.join(os.path.expanduser("~"), ".cache"), "refhound")
    return os.path.join(base, "valgrind")


def cache_key(info, valgrind_version, allocator, options, imports):
    """The inputs that decide what the baseline's records look like."""
    key = {
        "format": FORMAT,
        "executable": _stat(info["realpath"]),
        "libpython": _stat(info.get("libpython")),
        "version": info["version"],
        "abiflags": info["abiflags"],
        "config_args": info["config_args"],
        "py_debug": info["py_debug"],
        "valgrind": valgrind_version,
        "allocator": allocator,
        "options": list(options),
        "imports": sorted(imports),
        "refhound_core": _stat(_core_path(info)),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return key, digest


def _core_path(info):
    d = info.get("refhound_dir")
    if not d:
        return None
    for name in sorted(os.listdir(d)):
        if name.startswith("_core.") and name.endswith(".so"):
            return os.path.join(d, name)
    return None


_FRAME_RE = re.compile(r"^\s*(fun:|obj:|src:|\.\.\.)")


def _generalise(raw, kind):
    """Name a generated suppression after its top function (memcheck's
    <suppcounts> then say which kinds of noise matched); cut error
    suppressions to their top frames (leak suppressions keep their whole
    stack)."""
    lines = [ln.rstrip() for ln in raw.strip().splitlines()]
    if len(lines) < 4 or lines[0] != "{" or lines[-1] != "}":
        return None
    body = lines[2:-1]
    head = [ln for ln in body if not _FRAME_RE.match(ln)]
    frames = [ln for ln in body if _FRAME_RE.match(ln)]
    if not frames:
        return None
    if kind is not None and not kind.startswith("Leak_"):
        frames = frames[:ERROR_FRAMES]
    top = next((ln.strip()[4:] for ln in frames if ln.strip().startswith("fun:")), "")
    name = "%s:%s" % (NAME, top) if top else NAME
    return "\n".join(["{", "   " + name] + head + frames + ["}"])


def suppressions_from_xml(paths):
    """Every suppression memcheck generated in these XML files, generalised
    and without duplicates, in first-seen order."""
    seen = {}
    for path in paths:
        for ev, payload in read_events(path):
            if ev != "error" or not payload.suppression:
                continue
            text = _generalise(payload.suppression, payload.kind)
            if text is not None and text not in seen:
                seen[text] = True
    return list(seen)


def baseline_program(imports):
    """The Python code the baseline runs (after the boot module)."""
    lines = ["import gc"]
    for mod in imports:
        lines.append("try:\n    import %s\nexcept BaseException:\n    pass" % mod)
    lines.append("gc.collect()")
    return "\n".join(lines) + "\n"


def ensure(python, info, valgrind, valgrind_version, memcheck_opts, boot_prefix, env,
           allocator, key_options, imports=(), regenerate=False, log=None):
    """Path of the suppression file for this interpreter build, generating
    it (a baseline run under memcheck, some seconds) when missing or stale.
    Returns (path, generated_now, count)."""
    key, digest = cache_key(info, valgrind_version, allocator, key_options, imports)
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "baseline-%s.supp" % digest)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path) and not regenerate:
            return path, False, _count(path)
        if log is not None:
            log("refhound: generating suppressions for %s (a baseline run under memcheck, "
                "once per interpreter build)..." % info["executable"])
        with tempfile.TemporaryDirectory(prefix="refhound-baseline-") as tmp:
            xml = os.path.join(tmp, "base.%p.xml")
            cmd = ([valgrind] + memcheck_opts +
                   ["--gen-suppressions=all", "--errors-for-leak-kinds=all",
                    "--xml=yes", "--xml-file=" + xml,
                    "--log-file=" + os.path.join(tmp, "base.%p.log")] +
                   [python] + boot_prefix + ["-c", baseline_program(imports)])
            proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
            files = sorted(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".xml"))
            if proc.returncode != 0 or not files:
                logs = ""
                for f in sorted(os.listdir(tmp)):
                    if f.endswith(".log"):
                        with open(os.path.join(tmp, f), errors="replace") as fh:
                            logs += fh.read()[-2000:]
                raise BaselineError("the baseline run failed (exit %d): %s%s"
                                    % (proc.returncode, proc.stderr.strip()[-2000:], logs))
            supps = suppressions_from_xml(files)
        header = ["# refhound: suppressions generated from a clean baseline run",
                  "# interpreter: %s" % info["executable"],
                  "# key: %s" % json.dumps(key, sort_keys=True),
                  "# %d suppressions" % len(supps), ""]
        tmp_path = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp_path, "w") as fh:
            fh.write("\n".join(header) + "\n".join(supps) + "\n")
        os.replace(tmp_path, path)
        return path, True, len(supps)


def _count(path):
    n = 0
    with open(path, errors="replace") as fh:
        for line in fh:
            if line.startswith("{"):
                n += 1
    return n


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print("\n".join(suppressions_from_xml([p])))
