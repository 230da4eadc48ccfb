"""pytest --refhound: leak-check every selected test.

Registered through the `pytest11` entry point (or `-p refhound.pytest_plugin`).
Tracking starts when collection ends, with every live object adopted (the
code under test, imported by the conftest files and the test modules,
exists before any check runs).  Each test runs once normally; when it passes, its body is
screened and, when the screen cannot clear it, checked in full with
refhound.Checker (the engine of `refhound check`); see _pytest_check.py for
the fixture policy and the screen.

Leaking tests fail (--refhound-warn makes them warnings).  The result of each
check travels on the test report (`report.refhound`, a plain dict that
pytest-xdist serializes with the report), so under `-n N` the workers check
and the controller merges one summary and one --refhound-json file.  JUnit
XML gets `refhound_*` properties through the report's user_properties.
"""
import json
import os
import sys
import time
import warnings

import pytest

from . import _pytest_batch as pb
from . import _pytest_check as pc
from .options import FIELD, OptionError, Options
from .report.terminal import (SPARK_CHARS, can_encode, failure_text, markup_painter,
                              test_details, test_headline)

REPORT_ATTR = "refhound"
# What report.refhound keeps once the report has been logged (the whole
# record until then: every plugin's pytest_runtest_logreport sees it).
KEPT_ON_REPORT = ("nodeid", "outcome", "reason")

# The plugin's own options: (name, kind, default, help).  Each has a flag
# --refhound-... and an ini key refhound_...; the check's options come from
# refhound.options (CHECK_OPTIONS, with pytest's defaults).
PLUGIN_OPTIONS = (
    ("refhound", "bool", False,
     "leak-check every selected test (warm-up, then measured runs of its body)"),
    ("refhound_warn", "bool", False,
     "report leaking tests as warnings instead of failing them"),
    ("refhound_strict", "bool", False,
     "fail tests whose check stays inconclusive"),
    ("refhound_full", "bool", False,
     "check every test in full (no screen first: slower, the same verdicts)"),
    ("refhound_one_by_one", "bool", False,
     "screen every test on its own instead of in batches of the tests of one class or "
     "module (slower; the same verdicts for the tests a batch clears)"),
    ("refhound_budget", "seconds", pc.DEFAULT_BUDGET,
     "a test the screen cannot clear is checked in full when that is expected to take at "
     "most SECONDS; a slower one is inconclusive, and so is one whose screen would need "
     "another round past SECONDS ('none': no limit)"),
    ("refhound_fixtures", "fixtures", "reuse",
     "reuse: function-scoped fixtures set up once per test; fresh: set up again "
     "for every call (the fixtures' own leaks are told apart from the test's)"),
    ("refhound_json", "path", None,
     "write the results as JSON to FILE (one entry per test, the schema of refhound check)"),
    ("refhound_html", "path", None,
     "write one self-contained HTML report to FILE (a section per flagged test)"),
    ("refhound_sanitize", "bool", False,
     "run the session under the guard allocator: the first memory error (use after "
     "free, double free, overflow, underflow) ends it and is reported with its culprit "
     "line (exit status 1)"),
)
CHECK_OPTIONS = ("iterations", "min_iterations", "warmup", "calls", "patience")

KEY = pytest.StashKey()


class RefhoundLeakWarning(UserWarning):
    """A test leaks (issued instead of a failure under --refhound-warn)."""


# ---------------------------------------------------------------------------
# Options


def pytest_addoption(parser):
    group = parser.getgroup("refhound", "refhound: leak-check tests of C extensions")
    for name, kind, default, text in PLUGIN_OPTIONS:
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=name, help=text)
            parser.addini(name, text, type="bool", default=default)
            continue
        metavar = {"fixtures": "reuse|fresh", "path": "FILE", "seconds": "SECONDS"}[kind]
        group.addoption(flag, action="store", default=None, dest=name, metavar=metavar,
                        help=text + " (default: %s)" % default)
        parser.addini(name, text, default=default)
    for field in (FIELD[n] for n in CHECK_OPTIONS):
        name = "refhound_" + field.name
        default = field.pytest_default
        text = "%s (default: %s)" % (field.help, "auto" if default is None else default)
        group.addoption("--" + name.replace("_", "-"), action="store", default=None, dest=name,
                        metavar={"calls": "N|auto", "seconds": "SECONDS"}.get(field.kind, "N"),
                        help=text)
        parser.addini(name, text, default="auto" if default is None else str(default))


def _value(config, name):
    """Command line first, then the ini file, then the default."""
    value = config.getoption(name, None)
    if value is None:
        value = config.getini(name)
    return value


def _flag(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def read_options(config):
    """{plugin option: value} and "options": the check's Options."""
    out = {}
    for name, kind, default, _ in PLUGIN_OPTIONS:
        value = _value(config, name)
        if kind == "bool":
            value = _flag(value)
        elif value in (None, ""):
            value = None
        else:
            value = str(value).strip()
        if kind == "fixtures" and value not in pc.FIXTURE_MODES:
            raise pytest.UsageError("refhound: %s=%r must be one of %s"
                                    % (name, value, ", ".join(pc.FIXTURE_MODES)))
        if kind == "seconds":
            value = _seconds(name, value)
        out[name] = value
    values = {}
    for field in (FIELD[n] for n in CHECK_OPTIONS):
        text = _value(config, "refhound_" + field.name)
        try:
            values[field.name] = field.parse(text)
        except OptionError as exc:
            raise pytest.UsageError("refhound: --refhound-%s" % str(exc))
    try:
        out["options"] = Options.for_pytest(strict=out["refhound_strict"], **values)
    except OptionError as exc:
        raise pytest.UsageError("refhound: %s" % str(exc).replace("--", "--refhound-"))
    return out


def _seconds(name, value):
    if value is None or str(value).lower() == "none":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise pytest.UsageError("refhound: --%s=%r must be a number of seconds above 0 or "
                                "'none'" % (name.replace("_", "-"), value))
    return seconds


def _enabled(config):
    return _flag(_value(config, "refhound"))


def _is_worker(config):
    """An xdist worker, from pytest_configure on (xdist sets workerinput
    before it configures)."""
    return hasattr(config, "workerinput")


# A pytest that a test starts (a subprocess of an xdist worker) inherits the
# worker's PYTEST_XDIST_WORKER, and is no worker: it is a session of its own.
# It is told by PYTEST_CURRENT_TEST, set by the test that started it, read
# when the plugin loads (its own tests set and clear it later).
_STARTED_BY_A_TEST = bool(os.environ.get("PYTEST_CURRENT_TEST"))


def _is_worker_early(early_config):
    """An xdist worker, in the hooks before pytest_configure: only the
    environment xdist gives its workers tells then."""
    return _is_worker(early_config) or (bool(os.environ.get("PYTEST_XDIST_WORKER"))
                                        and not _STARTED_BY_A_TEST)


def _is_controller(config):
    """The xdist controller runs no tests: it only merges the workers' results."""
    if _is_worker(config):
        return False
    option = config.option
    if getattr(option, "dist", "no") not in (None, "no"):
        return True
    return bool(getattr(option, "numprocesses", None)) or bool(getattr(option, "tx", None))


# ---------------------------------------------------------------------------
# Tracking starts when collection ends (RefhoundPlugin.pytest_collection_finish)


def _engine():
    """refhound._core, or a usage error saying how to build it."""
    try:
        from . import _core
    except ImportError as exc:
        raise pytest.UsageError("refhound: the engine refhound._core cannot be imported (%s); "
                                "build it with: python3 setup.py build_ext --inplace" % exc)
    return _core


def _sanitize(early_config, ns):
    """--refhound-sanitize: the guard goes under the allocators first (the
    tracking hooks then chain onto it), in a forked child that runs the
    session; this process waits and reports."""
    on = getattr(ns, "refhound_sanitize", None)
    if on is None:
        try:
            on = _flag(early_config.getini("refhound_sanitize"))
        except (ValueError, KeyError):
            on = False
    if not on or _is_worker_early(early_config):
        return
    if getattr(ns, "numprocesses", None) not in (None, 0) or getattr(ns, "tx", None):
        raise pytest.UsageError("refhound: --refhound-sanitize runs the session in one "
                                "process; drop -n/--tx")
    try:
        from . import _core
    except ImportError as exc:
        raise pytest.UsageError("refhound: the engine refhound._core cannot be imported (%s)"
                                % exc)
    if _core.guard_stats()["active"] or _core.is_tracking():
        return
    from ._sanitize import continue_sanitized

    def stop_capturing():
        capman = early_config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            try:
                capman.stop_global_capturing()
            except Exception:
                pass
    continue_sanitized("pytest", before_report=stop_capturing)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    ns = early_config.known_args_namespace
    _sanitize(early_config, ns)
    try:
        on = _enabled(early_config) if getattr(ns, "refhound", None) is None else ns.refhound
    except (ValueError, KeyError):
        on = bool(getattr(ns, "refhound", False))
    if not on:
        return
    numprocesses = getattr(ns, "numprocesses", None)
    if not _is_worker_early(early_config) and (numprocesses not in (None, 0)
                                               or getattr(ns, "tx", None)):
        return  # an xdist controller: the workers track
    _engine()           # a missing engine is said before the conftest files load


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    """Under --refhound-sanitize, the guard's fault handler goes back on top
    of faulthandler's (enabled by pytest after the guard)."""
    try:
        from . import _core
        if _core.guard_stats()["active"]:
            _core.guard_rearm()
    except ImportError:
        pass


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
        _engine()
    plugin = RefhoundPlugin(config, options, controller)
    config.stash[KEY] = plugin
    config.pluginmanager.register(plugin, "refhound-plugin")



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
        self.defaults = pc.Settings(options["options"], fixtures=options["refhound_fixtures"],
                                    screen=not options["refhound_full"],
                                    budget=options["refhound_budget"])
        self.warn = options["refhound_warn"]
        # nodeid -> the record as JSON text (the controller's view): a str
        # is no container the cyclic collector walks, where the record's
        # dicts and lists, kept for every test of a long suite, would make
        # each full collection of the run slower (_records() decodes them).
        self.records = {}
        self._decoded = None
        self.batcher = None
        if not controller and not options["refhound_one_by_one"] and pb.enabled(config):
            self.batcher = pb.Batcher(config, self.defaults, self._settings_or_none,
                                      self._judged_later)

    # -- in the process that runs the test ---------------------------------

    def pytest_collection_finish(self, session):
        """Tracking starts here, with the live objects adopted (what the
        conftest files and the test modules made, the interpreter's free
        lists: a float constant of a test's code, which an extension that
        keeps a reference to its argument would otherwise leak unseen).
        Not earlier: every allocation of the collection (assertion
        rewriting, the modules' imports) went through the hooks, 0.1 to
        0.15 s of each process's start (pytest-xdist's workers each pay
        it), and no check runs before this.  Started already (refhound run
        of pytest, --refhound-sanitize's child): adopted only."""
        if self.controller:
            return
        _core = _engine()
        if _core.is_tracking():
            _core.adopt()
        else:
            _core.start(adopt=True)

    def _settings_or_none(self, item):
        try:
            return self.defaults.with_marker(item.get_closest_marker("refhound"))
        except pc.BadMarker:
            return None

    def pytest_runtest_protocol(self, item, nextitem):
        if self.batcher is not None:
            return self.batcher.protocol(item, nextitem)
        return None

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item):
        # trylast: innermost, so capture and log capture are still active.
        t = time.perf_counter()
        result = yield
        seconds = time.perf_counter() - t
        if not isinstance(item, pytest.Function) or pc.unittest_outcome(item):
            # (a unittest test that failed or was skipped: unittest keeps its
            # outcome on the item instead of raising it; nothing to check)
            return result
        try:
            settings = self.defaults.with_marker(item.get_closest_marker("refhound"))
        except pc.BadMarker as exc:
            item.stash[KEY] = {"nodeid": item.nodeid, "outcome": "bad-marker",
                               "reason": "refhound: bad @pytest.mark.%s: %s" % ("refhound", exc),
                               "result": None, "fixture_result": None, "settings": None}
            return result
        deferred = pb.deferrable(item, settings, seconds)
        if deferred is not None:
            item.stash[pb.DEFERRED] = deferred      # judged with its batch
            return result
        # (to pytest_runtest_makereport, which puts it on the report)
        item.stash[KEY] = self._record(item, pc.check_item(item, settings, call_seconds=seconds))
        return result

    def _record(self, item, outcome, properties=True):
        record = _plain(outcome.to_dict())
        if properties:
            item.user_properties.extend(_properties(record))
        if record["outcome"] in pc.FAILING and self.warn:
            warnings.warn(RefhoundLeakWarning(test_headline(record) + " in " + item.nodeid))
        return record

    def _judged_later(self, item, outcome, reports):
        """A batched test's check, judged after its call report was made
        (changed as pytest_runtest_makereport would have); the properties
        go on the call and teardown reports (JUnit XML reads the teardown's)."""
        record = self._record(item, outcome, properties=False)
        props = _properties(record)
        if not any(r.when == "teardown" for r in reports):
            item.user_properties.extend(props)
        for report in reports:
            if report.when == "call":
                report.user_properties.extend(props)
                self._apply(report, record)
            elif report.when == "teardown":
                report.user_properties.extend(props)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.when != "call":
            return report
        record = item.stash.get(KEY, None)
        if record is None:
            return report
        del item.stash[KEY]         # on the report from here on
        self._apply(report, record)
        return report

    def _apply(self, report, record):
        setattr(report, REPORT_ATTR, record)
        if report.passed:
            if record["outcome"] == "bad-marker":
                report.outcome = "failed"
                report.longrepr = record["reason"]
            elif record["outcome"] in pc.FAILING and not self.warn:
                report.outcome = "failed"
                report.longrepr = failure_text(record)

    def pytest_report_teststatus(self, report, config):
        record = getattr(report, REPORT_ATTR, None)
        if report.when == "call" and record and record["outcome"] in pc.FAILING and report.failed:
            return "failed", "L", ("LEAKED", {"red": True})
        return None

    # -- wherever the reports arrive (the controller under xdist) -----------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report):
        result = yield
        # After every other plugin's look at the whole record (pytest-xdist's
        # worker has sent it): the report keeps its outcome and reason, the
        # controller the record as text.
        record = getattr(report, REPORT_ATTR, None)
        if report.when == "call" and isinstance(record, dict) and "nodeid" in record:
            if not _is_worker(self.config):
                self.records[report.nodeid] = json.dumps(record)
                self._decoded = None
            setattr(report, REPORT_ATTR, {k: record[k] for k in KEPT_ON_REPORT if k in record})
        return result

    def _records(self):
        """The records of the run's checked tests, decoded once."""
        if self._decoded is None:
            self._decoded = [json.loads(text) for text in self.records.values()]
        return self._decoded

    def pytest_sessionfinish(self, session):
        path = self.options["refhound_json"]
        html_path = self.options["refhound_html"]
        if not (path or html_path) or _is_worker(self.config):
            return
        entries = []
        for record in self._records():
            nodeid = record["nodeid"]
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
        records = self._records()
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
        # Colour through pytest's own writer (its decision: PY_COLORS,
        # NO_COLOR, FORCE_COLOR, a terminal); sparklines as its file can.
        tw = getattr(tr, "_tw", None)
        paint = markup_painter(tw)
        ascii = not can_encode(getattr(tw, "_file", None) or sys.stdout, SPARK_CHARS)
        for key, title, full in sections:
            group = [r for r in records if r["outcome"] == key]
            if not group:
                continue
            tr.write_line("")
            tr.write_line(title + ":", bold=True, red=key in ("leak", "error"))
            for r in sorted(group, key=lambda r: r["nodeid"]):
                if full or key == "allowed":
                    tr.write_line("  %s" % r["nodeid"])
                    tr.write_line("    " + test_headline(r, color=paint))
                    for line in test_details(r, indent="    ", color=paint, ascii=ascii,
                                             sparklines=full):
                        tr.write_line(line)
                else:
                    tr.write_line("  %s: %s" % (r["nodeid"], r.get("reason") or ""))
        if self.options["refhound_json"]:
            tr.write_line("")
            tr.write_line("results written to %s" % self.options["refhound_json"])
        if self.options["refhound_html"]:
            tr.write_line("HTML report written to %s" % self.options["refhound_html"])
