#!/usr/bin/env python3
"""Check the bug zoo's ground truth (``zoo-expect``) against measurements.

For every ``tests/zoo/*.c`` this builds the module for the target interpreter
and, in a fresh child process of that interpreter, calls ``clean()`` and
``leaky()`` ``--calls`` times each after ``--warmup`` warm-up calls, with
``gc.collect()`` before every reading, and measures per call:

* refs    -- ``sys.gettotalrefcount()`` delta (debug builds only; the module
             is then compiled against the debug headers);
* blocks  -- delta of live tracemalloc traces (all three PEP 445 domains),
             tracemalloc's own snapshot objects filtered out;
* objects -- live Python objects among the blocks born during the measured
             calls and still alive afterwards (found by the small helper
             ``support/zoo_probe.c``, which wraps the allocators and
             recognises object headers); ``gc.get_objects()`` alone would
             miss ints, strs, bytes and untracked tuples;
* heap    -- for the ``native`` cases (``zoo-native``): delta of the bytes
             the C library's allocator has in use (glibc ``mallinfo2()``,
             ``uordblks + hblkhd``, every arena), read right around the
             loop.  It counts malloc chunks, not requests: a leaked block
             of n bytes holds n rounded up to 16 plus its 8-byte header, so
             the expected range per call is [bytes, bytes + 16 * blocks]
             (5 % either way); a clean twin must stay below HEAP_TOL bytes
             per call.  Native blocks are not counted (glibc keeps no count).

The same measurement of a do-nothing callable is subtracted from every
figure, so the few ints the measuring code itself keeps alive cancel out.
The script exits 1 when a leaky figure is off its ``zoo-expect`` value by more
than 5 % or a clean twin is not zero, 2 on build or child failures.

Usage::

    python3 tests/zoo/verify_truth.py                       # this interpreter
    python3 tests/zoo/verify_truth.py --python python3.11-dbg
    python3 tests/zoo/verify_truth.py --python python3.11-dbg --dev  # -X dev
"""

import argparse
import concurrent.futures
import gc
import json
import os
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))      # tests/, for cbuild

FIELDS = ("refs", "objects", "blocks")
HEAP_TOL = 1.0      # bytes per call a clean native twin may drift (a chunk is >= 32)


def _heap_in_use():
    """Bytes in use in the C library's heap (glibc mallinfo2: every arena,
    mmap'ed chunks included), or None where there is no mallinfo2."""
    import ctypes
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    mallinfo2.restype = Mallinfo2
    mallinfo2.argtypes = []

    def read():
        m = mallinfo2()
        return m.uordblks + m.hblkhd
    return read


# --------------------------------------------------------------------------
# child side: runs inside the target interpreter

def _all_types():
    """Every live type object: the transitive closure of __subclasses__."""
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
    snap = snap.filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
    return len(snap.traces)


def _measure(func, calls, warmup, probe, nsamples=8, heap=None):
    """Deltas around ``calls`` calls of ``func`` (after ``warmup`` calls).

    The readings nest: tracemalloc outermost, then the probe's live-object
    snapshots, then the total refcount right around the loop, so that no
    reading sees the objects of a reading taken inside it.
    """
    totalref = getattr(sys, "gettotalrefcount", None)
    warm = range(warmup)
    rng = range(calls)
    for _ in warm:
        func()
    gc.collect()
    tm0 = _traced_blocks()
    gc.collect()
    probe.snapshot(0, _all_types())
    r0 = totalref() if totalref else 0
    probe.mark()
    h0 = heap() if heap else 0
    for _ in rng:
        func()
    _ = None                    # drop the loop's last int before reading
    gc.collect()
    h1 = heap() if heap else 0
    r1 = totalref() if totalref else 0
    probe.snapshot(1, _all_types(), nsamples)
    gc.collect()
    tm1 = _traced_blocks()
    d = probe.delta()
    return {
        "refs": (r1 - r0) if totalref else None,
        "blocks": tm1 - tm0,
        "objects": d["objects"],
        "heap": (h1 - h0) if heap else None,
        "probe_blocks": {k: d[k] for k in ("raw", "mem", "obj")},
        "born": {"blocks": d["born_blocks"], "objects": d["born_objects"]},
        "by_type": {k: v for k, v in d["by_type"].items() if v},
        "samples": [_short_repr(o) for o in d["samples"]],
        "probe_oom": d["table_oom"],
    }


def _short_repr(obj):
    try:
        r = repr(obj)
    except Exception as exc:            # pragma: no cover - diagnostics only
        r = "<%s: repr failed: %s>" % (type(obj).__name__, exc)
    return r if len(r) <= 60 else r[:57] + "..."


def child_main(args):
    import tracemalloc
    tracemalloc.start(1)
    sys.path.insert(0, args.so_dir)
    import zoo_probe
    zoo_probe.install()          # after tracemalloc.start(): see zoo_probe.c
    mod = __import__(args.child)
    # Warm up the measuring code itself (the first snapshot filter compiles
    # and caches a regex, the first type walk fills caches, ...).
    heap = _heap_in_use()
    _measure(gc.isenabled, 10, 10, zoo_probe, heap=heap)
    out = {"python": sys.executable, "version": list(sys.version_info[:3]),
           "debug": hasattr(sys, "gettotalrefcount"),
           "dev_mode": bool(sys.flags.dev_mode)}
    # Baseline: a callable that allocates nothing.  Its figures are the
    # measuring code's own footprint and are subtracted by the parent.
    out["baseline"] = _measure(gc.isenabled, args.calls, args.warmup, zoo_probe,
                               heap=heap)
    out["clean"] = _measure(mod.clean, args.calls, args.warmup, zoo_probe, heap=heap)
    out["leaky"] = _measure(mod.leaky, args.calls, args.warmup, zoo_probe, heap=heap)
    zoo_probe.uninstall()
    sys.stdout.write("ZOO-RESULT " + json.dumps(out) + "\n")
    return 0


# --------------------------------------------------------------------------
# parent side

def _tag_for(info):
    exe = os.path.realpath(info["executable"])
    return "%s-%08x" % (os.path.basename(exe).replace("python", "py"),
                        zlib.crc32(exe.encode()))


def run_case(case, args, so_dir):
    cmd = [args.python]
    if args.dev:
        cmd += ["-X", "dev"]
    cmd += [os.path.abspath(__file__), "--child", case["name"],
            "--so-dir", so_dir, "--calls", str(args.calls),
            "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("ZOO-RESULT "):
            return json.loads(line[len("ZOO-RESULT "):]), proc
    return None, proc


def _fmt(x):
    """Expected values: as short as possible."""
    return "%g" % x


def _fmt_measured(x):
    return "%.3f" % x


def _heap_check(case, fn, m, base, args):
    """(cell, ok) of the C library's heap growth per call: checked for the
    native cases only (the others grow it with their PyMem_RawMalloc blocks
    and tracemalloc's own traces)."""
    if case["kind"] != "native":
        return "-", True
    if m.get("heap") is None or base.get("heap") is None:
        return "n/a (no mallinfo2)", True
    got = (m["heap"] - base["heap"]) / args.calls
    if fn == "clean":
        lo, hi = -HEAP_TOL, HEAP_TOL
        expected = "0"
    else:
        n = case["native"]
        lo = n["bytes"] * (1 - args.rel_tol)
        hi = (n["bytes"] + 16 * n["blocks"]) * (1 + args.rel_tol)
        expected = "%g..%g" % (n["bytes"], n["bytes"] + 16 * n["blocks"])
    ok = lo <= got <= hi
    return "[%s] %s%s" % (expected, _fmt_measured(got), "" if ok else " !!"), ok


def _type_delta(m, base):
    """Per-type live-object growth over the measured calls, minus baseline."""
    out = {}
    for k in set(m) | set(base):
        v = m.get(k, 0) - base.get(k, 0)
        if v:
            out[k] = v
    return dict(sorted(out.items(), key=lambda kv: -abs(kv[1])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable,
                    help="target interpreter (default: this one)")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--opt", default="-O0",
                    help="optimisation level for the cases: O0..O3 (or --opt=-O2)")
    ap.add_argument("--dev", action="store_true", help="run the children with -X dev")
    ap.add_argument("--rel-tol", type=float, default=0.05,
                    help="allowed relative error of a leaky figure (default 5%%)")
    ap.add_argument("--abs-tol", type=float, default=0.005,
                    help="allowed absolute error per call where 0 is expected")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "zoo"))
    ap.add_argument("--json", metavar="FILE", help="also write raw results here")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="show per-domain blocks and surviving object types")
    ap.add_argument("cases", nargs="*", help="only these cases (default: all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--so-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)
    if not args.opt.startswith("-"):
        args.opt = "-" + args.opt

    import cbuild
    info = cbuild.interpreter_info(args.python)
    so_dir = os.path.join(args.build_dir, _tag_for(info) + args.opt)
    cases = cbuild.zoo_cases()
    if args.cases:
        unknown = set(args.cases) - {c["name"] for c in cases}
        if unknown:
            print("unknown case(s): %s" % ", ".join(sorted(unknown)), file=sys.stderr)
            return 2
        cases = [c for c in cases if c["name"] in args.cases]

    problems = []
    for c in cases:
        if c["culprit_line"] is None:
            problems.append("%s: no /* @culprit */ marker" % c["name"])
        elif c["culprit_function"] == "clean":
            problems.append("%s: @culprit is inside clean()" % c["name"])

    try:
        cbuild.build_extension(os.path.join(HERE, "support", "zoo_probe.c"),
                               so_dir, python=args.python, opt="-O2")
        for c in cases:
            cbuild.build_case(c, so_dir, python=args.python, opt=args.opt,
                              extra_cflags=["-Wextra", "-Werror"])
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2

    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda c: run_case(c, args, so_dir), cases))

    debug = info["py_debug"]
    print("interpreter: %s (%s%s)%s  calls=%d warmup=%d opt=%s" % (
        info["executable"], ".".join(map(str, info["version"])),
        ", debug build" if debug else ", release build",
        "  -X dev" if args.dev else "", args.calls, args.warmup, args.opt))
    print("figures are per call (measured - baseline); expected in [brackets]")
    if not debug:
        print("refs: not measurable on a release build (no sys.gettotalrefcount)")
    hdr = "%-22s %-6s %-17s %-17s %-17s %-23s %s" % (
        "case", "fn", "refs", "objects", "blocks", "heap bytes (native)", "verdict")
    print(hdr)
    print("-" * len(hdr))

    failures = 0
    crashed = []
    raw = {}
    for case, (res, proc) in zip(cases, results):
        name = case["name"]
        if res is None:
            crashed.append(name)
            print("%-22s CHILD FAILED (exit %s)" % (name, proc.returncode))
            sys.stdout.write("".join("    | %s\n" % l for l in
                             (proc.stdout + proc.stderr).splitlines()[-25:]))
            continue
        raw[name] = res
        base = res["baseline"]
        for fn in ("leaky", "clean"):
            m = res[fn]
            cells, bad = [], []
            for field in FIELDS:
                expected = case["expect"][field] if fn == "leaky" else 0.0
                if m[field] is None:
                    cells.append("[%s] n/a" % _fmt(expected))
                    continue
                got = (m[field] - base[field]) / args.calls
                tol = max(args.rel_tol * abs(expected), args.abs_tol)
                ok = abs(got - expected) <= tol
                if not ok:
                    bad.append(field)
                cells.append("[%s] %s%s" % (_fmt(expected), _fmt_measured(got),
                                            "" if ok else " !!"))
            heap_cell, heap_ok = _heap_check(case, fn, m, base, args)
            if not heap_ok:
                bad.append("heap")
            verdict = "ok" if not bad else "MISMATCH " + ",".join(bad)
            if bad:
                failures += 1
            print("%-22s %-6s %-17s %-17s %-17s %-23s %s" % (
                name if fn == "leaky" else "", fn, cells[0], cells[1],
                cells[2], heap_cell, verdict))
            if args.verbose or bad:
                pb = {d: (m["probe_blocks"][d] - base["probe_blocks"][d])
                      / args.calls for d in ("raw", "mem", "obj")}
                print("%-29s probe blocks/call raw=%s mem=%s obj=%s; "
                      "live objects by type %s%s" % (
                          "", _fmt_measured(pb["raw"]), _fmt_measured(pb["mem"]),
                          _fmt_measured(pb["obj"]),
                          _type_delta(m["by_type"], base["by_type"]) or "{}",
                          " (probe table OOM!)" if m["probe_oom"] else ""))
                if m["samples"]:
                    print("%-29s e.g. %s" % ("", ", ".join(m["samples"][:4])))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"interpreter": info, "calls": args.calls,
                       "warmup": args.warmup, "dev": args.dev,
                       "cases": {c["name"]: c for c in cases},
                       "results": raw}, fh, indent=1)
    for p in problems:
        print("problem: " + p)
    if crashed:
        print("child process failed for: " + ", ".join(crashed))
    print("%s: %d case(s), %d mismatching row(s)%s" % (
        "FAIL" if failures or problems or crashed else "OK", len(cases),
        failures, ", %d marker problem(s)" % len(problems) if problems else ""))
    if crashed:
        return 2
    return 1 if failures or problems else 0


if __name__ == "__main__":
    sys.exit(main())
