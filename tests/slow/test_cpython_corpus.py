"""Real reference leaks in CPython's own C code (tests/cpython_corpus): on
the interpreters of this machine, refhound finds the leak and its culprit is
the true line, read from the interpreter's DWARF with gdb
(tests/cpython_corpus/truth.py), in the interpreter.

Three runs are tests (about 20 s each): a new object leaked by a built-in
module on the pyenv build, one on Debian's LTO release build (true line from
its -dbg twin), and raw memory that tracemalloc leaks through an inlined
allocator wrapper (its caller's line is the true one); the last's twin is
the same reproducer on 3.13.0, which has the fix.  Every (case, interpreter) run of the corpus, held-out
case included, is measured by bench/culprit_accuracy.py (several minutes)."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cpython_corpus"))

import cases  # noqa: E402
import run  # noqa: E402

TESTED = [("pickle_load_build", "3.11.7"), ("getaddrinfo_audit", "debian-3.11"),
          ("tracemalloc_tracebacks", "3.11.7")]
PARAMS = [(c, tag) for c in cases.CASES for tag in c["interpreters"] if (c["name"], tag) in TESTED]


@pytest.mark.parametrize("case, tag", PARAMS, ids=["%s-%s" % (c["name"], t) for c, t in PARAMS])
def test_culprit_is_the_true_line(case, tag):
    if not os.path.exists(cases.INTERPRETERS[tag]):
        pytest.skip("%s is not installed" % tag)
    if shutil.which("gdb") is None or subprocess.run(
            ["gdb", "--version"], capture_output=True).returncode != 0:
        pytest.skip("gdb reads the true line from the DWARF, and it does not run here "
                    "(apt-get install gdb; Debian's gdb needs libdw1)")
    row = run.run_case(case, tag)
    assert row["true"], "gdb found no call of %s in %s" % (case["callees"], case["function"])
    assert row["verdict"] == "leak", (row["verdict"], row["found"])
    culprit = row["culprit"]
    assert row["exact"], (row["found"], row["true"], culprit)
    assert "in the interpreter" in culprit["reason"], culprit


FIXED = [(c, tag) for c in cases.CASES for tag in c.get("fixed_on", ())]


@pytest.mark.parametrize("case, tag", FIXED, ids=["%s-%s" % (c["name"], t) for c, t in FIXED])
def test_the_fixed_interpreter_is_clean(case, tag):
    """The twin of a case: the same reproducer on an interpreter with the
    upstream fix."""
    python = cases.INTERPRETERS[tag]
    if not os.path.exists(python):
        pytest.skip("%s is not installed" % tag)
    status, result, err = run.support.check_json(python, "leaks:" + case["name"], run.HERE)
    assert result is not None, err
    assert (status, result["verdict"], result["sites"]) == (0, "clean", []), result["notes"]


def test_the_corpus_is_described():
    assert len(PARAMS) == len(TESTED)
    for case in cases.CASES:
        assert case["tuned"] in (True, False)
        assert set(case["interpreters"]) <= set(cases.INTERPRETERS)
        if case["tuned"]:
            assert case["issue"], case["name"]
    assert sum(1 for c in cases.CASES if not c["tuned"]) >= 1
