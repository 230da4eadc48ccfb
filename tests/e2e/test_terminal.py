"""What a person sees in a terminal: `refhound check` and `pytest --refhound`
on zoo cases under a real pseudo-terminal (and piped), the bytes drawn fed
to a small terminal model (Screen) and read back as rows: the progress line
drawn and erased, its time left, colour on a terminal and not with NO_COLOR
or through a pipe, sparklines for a leak and none for its clean twin."""
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from support import build_zoo_case, cbuild, engine_path, run_refhound

PY = sys.executable
COLUMNS = 120
CASE = next(c for c in cbuild.zoo_cases() if c["name"] == "new_object")
SPARKS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
# The checks run with --iterations 5000: they stop when sure, as always,
# but the bound on the time left (the most iterations the stopping rule
# allows, at the time one takes) is then seconds, not below one.
ITERATIONS = 5000
PROGRESS = re.compile(   # the parts that make way on a narrow line are optional
    r"^refhound: new_object:(?:leaky|clean)  measuring (\d+)/5000(?:  x(\d+) calls)?  "
    r"refs (\S+)/call(?:  blocks (\S+)/call)?(?:  (\d+\.\d) s, |  )(?:\u2264|<=) (\d+) "
    r"(?:s|min \d\d s|h \d\d min) left$")


class Screen:
    """A terminal fed with the bytes a program drew: the rows it shows at the
    end, each state a row had when the cursor went back to its start (a
    carriage return: a progress line's every drawing), and the SGR (colour)
    parameters seen.  It knows CR, LF, erase to the end of the line and SGR;
    any other escape fails the test, as a program that wrote it would draw
    something we did not look at."""

    TOKEN = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])|(\r)|(\n)|([^\x1b\r\n])|(\x1b)")

    def __init__(self, text):
        self.rows = [[]]
        self.y = self.x = 0
        self.states = []
        self.sgr = []
        for m in self.TOKEN.finditer(text):
            params, final, cr, lf, char, stray = m.groups()
            if final == "m":
                self.sgr.append(params)
            elif final == "K" and params in ("", "0"):
                del self.rows[self.y][self.x:]
            elif final is not None or stray is not None:
                raise AssertionError("unexpected escape %r" % m.group(0))
            elif cr:
                self.states.append("".join(self.rows[self.y]).rstrip())
                self.x = 0
            elif lf:
                self.y += 1
                if self.y == len(self.rows):
                    self.rows.append([])
            else:
                row = self.rows[self.y]
                row.extend(" " * (self.x - len(row) + 1))
                row[self.x] = char
                self.x += 1

    def lines(self):
        return ["".join(r).rstrip() for r in self.rows]

    def text(self):
        return "\n".join(self.lines())


def run_on_terminal(argv, cwd, env=None, columns=COLUMNS, rows=40, timeout=300):
    """Run argv with stdin, stdout and stderr on one pseudo-terminal of
    columns x rows (TERM=xterm-256color, no NO_COLOR or FORCE_COLOR unless
    `env` sets them); return (exit status, the text drawn)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    full = dict(os.environ, TERM="xterm-256color")
    for key in ("NO_COLOR", "FORCE_COLOR", "PY_COLORS", "PYTHONIOENCODING", "COLUMNS",
                "LINES", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER"):
        full.pop(key, None)
    full.update(env or {})
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=full,
                            start_new_session=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:         # EIO: the program and its children closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            raise AssertionError("%s still running after %d s" % (argv, timeout))
        status = proc.wait(timeout=60)
    finally:
        os.close(master)
    return status, b"".join(chunks).decode("utf-8")


def check_on_terminal(target, env=None):
    cwd = build_zoo_case(CASE, PY)
    extra = {"PYTHONPATH": engine_path(PY)}
    extra.update(env or {})
    return run_on_terminal([PY, "-m", "refhound", "check", target, "--iterations",
                            str(ITERATIONS)], cwd, extra)


def sparkline_rows(lines):
    """{label: sparkline} of the report's "over the N measured iterations" rows."""
    out = {}
    for line in lines:
        m = re.match(r"^    (refs|objects|blocks|bytes|rss B|uss B|gc objects) +(\S+) +\S+  \w+$",
                     line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


@pytest.fixture(scope="module")
def leak_tty():
    status, drawn = check_on_terminal("new_object:leaky")
    return status, drawn, Screen(drawn)


def test_progress_line_is_drawn_with_the_time_left_and_erased(leak_tty):
    status, drawn, screen = leak_tty
    assert status == 1, screen.text()
    progress = [s for s in screen.states if s.startswith("refhound: new_object:leaky  ")]
    assert progress, screen.states
    assert progress[0].startswith("refhound: new_object:leaky  warm-up 1/3  x")
    measuring = [PROGRESS.match(s) for s in progress if "measuring" in s]
    assert measuring and all(measuring), progress
    for m in measuring:
        n, left = int(m.group(1)), int(m.group(6))
        assert 1 <= n <= ITERATIONS and left >= 1 and int(m.group(2) or 1) >= 1
    # new_object:leaky leaks one reference a call, from the first iteration.
    assert abs(float(measuring[-1].group(3)) - 1) < 0.02, measuring[-1].group(0)
    # The line fits the terminal: one row, no wrapping to break the erase.
    assert max(len(s) for s in progress) < COLUMNS
    # Erased: the report starts on its row, and nothing of the line is left.
    lines = screen.lines()
    assert lines[0] == "refhound check new_object:leaky", lines[:3]
    assert not any("measuring" in line or "left" in line for line in lines)
    assert drawn.count("\r\x1b[K") >= len(progress)


def test_leak_report_in_colour_with_sparklines(leak_tty):
    status, drawn, screen = leak_tty
    lines = screen.lines()
    assert "  verdict   LEAK: grows call after call" in lines
    assert "\x1b[31;1mLEAK\x1b[0m" in drawn            # the verdict in bold red
    assert "31;1" in screen.sgr and "36" in screen.sgr and "33" in screen.sgr
    assert any(line.startswith("  over the ") and line.endswith(" measured iterations "
                                                                "(change, trend)")
               for line in lines)
    rows = sparkline_rows(lines)
    assert {"refs", "objects", "blocks"} <= set(rows), lines
    for label in ("refs", "objects", "blocks"):
        line = rows[label]
        assert set(line) <= set(SPARKS) and 8 <= len(line) <= 30, line
        assert line[0] == SPARKS[0] and line[-1] == SPARKS[-1]      # a ramp: it grows
    # The culprit line, marked and in yellow.
    culprit = "  >    %d | " % CASE["culprit_line"]
    assert any(culprit in line for line in lines)
    assert re.search(r"\x1b\[33m      >    %d \| " % CASE["culprit_line"], drawn)


def test_clean_twin_on_a_terminal():
    status, drawn = check_on_terminal("new_object:clean")
    screen = Screen(drawn)
    assert status == 0, screen.text()
    lines = screen.lines()
    assert lines[0] == "refhound check new_object:clean"
    assert "  verdict   CLEAN: nothing grows" in lines
    assert "\x1b[32;1mCLEAN\x1b[0m" in drawn
    assert any(PROGRESS.match(s) for s in screen.states), screen.states
    assert not any("measuring" in line for line in lines)
    assert not any(line.startswith("  over the ") for line in lines)
    assert not set(drawn) & set(SPARKS)


def test_no_color_on_a_terminal():
    status, drawn = check_on_terminal("new_object:leaky", {"NO_COLOR": "1"})
    screen = Screen(drawn)
    assert status == 1
    assert screen.sgr == [], screen.sgr[:5]
    # Still a terminal: the progress line is drawn and erased, sparklines shown.
    assert any(PROGRESS.match(s) for s in screen.states), screen.states
    assert not any("measuring" in line for line in screen.lines())
    assert "  verdict   LEAK: grows call after call" in screen.lines()
    assert set(sparkline_rows(screen.lines())["refs"]) <= set(SPARKS)


def test_piped_no_colour_no_progress_and_force_color():
    cwd = build_zoo_case(CASE, PY)
    clean_env = {"NO_COLOR": "", "FORCE_COLOR": "", "TERM": "xterm-256color"}
    proc = run_refhound(PY, ["check", "new_object:leaky"], cwd=cwd, env=clean_env)
    assert proc.returncode == 1
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    assert "measuring" not in proc.stderr and "\r" not in proc.stderr
    assert "  verdict   LEAK: grows call after call\n" in proc.stdout
    rows = sparkline_rows(proc.stdout.splitlines())
    assert rows["refs"][-1] == SPARKS[-1]
    proc = run_refhound(PY, ["check", "new_object:leaky"], cwd=cwd,
                        env=dict(clean_env, FORCE_COLOR="1"))
    assert "  verdict   \x1b[31;1mLEAK\x1b[0m: grows call after call\n" in proc.stdout
    assert "measuring" not in proc.stderr           # colour forced, still no progress line


def test_dumb_ascii_terminal():
    """TERM=dumb: no escape at all (the line erased with spaces); a stream
    that cannot write the block characters: ASCII sparklines and "<=" in the time left."""
    status, drawn = check_on_terminal("new_object:leaky",
                                      {"TERM": "dumb", "PYTHONIOENCODING": "ascii"})
    assert status == 1
    assert "\x1b" not in drawn
    drawn.encode("ascii")
    screen = Screen(drawn)
    progress = [s for s in screen.states if PROGRESS.match(s)]
    assert progress and all(" <= " in s for s in progress), screen.states
    assert not any("measuring" in line for line in screen.lines())
    line = sparkline_rows(screen.lines())["refs"]
    assert line[0] == "_" and line[-1] == "#", line


# -- pytest --refhound under a terminal -------------------------------------------------


def run_pytest_on_terminal(tmp_path, env=None):
    (tmp_path / "test_zoo.py").write_text(
        "import new_object\n\n\ndef test_leaky():\n    new_object.leaky()\n\n\n"
        "def test_clean():\n    new_object.clean()\n")
    zoo = build_zoo_case(CASE, PY)
    extra = {"PYTHONPATH": os.pathsep.join([engine_path(PY), zoo]),
             "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    extra.update(env or {})
    status, drawn = run_on_terminal(
        [PY, "-m", "pytest", "-p", "refhound.pytest_plugin", "-p", "no:cacheprovider",
         "--refhound", "test_zoo.py"], str(tmp_path), extra)
    summary = drawn[drawn.index("refhound leak check"):]
    return status, summary


def test_pytest_summary_in_colour_with_sparklines(tmp_path):
    status, summary = run_pytest_on_terminal(tmp_path)
    screen = Screen(summary)
    lines = screen.lines()
    assert status == 1, screen.text()
    assert "    test_zoo.py::test_leaky" not in lines and "  test_zoo.py::test_leaky" in lines
    # pytest's own markup: red, then bold.
    assert "refhound: \x1b[31m\x1b[1mLEAK\x1b[0m +1 refs, +1 objects, +1 blocks" in summary
    rows = {line.split()[0]: line.split()[1] for line in lines
            if re.match(r"^      (refs|objects|blocks) ", line)}
    assert set(rows) == {"refs", "objects", "blocks"}, lines
    for line in rows.values():
        assert set(line) <= set(SPARKS) and line[-1] == SPARKS[-1]
    # The clean twin is not among the leaking tests (listed in full).
    assert "  test_zoo.py::test_clean" not in lines


def test_pytest_summary_with_no_color(tmp_path):
    status, summary = run_pytest_on_terminal(tmp_path, {"NO_COLOR": "1"})
    assert status == 1
    assert "\x1b[" not in summary
    assert any(line.startswith("    refhound: LEAK +1 refs, +1 objects, +1 blocks")
               for line in Screen(summary).lines())
