"""Shared helpers for refhound's tests: interpreters, engine builds, CLI runs.

Subprocess tests run refhound from a copy built for the interpreter under
test (release `python3` or Debian's `python3.11-dbg`), so the engine is
compiled against that interpreter's own headers.

REFHOUND_SANITIZE=1 (or `recover`, see setup.py) in the environment builds
those copies with AddressSanitizer and UBSan, in folders of their own; the
sanitizer tier (.ci/sanitize) sets it, with the runtime in LD_PRELOAD.
"""
import fcntl
import glob
import functools
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "build", "tests")
# Debian's debug build of the interpreter running the tests (the release
# and debug halves of the suite compare the two builds of one version).
DEBUG_NAME = "python%d.%d-dbg" % sys.version_info[:2]
DEBUG_PYTHON = shutil.which(DEBUG_NAME)
SANITIZE = os.environ.get("REFHOUND_SANITIZE", "")
if SANITIZE not in ("1", "recover"):
    SANITIZE = ""
SANITIZE_FLAGS = {"1": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
                  "recover": ["-fsanitize=address,undefined", "-fsanitize-recover=all"],
                  "": []}[SANITIZE]

sys.path.insert(0, HERE)
import cbuild  # noqa: E402

INTERPRETERS = {"release": sys.executable, "debug": DEBUG_PYTHON}

# PEP 683: from 3.12 on None, small ints, static types and interned strings
# are immortal, so an extra INCREF on one of them is no leak there, and an
# extra DECREF no error (the zoo cases below come out clean, as
# tests/slow/test_versions.py checks for the first two).
IMMORTAL = sys.version_info >= (3, 12)
IMMORTAL_CASES = ("getbuffer_none", "incref_none", "incref_returned", "incref_static_type",
                  "overrelease_none", "overrelease_small_int")
# 3.12 alone makes interned strings immortal too (3.13 gives them counts
# again): the zoo's module-level interned str.
if sys.version_info[:2] == (3, 12):
    IMMORTAL_CASES += ("incref_cached_str", "overrelease_cached_str")


def asan_resident_memory_only(result):
    """Under the sanitizer tier, an `inconclusive` verdict on which resident
    memory alone moved (every other per-call figure 0): ASan's quarantine
    and its threads' caches (native_thread's clean twin: +22 KB of RSS a
    call).  Never a leak."""
    return bool(SANITIZE) and result["verdict"] == "inconclusive" and all(
        not value for metric, value in result["per_call"].items() if metric != "rss_bytes")


def leaks_here(name):
    """Is the zoo case `name` a leak on the interpreter running the tests?"""
    return not (IMMORTAL and name in IMMORTAL_CASES)


def expected(case):
    """The zoo case's per-call truth on the interpreter running the tests."""
    return case["expect_immortal"] if IMMORTAL else case["expect"]


def skip_unless_leaks_here(name):
    if not leaks_here(name):
        import pytest
        pytest.skip("%s adds or drops a reference of an immortal object: no leak and no "
                    "error on Python %d.%d (PEP 683)" % ((name,) + sys.version_info[:2]))


def interpreter(kind):
    python = INTERPRETERS[kind]
    if python is None:
        import pytest
        pytest.skip("%s is not installed (apt-get install %s)" % (DEBUG_NAME, DEBUG_NAME))
    return python


class _Lock:
    def __init__(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.f = open(path, "w")

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


@functools.lru_cache(maxsize=None)
def engine_path(python):
    """A folder holding the refhound package built for `python`."""
    info = cbuild.interpreter_info(python)
    flavour = {"1": "asan-", "recover": "asan-recover-", "": ""}[SANITIZE]
    out = os.path.join(BUILD, "engine-" + flavour
                       + info["ext_suffix"].strip(".").replace(".so", ""))
    with _Lock(out + ".lock"):
        pkg = os.path.join(out, "refhound")
        os.makedirs(pkg, exist_ok=True)
        has_setuptools = subprocess.run([python, "-c", "import setuptools"],
                                        capture_output=True).returncode == 0
        if has_setuptools:
            proc = subprocess.run(
                [python, "setup.py", "-q", "build_ext", "-b", out, "-t", out + ".tmp"],
                cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError("building refhound for %s failed:\n%s%s"
                                   % (python, proc.stdout, proc.stderr))
        else:
            _build_engine_with_cc(python, pkg)
        # The Python side, as it is in the tree (the .so files come from the build).
        shutil.copytree(os.path.join(ROOT, "src", "refhound"), pkg, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return out


def _build_engine_with_cc(python, pkg):
    """The engine for an interpreter without setuptools: the system compiler
    with the flags setup.py uses."""
    info = cbuild.interpreter_info(python)
    incs = [info["include"]] + ([info["platinclude"]] if info.get("platinclude") else [])
    flags = ["-O1" if SANITIZE else "-O2", "-g", "-fPIC", "-shared", "-fno-omit-frame-pointer",
             "-std=gnu11", "-DREFHOUND_CORE_BUILD=1", "-iquote", os.path.join(ROOT, "src", "core"),
             "-iquote", os.path.join(ROOT, "src", "core", "binding"),
             "-I" + os.path.join(ROOT, "src", "refhound", "include")] + ["-I" + d for d in incs]
    libs = ["-lpthread", "-ldl"]
    if os.path.exists("/usr/include/valgrind/memcheck.h"):
        flags.append("-DHAVE_VALGRIND=1")
    sources = sorted(glob.glob(os.path.join(ROOT, "src", "core", "*.c")) +
                     glob.glob(os.path.join(ROOT, "src", "core", "binding", "*.c")))
    for name, srcs, extra in (("_core", SANITIZE_FLAGS + sources, libs),
                              ("_demo", [os.path.join(ROOT, "src", "demo", "demo.c")], []),
                              ("_preload", [os.path.join(ROOT, "src", "preload", "preload.c")],
                               ["-ldl"])):
        target = os.path.join(pkg, name + info["ext_suffix"])
        proc = subprocess.run(["cc"] + flags + srcs + ["-o", target] + extra,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("compiling refhound for %s failed:\n%s" % (python, proc.stderr))


def zoo_dir(python, opt="-O0"):
    info = cbuild.interpreter_info(python)
    return os.path.join(BUILD, "zoo" + opt + "-" + info["ext_suffix"].strip(".").replace(".so", ""))


def build_zoo_case(case, python, opt="-O0"):
    out = zoo_dir(python, opt)
    with _Lock(out + ".lock"):
        cbuild.build_case(case, out, python=python, opt=opt)
    return out


# What the sanitizer tier (.ci/sanitize) puts in the environment: its runtime
# and options must reach every process that imports the sanitized engine.
SANITIZER_VARIABLES = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "ASAN_SYMBOLIZER_PATH",
                       "REFHOUND_SANITIZE", "REFHOUND_UBSAN_RUNTIME", "REFHOUND_UBSAN_LOG")


def plain_env(**values):
    """A minimal environment for a subprocess: `values`, plus the sanitizer
    tier's variables when they are set."""
    env = {k: os.environ[k] for k in SANITIZER_VARIABLES if k in os.environ}
    env.update(values)
    return env


def libdw_loads():
    """Does elfutils' libdw.so.1 load here?  (A file of that name may be
    there and unusable: .ci/fresh-path --no-libdw mounts an empty one.)"""
    import ctypes
    try:
        ctypes.CDLL("libdw.so.1")
        return True
    except OSError:
        return False


NEEDS_LIBDW = "libdw.so.1 does not load here (apt-get install libdw1)"


def without_sanitizers():
    """os.environ without the sanitizer tier's runtime and options: for the
    programs that do not import the engine (a browser, a compiler's tools),
    which the preloaded runtimes only slow down or break."""
    return {k: v for k, v in os.environ.items() if k not in SANITIZER_VARIABLES}


def run_refhound(python, args, cwd=None, timeout=300, env=None):
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = engine_path(python)
    full_env.pop("PYTHONSTARTUP", None)
    if env:
        full_env.update(env)
    return subprocess.run([python, "-m", "refhound"] + list(args), cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_pytest_refhound(args, cwd, extra_path=(), plugins=()):
    """pytest with refhound's plugin (and only the plugins named; xdist's
    when `-n` is given) in `cwd`, the engine and `extra_path` importable,
    free of the environment of a suite that itself runs under xdist."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([engine_path(sys.executable)] + list(extra_path))
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    for key in list(env):
        if key.startswith("PYTEST_XDIST") or key == "PYTEST_CURRENT_TEST":
            env.pop(key)
    cmd = [sys.executable, "-m", "pytest", "-p", "refhound.pytest_plugin", "-p",
           "no:cacheprovider"]
    if "-n" in args:
        plugins = list(plugins) + ["xdist.plugin"]
    for plugin in plugins:
        cmd += ["-p", plugin]
    return subprocess.run(cmd + list(args), cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=1200)


def check_json(python, target, cwd, *extra):
    """Run `refhound check TARGET --json -`; return (exit status, result dict, stderr)."""
    proc = run_refhound(python, ["check", target, "--json", "-", "--no-progress"] + list(extra),
                        cwd=cwd)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    return proc.returncode, data, proc.stderr


def close_to(measured, expected, rel=0.05, abs_floor=0.05):
    """Within 5% of the truth (an absolute 0.05 per call when the truth is 0)."""
    return abs(measured - expected) <= max(rel * abs(expected), abs_floor if expected == 0 else 0)
