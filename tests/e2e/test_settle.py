"""Leaks that skip iterations or are tiny are found (where CPython's "every
delta >= 1" rule and a fixed-margin loop fail).  Things that fill and settle,
and their leaking twins: test_settle_corpus.py; here also the cache emptied
every 51 entries checked at 100 calls per iteration."""
import os

import pytest

from support import ROOT, build_zoo_case, cbuild, check_json, interpreter


def _zoo(name):
    return next(c for c in cbuild.zoo_cases() if c["name"] == name)


def test_leak_that_skips_iterations_is_found_one_call_per_iteration():
    """every_tenth with one call per iteration: nine deltas in ten are 0, so
    "every delta >= 1" never fires; the trend test does."""
    python = interpreter("release")
    case = _zoo("every_tenth")
    cwd = build_zoo_case(case, python)
    # With default iterations: a staircase that leans up keeps the check
    # going until it is significant (the check's own bookkeeping, steady
    # from the warm-up on, no longer hides it).
    status, result, err = check_json(python, "every_tenth:leaky", cwd, "--calls", "1")
    assert (status, result["verdict"]) == (1, "leak"), (result["per_call"], result["trends"])
    assert result["calls_per_iteration"] == 1
    assert result["per_call"]["objects"] == pytest.approx(0.1, rel=0.05)


TINY = '''
_kept = []
_n = [0]

def tiny_leak():
    """One object kept per 1000 calls: far below any fixed RSS margin."""
    _n[0] += 1
    if _n[0] % 1000 == 0:
        _kept.append(object())
    return sum(range(10))
'''


def test_tiny_leak_is_found_at_its_rate(tmp_path):
    target = tmp_path / "tiny.py"
    target.write_text(TINY)
    # Calibrated (about 100 calls per iteration, an event every tenth
    # iteration), with default iterations.
    status, result, err = check_json(interpreter("release"), str(target) + ":tiny_leak",
                                     str(tmp_path))
    assert (status, result["verdict"]) == (1, "leak"), (result["per_call"], result["trends"])
    assert 0.0005 <= result["per_call"]["objects"] <= 0.002
    # With an event in every iteration the rate is exact.
    status, result, err = check_json(interpreter("release"), str(target) + ":tiny_leak",
                                     str(tmp_path), "--calls", "1000")
    assert (status, result["verdict"]) == (1, "leak"), (result["per_call"], result["trends"])
    assert result["per_call"]["objects"] == pytest.approx(0.001, rel=0.05)


@pytest.mark.parametrize("name, verdict, refs", [("hand_cache_51", "clean", 0.0),
                                                 ("hand_cache_51_leak", "leak", 2.0)])
def test_a_cache_emptied_every_51_entries_at_100_calls_per_iteration(name, verdict, refs):
    """Sampled every 100 calls, a cache emptied every 51 entries draws a
    sawtooth that once read as a fall (an `error`): patience watches it over
    ten times the calls and it settles; its twin, which keeps two objects a
    call besides, is a leak at that rate."""
    cwd = os.path.join(ROOT, "tests", "settle")
    status, result, err = check_json(interpreter("release"), "func_caches.py:" + name, cwd,
                                     "--calls", "100")
    assert (status, result["verdict"]) == ({"clean": 0, "leak": 1}[verdict], verdict), \
        (result["per_call"], result["notes"])
    assert result["calls_per_iteration"] == 100
    assert result["per_call"]["refs"] == pytest.approx(refs, abs=0.05)
