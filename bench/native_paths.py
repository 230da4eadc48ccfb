"""The two ways of reading native frames, side by side: libdw.so.1 (loaded at
run time; stacks by cached CFI rules) and pyelftools in a helper process
(stacks by the compiler's unwinder), on zoo cases' leak sites.

    python3 bench/native_paths.py [--engine HEAD|worktree|DIR] [--rounds 3]
                                  [--cases nested_list,error_path] [--opt -O2]
                                  [--out bench/results/native_paths.json]

Per case, path and round, a fresh interpreter checks CASE:leaky with
attribution and reports: the seconds spent turning the surviving blocks into
sites (attribution's leak_sites: symbolization of every frame of every
stack, cold caches: the DWARF of the extension, libpython and libc is read
for the first time in that process), the distinct addresses symbolized, the
whole check's seconds, and the top site (which must be the same line on
both paths).  Medians over rounds, interleaved.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import engine as E  # noqa: E402

CHILD = r'''
import importlib, json, sys, time
sys.path.insert(0, sys.argv[1])
import refhound
from refhound import _attribution, _core
spent = []
orig = _attribution.leak_sites
def timed(*a, **k):
    t = time.perf_counter()
    out = orig(*a, **k)
    spent.append(time.perf_counter() - t)
    return out
_attribution.leak_sites = timed
mod = importlib.import_module(sys.argv[2])
t = time.perf_counter()
result = refhound.check(mod.leaky)
total = time.perf_counter() - t
top = result.sites[0] if result.sites else {}
print(json.dumps({"sites_s": sum(spent), "addresses": len(_attribution._symbol_cache),
                  "check_s": total, "verdict": result.verdict,
                  "native": _core.native_paths(),
                  "top": [top.get("function"), top.get("line")]}))
'''

PATHS = {"libdw": {}, "pyelftools": {"REFHOUND_NO_LIBDW": "1"}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    E.add_engine_arguments(ap)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="nested_list,error_path")
    ap.add_argument("--opt", default="-O2")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "native_paths.json"))
    args = ap.parse_args(argv)
    import support
    t0 = time.time()
    python = args.python
    path = E.engine_dir(python, args.engine)
    cases = {c["name"]: c for c in support.cbuild.zoo_cases()}
    doc = E.run_header(__file__, argv if argv is not None else sys.argv[1:], python, path)
    doc["rounds"] = []
    script = os.path.join(support.BUILD, "native_paths_child.py")
    os.makedirs(support.BUILD, exist_ok=True)
    with open(script, "w") as fh:
        fh.write(CHILD)
    for r in range(args.rounds):
        for name in args.cases.split(","):
            cwd = support.build_zoo_case(cases[name], python, opt=args.opt)
            for mode, extra in PATHS.items():
                out = E.spawn(script, python, [cwd, name], E.child_env([path], **extra))
                out.update(case=name, path=mode, round=r)
                E.log("%s %s round %d: sites %.2f s, %d addresses, check %.1f s, top %s"
                      % (name, mode, r, out["sites_s"], out["addresses"], out["check_s"],
                         out["top"]))
                doc["rounds"].append(out)
    summary = {}
    for name in args.cases.split(","):
        for mode in PATHS:
            rows = [x for x in doc["rounds"] if x["case"] == name and x["path"] == mode]
            summary["%s/%s" % (name, mode)] = {
                "sites_s": round(E.med([x["sites_s"] for x in rows]), 3),
                "check_s": round(E.med([x["check_s"] for x in rows]), 2),
                "addresses": rows[0]["addresses"], "top": rows[0]["top"],
                "native": rows[0]["native"]}
    doc["summary"] = summary

    def render(d):
        lines = ["%-28s %10s %10s %10s  %s" % ("case/path", "sites s", "check s", "addresses",
                                              "top site")]
        for key, v in d["summary"].items():
            lines.append("%-28s %10.3f %10.2f %10d  %s:%s" % (key, v["sites_s"], v["check_s"],
                                                             v["addresses"], v["top"][0],
                                                             v["top"][1]))
        return "\n".join(lines)
    E.finish(doc, t0, args.out, render)


if __name__ == "__main__":
    main()
