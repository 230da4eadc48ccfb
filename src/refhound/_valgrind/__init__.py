"""refhound under Valgrind: the in-process side.

When the process runs under memcheck (`refhound valgrind -- ...`, or by
hand), `refhound.check` and the pytest plugin bracket what they run with
client requests, so that every memcheck error and leak record can be tied
to the test or the call that caused it:

    scope = begin("tests/test_x.py::test_y")     # None when not under Valgrind
    ...run the test...
    info = end(scope)   # {"errors": 2, "leaked_blocks": 1, ...} deltas

begin() and end() each run a leak search in "changed" mode
(VALGRIND_DO_CHANGED_LEAK_CHECK) and write a marker with VALGRIND_PRINTF
into memcheck's XML, so the records the search prints land between the
markers of their scope.  `scope.iteration(phase, i, calls)` does the same at
an iteration boundary of a leak check: the launcher then tells a per-call
leak (a loss record growing in every measured iteration) from a one-time
allocation (growing only in the first ones).

Markers are lines "refhound:{json}" in <clientmsg>; the launcher
(refhound._valgrind.classify) reads them.  Everything here is a no-op
returning None when refhound was built without Valgrind's headers or the
process does not run under Valgrind, so callers need no guard.

Nothing here keeps a new object per iteration (a check counts survivors):
each scope holds a fixed set of attributes that are replaced, not grown.
"""
import gc
import json
import os
import time

MARK = "refhound:"

try:
    from .. import _core
except ImportError:          # a source tree without the engine built
    _core = None


def available():
    """Was refhound built with Valgrind's headers?"""
    return bool(_core is not None and getattr(_core, "HAVE_VALGRIND", 0))


def running():
    """Does this process run under Valgrind (RUNNING_ON_VALGRIND)?"""
    return available() and _core.valgrind_running() > 0


def mark(event, **fields):
    """Write one marker into Valgrind's log/XML (nothing natively)."""
    if running():
        fields["ev"] = event
        fields["cpu"] = round(time.process_time(), 3)
        _core.valgrind_printf(MARK + json.dumps(fields, sort_keys=True))


def leak_search(mode="changed"):
    """Run memcheck's leak search; its records follow a "search" marker.
    Returns the totals (bytes and blocks per kind) or None natively."""
    if not running():
        return None
    _core.valgrind_printf(MARK + '{"ev": "search", "mode": "%s", "cpu": %.3f}'
                          % (mode, time.process_time()))
    return _core.valgrind_leak_check(mode)


_TOTALS = ("leaked_bytes", "leaked_blocks", "dubious_bytes", "dubious_blocks",
           "reachable_bytes", "reachable_blocks")


def _delta(after, before):
    return {k: after[k] - before[k] for k in _TOTALS}


class Scope:
    """One test or call bracketed by markers (see begin())."""

    __slots__ = ("name", "kind", "errors0", "totals0", "last", "ended", "result")

    def __init__(self, name, kind, errors0, totals0):
        self.name = name
        self.kind = kind
        self.errors0 = errors0
        self.totals0 = totals0
        self.last = totals0
        self.ended = False
        self.result = None

    def iteration(self, phase, index, calls):
        """An iteration boundary inside a leak check: search, then mark."""
        if self.ended:
            return
        totals = leak_search("changed")
        if totals is None:
            return
        _core.valgrind_printf(
            MARK + '{"ev": "iter", "phase": "%s", "index": %d, "calls": %d}'
            % (phase, index, calls))
        self.last = totals

    def end(self, collect=True):
        """Close the scope; returns its figures (deltas since begin)."""
        if self.ended:
            return self.result
        self.ended = True
        if collect:
            gc.collect()
        totals = leak_search("changed")
        errors = _core.valgrind_count_errors() - self.errors0
        out = {"name": self.name, "errors": errors}
        out.update(_delta(totals, self.totals0))
        mark("end", kind=self.kind, name=self.name, pid=os.getpid(), errors=errors)
        if _stack and _stack[-1] is self:
            _stack.pop()
        elif self in _stack:
            _stack.remove(self)
        self.result = out
        return out


_stack = []


def begin(name, kind="test", collect=True):
    """Open a scope named `name` ("test" or "call"); None when not under
    Valgrind.  A leak search first, so the scope starts from a known state."""
    if not running():
        return None
    if _stack and _stack[-1].kind == kind and _stack[-1].name == str(name):
        return None         # already open (a plugin and a conftest both bracketing)
    if collect:
        gc.collect()
    totals = leak_search("changed")
    mark("begin", kind=kind, name=str(name), pid=os.getpid())
    scope = Scope(str(name), kind, _core.valgrind_count_errors(), totals)
    _stack.append(scope)
    return scope


def end(scope, collect=True):
    """Close a scope from begin(); returns {"name", "errors", "leaked_blocks",
    "leaked_bytes", "dubious_*", "reachable_*"} (deltas), or None."""
    if scope is None:
        return None
    return scope.end(collect=collect)


UNFILTERED_NOTE = ("memcheck's own counts over the scope, the interpreter's noise included; "
                   "the report of `refhound valgrind` has the errors and leaks in your code")


def unfiltered(info):
    """A scope's figures for a report that is not the launcher's (a pytest
    user property, Result.valgrind): every count named as memcheck's own,
    so that no one reads "errors": 700000 as errors of the user's."""
    out = {"name": info.get("name"), "note": UNFILTERED_NOTE}
    for key, value in info.items():
        if key != "name":
            out["memcheck_" + key] = value
    return out


def attach(scope, result):
    """Close a check's scope and put its figures on the Result (as
    result.valgrind, also in its JSON), named as memcheck's own."""
    info = end(scope, collect=False)
    if info is not None and result is not None:
        try:
            result.valgrind = unfiltered(info)
        except AttributeError:
            pass
    return info
