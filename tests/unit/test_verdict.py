"""The rules of a verdict (src/refhound/verdict.py) on synthetic series.

A series stands for the samples of a check: one value per iteration, the
first `warmup` of them warm-up.  The Decider is asked after every measured
iteration, as the check run asks it, until it stops.
"""
import math
import random

import pytest

from refhound import verdict as V
from refhound.options import Options


class Series:
    """The samples of a check as the Decider reads them (series, nsamples,
    warmup_samples), grown one iteration at a time."""

    def __init__(self, metrics, warmup=3):
        self.metrics = {k: list(v) for k, v in metrics.items()}
        self.total = len(next(iter(self.metrics.values())))
        self.nsamples = warmup
        self.warmup_samples = warmup

    def series(self, metric, start=0):
        values = self.metrics.get(metric)
        if values is None:
            return [0] * (self.nsamples - start)
        return values[start:self.nsamples]

    def last_delta(self, metric):
        v = self.series(metric)
        return v[-1] - v[-2] if len(v) >= 2 else 0


def run_decider(metrics, warmup=3, **options):
    """Feed the series to a Decider one measured iteration at a time ->
    (verdict, measured iterations when it stopped)."""
    opts = Options(**options)
    s = Series(metrics, warmup)
    decider = V.Decider(opts)
    while s.nsamples < s.total:
        s.nsamples += 1
        verdict, stop = decider.decide(s)
        if stop:
            return verdict, s.nsamples - warmup
    return "ran out", s.nsamples - warmup


def steady(n, per_iteration, start=1000):
    return [start + per_iteration * i for i in range(n)]


# ---------------------------------------------------------------------------
# classify: one metric over a window


def test_flat_series_is_flat():
    t = V.classify([5] * 10, 0.001)
    assert t.trend == V.FLAT and t.growth == 0 and not t.leaning


def test_steady_growth_is_growing_with_its_slope():
    t = V.classify(steady(12, 3), 0.001)
    assert t.trend == V.GROWING
    assert t.slope == pytest.approx(3.0)
    assert t.growth == 33


def test_steady_fall_is_falling():
    t = V.classify(steady(12, -2), 0.001)
    assert t.trend == V.FALLING and t.slope == pytest.approx(-2.0)


def test_growth_that_stopped_in_the_last_third_is_not_growing():
    # A cache that filled during the first two thirds of the window.
    x = [100 + min(i, 6) * 5 for i in range(12)]
    t = V.classify(x, 0.001)
    assert t.trend != V.GROWING


def test_growth_that_slowed_below_a_quarter_pace_is_not_growing():
    x = [0, 10, 20, 30, 40, 50, 60, 70, 71, 71, 72, 72]
    assert V.classify(x, 0.001).trend != V.GROWING


def test_noise_without_trend_is_noise():
    rng = random.Random(1)
    x = [1000 + rng.choice((-1, 0, 1)) for _ in range(20)]
    assert V.classify(x, 0.001).trend in (V.NOISE, V.FLAT, V.UNCLEAR)
    assert V.classify(x, 0.001).trend != V.GROWING


def test_weak_rise_is_unclear_not_growing():
    # Significant at 5 % but not at 0.1 %: leaning, not a leak yet.
    x = [0, 1, 0, 1, 2, 1, 2, 3, 2, 3]
    t = V.classify(x, 0.001)
    assert t.trend == V.UNCLEAR
    assert t.leaning


def test_one_sample_and_two_equal_samples_are_flat():
    assert V.classify([7], 0.001).trend == V.FLAT
    assert V.classify([7, 7], 0.001).trend == V.FLAT


def test_stricter_alpha_needs_more_evidence():
    x = steady(6, 1)
    assert V.classify(x, 0.05).trend == V.GROWING
    assert V.classify(x, 1e-6).trend != V.GROWING


def test_missing_optional_metric_counts_as_flat():
    t = V.classify_window([-1, -1, 5, 6, 7, 8, 9, 10], 0.001, "native_bytes")
    assert t.trend == V.FLAT and not t.leaning
    # A required metric with negative values is judged as it is.
    assert V.classify_window(steady(10, 1, start=-20), 0.001, "refs").trend == V.GROWING


# ---------------------------------------------------------------------------
# The window and the baseline


@pytest.mark.parametrize("nsamples, warmup, start, measured", [
    (4, 3, 2, 1),       # one measured iteration: the baseline and it
    (11, 3, 3, 8),      # 8 measured: baseline + 8 = 9 points, window 8
    (33, 3, 12, 30),    # 30 measured: two thirds of 31 points
    (10, 0, 2, 9),      # no warm-up: sample 0 is the baseline
])
def test_window_is_the_recent_two_thirds_at_least_eight(nsamples, warmup, start, measured):
    assert V.window_of(nsamples, warmup) == (start, measured)


# ---------------------------------------------------------------------------
# The Decider: leak, error, clean, inconclusive


def test_steady_leak_is_a_leak_after_min_iterations_and_three_in_a_row():
    verdict, measured = run_decider({"refs": steady(40, 10), "objects": steady(40, 10)})
    assert verdict == "leak"
    # Significant at alpha 0.001 from 7 points on, then three in a row.
    assert measured == 9


def test_flat_everywhere_is_clean_at_min_iterations():
    verdict, measured = run_decider({"refs": [500] * 40, "objects": [100] * 40})
    assert (verdict, measured) == ("clean", 8)


def test_cache_that_fills_during_warmup_and_settles_is_clean():
    x = [1000 + 50 * min(i, 4) for i in range(40)]
    assert run_decider({"refs": x, "objects": x})[0] == "clean"


def test_cache_that_fills_over_the_first_measured_iterations_is_clean():
    x = [1000 + 7 * min(i, 9) for i in range(60)]
    verdict, measured = run_decider({"refs": x, "blocks": x})
    assert verdict == "clean"
    assert measured > 8         # it waited for the fill to stop


def test_falling_refs_is_an_error():
    verdict, measured = run_decider({"refs": steady(40, -5)})
    assert verdict == "error" and measured == 8


def test_falling_objects_alone_is_not_an_error():
    # Objects freed call after call (a pool draining) is not an extra DECREF.
    verdict, _ = run_decider({"objects": steady(60, -3, start=5000)})
    assert verdict != "error"


def test_leak_every_tenth_iteration_is_found():
    # One call per iteration, a leak on every 10th call.
    x = [1000 + (i // 10) for i in range(200)]
    verdict, measured = run_decider({"refs": x, "objects": x}, iterations=150)
    assert verdict == "leak", measured


def test_noise_is_clean_after_twice_the_minimum():
    rng = random.Random(7)
    x = [10_000 + rng.choice((-2, -1, 0, 1, 2)) for _ in range(80)]
    verdict, measured = run_decider({"refs": x, "objects": [5] * 80})
    assert verdict == "clean"
    assert 8 < measured <= 40


def test_native_heap_noise_does_not_hold_the_check_back():
    rng = random.Random(3)
    heap = [1 << 20 | rng.randrange(4096) for _ in range(40)]
    verdict, measured = run_decider({"refs": [9] * 40, "heap_bytes": heap})
    assert (verdict, measured) == ("clean", 8)


def test_native_heap_that_grows_is_a_leak():
    heap = steady(40, 96, start=1 << 20)
    assert run_decider({"refs": [9] * 40, "heap_bytes": heap})[0] == "leak"


def test_tracked_native_blocks_that_grow_are_a_leak_and_hold_the_check_back():
    assert run_decider({"refs": [9] * 40, "native_bytes": steady(40, 96)})[0] == "leak"
    # Tracked blocks are exact, not noise: a lean keeps the check from an early "clean".
    rng = random.Random(5)
    native = [1000 + rng.choice((0, 0, 96)) * i // 10 for i in range(40)]
    verdict, measured = run_decider({"refs": [9] * 40, "native_bytes": native})
    assert measured > 8


def test_resident_memory_creep_below_the_floor_is_noise():
    creep = [50_000_000 + 4096 * (i // 5) for i in range(24)]       # a page now and then
    assert V.classify_window(creep, 0.001, "rss_bytes").trend == V.NOISE
    mapped = steady(24, 64 * 1024, start=50_000_000)                 # 64 KiB per iteration
    assert V.classify_window(mapped, 0.001, "rss_bytes").trend == V.GROWING


def test_resident_memory_alone_is_unexplained_growth():
    t = trends(rss_bytes=(V.GROWING, 65536.0, 1 << 20), blocks=(V.FLAT, 0, 0),
               native_bytes=(V.FLAT, 0, 0), heap_bytes=(V.NOISE, 1.0, 10))
    assert V.rss_unexplained(t)
    t["native_bytes"] = V.Trend(V.GROWING, 96.0, 0.0, 1.0, 960, 8)
    assert not V.rss_unexplained(t)
    assert not V.rss_unexplained(trends(rss_bytes=(V.NOISE, 0, 0)))


def test_descriptor_and_thread_growth_are_leaks():
    assert run_decider({"fds": steady(40, 1, start=5)})[0] == "leak"
    assert run_decider({"threads": steady(40, 1, start=2)})[0] == "leak"


def test_rss_alone_never_makes_a_leak():
    assert run_decider({"rss_bytes": steady(40, 4096, start=1 << 24)})[0] == "clean"


def test_weak_trend_until_the_last_iteration_is_inconclusive():
    d = V.Decider(Options(iterations=12))
    unclear = {"refs": V.Trend(V.UNCLEAR, 0.2, 0.01, 0.99, 2, 9)}
    assert d.decide_trends(unclear, 11) == ("continue", False)
    assert d.decide_trends(unclear, 12) == ("inconclusive", True)


def test_weak_series_leans_but_is_not_significant():
    x = [0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 2, 1]
    t = V.classify(x, 0.001)
    assert t.trend == V.NOISE and t.leaning       # p_up about 0.06: no early "clean"


def test_growth_still_going_at_the_last_iteration_is_a_leak():
    # Not three decisions in a row before the end, but growing at the end.
    x = [100] * 9 + steady(10, 4, start=100)
    verdict, measured = run_decider({"refs": x}, iterations=16, min_iterations=8)
    assert verdict == "leak" and measured <= 16


def test_max_samples_ends_the_check():
    opts = Options(iterations=1000)
    s = Series({"refs": [1, 2, 1, 2, 1, 3, 2, 1, 2, 1] * 3}, 3)
    decider = V.Decider(opts, max_samples=12)
    s.nsamples = 11
    verdict, stop = decider.decide(s)
    assert stop


def test_streaks_reset_when_the_growth_stops():
    d = V.Decider(Options())
    grow = {"refs": V.Trend(V.GROWING, 1.0, 0.0, 1.0, 10, 8)}
    flat = {"refs": V.Trend(window=8)}
    d.decide_trends(grow, 3)
    d.decide_trends(grow, 4)
    d.decide_trends(flat, 5)
    assert d.leak_streak == 0
    assert d.decide_trends(grow, 8) == ("continue", False)     # streak 1 of 3


@pytest.mark.parametrize("deltas, falls", [
    ([-1] * 9, True),                         # the over-release, call after call
    ([-1, -1, 0, -1, -1, -1, -1, -1], True),  # one iteration's noise
    ([-1, 0, 0, -1, 0, -1, 0, -1], False),    # half the iterations: not every call
    ([-1, -1, -1], False),                    # too few iterations to say
    ([0] * 9, False),
])
def test_still_falls_after_the_restart(deltas, falls):
    assert V.still_falls(deltas, 1) is falls


def test_a_falling_reference_count_outranks_heap_growth():
    # An over-release while the heap figure wobbles up: the error, never a
    # leak whose patience would follow the heap alone and call it settled.
    d = V.Decider(Options())
    grow = {"heap_bytes": V.Trend(V.GROWING, 64.0, 0.0, 1.0, 640, 8),
            "refs": V.Trend(window=8)}
    for n in (3, 4, 5):
        d.decide_trends(grow, n)
    both = dict(grow, refs=V.Trend(V.FALLING, -1.0, 1.0, 0.0, -10, 8))
    assert d.decide_trends(both, 8) == ("continue", False)
    assert d.decide_trends(both, 9) == ("error", True)


# ---------------------------------------------------------------------------
# Restart at one call per iteration, confirmation at another count


@pytest.mark.parametrize("delta, calls, fell", [
    (-100, 100, True), (-50, 100, True), (-49, 100, False), (-5, 1, False), (10, 100, False),
])
def test_refs_fell_is_about_one_per_call(delta, calls, fell):
    assert V.refs_fell(delta, calls) is fell


def trends(**kinds):
    return {m: V.Trend(kind, slope, 0.0 if kind == V.GROWING else 0.02, 1.0, growth, 8)
            for m, (kind, slope, growth) in kinds.items()}


def test_followed_metrics_are_those_that_made_the_verdict():
    t = trends(refs=(V.GROWING, 1.0, 8), objects=(V.FLAT, 0, 0), blocks=(V.UNCLEAR, 0.5, 4),
               heap_bytes=(V.NOISE, 3.0, 100), fds=(V.NOISE, -1.0, -2))
    assert V.followed_metrics(t, "leak") == {"refs": 1, "blocks": 1}
    assert V.followed_metrics(t, "inconclusive") == {"refs": 1, "blocks": 1}
    f = trends(refs=(V.FALLING, -2.0, -16), objects=(V.FALLING, -2.0, -16))
    assert V.followed_metrics(f, "error") == {"refs": -1}


def steps(**per_metric):
    return {m: list(v) for m, v in per_metric.items()}


@pytest.mark.parametrize("before, after, last, outcome", [
    ({"refs": 1.0}, {"refs": 0.97}, {"refs": 1.0}, "persists"),   # a leak keeps its rate
    ({"refs": 1.0}, {"refs": 0.6}, {"refs": 0.6}, "persists"),
    ({"refs": 1.0}, {"refs": 0.001}, {"refs": 0.0}, "settled"),   # a cache that filled
    ({"refs": 1.0}, {"refs": 0.75}, {"refs": 0.0}, "settled"),    # ... in the middle of it
    ({"refs": 1.0}, {"refs": -0.3}, {"refs": -0.5}, "settled"),   # turned back (aliasing)
    ({"refs": 1.0}, {"refs": 0.3}, {"refs": 0.3}, "slowing"),     # still filling: wait
    ({"refs": 1.0}, {"refs": 1.0}, {"refs": 0.3}, "slowing"),
])
def test_patience_outcome(before, after, last, outcome):
    followed = {m: 1 for m in before}
    st = {m: [after[m]] * 3 + [last[m]] for m in before}
    assert V.patience_outcome(followed, before, after, st) == outcome


def test_patience_outcome_any_metric_that_persists_decides():
    followed = {"refs": 1, "blocks": 1}
    before = {"refs": 1.0, "blocks": 2.0}
    after = {"refs": 0.0, "blocks": 1.9}
    assert V.patience_outcome(followed, before, after,
                              steps(refs=[0, 0, 0, 0], blocks=[2, 2, 2, 2])) == "persists"
    after = {"refs": 0.0, "blocks": 0.5}
    assert V.patience_outcome(followed, before, after,
                              steps(refs=[0, 0, 0, 0], blocks=[1, 0.5, 0.5, 0.5])) == "slowing"


def test_patience_outcome_of_a_fall():
    assert V.patience_outcome({"refs": -1}, {"refs": -1.0}, {"refs": -0.9},
                              steps(refs=[-1, -1, -1, -0.9])) == "persists"
    assert V.patience_outcome({"refs": -1}, {"refs": -0.02}, {"refs": 0.0},
                              steps(refs=[0.01, -0.01, 0, 0])) == "settled"


def test_patience_outcome_without_a_pace_seen_before():
    # Sparse events: no net growth in the measured window, a steady one at
    # the patience count.
    assert V.patience_outcome({"objects": 1}, {"objects": 0.0}, {"objects": 0.1},
                              steps(objects=[0.1, 0.1, 0.1, 0.1])) == "persists"
    assert V.patience_outcome({"objects": 1}, {"objects": 0.0}, {"objects": 0.0},
                              steps(objects=[0.1, 0.0, -0.1, 0.0])) == "settled"
    # A noisy metric never persists on signs alone.
    assert V.patience_outcome({"heap_bytes": 1}, {"heap_bytes": 0.0},
                              {"heap_bytes": 3.0},
                              steps(heap_bytes=[3, 3, 3, 3])) == "slowing"


def test_patience_stage_is_ten_times_the_calls_seen_and_at_least_the_floor():
    assert V.patience_stage(9000, None, 5e-6, 0.01, 10.0) == (25000, 100_000)
    assert V.patience_stage(20_000, None, 1e-6, 0.01, 10.0) == (50_000, 200_000)


def test_bare_references_need_no_floor():
    """References that grow with no storage growing to hold them fill no
    cache: ten times the calls seen is the horizon, not the 100,000-call
    floor (900 calls seen at 25 us a call: 9,000 calls, not 40,000)."""
    assert V.bare_references({"refs": 1}, "leak")
    assert not V.bare_references({"refs": 1, "objects": 1}, "leak")
    assert not V.bare_references({"refs": 1, "bytes": 1}, "leak")
    assert not V.bare_references({"refs": -1}, "error")
    assert not V.bare_references({"refs": 1}, "inconclusive")
    assert V.patience_stage(900, None, 25e-6, 0.01, 5.0, floor=False) == (2250, 9000)
    assert V.patience_stage(900, None, 25e-6, 0.01, 5.0) == (10000, 40000)


def test_a_stage_that_ran_far_faster_than_planned_is_planned_again():
    """Planned from a fill's calls (1.2 ms each: a module imported per
    call), a stage of 900 calls that ran at 6 us a call fell far short of
    the least horizon at its pace: planned again.  Not when the calls ran
    at the planned pace, when the stage already reached the floor, or when
    the pace is unknown (a loop's bodies)."""
    assert V.patience_replan(1.2e-3, 6e-6, 900)
    assert not V.patience_replan(1.2e-3, 1.0e-3, 900)
    assert not V.patience_replan(1.2e-3, 6e-6, 100_000)
    assert not V.patience_replan(1.2e-3, None, 900)
    calls, horizon = V.patience_stage(90, None, 6e-6, 0.01, 5.0)
    assert horizon == 100_000


def test_patience_stage_fits_the_budget_or_gives_up():
    # 1 ms a call and two seconds left: about 1,600 calls fit, over 10 x 100.
    calls, horizon = V.patience_stage(100, None, 1e-3, 0.01, 2.0)
    assert 1000 <= horizon < 2000 and calls * 4 == horizon
    assert V.patience_stage(300, None, 1e-3, 0.01, 2.0) is None     # not 10 x
    assert V.patience_stage(100, None, 1e-6, 0.0, 0.0) is None       # no time at all


def test_patience_stage_keeps_an_overreleased_object_alive():
    """The cap holds for every call of the stage, its baseline iteration's
    too (5 iterations of 500 calls)."""
    calls, horizon = V.patience_stage(12, 2500, 1e-6, 0.0, 10.0)
    assert (calls, horizon) == (500, 2000)
    assert calls * (V.PATIENCE_ITERATIONS + 1) <= 2500


def test_a_periodic_cache_settles_under_patience():
    """A cache of 51 entries emptied when full, sampled every 100 calls,
    draws a falling ramp; at the patience count the ramp is gone."""
    def rate(calls, iterations=5):
        xs = [(i * calls) % 51 for i in range(iterations)]
        slope = V.stats(xs)[0]
        return slope / calls

    before = {"objects": rate(100, 9)}
    assert before["objects"] < 0
    other, _ = V.patience_stage(900, None, 1e-6, 0.0, 10.0)
    xs = [(i * other) % 51 for i in range(5)]
    st = {"objects": [(b - a) / other for a, b in zip(xs, xs[1:])]}
    assert V.patience_outcome({"objects": -1}, before, {"objects": rate(other)}, st) == "settled"


# ---------------------------------------------------------------------------
# judge: a test's outcome under its settings


class FakeResult:
    def __init__(self, verdict, per_call=None, trends=None, incomplete=None):
        self.verdict = verdict
        self.per_call = per_call or {}
        self.trends = trends or {}
        self.incomplete = incomplete


def growing(*metrics):
    return {m: {"trend": "growing"} for m in metrics}


def test_judge_leak_names_the_growing_metrics():
    r = FakeResult("leak", {"refs": 1.0, "objects": 1.0}, growing("refs", "objects"))
    outcome, reason = V.judge(r)
    assert outcome == "leak"
    assert reason == "grows call after call: refs +1/call, objects +1/call"


def test_judge_allowance_tolerates_a_known_leak_and_not_more():
    r = FakeResult("leak", {"refs": 1.0}, growing("refs"))
    assert V.judge(r, allow={"refs": 1.0})[0] == "allowed"
    assert V.judge(r, allow={"refs": 0.5})[0] == "leak"


def test_judge_watched_metrics():
    r = FakeResult("leak", {"blocks": 2.0}, growing("blocks"))
    assert V.judge(r, metrics=("refs",))[0] == "ignored"
    e = FakeResult("error", {"refs": -1.0})
    assert V.judge(e, metrics=("blocks",))[0] == "ignored"
    assert V.judge(e)[0] == "error"


def test_judge_native_drift_below_a_byte_is_clean():
    r = FakeResult("leak", {"native_bytes": 0.4}, growing("native_bytes"))
    outcome, reason = V.judge(r)
    assert outcome == "clean" and "below one byte" in reason
    r = FakeResult("leak", {"native_bytes": 96.0}, growing("native_bytes"))
    assert V.judge(r)[0] == "leak"


def test_judge_native_blocks_and_heap_below_a_byte_is_clean():
    # one 32-byte block every hundred calls: 0.01 blocks, 0.32 bytes per call
    r = FakeResult("leak", {"native_blocks": 0.01, "native_bytes": 0.32, "heap_bytes": 0.5},
                   growing("native_blocks", "native_bytes", "heap_bytes"))
    outcome, reason = V.judge(r)
    assert outcome == "clean" and "below one byte" in reason
    r = FakeResult("leak", {"native_blocks": 1.0, "native_bytes": 96.0, "heap_bytes": 112.0},
                   growing("native_blocks", "native_bytes", "heap_bytes"))
    assert V.judge(r)[0] == "leak"
    # the heap alone, as before native tracking
    r = FakeResult("leak", {"heap_bytes": 0.4}, growing("heap_bytes"))
    assert V.judge(r)[0] == "clean"


def test_judge_trend_that_adds_up_to_nothing_is_clean():
    r = FakeResult("leak", {"refs": 0.0}, growing("refs"))
    outcome, reason = V.judge(r)
    assert outcome == "clean" and "adds up to no growth" in reason


def test_judge_inconclusive_is_a_leak_only_when_strict():
    r = FakeResult("inconclusive", incomplete="tracking stopped")
    assert V.judge(r) == ("inconclusive", "tracking stopped")
    assert V.judge(r, strict=True)[0] == "leak"


def test_fixture_explains_a_leak_only_when_it_grows_as_fast():
    test = FakeResult("leak", {"refs": 2.0}, growing("refs"))
    assert V.explained_by_fixture(test, FakeResult("leak", {"refs": 2.0}, growing("refs")))
    assert not V.explained_by_fixture(test, FakeResult("leak", {"refs": 1.0}, growing("refs")))
    assert not V.explained_by_fixture(test, FakeResult("clean"))
    assert not V.explained_by_fixture(test, None)


def test_an_allowance_covers_the_resident_memory_that_grows_with_it():
    r = FakeResult("leak", {"blocks": 1.0, "rss_bytes": 9000.0}, growing("blocks", "rss_bytes"))
    assert V.judge(r, allow={"blocks": 1})[0] == "allowed"
    assert V.judge(r, allow={"blocks": 0.5})[0] == "leak"


def test_fixture_explains_a_leak_whatever_resident_memory_did():
    test = FakeResult("leak", {"blocks": 1.0, "bytes": 256.0, "rss_bytes": 4096.0},
                      growing("blocks", "bytes", "rss_bytes"))
    fixture = FakeResult("leak", {"blocks": 1.0, "bytes": 256.0, "rss_bytes": 12.0},
                         growing("blocks", "bytes"))
    assert V.explained_by_fixture(test, fixture)
    alone = FakeResult("leak", {"rss_bytes": 4096.0}, growing("rss_bytes"))
    assert not V.explained_by_fixture(alone, fixture)


def test_fixture_explains_an_inconclusive_run_when_it_leaks():
    fixture = FakeResult("leak", {"blocks": 1.0}, growing("blocks"))
    unsettled = FakeResult("inconclusive", {"blocks": 0.9}, {"blocks": {"trend": "unclear"}})
    assert V.explained_by_fixture(unsettled, fixture)
    assert V.explained_by_fixture(FakeResult("inconclusive"), fixture)
    assert not V.explained_by_fixture(FakeResult("inconclusive"), FakeResult("clean"))
    faster = FakeResult("inconclusive", {"refs": 3.0}, {"refs": {"trend": "unclear"}})
    assert not V.explained_by_fixture(faster, FakeResult("leak", {"refs": 1.0}, growing("refs")))


# ---------------------------------------------------------------------------
# The statistics themselves (pure C, refhound._core.trend)


def mann_kendall_p_up(x):
    n = len(x)
    s = sum((x[j] > x[i]) - (x[j] < x[i]) for i in range(n) for j in range(i + 1, n))
    groups = {}
    for v in x:
        groups[v] = groups.get(v, 0) + 1
    ties = sum(t * (t - 1) * (2 * t + 5) for t in groups.values())
    var = (n * (n - 1) * (2 * n + 5) - ties) / 18
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0
    return 0.5 * math.erfc(z / math.sqrt(2))


@pytest.mark.parametrize("seed", range(5))
def test_stats_agree_with_an_independent_mann_kendall_and_theil_sen(seed):
    rng = random.Random(seed)
    x = [rng.randrange(5) + i // 3 for i in range(15)]
    slope, p_up, p_down = V.stats(x)
    pairs = sorted((x[j] - x[i]) / (j - i) for i in range(len(x)) for j in range(i + 1, len(x)))
    m = len(pairs)
    median = pairs[m // 2] if m % 2 else 0.5 * (pairs[m // 2 - 1] + pairs[m // 2])
    assert slope == pytest.approx(median)
    assert p_up == pytest.approx(mann_kendall_p_up(x), rel=1e-9)
    assert p_up + p_down == pytest.approx(1.0, abs=0.2)


def test_all_trends_covers_every_metric_of_the_samples():
    samples = [{"t": i * 0.1, "epoch": i, "refs": 100 + i, "objects": 50, "rss_bytes": -1}
               for i in range(12)]
    trends = V.all_trends(samples, 3, 0.001)
    assert set(trends) == {"refs", "objects", "rss_bytes"}
    assert trends["refs"]["trend"] == "growing"
    assert trends["objects"]["trend"] == "flat"
    assert trends["rss_bytes"]["trend"] == "flat"


def test_survivors_kept_tells_accumulation_from_turnover():
    # A leak of 100 blocks per iteration: every old epoch still holds its 100.
    assert V.survivors_kept([100, 100, 99, 100, 100], 100)
    # A cache that evicts its oldest entries: the old epochs are empty.
    assert not V.survivors_kept([0, 0, 0, 3, 100], 100)
    assert V.survivors_kept([], 100) and V.survivors_kept([0, 0], 0)


def test_turnover_of_blocks_does_not_persist_but_refs_still_can():
    followed = {"blocks": 1, "refs": 1}
    before = {"blocks": 1.0, "refs": 1.0}
    st = steps(blocks=[1, 1, 1, 1], refs=[0, 0, 0, 0])
    assert V.patience_outcome(followed, before, {"blocks": 1.0, "refs": 0.0}, st,
                              survivors_ok=False) == "slowing"
    st = steps(blocks=[1, 1, 1, 1], refs=[1, 1, 1, 1])
    assert V.patience_outcome(followed, before, {"blocks": 1.0, "refs": 1.0}, st,
                              survivors_ok=False) == "persists"


def test_patience_floor_is_bounded_in_time_for_slow_calls():
    # A 200 us test body: the floor is the calls of one second, not 100,000.
    calls, horizon = V.patience_stage(90, None, 200e-6, 0.01, 5.0)
    assert horizon == 5000 and calls == 1250
    # Ten times the calls seen still rules when it is more.
    assert V.patience_stage(900, None, 200e-6, 0.01, 5.0)[1] == 9000


def test_memory_that_shrinks_does_not_hold_a_clean_verdict_back():
    # Blocks leaning down (a cache evicting, free lists trimmed) are no leak:
    # clean at twice the minimum; the same lean upwards keeps the check going.
    d = V.Decider(Options(min_iterations=8, iterations=60))
    down = {"blocks": V.Trend(V.NOISE, -0.3, 0.99, 0.02, -5, 12),
            "refs": V.Trend(window=12)}
    assert d.decide_trends(down, 16) == ("clean", True)
    up = {"blocks": V.Trend(V.NOISE, 0.3, 0.02, 0.99, 5, 12), "refs": V.Trend(window=12)}
    assert d.decide_trends(up, 16) == ("continue", False)
    # The reference count's fall still holds it back (a possible over-release).
    refs_down = {"refs": V.Trend(V.NOISE, -0.3, 0.99, 0.02, -5, 12)}
    assert d.decide_trends(refs_down, 16) == ("continue", False)


# ---------------------------------------------------------------------------
# Patience: a leak that a fill hid, and caches that only look steady


def test_a_leak_under_a_fill_persists_at_its_own_pace():
    """Seen while a cache filled (11 refs a call: 10 for the fill, 1 leaked),
    then 1 a call in every iteration of a stage 780 times as long: the leak
    goes on, however slower than first seen (its growth, 780 refs for every
    11 seen, is far past five times that)."""
    followed = {"refs": 1, "objects": 1}
    before = {"refs": 11.0, "objects": 2.0}
    after = {"refs": 1.0, "objects": 0.002}
    st = steps(refs=[1.0, 1.0, 1.0, 1.0], objects=[0.003, 0.002, 0.001, 0.002])
    assert V.patience_outcome(followed, before, after, st, reach=780) == "persists"
    # A tenth of the first rate, steady: never "settled", whatever the reach.
    assert V.patience_outcome(followed, before, after, st, reach=30) == "slowing"


def test_a_steady_pace_is_watched_longer_against_itself():
    followed = {"refs": 1}
    before = {"refs": 11.0}
    st = steps(refs=[1.0, 1.0, 1.0, 1.0])
    assert V.patience_outcome(followed, before, {"refs": 1.0}, st, reach=30) == "slowing"
    rebased = V.rebased(followed, before, {"refs": 1.0}, st, 30)
    assert rebased == {"refs": 1.0}
    # The next stage keeps the pace: a leak; a cache that was filling slows.
    assert V.patience_outcome(followed, rebased, {"refs": 0.98},
                              steps(refs=[1, 1, 0.97, 0.98]), reach=11) == "persists"
    assert V.patience_outcome(followed, rebased, {"refs": 0.05},
                              steps(refs=[0.1, 0.05, 0.0, 0.0]), reach=11) == "settled"
    # Growth that slowed within the stage is held against the first rate.
    slowing = steps(refs=[4.0, 2.0, 1.0, 0.5])
    assert V.rebased(followed, before, {"refs": 1.5}, slowing, 30) == before


def test_a_periodic_cache_that_draws_a_steady_ramp_settles():
    """A cache of 51 entries emptied when full: at 25,000 calls an iteration
    it moves by +10 entries a sample (25,000 = 490 x 51 + 10), a steady ramp
    that adds no more than the cache holds; at 11 times the calls, +8."""
    def stage(calls, samples=5, start=0):
        xs = [((start + i) * calls) % 51 for i in range(samples)]
        per = [(b - a) / calls for a, b in zip(xs, xs[1:])]
        return V.stats(xs)[0] / calls, per

    followed = {"objects": 1}
    # Seen rising 10 entries in 10 calls for 9 iterations: 1 a call.
    before = {"objects": 1.0}
    r1, st1 = stage(25_000)
    assert all(d > 0 for d in st1)
    assert V.patience_outcome(followed, before, {"objects": r1}, {"objects": st1},
                              reach=100_000 / 90) == "settled"
    # Seen rising 2 entries in 100 calls: the ramp at 25,000 adds a little
    # more than twice that, so it is watched once more, against itself.
    before = {"objects": 0.02}
    reach = 100_000 / 900
    assert V.patience_outcome(followed, before, {"objects": r1}, {"objects": st1},
                              reach=reach) == "slowing"
    before = V.rebased(followed, before, {"objects": r1}, {"objects": st1}, reach)
    assert before == {"objects": r1}
    r2, st2 = stage(275_000)
    assert all(d > 0 for d in st2)
    assert V.patience_outcome(followed, before, {"objects": r2}, {"objects": st2},
                              reach=1_100_000 / 100_900) == "settled"


# ---------------------------------------------------------------------------
# heap_only_drift: the malloc heap alone grows, below a chunk per call


def _heap_session(heap, native):
    s = Series({"heap_bytes": heap, "native_blocks": native}, warmup=3)
    s.nsamples = len(heap)
    return s


def test_heap_alone_below_a_chunk_per_call_is_drift():
    # the shape measured on markupsafe's re-import: +14 bytes per call
    heap = [1000 + 14 * i for i in range(12)]
    s = _heap_session(heap, [7] * len(heap))
    assert V.heap_only_drift(s, {"heap_bytes": 1}, 3, 1) == pytest.approx(14)
    # the same growth per sample at ten calls per sample
    assert V.heap_only_drift(s, {"heap_bytes": 1}, 3, 10) == pytest.approx(1.4)


def test_heap_drift_with_resident_memory_below_a_page_per_call():
    # markupsafe's re-import, one run in five: resident memory followed too,
    # +158 bytes per call beside the heap's +9
    heap = [1000 + 9 * i for i in range(12)]
    s = _heap_session(heap, [7] * len(heap))
    s.metrics["rss_bytes"] = [50_000_000 + 158 * i for i in range(12)]
    followed = {"heap_bytes": 1, "rss_bytes": 1}
    assert V.heap_only_drift(s, followed, 3, 1) == pytest.approx(9)
    s.metrics["rss_bytes"] = [50_000_000 + 4096 * i for i in range(12)]
    assert V.heap_only_drift(s, followed, 3, 1) is None
    assert V.heap_only_drift(s, {"rss_bytes": 1}, 3, 1) is None


@pytest.mark.parametrize("followed, heap, native, calls", [
    ({"heap_bytes": 1, "blocks": 1}, [0, 10, 20], [7, 7, 7], 1),      # a counted figure too
    ({"heap_bytes": 1}, [0, 10, 20], [7, 7, 8], 1),                   # a native block grew
    ({"heap_bytes": 1}, [0, 10, 20], [-1, -1, -1], 1),                # native not tracked
    ({"heap_bytes": 1}, [0, 32, 64], [7, 7, 7], 1),                   # a chunk per call
    ({"heap_bytes": 1}, [0, 320, 640], [7, 7, 7], 10),                # ... at ten calls per sample
])
def test_heap_drift_needs_the_heap_alone_tracked_natives_and_less_than_a_chunk(
        followed, heap, native, calls):
    s = _heap_session([1000] * 3 + heap, [7] * 3 + native)
    assert V.heap_only_drift(s, followed, 3, calls) is None


@pytest.mark.parametrize("lost, per_iteration, proven", [
    ([100, 100, 100, 100, 99], 100, True),      # every block of the calls lost
    ([0, 90, 92, 95, 0], 100, True),            # first and last iterations not judged
    ([100, 100, 40, 100, 100], 100, True),      # stale words name some now and then
    ([100, 85, 80, 88, 100], 100, True),
    ([100, 75, 70, 78, 100], 100, False),       # the median iteration under 80%
    ([10, 10, 8, 9, 9, 10, 10], 11, True),      # stale words (msgpack, one call an iteration)
    ([5, 1, 1, 1, 5], 2, False),                # one an iteration lost, one kept: the floor
    ([100, 100, 0, 100, 100], 100, False),      # an iteration with none lost
    ([1, 1, 1, 1, 1], 1, False),                # one an iteration: patience decides
    ([3, 3, 3], 3, False),                      # one judged iteration is too few
    ([9, 9, 9, 9, 9], 9, True),
    ([0, 0, 0, 0, 0], 0, False),
])
def test_growth_lost(lost, per_iteration, proven):
    assert V.growth_lost(lost, per_iteration) is proven


def test_references_move_only_when_the_reference_count_is_not_flat():
    class T:
        def __init__(self, trend):
            self.trend = trend
    assert V.references_move({"refs": T(V.GROWING)})
    assert V.references_move({"refs": T(V.FALLING)})
    assert V.references_move({"refs": T(V.UNCLEAR)})
    assert not V.references_move({"refs": T(V.FLAT), "blocks": T(V.GROWING)})
    assert V.references_move({})


def test_others_settled_holds_back_a_leak_whose_other_figures_still_lean():
    # A native leak (measured on 3.13: the zoo's native_thread) while the
    # reference count drifts down as the interpreter settles: reported
    # without patience, its rates would carry that drift.
    native = {"native_blocks": V.Trend(V.GROWING, 10.0, 0.0, 1.0, 80, 8),
              "native_bytes": V.Trend(V.GROWING, 960.0, 0.0, 1.0, 7680, 8),
              "heap_bytes": V.Trend(V.GROWING, 1120.0, 0.0, 1.0, 8960, 8),
              "rss_bytes": V.Trend(V.UNCLEAR, 30720.0, 0.006, 0.99, 245760, 8),
              "objects": V.Trend(window=8)}
    followed = V.followed_metrics(native, "leak")
    quiet = dict(native, refs=V.Trend(V.NOISE, 0.1, 0.4, 0.6, 1, 8))
    drifting = dict(native, refs=V.Trend(V.UNCLEAR, -0.83, 0.99, 0.006, -6, 8))
    assert V.others_settled(quiet, followed)            # rss_bytes is noisy anyway
    assert not V.others_settled(drifting, followed)
    assert V.others_settled(dict(drifting, refs=V.Trend(V.UNCLEAR, 0.2, 0.01, 0.99, 2, 8)),
                            dict(followed, refs=1))     # a followed metric may lean


def _screen(native, heap, blocks=(0, 2, 2, 2, 2, 2, 2, 2, 2, 0)):
    """A fast body's screen figures (warm, 8 epochs of 25 calls, tail)."""
    return {"refs": (100, 100), "objects": (50, 50), "fds": (3, 3), "threads": (1, 1),
            "native_bytes": native, "blocks": list(blocks), "heap_bytes": list(heap),
            "calls": 25, "epochs": 8, "tail": 1}


def test_heap_growth_the_surviving_blocks_take_is_explained_by_them():
    """Two 64-byte raw blocks survive each epoch: malloc's heap grows by
    their chunks (80 bytes each) beyond the slack, which the survivors
    account for (at most 88 each: bytes and a chunk header).  A batch's
    screen then takes nothing else to have moved (and names the tests that
    made the blocks); a test's own screen still reports the heap's move
    (its rounds after blocks alone would cost a slow body two calls each)."""
    heap = [0] + [2 * 88] * 8 + [0]
    grown = 8 * 2 * 80 + int(V.SCREEN_NATIVE_SLACK * 201)
    screen = _screen((10_000, 10_000 + grown), heap)
    assert V.screen_survivors_heap(screen) == 8 * 2 * 88
    assert V.survivors_explain_moves(screen)
    outcome, reason = V.screen_outcome(screen)
    assert (outcome, reason) == ("suspect", "blocks survive calls (2, 2, 2, 2, 2, 2 per epoch); "
                                 "native_bytes %+d" % grown)


def test_heap_growth_beyond_the_surviving_blocks_is_not_explained():
    """The twin: the same survivors, but the heap grew by 4,000 bytes more
    than they take (malloc that nothing tracks) and more than the slack
    (16 bytes a call).  Surviving blocks in pymalloc's arenas (heap_bytes
    0) account for none of it; nor do blocks when references moved too."""
    heap = [0] + [2 * 88] * 8 + [0]
    grown = 8 * 2 * 88 + int(V.SCREEN_NATIVE_SLACK * 201) + 4000
    assert not V.survivors_explain_moves(_screen((10_000, 10_000 + grown), heap))
    small = 8 * 2 * 80 + int(V.SCREEN_NATIVE_SLACK * 201)
    assert not V.survivors_explain_moves(_screen((10_000, 10_000 + small), [0] * 10))
    moved = dict(_screen((10_000, 10_000 + small), heap), refs=(100, 101))
    assert not V.survivors_explain_moves(moved)
    assert V.survivors_explain_moves(_screen((10_000, 10_000), [0] * 10))


def test_memory_moves_tells_a_reference_leak_from_one_of_blocks():
    """A leak of references alone (every figure of memory flat or noise)
    gives the attribution nothing to find; one whose blocks grow, or whose
    heap figure leans, does."""
    refs_only = {"refs": V.Trend(V.GROWING, 1.0, 0.0, 1.0, 100, 8),
                 "blocks": V.Trend(V.FLAT, 0.0, 0.0, 1.0, 0, 8),
                 "bytes": V.Trend(V.FLAT, 0.0, 0.0, 1.0, 0, 8),
                 "heap_bytes": V.Trend(V.NOISE, 3.0, 0.0, 1.0, 300, 8)}
    assert not V.memory_moves(refs_only)
    assert V.memory_moves(dict(refs_only, blocks=V.Trend(V.GROWING, 1.0, 0.0, 1.0, 100, 8)))
    assert V.memory_moves(dict(refs_only, heap_bytes=V.Trend(V.UNCLEAR, 3.0, 0.0, 0.07, 300, 8)))


@pytest.mark.parametrize("gained, held, rate, calls, proven", [
    (440, 35, 1.0, 400, True),      # an extra Py_INCREF, the stage's own bookkeeping held
    (438, 31, 3.0, 134, True),
    (440, 420, 1.0, 400, False),    # a cache: a word a reference
    (440, 120, 1.0, 400, False),    # over a quarter held
    (150, 0, 1.0, 150, False),      # too few references to tell from stale words
    (120, 0, 1.0, 400, False),      # the growth stopped in the stage (a cache filled)
])
def test_references_unheld(gained, held, rate, calls, proven):
    assert V.references_unheld(gained, held, rate, calls) is proven


def test_unheld_calls():
    assert V.unheld_calls(1.0, 1e-5, 5.0) == 400
    assert V.unheld_calls(3.0, 1e-5, 5.0) == 134
    assert V.unheld_calls(0.0, 1e-5, 5.0) is None
    # 400 calls of 10 ms: 4 s, over a fifth of the budget
    assert V.unheld_calls(1.0, 0.01, 5.0) is None


def _slow_screen(survivors, fds=(3, 4)):
    """A slow body's first round: one judged call (warm 0, one epoch)."""
    return {"blocks": [0, survivors, 0], "refs": (100, 100), "objects": (10, 10),
            "fds": fds, "threads": (1, 1), "native_bytes": (-1, -1), "warm": 0, "calls": 1,
            "epochs": 1}


@pytest.mark.parametrize("survivors, fds, again", [
    (1, (3, 4), True),      # one survivor of one call beside a move: a second round
    (2, (3, 4), True),
    (84, (3, 4), False),    # many: a leak's pattern, the full check decides
    (1, (3, 3), True),      # only blocks: a second round, as before
])
def test_screen_again_after_one_judged_call(survivors, fds, again):
    assert V.screen_again(_slow_screen(survivors, fds), 1, 2) is again
    assert V.screen_again(_slow_screen(survivors, fds), V.SCREEN_ROUNDS, 2) is False
