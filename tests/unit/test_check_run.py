"""The step-driven check (src/refhound/_run.py) with the real engine, in
process: the phases a check goes through, the result it builds, and the
same check driven by a loop instead of by calls."""
import pytest

import refhound
from refhound import _core, _run
from refhound._caches import clear_caches
from refhound.options import Options

KEEP = []


def leaks_one_object():
    KEEP.append(object())


def clean():
    return [1, 2, 3]


@pytest.fixture(autouse=True)
def _empty_keep():
    yield
    del KEEP[:]


def phases_of(options, func, calls):
    """Drive a CheckRun by hand and record the phases of its steps.

    Only changes of phase are recorded: appending every step's phase to a
    list would add a reference to the phase's string per iteration, which
    the check rightly counts as a leak of whatever runs between samples."""
    started = _core.start()
    try:
        def open_session(n):
            return _core.Session(func, (), None, clear_caches, n,
                                 max_samples=_run.max_samples(options))
        run = _run.CheckRun(options, "t", open_session, can_call=False)
        changes = [["", 0]] * 8
        n = 0
        steps = run.steps(calls)
        seconds = None
        while True:
            try:
                step = steps.send(seconds)      # the time the calls took
            except StopIteration:
                break
            assert step.kind == "iterate"
            if changes[n][0] != step.phase:
                n += 1
                changes[n] = [step.phase, 0]
            changes[n][1] += 1
            seconds = run.session.iterate(step.warmup, step.snapshot)
        seen = [phase for phase, count in changes[1:n + 1] for _ in range(count)]
        return seen, run.result
    finally:
        if started:
            _core.stop()


def test_a_leak_goes_through_every_phase():
    options = Options(warmup=2, attribution=False)
    seen, result = phases_of(options, leaks_one_object, 100)
    assert result.verdict == "leak", (result.notes, result.patience)
    assert seen[:2] == ["warm-up", "warm-up"]
    measuring = seen.count("measuring")
    assert 8 <= measuring <= 60
    # A leak is diagnosed before patience, while the heap does not yet hold
    # what patience adds to it (every snapshot walks every object).
    assert seen[2 + measuring:] == ["diagnosing"] * 4 + ["patience"] * 5
    assert result.per_call["objects"] == pytest.approx(1.0, abs=0.02)
    assert result.iterations == {"warmup": 2, "measured": measuring}
    assert result.calls_per_iteration == 100


def test_a_clean_function_has_no_phase_after_measuring():
    seen, result = phases_of(Options(warmup=1, attribution=False), clean, 100)
    assert result.verdict == "clean"
    # Nothing to diagnose or attribute; a hint of growth on a busy machine
    # may be watched longer (patience), and settles.
    assert seen[0] == "warm-up" and "measuring" in seen
    assert set(seen[1:]) <= {"measuring", "patience"}
    assert 8 <= seen.count("measuring") <= 60   # at least the minimum, at most the maximum
    assert result.sites == [] and result.refcount_growth == []


def test_a_fast_body_is_probed_with_short_iterations_before_the_warm_up():
    """At more than 100 calls per iteration, three short iterations (10,
    100, 100 calls) come first: an over-release shows there before a full
    iteration could free its object."""
    calls_seen = []
    started = _core.start()
    try:
        options = Options(warmup=2, attribution=False)

        def open_session(n):
            return _core.Session(clean, (), None, clear_caches, n,
                                 max_samples=_run.max_samples(options))
        run = _run.CheckRun(options, "t", open_session, can_call=False)
        steps = run.steps(1000)
        for _ in range(6):
            step = steps.send(None)
            calls_seen.append((step.phase, run.session.calls))
            run.session.iterate(step.warmup, step.snapshot)
        steps.close()
    finally:
        if started:
            _core.stop()
    assert calls_seen == [("warm-up", 10), ("warm-up", 100), ("warm-up", 100),
                          ("warm-up", 1000), ("warm-up", 1000), ("measuring", 1000)]


def test_without_tracking_the_result_says_why():
    assert not _core.is_tracking()
    run = _run.CheckRun(Options(), "t", lambda n: None)
    assert list(run.steps(10)) == []
    assert run.result.verdict == "inconclusive"
    assert run.result.incomplete == "refhound tracking is not on"
    assert not run.result


def test_check_api_finds_the_leak_and_its_objects():
    result = refhound.check(leaks_one_object)
    assert result.verdict == "leak"
    assert {"type": "object", "count_per_call": 1.0} in result.objects
    assert result.per_call["refs"] == pytest.approx(1.0, abs=0.02)
    assert not _core.is_tracking()       # stopped again: it started here


def test_calibration_picks_a_power_of_ten():
    o = Options()
    assert _run.calibrated_calls(o, 1e-7) == 1_000       # the most it picks
    assert _run.calibrated_calls(o, 1e-6) == 1_000
    assert _run.calibrated_calls(o, 1e-5) == 100
    assert _run.calibrated_calls(o, 1.0) == 1
    assert _run.calibrated_calls(Options(calls=7), 1e-7) == 7
    assert _run.calibrated_calls(Options.for_pytest(), 1e-9) == 100


def test_calibration_times_the_fastest_of_a_few_calls():
    """A call slowed once (a first call, the scheduler) does not set the
    rate; a slow call is timed once only."""
    import time
    seen = []

    def slow_once():
        seen.append(1)
        if len(seen) == 1:
            time.sleep(0.01)
    assert _run._call_seconds(slow_once, (), None) < 0.005
    assert len(seen) == _run.CALIBRATION_TIMINGS

    slow = []

    def always_slow():
        slow.append(1)
        time.sleep(0.03)
    assert _run._call_seconds(always_slow, (), None) >= 0.03
    assert len(slow) == 1


def test_a_first_call_slowed_once_is_retimed_up_to_100_calls():
    import time
    seen = []

    def slow_once():
        seen.append(1)
        if len(seen) == 1:
            time.sleep(0.002)         # 10 calls per iteration from this timing
    assert _run._calibrate(Options(), slow_once, (), None) == _run.CALIBRATION_RETIMED


def test_a_generator_function_is_driven_each_call():
    def gen():
        KEEP.append(object())
        yield 1
    result = refhound.Checker(attribution=False).check(gen)
    assert result.verdict == "leak"
    assert result.per_call["objects"] == pytest.approx(1.0, abs=0.02)
    assert "generator" in result.notes[0]


def test_a_loop_runs_the_same_check():
    for _ in refhound.loop(range(300000), name="unit-loop", report=False):
        KEEP.append(object())
    result = refhound._loop.results()[-1]
    assert result.target == "unit-loop"
    assert result.verdict == "leak"
    assert result.per_call["objects"] == pytest.approx(1.0, abs=0.02)


def test_options_are_checked_before_anything_runs():
    with pytest.raises(refhound.OptionError):
        refhound.Checker(iterations=0)
    with pytest.raises(ValueError):
        refhound.loop(range(3), calls=0)


SENTINEL = object()
FILL = []
FILLED = [0]


def fills_then_settles():
    """Four new objects a call for the first 2,000 calls, then nothing."""
    if FILLED[0] < 2000:
        FILLED[0] += 1
        FILL.extend((object(), object(), object(), object()))


def leaks_under_a_fill():
    """The same fill, and one reference to an existing object kept per call."""
    KEEP.append(SENTINEL)
    fills_then_settles()


@pytest.mark.parametrize("func, verdict", [(leaks_under_a_fill, "leak"),
                                           (fills_then_settles, "clean")])
def test_a_leak_that_a_fill_hid_is_found_and_the_fill_alone_is_clean(func, verdict):
    """At 100 calls an iteration the measurement ends inside the fill (about
    5 refs a call); patience sees the fill stop and, under it, the leak of
    1 ref a call go on."""
    FILLED[0] = 0
    del FILL[:]
    seen, result = phases_of(Options(warmup=2, attribution=False, patience=5.0), func, 100)
    assert result.verdict == verdict, (result.notes, result.patience)
    assert "patience" in seen
    assert result.per_call["refs"] == pytest.approx(1.0 if verdict == "leak" else 0.0,
                                                    abs=0.02)
    assert result.per_call["objects"] == pytest.approx(0.0, abs=0.02)


def test_the_check_s_own_bookkeeping_is_steady_before_the_baseline():
    # At one call per iteration a clean body's measured samples move by
    # nothing: the objects the check keeps between samples (its costs, the
    # decider's trends and their figures, its loop's locals) exist from the
    # warm-up on, and their number does not follow the data (they moved by
    # 20 to 30 in the first measured iterations, and by up to 10 later).
    def nothing():
        return None

    for _ in range(3):
        result = refhound.Checker(calls=1, warmup=3, min_iterations=12, iterations=12,
                                  patience=0).run(nothing, (), {}, "nothing")
        measured = result.samples[result.iterations["warmup"]:]
        for metric in ("objects", "refs", "blocks"):
            series = [s[metric] for s in measured]
            steps = [b - a for a, b in zip(series, series[1:])]
            assert all(abs(d) <= 1 for d in steps) and sum(map(abs, steps)) <= 2, \
                (metric, steps)


def test_the_watch_runs_enough_calls_for_the_growths_rate():
    """A growth of a reference a call is watched over 30 calls (10
    unbalanced writes asked, 30 at least: one unpaired write at the ends
    weighs 0.033 a call, under the 0.05 a site must reach); one every
    tenth call over 100; never more than an iteration's calls."""
    from refhound._run import watch_calls
    assert watch_calls(100, [1.0]) == 30
    assert watch_calls(100, [3.0, -0.5]) == 30
    assert watch_calls(1000, [0.2]) == 50
    assert watch_calls(1000, [0.1]) == 100
    assert watch_calls(1000, []) == 100
    assert watch_calls(10, [1.0]) == 10
