"""Which refhound the benchmarks run, and what every benchmark shares.

    --engine HEAD       (default) the committed engine: `git archive HEAD`
                        built into build/bench/engine-<commit>, so figures
                        belong to a commit and not to whatever is half-edited
    --engine worktree   the working tree, built as the tests build it
                        (tests/support.py)
    --engine DIR        a folder holding the refhound package (e.g. DIR/src
                        of a prototype copy of the tree)

The shared parts of a benchmark that times workloads (bench/workloads.py)
under several tools, each run in a fresh interpreter: the child's timing of
one workload (time_workload), the parent's interleaved rounds and their
ratios to plain, the allocator-call count of a workload (bench/c/alloccount.c),
medians, the header and the atomic write of a results file, the machine.
"""
import datetime
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "build", "bench")


def _git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return ""


def _build_commit(python, commit):
    """The commit's sources, extracted once, with the engine built for
    `python` (one marker per interpreter: each builds its own .so files
    beside the others')."""
    out = os.path.join(BUILD, "engine-" + commit)
    pkg = os.path.join(out, "src")
    suffix = subprocess.run([python, "-c", "import sysconfig; "
                             "print(sysconfig.get_config_var('EXT_SUFFIX'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    extracted = os.path.join(out, ".extracted")
    marker = os.path.join(out, ".built" + suffix)
    if os.path.exists(marker):
        return pkg
    if not os.path.exists(extracted):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        archive = subprocess.run(["git", "-C", ROOT, "archive", commit], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
        open(extracted, "w").close()
    proc = subprocess.run([python, "setup.py", "-q", "build_ext", "--inplace"], cwd=out,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("building commit %s failed:\n%s" % (commit, proc.stderr[-2000:]))
    # Byte-compiled as pip installs it: under PYTHONDONTWRITEBYTECODE every
    # start would compile the sources again (some 30 ms of each CLI run).
    subprocess.run([python, "-m", "compileall", "-q", pkg], capture_output=True, check=True)
    open(marker, "w").close()
    return pkg


def engine_dir(python, given=None):
    """A folder to put first on PYTHONPATH so that `import refhound` works."""
    given = given or "HEAD"
    if given == "HEAD":
        return _build_commit(python, _git("rev-parse", "--short", "HEAD"))
    if given == "worktree":
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        try:
            import support
            return support.engine_path(python)
        finally:
            sys.path.pop(0)
    return os.path.abspath(given)


def describe(python, path):
    """What was measured: the folder, the commit, whether the working tree's
    engine differs from it, and what `import refhound` found."""
    probe = subprocess.run([python, "-c", "import refhound, refhound._core as c; "
                            "print(refhound.__version__, c.__file__)"],
                           env=dict(os.environ, PYTHONPATH=path), capture_output=True, text=True)
    return {"path": path, "git_head": _git("rev-parse", "--short", "HEAD"),
            "worktree_engine_dirty": bool(_git("status", "--porcelain", "--", "src/core")),
            "import": probe.stdout.strip() or probe.stderr.strip()[-300:]}


def machine_info():
    """Where a benchmark ran: cores, CPU model, kernel, load."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "loadavg": os.getloadavg()}


def git_head():
    return _git("rev-parse", "--short", "HEAD") or "?"


# ---- figures ----------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else None


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def fmt_ratio(x):
    return "-" if x is None else "%.2fx" % x


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---- the child: one workload under one tool, in this fresh interpreter ----------------------

def rusage_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_workload(make_tool, mode, workload, scale, prefix="rh-bench-"):
    """Run one workload of bench/workloads.py under the tool make_tool(mode,
    tmpdir) builds: an object with start(), extra() -> dict, stop() -> dict
    or None and, optionally, prepare() (imports, so that start() times the
    tool's own start only).  Only the workload is timed; the tool's start
    and stop are timed apart."""
    import gc
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import workloads
    run = workloads.WORKLOADS[workload](scale)
    gc.collect()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmpdir:
        tool = make_tool(mode, tmpdir)
        if hasattr(tool, "prepare"):
            tool.prepare()
        t0 = time.perf_counter()
        tool.start()
        t1 = time.perf_counter()
        c1 = rusage_cpu()
        run()
        t2 = time.perf_counter()
        c2 = rusage_cpu()
        extra = tool.extra()
        t3 = time.perf_counter()
        extra.update(tool.stop() or {})
        t4 = time.perf_counter()
    return {"mode": mode, "workload": workload, "start_s": t1 - t0, "run_s": t2 - t1,
            "cpu_s": c2 - c1, "stop_s": t4 - t3, **extra}


# ---- the parent ----------------------------------------------------------------------------

def child_env(paths, **extra):
    """The environment of a child: `paths` first on PYTHONPATH, none of the
    allocator or tracing switches of this process."""
    env = dict(os.environ)
    for k in ("PYTHONMALLOC", "PYTHONTRACEMALLOC", "PYTHONDEVMODE"):
        env.pop(k, None)
    paths = list(paths)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def spawn(script, python, args, env, timeout=900):
    """Run `python script args` and return the JSON of its last line."""
    cmd = [python, os.path.abspath(script)] + list(args)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), proc.returncode,
                                                    proc.stderr[-3000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def have_memray(python):
    return subprocess.run([python, "-c", "import memray"], capture_output=True).returncode == 0


def build_alloccount(python, out_dir):
    """The counting probe (bench/c/alloccount.c), built into out_dir."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    try:
        import cbuild
    finally:
        sys.path.pop(0)
    return cbuild.build_extension(os.path.join(HERE, "c", "alloccount.c"), out_dir,
                                  python=python, opt="-O2")


def add_engine_arguments(ap):
    """--python and --engine (see this module's docstring)."""
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--engine", default="HEAD", metavar="HEAD|worktree|DIR",
                    help="the refhound to measure (default: the committed HEAD, "
                         "built apart; see bench/engine.py)")


def add_workload_arguments(ap, modes, rounds, scale, seed, scale_help="workload size factor"):
    """The workloads and modes to run, in how many interleaved rounds."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import workloads
    ap.add_argument("workloads", nargs="*", help="default: all of %s" % list(workloads.WORKLOADS))
    ap.add_argument("--rounds", type=int, default=rounds,
                    help="interleaved rounds (default %d)" % rounds)
    ap.add_argument("--scale", type=float, default=scale, help=scale_help)
    ap.add_argument("--modes", default=",".join(modes),
                    help="comma-separated modes (plain is always included)")
    ap.add_argument("--seed", type=int, default=seed)


def choose_workloads(ap, given):
    import workloads
    names = given or list(workloads.WORKLOADS)
    for w in names:
        if w not in workloads.WORKLOADS:
            ap.error("unknown workload %r" % w)
    return names


def choose_modes(ap, spec, known, python):
    """(["plain", ...the modes asked for], notes); memray modes are left out,
    with a note, where memray is not installed."""
    modes = ["plain"] + [m for m in spec.split(",") if m and m != "plain"]
    for m in modes:
        if m not in known:
            ap.error("unknown mode %r" % m)
    notes = []
    if any(m.startswith("memray") for m in modes) and not have_memray(python):
        notes.append("memray is not installed for %s: memray modes skipped" % python)
        modes = [m for m in modes if not m.startswith("memray")]
    return modes, notes


def interleaved(names, modes, rounds, seed, run):
    """run(workload, mode) for every pair once a round, the modes of each
    round in a shuffled order, so that the load of other processes on the
    machine falls on all of them alike.  Returns samples[workload][mode]."""
    rng = random.Random(seed)
    samples = {w: {m: [] for m in modes} for w in names}
    for r in range(rounds):
        for w in names:
            order = list(modes)
            rng.shuffle(order)
            for m in order:
                samples[w][m].append(run(w, m))
            log("round %d/%d %-10s %s" % (r + 1, rounds, w, "  ".join(
                "%s=%.3f" % (m, samples[w][m][-1]["run_s"]) for m in modes)))
    return samples


def ratios(samples, modes):
    """One workload's row: each mode's times and their ratios to plain (the
    ratio of medians, and the median of the per-round ratios: each round's
    pair ran close in time, under similar load)."""
    plain_runs = [s["run_s"] for s in samples["plain"]]
    plain = med(plain_runs)
    plain_cpu = med([s["cpu_s"] for s in samples["plain"]])
    row = {"plain_s": plain, "modes": {}}
    for m in modes:
        runs = [s["run_s"] for s in samples[m]]
        cpu = med([s["cpu_s"] for s in samples[m]])
        row["modes"][m] = {
            "run_s": runs, "median_s": med(runs), "ratio": med(runs) / plain,
            "ratio_per_round_median": med([a / b for a, b in zip(runs, plain_runs)]),
            "cpu_ratio": cpu / plain_cpu if plain_cpu else None,
            "start_s": med([s["start_s"] for s in samples[m]]),
            "stop_s": med([s["stop_s"] for s in samples[m]]),
        }
    return row


def measure_calls(script, python, names, scale, env):
    """Allocator calls of each workload: the alloccount child of `script`."""
    return {w: spawn(script, python, ["--child", "alloccount", w, str(scale)], env)["calls"]
            for w in names}


# ---- results -------------------------------------------------------------------------------

def run_header(script, argv, python, engine_path):
    """What every results file says first: the command, when, which
    refhound, which interpreter, which machine."""
    return {"command": "python3 bench/%s %s" % (os.path.basename(script), " ".join(argv)),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "engine": describe(python, engine_path), "python": python,
            "python_version": platform.python_version(), "machine": machine_info()}


def finish(doc, t0, path, render):
    """Close a run started at time.time() t0: the load at its end and its
    length in the results, the table printed, the file written."""
    doc["machine"]["loadavg_end"] = os.getloadavg()
    doc["seconds"] = round(time.time() - t0, 1)
    print(render(doc))
    write_results(doc, path)
    log("wrote %s (%.0f s)" % (path, doc["seconds"]))


def write_results(doc, path):
    """Write a results file whole or not at all."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# What the overhead scripts share: their child and render modes, the cells
# of a mode's ratio and the geomean row.

def child_or_render(argv, child_run, render, results_json, more=None):
    """Handle `--child MODE WORKLOAD [SCALE]` (one measured run: its JSON on
    stdout), `--render [FILE]` (the table of a results file) and the flags
    of `more` ({flag: function of the remaining arguments, printed as
    JSON}).  True when argv was one of them."""
    if argv[:1] == ["--child"]:
        scale = float(argv[3]) if len(argv) > 3 else 1.0
        print(json.dumps(child_run(argv[1], argv[2], scale)))
        return True
    if argv[:1] and argv[0] in (more or {}):
        print(json.dumps(more[argv[0]](*argv[1:])))
        return True
    if argv[:1] == ["--render"]:
        with open(argv[1] if len(argv) > 1 else results_json) as f:
            print(render(json.load(f)))
        return True
    return False


def ratio_cell(r):
    """"wall (CPU)" of one mode of one workload."""
    return "%s (%s)" % (fmt_ratio(r["ratio_per_round_median"]), fmt_ratio(r["cpu_ratio"]))


def geomean_cells(ov, modes):
    """The geomean row's cells: "geomean", "", then one per mode but the first."""
    return ["geomean", ""] + ["%s (%s)" % (
        fmt_ratio(geomean([r["modes"][m]["ratio_per_round_median"] for r in ov.values()])),
        fmt_ratio(geomean([r["modes"][m]["cpu_ratio"] for r in ov.values()])))
        for m in modes[1:]]

