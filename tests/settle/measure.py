#!/usr/bin/env python3
"""Run ``refhound check`` (default options) on every callable of the settle
corpus and print, per callable, the verdict, the rate per call, the time
and whether it is the truth.

refhound runs from a copy built for the target interpreter
(``tests/support.py``), from this source tree.

Usage::

    python3 tests/settle/measure.py                          # this interpreter
    python3 tests/settle/measure.py --python python3.11-dbg -j 2
    python3 tests/settle/measure.py -k slow_fillers --json out.json
"""
import argparse
import concurrent.futures
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import corpus  # noqa: E402
import support  # noqa: E402


def run_one(python, pair, func, version, extra):
    reason = corpus.unmet_requirement(python, func)
    if reason:
        return {"skipped": reason}
    t0 = time.perf_counter()
    status, result, err = support.check_json(python, pair.target(func), HERE, *extra)
    seconds = time.perf_counter() - t0
    out = {"status": status, "seconds": seconds}
    if result is None:
        out["verdict"] = "no result (exit %s)" % status
        out["stderr"] = err[-2000:]
        out["problems"] = ["no JSON result"]
        return out
    out["verdict"] = result["verdict"]
    out["per_call"] = {k: result["per_call"].get(k) for k in corpus.FIELDS}
    out["iterations"] = result.get("iterations")
    out["calls_per_iteration"] = result.get("calls_per_iteration")
    out["notes"] = result.get("notes")
    out["problems"] = corpus.verdict_problems(func, status, result, version)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("-k", dest="select", action="append", default=[],
                    help="only callables whose name or file contains this")
    ap.add_argument("-j", "--jobs", type=int, default=1)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("extra", nargs="*", help="more options for refhound check (after --)")
    args = ap.parse_args(argv)
    info = support.cbuild.interpreter_info(args.python)
    version = tuple(info["version"][:2])
    support.engine_path(args.python)
    todo = []
    for pair in corpus.pairs():
        for func in (pair.settle, pair.twin):
            label = "%s:%s" % (pair.file[:-3], func.__name__)
            if args.select and not any(s in label for s in args.select):
                continue
            todo.append((label, pair, func))
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(
            lambda t: run_one(args.python, t[1], t[2], version, args.extra), todo))
    print("interpreter: %s (%s%s), refhound check with %s" % (
        info["executable"], ".".join(map(str, info["version"])),
        ", debug build" if info["py_debug"] else "", " ".join(args.extra) or "default options"))
    hdr = "%-40s %-7s %-13s %-24s %-13s %7s  %s" % (
        "callable", "truth", "verdict", "refs/objects/blocks", "iters x calls", "time",
        "right?")
    print(hdr)
    print("-" * len(hdr))
    wrong = 0
    raw = {}
    for (label, pair, func), out in zip(todo, results):
        raw[label] = out
        if "skipped" in out:
            print("%-40s skipped: %s" % (label, out["skipped"]))
            continue
        truth = "settle" if func.settles_after else "leak"
        pc = out.get("per_call")
        rates = ("%.3g/%.3g/%.3g" % tuple(pc[k] or 0 for k in corpus.FIELDS)) if pc else "-"
        its = out.get("iterations") or {}
        shape = "%sx%s" % (its.get("measured", "?"), out.get("calls_per_iteration", "?")) \
            if its else "-"
        wrong += bool(out["problems"])
        print("%-40s %-7s %-13s %-24s %-13s %6.1fs  %s" % (
            label, truth, out["verdict"], rates, shape, out["seconds"],
            "yes" if not out["problems"] else "NO: " + "; ".join(out["problems"])))
    print("%d callables in %.0f s: %d wrong" % (len(todo), time.time() - t0, wrong))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"interpreter": info, "results": raw}, fh, indent=1)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
