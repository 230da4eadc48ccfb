"""Things that fill and settle are clean; leaks that skip iterations or are
tiny are still found (where CPython's "every delta >= 1" rule and a
fixed-margin loop fail)."""
import os

import pytest

from support import HERE, build_zoo_case, cbuild, check_json, interpreter

SETTLE = os.path.join(HERE, "zoo", "settle_cases.py")
KINDS = ["release", "debug"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["lru_cache_fill", "re_cache", "interning", "lazy_import",
                                  "fixed_dict"])
def test_settling_is_clean(name, kind, tmp_path):
    status, result, err = check_json(interpreter(kind), SETTLE + ":" + name, str(tmp_path))
    assert result is not None, err
    assert (status, result["verdict"]) == (0, "clean"), (result["per_call"], result["trends"])


@pytest.mark.parametrize("kind", KINDS)
def test_python_leak_contrast(kind, tmp_path):
    status, result, err = check_json(interpreter(kind), SETTLE + ":python_leak", str(tmp_path))
    assert (status, result["verdict"]) == (1, "leak"), err
    assert abs(result["per_call"]["objects"] - 1) < 0.05
    assert result["objects"][0] == {"type": "object", "count_per_call": pytest.approx(1, rel=0.05)}


def _zoo(name):
    return next(c for c in cbuild.zoo_cases() if c["name"] == name)


def test_leak_that_skips_iterations_is_found_one_call_per_iteration():
    """every_tenth with one call per iteration: nine deltas in ten are 0, so
    "every delta >= 1" never fires; the trend test does."""
    python = interpreter("release")
    case = _zoo("every_tenth")
    cwd = build_zoo_case(case, python)
    status, result, err = check_json(python, "every_tenth:leaky", cwd, "--calls", "1")
    assert (status, result["verdict"]) == (1, "leak"), (result["per_call"], result["trends"])
    assert result["calls_per_iteration"] == 1
    assert 0.05 <= result["per_call"]["objects"] <= 0.15


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
    # By default: found (few events per iteration, so the rate is rough).
    status, result, err = check_json(interpreter("release"), str(target) + ":tiny_leak",
                                     str(tmp_path))
    assert (status, result["verdict"]) == (1, "leak"), (result["per_call"], result["trends"])
    assert 0.0005 <= result["per_call"]["objects"] <= 0.002
    # With an event in every iteration the rate is exact.
    status, result, err = check_json(interpreter("release"), str(target) + ":tiny_leak",
                                     str(tmp_path), "--calls", "1000")
    assert (status, result["verdict"]) == (1, "leak"), (result["per_call"], result["trends"])
    assert result["per_call"]["objects"] == pytest.approx(0.001, rel=0.05)
