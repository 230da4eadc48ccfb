"""The settle corpus's scoring (tests/settle/corpus.py): what counts as the
right verdict and rate for a settling callable and for a leaking twin, the
figures per interpreter version, and the held-out third."""
import os
import sys

import pytest

from unitdata import ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "settle"))
import corpus  # noqa: E402


@corpus.settles(after=10)
def fills():
    pass


@corpus.leaks(refs=3, objects=2, blocks=3 + 1 / 64, tolerance={"blocks": 0.02},
              versions={"3.12": {"refs": 2}})
def keeps():
    pass


def result(verdict, **per_call):
    return {"verdict": verdict, "per_call": per_call}


def test_a_settling_callable_must_be_clean():
    assert corpus.verdict_problems(fills, 0, result("clean"), (3, 11)) == []
    assert corpus.verdict_problems(fills, 1, result("leak"), (3, 11)) == \
        ["leak (exit 1), not clean"]
    assert corpus.verdict_problems(fills, 0, result("inconclusive"), (3, 11)) == \
        ["inconclusive (exit 0), not clean"]
    assert corpus.verdict_problems(fills, 2, None, (3, 11)) == ["no result (exit 2)"]


def test_a_twin_must_leak_at_its_rate_for_the_version():
    right = result("leak", refs=3.1, objects=2.0, blocks=3.0)
    assert corpus.verdict_problems(keeps, 1, right, (3, 11)) == []
    assert corpus.verdict_problems(keeps, 1, right, (3, 12)) == \
        ["refs 3.1 per call, truth 2"]
    assert corpus.verdict_problems(keeps, 0, result("clean"), (3, 11)) == \
        ["clean (exit 0), not leak"]
    # 5 % of the truth, or the stated tolerance where a container grows too.
    assert corpus.within(keeps, "refs", 3.14, 3) and not corpus.within(keeps, "refs", 3.2, 3)
    assert corpus.within(keeps, "blocks", 3.0, 3 + 1 / 64)
    assert corpus.within(fills, "refs", 0.05, 0) and not corpus.within(fills, "refs", 0.06, 0)


def test_the_held_out_third_names_settling_callables():
    # Every name is a settling callable of some case file (read, not imported).
    sources = ""
    for name in corpus.CASE_FILES:
        with open(os.path.join(corpus.HERE, name)) as fh:
            sources += fh.read()
    for name in corpus.HELD_OUT:
        assert "def %s():" % name in sources
    assert len(corpus.HELD_OUT) == 12
