"""The settle corpus (tests/settle): with default options, every callable
that fills a cache and settles is clean, and every leaking twin of the same
shape is a leak at its true rate, on the release interpreter and on
Debian's debug build.  (3.12 and 3.13: tests/slow/test_settle_versions.py.)
"""
import os
import sys

import pytest

from support import HERE, cbuild, check_json, interpreter

sys.path.insert(0, os.path.join(HERE, "settle"))
import corpus  # noqa: E402

CASES = [(pair, func) for pair in corpus.pairs() for func in (pair.settle, pair.twin)]
IDS = ["%s:%s" % (pair.file[:-3], func.__name__) for pair, func in CASES]


def check_case(python, pair, func, cwd):
    """Run ``refhound check`` on one corpus callable with default options and
    fail with what is wrong unless the verdict (and a twin's rate) is the
    truth."""
    reason = corpus.unmet_requirement(python, func)
    if reason:
        pytest.skip(reason)
    version = tuple(cbuild.interpreter_info(python)["version"][:2])
    status, result, err = check_json(python, pair.target(func), cwd)
    assert result is not None, err
    problems = corpus.verdict_problems(func, status, result, version)
    assert not problems, (problems, result["per_call"], result.get("notes"))


def test_corpus_is_large_and_paired():
    """At least 24 pairs; every settling callable has its twin, with a
    truth for each."""
    assert len(CASES) >= 48
    for pair in corpus.pairs():
        assert pair.settle.settles_after >= 1
        assert pair.twin.settles_after is None
        assert any(corpus.truth(pair.twin)[f] for f in corpus.FIELDS)


@pytest.mark.parametrize("kind", ["release", "debug"])
@pytest.mark.parametrize("pair, func", CASES, ids=IDS)
def test_settle_corpus(pair, func, kind, tmp_path):
    check_case(interpreter(kind), pair, func, str(tmp_path))
