"""pytest --refhound: leak-check every selected test.

Registered through the `pytest11` entry point (or `-p refhound.pytest_plugin`).
Tracking starts before the conftest files and the test modules are imported
(pytest_load_initial_conftests), so the code under test is tracked from its
import on.  Each test runs once normally; when it passes, its body is
checked with refhound.Checker (the engine of `refhound check`); see
_pytest_check.py for the fixture policy.

Leaking tests fail (--refhound-warn makes them warnings).  The result of each
check travels on the test report (`report.refhound`, a plain dict that
pytest-xdist serializes with the report), so under `-n N` the workers check
and the controller merges one summary and one --refhound-json file.  JUnit
XML gets `refhound_*` properties through the report's user_properties.
"""
import json
import os
import sys
import warnings

import pytest

from . import _pytest_check as pc

REPORT_ATTR = "refhound"

# One table for the options: (option, type, default, help).  Each has a
# command-line flag --refhound-... and an ini key refhound_...
OPTIONS = (
    ("refhound", "bool", False,
     "leak-check every selected test (warm-up, then measured runs of its body)"),
    ("refhound_warn", "bool", False,
     "report leaking tests as warnings instead of failing them"),
    ("refhound_strict", "bool", False,
     "fail tests whose check stays inconclusive"),
    ("refhound_iterations", "int", 30,
     "at most N measured iterations per test (stops earlier when sure)"),
    ("refhound_min_iterations", "int", 8,
     "at least N measured iterations per test (at least 3)"),
    ("refhound_warmup", "int", 2,
     "warm-up iterations per test after its normal run"),
    ("refhound_calls", "calls", "auto",
     "calls of the test body per iteration: a number, or auto (up to 100, ~5 ms)"),
    ("refhound_fixtures", "fixtures", "reuse",
     "reuse: function-scoped fixtures set up once per test; fresh: set up again "
     "for every call (the fixtures' own leaks are told apart from the test's)"),
    ("refhound_json", "path", None,
     "write the results as JSON to FILE (one entry per test, the schema of refhound check)"),
    ("refhound_html", "path", None,
     "write one self-contained HTML report to FILE (a section per flagged test)"),
)

KEY = pytest.StashKey()


class RefhoundLeakWarning(UserWarning):
    """A test leaks (issued instead of a failure under --refhound-warn)."""


# ---------------------------------------------------------------------------
# Options


def pytest_addoption(parser):
    group = parser.getgroup("refhound", "refhound: leak-check tests of C extensions")
    for name, kind, default, text in OPTIONS:
        flag = "--" + name.replace("_", "-")
        ini_type = "bool" if kind == "bool" else None
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=name, help=text)
        else:
            metavar = {"int": "N", "calls": "N|auto", "fixtures": "reuse|fresh",
                       "path": "FILE"}[kind]
            group.addoption(flag, action="store", default=None, dest=name, metavar=metavar,
                            help=text + " (default: %s)" % default)
        parser.addini(name, text, type=ini_type, default=default)


def _value(config, name):
    """Command line first, then the ini file, then the default."""
    value = config.getoption(name, None)
    if value is None:
        value = config.getini(name)
    return value


def _convert(name, kind, value):
    if kind == "bool":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if value is None or value == "":
        return None
    text = str(value).strip()
    if kind == "int":
        try:
            number = int(text)
        except ValueError:
            raise pytest.UsageError("refhound: %s=%r is not a whole number" % (name, value))
        low = {"refhound_min_iterations": 3, "refhound_warmup": 0}.get(name, 1)
        if number < low:
            raise pytest.UsageError("refhound: %s must be at least %d (got %d)"
                                    % (name, low, number))
        return number
    if kind == "calls":
        if text == "auto":
            return None
        try:
            number = int(text)
        except ValueError:
            raise pytest.UsageError("refhound: %s=%r must be a whole number or 'auto'"
                                    % (name, value))
        if number < 1:
            raise pytest.UsageError("refhound: %s must be at least 1" % name)
        return number
    if kind == "fixtures":
        if text not in pc.FIXTURE_MODES:
            raise pytest.UsageError("refhound: %s=%r must be one of %s"
                                    % (name, value, ", ".join(pc.FIXTURE_MODES)))
        return text
    return text     # path


def read_options(config):
    out = {}
    for name, kind, default, _ in OPTIONS:
        out[name] = _convert(name, kind, _value(config, name))
    if out["refhound_min_iterations"] > out["refhound_iterations"]:
        raise pytest.UsageError("refhound: --refhound-min-iterations (%d) is above "
                                "--refhound-iterations (%d)"
                                % (out["refhound_min_iterations"], out["refhound_iterations"]))
    return out


def _enabled(config):
    return _convert("refhound", "bool", _value(config, "refhound"))


def _is_worker(config):
    return hasattr(config, "workerinput") or bool(os.environ.get("PYTEST_XDIST_WORKER"))


def _is_controller(config):
    """The xdist controller runs no tests: it only merges the workers' results."""
    if _is_worker(config):
        return False
    option = config.option
    if getattr(option, "dist", "no") not in (None, "no"):
        return True
    return bool(getattr(option, "numprocesses", None)) or bool(getattr(option, "tx", None))


# ---------------------------------------------------------------------------
# Start tracking early: before the conftest files import the code under test


def _start_tracking():
    try:
        from . import _core
    except ImportError as exc:
        raise pytest.UsageError("refhound: the engine refhound._core cannot be imported (%s); "
                                "build it with: python3 setup.py build_ext --inplace" % exc)
    if not _core.is_tracking():
        _core.start()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    ns = early_config.known_args_namespace
    try:
        on = _enabled(early_config) if getattr(ns, "refhound", None) is None else ns.refhound
    except (ValueError, KeyError):
        on = bool(getattr(ns, "refhound", False))
    if not on:
        return
    numprocesses = getattr(ns, "numprocesses", None)
    if not _is_worker(early_config) and (numprocesses not in (None, 0) or getattr(ns, "tx", None)):
        return  # an xdist controller: the workers track
    _start_tracking()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "%s: configure the leak check of this test under pytest --refhound "
        "(skip=True or a reason skips it; metrics=[...] limits the metrics that may "
        "fail it; allow={metric: per call} tolerates a known leak; fixtures='reuse'|'fresh')"
        % pc.MARKER_SIGNATURE)
    if not _enabled(config):
        return
    options = read_options(config)
    controller = _is_controller(config)
    if not controller:
        _start_tracking()   # late (e.g. -n auto on one CPU): adoption covers what exists
    plugin = RefhoundPlugin(config, options, controller)
    config.stash[KEY] = plugin
    config.pluginmanager.register(plugin, "refhound-plugin")


# ---------------------------------------------------------------------------
# Rendering


def _fmt(value):
    from .report.terminal import _fmt_rate
    return _fmt_rate(value)


def _site_lines(site, indent, lead=""):
    """A site: where, function, rate; then its culprit source line and the
    first Python caller, when attribution gave them."""
    if site.get("file"):
        where = "%s:%s" % (site["file"], site.get("line") or "?")
    else:
        where = site.get("module") or "(no native frame)"
    text = where
    if site.get("function"):
        text += " in %s()" % site["function"]
    extra = []
    if site.get("blocks_per_call") is not None:
        extra.append("%s blocks" % _fmt(site["blocks_per_call"]))
    if site.get("bytes_per_call") is not None:
        extra.append("%s bytes" % _fmt(site["bytes_per_call"]))
    if site.get("refs_per_call") is not None:
        extra.append("%s refs" % _fmt(site["refs_per_call"]))
    if extra:
        text += "  (%s per call)" % ", ".join(extra)
    lines = [indent + lead + text]
    for entry in site.get("source") or []:
        if isinstance(entry, (list, tuple)) and len(entry) == 3 and entry[2]:
            lines.append(indent + "  > %5s | %s" % (entry[0], str(entry[1]).strip()))
    python = site.get("python") or []
    if python:
        frame = python[0]
        lines.append(indent + "  called from %s:%s in %s" % (
            frame.get("file"), frame.get("line"), frame.get("function")))
    return lines


def headline(record):
    """One line: what leaks, per call."""
    result = record.get("result") or {}
    pc_ = result.get("per_call") or {}
    parts = []
    for key, label in (("refs", "refs"), ("objects", "objects"), ("blocks", "blocks"),
                       ("bytes", "bytes"), ("native_bytes", "native bytes"), ("fds", "fds")):
        value = pc_.get(key)
        if value is not None and abs(value) >= 0.05:
            parts.append("%s %s" % (_fmt(value), label))
    types = [o["type"] for o in result.get("objects") or []][:3]
    text = "refhound: %s" % record["outcome"].upper()
    if parts:
        text += " %s per call" % ", ".join(parts)
    if types:
        text += " (%s)" % ", ".join(types)
    return text


def details(record, indent="  "):
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
            "%s %s" % (_fmt(o["count_per_call"]), o["type"]) for o in objects[:6]))
    growth = result.get("refcount_growth") or []
    if growth:
        lines.append(indent + "growing reference counts:")
        for g in growth[:5]:
            lines.append(indent + "  %s refs per call on %s %s" % (
                _fmt(g["refs_per_call"]), g["type"], g["repr"]))
            for site in (g.get("sites") or [])[:3]:
                lines.extend(_site_lines(site, indent + "    ", "at "))
    sites = result.get("sites") or []
    if sites:
        lines.append(indent + "culprit sites (where the surviving blocks were allocated):")
        for site in sites[:5]:
            lines.extend(_site_lines(site, indent + "  "))
    for note in result.get("notes") or []:
        lines.append(indent + "note: " + note)
    fixture = record.get("fixture_result")
    if fixture and fixture.get("verdict") == "leak":
        fpc = fixture.get("per_call") or {}
        lines.append(indent + "fixture cycle alone: %s refs, %s objects, %s blocks per call" % (
            _fmt(fpc.get("refs")), _fmt(fpc.get("objects")), _fmt(fpc.get("blocks"))))
    return lines


def failure_text(record):
    return "\n".join([headline(record)] + details(record)) + "\n"


def _properties(record):
    """Compact JUnit properties (the full result goes to --refhound-json)."""
    props = [("refhound_outcome", record["outcome"])]
    result = record.get("result")
    if result:
        props.append(("refhound_verdict", result["verdict"]))
        for key in ("refs", "objects", "blocks", "bytes"):
            value = result["per_call"].get(key)
            if value is not None:
                props.append(("refhound_%s_per_call" % key, value))
        if result.get("sites"):
            s = result["sites"][0]
            props.append(("refhound_site", "%s:%s %s" % (s.get("file"), s.get("line"),
                                                        s.get("function") or "")))
    if record.get("reason") and record["outcome"] != "clean":
        props.append(("refhound_reason", record["reason"]))
    return props


def _plain(data):
    """JSON round trip: only types every serializer (execnet, JUnit) takes."""
    return json.loads(json.dumps(data, default=str))


# ---------------------------------------------------------------------------
# The plugin proper (registered only under --refhound)


class RefhoundPlugin:
    def __init__(self, config, options, controller):
        self.config = config
        self.options = options
        self.controller = controller
        self.defaults = pc.Settings(
            warmup=options["refhound_warmup"], iterations=options["refhound_iterations"],
            min_iterations=options["refhound_min_iterations"], calls=options["refhound_calls"],
            fixtures=options["refhound_fixtures"], strict=options["refhound_strict"])
        self.warn = options["refhound_warn"]
        self.records = {}       # nodeid -> record (the controller's view)

    # -- in the process that runs the test ---------------------------------

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item):
        # trylast: innermost, so capture and log capture are still active.
        result = yield
        if not isinstance(item, pytest.Function):
            return result
        try:
            settings = self.defaults.with_marker(item.get_closest_marker("refhound"))
        except pc.BadMarker as exc:
            item.stash[KEY] = {"nodeid": item.nodeid, "outcome": "bad-marker",
                               "reason": "refhound: bad @pytest.mark.%s: %s" % ("refhound", exc),
                               "result": None, "fixture_result": None, "settings": None}
            return result
        outcome = pc.check_item(item, settings)
        record = _plain(outcome.to_dict())
        item.stash[KEY] = record
        item.user_properties.extend(_properties(record))
        if record["outcome"] in pc.FAILING and self.warn:
            warnings.warn(RefhoundLeakWarning(headline(record) + " in " + item.nodeid))
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.when != "call":
            return report
        record = item.stash.get(KEY, None)
        if record is None:
            return report
        setattr(report, REPORT_ATTR, record)
        if report.passed:
            if record["outcome"] == "bad-marker":
                report.outcome = "failed"
                report.longrepr = record["reason"]
            elif record["outcome"] in pc.FAILING and not self.warn:
                report.outcome = "failed"
                report.longrepr = failure_text(record)
        return report

    def pytest_report_teststatus(self, report, config):
        record = getattr(report, REPORT_ATTR, None)
        if report.when == "call" and record and record["outcome"] in pc.FAILING and report.failed:
            return "failed", "L", ("LEAKED", {"red": True})
        return None

    # -- wherever the reports arrive (the controller under xdist) -----------

    def pytest_runtest_logreport(self, report):
        record = getattr(report, REPORT_ATTR, None)
        if report.when == "call" and isinstance(record, dict):
            self.records[report.nodeid] = record

    def pytest_sessionfinish(self, session):
        path = self.options["refhound_json"]
        html_path = self.options["refhound_html"]
        if not (path or html_path) or _is_worker(self.config):
            return
        entries = []
        for nodeid, record in self.records.items():
            entry = dict(record["result"]) if record.get("result") else {
                "target": nodeid, "verdict": None}
            entry["target"] = nodeid
            entry["pytest"] = {
                "nodeid": nodeid, "outcome": record["outcome"], "reason": record.get("reason", ""),
                "settings": record.get("settings"),
                "fixture_result": record.get("fixture_result"),
            }
            entries.append(entry)
        if html_path:
            from .report.html import write_report
            write_report(html_path, entries)
        if not path:
            return
        try:
            with open(path, "w") as f:
                json.dump(entries, f, indent=2)
                f.write("\n")
        except OSError as exc:
            sys.stderr.write("refhound: error: cannot write %s: %s\n" % (path, exc.strerror or exc))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        if _is_worker(self.config):
            return
        tr = terminalreporter
        records = list(self.records.values())
        tr.write_sep("=", "refhound leak check")
        counts = {}
        for r in records:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        if not records:
            tr.write_line("no test was checked (only tests that pass are checked)")
            return
        order = ("leak", "error", "inconclusive", "fixture", "allowed", "ignored",
                 "unchecked", "skipped", "bad-marker", "clean")
        tr.write_line("%d tests checked: %s" % (
            len(records), ", ".join("%d %s" % (counts[k], k) for k in order if k in counts)))
        sections = (
            ("leak", "leaking tests" + (" (warnings only: --refhound-warn)" if self.warn else ""),
             True),
            ("error", "reference counts falling (an extra DECREF: this ends in a crash)", True),
            ("fixture", "leaks of function-scoped fixtures, not blamed on the test", True),
            ("allowed", "known leaks within the marker's allowance", False),
            ("inconclusive", "inconclusive (raise --refhound-iterations)", False),
            ("ignored", "growth only in metrics the marker does not watch", False),
            ("unchecked", "not checked", False),
            ("skipped", "skipped by the marker", False),
        )
        for key, title, full in sections:
            group = [r for r in records if r["outcome"] == key]
            if not group:
                continue
            tr.write_line("")
            tr.write_line(title + ":", bold=True, red=key in ("leak", "error"))
            for r in sorted(group, key=lambda r: r["nodeid"]):
                if full or key == "allowed":
                    tr.write_line("  %s" % r["nodeid"])
                    tr.write_line("    " + headline(r))
                    for line in details(r, indent="    "):
                        tr.write_line(line)
                else:
                    tr.write_line("  %s: %s" % (r["nodeid"], r.get("reason") or ""))
        if self.options["refhound_json"]:
            tr.write_line("")
            tr.write_line("results written to %s" % self.options["refhound_json"])
        if self.options["refhound_html"]:
            tr.write_line("HTML report written to %s" % self.options["refhound_html"])
