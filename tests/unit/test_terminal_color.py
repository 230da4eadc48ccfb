"""When the terminal report is coloured (report.terminal.use_color, the one
decision for the CLI, demo and loop reports) and how colour is drawn: ANSI
codes for our streams, pytest's terminal writer markup under pytest."""
import io

import pytest

from refhound.report import terminal as T


class Stream(io.StringIO):
    def __init__(self, tty, encoding="utf-8"):
        super().__init__()
        self.tty = tty
        self._encoding = encoding

    def isatty(self):
        return self.tty

    @property
    def encoding(self):
        return self._encoding


# (environment, a terminal?, colour?)
DECISIONS = [
    ({}, True, True),
    ({}, False, False),
    ({"NO_COLOR": "1"}, True, False),
    ({"NO_COLOR": "0"}, True, False),                   # any value but empty
    ({"NO_COLOR": ""}, True, True),                     # empty: as if unset
    ({"FORCE_COLOR": "1"}, False, True),
    ({"FORCE_COLOR": ""}, False, False),
    ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),   # NO_COLOR wins
    ({"TERM": "dumb"}, True, False),
    ({"TERM": "dumb", "FORCE_COLOR": "1"}, True, True),
    ({"TERM": "xterm-256color"}, True, True),
    ({"TERM": "xterm-256color"}, False, False),
]


@pytest.mark.parametrize("environ, tty, expected", DECISIONS,
                         ids=["%s-%s" % (sorted(e.items()), "tty" if t else "pipe")
                              for e, t, _ in DECISIONS])
def test_the_colour_decision_table(environ, tty, expected):
    assert T.use_color(Stream(tty), environ) is expected


def test_a_stream_without_isatty_or_closed_is_not_a_terminal():
    assert T.use_color(object(), {}) is False
    closed = io.StringIO()
    closed.close()
    assert T.use_color(closed, {}) is False


def test_ansi_painter_and_plain_painter():
    paint = T.painter(True)
    assert paint("LEAK", "leak") == "\x1b[31;1mLEAK\x1b[0m"
    assert paint("x", "culprit") == "\x1b[33mx\x1b[0m"
    assert paint("x", None) == "x"          # no role: as it is
    assert paint("", "leak") == ""          # nothing to colour
    assert T.painter(False)("LEAK", "leak") == "LEAK"
    assert T.painter(paint) is paint        # a paint function is kept


class FakeWriter:
    """pytest's TerminalWriter.markup, as far as the painter uses it."""

    def __init__(self, hasmarkup):
        self.hasmarkup = hasmarkup
        self.calls = []

    def markup(self, text, **markup):
        self.calls.append((text, markup))
        return "<%s>%s</>" % (",".join(sorted(k for k, v in markup.items() if v)), text)


def test_pytest_markup_painter_follows_the_writers_decision():
    tw = FakeWriter(True)
    paint = T.markup_painter(tw)
    assert paint("LEAK", "leak") == "<bold,red>LEAK</>"
    assert paint("ERROR", "error") == "<bold,purple>ERROR</>"
    assert paint("x", None) == "x" and len(tw.calls) == 2
    assert T.markup_painter(FakeWriter(False))("LEAK", "leak") == "LEAK"
    assert T.markup_painter(None)("LEAK", "leak") == "LEAK"


def test_every_style_has_a_pytest_markup_its_writer_knows():
    from _pytest._io.terminalwriter import TerminalWriter
    for role, (sgr, markup) in T.STYLES.items():
        assert set(markup) <= set(TerminalWriter._esctable), role
        # The same colour both ways.
        codes = sorted(str(TerminalWriter._esctable[k]) for k in markup)
        assert sorted(sgr.split(";")) == codes, role


def test_can_encode():
    assert T.can_encode(Stream(True, "utf-8"), T.SPARK_CHARS)
    assert not T.can_encode(Stream(True, "ascii"), T.SPARK_CHARS)
    assert not T.can_encode(Stream(True, "latin-1"), "\u2264")
    assert T.can_encode(Stream(True, "no-such-codec-xyz"), "a") is False
    assert T.can_encode(io.StringIO(), T.SPARK_CHARS)      # no encoding: takes anything
