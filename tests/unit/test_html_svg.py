"""The HTML report's charts (refhound.report.svg): pure functions of numbers."""
import re

import pytest

from refhound.report import svg


def _points(d):
    """The (x, y) pairs of an SVG path made by svg.path_d."""
    return [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+) (-?[\d.]+)", d)]


# -- downsampling ---------------------------------------------------------------


def test_downsample_keeps_every_point_of_a_short_series():
    assert svg.downsample(list(range(50)), 600) == list(range(50))
    assert svg.downsample([], 600) == []


def test_downsample_bounds_a_long_series_and_keeps_its_ends():
    values = [i % 7 for i in range(10000)]
    idx = svg.downsample(values, 600)
    assert len(idx) <= 600
    assert idx[0] == 0 and idx[-1] == 9999
    assert idx == sorted(set(idx))


def test_downsample_never_loses_a_spike():
    values = [0] * 10000
    values[4321] = 99          # one spike up
    values[7777] = -50         # one spike down
    idx = svg.downsample(values, 100)
    assert 4321 in idx and 7777 in idx
    drawn = [values[i] for i in idx]
    assert max(drawn) == 99 and min(drawn) == -50


def test_bucket_bars_means_and_maxima():
    assert svg.bucket_bars([3, 4], 10) == [(0, 0, 3, 3), (1, 1, 4, 4)]
    bars = svg.bucket_bars(list(range(1000)), 10)
    assert len(bars) == 10
    assert bars[0] == (0, 99, 49.5, 99)
    assert bars[-1] == (900, 999, 949.5, 999)


# -- paths and scales -------------------------------------------------------------


def test_path_d_moves_then_draws_and_drops_repeats():
    assert svg.path_d([]) == ""
    assert svg.path_d([(1, 2), (3.04, 4.06), (3.01, 4.09), (5, 6)]) == "M1.0 2.0L3.0 4.1L5.0 6.0"


def test_dots_are_zero_length_segments():
    assert svg.dots_d([(1, 2), (3, 4)]) == "M1.0 2.0h0M3.0 4.0h0"


def test_scale_maps_ends_and_a_flat_range_to_the_middle():
    assert svg.scale(0, 0, 10, 100, 200) == 100
    assert svg.scale(10, 0, 10, 100, 200) == 200
    assert svg.scale(5, 0, 10, 200, 100) == 150      # y grows upwards
    assert svg.scale(7, 7, 7, 0, 10) == 5


def test_nice_ticks_are_round_and_cover_the_range():
    assert svg.nice_ticks(0, 10, 5) == [0, 2, 4, 6, 8, 10]
    assert svg.nice_ticks(-3, 47, 4) == [0, 20, 40]
    assert svg.nice_ticks(0, 10003, 5) == [0, 2500, 5000, 7500, 10000]
    assert svg.nice_ticks(5, 5) == [5]


def test_theil_sen_ignores_an_outlier():
    xs = list(range(20))
    ys = [3 * x + 7 for x in xs]
    ys[10] = 1000
    slope, intercept = svg.theil_sen(xs, ys)
    assert slope == 3 and intercept == 7


def test_fmt_num():
    assert svg.fmt_num(None) == "n/a"
    assert svg.fmt_num(0) == "0"
    assert svg.fmt_num(4, signed=True) == "+4"
    assert svg.fmt_num(-1.0, signed=True) == "-1"
    assert svg.fmt_num(176.0, "B", signed=True) == "+176 B"
    assert svg.fmt_num(264160.4, "B") == "264kB"
    assert svg.fmt_num(12500) == "12.5k"
    assert svg.fmt_num(0.015) == "0.015"


# -- charts -----------------------------------------------------------------------


def _series_d(chart):
    return re.search(r'<path class="series" d="([^"]*)"', chart).group(1)


def test_line_chart_draws_every_point_the_warmup_and_the_fit():
    values = [0, 0, 0, 5, 10, 15, 20]
    chart = svg.line_chart(values, 3, slope=5, intercept=-10, label="refs")
    pts = _points(_series_d(chart))
    assert len(pts) == 7
    assert pts[0][0] == svg.PAD_L and pts[-1][0] == svg.W - svg.PAD_R
    assert pts[-1][1] < pts[0][1]                      # the growing end is higher up
    assert '<rect class="warm"' in chart
    fit = re.search(r'<path class="fit" d="([^"]*)"', chart).group(1)
    a, b = _points(fit)
    # The fitted line runs from the baseline (index 2) to the end, through the data.
    assert a == pytest.approx(pts[2], abs=0.1) and b == pytest.approx(pts[-1], abs=0.1)


def test_line_chart_marks_a_trending_fit():
    chart = svg.line_chart([0, 1, 2, 3], 1, slope=1, intercept=0, trending=True)
    assert '<path class="fit up"' in chart


def test_line_chart_of_ten_thousand_iterations_stays_small():
    values = [(i * 37) % 1001 for i in range(10000)]
    chart = svg.line_chart(values, 3, slope=0.0, intercept=500.0)
    assert len(_points(_series_d(chart))) <= svg.MAX_POINTS
    assert len(chart) < 60000


def test_line_chart_of_a_flat_series_has_a_range():
    chart = svg.line_chart([7, 7, 7], 1)
    pts = _points(_series_d(chart))
    assert len({y for _, y in pts}) == 1
    assert svg.PAD_T < pts[0][1] < svg.H - svg.PAD_B


def test_line_chart_of_nothing_is_empty():
    assert svg.line_chart([], 0) == ""


def test_bar_chart_bars_and_expected_line():
    chart = svg.bar_chart([5000] * 9, 4, None, "", "epoch: blocks", expected=5000)
    assert chart.count('<rect class="bar"') == 9
    assert "<title>epoch 4: 5,000</title>" in chart
    assert '<line class="expected"' in chart


def test_bar_chart_buckets_a_long_series():
    chart = svg.bar_chart([1] * 10000, 1, None, "", "epoch: blocks")
    assert chart.count("<rect ") == svg.MAX_BARS
    assert "<title>epoch 1-41: 1 (mean; max 1)</title>" in chart


def test_bar_chart_muted_bars():
    chart = svg.bar_chart([1, 2, 3], 0, lambda i: i < 2)
    assert chart.count('class="bar"') == 2 and chart.count('class="bar muted"') == 1


# -- escaping -----------------------------------------------------------------------


def test_esc_and_json_for_script_make_markup_inert():
    hostile = '</script><img src=x onerror="alert(1)">&'
    assert svg.esc(hostile) == ("&lt;/script&gt;&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
                                "&amp;")
    text = svg.json_for_script([hostile])
    assert "<" not in text and ">" not in text and "&" not in text
    import json
    assert json.loads(text) == [hostile]


def test_chart_labels_are_escaped():
    chart = svg.line_chart([1, 2], 1, label='<script>alert(1)</script>', unit='"><b>')
    assert "<script>" not in chart and "<b>" not in chart
