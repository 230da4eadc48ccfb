"""The settle corpus: callables that fill a cache and settle, each paired with
a leaking twin of the same shape, and the ground truth of both.

Every case file in this folder (``CASE_FILES``) defines plain no-argument
callables that ``refhound check tests/settle/FILE.py:NAME`` can target, and a
list ``PAIRS`` of ``(settling, twin)``.  The twin runs the same code path
with the bound removed (a key set that never repeats, a container without
its limit) or with a reference kept, so it leaks the same thing forever.

Ground truth travels with each callable, set by the decorators below:

- ``settles_after``: calls after which nothing more survives a call (the
  live size stays within a fixed bound; for a cache emptied periodically,
  within the size of one period).  ``None`` for a twin.
- ``leaks_per_call``: {refs, objects, blocks} per call in the steady state,
  0 for a settling callable.  ``refs`` is the sum of the reference counts of
  all live objects, immortal ones left out (3.12+), which is what
  ``sys.gettotalrefcount()`` counts on a debug build; ``objects`` counts live
  Python objects of every kind (ints and strs included); ``blocks`` counts
  live blocks of the three PEP 445 domains (raw, mem, obj).  Where the
  interpreter version changes the figure (immortal objects, interning,
  heap types in the standard library), ``versions`` gives the figure per
  ``"3.N"``.
- ``tolerance``: the allowed error per field when a container's own growth
  adds a fraction (a deque block every 64 items); otherwise 5 %.
- ``debug_total``: where 3.11's ``sys.gettotalrefcount()`` on a debug build
  is not ``refs``, what it is per call.  It also counts the reference count
  of every dict keys table (not an object; +1 per live table) and misses
  the two references a string loses when it is interned (+2 per string
  interned and kept).
- ``requires``: (statement, reason): a statement that must run in the
  target interpreter for the case to apply (``import numpy``), and the
  reason to skip it otherwise.

The figures are checked against measurements independent of refhound by
``verify_truth.py`` in this folder.  State is per process: a callable
settles once per interpreter, so every check runs in a fresh process.
"""
import functools
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIELDS = ("refs", "objects", "blocks")
ZERO = {"refs": 0, "objects": 0, "blocks": 0}
CASE_FILES = ("basics.py", "text_caches.py", "warning_cases.py", "func_caches.py",
              "containers.py", "classes.py", "services.py", "slow_fillers.py",
              "numpy_caches.py")


def settles(after, period=None, requires=None):
    """Mark a settling callable: nothing survives a call after ``after`` calls.

    ``period``: for a cache emptied every k entries, k (the live size then
    moves within one period's worth, it never trends)."""
    def deco(func):
        func.settles_after = after
        func.period = period
        func.leaks_per_call = dict(ZERO)
        func.versions = {}
        func.tolerance = {}
        func.requires = requires
        func.debug_total = None
        return func
    return deco


def leaks(refs, objects, blocks, versions=None, tolerance=None, requires=None,
          debug_total=None):
    """Mark a leaking twin: ``refs``, ``objects``, ``blocks`` per call, forever.

    ``versions``: {"3.12": {"refs": 1}, ...} figures that differ on a version.
    ``tolerance``: {"blocks": 0.02} absolute error allowed per call, where a
    container's own growth adds a fraction."""
    def deco(func):
        func.settles_after = None
        func.period = None
        func.leaks_per_call = {"refs": refs, "objects": objects, "blocks": blocks}
        func.versions = dict(versions or {})
        func.tolerance = dict(tolerance or {})
        func.requires = requires
        func.debug_total = debug_total
        return func
    return deco


def truth(func, version=None):
    """The per-call figures of ``func`` on interpreter ``version`` (major, minor)."""
    version = tuple(version or sys.version_info[:2])
    out = dict(func.leaks_per_call)
    out.update(func.versions.get("%d.%d" % version[:2], {}))
    return out


def within(func, field, measured, expected):
    """Is a measured per-call figure the truth?  5 % of it, the stated
    tolerance where a container's own growth adds a fraction, and 0.05 per
    call around a truth of 0."""
    allowed = max(0.05 * abs(expected), func.tolerance.get(field, 0.0),
                  0.05 if expected == 0 else 0.0)
    return abs(measured - expected) <= allowed


def verdict_problems(func, status, result, version):
    """What is wrong with refhound's result for ``func`` (a list of strings;
    empty when the result is the truth): a settling callable must be
    ``clean`` (exit 0), a twin ``leak`` (exit 1) at its true rate."""
    if result is None:
        return ["no result (exit %s)" % status]
    verdict = result["verdict"]
    if func.settles_after is not None:
        if (status, verdict) != (0, "clean"):
            return ["%s (exit %s), not clean" % (verdict, status)]
        return []
    if (status, verdict) != (1, "leak"):
        return ["%s (exit %s), not leak" % (verdict, status)]
    expected = truth(func, version)
    problems = []
    for field in FIELDS:
        got = result["per_call"].get(field)
        if got is None or not within(func, field, got, expected[field]):
            problems.append("%s %s per call, truth %g" % (
                field, "missing" if got is None else "%.4g" % got, expected[field]))
    return problems


@functools.lru_cache(maxsize=None)
def _run_requirement(python, statement):
    proc = subprocess.run([python, "-c", statement], capture_output=True, text=True)
    return proc.returncode == 0


def unmet_requirement(python, func):
    """The reason ``func`` does not apply to ``python`` (None if it does)."""
    if not func.requires:
        return None
    statement, reason = func.requires
    return None if _run_requirement(python, statement) else reason


# Pairs never used to tune the verdict rules, named by their settling
# callable: every third pair in file order, chosen before the corpus was
# first run against them.  bench/settle_corpus.py reports them apart.
HELD_OUT = frozenset((
    "interning", "object_ring", "strptime_formats", "warnings_registry", "hand_cache_51",
    "weakvalue_cache", "namedtuple_create", "ctypes_pointer", "decimal_context",
    "memo_slow", "cache_slow", "numpy_finfo"))


class Pair:
    def __init__(self, path, settle, twin):
        self.path = path
        self.file = os.path.basename(path)
        self.settle = settle
        self.twin = twin
        self.held_out = settle.__name__ in HELD_OUT

    def target(self, func):
        return "%s:%s" % (self.path, func.__name__)


def load_module(filename):
    """Import a case file under a private name (its module-level code only
    defines things; nothing runs until a callable is called)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)         # the case files import this module
    path = os.path.join(HERE, filename)
    name = "_settle_corpus_" + filename[:-3]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def pairs(files=CASE_FILES):
    """Every (settling, twin) pair of the corpus, in file order."""
    out = []
    for filename in files:
        mod = load_module(filename)
        for settle, twin in mod.PAIRS:
            out.append(Pair(os.path.join(HERE, filename), settle, twin))
    return out
