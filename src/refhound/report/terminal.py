"""What a person reads in a terminal: the report of a check (`render`, for
refhound check, refhound.loop, refhound demo), the lines of a leaking test
under pytest --refhound (`test_headline`, `test_details`), and the live
progress line.  Sites are drawn by one function for both."""
import sys

_VERDICT_STYLE = {"leak": "31;1", "error": "35;1", "clean": "32;1", "inconclusive": "33;1"}


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


def _style(text, code, color):
    return "\033[%sm%s\033[0m" % (code, text) if color else text


def render(result, color=False):
    """The report a person reads in a terminal."""
    r = result
    pc = r.per_call
    lines = []
    head = _style(r.verdict.upper(), _VERDICT_STYLE.get(r.verdict, "1"), color)
    lines.append("refhound check %s" % r.target)
    summary = {
        "leak": "grows call after call",
        "error": "reference count falls call after call (an extra DECREF: this ends in a crash)",
        "clean": "nothing grows",
        "inconclusive": "a trend that is not significant yet: run with more --iterations",
    }[r.verdict]
    if r.incomplete:
        summary = "could not conclude: " + r.incomplete
    elif r.verdict == "inconclusive" and r.notes:
        summary = "no conclusion (see the note below)"
    lines.append("  verdict   %s: %s" % (head, summary))
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
            lines.extend(site_lines(s, "    ", full=True, color=color, first=n == 0))
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
    head = "%s%s %s  %s" % (indent, place, where, "; ".join(rate))
    out = [_style(head.rstrip(), "1", color) if first else head.rstrip()]
    if culprit and culprit.get("reason"):
        out.append(indent + "  culprit: " + culprit["reason"])
        if (culprit.get("file"), culprit.get("line")) != (site.get("file"), site.get("line")) \
                and site.get("file"):
            out.append(indent + "  allocated at %s in %s()" % (_where(site), site.get("function")))
    for entry in site.get("source") or []:
        n, text, is_culprit = entry
        if not full and not is_culprit:
            continue
        mark = ">" if is_culprit else " "
        line = "%s  %s %5d | %s" % (indent, mark, n, text if full else str(text).strip())
        out.append(_style(line, "33", color) if is_culprit else line)
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


def test_headline(record):
    """One line: what leaks, per call."""
    result = record.get("result") or {}
    per_call = result.get("per_call") or {}
    parts = []
    for key, label in _HEADLINE_RATES:
        value = per_call.get(key)
        if value is not None and abs(value) >= 0.05:
            parts.append("%s %s" % (fmt_rate(value), label))
    types = [o["type"] for o in result.get("objects") or []][:3]
    text = "refhound: %s" % record["outcome"].upper()
    if parts:
        text += " %s per call" % ", ".join(parts)
    if types:
        text += " (%s)" % ", ".join(types)
    return text


def test_details(record, indent="  "):
    """The lines under a leaking test: types, growing objects, sites."""
    result = record.get("result") or {}
    lines = []
    if record.get("reason"):
        lines.append(indent + record["reason"])
    it = result.get("iterations") or {}
    if it:
        lines.append(indent + "measured %s iterations x %s calls after %s warm-up, %.2f s" % (
            it.get("measured"), result.get("calls_per_iteration"), it.get("warmup"),
            result.get("seconds") or 0.0))
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
                lines.extend(site_lines(site, indent + "    ", full=False))
    sites = result.get("sites") or []
    if sites:
        lines.append(indent + "culprit sites (where the surviving blocks were allocated):")
        for site in sites[:5]:
            lines.extend(site_lines(site, indent + "  ", full=False))
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


class ProgressLine:
    """A one-line status on stderr, redrawn in place; silent when not a tty."""

    def __init__(self, stream=None, enabled=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.shown = False

    def __call__(self, info):
        if not self.enabled:
            return
        rate = info["refs_delta"] / max(info["calls"], 1)
        text = "refhound: %s  %s %d (x%d calls)  refs %+.3g/call  %.1fs" % (
            info["target"], info["phase"], info["iteration"], info["calls"], rate, info["seconds"])
        self.stream.write("\r\033[K" + text[:160])
        self.stream.flush()
        self.shown = True

    def clear(self):
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False
