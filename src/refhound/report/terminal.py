"""What a person reads in a terminal: the report of a check (`render`, for
refhound check, refhound.loop, refhound demo), the lines of a leaking test
under pytest --refhound (`test_headline`, `test_details`), and the live
progress line (`ProgressLine`).  Sites are drawn by one function for both.

Colour is decided in one place, `use_color` (NO_COLOR, FORCE_COLOR,
TERM=dumb, a terminal or not), and drawn through a paint function: ANSI
codes for our own streams, the terminal writer's markup under pytest.
Sparklines and the "≤" of the time left fall back to ASCII when the
stream's encoding cannot write them (`can_encode`).
"""
import math
import os
import sys
import time

from .verdict_text import summary_text

# ---------------------------------------------------------------------------
# Colour

# role => (ANSI SGR parameters, pytest TerminalWriter markup)
STYLES = {
    "leak": ("31;1", {"red": True, "bold": True}),
    "error": ("35;1", {"purple": True, "bold": True}),
    "clean": ("32;1", {"green": True, "bold": True}),
    "inconclusive": ("33;1", {"yellow": True, "bold": True}),
    "heading": ("1", {"bold": True}),
    "culprit": ("33", {"yellow": True}),
    "growing": ("31", {"red": True}),
    "falling": ("35", {"purple": True}),
    "phase": ("36", {"cyan": True}),
    "left": ("1", {"bold": True}),
}


def use_color(stream, environ=None):
    """Whether to draw colour on `stream`, decided in this order: NO_COLOR
    set and not empty says no (https://no-color.org); FORCE_COLOR set and
    not empty says yes; TERM=dumb says no; otherwise yes on a terminal."""
    environ = os.environ if environ is None else environ
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    if environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):     # no method, or a closed stream
        return False


def painter(color):
    """paint(text, role) -> text: wrapped in the role's ANSI codes when
    `color` is true, as it is when false; a paint function is returned as
    it is (markup_painter)."""
    if callable(color):
        return color
    if not color:
        return lambda text, role: text

    def paint(text, role):
        style = STYLES.get(role)
        return "\033[%sm%s\033[0m" % (style[0], text) if style and text else text
    return paint


def markup_painter(tw):
    """paint(text, role) through pytest's terminal writer `tw`: its own
    colour decision (PY_COLORS, NO_COLOR, FORCE_COLOR, a terminal) holds."""
    if tw is None or not getattr(tw, "hasmarkup", False):
        return painter(False)

    def paint(text, role):
        style = STYLES.get(role)
        return tw.markup(text, **style[1]) if style and text else text
    return paint


def can_encode(stream, text):
    """Whether `stream` can write `text` in its encoding (a stream with no
    encoding is taken for UTF-8, as io.StringIO writes anything)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# ---------------------------------------------------------------------------
# Figures


def fmt_rate(value, unit=""):
    """A rate per call, signed and short: +3, +0.1, +1.2k, n/a."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 1e6:
        text = "%+.2fM" % (value / 1e6)
    elif mag >= 1e4:
        text = "%+.1fk" % (value / 1e3)
    elif mag >= 10:
        text = "%+.0f" % value
    else:
        text = "%+.3g" % value
    return text + unit


def fmt_time_left(seconds, ascii=False):
    """A bound on the time left: "< 1 s left", "≤ 4 s left",
    "≤ 2 min 05 s left", "≤ 1 h 03 min left"; None when unknown."""
    if seconds is None:
        return None
    if seconds < 1:
        return "< 1 s left"
    at_most = "<=" if ascii else "\u2264"
    s = int(math.ceil(seconds))
    if s < 60:
        return "%s %d s left" % (at_most, s)
    if s < 3600:
        return "%s %d min %02d s left" % (at_most, s // 60, s % 60)
    m = int(math.ceil(seconds / 60.0))
    return "%s %d h %02d min left" % (at_most, m // 60, m % 60)


# ---------------------------------------------------------------------------
# Sparklines

SPARK_CHARS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"     # ▁▂▃▄▅▆▇█
SPARK_ASCII = "_.-~=+*#"
SPARK_WIDTH = 30
# The metrics that get a sparkline, in order, with their label (the
# per-call table's labels; the engine's breakdowns of blocks are left out).
SPARK_METRICS = (("refs", "refs"), ("objects", "objects"), ("blocks", "blocks"),
                 ("bytes", "bytes"), ("native_bytes", "native B"), ("rss_bytes", "rss B"),
                 ("uss_bytes", "uss B"), ("fds", "fds"), ("threads", "threads"),
                 ("gc_objects", "gc objects"), ("debug_refs", "debug refs"))
# Shown for a leak or an error whatever their trend.
SPARK_ALWAYS = ("refs", "objects", "blocks")
# A change smaller than this per call is drawn flat (the report's smallest
# rate worth a word: test_headline leaves out smaller ones).
SPARK_MIN_PER_CALL = 0.05


def sparkline(values, width=SPARK_WIDTH, ascii=False, min_span=0):
    """The series as one character per column, lowest to highest: at most
    `width` columns (the mean of each run of samples when there are more).
    The levels span the series' range, or min_span when that is wider, from
    its lowest value: a change smaller than min_span stays on the lowest
    levels, a flat series on the lowest one.  "" for an empty series."""
    values = list(values)
    n = len(values)
    if n > width:
        values = [sum(values[i * n // width:(i + 1) * n // width]) /
                  float((i + 1) * n // width - i * n // width) for i in range(width)]
    if not values:
        return ""
    chars = SPARK_ASCII if ascii else SPARK_CHARS
    lo = min(values)
    span = max(max(values) - lo, min_span)
    if span <= 0:
        return chars[0] * len(values)
    top = len(chars) - 1
    return "".join(chars[int(round((v - lo) * top / float(span)))] for v in values)


def spark_rows(samples, warmup, trends, verdict, calls=1):
    """[(metric, label, measured series, trend, min_span)] of the metrics to
    draw: those whose trend grows or falls, and refs, objects and blocks
    for a leak or an error; none for a clean verdict.  The measured
    samples start at the last warm-up sample (the baseline); a metric this
    platform cannot measure (-1) is left out.  min_span: SPARK_MIN_PER_CALL
    per call over the calls measured, so a change below it draws flat."""
    if verdict == "clean":
        # Its words say nothing grows: a metric the verdict does not judge
        # (RSS drifting on a busy machine) would contradict them.
        return []
    samples = samples or []
    trends = trends or {}
    base = warmup - 1 if warmup and warmup > 0 else 0
    measured = samples[base:]
    if len(measured) < 2:
        return []
    min_span = SPARK_MIN_PER_CALL * (calls or 1) * (len(measured) - 1)
    rows = []
    for metric, label in SPARK_METRICS:
        trend = (trends.get(metric) or {}).get("trend", "")
        if trend not in ("growing", "falling") and not (
                verdict in ("leak", "error") and metric in SPARK_ALWAYS):
            continue
        series = [s.get(metric, -1) for s in measured]
        if min(series) < 0:
            continue
        rows.append((metric, label, series, trend, min_span))
    return rows


def spark_lines(rows, indent, paint, ascii=False):
    """One line per row: label, sparkline, change from first to last, trend."""
    out = []
    for metric, label, series, trend, min_span in rows:
        line = sparkline(series, ascii=ascii, min_span=min_span)
        role = trend if trend in ("growing", "falling") else None
        out.append(("%s%-10s %s  %8s  %s" % (indent, label, paint(line, role),
                                              fmt_rate(series[-1] - series[0]), trend)).rstrip())
    return out


# ---------------------------------------------------------------------------
# The report of a check


def render_for(result, stream):
    """render(result) as `stream` can show it: colour when use_color says
    so, ASCII sparklines when its encoding cannot write the others."""
    return render(result, color=use_color(stream), ascii=not can_encode(stream, SPARK_CHARS))


def render(result, color=False, ascii=False):
    """The report a person reads in a terminal.  color: a bool or a paint
    function (painter); ascii: no characters beyond ASCII."""
    r = result
    paint = painter(color)
    pc = r.per_call
    lines = []
    head = paint(r.verdict.upper(), r.verdict if r.verdict in STYLES else "heading")
    lines.append("refhound check %s" % r.target)
    lines.append("  verdict   %s: %s" % (head, summary_text(r.verdict, r.incomplete, r.notes)))
    lines.append("  measured  %d iterations x %d calls after %d warm-up, %.2f s" % (
        r.iterations["measured"], r.calls_per_iteration, r.iterations["warmup"], r.seconds))
    lines.append("")
    cols = [("refs", "refs", ""), ("objects", "objects", ""), ("blocks", "blocks", ""),
            ("bytes", "bytes", ""), ("native_bytes", "native B", ""), ("rss_bytes", "rss B", ""),
            ("fds", "fds", "")]
    lines.append("  per call  " + "".join("%10s" % c[1] for c in cols))
    lines.append("            " + "".join("%10s" % fmt_rate(pc.get(c[0])) for c in cols))
    if r.samples and r.samples[0].get("arenas", -1) >= 0:
        a, b = r.samples[0], r.samples[-1]
        lines.append("            pymalloc: arenas %d -> %d, pools in use %d -> %d, blocks in use %d -> %d"
                     % (a["arenas"], b["arenas"], a["pools"], b["pools"], a["pymalloc_blocks"],
                        b["pymalloc_blocks"]))
    if r.debug_refs_per_call is not None:
        lines.append("            sys.gettotalrefcount(): %s per call" % fmt_rate(r.debug_refs_per_call))
    rows = spark_rows(r.samples, r.iterations.get("warmup"), r.trends, r.verdict,
                      r.calls_per_iteration)
    if rows:
        lines.append("")
        lines.append("  over the %d measured iterations (change, trend)" % r.iterations["measured"])
        lines.extend(spark_lines(rows, "    ", paint, ascii))
    if r.objects:
        lines.append("")
        lines.append("  leaking objects (per call)")
        for o in r.objects[:10]:
            lines.append("    %10s  %s" % (fmt_rate(o["count_per_call"]), o["type"]))
    if r.refcount_growth:
        lines.append("")
        title = "growing reference counts" if r.verdict != "error" else "falling reference counts"
        lines.append("  %s (references per call)" % title)
        for g in r.refcount_growth[:10]:
            lines.append("    %10s  %s %s" % (fmt_rate(g["refs_per_call"]), g["type"], g["repr"]))
    if r.sites:
        lines.append("")
        if r.sites[0].get("blocks_per_call") is not None:
            lines.append("  leak sites (where the surviving blocks were allocated)")
        else:
            lines.append("  reference sites (refcount writes left unbalanced, found with "
                         "hardware watchpoints)")
        for n, s in enumerate(r.sites[:5]):
            lines.extend(site_lines(s, "    ", full=True, color=paint, first=n == 0))
    for note in r.notes:
        lines.append("  note: %s" % note)
    return "\n".join(lines) + "\n"


def _where(site):
    if site.get("file"):
        return "%s:%s" % (site["file"], site.get("line") or "?")
    return site.get("module") or "(no native frame)"


def _culprit_where(culprit):
    """file:line of a culprit, or its module and symbol when the line is
    not known."""
    if culprit.get("file") and culprit.get("line"):
        return "%s:%s" % (culprit["file"], culprit["line"])
    if culprit.get("symbol"):
        return "%s (%s)" % (culprit["symbol"], culprit.get("module") or "?")
    return _where(culprit)


def site_lines(site, indent="    ", full=True, color=False, first=False):
    """One site, led by its culprit: where, function, rates, why; its
    source (all the context when full, else only the culprit line), the
    allocation line when the culprit is elsewhere, life history, first
    Python caller."""
    paint = painter(color)
    rate = []
    if site.get("blocks_per_call") is not None:
        rate.append("%s blocks, %s bytes per call" % (fmt_rate(site["blocks_per_call"]),
                                                     fmt_rate(site.get("bytes_per_call"))))
    if site.get("refs_per_call") is not None:
        rate.append("%s references per call" % fmt_rate(site["refs_per_call"]))
    culprit = site.get("culprit") if isinstance(site.get("culprit"), dict) else None
    lead = culprit or site
    where = ("in %s()" % lead["function"]) if lead.get("function") else (
        "in the definition of %s" % site.get("type_symbol") if site.get("type_symbol") else "")
    place = _culprit_where(culprit) if culprit else _where(site)
    head = ("%s%s %s  %s" % (indent, place, where, "; ".join(rate))).rstrip()
    out = [paint(head, "heading") if first else head]
    if culprit and culprit.get("reason"):
        out.append(indent + "  culprit: " + culprit["reason"])
        if (culprit.get("file"), culprit.get("line")) != (site.get("file"), site.get("line")) \
                and site.get("file"):
            what = "written at" if site.get("refs_per_call") is not None else "allocated at"
            out.append(indent + "  %s %s in %s()" % (what, _where(site), site.get("function")))
    for entry in site.get("source") or []:
        n, text, is_culprit = entry
        if not full and not is_culprit:
            continue
        mark = ">" if is_culprit else " "
        line = "%s  %s %5d | %s" % (indent, mark, n, text if full else str(text).strip())
        out.append(paint(line, "culprit") if is_culprit else line)
    if full:
        for step in site.get("history", []):
            out.append(indent + "  " + step)
        if site.get("allocated_at"):
            out.append(indent + "  instances allocated at %s" % site["allocated_at"])
    if site.get("python"):
        py = site["python"][0]
        out.append(indent + "  called from %s:%s in %s" % (py.get("file"), py.get("line"),
                                                         py.get("function")))
    if full and site.get("reason"):
        out.append(indent + "  (%s)" % site["reason"])
    return out


# ---------------------------------------------------------------------------
# One test under pytest --refhound (a record: outcome, reason, result dict)

_HEADLINE_RATES = (("refs", "refs"), ("objects", "objects"), ("blocks", "blocks"),
                   ("bytes", "bytes"), ("native_bytes", "native bytes"), ("fds", "fds"))


def test_headline(record, color=False):
    """One line: what leaks, per call."""
    paint = painter(color)
    result = record.get("result") or {}
    per_call = result.get("per_call") or {}
    parts = []
    for key, label in _HEADLINE_RATES:
        value = per_call.get(key)
        if value is not None and abs(value) >= 0.05:
            parts.append("%s %s" % (fmt_rate(value), label))
    types = [o["type"] for o in result.get("objects") or []][:3]
    outcome = record["outcome"]
    text = "refhound: %s" % paint(outcome.upper(), outcome if outcome in STYLES else "heading")
    if parts:
        text += " %s per call" % ", ".join(parts)
    if types:
        text += " (%s)" % ", ".join(types)
    return text


def test_details(record, indent="  ", color=False, ascii=False, sparklines=False):
    """The lines under a leaking test: types, growing objects, sites (and
    the sparklines of the growing metrics when asked)."""
    paint = painter(color)
    result = record.get("result") or {}
    lines = []
    if record.get("reason"):
        lines.append(indent + record["reason"])
    it = result.get("iterations") or {}
    if it:
        lines.append(indent + "measured %s iterations x %s calls after %s warm-up, %.2f s" % (
            it.get("measured"), result.get("calls_per_iteration"), it.get("warmup"),
            result.get("seconds") or 0.0))
    if sparklines:
        rows = spark_rows(result.get("samples"), it.get("warmup"), result.get("trends"),
                          result.get("verdict"), result.get("calls_per_iteration"))
        lines.extend(spark_lines(rows, indent + "  ", paint, ascii))
    objects = result.get("objects") or []
    if objects:
        lines.append(indent + "leaking objects per call: " + ", ".join(
            "%s %s" % (fmt_rate(o["count_per_call"]), o["type"]) for o in objects[:6]))
    growth = result.get("refcount_growth") or []
    if growth:
        lines.append(indent + "growing reference counts:")
        for g in growth[:5]:
            lines.append(indent + "  %s refs per call on %s %s" % (
                fmt_rate(g["refs_per_call"]), g["type"], g["repr"]))
            for site in (g.get("sites") or [])[:3]:
                lines.extend(site_lines(site, indent + "    ", full=False, color=paint))
    sites = result.get("sites") or []
    if sites:
        lines.append(indent + "culprit sites (where the surviving blocks were allocated):")
        for site in sites[:5]:
            lines.extend(site_lines(site, indent + "  ", full=False, color=paint))
    for note in result.get("notes") or []:
        lines.append(indent + "note: " + note)
    fixture = record.get("fixture_result")
    if fixture and fixture.get("verdict") == "leak":
        fpc = fixture.get("per_call") or {}
        lines.append(indent + "fixture cycle alone: %s refs, %s objects, %s blocks per call" % (
            fmt_rate(fpc.get("refs")), fmt_rate(fpc.get("objects")), fmt_rate(fpc.get("blocks"))))
    return lines


def failure_text(record):
    return "\n".join([test_headline(record)] + test_details(record)) + "\n"


# ---------------------------------------------------------------------------
# The live progress line


def progress_limits(options):
    """What bounds the time left, from the options of the check:
    max_iterations, warmup, patience (seconds), timeout (seconds)."""
    if options is None:
        return {}
    return {"max_iterations": getattr(options, "iterations", None),
            "warmup": getattr(options, "warmup", None),
            "patience": getattr(options, "patience", None),
            "timeout": getattr(options, "timeout", None)}


def seconds_left(phase, iteration, per_iteration, phase_seconds, elapsed, limits):
    """A bound on the seconds left, or None when nothing bounds it.

    warm-up     the warm-up iterations left plus every measured iteration
    measuring   the measured iterations left up to the most the stopping
                rule allows (it often stops sooner: a bound, not a forecast)
    patience    what is left of its time budget
    Each capped by what is left of the timeout.  limits: max_iterations,
    warmup, patience, timeout, and seconds_left when the check gave its own
    figure (used as it is)."""
    left = limits.get("seconds_left")
    most = limits.get("max_iterations")
    if left is not None:
        pass
    elif phase == "warm-up" and per_iteration is not None and most:
        left = per_iteration * (max((limits.get("warmup") or 0) - iteration, 0) + most)
    elif phase == "measuring" and per_iteration is not None and most:
        left = per_iteration * max(most - iteration, 0)
    elif phase == "patience" and limits.get("patience"):
        left = max(limits["patience"] - phase_seconds, 0.0)
    timeout = limits.get("timeout")
    if timeout:
        rest = max(timeout - elapsed, 0.0)
        left = rest if left is None else min(left, rest)
    return left


# The weight of the latest iteration's time in the time per iteration.
SMOOTHING = 0.2
# The progress dict's optional keys (the check's own figures) => the limit
# they override.
_INFO_LIMITS = (("max_iterations", "max_iterations"), ("warmup_iterations", "warmup"),
                ("patience_budget", "patience"), ("seconds_left", "seconds_left"))


class ProgressLine:
    """A one-line status on a terminal, redrawn in place after an iteration
    (at most REDRAWS_PER_SECOND times a second, and at each new phase) and
    erased by clear(); silent when the stream is not a terminal.

    It shows the target, the phase and its iteration (of the most when
    known), the calls per iteration, the refs and blocks per call so far in
    the phase, the time spent and a bound on the time left (seconds_left).
    The time per iteration is measured between the progress calls."""

    REDRAWS_PER_SECOND = 10

    def __init__(self, stream=None, enabled=None, options=None, color=None, environ=None,
                 clock=time.monotonic, columns=None):
        self.stream = stream or sys.stderr
        environ = os.environ if environ is None else environ
        self.enabled = _isatty(self.stream) if enabled is None else enabled
        self.paint = painter(use_color(self.stream, environ) if color is None else color)
        self.ascii = not can_encode(self.stream, "\u2264")
        self.dumb = environ.get("TERM") == "dumb"      # no "erase line": spaces instead
        self.limits = progress_limits(options)
        self.clock = clock
        self.columns = columns      # the terminal's width (None: asked at each draw)
        self.shown = 0              # columns drawn, 0 when nothing is on the line
        self.drawn_at = None
        self._start(None)

    def _start(self, target):
        self.target = target
        self.phase = None
        self.last_seconds = 0.0
        self.last_iteration = 0
        self.calls = None
        self.phase_since = 0.0          # seconds at the start of the phase
        self.per_iteration = None       # seconds, smoothed
        self.sums = [0, 0, 0]           # refs, blocks, calls over the phase

    def track(self, info):
        """Take in one progress dict (what the line will show)."""
        seconds = info["seconds"]
        it = info["iteration"]
        if info["target"] != self.target or seconds < self.last_seconds:
            self._start(info["target"])
        new_phase = info["phase"] != self.phase
        if new_phase:
            self.phase = info["phase"]
            self.phase_since = self.last_seconds
            self.sums = [0, 0, 0]
            self.per_iteration = None
        new_stage = new_phase or it <= self.last_iteration or info["calls"] != self.calls
        if new_stage:
            # A new run of iterations: a phase, a patience stage, a new count.
            if it == 0:
                since, base = seconds, 0
            else:
                since, base = self.last_seconds, it - 1
            if new_phase and it == 0:
                self.phase_since = seconds
        else:
            since, base = self.last_seconds, self.last_iteration
        if it > base:
            # The time of an iteration, smoothed: the recent ones count most
            # (a check slows down as what it tracks grows).
            took = (seconds - since) / (it - base)
            if new_stage or self.per_iteration is None:
                self.per_iteration = took
            else:
                self.per_iteration += SMOOTHING * (took - self.per_iteration)
        if it > 0:
            self.sums[0] += info.get("refs_delta") or 0
            self.sums[1] += info.get("blocks_delta") or 0
            self.sums[2] += info["calls"]
        self.last_seconds, self.last_iteration, self.calls = seconds, it, info["calls"]
        return new_phase

    def left(self, info):
        limits = dict(self.limits)
        for key, name in _INFO_LIMITS:
            if info.get(key) is not None:
                limits[name] = info[key]
        return seconds_left(self.phase, info["iteration"], self.per_iteration,
                            info["seconds"] - self.phase_since, info["seconds"], limits)

    def text(self, info, width):
        """The line as [(separator, text, role)], fitted into `width`
        columns: the least useful parts go first (blocks, calls, elapsed
        time), then the target is shortened."""
        most = info.get("max_iterations") or self.limits.get("max_iterations")
        warm = info.get("warmup_iterations") or self.limits.get("warmup")
        of = {"measuring": most, "warm-up": warm}.get(self.phase)
        step = "%s %d" % (self.phase, info["iteration"]) + ("/%d" % of if of else "")
        calls = self.sums[2]
        refs = fmt_rate(self.sums[0] / calls if calls else None)
        blocks = fmt_rate(self.sums[1] / calls if calls else None)
        left = fmt_time_left(self.left(info), self.ascii)
        # [text, role, dropped in this order when too long (0: kept), separator]
        parts = [["refhound: " + str(info["target"]), None, 0, ""],
                 [step, "phase", 0, "  "],
                 ["x%d calls" % info["calls"], None, 2, "  "],
                 ["refs %s/call" % refs, None, 0, "  "],
                 ["blocks %s/call" % blocks, None, 1, "  "],
                 ["%.1f s" % info["seconds"], None, 3, "  "]]
        if left:
            parts.append([left, "left", 0, ", "])    # "1.2 s, ≤ 4 s left"

        def size():
            return sum(len(p[0]) + len(p[3]) for p in parts)
        for drop in (1, 2, 3):
            if size() <= width:
                break
            parts = [p for p in parts if p[2] != drop]
            if drop == 3 and left:
                parts[-1][3] = "  "
        over = size() - width
        if over > 0:
            head = parts[0][0]
            dots = "..." if self.ascii else "\u2026"
            keep = max(len(head) - over - len(dots), len("refhound: "))
            parts[0][0] = head[:keep] + dots
        if size() > width:          # a very narrow terminal: cut, never wrap
            return [("", "".join(p[3] + p[0] for p in parts)[:max(width, 1)], None)]
        return [(p[3], p[0], p[1]) for p in parts]

    def __call__(self, info):
        if not self.enabled:
            return
        new_phase = self.track(info)
        now = self.clock()
        if not new_phase and self.drawn_at is not None and \
                now - self.drawn_at < 1.0 / self.REDRAWS_PER_SECOND:
            return
        self.drawn_at = now
        parts = self.text(info, self._width())
        plain = "".join(sep + t for sep, t, _ in parts)
        line = "".join(sep + (self.paint(t, role) if role else t) for sep, t, role in parts)
        if self.dumb:
            self._write("\r" + line + " " * max(self.shown - len(plain), 0))
        else:
            self._write("\r\033[K" + line)
        self.shown = max(len(plain), 1)

    def _write(self, text):
        """Write and flush; a stream that fails (closed, a broken pipe, an
        encoding it refuses) turns the line off, never the check."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):       # UnicodeEncodeError is a ValueError
            self.enabled = False

    def _width(self):
        if self.columns:
            return self.columns - 1
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        return (columns or 80) - 1

    def clear(self):
        if self.shown:
            self._write("\r" + " " * self.shown + "\r" if self.dumb else "\r\033[K")
            self.shown = 0
            self.drawn_at = None
