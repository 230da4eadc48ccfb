"""refhound's memcheck-annotated pool allocator against PYTHONMALLOC=malloc,
under memcheck, on the same workload: time and findings side by side.

    python3 bench/valgrind_pool.py [--repeat 3] [--scale 1.0] [--json FILE] [--breakdown]

The workload (written to build/bench/valgrind/workload.py) is an
allocation-heavy Python loop (strings, tuples, dicts, lists: container
churn as in real programs) followed by calls into four small extensions
from the bug zoo and tests/valgrind_cases with known bugs: a use after free,
a one-byte heap overflow, a leaked int per call and a leaked
PyMem_RawMalloc buffer per call.  Each run is a complete
`refhound valgrind --allocator pool|malloc --json ... -- python workload.py`
(memcheck options, generated suppressions and filtering identical; the
suppressions are generated before timing).  Runs alternate between the
two allocators; the table gives medians of:

  wall      the whole `refhound valgrind` run (memcheck start-up, the
            program, the leak search at exit, reading the XML)
  cpu       CPU seconds of the valgrind process (user + sys)
  work      CPU seconds of the workload itself, measured inside the program
            (time.process_time around the loop and the calls)

and the findings (kind and culprit line) of each allocator, which must be
the same.  --breakdown adds where an allocation's time goes under memcheck:
a loop of short-lived objects with pymalloc (memcheck blind to objects), the
pool without announcing anything, PYTHONMALLOC=malloc and the announcing
pool; and a C loop of alloc/free pairs as malloc/free or as mempool
requests.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import cbuild  # noqa: E402

CASES = [os.path.join(ROOT, "tests", "zoo", "new_object.c"),
         os.path.join(ROOT, "tests", "zoo", "rawmem_buffer.c"),
         os.path.join(ROOT, "tests", "valgrind_cases", "uaf_read.c"),
         os.path.join(ROOT, "tests", "valgrind_cases", "overflow_write.c")]

WORKLOAD = r'''
import json, sys, time
sys.path.insert(0, %(moddir)r)
import new_object, rawmem_buffer, uaf_read, overflow_write

def churn(n):
    table = {}
    keep = []
    total = 0
    for i in range(n):
        key = "key-%%d" %% i
        row = (key, i, [i, i * 2, key.upper()], {"id": i, "name": key})
        table[key] = row
        if i %% 3:
            del table[key]
        keep.append(key[:5] + str(i %% 97))
        if len(keep) > 500:
            total += sum(len(k) for k in keep)
            keep = [k.lower() for k in keep[-50:]]
    return total + len(table)

t0 = time.process_time()
churn(%(n)d)
for _ in range(5):
    new_object.leaky()
    rawmem_buffer.leaky()
uaf_read.leaky()
overflow_write.leaky()
sys.stderr.write("BENCH " + json.dumps({"work": time.process_time() - t0}) + "\n")
'''


LOOP = r'''
import sys, time
def work(n):
    out = 0
    for i in range(n):
        s = str(i) * 2
        t = (s, i, None)
        d = {"a": t, "b": [s, s]}
        out += len(d["b"])
    return out
work(1000)
t = time.process_time()
work(60000)
sys.stderr.write("LOOP %.4f\n" % (time.process_time() - t))
'''

PAIRS_C = r'''
/* alloc/free pairs: malloc/free, or a mempool chunk announced and retired */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <valgrind/valgrind.h>
#include <valgrind/memcheck.h>
#define N 400000
#define LIVE 1024
static char anchor;
static void *slots[LIVE];
static double now(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
                          return t.tv_sec + t.tv_nsec * 1e-9; }
__attribute__((noinline)) static void *get(int mode, char *arena, int i) {
    if (mode == 0) return malloc(32);
    char *p = arena + (size_t)(i % (LIVE * 4)) * 64 + 16;
    VALGRIND_MEMPOOL_ALLOC(&anchor, p, 32);
    return p;
}
__attribute__((noinline)) static void put(int mode, void *p) {
    if (mode == 0) free(p); else VALGRIND_MEMPOOL_FREE(&anchor, p);
}
int main(int argc, char **argv) {
    int mode = atoi(argv[1]);
    char *arena = malloc(LIVE * 4 * 64 + 64);
    VALGRIND_CREATE_MEMPOOL(&anchor, 16, 0);
    VALGRIND_MAKE_MEM_NOACCESS(arena, LIVE * 4 * 64 + 64);
    double t = now();
    for (int i = 0; i < N; i++) {
        int k = i % LIVE;
        if (slots[k]) put(mode, slots[k]);
        slots[k] = get(mode, arena, i);
        memset(slots[k], 1, 32);
    }
    printf("%.4f\n", now() - t);
    return 0;
}
'''


def breakdown(out, env, repeat):
    """Where the time of an allocation goes under memcheck: one loop of
    short-lived objects with four allocators, and a C loop of alloc/free
    pairs announced either way.  Best of `repeat`."""
    loop = os.path.join(out, "loop.py")
    with open(loop, "w") as fh:
        fh.write(LOOP)
    configs = [("pymalloc, nothing announced", None),
               ("pool, nothing announced", "pool-blind"),
               ("PYTHONMALLOC=malloc", "malloc"),
               ("pool, every object announced", "pool")]
    best = {}
    for name, alloc in configs:
        times = []
        for _ in range(repeat):
            e = dict(env)
            cmd = ["valgrind", "-q", "--xml=yes", "--xml-file=" + os.path.join(out, "loop.xml"),
                   "--num-callers=24", sys.executable]
            if alloc is None:
                e.pop("PYTHONMALLOC", None)
                cmd += [loop]
            else:
                e["PYTHONMALLOC"] = "malloc"
                cmd += ["-m", "refhound._valgrind.boot", "--allocator", alloc, "--", loop]
            proc = subprocess.run(cmd, env=e, capture_output=True, text=True)
            times += [float(l.split()[1]) for l in proc.stderr.splitlines()
                      if l.startswith("LOOP ")]
        best[name] = min(times)
    src = os.path.join(out, "pairs.c")
    exe = os.path.join(out, "pairs")
    with open(src, "w") as fh:
        fh.write(PAIRS_C)
    subprocess.run(["cc", "-O2", "-g", src, "-o", exe], check=True)
    pairs = {}
    for mode, name in ((0, "malloc/free"), (1, "MEMPOOL_ALLOC/FREE")):
        pairs[name] = min(float(subprocess.run(
            ["valgrind", "-q", "--num-callers=24", exe, str(mode)], capture_output=True,
            text=True).stdout) for _ in range(repeat))
    base = best["pymalloc, nothing announced"]
    print("\nthe loop (367k short-lived objects), CPU s under memcheck, best of %d:" % repeat)
    for name, _ in configs:
        print("  %-32s %6.2f s   %+6.2f s" % (name, best[name], best[name] - base))
    print("400 000 alloc/free pairs in C under memcheck, best of %d:" % repeat)
    for name, t in pairs.items():
        print("  %-32s %6.2f s" % (name, t))
    return {"loop": best, "pairs": pairs}


def build(out):
    moddir = os.path.join(out, "modules")
    for c in CASES:
        cbuild.build_extension(c, moddir)
    return moddir


def engine_env(out):
    """refhound built for this interpreter (setup.py build_ext) on PYTHONPATH."""
    eng = os.path.join(out, "engine")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "-b", eng,
                           "-t", eng + ".tmp"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit("building refhound failed:\n" + proc.stdout + proc.stderr)
    pkg = os.path.join(eng, "refhound")
    src = os.path.join(ROOT, "src", "refhound")
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel = os.path.relpath(dirpath, src)
        os.makedirs(os.path.join(pkg, rel), exist_ok=True)
        for f in filenames:
            if f.endswith((".py", ".h")):
                dst = os.path.join(pkg, rel, f)
                with open(os.path.join(dirpath, f), "rb") as a, open(dst, "wb") as b:
                    b.write(a.read())
    env = dict(os.environ)
    env["PYTHONPATH"] = eng
    env.pop("PYTHONSTARTUP", None)
    return env


def one_run(env, allocator, workload, json_path):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "refhound", "valgrind", "--allocator", allocator,
                           "-q", "--json", json_path, "--", sys.executable, workload],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    work = None
    for line in proc.stderr.splitlines():
        if line.startswith("BENCH "):
            work = json.loads(line[6:])["work"]
    if proc.returncode not in (0, 1) or work is None:
        sys.exit("refhound valgrind failed (%d):\n%s" % (proc.returncode, proc.stderr[-3000:]))
    with open(json_path) as fh:
        data = json.load(fh)
    return {"wall": wall, "cpu": cpu, "work": work, "findings": findings(data)}


def findings(data):
    out = set()
    for f in data["errors"] + data["leaks"]:
        c = f["culprit"]
        out.add((f["kind"], os.path.basename(c["file"] or "?"), c["line"]))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="workload size (1.0 = 20000 rows)")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--breakdown", action="store_true",
                    help="also measure where an allocation's time goes under memcheck")
    args = ap.parse_args()

    out = os.path.join(ROOT, "build", "bench", "valgrind")
    os.makedirs(out, exist_ok=True)
    moddir = build(out)
    env = engine_env(out)
    workload = os.path.join(out, "workload.py")
    with open(workload, "w") as fh:
        fh.write(WORKLOAD % {"moddir": moddir, "n": int(20000 * args.scale)})

    runs = {"pool": [], "malloc": []}
    with tempfile.TemporaryDirectory() as tmp:
        for alloc in runs:     # untimed: generates (or finds) the suppressions
            one_run(env, alloc, workload, os.path.join(tmp, "warm.json"))
        for i in range(args.repeat):
            order = ["pool", "malloc"] if i % 2 == 0 else ["malloc", "pool"]
            for alloc in order:
                r = one_run(env, alloc, workload, os.path.join(tmp, "%s%d.json" % (alloc, i)))
                runs[alloc].append(r)
                print("run %d %-6s wall %6.2f s  cpu %6.2f s  work %6.2f s  findings %d"
                      % (i + 1, alloc, r["wall"], r["cpu"], r["work"], len(r["findings"])),
                      flush=True)

    med = {a: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "work")}
           for a, rs in runs.items()}
    same = all(r["findings"] == runs["pool"][0]["findings"] for rs in runs.values() for r in rs)
    print()
    print("medians of %d runs        pool    malloc   malloc/pool" % args.repeat)
    for k in ("wall", "cpu", "work"):
        print("  %-20s %7.2f s %7.2f s   %5.2fx" % (k, med["pool"][k], med["malloc"][k],
                                                   med["malloc"][k] / med["pool"][k]))
    print()
    print("findings (%s):" % ("the same" if same else "DIFFERENT"))
    for a in runs:
        print("  %-6s %s" % (a, ", ".join("%s %s:%s" % f for f in runs[a][0]["findings"])))
    result = {"repeat": args.repeat, "scale": args.scale, "medians": med,
              "ratio_malloc_over_pool": {k: med["malloc"][k] / med["pool"][k]
                                         for k in ("wall", "cpu", "work")},
              "same_findings": same,
              "findings": {a: runs[a][0]["findings"] for a in runs},
              "runs": {a: [{k: r[k] for k in ("wall", "cpu", "work")} for r in rs]
                       for a, rs in runs.items()}}
    if args.breakdown:
        result["breakdown"] = breakdown(out, env, args.repeat)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
