"""The terminal report (report.terminal.render) and the pytest lines of a
test, from saved results: real `refhound check --json` output of zoo cases
(tests/unit/data/check_*.json: new_object:leaky, new_object:clean,
extra_decref:leaky) and made-up long runs (html_samples)."""
import io
import json
import os
import re

import pytest

import html_samples
from refhound._result import Result
from refhound.report import html, terminal as T
from refhound.report.verdict_text import VERDICT_TEXT

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
BLOCKS = set(T.SPARK_CHARS)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def saved(name):
    with open(os.path.join(DATA, "check_%s.json" % name)) as f:
        return json.load(f)


def as_result(d):
    """A Result from its to_dict() form."""
    r = Result(target=d["target"], verdict=d["verdict"], per_call=d["per_call"],
               objects=d["objects"], refcount_growth=d["refcount_growth"],
               iterations=d["iterations"], calls_per_iteration=d["calls_per_iteration"],
               seconds=d["seconds"], samples=d["samples"], types=d["types"],
               trends=d["trends"], survivors=d["survivors"],
               debug_refs_per_call=(d.get("debug") or {}).get("gettotalrefcount_per_call"),
               notes=d["notes"], tracker=d.get("tracker"), sites=d.get("sites") or ())
    r.incomplete = d.get("incomplete")
    return r


def spark_block(text):
    """{label: (sparkline, change, trend)} of the report's sparkline section."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  over the "))
    out = {}
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        m = re.match(r"^    (\S+(?: \S+)?) +(\S+) +(\S+)  (\S+)$", line)
        assert m, line
        out[m.group(1)] = m.group(2, 3, 4)
    return out


# -- sparklines ------------------------------------------------------------------------


def test_sparkline_levels():
    assert T.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == T.SPARK_CHARS
    assert T.sparkline([7, 6, 5, 4, 3, 2, 1, 0]) == T.SPARK_CHARS[::-1]
    assert T.sparkline([5, 5, 5]) == "\u2581" * 3
    assert T.sparkline([]) == ""
    assert T.sparkline([0, 14], ascii=True) == "_#"
    assert T.sparkline([0, 1, 2, 3, 4, 5, 6, 7], ascii=True) == T.SPARK_ASCII


def test_sparkline_min_span_keeps_a_small_change_low():
    # One object more over 9000 calls is not a slope worth drawing.
    assert T.sparkline([100, 99, 100, 100], min_span=450) == "\u2581" * 4
    # A change as large as the span reaches the top.
    assert T.sparkline([0, 450], min_span=450) == "\u2581\u2588"


def test_sparkline_downsamples_to_the_width():
    values = list(range(300))
    line = T.sparkline(values)
    assert len(line) == T.SPARK_WIDTH == 30
    assert line[0] == "\u2581" and line[-1] == "\u2588"
    assert list(line) == sorted(line)           # a ramp stays a ramp
    assert len(T.sparkline(values, width=7)) == 7
    assert len(T.sparkline(list(range(31)))) == 30
    assert len(T.sparkline(list(range(29)))) == 29     # fewer samples: one column each
    # The mean of each run of samples: a single spike among many is damped.
    spiky = [0] * 100 + [1000] + [0] * 199
    assert T.sparkline(spiky + [1000] * 10).count("\u2588") == 1


def test_spark_rows_of_a_leak_error_and_clean():
    leak = saved("leak")
    rows = T.spark_rows(leak["samples"], leak["iterations"]["warmup"], leak["trends"],
                        "leak", leak["calls_per_iteration"])
    metrics = [r[0] for r in rows]
    # Growing metrics, in the table's order (the engine's breakdowns left out).
    assert metrics == ["refs", "objects", "blocks", "bytes", "rss_bytes", "uss_bytes"]
    measured = leak["iterations"]["measured"]
    for metric, label, series, trend, min_span in rows:
        assert len(series) == measured + 1           # the baseline and each measured
        assert trend == "growing"
        assert min_span == pytest.approx(0.05 * 1000 * measured)
    error = saved("error")
    rows = T.spark_rows(error["samples"], error["iterations"]["warmup"], error["trends"],
                        "error", error["calls_per_iteration"])
    assert [(r[0], r[3]) for r in rows] == [("refs", "falling"), ("objects", "flat"),
                                            ("blocks", "flat")]
    clean = saved("clean")
    assert T.spark_rows(clean["samples"], clean["iterations"]["warmup"], clean["trends"],
                        "clean", 1000) == []
    assert T.spark_rows([], 3, {}, "leak") == []
    # A clean verdict draws none, even with a drifting metric it does not judge.
    drifting = dict(clean["trends"], rss_bytes=dict(clean["trends"]["rss_bytes"],
                                                    trend="growing"))
    assert T.spark_rows(clean["samples"], 3, drifting, "clean", 1000) == []
    assert [r[0] for r in T.spark_rows(clean["samples"], 3, drifting, "inconclusive",
                                       1000)] == ["rss_bytes"]


# -- the report of a check ---------------------------------------------------------------


def test_leak_report_has_a_sparkline_per_growing_metric():
    text = T.render(as_result(saved("leak")))
    assert "\x1b" not in text
    assert "  verdict   LEAK: grows call after call\n" in text
    assert "  over the 9 measured iterations (change, trend)\n" in text
    block = spark_block(text)
    assert list(block) == ["refs", "objects", "blocks", "bytes", "rss B", "uss B"]
    for label in ("refs", "objects", "blocks", "bytes"):
        line, change, trend = block[label]
        assert set(line) <= BLOCKS and len(line) == 10, line
        # new_object:leaky leaks one int per call, steadily: a ramp.
        assert line[0] == "\u2581" and line[-1] == "\u2588" and list(line) == sorted(line)
        assert trend == "growing"
    assert (block["refs"][1], block["objects"][1], block["blocks"][1]) == \
        ("+9003", "+8999", "+8999")


def test_error_report_draws_the_fall_and_the_flat_metrics():
    text = T.render(as_result(saved("error")))
    assert "  verdict   ERROR: %s\n" % VERDICT_TEXT["error"] in text
    block = spark_block(text)
    # One reference a call at one call an iteration: the line falls to the
    # bottom over its last two thirds (the window the trend is judged on).
    line, change, trend = block["refs"]
    assert (len(line), change, trend) == (11, "-7", "falling")
    assert line[-1] == "\u2581" and list(line[3:]) == sorted(line[3:], reverse=True)
    assert "\u2588" in line[:3]
    # objects and blocks: one freed in the first iteration, then flat.
    assert block["objects"] == ("\u2588" + "\u2581" * 10, "-1", "flat")
    assert block["blocks"] == ("\u2588" + "\u2581" * 10, "-1", "flat")


def test_clean_report_has_no_sparkline():
    text = T.render(as_result(saved("clean")))
    assert "  verdict   CLEAN: nothing grows\n" in text
    assert "over the" not in text and not set(text) & BLOCKS


def test_long_run_sparklines_are_30_columns():
    r = as_result(html_samples.result(iterations=200))
    block = spark_block(T.render(r))
    assert set(block) == {"refs", "objects", "blocks", "bytes"}
    for line, _, _ in block.values():
        assert len(line) == 30 and line[0] == "\u2581" and line[-1] == "\u2588"


def test_ascii_report():
    text = T.render(as_result(saved("leak")), ascii=True)
    text.encode("ascii")
    line = spark_block(text)["refs"][0]
    assert line[0] == "_" and line[-1] == "#" and set(line) <= set(T.SPARK_ASCII)


def test_colour_report():
    text = T.render(as_result(saved("leak")), color=True)
    assert "  verdict   \x1b[31;1mLEAK\x1b[0m: grows call after call\n" in text
    assert re.search("    refs       \x1b\\[31m[%s]{10}\x1b\\[0m" % T.SPARK_CHARS, text)
    # The culprit line of the source in yellow, the first site in bold.
    assert "\x1b[33m      >    21 |     PyObject *value = PyLong_FromLong(1000000 + counter++);" \
           "  /* @culprit */\x1b[0m" in text
    assert "\x1b[1m    tests/zoo/new_object.c:21 in leaky()" in text
    # Colour changes nothing else.
    assert ANSI.sub("", text) == T.render(as_result(saved("leak")))
    text = T.render(as_result(saved("error")), color=True)
    assert "\x1b[35;1mERROR\x1b[0m" in text
    assert re.search("    refs       \x1b\\[35m[%s]{11}\x1b\\[0m" % T.SPARK_CHARS, text)
    assert "    objects    \u2588\u2581" in text          # flat: no colour


def test_render_for_a_stream():
    class Tty(io.StringIO):
        encoding = "ascii"

        def isatty(self):
            return True
    text = T.render_for(as_result(saved("leak")), Tty())
    text.encode("ascii")
    # On a terminal (unless NO_COLOR is set where the tests run).
    assert ("\x1b[31;1mLEAK" in text) == T.use_color(Tty())
    assert "\x1b" not in T.render_for(as_result(saved("leak")), io.StringIO())


# -- one wording of the verdict -----------------------------------------------------------


@pytest.mark.parametrize("verdict", ["leak", "error", "clean", "inconclusive"])
def test_terminal_and_html_say_the_verdict_in_the_same_words(verdict):
    d = saved("leak")
    d.update(verdict=verdict, notes=[])
    text = T.render(as_result(d))
    assert "  verdict   %s: %s\n" % (verdict.upper(), VERDICT_TEXT[verdict]) in text
    assert html._summary_text(d) == VERDICT_TEXT[verdict]
    assert html.VERDICT_TEXT is VERDICT_TEXT


def test_incomplete_and_noted_inconclusive_wording():
    d = saved("clean")
    d.update(verdict="inconclusive", notes=["a note"])
    assert "  verdict   INCONCLUSIVE: no conclusion (see the notes)\n" in T.render(as_result(d))
    d["incomplete"] = "refhound tracking is not on"
    assert "INCONCLUSIVE: could not conclude: refhound tracking is not on\n" in \
        T.render(as_result(d))
    assert html._summary_text(d) == "could not conclude: refhound tracking is not on"


# -- the lines of a test under pytest --refhound -------------------------------------------


def record(name, outcome):
    return {"outcome": outcome, "reason": "grows call after call: refs +1/call",
            "result": saved(name), "fixture_result": None}


def test_test_details_with_sparklines():
    lines = T.test_details(record("leak", "leak"), indent="    ", sparklines=True)
    assert lines[0] == "    grows call after call: refs +1/call"
    assert lines[1].startswith("    measured 9 iterations x 1000 calls after 3 warm-up")
    assert re.match("^      refs       [%s]{10}     \\+9003  growing$" % T.SPARK_CHARS,
                    lines[2]), lines[2]
    assert [line.split()[0] for line in lines[2:8]] == \
        ["refs", "objects", "blocks", "bytes", "rss", "uss"]
    plain = T.test_details(record("leak", "leak"), indent="    ")
    assert not set("".join(plain)) & BLOCKS          # none unless asked (failure text)
    assert T.failure_text(record("leak", "leak")) == "\n".join(
        [T.test_headline(record("leak", "leak"))] + T.test_details(record("leak", "leak"))) + "\n"


def test_test_headline_and_details_in_colour():
    paint = T.painter(True)
    head = T.test_headline(record("leak", "leak"), color=paint)
    assert head == "refhound: \x1b[31;1mLEAK\x1b[0m +1 refs, +1 objects, +1 blocks, +32 bytes " \
                   "per call (int)"
    assert T.test_headline(record("leak", "fixture"), color=paint).startswith(
        "refhound: \x1b[1mFIXTURE\x1b[0m")
    lines = T.test_details(record("leak", "leak"), color=paint, sparklines=True)
    assert any(line.startswith("\x1b[33m      > ") for line in lines)     # the culprit line
    assert any("\x1b[31m\u2581" in line for line in lines)     # a growing sparkline
    assert ANSI.sub("", "\n".join(lines)) == "\n".join(
        T.test_details(record("leak", "leak"), sparklines=True))
