"""The live progress line (report.terminal.ProgressLine): the time left, its
bound per phase, and what is drawn on a terminal from the progress dicts the
check sends (_run.py CheckRun._notify), with a clock the test moves."""
import io
import types

import pytest

from refhound.options import Options
from refhound.report import terminal as T


@pytest.mark.parametrize("seconds, ascii, text", [
    (None, False, None),
    (0.0, False, "< 1 s left"),
    (0.4, False, "< 1 s left"),
    (1.0, False, "\u2264 1 s left"),
    (3.2, False, "\u2264 4 s left"),
    (3.2, True, "<= 4 s left"),
    (59.0, False, "\u2264 59 s left"),
    (59.5, False, "\u2264 1 min 00 s left"),
    (125, False, "\u2264 2 min 05 s left"),
    (3599, False, "\u2264 59 min 59 s left"),
    (3600, False, "\u2264 1 h 00 min left"),
    (3700, True, "<= 1 h 02 min left"),
    (90000, False, "\u2264 25 h 00 min left"),
])
def test_time_left_wording(seconds, ascii, text):
    assert T.fmt_time_left(seconds, ascii) == text


LIMITS = {"max_iterations": 60, "warmup": 3, "patience": 10.0, "timeout": None}


@pytest.mark.parametrize("phase, iteration, per_iteration, phase_seconds, elapsed, limits, left", [
    # warm-up: the warm-up left and every measured iteration
    ("warm-up", 1, 0.01, 0.01, 0.01, LIMITS, 0.01 * (2 + 60)),
    ("warm-up", 3, 0.01, 0.03, 0.03, LIMITS, 0.01 * 60),
    # measuring: up to the most the stopping rule allows
    ("measuring", 10, 0.05, 0.5, 0.6, LIMITS, 0.05 * 50),
    ("measuring", 60, 0.05, 3.0, 3.1, LIMITS, 0.0),
    ("measuring", 70, 0.05, 3.5, 3.6, LIMITS, 0.0),        # never below zero
    ("measuring", 10, None, 0.5, 0.6, LIMITS, None),        # no time per iteration yet
    ("measuring", 10, 0.05, 0.5, 0.6, {}, None),            # no limit known
    # patience: the rest of its budget
    ("patience", 2, 1.5, 4.0, 5.0, LIMITS, 6.0),
    ("patience", 9, 1.5, 12.0, 13.0, LIMITS, 0.0),
    ("patience", 2, 1.5, 4.0, 5.0, dict(LIMITS, patience=None), None),
    # phases without a bound
    ("diagnosing", 1, 0.05, 0.05, 3.0, LIMITS, None),
    # the timeout caps every bound, and bounds the phases that have none
    ("measuring", 10, 0.05, 0.5, 0.6, dict(LIMITS, timeout=2.0), 1.4),
    ("measuring", 10, 0.05, 0.5, 0.6, dict(LIMITS, timeout=60.0), 2.5),
    ("diagnosing", 1, 0.05, 0.05, 3.0, dict(LIMITS, timeout=5.0), 2.0),
    ("diagnosing", 1, 0.05, 0.05, 9.0, dict(LIMITS, timeout=5.0), 0.0),
    # the check's own figure wins (capped by the timeout)
    ("patience", 2, 1.5, 4.0, 5.0, dict(LIMITS, seconds_left=7.5), 7.5),
    ("attributing", 1, 0.05, 0.1, 5.0, dict(LIMITS, seconds_left=7.5, timeout=6.0), 1.0),
])
def test_seconds_left_bound(phase, iteration, per_iteration, phase_seconds, elapsed, limits,
                            left):
    got = T.seconds_left(phase, iteration, per_iteration, phase_seconds, elapsed, limits)
    assert got == (pytest.approx(left) if left is not None else None)


def test_limits_from_options():
    assert T.progress_limits(Options(iterations=100, warmup=5, timeout=30.0)) == {
        "max_iterations": 100, "warmup": 5, "patience": getattr(Options(), "patience", None),
        "timeout": 30.0}
    assert T.progress_limits(None) == {}


# -- the line as drawn ------------------------------------------------------------------


class Tty(io.StringIO):
    encoding = "utf-8"

    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def info(phase, iteration, seconds, calls=1000, refs=0, blocks=0, target="mod:f", **extra):
    d = {"target": target, "phase": phase, "iteration": iteration, "calls": calls,
         "seconds": seconds, "refs_delta": refs, "blocks_delta": blocks}
    d.update(extra)
    return d


def drawn(stream):
    """Each state of the line: the text after each erase (the last one first
    in a list of what is on screen now)."""
    return stream.getvalue().split("\r\x1b[K")[1:]


def progress(options=None, **kw):
    stream = Tty()
    clock = Clock()
    kw.setdefault("columns", 200)
    line = T.ProgressLine(stream, options=options or Options(), clock=clock,
                          environ=kw.pop("environ", {"TERM": "xterm"}), **kw)
    return line, stream, clock


def test_a_check_drawn_phase_by_phase():
    line, stream, clock = progress(Options(iterations=60, warmup=3), color=False)
    for i in (1, 2, 3):
        line(info("warm-up", i, 0.05 * i, refs=7))
        clock.now += 0.2                        # slow: every call is drawn
    for i in range(1, 11):
        line(info("measuring", i, 0.15 + 0.05 * i, refs=4000, blocks=5000))
        clock.now += 0.2
    states = drawn(stream)
    assert len(states) == 13
    assert states[0] == "refhound: mod:f  warm-up 1/3  x1000 calls  refs +0.007/call  " \
                        "blocks 0/call  0.1 s, \u2264 4 s left"
    # Each measured iteration took 0.05 s: at most 50 more of them.
    assert states[-1] == "refhound: mod:f  measuring 10/60  x1000 calls  refs +4/call  " \
                         "blocks +5/call  0.7 s, \u2264 3 s left"
    assert "\x1b" not in "".join(states)
    line.clear()
    assert stream.getvalue().endswith("\r\x1b[K") and line.shown == 0
    line.clear()                                 # nothing more to erase
    assert stream.getvalue().count("\r\x1b[K") == 14


def test_rates_are_over_the_phase_so_far():
    line, stream, clock = progress(color=False)
    line(info("measuring", 1, 0.1, refs=3000, blocks=0))
    clock.now += 1
    line(info("measuring", 2, 0.2, refs=1000, blocks=2000))
    assert "refs +2/call  blocks +1/call" in drawn(stream)[-1]


def test_redraws_at_most_ten_times_a_second_but_each_new_phase():
    line, stream, clock = progress(color=False)
    line(info("warm-up", 1, 0.01))
    line(info("warm-up", 2, 0.02))              # no time passed: not drawn
    line(info("measuring", 1, 0.03))            # a new phase: drawn
    clock.now += 0.06
    line(info("measuring", 2, 0.04))            # 0.06 s after the last: not drawn
    clock.now += 0.06
    line(info("measuring", 3, 0.05))            # 0.12 s after: drawn
    assert [s.split("  ")[1] for s in drawn(stream)] == ["warm-up 1/3", "measuring 1/60",
                                                         "measuring 3/60"]


def test_patience_shows_the_rest_of_its_budget():
    # The check says when the phase starts (iteration 0) and what the budget is.
    line, stream, clock = progress(color=False)
    line(info("measuring", 9, 1.0))
    clock.now += 1
    line(info("patience", 0, 1.2, patience_budget=10.0))
    clock.now += 1
    line(info("patience", 1, 3.2, calls=25000, patience_budget=10.0))
    clock.now += 1
    line(info("patience", 1, 6.2, calls=25000, patience_budget=10.0))   # a next stage
    states = drawn(stream)
    assert states[1].endswith("  patience 0  x1000 calls  refs n/a/call  blocks n/a/call  "
                              "1.2 s, \u2264 10 s left")
    assert states[2].endswith("  patience 1  x25000 calls  refs 0/call  blocks 0/call  "
                              "3.2 s, \u2264 8 s left")
    assert states[3].endswith("6.2 s, \u2264 5 s left")


def test_patience_without_the_checks_figures_uses_the_options_budget():
    # Options with a patience budget (seconds), as `--patience 10` gives.
    options = types.SimpleNamespace(iterations=60, warmup=3, patience=10.0, timeout=None)
    line, stream, clock = progress(options, color=False)
    line(info("measuring", 9, 1.0))
    clock.now += 1
    line(info("patience", 1, 3.0))
    # The phase is timed from the last measured iteration: 2 s of 10 spent.
    assert drawn(stream)[-1].endswith("  patience 1  x1000 calls  refs 0/call  blocks 0/call  "
                                      "3.0 s, \u2264 8 s left")


def test_a_new_target_or_a_restart_starts_over():
    line, stream, clock = progress(color=False)
    line(info("measuring", 5, 2.0, refs=5000))
    clock.now += 1
    line(info("warm-up", 1, 0.01, target="mod:g"))
    assert drawn(stream)[-1].startswith("refhound: mod:g  warm-up 1/3")
    assert "refs 0/call" in drawn(stream)[-1]
    # The restart at one call per iteration: a new warm-up, new rates.
    clock.now += 1
    line(info("measuring", 2, 0.5, refs=-2000, calls=1000, target="mod:g"))
    clock.now += 1
    line(info("warm-up", 1, 0.6, refs=-1, calls=1, target="mod:g"))
    assert "x1 calls  refs -1/call" in drawn(stream)[-1]


def test_colours_on_a_colour_terminal():
    line, stream, clock = progress(environ={"TERM": "xterm"})
    line(info("measuring", 1, 0.05))
    out = drawn(stream)[-1]
    assert "\x1b[36mmeasuring 1/60\x1b[0m" in out and "\x1b[1m\u2264 3 s left\x1b[0m" in out
    line, stream, clock = progress(environ={"TERM": "xterm", "NO_COLOR": "1"})
    line(info("measuring", 1, 0.05))
    assert drawn(stream)[-1].count("\x1b") == 0


def test_a_dumb_terminal_gets_spaces_not_escapes():
    line, stream, clock = progress(environ={"TERM": "dumb"})
    line(info("measuring", 1, 0.05, target="mod:long_name"))
    clock.now += 1
    line(info("measuring", 2, 0.10, target="mod:long_name"))
    first, second = stream.getvalue().split("\r")[1:]
    assert len(second) >= len(first)                 # covers what was there
    line.clear()
    out = stream.getvalue()
    assert "\x1b" not in out
    assert out.endswith("\r" + " " * len(first) + "\r")


def test_silent_when_not_a_terminal():
    stream = io.StringIO()
    line = T.ProgressLine(stream, options=Options())
    line(info("measuring", 1, 0.05))
    line.clear()
    assert stream.getvalue() == ""
    line = T.ProgressLine(Tty(), enabled=False)
    line(info("measuring", 1, 0.05))
    assert line.stream.getvalue() == ""


def test_ascii_stream_gets_ascii():
    class AsciiTty(Tty):
        encoding = "ascii"
    line = T.ProgressLine(AsciiTty(), options=Options(), environ={}, clock=Clock(),
                          color=False, columns=200)
    line(info("measuring", 1, 0.05))
    assert line.stream.getvalue().endswith("0.1 s, <= 3 s left")


@pytest.mark.parametrize("width, expected", [
    (120, "refhound: mod:a_function_with_a_long_name  measuring 10/60  x1000 calls  "
          "refs +1/call  blocks +1/call  0.5 s, \u2264 3 s left"),
    (110, "refhound: mod:a_function_with_a_long_name  measuring 10/60  x1000 calls  "
          "refs +1/call  0.5 s, \u2264 3 s left"),
    (100, "refhound: mod:a_function_with_a_long_name  measuring 10/60  refs +1/call  "
          "0.5 s, \u2264 3 s left"),
    (90, "refhound: mod:a_function_with_a_long_name  measuring 10/60  refs +1/call  "
         "\u2264 3 s left"),
    (60, "refhound: mod:a_\u2026  measuring 10/60  refs +1/call  \u2264 3 s left"),
    (54, "refhound: \u2026  measuring 10/60  refs +1/call  \u2264 3 s left"),
    (20, "refhound: \u2026  measuri"),          # narrower: cut, so it never wraps
])
def test_the_line_fits_the_terminal(width, expected):
    line, stream, clock = progress(color=False)
    for i in range(1, 11):
        line.track(info("measuring", i, 0.05 * i, refs=1000, blocks=1000,
                        target="mod:a_function_with_a_long_name"))
    parts = line.text(info("measuring", 10, 0.5, target="mod:a_function_with_a_long_name"),
                      width)
    text = "".join(sep + t for sep, t, _ in parts)
    assert text == expected
    assert len(text) <= width


def test_time_per_iteration_follows_a_check_that_slows_down():
    line, stream, clock = progress(color=False)
    t = 0.0
    for i in range(1, 11):
        t += 0.05
        line.track(info("measuring", i, t))
    assert line.per_iteration == pytest.approx(0.05)
    for i in range(11, 16):
        t += 0.15
        line.track(info("measuring", i, t))
    # Each slower iteration weighs SMOOTHING: 0.05 + 0.1 * (1 - 0.8 ** 5).
    assert line.per_iteration == pytest.approx(0.05 + 0.1 * (1 - 0.8 ** 5))
    # Several iterations in one report (a caller that skips some): their mean.
    before = line.per_iteration
    line.track(info("measuring", 18, t + 0.3))
    assert line.per_iteration == pytest.approx(before + 0.2 * (0.1 - before))


def test_a_stream_that_fails_turns_the_line_off_not_the_check():
    class Broken(Tty):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")
    line = T.ProgressLine(Broken(), options=Options(), environ={}, clock=Clock(), columns=100)
    line(info("measuring", 1, 0.05))          # no exception
    assert line.enabled is False
    line(info("measuring", 2, 0.10))
    line.clear()
