"""The settle corpus under `refhound check` with default options: false
alarms, needless "inconclusive", detections, and the time each took.

Every callable of tests/settle (tests/settle/README.md) is checked in a
fresh process: `python3 -m refhound check FILE:NAME --json - --no-progress`.
A settling callable must come out `clean` (exit 0), a leaking twin `leak`
(exit 1) at its true rate (5 %, tests/settle/corpus.py).  Scored:

    false alarm             a settling callable judged leak or error
    needless inconclusive   a settling callable judged inconclusive
    detection               a twin judged leak; right rate: within 5 % of
                            the truth on refs, objects and blocks
    missed                  a twin judged anything else

The pairs in corpus.HELD_OUT (a third, never used to tune the verdict
rules) are scored apart from the rest.

    python3 bench/settle_corpus.py                      # this interpreter, HEAD
    python3 bench/settle_corpus.py --engine worktree -j 2
    python3 bench/settle_corpus.py --python python3.11-dbg -k slow_fillers

Prints a table; writes bench/results/settle_corpus[-TAG].json (TAG from
--tag, e.g. the interpreter).  Run on a busy machine the times are noisy
(patience budgets are wall-clock): the results file records the load.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SETTLE = os.path.join(ROOT, "tests", "settle")
RESULTS = os.path.join(HERE, "results")

sys.path.insert(0, HERE)
import engine  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "tests"))
import cbuild  # noqa: E402
sys.path.insert(0, SETTLE)
import corpus  # noqa: E402


def run_one(python, engine_path, pair, func, version, extra, timeout):
    """One check in a fresh process: its verdict, rates, time and problems."""
    reason = corpus.unmet_requirement(python, func)
    if reason:
        return {"skipped": reason}
    env = engine.child_env([engine_path])
    env.pop("PYTHONSTARTUP", None)
    cmd = [python, "-m", "refhound", "check", pair.target(func), "--json", "-",
           "--no-progress"] + list(extra)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=SETTLE, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"verdict": "timeout", "status": None, "seconds": timeout,
                "problems": ["no result within %d s" % timeout]}
    seconds = time.perf_counter() - t0
    out = {"status": proc.returncode, "seconds": round(seconds, 2)}
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        out.update(verdict="no result", stderr=proc.stderr[-2000:],
                   problems=["no JSON result (exit %s)" % proc.returncode])
        return out
    out["verdict"] = result["verdict"]
    out["check_seconds"] = round(result.get("seconds") or 0.0, 2)
    out["per_call"] = {k: result["per_call"].get(k) for k in corpus.FIELDS}
    out["iterations"] = result.get("iterations")
    out["calls_per_iteration"] = result.get("calls_per_iteration")
    out["patience"] = result.get("patience")
    out["notes"] = result.get("notes")
    out["problems"] = corpus.verdict_problems(func, proc.returncode, result, version)
    return out


def score(rows):
    """The figures of a set of rows (label, settles?, outcome)."""
    s = {"clean_cases": 0, "clean_right": 0, "false_alarms": 0, "needless_inconclusive": 0,
         "clean_other": 0, "leak_cases": 0, "detected": 0, "right_rate": 0, "missed": 0,
         "skipped": 0, "clean_seconds": [], "leak_seconds": []}
    for _, settles, out in rows:
        if "skipped" in out:
            s["skipped"] += 1
            continue
        v = out["verdict"]
        if settles:
            s["clean_cases"] += 1
            s["clean_seconds"].append(out["seconds"])
            if v == "clean" and not out["problems"]:
                s["clean_right"] += 1
            elif v in ("leak", "error"):
                s["false_alarms"] += 1
            elif v == "inconclusive":
                s["needless_inconclusive"] += 1
            else:
                s["clean_other"] += 1
        else:
            s["leak_cases"] += 1
            s["leak_seconds"].append(out["seconds"])
            if v == "leak":
                s["detected"] += 1
                s["right_rate"] += not out["problems"]
            else:
                s["missed"] += 1
    for kind in ("clean", "leak"):
        xs = sorted(s.pop(kind + "_seconds"))
        s[kind + "_seconds"] = {"median": engine.med(xs), "max": xs[-1] if xs else None,
                                "total": round(sum(xs), 1)}
    return s


def render(doc):
    lines = ["interpreter: %s (%s%s), refhound check with %s" % (
        doc["python"], doc["python_version"], ", debug build" if doc["debug_build"] else "",
        doc["options"] or "default options")]
    hdr = "%-40s %-4s %-6s %-13s %-26s %-10s %7s  %s" % (
        "callable", "set", "truth", "verdict", "refs/objects/blocks", "iter x calls",
        "time", "right?")
    lines += [hdr, "-" * len(hdr)]
    for label, r in doc["results"].items():
        if "skipped" in r:
            lines.append("%-40s skipped: %s" % (label, r["skipped"]))
            continue
        pc = r.get("per_call")
        rates = "/".join("%.3g" % (pc[k] or 0) for k in corpus.FIELDS) if pc else "-"
        its = r.get("iterations") or {}
        shape = "%sx%s" % (its.get("measured", "?"), r.get("calls_per_iteration")) if its else "-"
        lines.append("%-40s %-4s %-6s %-13s %-26s %-10s %6.1fs  %s" % (
            label, "held" if r["held_out"] else "tune", "settle" if r["settles"] else "leak",
            r["verdict"], rates, shape, r["seconds"],
            "yes" if not r["problems"] else "NO: " + "; ".join(r["problems"])))
    for name in ("tuning", "held_out", "all"):
        s = doc["summary"][name]
        lines.append(
            "%-9s clean cases %d: %d clean, %d false alarms, %d needless inconclusive; "
            "leaks %d: %d detected (%d at the true rate), %d missed; skipped %d; "
            "time median clean %.1f s (max %.1f), leak %.1f s (max %.1f)" % (
                name, s["clean_cases"], s["clean_right"], s["false_alarms"],
                s["needless_inconclusive"], s["leak_cases"], s["detected"], s["right_rate"],
                s["missed"], s["skipped"], s["clean_seconds"]["median"] or 0,
                s["clean_seconds"]["max"] or 0, s["leak_seconds"]["median"] or 0,
                s["leak_seconds"]["max"] or 0))
    return "\n".join(lines)


def summarize(doc):
    rows = [(label, r["settles"], r) for label, r in doc["results"].items()]
    doc["summary"] = {
        "tuning": score([x for x in rows if not x[2]["held_out"]]),
        "held_out": score([x for x in rows if x[2]["held_out"]]),
        "all": score(rows)}


def rescore(path):
    """Judge the verdicts and rates of a results file again (the truth of a
    twin was corrected after the run)."""
    with open(path) as fh:
        doc = json.load(fh)
    version = tuple(int(x) for x in doc["python_version"].split(".")[:2])
    funcs = {"%s:%s" % (pair.file[:-3], func.__name__): func
             for pair in corpus.pairs() for func in (pair.settle, pair.twin)}
    for label, r in doc["results"].items():
        if "skipped" in r or "per_call" not in r:
            continue
        result = {"verdict": r["verdict"], "per_call": r["per_call"]}
        r["problems"] = corpus.verdict_problems(funcs[label], r["status"], result, version)
    summarize(doc)
    doc["rescored"] = engine.git_head()
    print(render(doc))
    engine.write_results(doc, path)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    engine.add_engine_arguments(ap)
    ap.add_argument("-k", dest="select", action="append", default=[],
                    help="only callables whose FILE:NAME contains this")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="checks at a time (each is timed on its own wall clock)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per check")
    ap.add_argument("--tag", default="", help="results file suffix (settle_corpus-TAG.json)")
    ap.add_argument("--out", help="results file (default bench/results/settle_corpus[-TAG].json)")
    ap.add_argument("--rescore", metavar="FILE",
                    help="score a results file again against the corpus's truth as it is "
                         "now (no check is run)")
    ap.add_argument("extra", nargs="*", help="more options for refhound check (after --)")
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore)
    out_path = args.out or os.path.join(
        RESULTS, "settle_corpus%s.json" % ("-" + args.tag if args.tag else ""))
    info = cbuild.interpreter_info(args.python)
    version = tuple(info["version"][:2])
    engine_path = engine.engine_dir(args.python, args.engine)
    todo = []
    for pair in corpus.pairs():
        for func in (pair.settle, pair.twin):
            label = "%s:%s" % (pair.file[:-3], func.__name__)
            if args.select and not any(s in label for s in args.select):
                continue
            todo.append((label, pair, func))
    t0 = time.time()
    doc = engine.run_header(__file__, argv if argv is not None else sys.argv[1:],
                            args.python, engine_path)
    doc.update(python_version=".".join(map(str, info["version"])),
               debug_build=bool(info["py_debug"]), options=" ".join(args.extra),
               jobs=args.jobs, results={}, summary={})
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, args.python, engine_path, pair, func, version,
                               args.extra, args.timeout) for _, pair, func in todo]
        for (label, pair, func), fut in zip(todo, futures):
            out = fut.result()
            out.update(settles=func.settles_after is not None, held_out=pair.held_out)
            doc["results"][label] = out
            engine.log("%-40s %s %s" % (label, out.get("verdict", "skipped"),
                                         "%.1fs" % out["seconds"] if "seconds" in out else ""))
    summarize(doc)
    engine.finish(doc, t0, out_path, render)
    s = doc["summary"]["all"]
    wrong = s["false_alarms"] + s["needless_inconclusive"] + s["clean_other"] + s["missed"]
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
