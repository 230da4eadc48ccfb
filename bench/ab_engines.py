"""A/B of refhound engines: plain, then tracking with each engine, interleaved.

For judging a change to the hooks or the block table: the same workloads
as bench/overhead.py, each run in a fresh interpreter, `_core.start()`
(tracking, no stacks) before the workload, rounds interleaved; reports the
median ratio to plain of process CPU time (steadier than wall time on a
machine that others are using) and of wall time.

    python3 bench/ab_engines.py HEAD /tmp/proto/src --rounds 7
    python3 bench/ab_engines.py HEAD worktree json churn

ENGINE is HEAD, worktree or a folder holding the refhound package (see
bench/engine.py).  `name=ENGINE` labels a column.  `ENGINE:noadopt` starts
tracking with adopt=False.  Writes bench/results/ab_engines.json.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import engine  # noqa: E402
import workloads  # noqa: E402

_CHILD = r"""
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import gc, workloads
run = workloads.WORKLOADS[sys.argv[3]](float(sys.argv[4]))
gc.collect()
if sys.argv[5] != "plain":
    from refhound import _core
    _core.start(adopt=(sys.argv[5] != "noadopt"))
c, t = time.process_time(), time.perf_counter()
run()
print(time.process_time() - c, time.perf_counter() - t)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("engines", nargs="+", metavar="[name=]ENGINE[:noadopt]")
    ap.add_argument("--workloads", default=",".join(workloads.WORKLOADS))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "ab_engines.json"))
    args = ap.parse_args(argv)
    columns = [("plain", None, "plain")]
    for spec in args.engines:
        name, _, rest = spec.rpartition("=")
        where, _, flag = rest.partition(":")
        columns.append((name or rest, engine.engine_dir(args.python, where),
                        "noadopt" if flag == "noadopt" else "adopt"))
    names = [w for w in args.workloads.split(",") if w]
    for w in names:
        if w not in workloads.WORKLOADS:
            ap.error("unknown workload %r" % w)
    samples = {w: {c[0]: [] for c in columns} for w in names}
    for r in range(args.rounds):
        for w in names:
            for label, path, mode in columns:
                cmd = [args.python, "-c", _CHILD, path or HERE, HERE, w, str(args.scale), mode]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit("bench: %s failed on %s:\n%s" % (label, w, proc.stderr[-2000:]))
                cpu, wall = map(float, proc.stdout.split())
                samples[w][label].append({"cpu_s": cpu, "wall_s": wall})
        print("round %d/%d done" % (r + 1, args.rounds), file=sys.stderr, flush=True)
    table = {}
    labels = [c[0] for c in columns]
    print("workload | plain CPU s | " + " | ".join("%s CPU (wall)" % l for l in labels[1:]))
    print(" | ".join("---" for _ in range(len(labels) + 1)))
    for w in names:
        med = {l: {k: statistics.median(s[k] for s in samples[w][l]) for k in ("cpu_s", "wall_s")}
               for l in labels}
        row = {l: {"cpu_ratio": med[l]["cpu_s"] / med["plain"]["cpu_s"],
                   "wall_ratio": med[l]["wall_s"] / med["plain"]["wall_s"], **med[l]}
               for l in labels}
        table[w] = row
        print("%s | %.3f | %s" % (w, med["plain"]["cpu_s"], " | ".join(
            "%.2fx (%.2fx)" % (row[l]["cpu_ratio"], row[l]["wall_ratio"]) for l in labels[1:])))
    doc = {"command": "python3 bench/ab_engines.py " + " ".join(argv or sys.argv[1:]),
           "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "engines": {c[0]: {"path": c[1], "mode": c[2]} for c in columns},
           "rounds": args.rounds, "loadavg_end": os.getloadavg(), "table": table,
           "samples": samples}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
