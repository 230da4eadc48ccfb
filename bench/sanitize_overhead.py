"""The cost of --sanitize's guard allocator against PYTHONMALLOC=debug and
Valgrind memcheck, on the same workloads (bench/workloads.py).

    python3 bench/sanitize_overhead.py [--repeat 3] [--scale 0.3] [--json FILE]
                                       [--workloads churn,json] [--no-valgrind]

Each configuration runs every workload in a fresh process; the time is the
workload's own CPU time (time.process_time around run(), the set-up
excluded) and the wall time of the whole process:

  plain        the interpreter as it is
  debug        PYTHONMALLOC=debug (CPython's debug hooks: red zones and
               dead-byte patterns checked at free, no stacks)
  guard-100    the guard allocator, one block in 100 on its own pages
  guard-all    the guard allocator, every block while slots are free
               (the default of --sanitize: the sampling grows rarer as
               live blocks fill the slots past half)
  memcheck     valgrind --tool=memcheck with PYTHONMALLOC=malloc (scale
               divided by 10: figures scaled back up, said in the table)

Medians over --repeat runs, ratios against plain.  Figures taken on a
shared machine are noisy: the script records the load average.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, %(bench)r)
mode, name, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
if mode.startswith("guard-"):
    from refhound import _core
    rate = 1 if mode == "guard-all" else int(mode.split("-")[1])
    fd = os.open(os.devnull, os.O_WRONLY)
    _core.guard_start(fd, rate=rate)
import workloads
run = getattr(workloads, "make_" + name)(scale)
t = time.process_time()
run()
cpu = time.process_time() - t
out = {"cpu": cpu}
if mode.startswith("guard-"):
    out["guard"] = _core.guard_stats()
print("RESULT " + json.dumps(out))
"""


def run_one(mode, name, scale):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-c", CHILD % {"bench": HERE}, mode, name, str(scale)]
    if mode == "debug":
        env["PYTHONMALLOC"] = "debug"
    if mode == "memcheck":
        env["PYTHONMALLOC"] = "malloc"
        cmd = ["valgrind", "--tool=memcheck", "--error-exitcode=0", "-q"] + cmd
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError("%s %s failed (%d): %s" % (mode, name, proc.returncode,
                                                     proc.stderr[-2000:]))
    out = json.loads(line[7:])
    out["wall"] = wall
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scale", type=float, default=0.3)
    p.add_argument("--workloads", default="churn,strings,json,instances")
    p.add_argument("--no-valgrind", action="store_true")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    modes = ["plain", "debug", "guard-100", "guard-all"]
    if not args.no_valgrind and shutil.which("valgrind"):
        modes.append("memcheck")
    names = args.workloads.split(",")
    results = {}
    for name in names:
        for r in range(args.repeat):
            for mode in modes:
                scale = args.scale / 10 if mode == "memcheck" else args.scale
                out = run_one(mode, name, scale)
                factor = 10 if mode == "memcheck" else 1
                results.setdefault(name, {}).setdefault(mode, []).append(
                    {"cpu": out["cpu"] * factor, "wall": out["wall"],
                     "guard": out.get("guard")})
                sys.stderr.write(".")
                sys.stderr.flush()
    sys.stderr.write("\n")
    table = {}
    print("workload    mode        cpu s (median)   x plain    guarded blocks")
    for name in names:
        base = statistics.median(x["cpu"] for x in results[name]["plain"])
        for mode in modes:
            cpu = statistics.median(x["cpu"] for x in results[name][mode])
            guard = results[name][mode][-1].get("guard") or {}
            table.setdefault(name, {})[mode] = {
                "cpu_median": round(cpu, 4), "ratio": round(cpu / base, 2),
                "runs": [round(x["cpu"], 4) for x in results[name][mode]],
                "guarded": guard.get("guarded"), "passed": guard.get("passed")}
            print("%-11s %-11s %10.3f %12.1fx %s%s" % (
                name, mode, cpu, cpu / base,
                "%d of %d" % (guard["guarded"], guard["guarded"] + guard["passed"])
                if guard else "",
                "   (scale/10, x10)" if mode == "memcheck" else ""))
    data = {"python": sys.version.split()[0], "scale": args.scale, "repeat": args.repeat,
            "loadavg_before_after": None, "table": table,
            "note": "CPU seconds of the workload (time.process_time), medians; memcheck ran "
                    "at a tenth of the scale and is scaled back up"}
    data["loadavg_before_after"] = [LOAD_BEFORE, os.getloadavg()]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(data, fh, indent=2)
    return 0


LOAD_BEFORE = os.getloadavg()

if __name__ == "__main__":
    sys.exit(main())
