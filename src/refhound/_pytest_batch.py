"""pytest --refhound: the tests of one class or module screened together.

A test's screen costs two heap walks (a few milliseconds each in a pytest
process) whatever its body costs; a suite of fast tests pays mostly for
walks.  So the tests whose bodies can be called again after their own
teardown are screened in batches: one call of the batch's body calls every
test's body once, and the batch shares the two walks.  A batch the screen
clears is clean test by test; one it cannot clear is split in halves, down
to single tests, which get the screen and the full check of a test on its
own (_pytest_check.check_item), so a leaking test is found and named as
before.  When only blocks survived and every one is the table of a dict
or set older than the batch's calls (a container whose keys come and go,
resized now and then: a test case's instance dict, on which pytest sets
and deletes the test method for every run), the batch is clean: the next
resize frees the table.  When other blocks survived, the batch is called
again (does the state die?); while it is, every body's blocks get a birth epoch of their
own, and when the blocks outlive those calls too, the tests whose bodies
made blocks still alive are judged each on its own and the others are
clean, without halving (_survivors_replaced, _BodyEpochs).

Which tests join a batch (`batchable`, `deferrable`):
  - pytest Function items (unittest TestCase tests too) with the default
    settings (no @pytest.mark.refhound options, the screen on, fixtures
    reused), not async, not asking for `request`;
  - their function-scoped fixtures are plain values: no yield fixture, no
    finalizer of their own, none of pytest's fixtures that keep records
    (capsys, caplog, monkeypatch, tmp_path, ...); their wider-scoped
    fixtures outlive the batch: a batch holds tests of one
    class when they use a class-scoped fixture, of one module when a
    module-scoped one (unittest's own empty setUpClass does not count),
    with the same parameters of wider scope;
  - the body passed, left no unittest outcome, and took less than the
    slowest tier (verdict.BATCH_TIERS).

The batch is screened after the call phase of its last test and before
that test's teardown, so every fixture it uses is still set up.  The tests'
reports wait until their batch is judged (this module runs the test
protocol with log=False and logs the reports itself, in order); a test
that fails, or whose next test cannot join, ends the batch.
"""
import functools
import inspect
import warnings

import pytest

from . import _pytest_check as pc
from . import verdict as V

ACTIVE = pytest.StashKey()      # the item runs under this module's protocol
DEFERRED = pytest.StashKey()    # its check waits for its batch (a Deferred)

# Function-scoped fixtures of pytest's that keep records or undo state at
# teardown: a test asking for one is checked on its own.
STATEFUL_FIXTURES = frozenset((
    "capsys", "capsysbinary", "capfd", "capfdbinary", "caplog", "monkeypatch", "recwarn",
    "tmp_path", "tmpdir", "subtests", "record_property", "record_xml_attribute", "request",
))


def enabled(config):
    """Batches need the protocol to be this module's: not under --pdb,
    --trace, --setup-show/--setup-only, nor beside a plugin that runs the
    protocol itself (reruns)."""
    for name in ("usepdb", "trace", "setupshow", "setuponly", "setupplan"):
        if config.getoption(name, False):
            return False
    pm = config.pluginmanager
    return not any(pm.hasplugin(name) for name in ("rerunfailures", "flaky", "repeat"))


def _is_unittest(item):
    try:
        from _pytest.unittest import TestCaseFunction
    except ImportError:         # pragma: no cover
        return False
    return isinstance(item, TestCaseFunction)


def _fixturedefs(item):
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    out = []
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if defs:
            out.append((name, defs[-1]))
    return out


def _scope(fixturedef):
    scope = getattr(fixturedef, "scope", "function")
    return getattr(scope, "value", scope)


def batchable(item, settings, defaults):
    """Can this test join a batch (before it runs)?"""
    if not isinstance(item, pytest.Function) or settings is None:
        return False
    if settings.to_dict() != defaults.to_dict() or not settings.screen or settings.skip \
            or settings.fixtures != "reuse":
        return False
    try:
        if _is_unittest(item):
            func = getattr(item.parent.obj, item.name, None)
        else:
            func = item.obj
            if "request" in item._fixtureinfo.argnames:
                return False
        if pc.is_async(func):
            return False
        defs = _fixturedefs(item)
        if defs is None:
            return False
        for name, fd in defs:
            if _scope(fd) != "function":
                continue
            f = getattr(fd, "func", None)
            if name in STATEFUL_FIXTURES or f is None or inspect.isgeneratorfunction(f) or \
                    pc.is_async(f):
                return False
    except Exception:
        return False
    return True


def _trivial_class_fixture(item, name):
    """pytest gives every unittest class a class-scoped fixture that calls
    setUpClass and tearDownClass: nothing to keep set up when the class
    has unittest's own (empty) ones."""
    import unittest
    if not name.startswith("_unittest_setUpClass_fixture_"):
        return False
    cls = getattr(item.parent, "obj", None)
    return (getattr(getattr(cls, "setUpClass", None), "__func__", None)
            is unittest.TestCase.setUpClass.__func__ and
            getattr(getattr(cls, "tearDownClass", None), "__func__", None)
            is unittest.TestCase.tearDownClass.__func__)


def scope_key(item):
    """Tests with the same key share every fixture wider than a function's
    that they use: the class when they use a class-scoped one, the module
    when a module-scoped one, the parameters of those."""
    klass = module = None
    for name, fd in _fixturedefs(item) or ():
        scope = _scope(fd)
        if scope == "class" and not _trivial_class_fixture(item, name):
            klass = id(item.getparent(pytest.Class) or item.parent)
        elif scope == "module":
            module = id(item.getparent(pytest.Module) or item.parent)
    params = ()
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        info = item._fixtureinfo.name2fixturedefs
        wide = []
        for name in sorted(callspec.params):
            defs = info.get(name)
            if defs and _scope(defs[-1]) != "function":
                wide.append((name, callspec.indices.get(name)))
        params = tuple(wide)
    return (klass, module, params)


def _pytest_own(fin):
    """One of the finalizers pytest gives a fixture it set up: the link from
    a fixture it depends on (`functools.partial(FixtureDef.finish)`), or
    (pytest 9.2 on) the call of pytest_fixture_post_finalizer, a lambda
    made in FixtureDef.execute."""
    from _pytest.fixtures import FixtureDef
    if isinstance(fin, functools.partial):
        return (getattr(fin.func, "__name__", "") == "finish" and
                isinstance(getattr(fin.func, "__self__", None), FixtureDef))
    return getattr(fin, "__qualname__", "").startswith("FixtureDef.execute.<locals>.")


def _only_links(fixturedef):
    """Are a function-scoped fixture's finalizers only pytest's own (no
    teardown of its own)?"""
    return all(_pytest_own(fin) for fin in getattr(fixturedef, "_finalizers", ()))


# What a test item holds for its body between setup and teardown: its
# fixture values; a unittest test's TestCase instance and bound method
# (`_instance` and `_obj` in pytest 8.2 and later, `_testcase` and `_obj`
# before).
BODY_STATE = ("funcargs", "_instance", "_testcase", "_obj")


class Deferred:
    """A test whose check waits for its batch: what its body needs to be
    called again after its teardown."""

    def __init__(self, item, settings, seconds, tier):
        self.item = item
        self.settings = settings
        self.seconds = seconds
        self.tier = tier
        self.passes = None          # calls of its batch's last screen, when fewer than all
        if _is_unittest(item):
            item.instance                   # (pytest 8.2+: made on first use)
        d = item.__dict__
        self.state = {k: d[k] for k in BODY_STATE if k in d}
        self.state["funcargs"] = dict(d.get("funcargs") or {})
        self.saved = {}

    def restore(self):
        """Give the item its body's state again (until release)."""
        d = self.item.__dict__
        self.saved = {k: d.pop(k) for k in BODY_STATE if k in d}
        d.update(self.state)

    def release(self):
        """Put back what the item held before restore (the last test of a
        batch is still set up)."""
        d = self.item.__dict__
        for k in BODY_STATE:
            d.pop(k, None)
        d.update(self.saved)


def deferrable(item, settings, seconds):
    """A Deferred for a test that just passed its call under the batch
    protocol, or None (checked on its own now)."""
    if not item.stash.get(ACTIVE, False) or pc.unittest_outcome(item):
        return None
    tier = V.batch_tier(seconds)
    if tier is None:
        return None
    try:
        for name, fd in _fixturedefs(item) or ():
            if _scope(fd) == "function" and not _only_links(fd):
                return None
        return Deferred(item, settings, seconds, tier)
    except Exception:
        return None


class _Entry:
    """A test run under the batch protocol: its reports, logged in order
    once its check (when deferred) is judged."""

    def __init__(self, item):
        self.item = item
        self.reports = []
        self.logged = 0
        self.started = False
        self.done = False
        self.deferred = None
        self.judged = False


class Batcher:
    """Runs the protocol of batchable tests and screens their batches.
    settings_of(item): the item's Settings (None: a bad marker);
    judged(item, outcome, reports): the plugin's bookkeeping of a check,
    with the test's reports made before the check was judged."""

    def __init__(self, config, defaults, settings_of, judged):
        self.config = config
        self.defaults = defaults
        self.settings_of = settings_of
        self.judged = judged
        self.entries = []
        self._interactor = False    # pytest-xdist's worker plugin (False: not looked up)
        self._index = None          # id(item) -> its index in session.items

    # -- the protocol ---------------------------------------------------------

    def _joins(self, item):
        return item is not None and batchable(item, self.settings_of(item), self.defaults)

    def protocol(self, item, nextitem):
        """pytest_runtest_protocol for a batchable test; None for any other
        (pytest's own protocol runs it: no batch is pending then)."""
        if self.entries and not self.entries[-1].done:     # pragma: no cover - re-entry
            return None
        if not self._joins(item):
            self.flush()
            return None
        from _pytest.runner import call_and_report
        entry = _Entry(item)
        self.entries.append(entry)
        item.stash[ACTIVE] = True
        hasrequest = hasattr(item, "_request")
        if hasrequest and not item._request:
            item._initrequest()
        rep = call_and_report(item, "setup", log=False)
        entry.reports.append(rep)
        if rep.passed:
            entry.reports.append(call_and_report(item, "call", log=False))
        entry.deferred = item.stash.get(DEFERRED, None)
        if entry.deferred is not None:
            del item.stash[DEFERRED]
        pending = sum(1 for e in self.entries if e.deferred is not None and not e.judged)
        if any(r.failed for r in entry.reports) or pending >= V.BATCH_MAX or \
                not self._joins(nextitem) or scope_key(nextitem) != scope_key(item):
            self._screen_pending()
            self._log()
        if item.session.shouldfail or item.session.shouldstop:
            nextitem = None
        entry.reports.append(call_and_report(item, "teardown", log=False, nextitem=nextitem))
        entry.done = True
        if hasrequest:
            item._request = False
            item.funcargs = None
        self._log()
        return True

    def flush(self):
        """Judge and log whatever waits (the end of the session, a test that
        cannot join)."""
        if self.entries:
            self._screen_pending()
            self._log()

    def _worker_index(self, item):
        """pytest-xdist's worker sends each report with the index of the test
        it runs (and checks the two agree): while an earlier test's reports
        are logged, the index is that test's.  (interactor, its own index)
        or None."""
        if self._interactor is False:
            self._interactor = next((p for p in self.config.pluginmanager.get_plugins()
                                     if type(p).__name__ == "WorkerInteractor"), None)
        it = self._interactor
        if it is None or not hasattr(it, "item_index"):
            return None
        if self._index is None:
            self._index = {id(x): k for k, x in enumerate(item.session.items)}
        k = self._index.get(id(item))
        if k is None:
            return None
        saved = it.item_index
        it.item_index = k
        return saved

    def _log(self):
        """Log the reports of the entries at the front that are judged."""
        while self.entries:
            entry = self.entries[0]
            if entry.deferred is not None and not entry.judged:
                return
            item = entry.item
            saved = self._worker_index(item)
            try:
                self._log_entry(entry)
            finally:
                if saved is not None:
                    self._interactor.item_index = saved
            if not entry.done:
                return
            self.entries.pop(0)

    def _log_entry(self, entry):
        item = entry.item
        if not entry.started:
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            entry.started = True
        for report in entry.reports[entry.logged:]:
            item.ihook.pytest_runtest_logreport(report=report)
        entry.logged = len(entry.reports)
        if entry.done:
            item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    # -- the screen of a batch ------------------------------------------------

    def _screen_pending(self):
        pending = [e for e in self.entries if e.deferred is not None and not e.judged]
        if not pending:
            return
        capman = self.config.pluginmanager.getplugin("capturemanager")
        capturing = capman is not None and capman.is_globally_capturing()
        if capturing:
            capman.resume_global_capture()
        try:
            group = [e.deferred for e in pending]
            for d in group:
                d.restore()
            try:
                outcomes = {}
                regime = sum(d.seconds for d in group)
                for part in _by_cost(group):
                    outcomes.update(self._judge(part, regime=regime))
            finally:
                for d in group:
                    d.release()
            for e in pending:
                self.judged(e.item, outcomes[e.item], e.reports)
        finally:
            if capturing:
                capman.suspend_global_capture(in_=False)
                capman.read_global_capture()
        for e in pending:
            e.judged = True

    def _judge(self, group, why=None, regime=None):
        """{item: Outcome} for a group of tests, halving it while its
        screen cannot clear it.  why: what kept the batch above from
        being cleared (noted on a single test's result).  regime: the body
        seconds that set the first screen's collections and lazy tail (the
        whole batch's, for a part of it; _by_cost), else the group's own."""
        if len(group) == 1:
            d = group[0]
            outcome = pc.check_item(d.item, d.settings, call_seconds=d.seconds)
            if why is not None and outcome.result is not None:
                outcome.result.notes.insert(0, "screened on its own: %s" % why)
            return {d.item: outcome}
        result, reason, suspects = self._screen(group, regime)
        if result is not None:
            return {d.item: _cleared(d, result, len(group)) for d in group}
        why = "its batch of %d was not cleared (%s)" % (len(group), reason)
        if suspects is not None:
            # The surviving blocks were named test by test: the others are
            # clean, the tests that made them are judged each on its own
            # (together, what each keeps would keep them from clearing
            # again).
            cleared, named = suspects
            out = {d.item: _cleared(d, cleared, len(group)) for k, d in enumerate(group)
                   if k not in named}
            for k in sorted(named):
                out.update(self._judge([group[k]], why + "; this test made blocks that "
                                       "outlived the batch's calls"))
            return out
        half = len(group) // 2
        out = self._judge(group[:half], why)
        out.update(self._judge(group[half:], why))
        return out

    def _screen(self, group, regime=None):
        """The screen of the group's bodies called one after another:
        (its Result, None, None) when it cleared them, else (None, why not,
        suspects): suspects is None, or (a clean Result for the tests not
        named, {indexes of the tests that made the surviving blocks})."""
        from .api import Checker
        items = [d.item for d in group]
        lead = min(d.tier for d in group)
        plan = V.batch_plan([d.tier for d in group],
                            sum(d.seconds for d in group if d.tier == lead))
        seconds = sum(d.seconds for d in group)
        joins = [V.batch_passes(d.tier, d.seconds, plan, lead) for d in group]
        tail = V.tail_pass(plan)
        for d, j in zip(group, joins):
            d.passes = None if j is None else len(j)
        passes = [0]
        tags = _BodyEpochs(joins, tail)
        suspects = None
        trimmer = pc._Trimmer(items[-1])
        trimmer.start()
        try:
            with warnings.catch_warnings(record=True) as warning_log, \
                    pc._QuietReports(items[-1]) as quiet:
                trimmer.warning_log = warning_log

                def call():
                    n = passes[0] % (tail + 1)      # (the plan again after its tail)
                    passes[0] += 1
                    try:
                        for k, (item, j) in enumerate(zip(items, joins)):
                            if j is not None and n not in j:
                                continue        # a slower body: fewer passes
                            tags.body(k)
                            item.runtest()
                            if quiet.failed is not None:
                                raise pc.SubtestFailed("subtest %s failed" % quiet.failed)
                            pc._raise_unittest_outcome(item)
                    finally:
                        tags.body(None)
                        trimmer.after_call()

                settings = group[0].settings
                result = Checker(**settings.options.to_dict()).run(
                    call, (), {}, "%d tests from %s" % (len(items), items[0].nodeid),
                    screen=regime or seconds, budget=0.0, screen_plan=plan, screen_rounds=1)
                if result is not None and result.verdict != "clean":
                    named = _survivors_replaced(result, call, tags, passes)
                    if named:
                        suspects = (_cleared_by_names(result, named, len(items)), named)
        except Exception as exc:            # (TargetFailed: a test failed when run again)
            return None, "%s: %s" % (type(exc).__name__, exc), None
        finally:
            tags.on = False
            trimmer.finish()
        if result is None or result.verdict != "clean":
            screen = (result.screen if result is not None else None) or {}
            if suspects is not None and len(suspects[1]) >= len(items):
                suspects = None         # every test made some: halve as before
            return None, screen.get("reason", "no screen"), suspects
        return result, None, None


def _by_cost(group):
    """The tests of a batch to screen together: the slow tier's bodies
    apart from the faster ones when they take V.BATCH_SLOW_APART or more
    in all, else the batch whole."""
    slow = len(V.BATCH_TIERS) - 1
    slow_bodies = [d for d in group if d.tier == slow]
    if len(slow_bodies) == len(group) or \
            sum(d.seconds for d in slow_bodies) < V.BATCH_SLOW_APART:
        return [group]
    return [[d for d in group if d.tier != slow], slow_bodies]


class _BodyEpochs:
    """While on, a birth epoch of its own for every body a call of the
    batch makes, and one for what follows the bodies: the blocks alive
    later name the test that made them.  Nothing is kept per body (what a
    body's epoch holds must be the body's own): the epochs follow one
    another from `base`, in the order `bodies(pass)` gives."""

    def __init__(self, joins, tail):
        self.joins = joins
        self.tail = tail
        self.on = False
        self.base = None            # the epoch before the first body's
        self.first_pass = None      # the batch's pass counter then

    def start(self, first_pass):
        from . import _core
        self.first_pass = first_pass
        self.base = _core.Session.next_epoch()
        self.on = True

    def body(self, k):
        if self.on:
            from . import _core
            _core.Session.next_epoch()

    def marks(self, calls):
        """[(epoch, index of the test or None, call)] of `calls` calls."""
        out = []
        epoch = self.base
        for call in range(1, calls + 1):
            n = (self.first_pass + call - 1) % (self.tail + 1)
            for k, j in enumerate(self.joins):
                if j is None or n in j:
                    epoch += 1
                    out.append((epoch, k, call))
            epoch += 1
            out.append((epoch, None, call))
        return out


def _survivors_replaced(result, call, tags, passes):
    """A batch's screen saw only blocks survive (nothing else moved but
    malloc's heap, by no more than those blocks take of it, and a full
    collection did not free them): the state one test keeps until a
    later call replaces it (a cache evicting, the last result kept).  The
    batch is called as many times again, a young collection after each,
    and when none of those blocks is alive any more the batch is clean
    (`result` made so): a leak's blocks never die.  Cheaper than a second
    round of the screen (its walks follow full collections).

    While it is called again each body's blocks get a birth epoch of their
    own (tags): when the blocks the screen saw outlive these calls too, the
    tests whose bodies (each one's last two left out) made blocks still
    alive after a full collection are named, {index}; the others made only
    what later calls replaced.  None when nothing was named."""
    import gc
    from ._run import _container_tables_reason, _judged_survivors_now
    screen = result.screen or {}
    reason = screen.get("reason", "")
    if not reason.startswith("blocks survive calls") or \
            not screen.get("survivors_explain_moves"):
        return None
    calls = V.tail_pass((screen["warm"], screen["calls"], screen["epochs"])) + 1  # its plan again
    figures = {"first_epoch": screen["first_epoch"], "epochs": screen["epochs"]}
    # Looked at after 1, 2, 4, 8 ... calls and after the last: a look reads
    # only the judged epochs' blocks (a millisecond or two), a call of a
    # batch costs more, and most such state is replaced by the next call.
    # A look follows the clearing of the interpreter's caches, as the
    # screen's walks do (3.11's type attribute cache keeps the last name
    # looked up in each slot: PyObject_GetAttrString's fresh strings); the
    # last one also follows a full collection: what the calls left in
    # cycles that reached an older generation is freed there.
    from ._caches import clear_screen_caches
    clear_screen_caches()
    tables = _container_tables_reason(figures, _judged_survivors_now(figures), calls)
    if tables is not None:
        _made_clean(result, tables)
        return None
    tags.start(passes[0])
    for k in range(1, calls + 1):
        call()
        gc.collect(0 if k < calls else 2)
        if k & (k - 1) == 0 or k == calls:
            clear_screen_caches()
            if not any(_judged_survivors_now(figures)):
                break
    else:
        tags.on = False
        return _bodies_that_kept(tags.marks(calls), calls)
    tags.on = False
    _made_clean(result, "the blocks that survived %d calls died within %d more, and nothing "
                "else moved: state that a later call replaces" % (calls, k))
    return None


def _made_clean(result, why):
    """`result` (a batch's screen) made clean for the reason `why`, the
    reason added to its screen's rounds."""
    screen = dict(result.screen or {})
    screen["outcome"], screen["reason"] = "clean", why
    screen["rounds"] = list(screen.get("rounds", [])) + [why]
    result.screen = screen
    result.verdict = "clean"
    result.incomplete = None


def _bodies_that_kept(marks, calls):
    """{index of a test} whose bodies in `calls` calls of the batch, its own
    last two left out (the last of two; a single body is judged: _judged_bodies), made
    blocks still alive after the last call's full collection (marks: _BodyEpochs.marks); None when no body did (the
    blocks are the engine's or pytest's: the batch is halved as before).
    The calls are the screen's plan again, so every test is judged over at
    least the calls the screen judged it in, and a test that leaks as often
    as the screen can see is named."""
    from . import _core
    if not marks:
        return None
    first, last = marks[0][0], marks[-1][0]
    alive = _core.Session.survivors(first, last)
    bodies = {}
    for epoch, k, call in marks:
        if k is not None:
            bodies.setdefault(k, []).append(epoch)
    # Each test's own last two bodies are not judged: a slower test joins
    # only some calls of the batch, and what it keeps until its next body
    # lives across the calls between.  A test of two bodies (one of 2.5 ms
    # and more joins one judged epoch and the tail) has its first judged,
    # one of a single body that one: a test none of whose bodies is judged
    # would be cleared unseen (msgpack's leak of 9 blocks a call, timed at
    # 2.6 ms on a loaded machine, was cleared beside another test named).
    named = {k for k, epochs in bodies.items()
             if any(alive[e - first] for e in epochs[:_judged_bodies(len(epochs))])}
    return named or None


def _judged_bodies(n):
    """How many of a test's n bodies, the first ones, _bodies_that_kept
    judges: all but the last two, all but the last of two, the one."""
    return n - 2 if n > 2 else max(n - 1, 1)


def _cleared_by_names(result, named, tests):
    """The screen's Result made clean for the tests of the batch not in
    `named` (a copy: the batch's own stays as it was)."""
    from ._result import Result
    r = Result.from_dict(result.to_dict())
    _made_clean(r, "the blocks that survived were made by %d other test%s of the %d, and "
                "nothing else moved; this test's blocks died within the calls that followed"
                % (len(named), "" if len(named) == 1 else "s", tests))
    return r


def _cleared(deferred, result, tests):
    from ._result import Result
    r = Result.from_dict(result.to_dict())
    r.target = deferred.item.nodeid
    r.seconds = result.seconds / tests          # its share of the batch's screen
    screen = dict(result.screen or {})
    screen["batch"] = tests
    r.screen = screen
    r.notes = ["cleared by the screen with the %d tests of its batch (%s)"
               % (tests, screen.get("reason", ""))]
    if deferred.passes is not None:
        screen["test_calls"] = deferred.passes
        r.notes[0] += ("; this test, slower, joined %d of its passes" % deferred.passes)
    return pc.Outcome(deferred.item.nodeid, "clean", "", r, None, deferred.settings)

