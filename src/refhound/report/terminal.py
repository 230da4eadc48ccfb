"""Terminal rendering of a Result, and the live progress line."""
import sys

_VERDICT_STYLE = {"leak": "31;1", "error": "35;1", "clean": "32;1", "inconclusive": "33;1"}


def _fmt_rate(value, unit=""):
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
    lines.append("            " + "".join("%10s" % _fmt_rate(pc.get(c[0])) for c in cols))
    if r.samples and r.samples[0].get("arenas", -1) >= 0:
        a, b = r.samples[0], r.samples[-1]
        lines.append("            pymalloc: arenas %d -> %d, pools in use %d -> %d, blocks in use %d -> %d"
                     % (a["arenas"], b["arenas"], a["pools"], b["pools"], a["pymalloc_blocks"],
                        b["pymalloc_blocks"]))
    if r.debug_refs_per_call is not None:
        lines.append("            sys.gettotalrefcount(): %s per call" % _fmt_rate(r.debug_refs_per_call))
    if r.objects:
        lines.append("")
        lines.append("  leaking objects (per call)")
        for o in r.objects[:10]:
            lines.append("    %10s  %s" % (_fmt_rate(o["count_per_call"]), o["type"]))
    if r.refcount_growth:
        lines.append("")
        title = "growing reference counts" if r.verdict != "error" else "falling reference counts"
        lines.append("  %s (references per call)" % title)
        for g in r.refcount_growth[:10]:
            lines.append("    %10s  %s %s" % (_fmt_rate(g["refs_per_call"]), g["type"], g["repr"]))
    if r.sites:
        lines.append("")
        if r.sites[0].get("blocks_per_call") is not None:
            lines.append("  leak sites (where the surviving blocks were allocated)")
        else:
            lines.append("  reference sites (refcount writes left unbalanced, found with "
                         "hardware watchpoints)")
        for n, s in enumerate(r.sites[:5]):
            lines.extend(_site_lines(s, n == 0, color))
    for note in r.notes:
        lines.append("  note: %s" % note)
    return "\n".join(lines) + "\n"


def _where(site):
    if site.get("file"):
        return "%s:%s" % (site["file"], site["line"])
    return site.get("module") or "?"


def _site_lines(site, first, color):
    rate = []
    if site.get("blocks_per_call") is not None:
        rate.append("%s blocks, %s bytes per call" % (_fmt_rate(site["blocks_per_call"]),
                                                     _fmt_rate(site.get("bytes_per_call"))))
    if site.get("refs_per_call") is not None:
        rate.append("%s references per call" % _fmt_rate(site["refs_per_call"]))
    where = ("in %s()" % site["function"]) if site.get("function") else (
        "in the definition of %s" % site.get("type_symbol") if site.get("type_symbol") else "")
    head = "    %s %s  %s" % (_where(site), where, "; ".join(rate))
    out = [_style(head, "1", color) if first else head]
    for n, text, is_culprit in site.get("source", []):
        mark = ">" if is_culprit else " "
        line = "      %s %5d | %s" % (mark, n, text)
        out.append(_style(line, "33", color) if is_culprit else line)
    for step in site.get("history", []):
        out.append("      " + step)
    if site.get("allocated_at"):
        out.append("      instances allocated at %s" % site["allocated_at"])
    if site.get("python"):
        py = site["python"][0]
        out.append("      called from %s:%s in %s" % (py.get("file"), py.get("line"),
                                                      py.get("function")))
    if site.get("reason"):
        out.append("      (%s)" % site["reason"])
    return out


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
