"""How one pytest test is leak-checked: the policy behind `pytest --refhound`.

The test has already run once, normally, when the check starts (inside the
call phase, so output capture, log capture and the warnings plugin are all
in place).  Only a test that passed is checked.  The check then calls the
test body through `item.runtest()` in warm-up and measured iterations with
refhound.Checker, the engine of `refhound check`.

Fixtures (the `fixtures` setting):

  reuse  (default) function-scoped fixtures are set up once, by pytest, and
         every measured call runs against the same fixture values; setup and
         teardown are outside the measurement, so a fixture that leaks when
         it is created is never blamed on the test.
  fresh  every call tears the function-scoped fixtures down and sets them
         up again (for tests that mutate their fixtures).  When the test
         leaks, the fixture cycle alone is checked as well; a leak that the
         fixture cycle explains is reported as the fixture's, and the test
         passes.

Between calls the per-call records of pytest itself are trimmed back to what
they held after the normal run (captured output, captured log records,
recorded warnings, monkeypatch undo lists), so the check never mistakes
pytest's bookkeeping for a leak in the test.
"""
import logging
import warnings

# The engine (.api -> ._core) is imported only when a check runs, so that
# the plugin, loaded by every pytest run through its entry point, costs
# nothing and cannot break a run without --refhound.

from .options import FIELD, OptionError, Options
from .verdict import FAILING, VERDICT_METRICS, explained_by_fixture, judge

FIXTURE_MODES = ("reuse", "fresh")
MARKER_KEYS = ("skip", "iterations", "min_iterations", "warmup", "calls", "metrics",
               "allow", "fixtures")
MARKER_SIGNATURE = ("refhound(skip=False, iterations=None, min_iterations=None, warmup=None, "
                    "calls=None, metrics=None, allow=None, fixtures=None)")


class BadMarker(Exception):
    """A @pytest.mark.refhound(...) argument that makes no sense."""


class Settings:
    """What to do with one test: the check's options (defaults from the
    command line / ini) and the pytest policy, overridden by the marker."""

    def __init__(self, options=None, fixtures="reuse", metrics=None, allow=None, skip=None):
        self.options = options if options is not None else Options.for_pytest()
        self.fixtures = fixtures
        self.metrics = metrics          # None: every verdict metric
        self.allow = allow or {}        # metric -> allowed growth per call
        self.skip = skip                # None or the reason

    def with_marker(self, marker):
        """A copy with the marker's arguments applied (BadMarker if wrong)."""
        if marker is None:
            return self
        if marker.args:
            raise BadMarker("takes keyword arguments only: " + MARKER_SIGNATURE)
        kw = dict(marker.kwargs)
        unknown = sorted(set(kw) - set(MARKER_KEYS))
        if unknown:
            raise BadMarker("unknown argument %r; the marker is %s"
                            % (unknown[0], MARKER_SIGNATURE))
        s = Settings(self.options, self.fixtures, self.metrics, self.allow, self.skip)
        skip = kw.get("skip", False)
        if skip:
            s.skip = skip if isinstance(skip, str) else "@pytest.mark.refhound(skip=True)"
        changes = {k: kw[k] for k in ("iterations", "min_iterations", "warmup", "calls")
                   if kw.get(k) is not None}
        try:
            for key, value in changes.items():
                FIELD[key].check(value)
            if changes.get("min_iterations", 0) > changes.get("iterations",
                                                               s.options.iterations):
                changes["iterations"] = changes["min_iterations"]
            s.options = s.options.replace(**changes)
        except OptionError as exc:
            raise BadMarker(str(exc).replace("--", ""))
        if kw.get("fixtures") is not None:
            if kw["fixtures"] not in FIXTURE_MODES:
                raise BadMarker("fixtures=%r must be one of %s"
                                % (kw["fixtures"], ", ".join(FIXTURE_MODES)))
            s.fixtures = kw["fixtures"]
        if kw.get("metrics") is not None:
            metrics = kw["metrics"]
            if isinstance(metrics, str):
                metrics = [metrics]
            metrics = tuple(metrics)
            bad = [m for m in metrics if m not in VERDICT_METRICS]
            if bad or not metrics:
                raise BadMarker("metrics=%r: choose from %s"
                                % (kw["metrics"], ", ".join(VERDICT_METRICS)))
            s.metrics = metrics
        if kw.get("allow") is not None:
            s.allow = parse_allow(kw["allow"])
        return s

    def to_dict(self):
        o = self.options
        return {"warmup": o.warmup, "iterations": o.iterations,
                "min_iterations": o.min_iterations, "calls": o.calls,
                "fixtures": self.fixtures,
                "metrics": list(self.metrics) if self.metrics else None,
                "allow": dict(self.allow)}


def parse_allow(allow):
    """allow=N (every metric) or allow={"refs": 1, "blocks": 2}."""
    if isinstance(allow, (int, float)) and not isinstance(allow, bool):
        if allow < 0:
            raise BadMarker("allow=%r must not be negative" % (allow,))
        return {m: float(allow) for m in VERDICT_METRICS}
    if isinstance(allow, dict):
        out = {}
        for key, value in allow.items():
            if key not in VERDICT_METRICS:
                raise BadMarker("allow: unknown metric %r (choose from %s)"
                                % (key, ", ".join(VERDICT_METRICS)))
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise BadMarker("allow[%r]=%r must be a number >= 0" % (key, value))
            out[key] = float(value)
        return out
    raise BadMarker("allow=%r must be a number or a dict of metric -> per call" % (allow,))


# ---------------------------------------------------------------------------
# Keeping pytest's own per-call records from growing


class _Trimmer:
    """Remembers the size of pytest's per-test records after the normal run
    and trims them back after every checked call."""

    def __init__(self, item):
        self.lists = []         # (list, length to keep)
        self.streams = []       # (StringIO, position to keep)
        self.capture_fixture = None
        self.capman = item.config.pluginmanager.getplugin("capturemanager")
        self.saved_output = None
        self.warning_log = None
        self._fixtures(item)
        self._log_handlers()

    def _fixtures(self, item):
        try:
            import pytest
            monkeypatch_type = getattr(pytest, "MonkeyPatch", None)
            recorder_type = getattr(pytest, "WarningsRecorder", None)
        except ImportError:     # pragma: no cover - only used under pytest
            return
        for value in (getattr(item, "funcargs", None) or {}).values():
            if monkeypatch_type is not None and isinstance(value, monkeypatch_type):
                # Entries beyond these lengths record values set by the
                # previous checked call; the normal run's entries keep the
                # originals, so teardown still restores everything.
                for name in ("_setattr", "_setitem"):
                    lst = getattr(value, name, None)
                    if isinstance(lst, list):
                        self.lists.append((lst, len(lst)))
            elif recorder_type is not None and isinstance(value, recorder_type):
                lst = getattr(value, "_list", None)
                if isinstance(lst, list):
                    self.lists.append((lst, len(lst)))

    def _log_handlers(self):
        try:
            from _pytest.logging import LogCaptureHandler
        except ImportError:     # pragma: no cover
            return
        for handler in logging.getLogger().handlers:
            if isinstance(handler, LogCaptureHandler):
                self.lists.append((handler.records, len(handler.records)))
                stream = handler.stream
                self.streams.append((stream, stream.tell()))

    def start(self):
        """Before the first checked call: keep the normal run's output aside."""
        capman = self.capman
        if capman is not None and capman.is_globally_capturing():
            try:
                self.saved_output = capman.read_global_capture()
            except Exception:
                self.saved_output = None
        if capman is not None:
            self.capture_fixture = getattr(capman, "_capture_fixture", None)

    def after_call(self):
        for lst, keep in self.lists:
            if len(lst) > keep:
                del lst[keep:]
        for stream, pos in self.streams:
            if stream.tell() > pos:
                stream.seek(pos)
                stream.truncate()
        if self.warning_log is not None:
            del self.warning_log[:]
        capman = self.capman
        if capman is not None:
            fixture = getattr(capman, "_capture_fixture", None)
            if fixture is not None:
                fixture.readouterr()
            if capman.is_globally_capturing():
                capman.read_global_capture()

    def finish(self):
        """After the check: put the normal run's output back for the report."""
        out = self.saved_output
        if out is not None:
            import sys
            if out.out:
                sys.stdout.write(out.out)
            if out.err:
                sys.stderr.write(out.err)


# ---------------------------------------------------------------------------
# Function-scoped fixtures, re-created (fixtures="fresh")


def cycle_fixtures(item):
    """Tear down the item's function-scoped fixtures and set them up again.

    Uses pytest's setup state the way re-running plugins do: only the
    item's own level is popped (its parent stays), so module, class and
    session fixtures live on."""
    state = item.session._setupstate
    state.teardown_exact(item.parent)
    item._initrequest()
    state.setup(item)


def fresh_supported(item):
    session = getattr(item, "session", None)
    state = getattr(session, "_setupstate", None)
    return (state is not None and hasattr(state, "teardown_exact") and hasattr(state, "setup")
            and hasattr(item, "_initrequest") and item.parent is not None)


# ---------------------------------------------------------------------------
# The check


class Outcome:
    """What the check of one test found; `to_dict` travels in the report."""

    def __init__(self, nodeid, outcome, reason="", result=None, fixture_result=None,
                 settings=None):
        self.nodeid = nodeid
        # clean leak error inconclusive allowed ignored fixture skipped unchecked
        self.outcome = outcome
        self.reason = reason
        self.result = result
        self.fixture_result = fixture_result
        self.settings = settings

    def to_dict(self):
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "reason": self.reason,
            "result": self.result.to_dict() if self.result is not None else None,
            "fixture_result": (self.fixture_result.to_dict()
                               if self.fixture_result is not None else None),
            "settings": self.settings.to_dict() if self.settings is not None else None,
        }


def check_item(item, settings):
    """Leak-check a test that has just passed its normal run -> Outcome."""
    nodeid = item.nodeid
    if settings.skip:
        return Outcome(nodeid, "skipped", settings.skip, settings=settings)
    fresh = settings.fixtures == "fresh"
    if fresh and not fresh_supported(item):
        return Outcome(nodeid, "unchecked", "fixtures='fresh' is not supported for this kind "
                       "of test item", settings=settings)
    trimmer = _Trimmer(item)
    trimmer.start()
    try:
        with warnings.catch_warnings(record=True) as warning_log:
            # The filters stay as the test set them; the records go to a
            # list emptied after every call.
            trimmer.warning_log = warning_log
            return _check(item, settings, trimmer, fresh)
    finally:
        trimmer.finish()


def _check(item, settings, trimmer, fresh):
    from ._run import TargetFailed
    from .api import Checker
    nodeid = item.nodeid
    runtest = item.runtest

    if fresh:
        # Fixtures made afresh start with empty records; the trimmer keeps
        # pytest's own (logs, output, warnings) from growing.
        def call():
            try:
                cycle_fixtures(item)
                runtest()
            finally:
                trimmer.after_call()

        def fixture_cycle():
            try:
                cycle_fixtures(item)
            finally:
                trimmer.after_call()
    else:
        def call():
            try:
                runtest()
            finally:
                trimmer.after_call()

    try:
        result = Checker(**settings.options.to_dict()).run(call, (), {}, nodeid)
    except TargetFailed as exc:
        return Outcome(nodeid, "unchecked", "the test failed when run again: %s" % exc,
                       settings=settings)
    except Exception as exc:
        return Outcome(nodeid, "unchecked", "%s: %s" % (type(exc).__name__, exc),
                       settings=settings)
    outcome, reason = judge(result, settings.metrics, settings.allow, settings.options.strict)
    fixture_result = None
    if fresh and outcome in FAILING + ("inconclusive",):
        try:
            options = settings.options.replace(calls=result.calls_per_iteration)
            fixture_result = Checker(**options.to_dict()).run(
                fixture_cycle, (), {}, nodeid + " [fixtures]")
        except Exception as exc:
            reason += "; the fixture cycle alone could not be checked (%s)" % exc
        if explained_by_fixture(result, fixture_result):
            outcome = "fixture"
            reason = ("the function-scoped fixtures leak as fast on their own "
                      "(set up and torn down without the test): not the test's leak")
    return Outcome(nodeid, outcome, reason, result, fixture_result, settings)
