"""HTML rendering of results: one self-contained file a person opens in a browser.

Input is the JSON the tools write (never live objects): a `Result.to_dict()`
of `refhound check`, a list of them (`refhound run --json`, or the entries of
`pytest --refhound-json`, each with a `pytest` key), or the summary of
`refhound valgrind --json`.  Output is one HTML file with inline CSS, a small
inline script and charts drawn as inline SVG (report/svg.py): nothing is
loaded from the network (a Content-Security-Policy says so to the browser),
and the essentials (verdict, charts, sources, stacks) read without
JavaScript; the script only adds hover read-outs on the charts and an
expand-all button, and marks the page when it fails (data-rh-error).

Every string that came from the program under test (a repr, a path, a type
name) goes through `esc`, so hostile text stays text.  Long runs stay small:
charts are downsampled (svg.py) and the exact-figures table keeps
SAMPLE_ROWS evenly spaced rows.
"""
import datetime
import json
import os
import sys

from .html_assets import CSP, CSS, ERROR_TRAP, SCRIPT
from .svg import W, bar_chart, esc, fmt_exact, fmt_num, line_chart, median, theil_sen
from .verdict_text import VERDICT_TEXT, summary_text

SAMPLE_ROWS = 40        # rows of the exact-figures table
MAX_SITES = 10
MAX_FRAMES = 40

# The growth charts: JSON key, title, unit.
METRICS = (
    ("refs", "references", ""),
    ("objects", "live objects", ""),
    ("blocks", "live blocks", ""),
    ("bytes", "bytes in blocks", "B"),
    ("native_bytes", "native heap bytes", "B"),
    ("rss_bytes", "resident set (RSS)", "B"),
)
RATE_KEYS = ("refs", "objects", "blocks", "bytes", "native_bytes", "rss_bytes", "fds")
RATE_LABELS = {"refs": "refs", "objects": "objects", "blocks": "blocks", "bytes": "bytes",
               "native_bytes": "native bytes", "rss_bytes": "RSS bytes", "fds": "fds"}

TREND_HELP = ("the trend test (Mann-Kendall) on the measured samples: growing or falling "
              "when significant (p shown); flat, noise or unclear when not")
FLAGGED = ("leak", "error", "fixture", "inconclusive", "bad-marker")

MEMORY_ERROR_LABELS = {
    "use-after-free": "use after free", "overflow": "heap overflow",
    "underflow": "heap underflow", "double-free": "double free",
    "invalid-free": "invalid free", "mismatched-free": "mismatched free",
    "invalid-read": "invalid read", "invalid-write": "invalid write",
    "uninitialised": "use of uninitialised memory",
}
ROLE_NAMES = {"access": "accessed", "free": "freed", "alloc": "allocated",
              "allocated": "allocated", "freed": "freed",
              "origin": "uninitialised value created"}
LEAK_CLASSES = {"per-call": "growing with the calls", "lost-in-scope": "lost",
                "grew-in-scope": "still referenced, grew", "lost-at-exit": "lost at exit"}


class BadInput(ValueError):
    """The JSON is not something refhound wrote (the message is one line)."""


# ---------------------------------------------------------------------------
# Input


def load(path):
    """The parsed JSON of `path`; BadInput (one line) when it cannot be read
    or is not a refhound result."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise BadInput("no such file: %s" % path)
    except IsADirectoryError:
        raise BadInput("%s is a directory, not a result file" % path)
    except OSError as exc:
        raise BadInput("cannot read %s: %s" % (path, exc.strerror or exc))
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput("%s is not JSON (%s)" % (path, str(exc).splitlines()[0]))
    kind(data, path)
    return data


def kind(data, name="the input"):
    """'result', 'suite' or 'valgrind'; BadInput for anything else."""
    if isinstance(data, dict):
        if data.get("tool") == "memcheck" and isinstance(data.get("errors"), list):
            return "valgrind"
        if _is_result(data):
            return "result"
    elif isinstance(data, list) and all(isinstance(e, dict) and "target" in e and
                                        "verdict" in e for e in data):
        return "suite"
    raise BadInput("%s is not a refhound result (expected the JSON of refhound check, "
                   "refhound run, refhound valgrind or pytest --refhound-json)" % name)


def _is_result(d):
    return ("target" in d and d.get("verdict") in ("leak", "error", "clean", "inconclusive")
            and isinstance(d.get("per_call"), dict))


# ---------------------------------------------------------------------------
# Pieces of a result


def _series(samples, key):
    """The series of `key` over the samples, or None when not measured."""
    try:
        values = [s[key] for s in samples]
    except (KeyError, TypeError):
        return None
    if not values or any(not isinstance(v, (int, float)) or v < 0 for v in values):
        return None
    return values


def _base_index(result):
    """Index of the baseline sample (the last warm-up sample)."""
    warmup = (result.get("iterations") or {}).get("warmup") or 0
    return max(int(warmup) - 1, 0)


def growth_charts(result):
    samples = result.get("samples") or []
    if not isinstance(samples, list) or len(samples) < 2:
        return '<p class="muted">No samples in this result: nothing to chart.</p>'
    base = min(_base_index(result), len(samples) - 1)
    calls = result.get("calls_per_iteration") or 1
    per_call = result.get("per_call") or {}
    trends = result.get("trends") or {}
    cells = []
    for key, title, unit in METRICS:
        values = _series(samples, key)
        if values is None:
            cells.append('<figure class="chartbox"><figcaption><b>%s</b> '
                         '<span class="muted">not measured here</span></figcaption></figure>'
                         % esc(title))
            continue
        ref = values[base]
        delta = [v - ref for v in values]
        rate = per_call.get(key)
        xs = list(range(base, len(delta)))
        if rate is not None:
            slope = rate * calls
            intercept = median([delta[i] - slope * i for i in xs])
        else:
            slope, intercept = theil_sen(xs, [delta[i] for i in xs])
        trend = trends.get(key) or {}
        word = trend.get("trend") or ""
        trending = word in ("growing", "falling")
        p = trend.get("p_up") if word == "growing" else trend.get("p_down")
        verdict = esc(word) + (" (p = %.2g)" % p if trending and isinstance(p, (int, float))
                               else "")
        label = "%s: change since the end of warm-up, per iteration of %s calls" % (title, calls)
        chart = line_chart(delta, base + 1, slope, intercept, unit, _flagged(result, key), label)
        cells.append(
            '<figure class="chartbox%s"><figcaption><b>%s</b> <span class="rate">%s per call'
            '</span> <span class="trend %s" title="%s">%s</span></figcaption>%s</figure>'
            % (" hot" if _flagged(result, key) else "", esc(title),
               esc(fmt_num(rate, unit, signed=True)),
               esc(word) if _flagged(result, key) else "quiet", TREND_HELP, verdict, chart))
    legend = ('<p class="legend"><span class="sw series"></span> change since the end of '
              'warm-up &nbsp; <span class="sw fit"></span> fitted trend (Theil-Sen slope = '
              'rate per call &times; %s calls) &nbsp; <span class="sw warm"></span> warm-up'
              '</p>' % esc(calls))
    return legend + '<div class="charts">%s</div>' % "".join(cells)


def survivors_chart(result):
    """Bars of the blocks born in each measured epoch and still alive."""
    surv = result.get("survivors") or {}
    blocks = surv.get("blocks") if isinstance(surv, dict) else None
    if not blocks:
        return ""
    first = surv.get("first_epoch") or 0
    samples = result.get("samples") or []
    later = 0
    if samples and isinstance(samples[-1], dict) and isinstance(samples[-1].get("epoch"), int):
        # Epochs after the last sample are the confirmation, diagnosis and
        # attribution iterations: other call counts, not the measurement.
        keep = max(samples[-1]["epoch"] - first + 1, 0)
        later = max(len(blocks) - keep, 0)
        blocks = blocks[:keep]
    if not blocks:
        return ""
    calls = result.get("calls_per_iteration") or 1
    rate = (result.get("per_call") or {}).get("blocks")
    expected = rate * calls if rate and rate > 0 else None
    # With no later epoch, the last one was still open when the figures were
    # read: it also holds what the check allocated after its last sample.
    open_last = later == 0 and len(blocks) > 1
    chart = bar_chart(blocks, first,
                      (lambda i: i < len(blocks) - 1) if open_last else None,
                      "", "epoch: blocks still alive", expected, width=2 * W)
    note = ("Blocks born in each measured iteration (birth epoch %d to %d) and still alive at "
            "the end. A leak leaves the same number in every epoch; a cache only in the first "
            "ones." % (first, first + len(blocks) - 1))
    if expected:
        note += " Dashed: %s blocks per iteration, from the rate." % fmt_num(expected)
    if later:
        note += (" Not drawn: %d later epochs (confirmation at another call count, diagnosis, "
                 "attribution)." % later)
    if open_last:
        note += (" Grey: the last epoch, still open when the figures were read (it also holds "
                 "what the check allocated after its last sample).")
    return '<figure class="chartbox wide">%s<figcaption class="muted">%s</figcaption></figure>' % (
        chart, esc(note))


def _flagged(result, key):
    """Does the rate of `key` stand out: its series trends (the engine's
    test), or it is a count the verdict rests on, in a leak or an error."""
    value = (result.get("per_call") or {}).get(key)
    if value is None or abs(value) < 0.05:
        return False
    trend = ((result.get("trends") or {}).get(key) or {}).get("trend")
    return trend in ("growing", "falling") or (
        result.get("verdict") in ("leak", "error") and key in ("refs", "objects", "blocks",
                                                               "bytes", "fds"))


def _per_call_table(result):
    per_call = result.get("per_call") or {}
    head = "".join("<th>%s</th>" % esc(RATE_LABELS[k]) for k in RATE_KEYS)
    cells = "".join('<td class="num%s">%s</td>' % (" hot" if _flagged(result, k) else "",
                                                   esc(fmt_num(per_call.get(k), signed=True)))
                    for k in RATE_KEYS)
    return ('<table class="rates"><tr><th></th>%s</tr><tr><th>per call</th>%s</tr></table>'
            % (head, cells))


def _where(site):
    c = site.get("culprit") if isinstance(site.get("culprit"), dict) else site
    file, line = c.get("file"), c.get("line")
    if file:
        return "%s:%s" % (file, line if line is not None else "?")
    if c.get("symbol"):
        # No line to know (no DWARF): the function by symbol+offset, the module.
        return "%s (%s)" % (c["symbol"], c.get("module") or "?")
    return c.get("module") or c.get("object") or "(no frame in your code)"


def _short(path):
    return os.path.basename(path) if path else ""


SOURCE_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".inc", ".pyx",
                   ".pxd", ".pxi", ".rs", ".py", ".m", ".mm", ".f", ".f90")


def _read_source(file, line, around=2):
    """[(n, text, is_culprit)] read now, for sites that carry no source.
    Only source files: a result file names the paths, and the page must
    not carry lines of any other file of the machine that renders it."""
    if not isinstance(file, str) or not isinstance(line, int) or line < 1 or \
            not file.endswith(SOURCE_SUFFIXES) or not os.path.isfile(file):
        return []
    try:
        with open(file, errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    lo, hi = max(1, line - around), min(len(lines), line + around)
    return [(n, lines[n - 1], n == line) for n in range(lo, hi + 1)]


def source_html(source, file=None, line=None):
    rows = []
    for entry in source or []:
        if not isinstance(entry, (list, tuple)) or len(entry) < 3:
            continue
        n, text, hot = entry[0], entry[1], entry[2]
        rows.append('<tr class="%s"><td class="ln">%s</td><td class="mark">%s</td>'
                    '<td class="code">%s</td></tr>'
                    % ("culprit" if hot else "", esc(n), "&#9654;" if hot else "",
                       esc(text) or "&nbsp;"))
    if not rows:
        return ""
    title = esc(file) if file else ""
    return ('<div class="source"><div class="srcfile">%s</div><table>%s</table></div>'
            % (title, "".join(rows)))


def _frame_module(f):
    return f.get("module") or f.get("object") or ""


def _same_frame(f, c):
    """Is frame f the culprit c (same file, line and, if named, function)?"""
    return (bool(c) and bool(c.get("file")) and f.get("file") == c.get("file")
            and f.get("line") == c.get("line")
            and (not c.get("function") or f.get("function") == c.get("function")))


def stack_tree(frames, culprit=None, title="Allocation stack", open_=False):
    """Frames (innermost first) as a tree: consecutive frames of one module
    under one expandable node (open for the module of the culprit), frames
    inlined into another nested under it."""
    frames = [f for f in (frames or []) if isinstance(f, dict)][:MAX_FRAMES]
    if not frames:
        return ""
    groups = []
    for f in frames:
        mod = _frame_module(f)
        if groups and groups[-1][0] == mod:
            groups[-1][1].append(f)
        else:
            groups.append((mod, [f]))
    # The node to open: the culprit's frame's module, else the culprit's own.
    culprit_mod = next((_frame_module(f) for f in frames if _same_frame(f, culprit)),
                       _frame_module(culprit) if culprit else None) or None
    out = ['<details class="stack"%s><summary>%s <span class="muted">(%d frames, innermost '
           'first)</span></summary><ul class="tree">' % (" open" if open_ else "", esc(title),
                                                          len(frames))]
    for mod, fs in groups:
        mine = culprit_mod is not None and mod == culprit_mod
        out.append('<li><details%s><summary class="mod%s" title="%s">%s <span class="muted">'
                   '%d frame%s</span></summary><ul>'
                   % (" open" if mine else "", " user" if mine else "", esc(mod),
                      esc(_short(mod) or "(unknown module)"), len(fs),
                      "" if len(fs) == 1 else "s"))
        pending = []        # inlined frames waiting for the frame they are inlined into
        for f in fs:
            if f.get("inlined"):
                pending.append(f)
                continue
            out.append(_frame_li(f, culprit, pending))
            pending = []
        if pending:
            out.append(_frame_li(pending[-1], culprit, pending[:-1]))
        out.append("</ul></details></li>")
    out.append("</ul></details>")
    return "".join(out)


def _frame_li(f, culprit, inlined):
    hot = _same_frame(f, culprit)
    inner = ""
    if inlined:
        inner = "<ul>%s</ul>" % "".join(
            '<li class="frame inl%s">%s <span class="tag">inlined</span></li>'
            % (" culprit" if _same_frame(g, culprit) else "", _frame_text(g)) for g in inlined)
    return '<li class="frame%s">%s%s</li>' % (" culprit" if hot else "", _frame_text(f), inner)


def _frame_text(f):
    func = f.get("function") or "??"
    where = ""
    if f.get("file"):
        where = ' <span class="loc" title="%s">%s:%s</span>' % (
            esc(f["file"]), esc(_short(f["file"])), esc(f.get("line") if f.get("line") is not None
                                                      else "?"))
    elif f.get("address"):
        where = ' <span class="loc">%s</span>' % esc(hex(f["address"]) if isinstance(
            f["address"], int) else f["address"])
    return "<code>%s</code>%s" % (esc(func), where)


def python_frames(frames):
    frames = [f for f in (frames or []) if isinstance(f, dict)]
    if not frames:
        return ""
    rows = "".join('<li><code>%s</code> <span class="loc" title="%s">%s:%s</span></li>'
                   % (esc(f.get("function")), esc(f.get("file")), esc(f.get("file")),
                      esc(f.get("line"))) for f in frames[:MAX_FRAMES])
    return ('<details class="stack" open><summary>Python frames <span class="muted">(%d, '
            'innermost first)</span></summary><ul class="pyframes">%s</ul></details>'
            % (len(frames), rows))


def history_html(site):
    parts = []
    for text in site.get("history") or []:
        parts.append('<p class="history">%s</p>' % esc(text))
    events = site.get("history_events") or []
    if events:
        rows = []
        for n, e in enumerate(events):
            if not isinstance(e, dict):
                continue
            delta = e.get("delta")
            step = "created" if delta is None else "%+d" % delta if isinstance(delta, int) \
                else esc(delta)
            where = "%s:%s" % (_short(e.get("file")), e.get("line")) if e.get("file") \
                else "the interpreter"
            rows.append('<tr><td class="num">%d</td><td>%s</td><td class="num">%s</td>'
                        '<td><span class="loc" title="%s">%s</span></td><td><code>%s</code></td>'
                        '<td><code>%s</code></td></tr>'
                        % (n + 1, esc(step), esc(e.get("refcnt")), esc(e.get("file")),
                           esc(where), esc(e.get("function") or ""), esc(e.get("api") or "")))
        parts.append('<table class="events"><tr><th>#</th><th>change</th><th>refcount</th>'
                     '<th>where</th><th>function</th><th>through</th></tr>%s</table>'
                     % "".join(rows))
    if not parts:
        return ""
    return '<div class="life"><h5>Life history of one leaked object</h5>%s</div>' % "".join(parts)


def _what(site):
    """'in <code>f()</code>' or 'in the definition of <code>T</code>' or ''."""
    c = site.get("culprit") if isinstance(site.get("culprit"), dict) else site
    if c.get("function"):
        return "in <code>%s()</code>" % esc(c["function"])
    if site.get("type_symbol"):
        return "in the definition of <code>%s</code>" % esc(site["type_symbol"])
    return ""


def site_html(site, number, anchor="", open_stack=False):
    if not isinstance(site, dict):
        return ""
    c = site.get("culprit") if isinstance(site.get("culprit"), dict) else site
    rates = []
    if site.get("blocks_per_call") is not None:
        text = _count(site["blocks_per_call"], "block", signed=True)
        root = site.get("root_blocks_per_call")
        if root is not None and site["blocks_per_call"] and root != site["blocks_per_call"]:
            text += " (%s not held by another survivor)" % fmt_num(root)
        rates.append(text)
    if site.get("bytes_per_call") is not None:
        rates.append(_count(site["bytes_per_call"], "byte", signed=True))
    if site.get("refs_per_call") is not None:
        rates.append(_count(site["refs_per_call"], "reference", signed=True))
    what = _what(site)
    head = ('<h4 id="%s"><span class="rank">%s</span> <span class="where" title="%s">%s</span> '
            '%s <span class="rate">%s</span></h4>'
            % (esc(anchor), esc(number), esc(_where(site)), esc(_where(site)), what,
               esc(", ".join(rates) + (" per call" if rates else ""))))
    out = ['<div class="site">', head]
    culprit = site.get("culprit") if isinstance(site.get("culprit"), dict) else None
    if culprit and culprit.get("reason"):
        out.append('<p class="culpritreason">Culprit: %s</p>' % esc(culprit["reason"]))
        if site.get("file") and not site.get("allocated_at") and (
                (culprit.get("file"), culprit.get("line")) != (site.get("file"), site.get("line"))):
            out.append('<p>Allocated at <span class="loc">%s:%s</span>%s</p>'
                       % (esc(site["file"]), esc(site.get("line")),
                          " in <code>%s()</code>" % esc(site["function"])
                          if site.get("function") else ""))
    if site.get("reason"):
        out.append('<p class="reason">%s</p>' % esc(site["reason"]))
    if site.get("allocated_at"):
        out.append('<p>Instances allocated at <span class="loc">%s</span></p>'
                   % esc(site["allocated_at"]))
    source = site.get("source") or _read_source(c.get("file"), c.get("line"))
    out.append(source_html(source, c.get("file"), c.get("line")))
    out.append(history_html(site))
    out.append(stack_tree(site.get("frames") or site.get("stack"), c, open_=open_stack))
    out.append(python_frames(site.get("python")))
    out.append("</div>")
    return "".join(out)


def objects_html(result):
    objs = [o for o in result.get("objects") or [] if isinstance(o, dict)]
    if not objs:
        return ""
    top = max(abs(o.get("count_per_call") or 0) for o in objs) or 1
    rows = "".join(
        '<tr><td><code>%s</code></td><td class="num">%s</td><td class="barcell"><span '
        'class="hbar" style="width:%.0f%%"></span></td></tr>'
        % (esc(o.get("type")), esc(fmt_num(o.get("count_per_call"), signed=True)),
           100.0 * abs(o.get("count_per_call") or 0) / top) for o in objs[:30])
    return ('<table class="objects"><tr><th>type</th><th>new objects per call</th><th></th></tr>'
            '%s</table>' % rows)


def growth_html(result, prefix, shown_sites=()):
    """The objects whose refcount moves, and their unbalanced writes (a site
    already shown among the result's sites is referred to, not repeated)."""
    growth = [g for g in result.get("refcount_growth") or [] if isinstance(g, dict)]
    if not growth:
        return ""
    shown = {}
    for n, s in enumerate(shown_sites):
        shown.setdefault((s.get("file"), s.get("line"), s.get("function")), n)
    out = ['<table class="growth"><tr><th>type</th><th>object</th><th>references per call'
           '</th><th>unbalanced writes</th></tr>']
    details = []
    for k, g in enumerate(growth[:20]):
        rate = g.get("refs_per_call")
        links = []
        for j, s in enumerate([s for s in g.get("sites") or [] if isinstance(s, dict)][:3]):
            key = (s.get("file"), s.get("line"), s.get("function"))
            if key in shown:
                anchor = "%s-s%d" % (prefix, shown[key])
            else:
                anchor = "%s-g%d-%d" % (prefix, k, j)
                details.append(site_html(s, "%d.%d" % (k + 1, j + 1), anchor))
            links.append('<a href="#%s" class="loc">%s</a>' % (esc(anchor), esc(_where(s))))
        out.append('<tr><td><code>%s</code></td><td><code class="repr">%s</code></td>'
                   '<td class="num %s">%s</td><td>%s</td></tr>'
                   % (esc(g.get("type")), esc(g.get("repr")),
                      "down" if (rate or 0) < 0 else "hot", esc(fmt_num(rate, signed=True)),
                      ", ".join(links)))
    out.append("</table>")
    return "".join(out + details)


def types_html(result, objects):
    types = [t for t in result.get("types") or [] if isinstance(t, dict)]
    if not types:
        return ""
    leaking = {o.get("type") for o in objects}
    rows = "".join(
        '<tr class="%s"><td><code>%s</code></td><td class="num">%s</td><td class="num">%s</td>'
        '<td class="num">%s</td><td class="num">%s</td></tr>'
        % ("hot" if t.get("type") in leaking else "", esc(t.get("type")),
           esc(fmt_exact(t.get("allocs"))), esc(fmt_exact(t.get("frees"))),
           esc(fmt_exact(t.get("max_live"))), esc(fmt_exact(t.get("live"))))
        for t in types[:40])
    return ('<details class="types"><summary>Allocations per type (%d types, most allocated '
            'first; leaking types marked)</summary><table class="types"><tr><th>type</th>'
            '<th>allocs</th><th>frees</th><th>max live</th><th>live at the end</th></tr>%s'
            '</table></details>' % (len(types), rows))


def samples_table(result):
    samples = [s for s in result.get("samples") or [] if isinstance(s, dict)]
    if not samples:
        return ""
    n = len(samples)
    base = min(_base_index(result), n - 1)
    if n <= SAMPLE_ROWS:
        rows = list(range(n))
    else:
        rows = sorted({base, n - 1} | {round(k * (n - 1) / (SAMPLE_ROWS - 1.0))
                                      for k in range(SAMPLE_ROWS)})
    keys = [k for k in ("refs", "objects", "blocks", "bytes", "native_bytes", "rss_bytes",
                        "fds") if any(k in s for s in samples)]
    head = "".join("<th>%s</th>" % esc(RATE_LABELS[k]) for k in keys)
    body = []
    for i in rows:
        s = samples[i]
        phase = "warm-up" if i < base else "baseline" if i == base else "measured"
        body.append('<tr class="%s"><td class="num">%d</td><td>%s</td>%s</tr>' % (
            phase, i, phase, "".join('<td class="num">%s</td>' % esc(fmt_exact(s.get(k)))
                                     for k in keys)))
    more = " (%d of %d rows, evenly spaced)" % (len(rows), n) if len(rows) < n else ""
    return ('<details class="samples"><summary>Exact figures per iteration%s</summary>'
            '<table class="samples"><tr><th>iteration</th><th>phase</th>%s</tr>%s</table>'
            '</details>' % (esc(more), head, "".join(body)))


def memory_errors_html(errors, prefix):
    errors = [e for e in errors or [] if isinstance(e, dict)]
    if not errors:
        return ""
    out = []
    for n, e in enumerate(errors):
        label = MEMORY_ERROR_LABELS.get(e.get("kind"), e.get("kind") or "memory error")
        c = e.get("culprit") if isinstance(e.get("culprit"), dict) else {}
        out.append('<div class="site merr" id="%s-m%d"><h4><span class="rank">%d</span> '
                   '<span class="kind">%s</span> <span class="where">%s</span>%s%s</h4>'
                   % (esc(prefix), n, n + 1, esc(label), esc(_where(c) if c else "?"),
                      " in <code>%s()</code>" % esc(c["function"]) if c.get("function") else "",
                      ' <span class="muted">object of type <code>%s</code></span>'
                      % esc(e["type"]) if e.get("type") else ""))
        if e.get("what"):
            out.append('<p class="reason">%s</p>' % esc(e["what"]))
        out.append(source_html(c.get("source") or _read_source(c.get("file"), c.get("line")),
                               c.get("file"), c.get("line")))
        first = True
        for role in ("access", "freed", "free", "allocated", "alloc"):
            frames = _stack_frames(e.get(role))
            if frames:
                out.append(stack_tree(frames, c, "Stack where it was %s" % ROLE_NAMES[role],
                                      open_=first))
                first = False
        out.append("</div>")
    return "".join(out)


def _count(value, noun, signed=False):
    """'1 block', '+2 blocks', '0.5 blocks'."""
    text = fmt_num(value, signed=signed)
    return "%s %s%s" % (text, noun, "" if text.lstrip("+-") == "1" else "s")


def _stack_frames(value):
    if isinstance(value, list):
        return [f for f in value if isinstance(f, dict)]
    if isinstance(value, dict):
        for key in ("frames", "stack"):
            if isinstance(value.get(key), list):
                return value[key]
        if value.get("file") or value.get("function"):
            return [value]
    return []


# ---------------------------------------------------------------------------
# The machine


def machine_facts():
    """A short subset of `refhound doctor`: interpreter, build, allocator,
    debug symbols, libdw, watchpoints, Valgrind.  Never raises."""
    facts = {"rendered": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")}
    try:
        import platform
        facts["platform"] = platform.platform()
        facts["cpus"] = os.cpu_count()
    except Exception:       # a fact we cannot read is left out
        pass
    try:
        from .. import __version__
        facts["refhound"] = __version__
    except Exception:
        pass
    try:
        from ..commands.doctor import diagnose
        facts["doctor"] = diagnose()
    except Exception as exc:
        facts["doctor_error"] = "%s: %s" % (type(exc).__name__, exc)
    return facts


def _yes(value):
    return "unknown" if value is None or value == "unknown" else "yes" if value else "no"


def machine_html(facts):
    if not facts:
        return ""
    rows = []

    def row(name, value):
        rows.append("<tr><th>%s</th><td>%s</td></tr>" % (esc(name), esc(value)))

    d = facts.get("doctor") or {}
    i = d.get("interpreter") or {}
    if i:
        row("Python", "%s %s (%s)" % (i.get("implementation", ""), i.get("python"),
                                     i.get("executable")))
        row("build", "debug (Py_DEBUG)" if i.get("py_debug") else "release")
        row("Py_REF_DEBUG / Py_TRACE_REFS", "%s / %s" % (_yes(i.get("py_ref_debug")),
                                                          _yes(i.get("py_trace_refs"))))
        row("object allocator", i.get("allocator"))
        row("free lists", "on" if i.get("freelists") else "off")
        row("immortal objects", _yes(i.get("immortal_objects")))
        row("free-threading", _yes(i.get("free_threading")))
    s = (d.get("debug_symbols") or {}).get("interpreter") or {}
    if s:
        row("interpreter debug symbols", s.get("verdict"))
    fp = d.get("frame_pointers") or {}
    if fp:
        row("frame pointers in the interpreter", fp.get("interpreter") or "unknown")
    lib = d.get("libdw") or {}
    if lib:
        row("libdw (file:line of native frames)", "%s; engine uses it: %s"
            % (lib.get("library") or "not found", _yes(lib.get("engine_uses_it"))))
    w = d.get("watchpoints") or {}
    if w:
        row("hardware watchpoints", "allowed" if w.get("allowed") else
            "not available: %s" % (w.get("error") or "unknown"))
    v = d.get("valgrind") or {}
    if v:
        row("Valgrind", v.get("version") if v.get("present") else "not installed")
    e = d.get("engine") or {}
    if e:
        row("engine", e.get("path") if e.get("loaded") else "not loaded: %s" % e.get("error"))
    if facts.get("doctor_error"):
        row("refhound doctor", "failed: %s" % facts["doctor_error"])
    for key, name in (("platform", "platform"), ("cpus", "CPUs"), ("refhound", "refhound"),
                      ("rendered", "report rendered")):
        if facts.get(key) is not None:
            row(name, facts[key])
    advice = d.get("advice") or []
    tips = ""
    if advice:
        tips = ('<details><summary>What to do to get more (refhound doctor)</summary><ul>%s'
                '</ul></details>' % "".join("<li>%s</li>" % esc(t) for t in advice))
    return ('<section id="machine"><h2>Machine and interpreter</h2><p class="muted">As '
            '<code>refhound doctor</code> finds them on the machine that rendered this '
            'report.</p><table class="facts">%s</table>%s</section>' % ("".join(rows), tips))


# ---------------------------------------------------------------------------
# Whole results


def _verdict_badge(verdict):
    name = verdict if verdict in VERDICT_TEXT else None
    return '<span class="badge v-%s">%s</span>' % (esc(name or "none"),
                                                  esc((verdict or "unchecked").upper()))


def _summary_text(result):
    return summary_text(result.get("verdict"), result.get("incomplete"), result.get("notes"))


def _top_site(result):
    """(anchor suffix, site) of the first site that names a line: among the
    leak sites, else among the refcount writes; (None, None) if none."""
    sites = [s for s in result.get("sites") or [] if isinstance(s, dict)][:MAX_SITES]
    for n, s in enumerate(sites):
        if s.get("file") or isinstance(s.get("culprit"), dict):
            return "s%d" % n, s
    growth = [g for g in result.get("refcount_growth") or [] if isinstance(g, dict)][:5]
    for k, g in enumerate(growth):
        for j, s in enumerate([s for s in g.get("sites") or [] if isinstance(s, dict)][:3]):
            if s.get("file"):
                return "g%d-%d" % (k, j), s
    return None, None


def result_body(result, prefix="r", heading=2, toc_out=None):
    """The sections of one result (no <html> around it); their (anchor,
    title) are appended to toc_out when given."""
    h = "h%d" % heading
    it = result.get("iterations") or {}
    out = []
    facts = []
    if it:
        facts.append("%s measured iterations &times; %s calls after %s warm-up"
                     % (esc(it.get("measured")), esc(result.get("calls_per_iteration")),
                        esc(it.get("warmup"))))
    if isinstance(result.get("seconds"), (int, float)):
        facts.append("%.2f s" % result["seconds"])
    debug = (result.get("debug") or {}).get("gettotalrefcount_per_call")
    if debug is not None:
        facts.append("sys.gettotalrefcount(): %s per call" % esc(fmt_num(debug, signed=True)))
    out.append('<div class="summary"><p class="verdictline">%s %s</p><p>%s</p>'
               % (_verdict_badge(result.get("verdict")), esc(_summary_text(result)),
                  " &middot; ".join(facts)))
    if isinstance(result.get("per_call"), dict):
        out.append(_per_call_table(result))
    anchor, top = _top_site(result)
    if top is not None:
        c = top.get("culprit") if isinstance(top.get("culprit"), dict) else {}
        out.append('<p class="culpritline">Culprit: <a href="#%s-%s"><span class="where">%s'
                   '</span></a> %s%s</p>' % (esc(prefix), anchor, esc(_where(top)), _what(top),
                                             ' <span class="muted">&mdash; %s</span>'
                                             % esc(c["reason"]) if c.get("reason") else ""))
    objs = [o for o in result.get("objects") or [] if isinstance(o, dict)]
    if objs:
        out.append("<p>Leaking types: %s</p>" % ", ".join(
            "<code>%s</code> %s/call" % (esc(o.get("type")),
                                         esc(fmt_num(o.get("count_per_call"), signed=True)))
            for o in objs[:5]))
    notes = [n for n in result.get("notes") or [] if n]
    if notes:
        out.append('<ul class="notes">%s</ul>' % "".join("<li>note: %s</li>" % esc(n)
                                                         for n in notes))
    out.append("</div>")
    toc = []

    def section(key, title, content):
        anchor = "%s-%s" % (prefix, key)
        toc.append((anchor, title.split(" (")[0].lower()))
        out.append('<%s id="%s">%s</%s>%s' % (h, anchor, esc(title), h, content))

    merrs = result.get("memory_errors")
    if merrs:
        section("errors", "Memory errors", memory_errors_html(merrs, prefix))
    section("growth", "Growth over the iterations", growth_charts(result))
    surv = survivors_chart(result)
    if surv:
        section("survivors", "Survivors by birth epoch", surv)
    sites = [s for s in result.get("sites") or [] if isinstance(s, dict)]
    if sites:
        title = ("Leak sites (where the surviving blocks were allocated)"
                 if sites[0].get("blocks_per_call") is not None else
                 "Reference sites (refcount writes left unbalanced, found with hardware "
                 "watchpoints)")
        section("sites", title, "".join(
            site_html(s, n + 1, "%s-s%d" % (prefix, n), open_stack=n == 0)
            for n, s in enumerate(sites[:MAX_SITES])))
    growth = growth_html(result, prefix, sites[:MAX_SITES])
    if growth:
        word = "Falling" if result.get("verdict") == "error" else "Growing"
        section("refcounts", "%s reference counts" % word, growth)
    if objs:
        section("types", "Leaking types", objects_html(result))
    extra = types_html(result, objs) + samples_table(result)
    vg = result.get("valgrind")
    if isinstance(vg, dict) and vg:
        extra += ('<details><summary>Valgrind figures</summary><pre>%s</pre></details>'
                  % esc(json.dumps(vg, indent=1, default=str)[:20000]))
    if extra:
        section("figures", "Figures", extra)
    if toc_out is not None:
        toc_out.extend(toc)
    return "".join(out)


def _result_page(result):
    title = "refhound check %s" % (result.get("target") or "")
    toc = []
    body = result_body(result, toc_out=toc)
    head = ('<header><h1><code>refhound check</code> <span class="target">%s</span></h1>'
            '<!--toc--></header>' % esc(result.get("target")))
    return title, head + body, result.get("verdict"), toc


def _entry_outcome(entry):
    py = entry.get("pytest") if isinstance(entry.get("pytest"), dict) else None
    if py and py.get("outcome"):
        return py["outcome"]
    return entry.get("verdict") or "unchecked"


def _suite_page(entries):
    """pytest --refhound (entries with a `pytest` key) or refhound run: a
    table of every entry, then a section per flagged one."""
    is_pytest = any(isinstance(e.get("pytest"), dict) for e in entries)
    what, unit = ("pytest --refhound", "test") if is_pytest else ("refhound run", "loop")
    counts = {}
    for e in entries:
        o = _entry_outcome(e)
        counts[o] = counts.get(o, 0) + 1
    order = ("leak", "error", "fixture", "inconclusive", "bad-marker", "allowed", "ignored",
             "unchecked", "skipped", "clean")
    ordered = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    worst = next((k for k in ("error", "leak", "fixture", "inconclusive") if k in counts),
                 "clean" if entries else None)
    rows, sections, toc = [], [], []
    for n, e in enumerate(entries):
        outcome = _entry_outcome(e)
        py = e.get("pytest") if isinstance(e.get("pytest"), dict) else {}
        pc = e.get("per_call") if isinstance(e.get("per_call"), dict) else {}
        top = _top_site(e)[1] if _is_result(e) else None
        flagged = outcome in FLAGGED
        name = esc(e.get("target"))
        if flagged:
            name = '<a href="#t%d">%s</a>' % (n, name)
            toc.append(("t%d" % n, e.get("target")))
        if top is not None:
            why = '<span class="loc" title="%s">%s:%s</span> %s' % (
                esc(_where(top)), esc(_short(top.get("file"))), esc(top.get("line")),
                _what(top))
        else:
            why = esc(py.get("reason") or "; ".join(str(x) for x in e.get("notes") or [] if x))
        rows.append('<tr class="o-%s"><td>%s</td><td>%s</td>%s<td>%s</td></tr>' % (
            esc(outcome), name, _verdict_badge(outcome),
            "".join('<td class="num">%s</td>' % esc(fmt_num(pc.get(k), signed=True))
                    for k in ("refs", "objects", "blocks")), why))
        if not flagged:
            continue
        body = []
        if py.get("reason"):
            body.append('<p class="reason">%s</p>' % esc(py["reason"]))
        if _is_result(e):
            body.append(result_body(e, "t%d" % n, heading=3))
        fixture = py.get("fixture_result")
        if isinstance(fixture, dict) and fixture.get("verdict") == "leak":
            fpc = fixture.get("per_call") or {}
            body.append("<p>The function-scoped fixtures alone, set up and torn down: "
                        "%s refs, %s objects, %s blocks per cycle.</p>"
                        % tuple(esc(fmt_num(fpc.get(k), signed=True))
                                for k in ("refs", "objects", "blocks")))
        sections.append('<section class="entry" id="t%d"><h2>%s <span class="target">%s'
                        '</span></h2>%s</section>'
                        % (n, _verdict_badge(outcome), esc(e.get("target")), "".join(body)))
    summary = ", ".join("%d %s" % (counts[k], k) for k in ordered)
    table = ('<table class="suite"><tr><th>%s</th><th>outcome</th><th>refs/call</th>'
             '<th>objects/call</th><th>blocks/call</th><th>culprit or reason</th></tr>%s</table>'
             % (unit, "".join(rows))) if rows else "<p>Nothing was checked.</p>"
    head = ('<header><h1><code>%s</code></h1><!--toc--></header><div class="summary">'
            '<p class="verdictline">%s %d %s%s checked%s</p>%s</div>'
            % (what, _verdict_badge(worst), len(entries), unit, "" if len(entries) == 1 else "s",
               (": " + esc(summary)) if summary else "", table))
    if not sections and entries:
        head += "<p>No %s was flagged.</p>" % unit
    return ("%s: %s" % (what, summary or "nothing checked"), head + "".join(sections), worst,
            toc[:30])


def _valgrind_page(data):
    command = data.get("command") or []
    cmd = " ".join(str(c) for c in command) if isinstance(command, list) else str(command)
    out = ['<header><h1><code>refhound valgrind</code> <span class="target">%s</span></h1>'
           '<!--toc--></header>' % esc(cmd)]
    facts = "%s allocator &middot; %s s &middot; exit status %s" % (
        esc(data.get("allocator")), esc(data.get("seconds")), esc(data.get("exit_status")))
    errors = [f for f in data.get("errors") or [] if isinstance(f, dict)]
    leaks = [f for f in data.get("leaks") or [] if isinstance(f, dict)]
    growth = [f for f in data.get("growth") or [] if isinstance(f, dict)]
    verdict = data.get("verdict")
    text = ("%d memory error%s, %d leak%s, %d growing" % (
        len(errors), "" if len(errors) == 1 else "s", len(leaks), "" if len(leaks) == 1 else "s",
        len(growth))) if (errors or leaks or growth) else "no memory errors or leaks in your code"
    out.append('<div class="summary"><p class="verdictline">%s %s</p><p>%s</p>'
               % (_verdict_badge(verdict), esc(text), facts))
    notes = [n for n in data.get("notes") or [] if n]
    if notes:
        out.append('<ul class="notes">%s</ul>' % "".join("<li>note: %s</li>" % esc(n)
                                                         for n in notes))
    out.append("</div>")
    for title, items in (("Memory errors", errors), ("Leaks", leaks),
                         ("Growth (still referenced)", growth)):
        if not items:
            continue
        out.append("<h2>%s (%d)</h2>" % (title, len(items)))
        for n, f in enumerate(items):
            out.append(_valgrind_finding(f, n, title[0].lower()))
    one = data.get("one_time") or []
    if one:
        out.append("<p>One-time allocations in checked calls (not leaks): %d</p>" % len(one))
    scopes = [s for s in data.get("scopes") or [] if isinstance(s, dict)]
    if scopes:
        out.append('<details><summary>Scopes (%d tests and checked calls)</summary><table>'
                   '<tr><th>scope</th><th>kind</th><th>errors</th></tr>%s</table></details>'
                   % (len(scopes), "".join(
                       "<tr><td>%s</td><td>%s</td><td class=\"num\">%s</td></tr>"
                       % (esc(s.get("name")), esc(s.get("kind")), esc(s.get("errors")))
                       for s in scopes[:500])))
    st = data.get("filtered") or {}
    sup = data.get("suppressions") or {}
    if st:
        out.append('<p class="muted">Noise: %s of %s errors and %s of %s loss records had no '
                   'frame in your code; %s suppressions%s.</p>'
                   % tuple(esc(x) for x in (st.get("errors_filtered"), st.get("errors_seen"),
                                            st.get("leak_records_filtered"),
                                            st.get("leak_records_seen"), sup.get("count", 0),
                                            " (generated now)" if sup.get("generated") else "")))
    return "refhound valgrind: %s" % (verdict or ""), "".join(out), verdict, []


def _valgrind_finding(f, n, tag):
    c = f.get("culprit") if isinstance(f.get("culprit"), dict) else {}
    if f.get("category") == "error":
        label = MEMORY_ERROR_LABELS.get(f.get("kind"), f.get("kind") or "error")
        role = c.get("role")
        extra = " (%s site)" % role if role and role != "access" else ""
        count = f.get("count")
        rate = "&times;%d" % count if isinstance(count, int) and count > 1 else ""
    else:
        label = "leak" if f.get("category") == "leak" else "growth"
        extra = ", %s" % LEAK_CLASSES.get(f.get("class"), f.get("class") or "")
        pc = f.get("per_call") if isinstance(f.get("per_call"), dict) else None
        if pc:
            rate = "%s, %s per call" % (_count(pc.get("blocks"), "block"),
                                        _count(pc.get("bytes"), "byte"))
        else:
            rate = esc("%s, %s" % (_count(f.get("blocks"), "block"),
                                   _count(f.get("bytes"), "byte")))
    out = ['<div class="site" id="v%s%d"><h4><span class="rank">%d</span> <span class="kind">%s'
           '</span> <span class="where" title="%s">%s</span>%s%s <span class="rate">%s</span>'
           '</h4>' % (tag, n, n + 1, esc(label), esc(_where(c)), esc(_where(c)),
                      " in <code>%s()</code>" % esc(c["function"]) if c.get("function") else "",
                      esc(extra), rate)]
    if f.get("scope"):
        out.append('<p>In %s <code>%s</code></p>' % (esc(f.get("scope_kind") or "scope"),
                                                     esc(f["scope"])))
    if f.get("what"):
        out.append('<p class="reason">%s</p>' % esc(f["what"]))
    out.append(source_html(_read_source(c.get("file"), c.get("line")), c.get("file"),
                           c.get("line")))
    sites = f.get("sites") if isinstance(f.get("sites"), dict) else {}
    others = [(r, s) for r, s in sites.items() if isinstance(s, dict) and r != c.get("role")]
    if others:
        out.append("<ul>%s</ul>" % "".join(
            '<li>%s at <span class="loc">%s</span>%s</li>'
            % (esc(ROLE_NAMES.get(r, r)), esc(_where(s)),
               " in <code>%s()</code>" % esc(s["function"]) if s.get("function") else "")
            for r, s in others))
    series = (f.get("iterations") or {}).get("series") if isinstance(f.get("iterations"),
                                                                     dict) else None
    if series:
        out.append('<figure class="chartbox">%s<figcaption class="muted">blocks lost per '
                   'measured iteration</figcaption></figure>'
                   % bar_chart(series, 1, None, "", "iteration: blocks lost"))
    frames = _stack_frames(f.get("stack"))
    out.append(stack_tree(frames, c, "Stack", open_=True))
    for aux in f.get("aux") or []:
        if isinstance(aux, dict):
            frames = _stack_frames(aux.get("stack"))
            out.append(stack_tree(frames, c, aux.get("what") or "Stack",
                                  open_=any(_same_frame(x, c) for x in frames)))
    out.append("</div>")
    return "".join(out)


# ---------------------------------------------------------------------------
# The page

def render(data, machine=None, source_name=None):
    """The HTML page (a str) for parsed JSON `data` (see `kind`).

    machine: the facts of `machine_facts()` to show, or None to leave the
    section out.  source_name: the file the result was read from, if any."""
    what = kind(data)
    if what == "result":
        title, body, verdict, toc = _result_page(data)
    elif what == "suite":
        title, body, verdict, toc = _suite_page(data)
    else:
        title, body, verdict, toc = _valgrind_page(data)
    if machine:
        toc = toc + [("machine", "machine and interpreter")]
    nav = '<nav class="toc">%s</nav>' % "".join(
        '<a href="#%s">%s</a> ' % (esc(a), esc(t)) for a, t in toc) if toc else ""
    body = body.replace("<!--toc-->", nav, 1)      # the first one: in the header
    footer = "Written by refhound%s%s." % (
        " %s" % esc(machine.get("refhound")) if machine and machine.get("refhound") else "",
        " from <code>%s</code>" % esc(source_name) if source_name else "")
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta http-equiv="Content-Security-Policy" content="%s">' % CSP,
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        "<title>%s</title>" % esc(title),
        "<script>%s</script>" % ERROR_TRAP,
        "<style>%s</style></head>" % CSS,
        '<body class="verdict-%s"><div id="rh-errors" hidden></div>' % esc(verdict or "none"),
        '<button id="expand-all" class="expand" hidden>expand all</button>',
        body, machine_html(machine) if machine else "",
        "<footer>%s</footer>" % footer,
        "<script>%s</script></body></html>\n" % SCRIPT,
    ])


def write(path, data, machine=True, source_name=None):
    """Render `data` and write it to `path`.  machine=True collects the
    facts of this machine (refhound doctor); False leaves them out.
    Raises OSError when the file cannot be written."""
    facts = machine_facts() if machine is True else (machine or None)
    text = render(data, facts, source_name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


def write_report(path, data, tell=None):
    """For the commands: write the report (saying so on the stream `tell`);
    on failure print the one-line error and return False."""
    try:
        write(path, data)
    except OSError as exc:
        sys.stderr.write("refhound: error: cannot write %s: %s\n" % (path, exc.strerror or exc))
        return False
    except Exception as exc:    # a report must never take the run (or pytest) down with it
        sys.stderr.write("refhound: error: cannot render the HTML report %s: %s: %s\n"
                         % (path, type(exc).__name__, exc))
        return False
    if tell is not None:
        tell.write("HTML report written to %s\n" % path)
    return True
