"""The HTML report (refhound.report.html) from results in the real JSON schema:
what it shows, that it stays small, that hostile strings stay text, and
which inputs it refuses."""
from html.parser import HTMLParser
import json
import re

import pytest

import html_samples
from refhound.report import html


class Page(HTMLParser):
    """The elements of a page, as a browser's parser sees them."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags = []          # (tag, attrs)
        self.scripts = []       # the text of each <script>
        self.text = []
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and
                all(a.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())]

    def all_text(self):
        """The text, one space between elements' texts and runs of spaces as one."""
        return " ".join(" ".join(self.text).split())


def render(data, machine=None):
    return html.render(data, machine)


# -- what a result's page shows ----------------------------------------------------------


def test_a_leak_page_has_the_verdict_charts_survivors_sites_and_figures():
    r = html_samples.result(iterations=20)
    page = Page(render(r))
    text = page.all_text()
    assert "LEAK" in text and "grows call after call" in text
    assert "20 measured iterations × 1000 calls after 3 warm-up" in text
    # Six growth charts, each with a series path through all 23 samples and a fitted line.
    charts = page.find("svg", class_="chart")
    assert len(charts) == 6
    series = page.find("path", class_="series")
    assert len(series) == 6
    for p in series:
        assert p["d"].startswith("M") and p["d"].count("L") == 22
    assert len(page.find("path", class_="fit up")) == 4        # refs, objects, blocks, bytes
    assert len(page.find("rect", class_="warm")) == 6
    # Survivors: the 20 measured epochs only (the 9 later ones are named, not drawn).
    assert len(page.find("rect", class_="bar")) == 20
    assert "Not drawn: 9 later epochs" in text
    # The site: the culprit line marked in its source, the stack, the life history.
    culprit_rows = page.find("tr", class_="culprit")
    assert len(culprit_rows) == 1
    assert "PyObject *list = PyList_New(NITEMS);" in text
    assert "created at mod.c:38 (PyList_New)" in text
    assert "PyList_Append" in text and "Py_DECREF" in text
    assert len(page.find("li", class_="frame culprit")) == 1
    assert "test_leaky" in text                                 # the Python frame
    assert "Culprit: /src/ext/mod.c:38 in leaky()" in text
    # Leaking types and the per-type figures.
    assert "int" in text and "type29" in text


def test_the_page_is_self_contained():
    page_text = render(html_samples.result(iterations=10), html_samples.machine())
    page = Page(page_text)
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, attrs)
    assert not page.find("link") and not page.find("img") and not page.find("iframe")
    assert "default-src 'none'" in page.find("meta", http_equiv="Content-Security-Policy")[0][
        "content"]
    assert len(page.scripts) == 2 and page.scripts[1] == html.SCRIPT


def test_machine_facts_are_shown():
    text = Page(render(html_samples.result(iterations=10), html_samples.machine())).all_text()
    assert "Machine and interpreter" in text
    for fact in ("Python cpython 3.11.7 (/usr/bin/python3)", "build release",
                 "object allocator pymalloc", "hardware watchpoints allowed", "Valgrind 3.19.0",
                 "libdw.so.1; engine uses it: yes", "Free lists are on"):
        assert fact in text


def test_a_failing_doctor_is_said():
    text = Page(render(html_samples.result(iterations=10),
                       {"doctor_error": "OSError: boom"})).all_text()
    assert "failed: OSError: boom" in text


def test_clean_result_has_no_sites_and_no_culprit():
    r = html_samples.result(iterations=10)
    r.update(verdict="clean", sites=[], objects=[], refcount_growth=[])
    text = Page(render(r)).all_text()
    assert "CLEAN" in text and "nothing grows" in text
    assert "Culprit" not in text and "Leak sites" not in text


def test_incomplete_and_notes_are_said():
    r = html_samples.result(iterations=10)
    r.update(verdict="inconclusive", incomplete="refhound ran out of table space",
             notes=["the growth seen at 10 calls did not show at 21"])
    text = Page(render(r)).all_text()
    assert "could not conclude: refhound ran out of table space" in text
    assert "note: the growth seen at 10 calls did not show at 21" in text


def test_refcount_growth_links_to_the_site_already_shown():
    r = html_samples.result(iterations=10)
    site = dict(r["sites"][0], refs_per_call=1.0, blocks_per_call=None, bytes_per_call=None)
    r.update(sites=[site], refcount_growth=[{"type": "NoneType", "repr": "None",
                                             "refs_per_call": 1.0, "sites": [site]}])
    out = render(r)
    page = Page(out)
    assert "Reference sites" in page.all_text() and "Growing reference counts" in page.all_text()
    assert len(page.find("div", class_="site")) == 1            # not repeated
    assert page.find("a", href="#r-s0", class_="loc")


def test_falling_refcounts_of_an_error():
    r = html_samples.result(iterations=10)
    r.update(verdict="error", sites=[], refcount_growth=[{
        "type": "str", "repr": "'name'", "refs_per_call": -1.0,
        "sites": [dict(r["sites"][0], refs_per_call=-1.0)]}])
    text = Page(render(r)).all_text()
    assert "ERROR" in text and "Falling reference counts" in text
    assert "Culprit: /src/ext/mod.c:38" in text


def test_memory_errors_are_shown_with_their_stacks():
    page = Page(render(html_samples.memory_error_result()))
    text = page.all_text()
    assert "Memory errors" in text and "use after free" in text
    for what in ("accessed", "freed", "allocated"):
        assert "Stack where it was %s" % what in text
    assert "object of type bytes" in text


def test_a_gc_blind_cycle_names_the_type_definition():
    r = html_samples.result(iterations=10)
    cause = {"function": None, "type_symbol": "LeakyBox_Type", "file": "/src/box.c", "line": 39,
             "module": "/ext/box.so", "python": [], "blocks_per_call": 1.0,
             "bytes_per_call": 24.0, "root_blocks_per_call": 1.0,
             "reason": "LeakyBox holds a reference to itself", "kind": "gc-blind-cycle",
             "allocated_at": "/src/box.c:79 in leaky()", "source": [[39, ".tp_flags = 0,", True]]}
    r["sites"].insert(0, cause)
    text = Page(render(r)).all_text()
    assert "Culprit: /src/box.c:39 in the definition of LeakyBox_Type" in text
    assert "Instances allocated at /src/box.c:79 in leaky()" in text


def test_the_culprit_and_its_reason_lead_each_site():
    r = html_samples.result(iterations=10)
    site = r["sites"][0]
    # An error path: the culprit is the function that returned NULL, not the
    # allocation line below it.
    site["culprit"] = {"file": "/src/ext/mod.c", "line": 23, "function": "make_pair",
                       "module": "/ext/mod.so",
                       "reason": "returned NULL with an exception set, without releasing it"}
    page = Page(render(r))
    text = page.all_text()
    assert ("Culprit: /src/ext/mod.c:23 in make_pair() \u2014 returned NULL with an exception "
            "set, without releasing it") in text
    assert len(page.find("p", class_="culpritreason")) == 1
    assert "Allocated at /src/ext/mod.c:38 in leaky()" in text


def test_a_culprit_without_a_line_names_module_and_symbol():
    r = html_samples.result(iterations=10)
    site = r["sites"][0]
    site.update(file=None, line=None, source=[])
    site["culprit"] = {"file": None, "line": None, "function": "leaky", "symbol": "leaky+0x1c",
                       "module": "/ext/mod.so",
                       "reason": "allocated here and never released; the line is not known: "
                                 "rebuild the extension with -g"}
    text = Page(render(r)).all_text()
    assert "Culprit: leaky+0x1c (/ext/mod.so) in leaky()" in text
    assert "the line is not known: rebuild the extension with -g" in text
    assert "Allocated at" not in text


def test_missing_and_odd_fields_do_not_break_the_page():
    minimal = {"target": "m:f", "verdict": "leak", "per_call": {"refs": 1.0}}
    assert "No samples in this result" in Page(render(minimal)).all_text()
    odd = dict(minimal, samples="x", sites=[1, "a", {"source": "bad", "frames": [3]}],
               survivors={"blocks": []}, types=[None], objects=[{"type": "int"}],
               memory_errors=[{"kind": None}], iterations={"warmup": None})
    assert "LEAK" in Page(render(odd)).all_text()
    unmeasured = html_samples.result(iterations=10)
    for s in unmeasured["samples"]:
        s["rss_bytes"] = -1
    text = Page(render(unmeasured)).all_text()
    assert "resident set (RSS) not measured here" in text


# -- size ----------------------------------------------------------------------------


@pytest.mark.parametrize("iterations", [100, 1000, 10000])
def test_the_report_of_a_long_run_stays_small(iterations):
    r = html_samples.result(iterations=iterations)
    out = render(r, html_samples.machine())
    assert len(out.encode()) < 2_000_000
    page = Page(out)
    for p in page.find("path", class_="series"):
        assert p["d"].count("L") < 620
    rows = page.find("tr", class_="measured")
    assert len(rows) <= html.SAMPLE_ROWS


def test_exact_figures_table_keeps_first_baseline_and_last():
    r = html_samples.result(iterations=1000)
    page = Page(render(r))
    assert len(page.find("tr", class_="baseline")) == 1
    text = page.all_text()
    last = r["samples"][-1]["blocks"]
    assert "{:,}".format(last) in text
    assert "41 of 1003 rows, evenly spaced" in text


# -- hostile strings -------------------------------------------------------------------


def _inert(out):
    page = Page(out)
    assert not page.find("img"), "an <img> from the data became an element"
    assert len(page.scripts) == 2
    assert page.scripts[1] == html.SCRIPT
    handlers = [(t, name) for t, a in page.tags for name in a if name.startswith("on")]
    assert not handlers, handlers
    assert "<!--" not in out.split("<!DOCTYPE html>", 1)[1]
    return page


def test_hostile_strings_stay_text():
    out = render(html_samples.hostile_result())
    page = _inert(out)
    # ...and are shown as they are.
    assert page.all_text().count(html_samples.HOSTILE) >= 10
    assert page.find("title") and html_samples.HOSTILE in out.replace("&lt;", "<").replace(
        "&gt;", ">").replace("&quot;", '"').replace("&#x27;", "'").replace("&amp;", "&")


def test_hostile_strings_in_a_suite_and_a_valgrind_summary_stay_text():
    entry = html_samples.hostile_result()
    entry["pytest"] = {"nodeid": html_samples.HOSTILE, "outcome": "leak",
                       "reason": html_samples.HOSTILE}
    _inert(render([entry, {"target": html_samples.HOSTILE, "verdict": None,
                           "notes": [html_samples.HOSTILE]}]))
    vg = html_samples.valgrind_summary()
    vg["command"] = [html_samples.HOSTILE]
    vg["errors"][0]["what"] = html_samples.HOSTILE
    vg["errors"][0]["stack"][1]["function"] = html_samples.HOSTILE
    vg["notes"] = [html_samples.HOSTILE]
    _inert(render(vg))


# -- suites and valgrind summaries -----------------------------------------------------------


def _suite():
    leak = html_samples.result(iterations=10)
    leak.update(target="test_a.py::test_leaky",
                pytest={"nodeid": "test_a.py::test_leaky", "outcome": "leak",
                        "reason": "grows call after call: refs +4/call"})
    clean = html_samples.result(iterations=10)
    clean.update(target="test_a.py::test_clean", verdict="clean", sites=[], objects=[],
                 pytest={"nodeid": "test_a.py::test_clean", "outcome": "clean", "reason": ""})
    skipped = {"target": "test_a.py::test_skip", "verdict": None,
               "pytest": {"nodeid": "test_a.py::test_skip", "outcome": "skipped",
                          "reason": "known leak, tracked elsewhere"}}
    return [clean, leak, skipped]


def test_a_suite_has_one_row_per_test_and_a_section_per_flagged_test():
    page = Page(render(_suite()))
    text = page.all_text()
    assert "3 tests checked: 1 leak, 1 skipped, 1 clean" in text
    assert len(page.find("tr", class_="o-clean")) == 1
    assert len(page.find("tr", class_="o-skipped")) == 1
    sections = page.find("section", class_="entry")
    assert [s["id"] for s in sections] == ["t1"]
    assert len(page.find("path", class_="series")) == 6         # only the flagged test's
    assert "known leak, tracked elsewhere" in text


def test_loops_of_refhound_run_are_a_suite_too():
    loop = html_samples.result(iterations=10)
    loop["target"] = "parse"
    text = Page(render([loop, {"target": "other", "verdict": None,
                               "notes": ["the loop ended after 3 bodies"]}])).all_text()
    assert "refhound run" in text and "2 loops checked" in text
    assert "the loop ended after 3 bodies" in text


def test_an_empty_suite():
    assert "Nothing was checked" in Page(render([])).all_text()


def test_a_valgrind_summary_shows_errors_leaks_and_stacks():
    page = Page(render(html_samples.valgrind_summary()))
    text = page.all_text()
    assert "ERROR" in text and "1 memory error, 1 leak" in text
    assert "double free" in text and "×6" in text
    assert "freed at /src/ext/double_free.c:32" in text
    assert "1 block, 32 bytes per call" in text
    assert len(page.find("rect", class_="bar")) == 4             # blocks lost per iteration
    assert "19 suppressions" in text


# -- input -------------------------------------------------------------------------------


def test_kind_of_input():
    assert html.kind(html_samples.result(iterations=3)) == "result"
    assert html.kind([]) == "suite"
    assert html.kind(_suite()) == "suite"
    assert html.kind(html_samples.valgrind_summary()) == "valgrind"
    for bad in ({}, {"target": "x", "verdict": "maybe", "per_call": {}}, [1], [{"a": 1}], "x",
                3, None, {"tool": "memcheck"}):
        with pytest.raises(html.BadInput, match="is not a refhound result"):
            html.kind(bad)


def test_load_says_what_is_wrong_in_one_line(tmp_path):
    def message(path):
        with pytest.raises(html.BadInput) as info:
            html.load(str(path))
        text = str(info.value)
        assert "\n" not in text
        return text

    assert message(tmp_path / "missing.json") == "no such file: %s" % (tmp_path / "missing.json")
    assert "is a directory" in message(tmp_path)
    (tmp_path / "x.json").write_text("<html>")
    assert message(tmp_path / "x.json").startswith("%s is not JSON" % (tmp_path / "x.json"))
    (tmp_path / "b.json").write_bytes(b"\xff\xfe{")
    assert "is not JSON" in message(tmp_path / "b.json")
    (tmp_path / "o.json").write_text(json.dumps({"hello": 1}))
    assert "is not a refhound result" in message(tmp_path / "o.json")
    good = tmp_path / "r.json"
    good.write_text(json.dumps(html_samples.result(iterations=3)))
    assert html.load(str(good))["target"] == "mod:leaky"


def test_write_report_fails_in_one_line(tmp_path, capsys):
    assert not html.write_report(str(tmp_path / "no" / "dir.html"), html_samples.result(3))
    err = capsys.readouterr().err
    assert re.fullmatch(r"refhound: error: cannot write .*dir\.html: No such file or directory\n",
                        err)


def test_source_is_read_at_render_time_only_from_source_files(tmp_path):
    (tmp_path / "secret.txt").write_text("TOPSECRET\n" * 5)
    (tmp_path / "mod.c").write_text("".join("int line%d;\n" % n for n in range(1, 10)))
    r = html_samples.result(iterations=5)
    site = r["sites"][0]
    site.update(source=[], file=str(tmp_path / "secret.txt"), line=3)
    assert "TOPSECRET" not in render(r)
    site.update(file=str(tmp_path / "mod.c"), line=5)
    page = Page(render(r))
    text = page.all_text()
    assert [n for n in range(1, 10) if "int line%d;" % n in text] == [3, 4, 5, 6, 7]
    assert len(page.find("tr", class_="culprit")) == 1


def test_the_open_last_epoch_of_a_clean_check_is_told_apart():
    r = html_samples.result(iterations=9)
    r.update(verdict="clean", sites=[], objects=[])
    r["survivors"] = {"first_epoch": 4, "blocks": [0] * 8 + [667], "bytes": [0] * 8 + [43945]}
    page = Page(render(r))
    assert len(page.find("rect", class_="bar")) == 8
    assert len(page.find("rect", class_="bar muted")) == 1
    assert "Grey: the last epoch, still open when the figures were read" in page.all_text()
