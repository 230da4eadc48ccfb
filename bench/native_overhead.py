"""Overhead of native tracking (malloc & co. in extensions) against memray's native mode.

Workloads that call a C library in a tight loop, each run in a fresh
interpreter under every mode, modes interleaved round after round in a
shuffled order (bench/engine.py), only the loop timed:

    hashlib     hashlib.sha256(64 bytes).digest(): OpenSSL's EVP context,
                malloc'd and freed by libcrypto on every call
    zlib        zlib.compress + zlib.decompress of 1 KiB: zlib's state comes
                from PyMem_RawMalloc (the module's zalloc), not malloc
    numpy       np.add / np.multiply of 16-element arrays: numpy's data
                buffers from malloc (through its small-block cache)
    malloc96    native_helpers.clean96() (tests/native_cases): one malloc(96)
                and free per call, the bare cost of a wrapped call

Modes:

    plain            the loop alone
    refhound         refhound._core.start(): PEP 445 hooks only
    refhound-native  + _core.native_start(): the GOT entries redirected
    refhound-stacks  + _core.capture_stacks(True): a stack per block, as in
                     the attribution iterations
    memray           memray.Tracker(file): Python stacks, malloc & co.
    memray-native    memray.Tracker(file, native_traces=True) (`--native`)

    python3 bench/native_overhead.py                       # ~10 min on 2 cores
    python3 bench/native_overhead.py --rounds 3 hashlib
    python3 bench/native_overhead.py --render [FILE]

Prints a table of medians and ratios to plain; writes
bench/results/native_overhead.json.
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
BUILD = os.path.join(ROOT, "build", "bench", "native")
sys.path.insert(0, HERE)
import engine  # noqa: E402
from engine import med  # noqa: E402

MODES = ["plain", "refhound", "refhound-native", "refhound-stacks", "memray", "memray-native"]


# --------------------------------------------------------------------------
# Workloads: make(scale) -> run()

def _hashlib(scale):
    import hashlib
    data = b"x" * 64
    n = int(200_000 * scale)

    def run():
        for _ in range(n):
            hashlib.sha256(data).digest()
    return run


def _zlib(scale):
    import zlib
    data = bytes(range(256)) * 4
    n = int(20_000 * scale)

    def run():
        for _ in range(n):
            zlib.decompress(zlib.compress(data))
    return run


def _numpy(scale):
    import numpy as np
    a = np.arange(16.0)
    b = np.ones(16)
    n = int(200_000 * scale)

    def run():
        for _ in range(n):
            np.multiply(np.add(a, b), a)
    return run


def _malloc96(scale):
    sys.path.insert(0, BUILD)
    import native_helpers
    n = int(1_000_000 * scale)
    f = native_helpers.clean96

    def run():
        for _ in range(n):
            f()
    return run


WORKLOADS = {"hashlib": _hashlib, "zlib": _zlib, "numpy": _numpy, "malloc96": _malloc96}


def build_helpers(python):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import cbuild
    return cbuild.build_extension(os.path.join(ROOT, "tests", "native_cases", "native_helpers.c"),
                                  BUILD, python=python, opt="-O2", extra_cflags=["-ldl"])


# --------------------------------------------------------------------------
# The child: one workload under one mode.

def child_run(mode, workload, scale):
    import gc
    run = WORKLOADS[workload](scale)
    run_warm = WORKLOADS[workload](scale / 20)
    run_warm()                      # imports, caches, numpy's block cache
    gc.collect()
    tracker = core = None
    with tempfile.TemporaryDirectory(prefix="rh-native-bench-") as tmpdir:
        if mode.startswith("refhound"):
            from refhound import _core as core
        elif mode.startswith("memray"):
            import memray
        t0 = time.perf_counter()
        if core is not None:
            core.start()
            if mode in ("refhound-native", "refhound-stacks"):
                core.native_start()
            if mode == "refhound-stacks":
                core.capture_stacks(True)
        elif mode.startswith("memray"):
            tracker = memray.Tracker(os.path.join(tmpdir, "capture.bin"),
                                     native_traces=(mode == "memray-native"))
            tracker.__enter__()
        t1 = time.perf_counter()
        c1 = engine.rusage_cpu()
        run()
        t2 = time.perf_counter()
        c2 = engine.rusage_cpu()
        extra = {}
        if core is not None:
            st = core.native_stats()
            extra = {"native_mode": st["mode"], "patched_objects": st["objects"],
                     "patched_slots": st["slots"], "failure": core.stats()["failure"]}
            core.capture_stacks(False)
            core.stop()
        elif tracker is not None:
            tracker.__exit__(None, None, None)
        t3 = time.perf_counter()
    return {"mode": mode, "workload": workload, "start_s": t1 - t0, "run_s": t2 - t1,
            "cpu_s": c2 - c1, "stop_s": t3 - t2, **extra}


# --------------------------------------------------------------------------
# The parent.

ENGINE = os.path.join(ROOT, "src")


def spawn(python, args):
    return engine.spawn(__file__, python, args, engine.child_env([ENGINE, BUILD]))


def render(doc):
    modes = doc["modes"]
    head = ["workload", "plain s"] + ["%s wall (CPU)" % m for m in modes[1:]]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    ov = doc["overhead"]
    for w, row in ov.items():
        cells = [w, "%.3f" % row["plain_s"]]
        cells += [engine.ratio_cell(row["modes"][m]) for m in modes[1:]]
        lines.append(" | ".join(cells))
    lines.append(" | ".join(engine.geomean_cells(ov, modes)))
    starts = [s["start_s"] for w in doc.get("samples", {}).values()
              for s in w.get("refhound-native", [])]
    if starts:
        lines.append("")
        lines.append("refhound-native start (hooks, adoption, GOT patching): median %.1f ms"
                     % (med(starts) * 1e3))
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if engine.child_or_render(argv, child_run, render,
                              os.path.join(RESULTS, "native_overhead.json")):
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", help="workloads (default: all): %s"
                    % ", ".join(WORKLOADS))
    ap.add_argument("--modes", help="comma-separated modes (default: all): %s" % ", ".join(MODES))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=3)
    engine.add_engine_arguments(ap)
    ap.add_argument("--out", default=os.path.join(RESULTS, "native_overhead.json"))
    args = ap.parse_args(argv)
    names = args.workloads or list(WORKLOADS)
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        ap.error("unknown workload %s (known: %s)" % (unknown[0], ", ".join(WORKLOADS)))
    modes, notes = engine.choose_modes(ap, args.modes or ",".join(MODES), MODES, args.python)

    global ENGINE
    ENGINE = engine.engine_dir(args.python, args.engine)
    build_helpers(args.python)
    doc = engine.run_header(__file__, argv, args.python, ENGINE)
    doc.update(git=engine.git_head(), rounds=args.rounds, scale=args.scale, seed=args.seed,
               modes=modes, notes=notes)
    t0 = time.time()
    samples = engine.interleaved(
        names, modes, args.rounds, args.seed,
        lambda w, m: spawn(args.python, ["--child", m, w, str(args.scale)]))
    doc["overhead"] = {w: engine.ratios(samples[w], modes) for w in names}
    doc["samples"] = samples
    engine.finish(doc, t0, args.out, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
