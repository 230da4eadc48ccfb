"""The HTML report end to end: real results of the bug zoo (refhound check
--html), refhound report on saved results, refhound run --html, pytest
--refhound-html, refhound valgrind --html, opened in headless Chromium.

Each page must load with no console message and no script error (the page's
own window.onerror marks <html data-rh-error>), its script must have run
(data-rh-ready = the number of charts), and every chart must draw a series.
The screenshots are kept under pytest's temporary directory; their paths
are printed (pytest -rP shows them)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser

import pytest

import html_samples
from support import (ROOT, build_zoo_case, cbuild, check_json, engine_path, run_refhound,
                     without_sanitizers)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
CASES = {c["name"]: c for c in cbuild.zoo_cases()}
PY = sys.executable


class Dom(HTMLParser):
    """The elements of the DOM Chromium dumped."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.text = []
        self.title = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)
        if self.tags and self.tags[-1][0] == "title":
            self.title += data

    def find(self, tag, cls=None):
        return [a for t, a in self.tags
                if t == tag and (cls is None or a.get("class") == cls)]

    def all_text(self):
        return " ".join(" ".join(self.text).split())


def open_in_chromium(page, png, height=2400):
    """Load `page` in headless Chromium twice: once to dump its DOM (with the
    console on stderr), once for a screenshot.  Returns (Dom, console lines)."""
    profile = tempfile.mkdtemp(prefix="refhound-chromium-")
    try:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--no-first-run", "--user-data-dir=" + profile]
        url = "file://" + os.path.abspath(page)
        env = without_sanitizers()
        dump = subprocess.run(flags + ["--enable-logging=stderr", "--v=0", "--dump-dom", url],
                              capture_output=True, text=True, timeout=180, env=env)
        shot = subprocess.run(flags + ["--screenshot=" + str(png),
                                       "--window-size=1280,%d" % height, url],
                              capture_output=True, text=True, timeout=180, env=env)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert dump.returncode == 0 and "</html>" in dump.stdout, dump.stderr[-2000:]
    assert shot.returncode == 0 and os.path.getsize(png) > 10000, shot.stderr[-2000:]
    print("screenshot: %s" % png)
    console = [line for line in dump.stderr.splitlines() if ":CONSOLE" in line]
    return Dom(dump.stdout), console


def assert_loads_cleanly(dom, console, charts):
    """No console output, no script error, the script ran, charts drawn."""
    assert console == []
    root = dom.find("html")[0]
    assert "data-rh-error" not in root, root["data-rh-error"]
    assert root.get("data-rh-ready") == str(charts)
    assert "hidden" in dom.find("div")[0]          # the error box stays hidden
    series = dom.find("path", "series")
    assert len(series) == charts
    for p in series:
        assert p["d"].startswith("M") and "L" in p["d"], p["d"][:80]


# ---------------------------------------------------------------------------
# refhound check --html on the zoo

ZOO = [  # case:function, exit status, verdict, what the page must say
    ("list_append:leaky", 1, "leak", ["Life history of one leaked object", "PyList_Append"]),
    ("incref_none:leaky", 1, "leak", ["Reference sites", "Growing reference counts"]),
    ("extra_decref:leaky", 1, "error", ["Falling reference counts",
                                        "re-checked with one call per iteration"]),
    ("gc_cycle_no_gc:leaky", 1, "leak", ["in the definition of LeakyBox_Type",
                                         "lacks Py_TPFLAGS_HAVE_GC"]),
    ("nested_list:clean", 0, "clean", ["nothing grows"]),
]


@needs_chromium
@pytest.mark.parametrize("target,status,verdict,says", ZOO, ids=[z[0] for z in ZOO])
def test_check_html_of_a_zoo_case_opens_in_chromium(tmp_path, target, status, verdict, says):
    case = CASES[target.split(":")[0]]
    cwd = build_zoo_case(case, PY)
    page = tmp_path / "report.html"
    code, result, err = check_json(PY, target, cwd, "--html", str(page))
    assert (code, result["verdict"]) == (status, verdict), err
    assert "HTML report written to %s" % page in err
    dom, console = open_in_chromium(page, tmp_path / (target.replace(":", "-") + ".png"))
    assert_loads_cleanly(dom, console, charts=6)
    text = dom.all_text()
    from refhound.report.html import VERDICT_TEXT
    assert "%s %s" % (verdict.upper(), VERDICT_TEXT[verdict]) in text
    for phrase in says:
        assert phrase in text
    culprit = dom.find("tr", "culprit")
    if verdict == "clean":
        assert culprit == [] and not dom.find("div", "site")
        return
    # The zoo's ground truth: the culprit line is the one marked in the source.
    assert culprit, "no culprit line marked"
    where = "%s:%d" % (case["path"], case["culprit_line"])
    assert "Culprit: %s" % where in text
    assert dom.find("svg", "chart bars"), "no survivors chart"


# ---------------------------------------------------------------------------
# refhound report on saved results


@needs_chromium
def test_report_renders_a_saved_result_like_check_does(tmp_path):
    cwd = build_zoo_case(CASES["new_object"], PY)
    code, result, err = check_json(PY, "new_object:leaky", cwd)
    assert code == 1, err
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(result))
    page = tmp_path / "saved.html"
    proc = run_refhound(PY, ["report", str(saved), "--html", str(page)])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    dom, console = open_in_chromium(page, tmp_path / "saved.png")
    assert_loads_cleanly(dom, console, charts=6)
    text = dom.all_text()
    assert "Culprit: %s:%d" % (CASES["new_object"]["path"],
                               CASES["new_object"]["culprit_line"]) in text
    assert "Machine and interpreter" in text and "written by refhound" in text.lower()
    assert "from %s" % saved in text


def test_report_bad_input_is_one_line_and_status_2(tmp_path):
    (tmp_path / "text.json").write_text("not json at all")
    (tmp_path / "other.json").write_text(json.dumps({"name": "not a result"}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(html_samples.result(iterations=5)))
    cases = [
        (["report", str(tmp_path / "missing.json"), "--html", "x.html"], "no such file"),
        (["report", str(tmp_path / "text.json"), "--html", "x.html"], "is not JSON"),
        (["report", str(tmp_path / "other.json"), "--html", "x.html"],
         "is not a refhound result"),
        (["report", str(tmp_path), "--html", "x.html"], "is a directory"),
        (["report", str(good), "--html", str(tmp_path / "no" / "such" / "dir.html")],
         "cannot write"),
        (["report", str(good)], "--html"),
    ]
    for args, words in cases:
        proc = run_refhound(PY, args, cwd=str(tmp_path))
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith("refhound: error: ") and words in lines[0], (args, lines)
    assert not (tmp_path / "x.html").exists()


def test_check_html_unwritable_is_status_2(tmp_path):
    cwd = build_zoo_case(CASES["new_object"], PY)
    proc = run_refhound(PY, ["check", "new_object:clean", "--no-progress", "-q", "--html",
                             str(tmp_path / "no" / "dir.html")], cwd=cwd)
    assert proc.returncode == 2
    assert proc.stderr.startswith("refhound: error: cannot write ")


# ---------------------------------------------------------------------------
# The other producers: refhound run, pytest --refhound, refhound valgrind

# The leaky loop's calls per iteration are fixed: calibrated from its first
# body they come out 100 or 1000 from run to run, and at 100 the loop's own
# per-iteration objects (about 0.6 an iteration) show in the type's rate
# (int +1.01/call instead of +1/call).
LOOP_SCRIPT = """
import refhound
import list_append

for i in refhound.loop(range(100000), name="append", calls=1000):
    list_append.leaky()
for i in refhound.loop(range(100000), name="clean"):
    list_append.clean()
"""


@needs_chromium
def test_run_html_has_a_section_per_flagged_loop(tmp_path):
    cwd = build_zoo_case(CASES["list_append"], PY)
    script = tmp_path / "loops.py"
    script.write_text(LOOP_SCRIPT)
    page = tmp_path / "run.html"
    proc = run_refhound(PY, ["run", "--quiet", "--html", str(page), str(script)], cwd=cwd,
                        env={"PYTHONPATH": engine_path(PY) + os.pathsep + cwd})
    assert proc.returncode == 1, proc.stderr
    dom, console = open_in_chromium(page, tmp_path / "run.png")
    assert_loads_cleanly(dom, console, charts=6)
    text = dom.all_text()
    assert "2 loops checked: 1 leak, 1 clean" in text
    assert [s["id"] for s in dom.find("section", "entry")] == ["t0"]
    assert "Leaking types: int +1/call" in text


@needs_chromium
def test_pytest_refhound_html_one_report_for_the_suite(tmp_path):
    from test_pytest_plugin import run_pytest
    page = tmp_path / "suite.html"
    proc = run_pytest(["--refhound", "--refhound-html", str(page), "-q", "-k",
                       "test_encode or test_tag or test_scratch_leaky"])
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "HTML report written to %s" % page in proc.stdout
    dom, console = open_in_chromium(page, tmp_path / "suite.png")
    flagged = ["test_sample.py::test_encode_leaky", "test_sample.py::test_tag_leaky",
               "test_sample.py::test_scratch_leaky"]
    assert_loads_cleanly(dom, console, charts=6 * len(flagged))
    text = dom.all_text()
    assert "5 tests checked: 3 leak, 2 clean" in text
    sections = dom.find("section", "entry")
    assert len(sections) == len(flagged)
    for nodeid in flagged:
        assert nodeid in text
    assert len(dom.find("tr", "o-clean")) >= 1


@needs_chromium
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None or
                    not os.path.exists("/usr/include/valgrind/memcheck.h"),
                    reason="valgrind and its headers are not installed (apt-get install valgrind)")
def test_valgrind_html_shows_memory_errors_and_leaks(tmp_path):
    out = tmp_path / "modules"
    for c in ("tests/valgrind_cases/uaf_read.c", "tests/zoo/new_object.c"):
        cbuild.build_extension(os.path.join(ROOT, c), str(out))
    page = tmp_path / "valgrind.html"
    env = {"REFHOUND_CACHE_DIR": os.path.join(ROOT, "build", "tests", "valgrind", "cache")}
    proc = run_refhound(PY, ["valgrind", "-q", "--html", str(page), "--", PY,
                             os.path.join(ROOT, "tests", "valgrind_cases", "driver.py"),
                             str(out), "uaf_read", "new_object"], cwd=ROOT, env=env,
                        timeout=1200)
    assert proc.returncode == 1, proc.stderr[-3000:]
    dom, console = open_in_chromium(page, tmp_path / "valgrind.png")
    assert console == [] and "data-rh-error" not in dom.find("html")[0]
    text = dom.all_text()
    assert "use after free" in text and "uaf_read.c:33" in text
    assert "leak" in text and "new_object.c:21" in text
    assert dom.find("svg", "chart bars")


# ---------------------------------------------------------------------------
# Long runs, hostile strings, the machine


@needs_chromium
def test_a_ten_thousand_iteration_report_opens_in_chromium(tmp_path):
    from refhound.report import html
    page = tmp_path / "long.html"
    html.write(str(page), html_samples.result(iterations=10000))
    assert os.path.getsize(page) < 2_000_000
    dom, console = open_in_chromium(page, tmp_path / "long.png", height=1400)
    assert_loads_cleanly(dom, console, charts=6)
    assert len(dom.find("rect", "bar")) == 240


@needs_chromium
def test_hostile_strings_do_not_run_in_chromium(tmp_path):
    from refhound.report import html
    page = tmp_path / "hostile.html"
    html.write(str(page), html_samples.hostile_result(), machine=False)
    dom, console = open_in_chromium(page, tmp_path / "hostile.png")
    assert_loads_cleanly(dom, console, charts=6)
    assert dom.find("img") == []
    assert dom.title.startswith("refhound check mod:</script><img"), dom.title
    assert html_samples.HOSTILE in dom.all_text()


def test_machine_facts_come_from_the_doctor():
    import platform
    from refhound.report import html
    facts = html.machine_facts()
    assert "doctor_error" not in facts, facts.get("doctor_error")
    assert facts["doctor"]["interpreter"]["python"] == platform.python_version()
    assert facts["platform"] == platform.platform()


HOVER_PROBE = """<script>
var svg = document.querySelectorAll('svg.chart[data-px]')[3], r = svg.getBoundingClientRect();
svg.dispatchEvent(new MouseEvent('mousemove', {clientX: r.right - 1, clientY: r.top + 5,
                                               bubbles: true}));
document.documentElement.setAttribute('data-hover', svg.querySelector('.readout').textContent +
    '|' + svg.querySelector('.hover').getAttribute('visibility'));
</script>"""


@needs_chromium
def test_hovering_a_chart_reads_out_the_nearest_iteration(tmp_path):
    from refhound.report import html
    r = html_samples.result(iterations=12)
    text = html.render(r, None).replace("</body>", HOVER_PROBE + "</body>")
    page = tmp_path / "hover.html"
    page.write_text(text)
    dom, console = open_in_chromium(page, tmp_path / "hover.png", height=900)
    assert_loads_cleanly(dom, console, charts=6)
    # The fourth chart is bytes; its last sample is 12 iterations x 1000 calls x 175 bytes
    # past the baseline.
    last = r["samples"][-1]["bytes"] - r["samples"][2]["bytes"]
    assert last == 12 * 1000 * 175
    assert dom.find("html")[0]["data-hover"] == "iteration 14: +2.1MB|visible"
