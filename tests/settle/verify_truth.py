#!/usr/bin/env python3
"""Check the settle corpus's ground truth against measurements, without refhound.

Every callable of the corpus (``corpus.pairs()``) runs in a fresh child
process of the target interpreter: it is first called through its filling
phase, then far past it (``--past`` times ``settles_after``, at least
``--warmup`` calls), and then measured over two windows of ``--calls`` calls
each.  With ``gc.collect()`` before every reading, per call:

* refs    -- the sum of ``sys.getrefcount()`` over every object reachable
             from the gc-tracked ones and from the probe's (immortal objects
             left out); on a debug build also the ``sys.gettotalrefcount()``
             delta, which must agree with it (or with ``debug_total`` where
             3.11's accounting differs: see corpus.py);
* objects -- live Python objects among the blocks that the small helper
             ``tests/zoo/support/zoo_probe.c`` tracks (it wraps the allocators
             and recognises object headers: ints, strs and untracked tuples
             count too);
* blocks  -- live tracemalloc traces of the three PEP 445 domains.

The same measurement of a do-nothing callable is subtracted.  A settling
callable must read 0 in both windows (within ``--abs-tol`` per call) and
must have allocated during its filling phase; a twin must read its
``leaks_per_call`` in both windows (within 5 %, or its stated tolerance).
Exit status 1 on a mismatch, 2 when a child fails.

Usage::

    python3 tests/settle/verify_truth.py                        # this interpreter
    python3 tests/settle/verify_truth.py --python python3.11-dbg
    python3 tests/settle/verify_truth.py -k lru_evict -v        # some cases, details
"""

import argparse
import concurrent.futures
import gc
import json
import os
import types
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
PROBE_C = os.path.join(TESTS, "zoo", "support", "zoo_probe.c")

# A window is a multiple of every period in the corpus (6, 51, 100) and of
# the cycles of keys whose live set is not always the same size (60 time
# zones), so a cache emptied periodically is read at the same phase at both
# ends.
DEFAULT_CALLS = 10200


# --------------------------------------------------------------------------
# child side: runs inside the target interpreter

def _all_types():
    seen = set()
    stack = [object, type]
    while stack:
        t = stack.pop()
        if t not in seen:
            seen.add(t)
            stack.extend(type.__subclasses__(t))
    return list(seen)


def _traced_blocks():
    import tracemalloc
    snap = tracemalloc.take_snapshot()
    snap = snap.filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),
                               tracemalloc.DomainFilter(True, 0)))
    return len(snap.traces)


# Immortal objects (3.12+) have a refcount of 2**32 - 1 and are left out.
# On 3.11 the statically allocated objects (small ints, deep-frozen code and
# strings) start at 999999999 and count like any other; whether the walk
# reaches one depends on who refers to it at the time, so they are anchored:
# every one ever seen (and every small int) is counted in every walk,
# reachable or not, by what it holds above its initial 999999999.
_IMMORTAL = 1 << 31
_STATIC = 500_000_000
_STATIC_START = 999_999_999
_anchors = {id(i): i for i in range(-5, 257) if sys.getrefcount(i) >= _STATIC}
_unanchored = [0]
_CODE = types.CodeType


def _more_referents(objs):
    """What ``gc.get_referents()`` leaves out: the keys of str-keyed dicts
    (strings cannot make cycles, so the collector does not visit them) and
    what code objects hold (they are not gc objects on 3.11+), except what
    reading would make."""
    out = []
    for o in objs:
        t = type(o)
        if t is dict or issubclass(t, dict):
            out.extend(dict.keys(o))
        elif t is _CODE:
            out.extend((o.co_consts, o.co_names, o.co_filename, o.co_name,
                        o.co_qualname, o.co_linetable, o.co_exceptiontable))
            if sys.version_info < (3, 12):
                out.extend(o.co_varnames + o.co_cellvars + o.co_freevars)
            # From 3.12 the code object makes these three tuples on first
            # reading and keeps them: reading them would add blocks, objects
            # and references the program never makes.  The names they hold
            # are interned, so immortal, and add nothing to the sum.
    return out


def _walked_refs(probe):
    """Sum of the refcounts of every object reachable from a gc-tracked one
    or from one the probe tracks (and of the anchored static objects).

    The walk's own containers are never walked (their ids are seen from the
    start; no closure refers to them), and its own references are taken
    out: at the time of counting each object is held by ``allobjs``, by the
    loop variable and by the argument of ``sys.getrefcount`` (an anchor also
    by ``_anchors``)."""
    gc.collect()
    # The roots before the list of every type: a list made first would be
    # one of them, walked and kept by ``allobjs`` while counting, one more
    # reference on every type (a class made per call: +1 per call).
    roots = gc.get_objects()
    everytype = _all_types()
    tracked = probe.live_objects(everytype)
    seen = set(map(id, roots))
    seen.add(id(seen))
    seen.add(id(roots))
    seen.add(id(tracked))
    seen.add(id(everytype))
    del everytype
    for o in tracked:
        if id(o) not in seen:
            seen.add(id(o))
            roots.append(o)
    del tracked
    allobjs = list(roots)
    seen.add(id(allobjs))
    frontier = roots
    del roots
    while frontier:
        nxt = []
        seen.add(id(nxt))
        for r in gc.get_referents(*frontier):
            if id(r) not in seen:
                seen.add(id(r))
                nxt.append(r)
        for r in _more_referents(frontier):
            if id(r) not in seen:
                seen.add(id(r))
                nxt.append(r)
        allobjs.extend(nxt)
        frontier = nxt
    del frontier, nxt
    o = r = None
    getrefcount = sys.getrefcount
    for o in allobjs:
        c = getrefcount(o)
        if _STATIC <= c < _IMMORTAL and id(o) not in _anchors:
            _anchors[id(o)] = o
            _unanchored[0] += 1
    for i, o in _anchors.items():
        if i not in seen:
            allobjs.append(o)
    del seen
    total = 0
    for o in allobjs:
        c = getrefcount(o)
        if c < _IMMORTAL:
            total += (c - 4 - _STATIC_START) if id(o) in _anchors else c - 3
    del o
    return total


def _clear():
    """A full collection, and the type attribute cache emptied: on 3.11 it
    keeps the last name string looked up in each of its 4096 slots alive,
    slots indexed by the string's address, so fresh name strings fill it
    slowly; it is bounded, the interpreter's own, and refhound empties it
    before every sample too."""
    sys._clear_type_cache()
    gc.collect()


def _measure(func, calls, probe, walk=True):
    totalref = getattr(sys, "gettotalrefcount", None)
    rng = range(calls)
    if walk:
        _walked_refs(probe)     # meet new static objects before the readings
    _clear()
    tm0 = _traced_blocks()
    _clear()
    probe.snapshot(0, _all_types())
    w0 = _walked_refs(probe) if walk else 0
    _clear()
    r0 = totalref() if totalref else 0
    probe.mark()
    for _ in rng:
        func()
    _ = None
    _clear()
    r1 = totalref() if totalref else 0
    w1 = _walked_refs(probe) if walk else 0
    probe.snapshot(1, _all_types())
    _clear()
    tm1 = _traced_blocks()
    d = probe.delta()
    return {"refs": (r1 - r0) if totalref else None,
            "walked_refs": (w1 - w0) if walk else None,
            "objects": d["objects"],
            "blocks": tm1 - tm0,
            "by_type": {k: v for k, v in d["by_type"].items() if v},
            "probe_oom": d["table_oom"], "unanchored": _unanchored[0]}


def _noop():
    """Baseline: does nothing."""


def child_main(args):
    import tracemalloc
    tracemalloc.start(1)
    sys.path.insert(0, args.so_dir)
    import zoo_probe
    zoo_probe.install()           # after tracemalloc.start(): see zoo_probe.c
    filename, name = args.child.rsplit(":", 1)
    sys.path.insert(0, HERE)      # as `refhound check FILE.py:NAME` does
    mod = __import__(os.path.basename(filename)[:-3])
    func = getattr(mod, name)
    out = {"python": sys.executable, "version": list(sys.version_info[:3]),
           "debug": hasattr(sys, "gettotalrefcount")}
    if func.requires:
        try:
            exec(func.requires[0], {})
        except Exception as exc:
            out["skipped"] = "%s (%s: %s)" % (func.requires[1], type(exc).__name__, exc)
            sys.stdout.write("TRUTH-RESULT " + json.dumps(out) + "\n")
            return 0
    _measure(_noop, 10, zoo_probe)          # warm up the measuring code
    out["baseline"] = _measure(_noop, args.calls, zoo_probe)
    if func.settles_after:
        # up to the last call before a periodic cache is emptied
        out["fill_calls"] = func.settles_after - (1 if func.period else 0)
        out["fill"] = _measure(func, out["fill_calls"], zoo_probe, walk=False)
        past = max(args.warmup, int(args.past * func.settles_after))
    else:
        past = args.warmup
    t0 = time.perf_counter()
    for _ in range(past):
        func()
    out["seconds_per_call"] = (time.perf_counter() - t0) / max(1, past)
    out["past_calls"] = past
    # A slow callable gets a shorter window, still a multiple of the
    # periods and cycles of those that have one (6, 51, 60); classes made
    # per call (the slowest) have none.
    windows = [w for w in (2040, 1020, 300) if w < args.calls]
    window = next((w for w in [args.calls] + windows
                   if w * out["seconds_per_call"] <= 2.5), 300)
    out["window"] = window
    out["windows"] = [_measure(func, window, zoo_probe) for _ in range(2)]
    zoo_probe.uninstall()
    sys.stdout.write("TRUTH-RESULT " + json.dumps(out) + "\n")
    return 0


# --------------------------------------------------------------------------
# parent side

def _tag(info):
    exe = os.path.realpath(info["executable"])
    return "%s-%08x" % (os.path.basename(exe).replace("python", "py"), zlib.crc32(exe.encode()))


def run_child(python, target, args, so_dir):
    cmd = [python, os.path.abspath(__file__), "--child", target, "--so-dir", so_dir,
           "--calls", str(args.calls), "--warmup", str(args.warmup), "--past", str(args.past)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    for line in proc.stdout.splitlines():
        if line.startswith("TRUTH-RESULT "):
            return json.loads(line[len("TRUTH-RESULT "):]), proc
    return None, proc


def per_call(res, window, field):
    """Per call in one window, minus the baseline (measured over --calls
    calls; its figures are constant, not per call)."""
    m = res["windows"][window][field]
    if m is None:
        return None
    return (m - res["baseline"][field]) / res["window"]


def judge(func, res, args, version):
    """(cells, problems) for one callable's result."""
    import corpus
    expected = corpus.truth(func, version)
    problems = []
    cells = []
    for field in ("refs", "walked_refs", "objects", "blocks"):
        key = "refs" if field == "walked_refs" else field
        got = [per_call(res, w, field) for w in (0, 1)]
        if got[0] is None:
            cells.append("n/a")
            continue
        want = expected[key]
        if field == "refs" and func.debug_total is not None and version == (3, 11):
            want = func.debug_total     # gettotalrefcount's own accounting
        ok = all(corpus.within(func, key, g, want) if func.settles_after is None
                 else abs(g) <= args.abs_tol for g in got)
        if not ok:
            problems.append(field)
        cells.append("%.3f/%.3f%s" % (got[0], got[1], "" if ok else " !!"))
    if func.settles_after and func.settles_after > 1:
        fill = res["fill"]
        grew = fill["blocks"] - res["baseline"]["blocks"] > 0 or fill["objects"] > 0
        if not grew:
            problems.append("never allocated while filling")
    if res["windows"][1]["unanchored"] != res["windows"][0]["unanchored"]:
        problems.append("static objects first reached while measuring (refs walk unsure)")
    return expected, cells, problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--calls", type=int, default=DEFAULT_CALLS,
                    help="calls per measured window (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=2000,
                    help="calls before measuring, at least (default %(default)s)")
    ap.add_argument("--past", type=float, default=2.0,
                    help="calls before measuring, in multiples of settles_after")
    ap.add_argument("--abs-tol", type=float, default=0.005,
                    help="per-call error allowed where 0 is expected (default %(default)s)")
    ap.add_argument("-k", dest="select", action="append", default=[],
                    help="only callables whose name or file contains this")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="live objects by type for every callable")
    ap.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "settle"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--so-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)

    sys.path.insert(0, TESTS)
    sys.path.insert(0, HERE)
    import cbuild
    import corpus
    info = cbuild.interpreter_info(args.python)
    version = tuple(info["version"][:2])
    so_dir = os.path.join(args.build_dir, _tag(info))
    try:
        cbuild.build_extension(PROBE_C, so_dir, python=args.python, opt="-O2")
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    funcs = []
    for pair in corpus.pairs():
        for func in (pair.settle, pair.twin):
            target = pair.target(func)
            if args.select and not any(s in target for s in args.select):
                continue
            funcs.append((pair, func, target))
    t0 = time.time()
    pool = concurrent.futures.ThreadPoolExecutor(max(1, args.jobs))
    results = pool.map(lambda f: run_child(args.python, f[2], args, so_dir), funcs)

    print("interpreter: %s (%s%s)  window=%d calls (fewer for slow callables), "
          "past >= max(%d, %g x settles_after)" % (
        info["executable"], ".".join(map(str, info["version"])),
        ", debug build" if info["py_debug"] else ", release build",
        args.calls, args.warmup, args.past))
    print("per call, window 1/window 2, minus a do-nothing baseline; truth in [brackets]")
    hdr = "%-32s %-12s %-17s %-17s %-17s %-17s %s" % (
        "callable", "truth", "refs (total)", "refs (walk)", "objects", "blocks", "verdict")
    print(hdr)
    print("-" * len(hdr))
    bad = crashed = skipped = 0
    raw = {}
    for (pair, func, target), (res, proc) in zip(funcs, results):
        label = "%s:%s" % (pair.file[:-3], func.__name__)
        if res is None:
            crashed += 1
            print("%-32s CHILD FAILED (exit %s)" % (label, proc.returncode))
            sys.stdout.write("".join("    | %s\n" % l for l in
                                     (proc.stdout + proc.stderr).splitlines()[-15:]))
            continue
        raw[label] = res
        if "skipped" in res:
            skipped += 1
            print("%-32s skipped: %s" % (label, res["skipped"]))
            continue
        expected, cells, problems = judge(func, res, args, version)
        if func.settles_after:
            t = "settle@%d" % func.settles_after
        else:
            t = "%g/%g/%g" % (expected["refs"], expected["objects"], expected["blocks"])
        bad += bool(problems)
        print("%-32s %-12s %-17s %-17s %-17s %-17s %s" % (
            label, t, cells[0], cells[1], cells[2], cells[3],
            "ok" if not problems else "MISMATCH " + ", ".join(problems)))
        if args.verbose or problems:
            base = res["baseline"]["by_type"]
            for w, window in enumerate(res["windows"]):
                delta = {k: v - base.get(k, 0) for k, v in window["by_type"].items()
                         if v != base.get(k, 0)}
                delta = dict(sorted(delta.items(), key=lambda kv: -abs(kv[1]))[:8])
                print("%-32s   window %d objects by type: %s" % ("", w + 1, delta or "{}"))
            if func.settles_after:
                fill = res["fill"]
                print("%-32s   filling (%d calls): objects %+d, blocks %+d" % (
                    "", res["fill_calls"], fill["objects"],
                    fill["blocks"] - res["baseline"]["blocks"]))
            print("%-32s   %.1f us per call (under tracemalloc and the probe), "
                  "windows of %d calls" % ("", res["seconds_per_call"] * 1e6, res["window"]))
        sys.stdout.flush()
    pool.shutdown()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"interpreter": info, "calls": args.calls, "results": raw}, fh, indent=1)
    print("%d callable(s) in %.0f s: %d mismatching, %d skipped, %d failed to run" % (
        len(funcs), time.time() - t0, bad, skipped, crashed))
    return 2 if crashed else (1 if bad else 0)


if __name__ == "__main__":
    sys.exit(main())
