"""Wall time of a real extension's test suite under pytest --refhound and its peers.

The suite is msgpack's own (the sdist ships test/; the C extension
msgpack/_cmsgpack.c, Cython-generated, is compiled here with tests/cbuild.py
at -O2).  Every mode runs the whole suite in a fresh `python -m pytest`,
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

    python3 bench/pytest_suite.py                    # 3 rounds, ~10 min on 2 cores
    python3 bench/pytest_suite.py --rounds 1 --modes plain refhound

Prints a table of medians and ratios to plain; writes
bench/results/pytest_suite.json.  Needs pip access once (the sdist is kept
in build/bench/), pytest-memray and pytest-xdist.
"""
import argparse
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
PACKAGE, VERSION = "msgpack", "1.2.4"

MODES = {
    "plain": [],
    "refhound": ["-p", "refhound.pytest_plugin", "--refhound"],
    "leaks-5:4": ["-p", "pytest_suite", "--leaks-emulation"],
    "memray": ["-p", "pytest_memray.plugin", "--memray"],
    "refhound-n2": ["-p", "refhound.pytest_plugin", "-p", "xdist.plugin", "--refhound",
                    "-n", "2"],
}
DEFAULT_MODES = ["plain", "refhound", "leaks-5:4", "memray"]


# --------------------------------------------------------------------------
# The suite


def prepare_suite():
    """Download (once) and unpack the sdist, compile its extension; -> folder."""
    os.makedirs(BUILD, exist_ok=True)
    tarball = os.path.join(BUILD, "%s-%s.tar.gz" % (PACKAGE, VERSION))
    if not os.path.exists(tarball):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                        "--no-deps", "-d", BUILD, "%s==%s" % (PACKAGE, VERSION)],
                       check=True, capture_output=True)
    folder = os.path.join(BUILD, "%s-%s" % (PACKAGE, VERSION))
    if not os.path.isdir(folder):
        with tarfile.open(tarball) as tar:
            tar.extractall(BUILD)
    ini = os.path.join(folder, "pytest.ini")
    if not os.path.exists(ini):
        # The suite's own rootdir (else pytest would climb to refhound's pyproject).
        with open(ini, "w") as f:
            f.write("[pytest]\n")
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import cbuild
    cbuild.build_extension(os.path.join(folder, "msgpack", "_cmsgpack.c"),
                           os.path.join(folder, "msgpack"), include_dirs=[folder], opt="-O2")
    return folder


SRC = os.path.join(ROOT, "src")


def run_mode(folder, mode, extra=()):
    env = dict(os.environ)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([SRC, HERE, folder])
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test"]
    cmd += MODES[mode] + list(extra)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return seconds, proc.returncode, tail, proc.stdout


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", nargs="+", choices=sorted(MODES), default=None)
    ap.add_argument("--xdist", action="store_true", help="add refhound-n2")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--src", default=SRC,
                    help="the refhound package's parent folder, engine built in place "
                         "(default: this tree's src/)")
    args = ap.parse_args(argv)
    globals()["SRC"] = os.path.abspath(args.src)
    modes = args.modes or DEFAULT_MODES + (["refhound-n2"] if args.xdist else [])
    folder = prepare_suite()
    rng = random.Random(args.seed)
    times = {m: [] for m in modes}
    status = {}
    flagged = {}
    for r in range(args.rounds):
        order = list(modes)
        rng.shuffle(order)
        for mode in order:
            seconds, code, tail, stdout = run_mode(folder, mode)
            times[mode].append(seconds)
            status[mode] = (code, tail)
            flagged[mode] = _flagged(mode, stdout)
            print("round %d  %-12s %7.2f s  exit %d  %s" % (r + 1, mode, seconds, code, tail),
                  flush=True)
    base = statistics.median(times["plain"]) if "plain" in times else None
    print()
    print("msgpack %s test suite (%s), %d round(s), median wall time"
          % (VERSION, folder, args.rounds))
    print("%-12s %9s %9s %9s  %s" % ("mode", "median s", "min s", "x plain", "flagged tests"))
    rows = []
    for mode in modes:
        med = statistics.median(times[mode])
        ratio = med / base if base else None
        print("%-12s %9.2f %9.2f %9s  %s" % (
            mode, med, min(times[mode]), "%.1f" % ratio if ratio else "-",
            "-" if flagged[mode] is None else flagged[mode]))
        rows.append({"mode": mode, "args": MODES[mode], "seconds": times[mode], "median": med,
                     "ratio_to_plain": ratio, "flagged": flagged[mode],
                     "exit": status[mode][0], "summary": status[mode][1]})
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, "pytest_suite.json")
    with open(out, "w") as f:
        json.dump({"suite": "%s %s" % (PACKAGE, VERSION), "rounds": args.rounds,
                   "refhound_src": SRC, "refhound_commit": _commit(),
                   "python": sys.version.split()[0], "machine": platform.machine(),
                   "cpus": os.cpu_count(), "date": datetime.date.today().isoformat(),
                   "modes": rows}, f, indent=2)
    print("\nwritten to %s" % os.path.relpath(out, ROOT))
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
