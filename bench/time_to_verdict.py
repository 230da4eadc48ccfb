"""Time to verdict: how long refhound takes to call a leak a leak.

The target (bench/c/ttv.c) is a C function of about 5 us per call that
leaks one reference per call, in two flavours (an extra Py_INCREF(Py_None),
and a leaked int object), with its clean twin.  Measured, each in fresh
processes, interleaved, medians over --runs:

    cli        `python3 -m refhound check ttv:FUNC --json - --no-progress`,
               wall time from spawn to exit (interpreter start included)
    api        `refhound.check(ttv.FUNC)` in a fresh interpreter, the call only
    startup    `python3 -c "import refhound"`: the floor under the CLI figure

and for context, what the classic recipes need for the same functions:

    dash-R     CPython's own hunter, `python3.11-dbg -m test -R 3:3` on a
               test calling FUNC once (debug interpreter and a debug build
               of the extension required; verdict "every delta >= 1")
    rss-loop   the hand-written script: batches of 10,000 calls, RSS read
               after each, "leak" once RSS is 1 MiB above its value after
               the first batch (cut off after --rss-cap seconds)

    python3 bench/time_to_verdict.py [--runs 5]

Prints a table; writes bench/results/time_to_verdict.json.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
BUILD = os.path.join(ROOT, "build", "bench")
SOURCE = os.path.join(HERE, "c", "ttv.c")
FUNCS = ["leaky_incref", "leaky_object", "clean"]
TARGET_US = 5.0

sys.path.insert(0, os.path.join(ROOT, "tests"))
import cbuild  # noqa: E402
sys.path.insert(0, HERE)
import engine  # noqa: E402
from engine import med  # noqa: E402


def build(python, loops):
    info = cbuild.interpreter_info(python)
    out = os.path.join(BUILD, "ttv-" + info["ext_suffix"].strip(".").replace(".so", ""))
    cbuild.build_extension(SOURCE, out, python=python, opt="-O2",
                           define_macros=[("LOOPS", str(loops))])
    return out


ENGINE = os.path.join(ROOT, "src")     # set by main() (bench/engine.py)


def env_for(build_dir):
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    env["PYTHONPATH"] = os.pathsep.join([ENGINE, build_dir])
    return env


def per_call_us(python, build_dir, func="clean", n=20000):
    code = ("import timeit, ttv\n"
            "print(min(timeit.repeat(ttv.%s, number=%d, repeat=7)) / %d * 1e6)" % (func, n, n))
    out = subprocess.run([python, "-c", code], env=env_for(build_dir), capture_output=True,
                         text=True, check=True)
    return float(out.stdout)


def calibrate(python):
    """LOOPS such that clean() takes ~5 us here."""
    loops = 5000
    for _ in range(3):
        us = per_call_us(python, build(python, loops))
        if abs(us - TARGET_US) < 0.25:
            break
        loops = max(100, int(loops * TARGET_US / us))
    return loops


def timed(cmd, env, cwd, timeout=600):
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    return time.perf_counter() - t, proc


def run_cli(python, build_dir, func):
    wall, proc = timed([python, "-m", "refhound", "check", "ttv:" + func, "--json", "-",
                        "--no-progress"], env_for(build_dir), build_dir)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError("refhound check ttv:%s printed no JSON (exit %d):\n%s"
                           % (func, proc.returncode, proc.stderr[-2000:]))
    return {"wall_s": wall, "exit": proc.returncode, "verdict": data["verdict"],
            "check_s": data["seconds"], "refs_per_call": data["per_call"]["refs"],
            "blocks_per_call": data["per_call"]["blocks"],
            "iterations": data["iterations"], "calls_per_iteration": data["calls_per_iteration"]}


_API = """
import json, sys, time
import refhound, ttv
t = time.perf_counter()
r = refhound.check(getattr(ttv, sys.argv[1]))
s = time.perf_counter() - t
print(json.dumps({"check_s": s, "verdict": r.verdict, "refs_per_call": r.per_call["refs"],
                  "iterations": r.iterations, "calls_per_iteration": r.calls_per_iteration}))
"""


def run_api(python, build_dir, func):
    wall, proc = timed([python, "-c", _API, func], env_for(build_dir), build_dir)
    if proc.returncode != 0:
        raise RuntimeError("refhound.check(ttv.%s) failed:\n%s" % (func, proc.stderr[-2000:]))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def run_startup(python, build_dir):
    wall, proc = timed([python, "-c", "import refhound, ttv"], env_for(build_dir), build_dir)
    return {"wall_s": wall, "exit": proc.returncode}


_TEST = """
import unittest
import ttv

class TestTTV(unittest.TestCase):
    def test_call(self):
        ttv.%s()
"""


def run_dash_r(dbg, build_dir, func, tmp):
    testdir = os.path.join(tmp, "dashr-" + func)
    os.makedirs(testdir, exist_ok=True)
    name = "test_ttv_" + func
    with open(os.path.join(testdir, name + ".py"), "w") as f:
        f.write(_TEST % func)
    wall, proc = timed([dbg, "-m", "test", "--testdir", testdir, "-R", "3:3", name],
                       env_for(build_dir), tmp)
    text = proc.stdout + proc.stderr
    m = re.search(r"leaked \[([^\]]*)\] references", text)
    return {"wall_s": wall, "exit": proc.returncode, "found": m is not None,
            "deltas": m.group(1) if m else None}


_RSS = """
import os, sys, time, ttv
f = getattr(ttv, sys.argv[1]); cap = float(sys.argv[2])
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page
t0 = time.perf_counter()
for _ in range(10000):
    f()
base = rss(); batches = 1
while True:
    for _ in range(10000):
        f()
    batches += 1
    grown = rss() - base
    if grown >= 1 << 20:
        print("leak", time.perf_counter() - t0, batches, grown); break
    if time.perf_counter() - t0 > cap:
        print("none", time.perf_counter() - t0, batches, grown); break
"""


def run_rss_loop(python, build_dir, func, cap):
    wall, proc = timed([python, "-c", _RSS, func, str(cap)], env_for(build_dir), build_dir)
    kind, seconds, batches, grown = proc.stdout.split()
    return {"wall_s": wall, "found": kind == "leak", "loop_s": float(seconds),
            "calls": int(batches) * 10000, "rss_growth": int(grown)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    engine.add_engine_arguments(ap)
    ap.add_argument("--debug-python", default=shutil.which("python3.11-dbg"))
    ap.add_argument("--rss-cap", type=float, default=10.0)
    ap.add_argument("--out", default=os.path.join(RESULTS, "time_to_verdict.json"))
    args = ap.parse_args(argv)

    log = engine.log
    global ENGINE
    ENGINE = engine.engine_dir(args.python, args.engine)
    loops = calibrate(args.python)
    rel_dir = build(args.python, loops)
    speed = {f: per_call_us(args.python, rel_dir, f) for f in FUNCS}
    log("LOOPS=%d: %s" % (loops, ", ".join("%s %.2f us" % kv for kv in speed.items())))
    dbg_dir = None
    if args.debug_python:
        dbg_dir = build(args.debug_python, loops)
    runs = {"startup": []}
    for f in FUNCS:
        for kind in ("cli", "api", "dash_r", "rss_loop"):
            runs["%s:%s" % (kind, f)] = []
    with tempfile.TemporaryDirectory(prefix="rh-ttv-") as tmp:
        for r in range(args.runs):
            runs["startup"].append(run_startup(args.python, rel_dir))
            for f in FUNCS:
                runs["cli:" + f].append(run_cli(args.python, rel_dir, f))
                runs["api:" + f].append(run_api(args.python, rel_dir, f))
                if dbg_dir:
                    runs["dash_r:" + f].append(run_dash_r(args.debug_python, dbg_dir, f, tmp))
                if r == 0:      # deterministic enough: once
                    runs["rss_loop:" + f].append(run_rss_loop(args.python, rel_dir, f,
                                                              args.rss_cap))
            log("run %d/%d: cli %s" % (r + 1, args.runs, "  ".join(
                "%s=%.2fs/%s" % (f, runs["cli:" + f][-1]["wall_s"], runs["cli:" + f][-1]["verdict"])
                for f in FUNCS)))
    summary = {"startup_s": med([x["wall_s"] for x in runs["startup"]])}
    for f in FUNCS:
        cli = runs["cli:" + f]
        api = runs["api:" + f]
        row = {
            "per_call_us": speed[f],
            "cli_wall_s": med([x["wall_s"] for x in cli]),
            "cli_check_s": med([x["check_s"] for x in cli]),
            "cli_verdicts": sorted(set(x["verdict"] for x in cli)),
            "cli_exit": sorted(set(x["exit"] for x in cli)),
            "refs_per_call": med([x["refs_per_call"] for x in cli]),
            "measured_iterations": med([x["iterations"]["measured"] for x in cli]),
            "calls_per_iteration": med([x["calls_per_iteration"] for x in cli]),
            "api_check_s": med([x["check_s"] for x in api]),
            "api_verdicts": sorted(set(x["verdict"] for x in api)),
        }
        if runs["dash_r:" + f]:
            d = runs["dash_r:" + f]
            row["dash_r_wall_s"] = med([x["wall_s"] for x in d])
            row["dash_r_found"] = sorted(set(x["found"] for x in d))
            row["dash_r_deltas"] = d[-1]["deltas"]
        rl = runs["rss_loop:" + f][0]
        row["rss_loop"] = rl
        summary[f] = row

    doc = engine.run_header(__file__, argv or sys.argv[1:], args.python, ENGINE)
    doc.update(debug_python=args.debug_python, loops=loops, runs=args.runs, summary=summary,
               samples=runs)
    print(render(doc))
    engine.write_results(doc, args.out)
    log("wrote %s" % args.out)
    return 0


def render(doc):
    s = doc["summary"]
    head = ["target", "us/call", "refhound CLI (wall)", "verdict", "refs/call",
            "in check()", "API check()", "CPython -R 3:3 (dbg)", "RSS loop, 1 MiB margin"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for f in FUNCS:
        r = s[f]
        rl = r["rss_loop"]
        rss = ("%.2f s" % rl["loop_s"]) if rl["found"] else ("not seen in %.0f s" % rl["loop_s"])
        dr = "-"
        if "dash_r_wall_s" in r:
            dr = "%.2f s, %s" % (r["dash_r_wall_s"],
                                 ("leak [%s]" % r["dash_r_deltas"]) if True in r["dash_r_found"]
                                 else "clean")
        lines.append(" | ".join([
            f, "%.2f" % r["per_call_us"], "%.2f s" % r["cli_wall_s"], "/".join(r["cli_verdicts"]),
            "%.3f" % r["refs_per_call"], "%.2f s" % r["cli_check_s"], "%.2f s" % r["api_check_s"],
            dr, rss]))
    lines.append("")
    lines.append("interpreter start + import refhound: %.2f s (median)" % s["startup_s"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
