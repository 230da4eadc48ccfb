"""Culprit accuracy: how often the first culprit refhound names is the true
line, on the CPython corpus (real leaks in CPython's own C code,
tests/cpython_corpus) and on the zoo (tests/zoo, -O0 and -O2).

One run = one `refhound check TARGET --json -` in a fresh process.  The
culprit of a run is the first site's `culprit` (else the first refcount
site's: tests/cpython_corpus/run.py culprit_of).  Outcomes:

    exact    the culprit's file and line are the true line
    folded   -O2 only: the compiler folded several refcount writes of the
             culprit's function into one instruction; the culprit is one of
             those folded lines (tests/e2e/test_attribution.py FOLDED_AT_O2)
    symbol   a module without DWARF: no line, the right function named by
             symbol+offset, and the report says how to get lines
    wrong    another line
    none     no culprit at all
    failed   no JSON (the check crashed or timed out)

Truth: the corpus's true lines are read from each interpreter's DWARF with
gdb (tests/cpython_corpus/truth.py), independently of refhound; the zoo's
is the `/* @culprit */` marker of each case.

Runs are grouped by the failure classes of the culprit-line problem
(README "Culprit accuracy"):

    1 interpreter     a new object leaked by CPython's own C code
    2 inlined-header  an extra Py_INCREF whose write is inside object.h
    3 wrapper         a block from the extension's own allocation wrapper
    4 over-release    a reference released one time too many (verdict error)
    5 interp-existing an extra reference on an existing object, in CPython's code
    6 unmatched       an extra INCREF on a new object; an error path
    8 stripped        a module built without -g
    - other           the zoo's other kinds (new objects, buffers, cycles, ...)

Held-out cases (never tuned on: cases.py `tuned: False`) are counted apart.
Every run also counts its noise sites (class 7): a site without any frame,
or with fewer surviving blocks than one per attribution iteration.

    python3 bench/culprit_accuracy.py                   # ~25 min on 2 shared cores
    python3 bench/culprit_accuracy.py --corpus-only     # ~8 min
    python3 bench/culprit_accuracy.py --zoo-only --opts=-O2
    python3 bench/culprit_accuracy.py --cases getaddrinfo_audit,wrapper_alloc

Prints a table per run and the summary; writes
bench/results/culprit_accuracy.json (--out).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "cpython_corpus"))

import cases  # noqa: E402
import run as corpus  # noqa: E402
import support  # noqa: E402
from support import cbuild  # noqa: E402

CLASSES = {
    "1": "leak inside the interpreter (new object)",
    "2": "inlined header frame (extra Py_INCREF)",
    "3": "allocation wrapper",
    "4": "over-release",
    "5": "extra reference on an existing object in interpreter code",
    "6": "unmatched reference on a new object; error path",
    "8": "stripped module",
    "-": "other zoo kinds",
}
ZOO_CLASS = {"extra-incref": "2", "wrapper": "3", "over-decref": "4",
             "extra-incref-new": "6", "error-path": "6", "stripped": "8"}
# The corpus's reference is on an object that existed before the call
# (found by the refcount watchpoints) or on a new one (by its allocation).
CORPUS_CLASS = {"pickle_load_build": "1", "getaddrinfo_audit": "1",
                "sethostname_audit": "1", "code_replace_audit": "5", "sendto_audit": "5"}
# At -O2 these cases' refcount writes are folded by the compiler.
FOLDED_AT_O2 = {"incref_none"}


def noise_sites(result):
    """Sites of a result that are not sites: no frame at all, or below one
    surviving block per attribution iteration."""
    calls = result.get("calls_per_iteration") or 0
    out = 0
    for site in result.get("sites") or []:
        framed = site.get("file") or site.get("module") or site.get("culprit") \
            or site.get("kind") == "gc-blind-cycle"
        rate = site.get("blocks_per_call")
        below = calls and rate is not None and 0 < rate < 1.0 / calls
        out += (not framed) or bool(below)
    return out


def _path_of(result, culprit):
    """"allocation" when the culprit came from a leak site, "refcount" when
    from the refcount watchpoints."""
    for site in result.get("sites") or []:
        if site.get("culprit") is culprit:
            return "allocation" if site.get("blocks_per_call") is not None \
                or site.get("kind") == "gc-blind-cycle" else "refcount"
    return "refcount" if culprit else None


def corpus_runs(names):
    rows = []
    for case in cases.CASES:
        if names and case["name"] not in names:
            continue
        for tag in case["interpreters"]:
            if not os.path.exists(cases.INTERPRETERS[tag]):
                continue
            t0 = time.monotonic()
            row = corpus.run_case(case, tag)
            seconds = time.monotonic() - t0
            if row is None:
                continue
            culprit = row["culprit"]
            if row["verdict"].startswith("failed"):
                outcome = "failed"
            elif culprit is None:
                outcome = "none"
            else:
                outcome = "exact" if row["exact"] else "wrong"
            rows.append({
                "set": "corpus", "case": case["name"], "where": tag, "issue": case["issue"],
                "class": CORPUS_CLASS.get(case["name"], "1"), "held_out": not case["tuned"],
                "verdict": row["verdict"], "outcome": outcome,
                "true": ["%s:%s" % x for x in row["true"]],
                "found": "%s:%s" % row["found"] if row["found"] else None,
                "culprit": culprit, "in_interpreter": bool(culprit and culprit.get(
                    "in_interpreter")),
                "path": _path_of(row["result"], culprit) if row.get("result") else None,
                "noise_sites": noise_sites(row["result"]) if row.get("result") else None,
                "seconds": round(seconds, 1)})
            _print(rows[-1])
    return rows


def _zoo_outcome(case, opt, result):
    culprit = corpus.culprit_of(result)
    if culprit is None:
        return "none", culprit
    base = os.path.basename(case["path"])
    if case["kind"] == "stripped":
        ok = (culprit.get("line") is None and culprit.get("function") == case["culprit_function"]
              and (culprit.get("symbol") or "").startswith(case["culprit_function"] + "+0x")
              and "the line is not known" in (culprit.get("reason") or ""))
        return ("symbol" if ok else "wrong"), culprit
    if os.path.basename(culprit.get("file") or "") != base:
        return "wrong", culprit
    if culprit.get("line") == case["culprit_line"]:
        return "exact", culprit
    if opt == "-O2" and case["name"] in FOLDED_AT_O2:
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "test_attribution", os.path.join(ROOT, "tests", "e2e", "test_attribution.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if culprit.get("line") in mod.refcount_write_lines(case):
            return "folded", culprit
    return "wrong", culprit


def zoo_runs(names, opts):
    python = sys.executable
    rows = []
    for case in cbuild.zoo_cases():
        if names and case["name"] not in names:
            continue
        for opt in opts:
            cwd = support.build_zoo_case(case, python, opt=opt)
            t0 = time.monotonic()
            try:
                status, result, err = support.check_json(python, case["name"] + ":leaky", cwd)
            except subprocess.TimeoutExpired:
                result, err = None, "timed out"
            seconds = time.monotonic() - t0
            if result is None:
                outcome, culprit, verdict = "failed", None, "failed: " + err[-300:]
            else:
                outcome, culprit = _zoo_outcome(case, opt, result)
                verdict = result["verdict"]
            rows.append({
                "set": "zoo", "case": case["name"], "where": opt, "kind": case["kind"],
                "class": ZOO_CLASS.get(case["kind"], "-"), "held_out": False,
                "verdict": verdict, "outcome": outcome,
                "true": ["%s:%s" % (os.path.basename(case["path"]), case["culprit_line"])],
                "found": ("%s:%s" % (os.path.basename(culprit["file"]), culprit["line"])
                          if culprit and culprit.get("file") else
                          (culprit or {}).get("symbol")),
                "culprit": culprit,
                "path": _path_of(result, culprit) if result else None,
                "noise_sites": noise_sites(result) if result else None,
                "seconds": round(seconds, 1)})
            _print(rows[-1])
    return rows


def _print(row):
    print("%-6s %-24s %-16s %-2s %-6s %-34s found %-30s %s%s" % (
        row["set"], row["case"], row["where"], row["class"], row["verdict"][:6],
        "true " + ",".join(row["true"])[:29], row["found"] or "-", row["outcome"],
        " (held out)" if row["held_out"] else ""), flush=True)


def summarize(rows):
    """Per set, per class, held-out apart: runs and outcomes."""
    out = {}
    for row in rows:
        group = "%s/%s%s" % (row["set"], row["class"], " held-out" if row["held_out"] else "")
        for key in (group, row["set"] + ("/held-out" if row["held_out"] else "/tuned")):
            acc = out.setdefault(key, {"runs": 0})
            acc["runs"] += 1
            acc[row["outcome"]] = acc.get(row["outcome"], 0) + 1
    for acc in out.values():
        good = acc.get("exact", 0) + acc.get("symbol", 0)
        acc["exact_rate"] = round(good / acc["runs"], 3)
    noise = [r["noise_sites"] for r in rows if r["noise_sites"] is not None]
    return {"groups": dict(sorted(out.items())), "runs": len(rows),
            "runs_with_noise_sites": sum(1 for n in noise if n),
            "noise_sites": sum(noise)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus-only", action="store_true")
    ap.add_argument("--zoo-only", action="store_true")
    ap.add_argument("--opts", default="-O0,-O2", help="comma-separated: -O0,-O2")
    ap.add_argument("--cases", default="", help="comma-separated case names (both sets)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                  "culprit_accuracy.json"))
    args = ap.parse_args(argv)
    names = [n for n in args.cases.split(",") if n]
    started = time.monotonic()
    rows = []
    if not args.zoo_only:
        rows += corpus_runs(names)
    if not args.corpus_only:
        rows += zoo_runs(names, [o for o in args.opts.split(",") if o])
    summary = summarize(rows)
    print()
    for key, acc in summary["groups"].items():
        cls = key.split("/")[1].split()[0]
        print("%-24s %-60s %3d runs  exact %3d  %s" % (
            key, CLASSES.get(cls, ""), acc["runs"], acc.get("exact", 0) + acc.get("symbol", 0),
            ", ".join("%s %d" % (k, v) for k, v in sorted(acc.items())
                      if k not in ("runs", "exact", "exact_rate", "symbol"))))
    print("noise sites: %d in %d of %d runs" % (summary["noise_sites"],
                                               summary["runs_with_noise_sites"], len(rows)))
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    doc = {"command": "python3 bench/culprit_accuracy.py " + " ".join(argv or sys.argv[1:]),
           "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "git_head": head, "python": sys.executable, "python_version": platform.python_version(),
           "machine": {"nproc": os.cpu_count(), "loadavg": list(os.getloadavg())},
           "seconds": round(time.monotonic() - started, 1),
           "summary": summary, "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
