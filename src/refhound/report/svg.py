"""Charts as inline SVG, drawn in Python: scales, paths, downsampling, the
fitted line.  Pure functions of numbers and strings (no I/O), shared by
the HTML report; every text that goes into the SVG is escaped.

Long series are drawn from at most MAX_POINTS points (per bucket the
minimum and the maximum, in their order, so a spike is never lost) and bar
charts from at most MAX_BARS bars (bucket means; the tooltip gives the max).
"""
import html as _html
import json
import math

MAX_POINTS = 600        # drawn points per series
MAX_BARS = 240          # drawn bars per bar chart
W, H = 480, 210         # the viewBox of a chart
PAD_L, PAD_R, PAD_T, PAD_B = 62, 12, 14, 30


def esc(value):
    """Text for HTML/SVG content and attribute values."""
    return _html.escape("" if value is None else str(value), quote=True)


def json_for_script(value):
    """JSON that is safe inside <script> and in attributes: no '<', '>' or
    '&' (escaped as \\u003c...), no line separators."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def fmt_num(value, unit="", signed=False, digits=3):
    """Compact: 12, 1.2k, 3.45M (bytes: 1.2 kB); None -> 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    mag = abs(value)
    sign = "+" if signed and value > 0 else ("-" if value < 0 else "")
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if mag >= limit:
            text = "%.*g%s" % (digits, mag / limit, suffix)
            break
    else:
        if mag == int(mag):
            text = "%d" % mag
        else:
            text = "%.*g" % (digits, mag)
    if unit:
        text += (" " if text[-1].isdigit() else "") + unit
    return sign + text


def fmt_exact(value):
    if value is None:
        return "n/a"
    if isinstance(value, float) and value != int(value):
        return "{:,.4g}".format(value) if abs(value) < 1e4 else "{:,.1f}".format(value)
    return "{:,}".format(int(value))


def scale(value, lo, hi, p0, p1):
    """Map value in [lo, hi] to [p0, p1] (lo == hi maps to the middle)."""
    if hi == lo:
        return (p0 + p1) / 2.0
    return p0 + (value - lo) * (p1 - p0) / float(hi - lo)


def path_d(points):
    """An SVG path ("M x y L x y ...") through pixel points, one decimal,
    repeated points dropped.  Empty string for no points."""
    out = []
    last = None
    for x, y in points:
        cur = ("%.1f" % x, "%.1f" % y)
        if cur == last:
            continue
        out.append(("M" if not out else "L") + cur[0] + " " + cur[1])
        last = cur
    return "".join(out)


def dots_d(points):
    """Zero-length segments drawn as dots by a round line cap."""
    return "".join("M%.1f %.1fh0" % (x, y) for x, y in points)


def downsample(values, max_points=MAX_POINTS):
    """Indices of `values` to draw: all of them when there are few; else,
    per bucket, the index of the minimum and of the maximum in their order,
    with the first and last index always kept (a spike is never lost)."""
    n = len(values)
    if n <= max_points:
        return list(range(n))
    buckets = max(1, (max_points - 2) // 2)
    keep = {0, n - 1}
    for b in range(buckets):
        start = 1 + (n - 2) * b // buckets
        end = 1 + (n - 2) * (b + 1) // buckets
        if start >= end:
            continue
        lo = hi = start
        for i in range(start + 1, end):
            if values[i] < values[lo]:
                lo = i
            if values[i] > values[hi]:
                hi = i
        keep.add(lo)
        keep.add(hi)
    return sorted(keep)


def bucket_bars(values, max_bars=MAX_BARS):
    """[(first index, last index, mean, max)] with at most max_bars entries."""
    n = len(values)
    if n <= max_bars:
        return [(i, i, v, v) for i, v in enumerate(values)]
    out = []
    for b in range(max_bars):
        start, end = n * b // max_bars, n * (b + 1) // max_bars
        if start >= end:
            continue
        chunk = values[start:end]
        out.append((start, end - 1, sum(chunk) / float(len(chunk)), max(chunk)))
    return out


def theil_sen(xs, ys, max_pairs_points=200):
    """(slope, intercept) by the median of pairwise slopes (on at most
    max_pairs_points evenly spaced points) and the median residual."""
    n = len(xs)
    if n < 2:
        return 0.0, (ys[0] if ys else 0.0)
    step = max(1, n // max_pairs_points)
    sx, sy = xs[::step], ys[::step]
    slopes = [(sy[j] - sy[i]) / float(sx[j] - sx[i])
              for i in range(len(sx)) for j in range(i + 1, len(sx)) if sx[j] != sx[i]]
    slope = median(slopes) if slopes else 0.0
    return slope, median([y - slope * x for x, y in zip(xs, ys)])


def median(values):
    s = sorted(values)
    n = len(s)
    if n == 0:
        return 0.0
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def nice_ticks(lo, hi, count=4):
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / float(count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9 and len(ticks) < 20:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def line_chart(values, first_measured, slope=None, intercept=None, unit="",
               trending=False, label=""):
    """An SVG chart of `values` (index = iteration), the warm-up (indices
    before first_measured) shaded, the fitted line y = slope*i + intercept
    over the measured part.  Returns "" when there is nothing to draw."""
    n = len(values)
    if n == 0:
        return ""
    idx = downsample(values)
    ys = [values[i] for i in idx]
    lo, hi = min(ys), max(ys)
    line = None
    if slope is not None and intercept is not None and first_measured < n:
        a, b = max(first_measured - 1, 0), n - 1
        line = ((a, slope * a + intercept), (b, slope * b + intercept))
        lo = min(lo, line[0][1], line[1][1])
        hi = max(hi, line[0][1], line[1][1])
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    margin = (hi - lo) * 0.06
    lo, hi = lo - margin, hi + margin
    x0, x1, y0, y1 = PAD_L, W - PAD_R, H - PAD_B, PAD_T
    xmax = max(n - 1, 1)

    def px(i):
        return scale(i, 0, xmax, x0, x1)

    def py(v):
        return scale(v, lo, hi, y0, y1)

    pts = [(px(i), py(values[i])) for i in idx]
    parts = ['<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" '
             'data-px="%s" data-py="%s" data-i="%s" data-v="%s" data-unit="%s">'
             % (W, H, esc(label), esc(json_for_script([round(p[0], 1) for p in pts])),
                esc(json_for_script([round(p[1], 1) for p in pts])),
                esc(json_for_script(idx)), esc(json_for_script(ys)), esc(unit))]
    parts.append("<title>%s</title>" % esc(label))
    if first_measured > 0:
        wx = px(min(first_measured - 1, xmax))
        parts.append('<rect class="warm" x="%.1f" y="%d" width="%.1f" height="%d"/>'
                     % (x0, y1, max(wx - x0, 2), y0 - y1))
        parts.append('<text class="warmlabel" x="%.1f" y="%d">warm-up</text>' % (x0 + 3, y1 + 10))
    for t in nice_ticks(lo, hi, 4):
        y = py(t)
        parts.append('<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>' % (x0, x1, y, y))
        parts.append('<text class="ytick" x="%d" y="%.1f">%s</text>'
                     % (x0 - 4, y + 3, esc(fmt_num(t, unit, signed=True))))
    for t in nice_ticks(0, xmax, 5):
        if t == int(t):
            parts.append(_xtick(px(t), y0 + 14, x1, fmt_num(int(t))))
    parts.append('<text class="xlabel" x="%d" y="%d">iteration</text>' % (x1, H - 2))
    parts.append('<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>' % (x0, x1, y0, y0))
    parts.append('<path class="series" d="%s"/>' % path_d(pts))
    if n <= 80:
        parts.append('<path class="dots" d="%s"/>' % dots_d(pts))
    if line is not None:
        cls = "fit up" if trending else "fit"
        parts.append('<path class="%s" d="%s"/>' % (cls, path_d(
            [(px(line[0][0]), py(line[0][1])), (px(line[1][0]), py(line[1][1]))])))
    parts.append('<g class="hover" visibility="hidden"><line class="cursor" y1="%d" y2="%d"/>'
                 '<circle r="3.5"/><text class="readout" y="%d"></text></g>' % (y1, y0, y1 + 10))
    parts.append("</svg>")
    return "".join(parts)


def _xtick(x, y, right, text):
    """An x-axis label, kept inside the chart at the right edge."""
    anchor = ' style="text-anchor:end"' if x > right - 14 else ""
    return '<text class="xtick" x="%.1f" y="%d"%s>%s</text>' % (x, y, anchor, esc(text))


def bar_chart(values, first_label=0, highlight=None, unit="", label="", expected=None, width=W):
    """Bars (index i labelled first_label + i); highlight(i) -> True draws
    the bar in the main colour, else muted.  At most MAX_BARS bars (means
    of buckets; the title of each says first..last, mean and max)."""
    if not values:
        return ""
    bars = bucket_bars(values)
    hi = max(max(b[3] for b in bars), expected or 0)
    lo = min(0, min(b[2] for b in bars))
    if hi == lo:
        hi = lo + 1
    hi *= 1.06
    x0, x1, y0, y1 = PAD_L, width - PAD_R, H - PAD_B, PAD_T
    bar_w = (x1 - x0) / float(len(bars))
    parts = ['<svg class="chart bars" viewBox="0 0 %d %d" role="img" aria-label="%s">'
             % (width, H, esc(label)), "<title>%s</title>" % esc(label)]
    for t in nice_ticks(lo, hi, 4):
        y = scale(t, lo, hi, y0, y1)
        parts.append('<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>' % (x0, x1, y, y))
        parts.append('<text class="ytick" x="%d" y="%.1f">%s</text>'
                     % (x0 - 4, y + 3, esc(fmt_num(t, unit))))
    base = scale(0, lo, hi, y0, y1)
    for k, (a, b, mean, top) in enumerate(bars):
        x = x0 + k * bar_w
        y = scale(mean, lo, hi, y0, y1)
        cls = "bar" if highlight is None or highlight(a) else "bar muted"
        span = ("%d" % (first_label + a)) if a == b else "%d-%d" % (first_label + a,
                                                                    first_label + b)
        tip = "%s %s: %s" % (label.split(":")[0] if ":" in label else "", span, fmt_exact(mean))
        if a != b:
            tip += " (mean; max %s)" % fmt_exact(top)
        parts.append('<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f">'
                     '<title>%s</title></rect>'
                     % (cls, x + bar_w * 0.1, min(y, base), max(bar_w * 0.8, 0.6),
                        max(abs(base - y), 0.8 if mean else 0), esc(tip.strip())))
    if expected:
        y = scale(expected, lo, hi, y0, y1)
        parts.append('<line class="expected" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>'
                     % (x0, x1, y, y))
    n = len(values)
    for t in nice_ticks(first_label, first_label + n - 1, 6 if n > 6 else max(n - 1, 1)):
        if t == int(t):
            x = x0 + (t - first_label + 0.5) * (x1 - x0) / float(n)
            parts.append(_xtick(x, y0 + 14, x1, fmt_num(int(t))))
    parts.append('<line class="axis" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>'
                 % (x0, x1, base, base))
    parts.append("</svg>")
    return "".join(parts)
