"""The engine's statistics (refhound._core.trend): Mann-Kendall with the tie
correction and Theil-Sen slope, and the growing/falling/settled rule built on
them (refhound.verdict.classify), checked against an independent pure-Python
computation written here from the textbook definitions (Mann 1945, Kendall
1975; Sen 1968)."""
import faulthandler
import math
import random
import statistics

import pytest

from refhound import _core, verdict

NORMAL = statistics.NormalDist()


def upper_tail(z):
    """P(Z > z) for a standard normal Z, accurate far into the tail."""
    return 0.5 * math.erfc(z / math.sqrt(2))
ALPHA = 0.001
UNCLEAR = [0, 2, 1, 3, 2, 4, 3, 5]     # p_up ~ 0.008: below 0.05, above alpha


def mann_kendall(x):
    """(S, variance with ties, p_up, p_down) for series x."""
    n = len(x)
    s = sum((x[j] > x[i]) - (x[j] < x[i]) for i in range(n) for j in range(i + 1, n))
    groups = {}
    for v in x:
        groups[v] = groups.get(v, 0) + 1
    ties = sum(t * (t - 1) * (2 * t + 5) for t in groups.values())
    var = (n * (n - 1) * (2 * n + 5) - ties) / 18
    if n < 3 or var <= 0:
        return s, var, 1.0, 1.0
    z = 0.0 if s == 0 else (s - math.copysign(1, s)) / math.sqrt(var)  # continuity correction
    return s, var, upper_tail(z), upper_tail(-z)


def theil_sen(x):
    n = len(x)
    if n < 2:
        return 0.0
    return statistics.median((x[j] - x[i]) / (j - i) for i in range(n) for j in range(i + 1, n))


def classify(x, alpha=ALPHA):
    """The documented rule: significant, sloped, and still moving in the
    last third of the window at a quarter of the overall pace."""
    n = len(x)
    if n < 2 or len(set(x)) == 1:
        return "flat"
    _, _, p_up, p_down = mann_kendall(x)
    slope = theil_sen(x)
    third = max(n // 3, 1)
    recent = x[-1] - x[-1 - third]
    pace = 0.25 * slope * third
    if p_up < alpha and slope > 0 and recent > 0 and recent >= pace:
        return "growing"
    if p_down < alpha and slope < 0 and recent < 0 and recent <= pace:
        return "falling"
    if (p_up < 0.05 and recent > 0) or (p_down < 0.05 and recent < 0):
        return "unclear"
    return "noise"


def agree(x, alpha=ALPHA):
    got = _core.trend(x)
    _, _, p_up, p_down = mann_kendall(x)
    assert got["p_up"] == pytest.approx(p_up, rel=1e-9, abs=1e-300), x
    assert got["p_down"] == pytest.approx(p_down, rel=1e-9, abs=1e-300), x
    assert got["slope"] == pytest.approx(theil_sen(x), rel=1e-12, abs=1e-12), x
    return got


# ---- the statistics, series with known answers ------------------------------------------

def test_the_independent_computation_itself():
    # S and its variance by hand for 1..5 (no ties): S = 10, var = 5*4*15/18
    s, var, p_up, p_down = mann_kendall([1, 2, 3, 4, 5])
    assert (s, var) == (10, pytest.approx(50 / 3))
    assert p_up == pytest.approx(1 - NORMAL.cdf(9 / math.sqrt(50 / 3)))
    assert p_up + p_down == pytest.approx(1.0)
    # ties: 1,1,2 -> S = 2, var = (3*2*11 - 2*1*9)/18 = 48/18
    assert mann_kendall([1, 1, 2])[:2] == (2, pytest.approx(48 / 18))
    assert theil_sen([0, 10, 2, 3]) == pytest.approx(1.0)


def test_linear_growth():
    got = agree(list(range(12)))
    assert got["slope"] == 1.0
    assert got["p_up"] == pytest.approx(NORMAL.cdf(-65 / math.sqrt(12 * 11 * 29 / 18)))
    assert got["p_up"] < 1e-4 < 0.9999 < got["p_down"]


def test_linear_fall():
    got = agree([100 - 3 * i for i in range(15)])
    assert got["slope"] == -3.0
    assert got["p_down"] < 1e-5


def test_flat_series_has_no_trend_and_p_one():
    got = _core.trend([7] * 20)
    assert (got["slope"], got["p_up"], got["p_down"]) == (0.0, 1.0, 1.0)


def test_ties_change_the_variance():
    x = [1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5]
    s, var, _, _ = mann_kendall(x)
    no_ties = 12 * 11 * 29 / 18
    assert var < no_ties
    got = agree(x)
    # the p-value with the tie correction, not without it
    z_without = (s - 1) / math.sqrt(no_ties)
    assert got["p_up"] != pytest.approx(NORMAL.cdf(-z_without), rel=1e-3)


def test_theil_sen_ignores_an_outlier():
    x = [float(i) for i in range(20)]
    x[10] = 1000.0
    got = agree(x)
    assert got["slope"] == pytest.approx(1.0)


def test_a_step_has_the_median_slope_of_its_pairs():
    x = [0] * 10 + [5] * 10
    got = agree(x)
    # 100 of the 190 pairs straddle the step: the median is one of their slopes
    assert 0 < got["slope"] < 5 / 10


@pytest.mark.parametrize("seed", range(6))
def test_white_noise(seed):
    rng = random.Random(seed)
    x = [rng.gauss(1000, 5) for _ in range(30)]
    got = agree(x)
    assert got["p_up"] > ALPHA and got["p_down"] > ALPHA


def test_random_series_agree_with_the_independent_computation():
    rng = random.Random(20240611)
    for _ in range(300):
        n = rng.randint(3, 40)
        kind = rng.choice(("ints", "floats", "trend"))
        if kind == "ints":            # counts with many ties, as the engine's samples are
            x = [rng.randint(0, 4) for _ in range(n)]
        elif kind == "floats":
            x = [rng.uniform(-1, 1) for _ in range(n)]
        else:
            x = [i * rng.choice((-2, 0.5, 3)) + rng.randint(-3, 3) for i in range(n)]
        agree(x)


def test_a_long_series():
    rng = random.Random(5)
    x = [i // 3 + rng.randint(0, 2) for i in range(300)]
    got = agree(x)
    assert got["p_up"] < 1e-30


def test_input_may_be_any_sequence_of_numbers():
    assert _core.trend(range(10)) == _core.trend([float(i) for i in range(10)])
    assert _core.trend((1, 2, 3, 4, 5, 6)) == _core.trend([1, 2, 3, 4, 5, 6])


# ---- degenerate input -------------------------------------------------------------------

@pytest.mark.parametrize("x", [[], [42]])
def test_empty_and_single_are_flat(x):
    assert _core.trend(x) == {"slope": 0.0, "p_up": 1.0, "p_down": 1.0, "s": 0.0}
    assert verdict.classify(x, ALPHA).trend == "flat"


def test_two_samples_have_a_slope_but_no_test():
    got = _core.trend([1, 4])
    assert got["slope"] == 3.0 and (got["p_up"], got["p_down"]) == (1.0, 1.0)
    assert verdict.classify([1, 4], ALPHA).trend == "noise"


@pytest.mark.parametrize("x", [
    [math.nan] * 6,
    [1.0, math.nan, 3.0, 4.0, 5.0, 6.0],
    [math.inf, 1.0, 2.0, 3.0],
    [-math.inf, math.inf, math.nan, 0.0],
])
def test_nan_and_inf_neither_hang_nor_crash(x):
    # A NaN equals nothing, not even itself: a tie count that waited for an
    # equal value never ended.  The watchdog turns a hang into a failure.
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        got = _core.trend(x)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert verdict.classify(x, ALPHA).trend not in ("growing", "falling")
    for key in ("p_up", "p_down"):
        assert math.isnan(got[key]) or 0.0 <= got[key] <= 1.0


@pytest.mark.parametrize("bad", ["abc", [1, "a"], 5, None, [[1]]])
def test_what_is_not_a_series_is_a_type_error(bad):
    with pytest.raises(TypeError):
        _core.trend(bad)


# ---- the rule: growing, falling, a cache that settles ------------------------------------

@pytest.mark.parametrize("series, trend", [
    ([5] * 12, "flat"),
    (list(range(12)), "growing"),
    (list(range(12, 0, -1)), "falling"),
    ([0, 3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6], "noise"),      # filled, then settled
    ([0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1], "noise"),
    ([i // 10 for i in range(40)], "growing"),             # a step every 10 samples
    ([i // 2 for i in range(12)], "growing"),              # every other sample
    ([min(i, 6) for i in range(12)], "noise"),             # grew, stopped half way
    ([min(i, 10) for i in range(12)], "growing"),          # still moving in the last third
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5], "noise"),      # one late jump
    (UNCLEAR, "unclear"),                                  # a trend, not significant yet
])
def test_trend_classification(series, trend):
    assert verdict.classify(series, ALPHA).trend == classify(series) == trend


def test_alpha_decides_what_is_significant():
    x = UNCLEAR
    _, _, p_up, _ = mann_kendall(x)
    assert 0.001 < p_up < 0.01
    assert verdict.classify(x, ALPHA).trend == "unclear"
    assert verdict.classify(x, 0.01).trend == "growing"


def test_the_rule_on_random_series_matches_its_description():
    rng = random.Random(99)
    seen = set()
    for _ in range(400):
        n = rng.randint(3, 30)
        start = rng.randint(0, n)
        rate = rng.choice((0, 1, 2, -1))
        x = [max(i - start, 0) * rate + rng.randint(0, 2) for i in range(n)]
        got = verdict.classify(x, ALPHA).trend
        assert got == classify(x), x
        seen.add(got)
    assert seen == {"flat", "noise", "unclear", "growing", "falling"}
