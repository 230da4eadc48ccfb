"""Overhead of refhound's attribution (an allocation stack per new block)
against tracemalloc with 25 frames and memray with native stacks.

For each workload of bench/workloads.py every mode runs in a fresh
interpreter, the modes interleaved round after round in a shuffled order so
that the load of other processes on the shared machine falls on all of them
alike; medians are reported.  Only the workload is timed: a tool's start
(refhound: hooks + adoption of the objects that already exist) and its stop
(memray: flushing its file) are timed apart.

    plain                 the workload alone
    refhound              refhound._core.start(): tracking only, no stacks
    refhound-stacks       start() + capture_stacks(True): a native stack
                          (cached-CFI walk, src/core/unwind.c) and the
                          Python frames for every new block, interned
    tracemalloc25         tracemalloc.start(25): up to 25 Python frames
    memray-native         memray.Tracker(file, native_traces=True): what
                          `memray run --native` does; sees the system
                          allocator only (pymalloc's arenas, large blocks),
                          not each Python object
    memray-native-pyalloc the same with trace_python_allocators=True: every
                          pymalloc block, as refhound sees them

With --engine-b DIR, the modes refhound-b and refhound-stacks-b run the
same with another build of refhound (a patched copy of the tree), in the
same interleaved rounds: an A/B of an engine change under the same load.

Once per workload a counting probe (bench/c/alloccount.c) gives the number
of allocator calls, to turn the difference into ns per call.

Then one end-to-end figure: a leak check of a leaking zoo case
(tests/zoo/new_object.c, -O2 -g), fresh processes, interleaved rounds:

    cli                   refhound check new_object:leaky (attribution on,
                          as the CLI always does), the whole process
    api-attribution       Checker(attribution=True).run(...) in a script
    api-no-attribution    Checker(attribution=False).run(...) in a script

(calls per iteration pinned by --e2e-calls, default 1000).

    python3 bench/attribution_overhead.py                 # 4-7 min on 2 shared cores
    python3 bench/attribution_overhead.py --rounds 3 json churn --no-e2e
    python3 bench/attribution_overhead.py --e2e-only
    # A/B of a patched engine (see docs/benchmarks-attribution.md)
    python3 bench/attribution_overhead.py --no-e2e --engine-b /tmp/copy/src \
        --modes refhound,refhound-stacks,refhound-stacks-b --out /tmp/ab.json
    # one child, e.g. under perf (PYTHONPATH: the engine folder)
    python3 bench/attribution_overhead.py --child refhound-stacks json 1.0

Prints a table; writes bench/results/attribution_overhead.json.  The
timing of a child, the interleaved rounds and the results file are
bench/engine.py's.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
BUILD = os.path.join(ROOT, "build", "bench", "attribution")
sys.path.insert(0, HERE)
import engine  # noqa: E402
from engine import fmt_ratio, geomean, med  # noqa: E402

MODES = ["plain", "refhound", "refhound-stacks", "tracemalloc25", "memray-native",
         "memray-native-pyalloc"]
B_MODES = ["refhound-b", "refhound-stacks-b"]     # with --engine-b
E2E_MODES = ["cli", "api-attribution", "api-no-attribution"]
E2E_CASE = "new_object"
TARGET_RATIO = 3.0


# --------------------------------------------------------------------------
# The child: one workload under one mode, in a fresh interpreter.

class _Tool:
    def __init__(self, mode, tmpdir):
        self.mode = mode[:-2] if mode in B_MODES else mode
        self.path = os.path.join(tmpdir, "capture.bin")
        self.tracker = None

    def start(self):
        m = self.mode
        if m.startswith("refhound"):
            from refhound import _core
            self.core = _core
            if not _core.start():
                raise RuntimeError("refhound was already tracking")
            if m == "refhound-stacks":
                _core.capture_stacks(True)
        elif m == "tracemalloc25":
            import tracemalloc
            tracemalloc.start(25)
        elif m.startswith("memray"):
            import memray
            self.tracker = memray.Tracker(self.path, native_traces=True,
                                          trace_python_allocators=m.endswith("pyalloc"))
            self.tracker.__enter__()
        elif m == "alloccount":
            import alloccount
            self.probe = alloccount
            alloccount.start()

    def extra(self):
        if self.mode.startswith("refhound"):
            st = self.core.stats()
            return {"table_entries": st["table_entries"], "failure": st["failure"]}
        if self.mode == "tracemalloc25":
            import tracemalloc
            return {"tracemalloc_memory": tracemalloc.get_tracemalloc_memory()}
        if self.mode == "alloccount":
            return {"calls": self.probe.counts()}
        return {}

    def stop(self):
        m = self.mode
        if m.startswith("refhound"):
            if m == "refhound-stacks":
                self.core.capture_stacks(False)
                self.core.reset_stacks()
            self.core.stop()
        elif m == "tracemalloc25":
            import tracemalloc
            tracemalloc.stop()
        elif self.tracker is not None:
            self.tracker.__exit__(None, None, None)
            self.tracker = None
            return {"memray_file_bytes": os.path.getsize(self.path)}
        elif m == "alloccount":
            self.probe.stop()
        return {}


def child_run(mode, workload, scale):
    return engine.time_workload(_Tool, mode, workload, scale, prefix="rh-attr-bench-")


def child_e2e(mode, calls):
    """A leak check of the zoo case through the API, timed by phase."""
    t0 = time.perf_counter()
    from refhound import _core, Checker
    from refhound import _attribution, _checker
    phases = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    # Timing wrappers only: the check itself is the stock one.
    for name in ("_attribute", "_history", "_watch"):
        setattr(_checker.Checker, name, timed(name, getattr(_checker.Checker, name)))
    # Grouping survivors by stack and symbolizing them (imported at call time).
    _attribution.leak_sites = timed("leak_sites", _attribution.leak_sites)
    _core.start()
    mod = __import__(E2E_CASE)
    t1 = time.perf_counter()
    result = Checker(attribution=(mode == "api-attribution"), calls=calls).run(
        mod.leaky, (), {}, "%s:leaky" % E2E_CASE)
    t2 = time.perf_counter()
    top = result.sites[0] if result.sites else {}
    # check_s: the Result's own clock, as the CLI's JSON reports it.
    return {"mode": mode, "check_s": result.seconds, "run_s": t2 - t1, "to_verdict_s": t2 - t0,
            "verdict": result.verdict, "iterations": result.iterations,
            "calls_per_iteration": result.calls_per_iteration, "sites": len(result.sites),
            "top_site": ("%s:%s %s" % (os.path.basename(top.get("file") or "?"),
                                        top.get("line"), top.get("function"))) if top else None,
            "phases": phases}


# --------------------------------------------------------------------------
# The parent.

ENGINE = os.path.join(ROOT, "src")     # set by main() (bench/engine.py)
ENGINE_B = None                        # --engine-b


def _env(extra_paths=(), engine_path=None):
    return engine.child_env([engine_path or ENGINE, BUILD] + list(extra_paths))


def spawn(python, args, extra_paths=(), engine_path=None):
    return engine.spawn(__file__, python, args, _env(extra_paths, engine_path))


def memray_version(python):
    p = subprocess.run([python, "-c", "import memray; print(memray.__version__)"],
                       capture_output=True, text=True)
    return p.stdout.strip() or None


def _cbuild():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import cbuild
    return cbuild


def build_zoo_case(python):
    out = os.path.join(BUILD, "zoo-O2")
    return _cbuild().build_extension(os.path.join(ROOT, "tests", "zoo", E2E_CASE + ".c"),
                                     out, python=python, opt="-O2")


def measure_overhead(python, names, modes, rounds, scale, seed):
    samples = engine.interleaved(
        names, modes, rounds, seed,
        lambda w, m: spawn(python, ["--child", m, w, str(scale)],
                           engine_path=ENGINE_B if m in B_MODES else None))
    table = {}
    for w in names:
        row = engine.ratios(samples[w], modes)
        for m, cell in row["modes"].items():
            if m.startswith("memray"):
                cell["file_bytes"] = med([s["memray_file_bytes"] for s in samples[w][m]])
            if m.startswith("refhound"):
                cell["failure"] = [s["failure"] for s in samples[w][m] if s["failure"]]
        table[w] = row
    return table, samples


def measure_e2e(python, runs, calls, seed, log):
    so = build_zoo_case(python)
    zoo_dir = os.path.dirname(so)
    rng = random.Random(seed)
    out = {m: [] for m in E2E_MODES}
    for r in range(runs):
        order = list(E2E_MODES)
        rng.shuffle(order)
        for m in order:
            t = time.perf_counter()
            if m == "cli":
                cmd = [python, "-m", "refhound", "check", "%s:leaky" % E2E_CASE,
                       "--calls", str(calls), "--json", "-", "--no-progress"]
                proc = subprocess.run(cmd, env=_env([zoo_dir]), capture_output=True,
                                      text=True, timeout=600, cwd=zoo_dir)
                wall = time.perf_counter() - t
                if proc.returncode not in (0, 1):
                    raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), proc.returncode,
                                                                proc.stderr[-3000:]))
                doc = json.loads(proc.stdout)
                top = doc["sites"][0] if doc["sites"] else {}
                res = {"mode": m, "verdict": doc["verdict"], "check_s": doc["seconds"],
                       "iterations": doc["iterations"],
                       "calls_per_iteration": doc["calls_per_iteration"],
                       "sites": len(doc["sites"]),
                       "top_site": ("%s:%s %s" % (os.path.basename(top.get("file") or "?"),
                                                   top.get("line"), top.get("function")))
                       if top else None}
            else:
                res = spawn(python, ["--child-e2e", m, str(calls)], extra_paths=[zoo_dir])
                wall = time.perf_counter() - t
            res["process_s"] = wall
            out[m].append(res)
        log("e2e round %d/%d  %s" % (r + 1, runs, "  ".join(
            "%s=%.2fs" % (m, out[m][-1]["process_s"]) for m in E2E_MODES)))
    summary = {}
    for m in E2E_MODES:
        rs = out[m]
        summary[m] = {
            "process_s": med([x["process_s"] for x in rs]),
            "check_s": med([x["check_s"] for x in rs]),
            "measured_iterations": med([x["iterations"]["measured"] for x in rs]),
            "calls_per_iteration": sorted({x["calls_per_iteration"] for x in rs}),
            "verdicts": sorted({x["verdict"] for x in rs}),
            "top_sites": sorted({str(x["top_site"]) for x in rs}),
        }
        if m.startswith("api"):
            summary[m]["run_s"] = med([x["run_s"] for x in rs])
            for ph in ("_attribute", "leak_sites", "_history", "_watch"):
                summary[m][ph.strip("_") + "_s"] = med([x["phases"].get(ph, 0.0) for x in rs])
    on, off = summary["api-attribution"], summary["api-no-attribution"]
    summary["attribution_added_s"] = on["check_s"] - off["check_s"]
    summary["ratio_check"] = on["check_s"] / off["check_s"]
    summary["ratio_process"] = on["process_s"] / off["process_s"]
    return {"case": "tests/zoo/%s.c (-O2 -g), target %s:leaky, %d calls per iteration"
                    % (E2E_CASE, E2E_CASE, calls), "calls": calls,
            "summary": summary, "runs": out}


def render(doc):
    lines = []
    ov = doc.get("overhead") or {}
    modes = doc["modes"]
    calls = doc.get("calls") or {}
    if ov:
        ab = "refhound-stacks-b" in modes and "refhound-stacks" in modes
        head = (["workload", "plain s"] + modes[1:]
                + ["stacks/tracking", "alloc calls", "stacks ns/call", "<=3x"]
                + (["stacks B/A"] if ab else []))
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        for w, row in ov.items():
            cells = [w, "%.3f" % row["plain_s"]]
            for m in modes[1:]:
                cells.append(fmt_ratio(row["modes"][m]["ratio"]))
            rh, st = row["modes"].get("refhound"), row["modes"].get("refhound-stacks")
            cells.append(fmt_ratio(st["median_s"] / rh["median_s"]) if rh and st else "-")
            c = calls.get(w)
            n = (c["raw"] + c["mem"] + c["obj"]) if c else None
            cells.append("%.2fM" % (n / 1e6) if n else "-")
            cells.append("%.0f" % ((st["median_s"] - rh["median_s"]) / n * 1e9)
                         if n and rh and st else "-")
            cells.append(("yes" if st["ratio"] <= TARGET_RATIO else "**no**") if st else "-")
            if ab:
                cells.append(fmt_ratio(row["modes"]["refhound-stacks-b"]["median_s"]
                                       / st["median_s"]))
            lines.append("| " + " | ".join(cells) + " |")
        cells = ["geomean", ""]
        for m in modes[1:]:
            cells.append(fmt_ratio(geomean([row["modes"][m]["ratio"] for row in ov.values()])))
        lines.append("| " + " | ".join(cells + [""] * (len(head) - len(cells))) + " |")
    e2e = doc.get("e2e")
    if e2e:
        s = e2e["summary"]
        lines.append("")
        lines.append("end to end: " + e2e["case"])
        head = ["mode", "process s", "check s", "measured it.", "attribute s", "of which sites s",
                "of which history s", "verdict", "top site"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        for m in E2E_MODES:
            x = s[m]
            lines.append("| " + " | ".join([
                m, "%.2f" % x["process_s"], "%.2f" % x["check_s"],
                "%g" % x["measured_iterations"],
                "%.3f" % x["attribute_s"] if "attribute_s" in x else "-",
                "%.3f" % x["leak_sites_s"] if "leak_sites_s" in x else "-",
                "%.3f" % x["history_s"] if "history_s" in x else "-",
                ",".join(x["verdicts"]), ", ".join(x["top_sites"])]) + " |")
        lines.append("attribution on / off (API, medians): check %.2fx (+%.3f s), "
                     "process %.2fx" % (s["ratio_check"], s["attribution_added_s"],
                                        s["ratio_process"]))
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child_run(argv[1], argv[2], float(argv[3]) if len(argv) > 3 else 1.0)))
        return 0
    if argv[:1] == ["--child-e2e"]:
        print(json.dumps(child_e2e(argv[1], int(argv[2]))))
        return 0

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    engine.add_workload_arguments(
        ap, MODES, rounds=5, scale=0.3, seed=3,
        scale_help="workload size factor (default 0.3: tracemalloc25 runs 10-40x slower, "
                   "and the whole run must stay near 7 minutes)")
    ap.add_argument("--e2e-runs", type=int, default=5)
    ap.add_argument("--e2e-calls", type=int, default=1000,
                    help="calls per iteration of the leak check, pinned (default 1000): "
                         "the calibration picks 1000 or 10000 on this machine from the "
                         "timing of one call, which would mix two workloads")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--e2e-only", action="store_true")
    engine.add_engine_arguments(ap)
    ap.add_argument("--engine-b", metavar="HEAD|worktree|DIR",
                    help="a second refhound for the modes %s" % ", ".join(B_MODES))
    ap.add_argument("--out", default=os.path.join(RESULTS, "attribution_overhead.json"))
    args = ap.parse_args(argv)
    names = engine.choose_workloads(ap, args.workloads)
    modes, notes = engine.choose_modes(ap, args.modes, MODES + B_MODES, args.python)
    for m in modes:
        if m in B_MODES and not args.engine_b:
            ap.error("mode %s needs --engine-b" % m)

    global ENGINE, ENGINE_B
    ENGINE = engine.engine_dir(args.python, args.engine)
    if args.engine_b:
        ENGINE_B = engine.engine_dir(args.python, args.engine_b)
    doc = engine.run_header(__file__, argv, args.python, ENGINE)
    doc.update(engine_b=engine.describe(args.python, ENGINE_B) if ENGINE_B else None,
               memray=memray_version(args.python), rounds=args.rounds, scale=args.scale,
               seed=args.seed, modes=modes, target_ratio=TARGET_RATIO, notes=notes)
    t0 = time.time()
    if not args.e2e_only:
        engine.build_alloccount(args.python, BUILD)
        doc["calls"] = engine.measure_calls(__file__, args.python, names, args.scale, _env())
        doc["overhead"], doc["samples"] = measure_overhead(
            args.python, names, modes, args.rounds, args.scale, args.seed)
    if not args.no_e2e:
        doc["e2e"] = measure_e2e(args.python, args.e2e_runs, args.e2e_calls, args.seed,
                                 engine.log)
    engine.finish(doc, t0, args.out, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
