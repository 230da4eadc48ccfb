"""Wall time of real extensions' test suites under pytest --refhound and its peers.

The suites are the packages' own, from their PyPI sdists (each ships its
tests), their C extensions compiled here with tests/cbuild.py at -O2:

    msgpack 1.2.4       test/              (Cython-generated _cmsgpack.c)
    markupsafe 3.0.4    tests/             (_speedups.c)
    simplejson 4.3.0    simplejson/tests/  (_speedups.c; unittest classes)
    bitarray 3.12.3     bitarray/test_*.py (_bitarray.c, _util.c; unittest
                                            classes) -- held out: never used
                                            while tuning the screen
    multidict 7.2.1     tests/: the 8 files that need no optional package
                        (_multidict.c; 2,282 tests, ~10 s plain, CPU-bound,
                        with some 80 thread-safety tests of 0.1-1.6 s a call)
                        -- held out, added 2026-12-02

Every mode runs a whole suite in a fresh `python -m pytest`,
plugin autoloading off and each tool's plugin named with -p, modes
interleaved round after round in a shuffled order so that the load of other
processes falls on all of them alike:

    plain        pytest
    refhound     pytest --refhound            (adaptive: warm-up, then measured
                                               iterations until the trend test
                                               is sure; calls per iteration
                                               calibrated)
    leaks-5:4    pytest-leaks-style fixed repetition, emulated here (the
                 pytest-leaks package needs a debug build): each test's whole
                 protocol run 5 times to settle and 4 times measured, a cache
                 clearing and a full collection after each run, allocated
                 blocks / total refs / fds read, a leak when all 4 deltas grow
    memray       pytest --memray              (pytest-memray: allocation
                                               tracking per test, no leak verdict)
    refhound-n2  pytest --refhound -n 2       (with --xdist)
    plain-n2     pytest -n 2                  (with --xdist: what pytest-xdist
                                               itself costs or saves on the suite,
                                               the yardstick for refhound-n2)

    python3 bench/pytest_suite.py --xdist            # every suite, 3 rounds
    python3 bench/pytest_suite.py --rounds 1 --suites markupsafe --modes plain refhound

Prints a table of medians and ratios to plain per suite, with the
distribution of refhound's own time per test (median, p90, max: the
`seconds` of each test's check in --refhound-json); writes
bench/results/pytest_suite.json.  Needs pip access once (the sdists are
kept in build/bench/), pytest-memray and pytest-xdist.
"""
import argparse
import compileall
import datetime
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tarfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
BUILD = os.path.join(ROOT, "build", "bench")
# name: (version, [(C file, output folder, include folders)], test paths,
#        ini text, held out)
SUITES = {
    "msgpack": ("1.2.4", [("msgpack/_cmsgpack.c", "msgpack", ["."])], ["test"],
                "[pytest]\n", False),
    "markupsafe": ("3.0.4", [("src/markupsafe/_speedups.c", "src/markupsafe", [])], ["tests"],
                   "[pytest]\npythonpath = src\n", False),
    "simplejson": ("4.3.0", [("simplejson/_speedups.c", "simplejson", ["simplejson"])],
                   ["simplejson/tests"], "[pytest]\n", False),
    "bitarray": ("3.12.3", [("bitarray/_bitarray.c", "bitarray", ["bitarray"]),
                            ("bitarray/_util.c", "bitarray", ["bitarray"])],
                 ["bitarray/test_bitarray.py", "bitarray/test_util.py",
                  "bitarray/test_bitfields.py"], "[pytest]\n", True),
    "multidict": ("7.2.1", [("multidict/_multidict.c", "multidict", ["multidict"])],
                  ["tests/test_multidict.py", "tests/test_mutable_multidict.py",
                   "tests/test_istr.py", "tests/test_copy.py", "tests/test_abc.py",
                   "tests/test_pickle.py", "tests/test_update.py", "tests/test_types.py"],
                  "[pytest]\n", True),
}

MODES = {
    "plain": [],
    "refhound": ["-p", "refhound.pytest_plugin", "--refhound"],
    "leaks-5:4": ["-p", "pytest_suite", "--leaks-emulation"],
    "memray": ["-p", "pytest_memray.plugin", "--memray"],
    "refhound-n2": ["-p", "refhound.pytest_plugin", "-p", "xdist.plugin", "--refhound",
                    "-n", "2"],
    "plain-n2": ["-p", "xdist.plugin", "-n", "2"],
}
DEFAULT_MODES = ["plain", "refhound", "leaks-5:4", "memray"]


# --------------------------------------------------------------------------
# The suite


def prepare_suite(name):
    """Download (once) and unpack the sdist, compile its extensions; -> folder."""
    version, extensions, _, ini_text, _ = SUITES[name]
    os.makedirs(BUILD, exist_ok=True)
    tarball = os.path.join(BUILD, "%s-%s.tar.gz" % (name, version))
    if not os.path.exists(tarball):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                        "--no-deps", "-d", BUILD, "%s==%s" % (name, version)],
                       check=True, capture_output=True)
    folder = os.path.join(BUILD, "%s-%s" % (name, version))
    if not os.path.isdir(folder):
        with tarfile.open(tarball) as tar:
            tar.extractall(BUILD)
    # The suite's own rootdir and a plain ini (else pytest would climb to
    # refhound's pyproject, or read options that need plugins not here).
    with open(os.path.join(folder, "pytest.ini"), "w") as f:
        f.write(ini_text)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import cbuild
    for c_file, out, includes in extensions:
        cbuild.build_extension(os.path.join(folder, c_file), os.path.join(folder, out),
                               include_dirs=[os.path.join(folder, d) for d in includes],
                               opt="-O2")
    return folder


SRC = os.path.join(ROOT, "src")


def run_mode(name, folder, mode, extra=()):
    env = dict(os.environ)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([SRC, HERE, folder, os.path.join(folder, "src")])
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + SUITES[name][2]
    json_path = None
    if mode.startswith("refhound"):
        json_path = os.path.join(BUILD, "%s-%s.json" % (name, mode))
        extra = list(extra) + ["--refhound-json", json_path]
    cmd += MODES[mode] + list(extra)
    t = time.perf_counter()
    before = os.times()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    after = os.times()
    cpu = (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    per_test = None
    if json_path and os.path.exists(json_path):
        with open(json_path) as f:
            per_test = [e.get("seconds") or 0.0 for e in json.load(f)]
    return seconds, cpu, proc.returncode, tail, proc.stdout, per_test


def _flagged(mode, stdout):
    """Tests each tool flagged (the leak-finding modes only)."""
    if mode.startswith("refhound"):
        m = re.search(r"(\d+) tests checked: ([^\n]*)", stdout)
        leaks = re.search(r"(\d+) leak\b", m.group(2)) if m else None
        return int(leaks.group(1)) if leaks else 0
    if mode == "leaks-5:4":
        m = re.search(r"leaks-5:4: (\d+) of (\d+) tests flagged", stdout)
        return int(m.group(1)) if m else None
    return None


def _commit():
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


def _quantiles(values):
    if not values:
        return None
    v = sorted(values)
    return {"median": round(v[len(v) // 2], 4), "p90": round(v[int(0.9 * (len(v) - 1))], 4),
            "max": round(v[-1], 4), "tests": len(v)}


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--suites", nargs="+", choices=sorted(SUITES), default=None)
    ap.add_argument("--modes", nargs="+", choices=sorted(MODES), default=None)
    ap.add_argument("--xdist", action="store_true", help="add plain-n2 and refhound-n2")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--src", default=SRC,
                    help="the refhound package's parent folder, engine built in place "
                         "(default: this tree's src/)")
    args = ap.parse_args(argv)
    globals()["SRC"] = os.path.abspath(args.src)
    modes = args.modes or DEFAULT_MODES + (["plain-n2", "refhound-n2"] if args.xdist else [])
    suites = args.suites or list(SUITES)
    folders = {name: prepare_suite(name) for name in suites}
    # refhound's modules compiled once, as an installed package's are: a
    # source tree under PYTHONDONTWRITEBYTECODE would compile them again in
    # every run (some 0.06 s a run, which no user pays).
    compileall.compile_dir(os.path.join(SRC, "refhound"), quiet=1)
    rng = random.Random(args.seed)
    runs = {(n, m): [] for n in suites for m in modes}
    for r in range(args.rounds):
        order = [(n, m) for n in suites for m in modes]
        rng.shuffle(order)
        for name, mode in order:
            load = _load()
            seconds, cpu, code, tail, stdout, per_test = run_mode(name, folders[name], mode)
            runs[(name, mode)].append({"seconds": seconds, "cpu": cpu, "exit": code,
                                       "summary": tail, "flagged": _flagged(mode, stdout),
                                       "per_test": _quantiles(per_test), "load": load})
            print("round %d  %-10s %-12s %7.2f s wall %7.2f s cpu  load %4.1f  exit %d  %s"
                  % (r + 1, name, mode, seconds, cpu, load or -1, code, tail), flush=True)
    out = {"rounds": args.rounds, "refhound_src": SRC, "refhound_commit": _commit(),
           "python": sys.version.split()[0], "machine": platform.machine(),
           "cpus": os.cpu_count(), "date": datetime.date.today().isoformat(), "suites": []}
    for name in suites:
        version, _, paths, _, held_out = SUITES[name]
        base = statistics.median(x["seconds"] for x in runs[(name, "plain")]) \
            if "plain" in modes else None
        base_cpu = statistics.median(x["cpu"] for x in runs[(name, "plain")]) \
            if "plain" in modes else None
        print()
        print("%s %s (%s)%s, %d round(s), medians" % (
            name, version, " ".join(paths), " [held out]" if held_out else "", args.rounds))
        print("%-12s %8s %6s %8s %6s %8s  %-24s %s" % (
            "mode", "wall s", "x", "cpu s", "x", "load", "per test s (med/p90/max)",
            "flagged"))
        rows = []
        for mode in modes:
            xs = runs[(name, mode)]
            med = statistics.median(x["seconds"] for x in xs)
            cpu = statistics.median(x["cpu"] for x in xs)
            loads = [x["load"] for x in xs if x["load"] is not None]
            per = [x["per_test"] for x in xs if x["per_test"]]
            per = per[len(per) // 2] if per else None
            print("%-12s %8.2f %6s %8.2f %6s %8s  %-24s %s" % (
                mode, med, "%.2f" % (med / base) if base else "-", cpu,
                "%.2f" % (cpu / base_cpu) if base_cpu else "-",
                "%.1f" % statistics.median(loads) if loads else "-",
                "%.3f/%.3f/%.3f" % (per["median"], per["p90"], per["max"]) if per else "-",
                xs[-1]["flagged"] if xs[-1]["flagged"] is not None else "-"))
            rows.append({"mode": mode, "args": MODES[mode], "runs": xs, "median": med,
                         "median_cpu": cpu, "ratio_to_plain": med / base if base else None,
                         "cpu_ratio_to_plain": cpu / base_cpu if base_cpu else None,
                         "per_test": per})
        medians = {row["mode"]: row["median"] for row in rows}
        n2 = {}
        for serial in ("plain", "refhound"):
            if serial in medians and serial + "-n2" in medians:
                n2[serial] = medians[serial + "-n2"] / medians[serial]
        if n2:
            print("-n 2 x its serial run: %s" % ", ".join(
                "%s %.2f" % (m, r) for m, r in sorted(n2.items())))
        out["suites"].append({"suite": "%s %s" % (name, version), "tests": paths,
                              "held_out": held_out, "modes": rows,
                              "n2_to_serial": n2 or None})
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "pytest_suite.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print("\nwritten to %s" % os.path.relpath(path, ROOT))
    return 0


# --------------------------------------------------------------------------
# The pytest-leaks-style emulation, loaded into the suite's pytest as
# `-p pytest_suite --leaks-emulation` (inert without the option).

LEAKS_WARMUP, LEAKS_RUNS = 5, 4


def pytest_addoption(parser):
    parser.addoption("--leaks-emulation", action="store_true", default=False,
                     help="run each test 5 + 4 times, pytest-leaks style")


def _leaks_sample():
    import gc
    from refhound._caches import clear_caches
    clear_caches()
    gc.collect()
    total = getattr(sys, "gettotalrefcount", None)
    return (total() if total else 0, sys.getallocatedblocks(), len(os.listdir("/proc/self/fd")))


_leaks_flagged = []
_leaks_total = [0]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if not item.config.getoption("leaks_emulation", False):
        return None
    from _pytest.runner import runtestprotocol
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    samples = []
    reports = []
    n = LEAKS_WARMUP + LEAKS_RUNS
    for i in range(n):
        # Function-scoped fixtures torn down and set up again every run;
        # the others kept until the real next item.
        reports = runtestprotocol(item, log=False,
                                  nextitem=item.parent if i < n - 1 else nextitem)
        if any(r.failed for r in reports):
            break
        if i < n - 1:
            item._report_sections.clear()   # pytest's per-run output sections
        samples.append(_leaks_sample())
    _leaks_total[0] += 1
    if len(samples) == n:
        measured = samples[LEAKS_WARMUP - 1:]
        deltas = [[b[k] - a[k] for a, b in zip(measured, measured[1:])] for k in range(3)]
        if any(all(d > 0 for d in ds) for ds in deltas):
            _leaks_flagged.append(item.nodeid)
            if os.environ.get("LEAKS_EMULATION_DEBUG"):
                sys.stderr.write("%s %s\n" % (item.nodeid, deltas))
    for rep in reports:
        item.ihook.pytest_runtest_logreport(report=rep)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_terminal_summary(terminalreporter, config):
    if config.getoption("leaks_emulation", False):
        terminalreporter.write_line("leaks-5:4: %d of %d tests flagged%s" % (
            len(_leaks_flagged), _leaks_total[0],
            (": " + ", ".join(_leaks_flagged)) if _leaks_flagged else ""))


if __name__ == "__main__":
    sys.exit(main())
