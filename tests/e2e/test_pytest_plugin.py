"""pytest --refhound on the sample project (tests/sample_project), serially
and under pytest-xdist, plus the plugin's options, marker and reports.

Ground truth: the sample tests marked `@pytest.mark.leaks` are the ones that
leak, and sampleext.c marks each bug's line with `@culprit NAME`.  Every
subprocess runs with plugin autoloading off and the plugins named with -p,
so the result does not depend on what else is installed.
"""
import ast
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from support import ROOT, close_to, engine_path

PY = sys.executable
SAMPLE = os.path.join(ROOT, "tests", "sample_project")
SAMPLE_TESTS = os.path.join(SAMPLE, "test_sample.py")
SAMPLE_C = os.path.join(SAMPLE, "sampleext.c")

# Rates per call of the leaking tests (what sampleext.c does wrong).
EXPECT = {
    "test_sample.py::test_encode_leaky": {"objects": 1, "blocks": 1},
    "test_sample.py::TestCodec::test_method_leaky": {"objects": 1, "blocks": 1},
    "test_sample.py::test_tag_leaky": {"refs": 1, "objects": 0, "blocks": 0},
    "test_sample.py::test_scratch_leaky": {"blocks": 1, "bytes": 64, "objects": 0},
    "test_sample.py::test_grows_global_list": {"objects": 1, "blocks": 1},
    "test_sample.py::test_known_issue_got_worse": {"refs": 2, "objects": 0},
}
# How the sample tests that do not fail pass, when it is not "clean".
NOT_FAILED = {
    "test_sample.py::test_uses_leaky_fixture_fresh": "fixture",     # the fixture leaks
    "test_sample.py::test_known_issue_allowed": "allowed",          # within its allowance
    "test_sample.py::test_skipped_by_marker": "skipped",
    "test_sample.py::test_leak_outside_watched_metrics": "ignored",
}
# The function (in sampleext.c) whose @culprit line a leaking test must name.
CULPRIT = {
    "test_sample.py::test_encode_leaky": "encode_leaky",
    "test_sample.py::TestCodec::test_method_leaky": "encode_leaky",
    "test_sample.py::test_tag_leaky": "tag_leaky",
    "test_sample.py::test_scratch_leaky": "scratch_leaky",
}


def leaking_tests():
    """Node ids of the sample tests decorated with @pytest.mark.leaks."""
    tree = ast.parse(open(SAMPLE_TESTS).read())
    found = set()

    def marked(fn):
        return any(isinstance(d, ast.Attribute) and d.attr == "leaks" for d in fn.decorator_list)

    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and marked(node):
            found.add("test_sample.py::" + node.name)
        elif isinstance(node, ast.ClassDef):
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and marked(fn):
                    found.add("test_sample.py::%s::%s" % (node.name, fn.name))
    return found


def culprit_lines():
    out = {}
    for i, line in enumerate(open(SAMPLE_C), 1):
        m = re.search(r"@culprit (\S+)", line)
        if m:
            out[m.group(1)] = i
    return out


def run_pytest(args, cwd=SAMPLE, timeout=600):
    env = dict(os.environ)
    env["PYTHONPATH"] = engine_path(PY)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [PY, "-m", "pytest", "-p", "refhound.pytest_plugin", "-p", "no:cacheprovider"]
    if any(a == "-n" for a in args):
        cmd += ["-p", "xdist.plugin"]
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _junit(path):
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        parts = case.get("classname").split(".")
        nodeid = "::".join([parts[0] + ".py"] + parts[1:] + [case.get("name")])
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        out[nodeid] = {"failed": case.find("failure") is not None, "props": props}
    return out


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    proc = run_pytest(["--refhound", "--refhound-json", str(out / "r.json"),
                       "--junitxml", str(out / "junit.xml"), "-rA"])
    return proc, json.loads((out / "r.json").read_text()), _junit(str(out / "junit.xml"))


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install pytest-xdist)")
    out = tmp_path_factory.mktemp("xdist")
    proc = run_pytest(["--refhound", "-n", "2", "--refhound-json", str(out / "r.json"),
                       "--junitxml", str(out / "junit.xml")])
    return proc, json.loads((out / "r.json").read_text()), _junit(str(out / "junit.xml"))


def test_a_pytest_started_by_an_xdist_workers_test_is_a_session_of_its_own(tmp_path):
    # GIVEN a pytest started by a test of an xdist worker: it inherits the
    # worker's PYTEST_XDIST_WORKER (and the test's PYTEST_CURRENT_TEST)
    (tmp_path / "test_one.py").write_text("def test_clean():\n    assert [1] * 3\n")
    env = dict(os.environ, PYTHONPATH=engine_path(PY), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               PYTEST_XDIST_WORKER="gw0", PYTEST_CURRENT_TEST="test_outer.py::test_x (call)")
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([PY, "-m", "pytest", "-p", "refhound.pytest_plugin", "-p",
                           "no:cacheprovider", "-q", "--refhound", "--refhound-json", "out.json"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    # THEN it checks, reports and writes its JSON like any session
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "refhound leak check" in proc.stdout
    (entry,) = json.loads((tmp_path / "out.json").read_text())
    assert (entry["target"], entry["verdict"]) == ("test_one.py::test_clean", "clean")


def _outcomes(entries):
    return {e["target"]: e for e in entries}


def _failed(junit):
    return {nodeid for nodeid, case in junit.items() if case["failed"]}


def test_without_refhound_every_sample_test_passes():
    # The leaks are invisible to the tests themselves.
    proc = run_pytest(["-q"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"\b25 passed\b", proc.stdout), proc.stdout[-500:]


def test_refhound_fails_exactly_the_leaking_tests(serial):
    proc, entries, junit = serial
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    truth = leaking_tests()
    assert truth == set(EXPECT)
    assert _failed(junit) == truth, proc.stdout[-5000:]
    results = _outcomes(entries)
    assert len(results) == 25
    for nodeid, rates in EXPECT.items():
        entry = results[nodeid]
        assert entry["pytest"]["outcome"] == "leak", (nodeid, entry["pytest"])
        assert entry["verdict"] == "leak"
        for metric, value in rates.items():
            assert abs(entry["per_call"][metric] - value) <= max(0.05, 0.05 * value), \
                (nodeid, metric, entry["per_call"])
    # Every test not marked as leaking passed its check, each in its own way.
    for nodeid, entry in results.items():
        if nodeid not in truth:
            expected = NOT_FAILED.get(nodeid, "clean")
            assert entry["pytest"]["outcome"] == expected, (nodeid, entry["pytest"])


def test_leak_reports_name_types_objects_and_sites(serial):
    proc, entries, _ = serial
    results = _outcomes(entries)
    assert [o["type"] for o in results["test_sample.py::test_encode_leaky"]["objects"]] == ["tuple"]
    growth = results["test_sample.py::test_tag_leaky"]["refcount_growth"]
    assert growth and growth[0]["type"] == "object" and abs(growth[0]["refs_per_call"] - 1) < 0.05
    out = proc.stdout
    assert "refhound leak check" in out and "leaking tests:" in out
    # pytest 9 follows the short summary's line with the report's first
    # line; pytest 8 (the last for Python 3.9) writes the word and the test.
    line = "LEAKED test_sample.py::test_encode_leaky"
    if int(pytest.__version__.split(".")[0]) >= 9:
        line += " - refhound: LEAK"
    assert line in out, out[-3000:]
    assert "leaking objects per call: +1 tuple" in out
    # Culprit lines: every leaking test names its line, in the JSON and the report.
    lines = culprit_lines()
    for nodeid, func in CULPRIT.items():
        entry = results[nodeid]
        sites = list(entry["sites"])
        for g in entry["refcount_growth"]:
            sites.extend(g.get("sites") or [])
        assert any((s.get("file") or "").endswith("sampleext.c") and s.get("line") == lines[func]
                   for s in sites), (nodeid, sites)
        assert "sampleext.c:%d" % lines[func] in out


def test_fixture_leak_is_not_blamed_on_the_test(serial):
    proc, entries, junit = serial
    results = _outcomes(entries)
    # reuse (default): the fixture is set up once, outside the measurement.
    reuse = results["test_sample.py::test_uses_leaky_fixture"]
    assert reuse["pytest"]["outcome"] == "clean" and reuse["verdict"] == "clean"
    # fresh: the fixture's own leak is measured, told apart, and not blamed.
    fresh = results["test_sample.py::test_uses_leaky_fixture_fresh"]
    assert fresh["pytest"]["outcome"] == "fixture", fresh["pytest"]
    fixture = fresh["pytest"]["fixture_result"]
    assert fixture["verdict"] == "leak"
    assert abs(fixture["per_call"]["blocks"] - 1) < 0.05, fixture["per_call"]
    # Within 5 %, as the zoo's rates: a leak called without patience (its
    # blocks lost for good) reports the measured window's slope, which
    # carries the other bytes' drift (263.6 once on 3.10 under -n 2).
    assert close_to(fixture["per_call"]["bytes"], 256), fixture["per_call"]
    assert not junit["test_sample.py::test_uses_leaky_fixture_fresh"]["failed"]
    assert "leaks of function-scoped fixtures, not blamed on the test:" in proc.stdout
    # fresh fixtures also keep a test that appends to its fixture clean.
    assert results["test_sample.py::test_appends_to_fresh_fixture"]["pytest"]["outcome"] == "clean"


def test_pytest_records_do_not_count_as_leaks(serial):
    # monkeypatch undo lists, caplog records, captured output, warnings.
    _, entries, _ = serial
    results = _outcomes(entries)
    for name in ("test_monkeypatch", "test_output", "test_prints", "test_logs", "test_warns",
                 "test_cache_settles"):
        entry = results["test_sample.py::" + name]
        assert entry["pytest"]["outcome"] == "clean", (name, entry["per_call"], entry["trends"])


def test_marker(serial):
    proc, entries, junit = serial
    results = _outcomes(entries)
    allowed = results["test_sample.py::test_known_issue_allowed"]
    assert allowed["pytest"]["outcome"] == "allowed"
    assert allowed["pytest"]["settings"]["allow"] == {"refs": 1.0}
    worse = results["test_sample.py::test_known_issue_got_worse"]
    assert worse["pytest"]["outcome"] == "leak" and "refs +2" in worse["pytest"]["reason"]
    skipped = results["test_sample.py::test_skipped_by_marker"]
    assert skipped["pytest"]["outcome"] == "skipped" and skipped["verdict"] is None
    assert skipped["pytest"]["reason"] == "known leak, tracked elsewhere"
    ignored = results["test_sample.py::test_leak_outside_watched_metrics"]
    assert ignored["pytest"]["outcome"] == "ignored" and ignored["verdict"] == "leak"


def test_junit_properties(serial):
    _, _, junit = serial
    leak = junit["test_sample.py::test_tag_leaky"]["props"]
    assert leak["refhound_outcome"] == "leak" and leak["refhound_verdict"] == "leak"
    assert abs(float(leak["refhound_refs_per_call"]) - 1) < 0.05
    assert junit["test_sample.py::test_encode"]["props"]["refhound_outcome"] == "clean"


def test_xdist_gives_the_same_result_and_one_summary(serial, parallel):
    proc, entries, junit = parallel
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "created: 2/2 workers" in proc.stdout, proc.stdout[:2000]
    assert _failed(junit) == leaking_tests()
    assert proc.stdout.count("refhound leak check") == 1
    serial_outcomes = {k: v["pytest"]["outcome"] for k, v in _outcomes(serial[1]).items()}
    assert {k: v["pytest"]["outcome"] for k, v in _outcomes(entries).items()} == serial_outcomes
    fresh = _outcomes(entries)["test_sample.py::test_uses_leaky_fixture_fresh"]
    assert fresh["pytest"]["outcome"] == "fixture"


# ---------------------------------------------------------------------------
# Options, ini, warnings mode, errors: a small pure-Python project


PROJECT = '''
import pytest

_kept = []


def test_leaks():
    _kept.append(object())


def test_clean():
    x = [object() for _ in range(3)]


def test_not_repeatable():
    # Passes once, fails when run again: not checkable, never a failure.
    assert len(_once) == 0
    _once.append(1)


_once = []


@pytest.mark.refhound(iterations="many")
def test_bad_marker():
    pass
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "test_proj.py").write_text(PROJECT)
    return tmp_path


def test_ini_options_and_warn_mode(project):
    (project / "pytest.ini").write_text(
        "[pytest]\nrefhound = true\nrefhound_warn = true\nrefhound_iterations = 20\n"
        "refhound_calls = 10\n")
    proc = run_pytest(["-q", "-k", "not bad_marker", "--refhound-json", "out.json"],
                      cwd=str(project))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "RefhoundLeakWarning" in proc.stdout
    assert "leaking tests (warnings only: --refhound-warn)" in proc.stdout
    results = _outcomes(json.loads((project / "out.json").read_text()))
    assert results["test_proj.py::test_leaks"]["pytest"]["outcome"] == "leak"
    assert results["test_proj.py::test_leaks"]["calls_per_iteration"] == 10
    assert results["test_proj.py::test_clean"]["pytest"]["outcome"] == "clean"
    assert results["test_proj.py::test_leaks"]["pytest"]["settings"]["iterations"] == 20
    unchecked = results["test_proj.py::test_not_repeatable"]["pytest"]
    assert unchecked["outcome"] == "unchecked" and "failed when run again" in unchecked["reason"]


def test_bad_marker_fails_the_test(project):
    proc = run_pytest(["-q", "--refhound", "-k", "bad_marker"], cwd=str(project))
    assert proc.returncode == 1
    assert "bad @pytest.mark.refhound: iterations='many' is not a whole number" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--refhound-iterations", "0"], "--refhound-iterations=0 must be at least 1"),
    (["--refhound-iterations", str(2**31)], "--refhound-iterations=2147483648 must be at most"),
    (["--refhound-calls", "lots"], "--refhound-calls='lots' is not a whole number or 'auto'"),
    (["--refhound-fixtures", "sometimes"], "must be one of reuse, fresh"),
    (["--refhound-min-iterations", "40"],
     "--refhound-min-iterations (40) is above --refhound-iterations (30)"),
])
def test_bad_options_are_usage_errors(project, args, message):
    proc = run_pytest(["-q", "--refhound"] + args, cwd=str(project))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_plugin_is_registered_by_entry_point():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        meta = tomllib.load(f)
    assert meta["project"]["entry-points"]["pytest11"] == {"refhound": "refhound.pytest_plugin"}


def test_marker_is_registered_without_refhound(project):
    proc = run_pytest(["--markers"], cwd=str(project))
    assert "@pytest.mark.refhound(skip=False, iterations=None" in proc.stdout


def test_plugin_autoloads_through_its_entry_point(project):
    # What an install makes of [project.entry-points.pytest11]: a dist-info
    # with entry_points.txt; pytest then loads the plugin without -p.
    # When refhound is installed (pip install -e .), its own dist-info is
    # the one on the path; a second one would register the plugin twice.
    from importlib.metadata import entry_points
    eps = entry_points()
    # 3.10+: select by group; 3.9: a dict of groups.
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", ())
    installed = any(ep.name == "refhound" for ep in group)
    dist = project / "site" / "refhound-0.0.dist-info"
    dist.mkdir(parents=True)
    if not installed:
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: refhound\nVersion: 0.0\n")
        (dist / "entry_points.txt").write_text("[pytest11]\nrefhound = refhound.pytest_plugin\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(project / "site"), engine_path(PY)])
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("PYTEST_ADDOPTS", None)
    for key in list(env):           # when this suite itself runs under xdist
        if key.startswith("PYTEST_XDIST") or key == "PYTEST_CURRENT_TEST":
            env.pop(key)
    proc = subprocess.run([PY, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-p", "no:memray", "-q", "--refhound", "-k", "test_leaks or test_clean"],
                          cwd=str(project), env=env, capture_output=True, text=True, timeout=300)
    assert "refhound leak check" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "LEAKED test_proj.py::test_leaks" in proc.stdout
    assert proc.returncode == 1


# ---------------------------------------------------------------------------
# A long run keeps no container per checked test

MANY_TESTS = '''
import pytest


@pytest.mark.parametrize("i", range(%d))
def test_n(i):
    assert i >= 0
'''

COUNT_OBJECTS = '''
import gc

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    # (before refhound's, which decodes the records for the JSON file)
    gc.collect()
    with open("objects.txt", "w") as f:
        f.write(str(len(gc.get_objects())))
'''


def _objects_at_the_end(folder, tests, refhound):
    (folder / "test_many.py").write_text(MANY_TESTS % tests)
    (folder / "conftest.py").write_text(COUNT_OBJECTS)
    (folder / "pytest.ini").write_text("[pytest]\n")
    proc = run_pytest((["--refhound", "--refhound-json", "r.json"] if refhound else []) + ["-q"],
                      cwd=str(folder))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if refhound:
        assert len(json.loads((folder / "r.json").read_text())) == tests
    return int((folder / "objects.txt").read_text())


def test_a_long_run_keeps_no_container_per_checked_test(tmp_path):
    """Every full collection of a run walks what the run keeps: the record
    of each checked test is kept as text (the JSON file and the summary
    decode it at the end), not as the dicts and lists the cyclic collector
    would walk again at every full collection of every later check (on
    multidict's 2,282 tests they were 39,000 containers, a full collection
    at the end of the run twice as slow as at its start).  Between 200 and
    800 tests, what --refhound keeps per test is what plain pytest keeps
    (its reports), give or take one object a test."""
    growth = {}
    for refhound in (False, True):
        counts = [_objects_at_the_end(tmp_path / ("%s-%d" % (refhound, n)), n, refhound)
                  for n in (200, 800) if (tmp_path / ("%s-%d" % (refhound, n))).mkdir() is None]
        growth[refhound] = (counts[1] - counts[0]) / 600.0
    assert growth[True] - growth[False] < 1.0, growth
