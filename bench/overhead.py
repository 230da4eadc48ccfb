"""Tracking overhead of refhound against plain Python and its peers.

For each workload of bench/workloads.py, every mode runs in a fresh
interpreter, modes interleaved round after round in a shuffled order, so
that the load of other processes on the machine falls on all of them alike.
Only the workload is timed; a tool's start (refhound: hooks + adoption of
the objects that already exist) and stop are timed apart.

    plain           the workload alone
    refhound        refhound._core.start() (tracking, no stacks), then the workload
    tracemalloc     tracemalloc.start(1): one frame per block
    pymalloc-debug  PYTHONMALLOC=debug (CPython's debug hooks on a release build)
    memray          memray.Tracker(file): Python stacks, system malloc only
    memray-pyalloc  memray.Tracker(file, trace_python_allocators=True)

Then the memory of the block table: a workload that holds ~1M live blocks,
table bytes / table entries and the table's load factor at the peak, the
RSS that tracking adds per live block, and tracemalloc's figures alongside.
And, once per workload, the number of allocator calls it makes (a counting
probe, bench/c/alloccount.c), to turn the overhead into ns per call.

    python3 bench/overhead.py                  # everything, ~15 min on 2 cores
    python3 bench/overhead.py --rounds 3 churn json
    python3 bench/overhead.py --peak-only
    python3 bench/overhead.py --render [FILE]   # the table of a saved run

Prints a table; writes bench/results/overhead.json.  The timing of a child,
the interleaved rounds and the results file are bench/engine.py's.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
BUILD = os.path.join(ROOT, "build", "bench")
sys.path.insert(0, HERE)
import engine  # noqa: E402
from engine import med  # noqa: E402

MODES = ["plain", "refhound", "tracemalloc", "pymalloc-debug", "memray", "memray-pyalloc"]
PEAK_SIZES = [250_000, 500_000, 1_000_000, 2_000_000]
TARGET_RATIO = 1.3


# --------------------------------------------------------------------------
# The child: one workload under one mode, in a fresh interpreter.

def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Tool:
    """start()/stop() of one mode; extra() adds what the tool reports."""

    def __init__(self, mode, tmpdir):
        self.mode = mode
        self.tmpdir = tmpdir
        self.tracker = None

    def prepare(self):
        """Imports, so that start() times the tool's own start only."""
        if self.mode == "refhound":
            from refhound import _core
            self.core = _core
        elif self.mode.startswith("memray"):
            import memray  # noqa: F401
        elif self.mode == "tracemalloc":
            import tracemalloc  # noqa: F401

    def start(self):
        if self.mode == "refhound":
            _core = self.core
            if not _core.start():
                raise RuntimeError("refhound was already tracking")
        elif self.mode == "tracemalloc":
            import tracemalloc
            tracemalloc.start(1)
        elif self.mode.startswith("memray"):
            import memray
            self.tracker = memray.Tracker(
                os.path.join(self.tmpdir, "capture.bin"), native_traces=False,
                trace_python_allocators=(self.mode == "memray-pyalloc"))
            self.tracker.__enter__()
        elif self.mode == "alloccount":
            import alloccount
            self.probe = alloccount
            alloccount.start()

    def extra(self):
        if self.mode == "refhound":
            st = self.core.stats()
            return {"table_bytes": st["table_bytes"], "table_entries": st["table_entries"],
                    "failure": st["failure"], "adopted": st["adopted"]}
        if self.mode == "alloccount":
            return {"calls": self.probe.counts()}
        if self.mode == "tracemalloc":
            import tracemalloc
            return {"tracemalloc_memory": tracemalloc.get_tracemalloc_memory()}
        return {}

    def stop(self):
        if self.mode == "refhound":
            self.core.stop()
        elif self.mode == "tracemalloc":
            import tracemalloc
            tracemalloc.stop()
        elif self.tracker is not None:
            self.tracker.__exit__(None, None, None)
            self.tracker = None
        elif self.mode == "alloccount":
            self.probe.stop()


def child_run(mode, workload, scale):
    return engine.time_workload(_Tool, mode, workload, scale)


def child_peak(mode, n):
    """Hold ~n live blocks; report the tool's own memory at the peak."""
    import gc
    sys.path.insert(0, HERE)
    import workloads
    run = workloads.make_peak(n)
    gc.collect()
    out = {"mode": mode, "n": n}
    rss0 = _rss_bytes()
    if mode == "refhound":
        from refhound import _core
        _core.start()
        before = _core.stats()["table_entries"]
        held = run()
        st = _core.stats()
        out.update(table_bytes=st["table_bytes"], table_entries=st["table_entries"],
                   entries_before=before, failure=st["failure"])
    elif mode == "tracemalloc":
        import tracemalloc
        tracemalloc.start(1)
        held = run()
        out["rss_delta"] = _rss_bytes() - rss0      # before the list of traces
        out.update(tracemalloc_memory=tracemalloc.get_tracemalloc_memory(),
                   traces=len(tracemalloc._get_traces()))
    else:
        held = run()
    out.setdefault("rss_delta", _rss_bytes() - rss0)
    out["held"] = len(held)
    return out


# --------------------------------------------------------------------------
# The parent.

ENGINE = os.path.join(ROOT, "src")     # set by main() (bench/engine.py)


def _env(mode):
    extra = {"PYTHONMALLOC": "debug"} if mode == "pymalloc-debug" else {}
    return engine.child_env([ENGINE, BUILD], **extra)


def spawn(python, args, mode):
    return engine.spawn(__file__, python, args, _env(mode))


def measure_overhead(python, names, modes, rounds, scale, seed):
    samples = engine.interleaved(
        names, modes, rounds, seed,
        lambda w, m: spawn(python, ["--child", m, w, str(scale)], m))
    table = {}
    for w in names:
        row = engine.ratios(samples[w], modes)
        rh = samples[w].get("refhound")
        if rh:
            row["refhound_table"] = {"table_bytes": rh[-1]["table_bytes"],
                                     "table_entries": rh[-1]["table_entries"],
                                     "failure": rh[-1]["failure"],
                                     "adopted": rh[-1]["adopted"]}
        table[w] = row
    return table, samples


def measure_peak(python, sizes, rounds, log):
    out = []
    for n in sizes:
        row = {"n": n}
        for m in ("plain", "refhound", "tracemalloc"):
            runs = [spawn(python, ["--child-peak", m, str(n)], m) for _ in range(rounds)]
            row[m] = runs[-1]
            row[m]["rss_delta"] = med([r["rss_delta"] for r in runs])
        rh = row["refhound"]
        capacity = rh["table_bytes"] // 16
        row["bytes_per_block"] = rh["table_bytes"] / rh["table_entries"]
        row["load_factor"] = rh["table_entries"] / capacity
        row["rss_per_block_refhound"] = ((rh["rss_delta"] - row["plain"]["rss_delta"])
                                         / rh["table_entries"])
        tm = row["tracemalloc"]
        row["tracemalloc_bytes_per_trace"] = tm["tracemalloc_memory"] / tm["traces"]
        row["rss_per_block_tracemalloc"] = ((tm["rss_delta"] - row["plain"]["rss_delta"])
                                            / tm["traces"])
        log("peak n=%d: refhound %d entries, %.1f B/entry, load %.2f; tracemalloc %.1f B/trace"
            % (n, rh["table_entries"], row["bytes_per_block"], row["load_factor"],
               row["tracemalloc_bytes_per_trace"]))
        out.append(row)
    return out


def render(doc):
    lines = []
    ov = doc.get("overhead") or {}
    modes = doc["modes"]
    calls = doc.get("calls") or {}
    if ov:
        # Wall: the median over rounds of (mode / plain of the same round),
        # pairs that ran close in time; CPU: process CPU time, medians.
        head = (["workload", "plain wall s"] + ["%s wall (CPU)" % m for m in modes[1:]]
                + ["rh start ms", "calls/s", "rh ns/call"])
        lines.append(" | ".join(head))
        lines.append(" | ".join("---" for _ in head))
        for w, row in ov.items():
            cells = [w, "%.3f" % row["plain_s"]]
            cells += [engine.ratio_cell(row["modes"][m]) for m in modes[1:]]
            rh = row["modes"].get("refhound")
            cells.append("%.1f" % (rh["start_s"] * 1e3) if rh else "-")
            c = calls.get(w)
            plain_cpu = med([x["cpu_s"] for x in doc.get("samples", {}).get(w, {}).get("plain", [])])
            if c and plain_cpu:
                # Per allocator call, from CPU time (steadier than wall here).
                n = c["raw"] + c["mem"] + c["obj"] + c["frees"]
                cells.append("%.1fM" % (n / plain_cpu / 1e6))
                cells.append("%.0f" % ((rh["cpu_ratio"] - 1) * plain_cpu / n * 1e9) if rh else "-")
            else:
                cells += ["-", "-"]
            lines.append(" | ".join(cells))
        lines.append(" | ".join(engine.geomean_cells(ov, modes) + ["", "", ""]))
    peak = doc.get("peak")
    if peak:
        lines.append("")
        head = ["live blocks held", "rh entries", "rh table MiB", "rh B/block", "rh load",
                "rh RSS B/block", "tm B/trace", "tm RSS B/block"]
        lines.append(" | ".join(head))
        lines.append(" | ".join("---" for _ in head))
        for row in peak:
            lines.append(" | ".join([
                "%d" % row["n"], "%d" % row["refhound"]["table_entries"],
                "%.1f" % (row["refhound"]["table_bytes"] / 2**20),
                "%.1f" % row["bytes_per_block"], "%.2f" % row["load_factor"],
                "%.1f" % row["rss_per_block_refhound"],
                "%.1f" % row["tracemalloc_bytes_per_trace"],
                "%.1f" % row["rss_per_block_tracemalloc"]]))
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if engine.child_or_render(argv, child_run, render, os.path.join(RESULTS, "overhead.json"),
                              {"--child-peak": lambda mode, n: child_peak(mode, int(n))}):
        return 0

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    engine.add_workload_arguments(ap, MODES, rounds=7, scale=1.0, seed=2)
    ap.add_argument("--peak-rounds", type=int, default=3)
    ap.add_argument("--peak-only", action="store_true")
    ap.add_argument("--no-peak", action="store_true")
    engine.add_engine_arguments(ap)
    ap.add_argument("--out", default=os.path.join(RESULTS, "overhead.json"))
    args = ap.parse_args(argv)
    names = engine.choose_workloads(ap, args.workloads)
    modes, notes = engine.choose_modes(ap, args.modes, MODES, args.python)

    global ENGINE
    ENGINE = engine.engine_dir(args.python, args.engine)
    doc = engine.run_header(__file__, argv, args.python, ENGINE)
    doc.update(git=engine.git_head(), rounds=args.rounds, scale=args.scale, seed=args.seed,
               modes=modes, notes=notes)
    t0 = time.time()
    if not args.peak_only:
        engine.build_alloccount(args.python, BUILD)
        doc["calls"] = engine.measure_calls(__file__, args.python, names, args.scale,
                                            _env("alloccount"))
        doc["overhead"], doc["samples"] = measure_overhead(
            args.python, names, modes, args.rounds, args.scale, args.seed)
    if not args.no_peak:
        doc["peak"] = measure_peak(args.python, PEAK_SIZES, args.peak_rounds, engine.log)
    engine.finish(doc, t0, args.out, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
