"""One leak check, from the first iteration to the Result, as steps.

Every front end drives the same check:

    refhound check / refhound.check / Checker   run_callable() below
    pytest --refhound                          run_callable() on the test body
    refhound.loop / refhound run               _loop.py: the user's loop runs
                                               the bodies, the loop closes the
                                               iterations

CheckRun.steps() is a generator of Steps.  The driver performs each step
(an iteration of `calls` calls, with a refcount snapshot or allocation
stacks when asked; or a watch or history pass, which need a callable) and
sends back what the step returns; the check decides what comes next with
verdict.py.  The phases:

  screen         (only when the driver asks: pytest --refhound) the body
                 repeated in epochs of its own, one young collection per
                 call, two heap walks; a body that leaves nothing behind is
                 clean without the phases below (verdict.py, the screen)
  warm-up        iterations that are not judged (lazy imports, caches)
  measure        iterations until the Decider is sure (verdict.py)
  restart        the reference count fell by about one per call: start again
                 with one call per iteration, so the object is not freed
                 under the check; when it does not keep falling there (a
                 cache emptied now and then), measure again at full calls
  patience       before "leak" or "error", and instead of "inconclusive":
                 the growth must persist, or settle, over ten times the calls
                 it was seen in (more calls per iteration, a time budget)
  diagnose       iterations with refcount snapshots: existing objects whose
                 count moves
  attribute      iterations with an allocation stack per new block: sites
  watch          hardware watchpoints on the objects whose count moves
  history        one new object from the top site followed through its life

The engine's Session (refhound._core) runs the iterations in C and keeps the
samples in C memory; nothing here keeps Python state that grows from one
iteration to the next (the check would count its own bookkeeping).
"""
import array
import statistics
import time

from . import verdict as V
from ._result import Result
from ._saferepr import safe_repr, type_name

ATTRIBUTION_ITERATIONS = 2
PROVEN_ITERATIONS = 2       # samples after the baseline of a leak the screen proved
COST_WINDOW = 5             # measured iterations whose median cost plans patience
PATIENCE_STAGES = 6         # at most: the horizon grows elevenfold per stage
# The calls the refcount watch runs (every write of a watched count traps):
# enough for WATCH_UNBALANCED unbalanced writes at the growth's rate, at
# least WATCH_MIN_CALLS (what one unpaired write at the ends weighs), at
# most WATCH_MAX_CALLS and an iteration's calls.
WATCH_UNBALANCED = 10
WATCH_MIN_CALLS = 30
WATCH_MAX_CALLS = 100
RATE_METRICS = ("refs", "objects", "blocks", "bytes", "native_blocks", "native_bytes",
                "heap_bytes", "rss_bytes", "fds")


class TargetFailed(Exception):
    """The checked callable raised; the original exception is __cause__."""


class Step:
    """What the driver must do next.

    kind "iterate": one iteration of `calls` calls (warmup: not judged;
    snapshot: take a refcount snapshot after it; stacks: record an
    allocation stack for every new block during it).  kind "watch" /
    "history": a pass over the callable (only for drivers that can call)."""

    __slots__ = ("kind", "phase", "calls", "warmup", "snapshot", "stacks", "arg")
    # kind "screen": arg is (warm, calls, epochs, generation); the driver runs
    # _core.Session.screen with the collector off and sends its dict back.

    def __init__(self, kind, phase, calls, warmup=False, snapshot=False, stacks=False, arg=None):
        self.kind = kind
        self.phase = phase
        self.calls = calls
        self.warmup = warmup
        self.snapshot = snapshot
        self.stacks = stacks
        self.arg = arg


def _judged_survivors_now(figures):
    """The blocks of a screen round's judged epochs (verdict.screen_judged)
    that are alive now."""
    from . import _core
    first = figures["first_epoch"] + 1
    return V.screen_judged([0] + _core.Session.survivors(first, first + figures["epochs"] - 1)
                           + [0])


def _container_tables_reason(figures, alive, calls):
    """When every block of a screen round's judged epochs alive now (alive:
    _judged_survivors_now) is the table of a dict or set older than the
    round (a container whose keys come and go, resized by the calls: the
    next resize frees it), the reason its survivors are no leak; else None
    (also when none is alive).  calls: the calls the round made."""
    from . import _core
    if not any(alive):
        return None
    first = figures["first_epoch"] + 1
    tables = _core.Session.container_table_survivors(first, first + figures["epochs"] - 1)
    if V.screen_judged([0] + tables + [0]) != alive:
        return None
    return ("the blocks that survived %d calls are the tables of dicts or sets older than "
            "them, resized by the calls (keys that come and go), and nothing else moved: "
            "the next resize replaces them" % calls)


def calibrated_calls(options, seconds_per_call):
    """Calls per iteration: the option, or a power of ten giving about
    options.iteration_seconds per iteration (at most options.max_calls)."""
    if options.calls is not None:
        return options.calls
    calls = 1
    while calls * 10 <= options.max_calls and calls * 10 * seconds_per_call <= \
            options.iteration_seconds:
        calls *= 10
    return calls


def max_samples(options):
    return (max(options.warmup, 1) + options.iterations + options.diagnose
            + ATTRIBUTION_ITERATIONS + PATIENCE_STAGES * (V.PATIENCE_ITERATIONS + 1) + 5)


class CheckRun:
    """The state of one check.  open_session(calls) -> a refhound._core.Session
    is given by the driver (it knows what the session calls)."""

    def __init__(self, options, target, open_session, can_call=True, observers=()):
        self.options = options
        self.target = target
        self.open_session = open_session
        self.can_call = can_call
        self.observers = list(observers)
        self.notes = []
        self.session = None
        self.calls = None           # calls per iteration of the measurement
        self.decider = None
        self.decided = None         # the verdict of the measurement, once known
        self.measured_samples = 0
        self.patience = None        # what the patience phase did (JSON "patience")
        self.native = None          # how native frames were read (JSON "native"), with sites
        self.last_stage = None      # (first sample, end, calls per iteration) of its last stage
        self.watching = None        # (followed, before, first sample, calls) of a stage under way
        self.window_epochs = None   # (first, last) birth epochs of the verdict's window
        self.lost = None            # lost.c's answer for the window (Session.lost_survivors)
        self.unheld_rate = None     # refs per call of the objects whose references nothing holds
        self.filling_freed = False  # the C library fills freed memory (until the search)
        self.call_seconds = 0.0     # seconds per call, measured
        self.overhead = 0.0         # seconds per iteration besides the calls
        # Doubles, not float objects: the check shares the heap it measures.
        self._call_costs = array.array("d", bytes(8 * COST_WINDOW))   # recent call_seconds
        self._overheads = array.array("d", bytes(8 * COST_WINDOW))    # and overheads
        self._ncosts = 0
        self.screened = None        # what the screen found (JSON "screen"), when it ran
        self.proven = None          # (calls, rates, note) of a leak the screen proved (its
                                    # blocks lost for good: verdict.screen_lost)
        self.references_only = False    # the screen saw references alone grow
                                        # (verdict.screen_references)
        self.result = None
        self.restarted = False      # re-checked at one call per iteration (an over-release)
        self.falls_off = False      # measured again after that: falls no longer restart
        self.t0 = time.perf_counter()

    # -- the steps ------------------------------------------------------------

    def steps(self, calls, screen=None, budget=None, screen_plan=None, screen_rounds=None):
        """Yield Steps until the Result is in self.result.  screen: the
        seconds one call of the body takes, when the driver asks for the
        screen first (it can call the body); budget: the seconds the full
        check of a body the screen did not clear may be expected to take
        (None: no limit); screen_plan: (warm, calls, epochs) instead of
        the plan for the body's time, screen_rounds: the most rounds of the
        screen (a batch of tests: _pytest_batch.py)."""
        from . import _core
        if not _core.is_tracking():
            self.result = self._incomplete(calls, _tracking_off_reason())
            return
        if screen is not None and self.can_call:
            try:
                yield from self._screen(screen, calls, budget, screen_plan, screen_rounds)
            except _core.TrackingError as exc:
                self.result = self._incomplete(calls, "refhound %s; the program went on" % exc)
                return
            if self.result is not None:
                return
            if self.proven is not None:
                yield from self._proven_leak()
                return
            if self.references_only:
                proven = yield from self._references_proven(calls)
                if proven:
                    return
        # Frozen only when this check makes the calls (not in a loop's, whose
        # program runs between the bodies, and may leave the loop unended).
        freeze = self.can_call
        try:
            while True:
                # Freed libc memory filled while measuring: a pointer left in
                # it is no reference for the search for lost blocks (lost.c).
                if not self.filling_freed:
                    self.filling_freed = self.options.patience > 0 and _core.fill_freed(True)
                try:
                    self.session = self.open_session(calls)
                    self.calls = calls
                    if freeze:
                        self.session.freeze_old()
                    outcome = yield from self._measure()
                    # Frozen, a collection leaves the heap alive at the
                    # first sample out (_core's gcfreeze.c): no old object
                    # became cyclic garbage, and the samples are what full
                    # collections give.  Else growth may be an old object
                    # not freed: measured again with full collections.
                    found = self.session.thaw()
                except _core.TrackingError as exc:
                    self.result = self._incomplete(calls, "refhound %s; the program went on" % exc)
                    return
                if found > 0 and outcome in ("leak", "inconclusive"):
                    self._measure_unfrozen(found)
                    freeze = False
                    continue
                if outcome == "restart":
                    self.notes.append(
                        "the reference count fell on every call: re-checked with one call "
                        "per iteration so the object is not freed under the check")
                    self.session.close()
                    full_calls, calls = calls, 1
                    self.restarted = True
                    continue
                if self.restarted and outcome != "error" and not self._still_falls():
                    # Not an over-release: a cache emptied now and then
                    # (strptime's, every sixth call) made two falls at
                    # `full_calls`; at one call per iteration its sawtooth
                    # hides the growth under it.
                    self.notes.append(
                        "at one call per iteration the reference count did not keep falling "
                        "(a cache emptied now and then, not an over-release): measured again "
                        "at %d calls per iteration" % full_calls)
                    self.session.close()
                    calls = full_calls
                    self.restarted = False
                    self.falls_off = True
                    continue
                # The phases that sample after the measurement (diagnosis,
                # patience, attribution) are frozen too, and asked the same
                # question at their end: old cyclic garbage found then and
                # the whole check is made again with full collections.
                kept = len(self.notes)
                if freeze and outcome in ("leak", "error", "inconclusive"):
                    self.session.freeze_old()
                judged = yield from self._sample_more(outcome)
                found = self.session.thaw()
                if found > 0:
                    del self.notes[kept:]
                    self._forget_judgement()
                    self._measure_unfrozen(found)
                    freeze = False
                    continue
                break
            yield from self._conclude(*judged)
        finally:
            self._stop_filling_freed()
            if self.session is not None:
                self.session.close()

    def _measure_unfrozen(self, found):
        """Old objects became cyclic garbage while frozen: the session is
        closed, to measure again with full collections."""
        self.notes.append(
            "%d objects older than the check became cyclic garbage while the collections "
            "left them out: measured again with full collections" % found)
        self.session.close()

    def _forget_judgement(self):
        """What the phases after a measurement set, before it is made again."""
        self.decided = None
        self.measured_samples = 0
        self.patience = None
        self.last_stage = self.watching = self.window_epochs = self.lost = None
        self.unheld_rate = None

    def _stop_filling_freed(self):
        from . import _core
        if self.filling_freed:
            _core.fill_freed(False)
            self.filling_freed = False

    # -- the screen (a phase before warm-up, taken when the driver asks) --------

    def _screen(self, seconds_per_call, full_calls, budget, plan=None, max_rounds=None):
        """The screen: clean here, or a note and on to the full check (or,
        when the full check would take longer than the budget, inconclusive
        with what the screen saw).  A screen that did not clear is taken
        again (up to V.SCREEN_ROUNDS rounds, V.screen_again): the second and
        later rounds follow full collections and ask whether the blocks the
        round before kept have died since."""
        from . import _core
        warm, calls, epochs = plan or V.screen_plan(seconds_per_call)
        t = time.perf_counter()
        rounds = []
        earlier = earlier_now = None
        generation = V.screen_generation(seconds_per_call)
        lazy_tail = V.screen_lazy_tail(seconds_per_call)
        filling = False     # freed C library memory filled (the rounds after blocks survived)
        lost = None         # lost.c's answer for the last round's epochs
        over_budget = False  # rounds stopped: another would not fit the budget
        try:
            while True:
                if earlier is not None and not filling and self.options.patience > 0 and \
                        any(V.screen_judged(earlier["blocks"])):
                    # A stale pointer in freed memory is no reference for
                    # the search for lost blocks after this round.
                    filling = _core.fill_freed(True)
                round_t = time.perf_counter()
                figures = yield Step("screen", "screening", calls,
                                     arg=(warm, calls, epochs, generation, lazy_tail))
                figures = dict(figures, warm=warm, calls=calls, epochs=epochs)
                if earlier is not None:
                    # The first round's judged epochs: which of their blocks live now.
                    earlier_now = _judged_survivors_now(earlier)
                outcome, reason = V.screen_outcome(figures, earlier, earlier_now)
                rounds.append(reason)
                # References alone grew in two rounds in a row (the second
                # after full collections): a third would show it again; the
                # diagnosis and the count of the words that hold the objects
                # decide (_references_proven), or the full check.
                if outcome == "clean" or not V.screen_again(figures, len(rounds), generation) \
                        or V.screen_references(figures, earlier):
                    if outcome != "clean" and filling:
                        lost = self._screen_lost_search(figures)
                    break
                if earlier is None and V.screen_blocks_only(figures):
                    # Only blocks survived: when a full collection frees them
                    # (free lists filling, state a later call replaces), they
                    # were no leak, and another round would only show it again.
                    died = self._screen_survivors_die(figures)
                    if died is not None:
                        outcome, reason = "clean", died
                        rounds.append(reason)
                        break
                if max_rounds is not None and len(rounds) >= max_rounds:
                    break
                # Another round costs what this one did: past the budget,
                # the screen stops where it is (a slow body under a busy
                # machine: a round of two calls can take the whole budget).
                if budget is not None and V.screen_round_over_budget(
                        time.perf_counter() - t, time.perf_counter() - round_t, budget):
                    over_budget = True
                    break
                earlier = figures
                warm = 0            # the first round warmed it up
                # The second round's walks follow full collections: what only
                # a full collection frees (free lists, old cycles) is not kept.
                generation = 2
        finally:
            if filling:
                _core.fill_freed(False)
        self.screened = {
            "outcome": outcome, "reason": reason, "rounds": rounds, "warm": warm,
            "first_epoch": figures["first_epoch"],
            "calls": calls, "epochs": epochs, "survivors": figures["blocks"],
            "free_listed": figures.get("free_listed", 0),
            "refs": list(figures["refs"]), "native_bytes": list(figures["native_bytes"]),
            "survivors_heap": V.screen_survivors_heap(figures),
            "survivors_explain_moves": V.survivors_explain_moves(figures),
            "sensitivity_calls": V.screen_sensitivity(calls, epochs),
            "seconds": round(time.perf_counter() - t, 4),
            "call_seconds": round(figures["seconds"], 4),
            "walk_seconds": round(figures["walk_seconds"], 4)}
        if over_budget:
            self.screened["over_budget"] = True
        if outcome == "clean":
            self.result = self._screened_result(figures, calls, epochs, reason)
            return
        if lost is not None and V.screen_lost(figures, earlier, earlier_now, lost["lost"]) and \
                self._python_blocks_only(figures):
            judged = V.screen_judged(figures["blocks"])
            self.screened["lost"] = V.screen_judged([0] + lost["lost"] + [0])
            self.proven = (calls, V.screen_lost_rates(figures), (
                "no full check needed: the blocks that survived the screen's calls outlived "
                "the full collections of %d rounds, and %d of the %d born in its judged "
                "epochs are referenced from nowhere in the process (lost for good: no cache "
                "can give them back; %.1f MB searched in %.3f s)" % (
                    len(rounds), sum(self.screened["lost"]), sum(judged),
                    lost["scanned_bytes"] / 1e6, lost["seconds"])))
            self.notes.append("the screen did not clear it (%s)" % reason)
            return
        cost = V.full_check_seconds(self.options, full_calls, seconds_per_call,
                                    figures["walk_seconds"])
        self.screened["full_check_seconds"] = round(cost, 3)
        why = None
        if budget is not None and cost > budget:
            why = ("a full check would take about %.0f s, over the budget of %g s per test%s "
                   "(raise --refhound-budget)" % (
                       cost, budget, ", and another round of the screen would not fit it either"
                       if over_budget else ""))
        elif budget is not None and cost > V.CLEAR_ONLY_SHARE * budget and \
                not V.leak_confirmable(self.options, full_calls, seconds_per_call,
                                       figures["walk_seconds"]):
            why = ("a full check would take about %.1f s and could only clear it: a leak "
                   "would need ten times its calls, more than the patience budget of %g s "
                   "(raise --refhound-budget and --refhound-patience)" % (cost, self.options.patience))
        if why is not None:
            self.notes.append("the screen did not clear it (%s)" % reason)
            result = self._incomplete(full_calls, "the screen did not clear it (%s), and %s"
                                      % (reason, why))
            result.seconds = time.perf_counter() - self.t0
            self.result = result
            return
        self.references_only = self.options.patience > 0 and self.options.diagnose > 0 and \
            V.screen_references(figures, earlier)
        # (a growth of references alone: its diagnosis first, _references_proven)
        self.notes.append("the screen did not clear it (%s)%s"
                          % (reason, "" if self.references_only else ": checked in full"))

    def _screen_survivors_die(self, figures):
        """After a full collection (the interpreter's free lists emptied) and
        the caches cleared: the reason the judged epochs' survivors are no
        leak when none of them is alive any more, or when every one alive is
        the table of a dict or set older than them; else None."""
        import gc
        from ._caches import clear_screen_caches
        t = time.perf_counter()
        gc.collect()
        clear_screen_caches()
        now = _judged_survivors_now(figures)
        tables = _container_tables_reason(figures, now, V.screen_calls(figures))
        figures["walk_seconds"] += time.perf_counter() - t
        if tables is not None:
            return tables
        if any(now):
            return None
        return ("the blocks that survived %d calls died in a full collection, and nothing "
                "else moved: free lists filling, state a later call replaces"
                % V.screen_calls(figures))

    def _screen_lost_search(self, figures):
        """lost.c's answer for a screen round's epochs (Session.lost_survivors),
        or None when memory could not be searched."""
        from . import _core
        first = figures["first_epoch"] + 1
        try:
            return _core.Session.lost_survivors(first, first + figures["epochs"] - 1)
        except _core.TrackingError:
            return None

    def _python_blocks_only(self, figures):
        """Are the blocks alive from a screen round's judged epochs all of
        CPython's allocators (the raw, mem and obj domains)?  The screen
        counts the native domain too (malloc called by extensions), which
        the full check's rates keep apart (a native leak is native_blocks,
        not blocks): those go to it."""
        from . import _core
        first = figures["first_epoch"] + 1
        native = _core.Session.survivors(first, first + figures["epochs"] - 1, True)
        return not any(V.screen_judged([0] + native + [0]))

    def _proven_leak(self):
        """A leak the screen proved (self.proven): a baseline iteration, two
        more for the result's samples, and the attribution's, at the
        screen's calls per epoch; the rates are the screen's
        (verdict.screen_lost_rates)."""
        from . import _core
        from . import _attribution  # noqa: F401  (a first import's objects are no iteration's)
        calls, rates, note = self.proven
        self.notes.append(note)
        try:
            self.session = self.open_session(calls)
            self.calls = calls
            yield from self._proof_samples(calls)
            sites = []
            if self.options.attribution:
                try:
                    sites = yield from self._attribute()
                except _core.TrackingError as exc:
                    self.notes.append("no attribution: refhound %s" % exc)
            yield from self._conclude("leak", [], sites)
        except _core.TrackingError as exc:
            self.result = self._incomplete(calls, "refhound %s; the program went on" % exc)
            return
        finally:
            if self.session is not None:
                self.session.close()
        self.result.per_call = dict(self.result.per_call, **rates)
        self.result.trends = dict(self.result.trends, **V.proof_trends(
            rates, calls, len(V.screen_judged(self.screened["survivors"]))))

    def _proof_samples(self, calls):
        """A baseline and PROVEN_ITERATIONS plain iterations: the samples of
        a result proven without the trend test (its charts, its costs),
        before the iterations of the proof and the attribution.  The heap
        alive at the baseline is frozen, as the full check's is (_core's
        gcfreeze.c: a full collection of a pytest process costs 8-11 ms,
        and each iteration makes one); the session's close thaws it.  The
        proof does not rest on the samples, so the old garbage a freeze may
        keep is not looked for."""
        if self.can_call:
            self.session.freeze_old()
        yield self._iterate("warm-up", warmup=True)
        for _ in range(PROVEN_ITERATIONS):
            t = time.perf_counter()
            seconds = yield self._iterate("measuring")
            self._cost(time.perf_counter() - t, seconds, calls)
        self.measured_samples = self.session.nsamples

    def _references_proven(self, calls):
        """After a screen that saw references alone grow: a baseline and
        PROVEN_ITERATIONS iterations (the result's samples), the diagnosis,
        and the count of the words that hold the objects' addresses.  True
        with self.result a leak when they prove references nothing holds;
        False, the session closed and what it noted dropped, when they do
        not (the full check runs)."""
        from . import _core
        kept = len(self.notes)
        fell_back = False
        try:
            self.session = session = self.open_session(calls)
            self.calls = calls
            yield from self._proof_samples(calls)
            growth = yield from self._diagnose()
            unheld = bool(growth) and (yield from self._references_unheld(growth))
            if not unheld:
                fell_back = True
                session.close()
                self.session = None
                del self.notes[kept:]
                self.notes[-1] += ("; the references it gains are held (or too few to count): "
                                   "checked in full")
                self._forget_judgement()
                self._ncosts = 0
                return False
            self.notes.insert(kept, "no full check needed: the reference count grew in every "
                                    "round of the screen and nothing else moved")
            self.decided = "leak"
            yield from self._conclude("leak", growth, [])
        except _core.TrackingError as exc:
            self.result = self._incomplete(calls, "refhound %s; the program went on" % exc)
            return True
        finally:
            if not fell_back and self.session is not None:
                self.session.close()
        rates = dict(V.screen_reference_rates(), refs=self.result.per_call["refs"])
        self.result.per_call = dict(self.result.per_call, **rates)
        self.result.trends = dict(self.result.trends, **V.proof_trends(
            rates, calls, PROVEN_ITERATIONS, ("refs",), "references nothing holds"))
        return True

    def _screened_result(self, figures, calls, epochs, reason):
        screened = V.screen_calls(figures)
        native = None
        a, b = figures["native_bytes"]
        if a >= 0 and b >= 0:
            native = round((b - a) / screened, 4)
        per_call = dict.fromkeys(RATE_METRICS, 0.0)
        per_call["native_bytes"] = native
        per_call["rss_bytes"] = None
        result = Result(
            target=self.target, verdict="clean", per_call=per_call, objects=[],
            refcount_growth=[], iterations={"warmup": 0, "measured": 0},
            calls_per_iteration=calls, seconds=time.perf_counter() - self.t0, samples=[],
            types=[], trends={},
            survivors={"first_epoch": figures["first_epoch"], "blocks": figures["blocks"],
                       "bytes": figures["bytes"]},
            notes=self.notes + ["cleared by the screen: %s" % reason])
        return result

    def _iterate(self, phase, warmup=False, snapshot=False, stacks=False):
        return Step("iterate", phase, self.session.calls, warmup, snapshot, stacks)

    def _measure(self):
        session = self.session
        options = self.options
        decider = self.decider = V.Decider(options, max_samples=max_samples(options))
        warm = max(options.warmup, 1)       # at least one baseline sample
        # The warm-up does the measured iterations' bookkeeping too (their
        # costs, the trends): what it keeps exists before the baseline
        # sample, not in the first measured iterations (at one call per
        # iteration, 20 to 30 objects: growth), and the loop's locals hold
        # what they will hold.
        falls = done = 0
        verdict, stop = "continue", False
        if session.calls > V.PROBE_CALLS and not self.restarted and not self.falls_off:
            # A fast body gets thousands of calls per iteration: an extra
            # DECREF per call would free its object within the first one
            # (a 0.3 µs body at 10,000 calls freed a string of 5,000
            # references).  Three short iterations first (10 calls, then
            # 100 twice) show a reference count that falls by one per call:
            # two falls in a row (a cache emptied now and then, strptime's,
            # makes one).
            full = session.calls
            for n in (V.PROBE_CALLS // 10, V.PROBE_CALLS, V.PROBE_CALLS):
                session.set_calls(n)
                yield self._iterate("warm-up", warmup=True)
                falls = falls + 1 if V.refs_fell(session.last_delta("refs"), n) else 0
            session.set_calls(full)
            if falls >= 2:
                return "restart"
        for i in range(warm):
            t = time.perf_counter()
            seconds = yield self._iterate("warm-up", warmup=True)
            self._cost(time.perf_counter() - t, seconds, session.calls)
            decider.prime(session)
            self._notify("warm-up", i + 1)
            # An over-release is watched for from the warm-up on: at 1,000
            # calls per iteration, waiting for two measured falls gave the
            # object 4,000 DECREFs before the restart.
            falls = falls + 1 if V.refs_fell(session.last_delta("refs"), session.calls) else 0
            if falls >= 2 and not self.falls_off:
                return "restart"
        self._ncosts = 0            # the measured iterations' costs only
        while True:
            t = time.perf_counter()
            seconds = yield self._iterate("measuring")
            self._cost(time.perf_counter() - t, seconds, session.calls)
            done += 1
            verdict, stop = decider.decide(session)
            self._notify("measuring", done)
            falls = falls + 1 if V.refs_fell(session.last_delta("refs"), session.calls) else 0
            if falls >= 2 and not self.falls_off:
                return "restart"
            if stop:
                return verdict

    def _still_falls(self):
        """After the restart at one call per iteration: does the reference
        count still fall by about one per call over the verdict's window?"""
        session = self.session
        start, _ = V.window_of(session.nsamples, session.warmup_samples)
        refs = session.series("refs", start)
        return V.still_falls([b - a for a, b in zip(refs, refs[1:])], session.calls)

    def _cost(self, wall, seconds, calls):
        """Seconds per call and per iteration's sampling: medians over the
        last COST_WINDOW measured iterations (one slow iteration on a busy
        machine must not use up the patience budget on paper)."""
        if seconds is None:          # a loop: the bodies' time is in the wall time
            seconds = wall
        # Fixed rings of doubles: the check shares the heap it measures, and
        # objects it kept would be counted as the target's.
        i = self._ncosts % COST_WINDOW
        self._ncosts += 1
        self._call_costs[i] = seconds / max(calls, 1)
        self._overheads[i] = max(wall - seconds, 0.0)
        n = min(self._ncosts, COST_WINDOW)
        self.call_seconds = statistics.median(self._call_costs[:n])
        self.overhead = statistics.median(self._overheads[:n])

    def _sample_more(self, verdict):
        """The phases after the measurement that take samples: the search
        for lost blocks, the diagnosis, patience, attribution ->
        (verdict, growth, sites) for _conclude."""
        from . import _core
        session = self.session
        self.decided = verdict
        measured_samples = self.measured_samples = session.nsamples
        # Birth epochs of the iterations in the verdict's window (the first
        # is the baseline: its blocks were born before the window).
        start, _ = V.window_of(measured_samples, session.warmup_samples)
        last = _core.stats()["epoch"]
        self.window_epochs = (last - (measured_samples - start) + 2, last)
        # Before the diagnosis: its snapshots hold every object's address.
        # Not for a growth of references alone: no block to find.
        self.lost = self._lost_survivors() if verdict in ("leak", "inconclusive") and \
            self.filling_freed and V.blocks_move(self.decider.trends) else None
        self._stop_filling_freed()
        growth = []
        diagnosed = False
        if self.restarted and verdict != "error":
            if self._still_falls():
                self.notes.append("the reference count still fell on every call at one call per "
                                  "iteration (the other figures moved with the check's own "
                                  "bookkeeping): an error")
                verdict = self.decided = "error"
        diagnose = self.options.diagnose > 0 and V.references_move(self.decider.trends)
        if verdict in ("error", "leak") and diagnose:
            # Which objects lose or gain references, before waiting: an
            # over-release must not be repeated until it frees its object,
            # and the snapshots walk every object, which a leak watched
            # longer multiplies (a leaked int per call: 125,000 more).
            try:
                growth = yield from self._diagnose()
                diagnosed = True
            except _core.TrackingError as exc:
                self.notes.append("no refcount diagnosis: refhound %s" % exc)
        if verdict in ("leak", "error", "inconclusive") and self.options.patience > 0:
            try:
                verdict = yield from self._patience(verdict, growth)
            except _core.TrackingError as exc:
                self.notes.append("no patience: refhound %s" % exc)
        if verdict not in ("leak", "error"):
            growth = []         # a cache's fill: nothing to name
        if verdict == "leak" and V.rss_unexplained(self.decider.trends):
            self.notes.append(
                "resident memory grows while no allocator's figure does: memory mapped outside "
                "malloc (a library's own mmap), which refhound cannot attribute to a line")
        if verdict in ("leak", "error") and diagnose and not diagnosed:
            try:
                growth = yield from self._diagnose()
            except _core.TrackingError as exc:
                self.notes.append("no refcount diagnosis: refhound %s" % exc)
        sites = []
        if verdict == "leak" and self.options.attribution and \
                (not growth or V.memory_moves(self.decider.trends)):
            try:
                sites = yield from self._attribute()
            except _core.TrackingError as exc:
                self.notes.append("no attribution: refhound %s" % exc)
        return verdict, growth, sites

    def _conclude(self, verdict, growth, sites):
        """The refcount sites watched, and the Result."""
        from . import _core
        session = self.session
        measured_samples = self.measured_samples
        if growth and self.options.attribution and self.can_call:
            yield from self._watch(growth)
            if not sites:
                # Nothing allocated: the refcount writes are the sites.
                sites = [s for g in growth[:1] for s in g["sites"]]
        if sites:
            self.native = native = dict(_core.native_paths())
            if native["symbols"] != "libdw":
                from . import _dwarf    # only here: the libdw path never imports pyelftools
                if _dwarf.available():
                    self.notes.append(
                        "native frames were read with pyelftools and the compiler's unwinder, "
                        "the slower path: %s" % native["libdw"])
                else:
                    native["symbols"] = "none"
                    self.notes.append(
                        "native frames have no source lines (module and symbol only): %s, and %s"
                        % (native["libdw"], _dwarf.missing_reason()))
        raw = session.results()
        stage_rates = None
        if self.patience is not None and self.patience["outcome"] in ("settled", "persists"):
            # The longest horizon gives the rates: a leak's with many events
            # per iteration, a cache's after its fill.
            start, end, other = self.last_stage
            stage_rates = V.rates_since(session, start, other, RATE_METRICS, end)
        self.result = build_result(self.target, verdict, raw, self.calls, measured_samples,
                                   growth, self.notes, time.perf_counter() - self.t0,
                                   self.options.alpha)
        self.result.sites = sites
        if self.native is not None:
            self.result.native = {k: v for k, v in self.native.items() if k != "libdw"}
        self.result.patience = self.patience
        if stage_rates is not None:
            self.result.per_call = {m: round(stage_rates[m], 4) if m in stage_rates
                                    else self.result.per_call[m] for m in RATE_METRICS}
        if self.unheld_rate is not None and verdict == "leak":
            self.result.per_call["refs"] = round(self.unheld_rate, 4)

    def _patience(self, verdict, growth):
        """Before "leak" or "error", and instead of "inconclusive": watch the
        metrics that made the verdict over ten times the calls they were seen
        in (more calls per iteration), and longer while they slow down, within
        options.patience seconds (verdict.py: PERSISTS, SETTLED).

        A cache that fills for a long time settles; one emptied periodically,
        sampled in step with it, stops drawing a ramp at another count; a
        leak persists.  An over-release is repeated only as far as its
        object's reference count allows."""
        session = self.session
        calls = session.calls
        followed = V.followed_metrics(self.decider.trends, verdict)
        if not followed:
            return verdict
        # The rates the verdict saw: over its window of the measured samples.
        start, measured = V.window_of(self.measured_samples, session.warmup_samples)
        before = first_seen = V.mean_rates(session, start, self.measured_samples, calls,
                                           followed)
        seen = calls * measured
        heap = V.heap_only_drift(session, followed, start, calls)
        if verdict != "error" and heap is not None:
            self.notes.append(_heap_drift_note(heap))
            return "clean"
        if verdict in ("leak", "inconclusive") and \
                V.others_settled(self.decider.trends, followed) and \
                self._growth_lost(first_seen, calls):
            return "leak"
        if V.bare_references(followed, verdict) and self.can_call:
            unheld = yield from self._references_unheld(growth)
            if unheld:
                return "leak"
        # The calls an over-release may still make before its object is
        # freed.  Only for an error: a leak's diagnosis also finds counts
        # that fall while a cache turns over (intern_slow's replaced
        # strings), and a cap there would cut the horizon short of the fill.
        cap = _overrelease_cap(growth) if verdict == "error" else None
        if verdict == "error" and cap is not None and cap < V.PATIENCE_HORIZON * seen:
            self.notes.append("the reference count of %s falls too close to zero to watch "
                              "it longer" % growth[0]["repr"])
            return verdict
        t0 = time.perf_counter()
        budget = self.options.patience
        watched = 0
        outcome = "slowing"
        overran = False
        floor = not V.bare_references(followed, verdict)
        per_call = self.call_seconds
        replanned = False
        while True:
            stage = V.patience_stage(seen, cap, per_call, self.overhead,
                                     budget - (time.perf_counter() - t0), floor=floor)
            if stage is None:
                break
            other, horizon = stage
            first = session.nsamples
            self.watching = (followed, before, first, other)
            # The stage's first iteration is its baseline, at the stage's
            # calls: a short one would end the stage that many calls sooner,
            # inside the last iteration of a cache that fills over 100,000
            # calls (measured: two slow fillers of the settle corpus, one
            # held out, became false alarms).
            session.set_calls(other)
            in_calls = 0.0          # seconds in the stage's calls (None: a loop's)
            try:
                for _ in range(V.PATIENCE_ITERATIONS + 1):
                    seconds = yield self._iterate("patience")
                    in_calls = None if seconds is None or in_calls is None \
                        else in_calls + seconds
                    self._notify("patience", session.nsamples - first)
                    if time.perf_counter() - t0 > V.PATIENCE_OVERRUN * budget:
                        break       # slower than measured (a loaded machine): judge what we have
            finally:
                session.set_calls(calls)
            if session.nsamples - first < 3:
                watched += max(other * (session.nsamples - first - 1), 0)
                self.watching = None
                overran = True
                break
            horizon = other * (session.nsamples - first - 1)
            after = V.rates_since(session, first, other, followed)
            steps = V.stage_steps(session, first, other, followed)
            reach = horizon / max(seen, 1)
            outcome = V.patience_outcome(followed, before, after, steps,
                                         self._survivors_ok(first_seen, calls), reach)
            pace = None if in_calls is None else \
                in_calls / max(other * (session.nsamples - first), 1)
            if floor and cap is None and not replanned and \
                    V.patience_replan(per_call, pace, horizon):
                # The stage's calls ran far faster than the calls it was
                # planned from (those were a fill's: a codec module
                # imported by each of the first calls; or single calls,
                # slower than calls in bulk), so it fell short of the least
                # horizon: a leak under the fill (a reference a call) added
                # too little beside the fill to be told from it, and a rate
                # taken over so few calls carries the phase of a cache
                # emptied every few calls.  Planned again at the stage's
                # pace, judged against the growth first seen.
                per_call = pace
                replanned = True
                watched += horizon
                self.watching = None
                continue
            if pace:
                # The next stage is planned at the pace of the last one
                # (the calls of a fill speed up as it ends).
                per_call = pace
            if outcome == "slowing":
                before = V.rebased(followed, before, after, steps, reach)
            seen += horizon
            watched += horizon
            self.last_stage = (first, session.nsamples, other)
            self.watching = None
            if outcome != "slowing" or cap is not None:
                break
        spent = time.perf_counter() - t0
        rates = ", ".join("%s %+.3g/call" % (m, r) for m, r in first_seen.items())
        self.patience = {"outcome": outcome, "calls": watched, "seconds": round(spent, 3),
                         "budget": budget}
        if outcome == "persists":
            self.notes.append("the growth persisted over %d more calls (%s; %.2f s of "
                              "patience)" % (watched, ", ".join(
                                  "%s %+.3g/call" % kv for kv in after.items()), spent))
            if verdict == "inconclusive":
                return "error" if followed.get("refs", 1) < 0 else "leak"
            return verdict
        if outcome == "settled":
            self.notes.append("the growth first seen (%s) settled within %d more calls: a "
                              "cache or pool that fills up, not a leak" % (rates, watched))
            return "clean"
        if overran:
            why = ("the calls ran slower than measured (a busy machine?) and the budget ran "
                   "out after %d more calls" % watched)
        elif not watched:
            why = "no time was left to watch it longer"
        else:
            why = "it slowed but did not settle within %d more calls" % watched
        self.notes.append(
            "growth seen (%s), %s within the patience budget of %g s; run with "
            "--patience %g to wait longer" % (rates, why, budget, max(budget * 10, 60)))
        return "inconclusive"

    def _lost_survivors(self):
        """The blocks born in the verdict's window that nothing points to
        (lost.c), or None when memory could not be searched (a sanitizer's
        shadow memory, no process_vm_readv): patience decides, as it would
        without the search, so no note."""
        from . import _core
        first, last = self.window_epochs
        try:
            return _core.Session.lost_survivors(first, last)
        except _core.TrackingError:
            return None

    def _growth_lost(self, before, calls):
        """Is the blocks' growth made of blocks lost for good?  Then it is
        a leak without waiting (a note says so)."""
        lost = self.lost
        rate = before.get("blocks", 0.0) + before.get("native_blocks", 0.0)
        if lost is None or not V.growth_lost(lost["lost"], rate * calls):
            return False
        self.notes.append(
            "no patience needed: %d of the %d blocks born in the measured iterations are "
            "referenced from nowhere in the process (lost for good: no cache can give them "
            "back; %.1f MB searched in %.3f s)" % (
                lost["lost_total"], lost["candidates"], lost["scanned_bytes"] / 1e6,
                lost["seconds"]))
        return True

    def _references_unheld(self, growth):
        """Do the objects whose reference count grows gain references that
        no word of the process holds (an unbalanced Py_INCREF)?  The words
        that hold their addresses are counted (lost.c) before and after one
        stage of calls, with freed C library memory filled; then it is a
        leak without patience (a note says so)."""
        import sys
        from . import _core
        gaining = [g for g in growth if g["refs_per_call"] > 0 and "object" in g][:4]
        rate = sum(g["refs_per_call"] for g in gaining)
        calls = V.unheld_calls(rate, self.call_seconds, self.options.patience)
        if calls is None:
            return False
        objects = [g["object"] for g in gaining]
        session = self.session
        every = session.calls
        stage = max(calls, every)
        filling = _core.fill_freed(True)
        try:
            refs = [sys.getrefcount(o) for o in objects]
            words = _core.Session.count_words(objects)
            session.set_calls(stage)
            try:
                yield self._iterate("patience")
            finally:
                session.set_calls(every)
            refs_after = [sys.getrefcount(o) for o in objects]
            words_after = _core.Session.count_words(objects)
        except _core.TrackingError:
            return False        # patience decides, as without the count
        finally:
            if filling:
                _core.fill_freed(False)
        gained = sum(refs_after) - sum(refs)
        held = sum(words_after["counts"]) - sum(words["counts"])
        if not V.references_unheld(gained, held, rate, stage):
            return False
        self.notes.append(
            "no patience needed: over %d more calls %s gained %d references while the words "
            "of the process that hold %s grew by %d (references nothing holds: an unbalanced "
            "Py_INCREF; %.1f MB searched twice in %.3f s)" % (
                stage, " and ".join(g["repr"] for g in gaining), gained,
                "its address" if len(gaining) == 1 else "their addresses", held,
                words_after["scanned_bytes"] / 1e6, words["seconds"] + words_after["seconds"]))
        # The rate reported is these objects' own (their snapshots' slope),
        # as patience would report its longest horizon's: the heap-wide
        # slope of the measured window also carries other counts' drift
        # (1.998 for a leak of 2 on 3.13).
        self.unheld_rate = rate
        return True

    def _survivors_ok(self, before, calls):
        """Are the blocks born in the measured window still alive?  Blocks
        of every domain the blocks figure counts (raw ones too: without the
        native heap's figure, a raw-domain leak persists through them), less
        the dead objects kept in free lists."""
        from . import _core
        rate = before.get("blocks", 0.0)
        if rate <= 0 or self.window_epochs is None:
            return True
        first, last = self.window_epochs
        counts = _core.Session.survivors(first, last)
        return V.survivors_kept(counts, rate * calls)

    def _diagnose(self):
        """Iterations with refcount snapshots: which existing objects gain (or
        lose) references call after call."""
        session = self.session
        # The baseline is an iteration's snapshot too: one taken here, while
        # refhound's own Python frames and steps hold references (to None,
        # small ints, ...), would make the first step of every series move
        # and hide a count that falls by one per call.
        for _ in range(self.options.diagnose + 1):
            yield self._iterate("diagnosing", snapshot=True)
        calls = session.calls * self.options.diagnose
        out = []
        for obj, series in session.growth(20):
            rate = (series[-1] - series[0]) / calls
            if abs(rate) < V.MIN_REFS_PER_CALL:
                continue
            out.append({"type": type_name(type(obj)), "repr": safe_repr(obj),
                        "refs_per_call": round(rate, 4), "sites": [], "object": obj})
        return out

    def _attribute(self):
        """Iterations with a stack recorded for every new block; the blocks
        born in them that survive are grouped by stack into sites."""
        from . import _core
        from ._attribution import leak_sites
        for _ in range(ATTRIBUTION_ITERATIONS):
            yield self._iterate("attributing", stacks=True)
        last = _core.stats()["epoch"]
        first = last - ATTRIBUTION_ITERATIONS + 1
        try:
            sites, _ = leak_sites(first, last, self.session.calls * ATTRIBUTION_ITERATIONS)
            if sites and sites[0].get("address") and self.can_call:
                yield from self._history(sites[0])
        finally:
            _core.reset_stacks()
        return sites

    def _history(self, site):
        """Follow one new object from the top site through its life."""
        found = yield Step("history", "attributing", 0, arg=site["address"])
        events, summary = found
        if events is None:
            self.notes.append("no life history: %s" % summary)
            return
        site["history_events"] = events
        site["history"] = [summary]

    def _watch(self, growth):
        """Hardware watchpoints on the objects whose refcount moves: the lines
        whose writes do not balance, per call."""
        watched = growth[:4]
        calls = watch_calls(self.session.calls, [g["refs_per_call"] for g in watched])
        found, error = yield Step("watch", "watching", calls,
                                  arg=[g["object"] for g in watched])
        if error:
            self.notes.append("no refcount sites: %s" % error)
            return
        for g, sites in zip(watched, found):
            sign = 1 if g["refs_per_call"] > 0 else -1
            g["sites"] = [s for s in sites if s["refs_per_call"] * sign > 0][:3]

    def finish_early(self, note):
        """The driver stops before the steps are over (a loop that ended):
        a Result from what was measured, if enough was; else None.

        Ended while the growth was being watched longer: what the stage has
        seen so far decides (persists: the verdict stands; settled: clean;
        otherwise inconclusive, with the reason)."""
        session = self.session
        if self.result is not None or session is None:
            return self.result
        verdict = self.decided
        nsamples = self.measured_samples
        if verdict is None:
            _, measured = V.window_of(session.nsamples, session.warmup_samples)
            if session.warmup_samples == 0 or measured < 3 or self.decider is None:
                return None
            verdict, stop = self.decider.decide(session)
            if not stop:
                verdict = "inconclusive"
            nsamples = session.nsamples
        elif self.watching is not None:
            followed, before, first, other = self.watching
            outcome = "slowing"
            if session.nsamples - first >= 3:
                outcome = V.patience_outcome(
                    followed, before, V.rates_since(session, first, other, followed),
                    V.stage_steps(session, first, other, followed))
            heap = V.heap_only_drift(session, followed, session.warmup_samples, self.calls)
            if outcome == "settled":
                verdict = "clean"
            elif outcome != "persists" and heap is not None:
                verdict = "clean"
                note += ": " + _heap_drift_note(heap)
            elif outcome != "persists":
                verdict = "inconclusive"
                note += (": the growth first seen was not yet watched over ten times the "
                         "bodies it was seen in; a longer loop decides")
        self.notes.append(note)
        self.result = build_result(self.target, verdict, session.results(), self.calls,
                                   nsamples, [], self.notes, time.perf_counter() - self.t0,
                                   self.options.alpha)
        return self.result

    # -- observers and results ---------------------------------------------------

    def _notify(self, phase, index):
        if not self.observers:
            return
        session = self.session
        info = {"target": self.target, "phase": phase, "iteration": index,
                "calls": session.calls, "seconds": time.perf_counter() - self.t0,
                "refs_delta": session.last_delta("refs"),
                "blocks_delta": session.last_delta("blocks")}
        for observer in self.observers:
            observer(info)

    def _incomplete(self, calls, why):
        result = Result(
            target=self.target, verdict="inconclusive",
            per_call=dict.fromkeys(RATE_METRICS), objects=[], refcount_growth=[],
            iterations={"warmup": 0, "measured": 0}, calls_per_iteration=calls,
            seconds=time.perf_counter() - self.t0, samples=[], types=[], trends={},
            survivors={"first_epoch": 0, "blocks": [], "bytes": []}, notes=self.notes)
        result.incomplete = why
        return result


def watch_calls(iteration_calls, rates):
    """The calls to watch for growths at these rates (refs per call)."""
    import math
    rate = min((abs(r) for r in rates if r), default=0.0)
    want = WATCH_MAX_CALLS if rate <= 0 else math.ceil(WATCH_UNBALANCED / rate)
    return max(1, min(iteration_calls, WATCH_MAX_CALLS, max(WATCH_MIN_CALLS, want)))


def _heap_drift_note(per_call):
    return ("only the malloc heap grew (%+.3g bytes per call, below one chunk per call; no "
            "Python block, object or reference grew, nor a native block of the extensions): "
            "memory the interpreter or the C library allocates for itself, not a leak of the "
            "code checked" % per_call)


def _overrelease_cap(growth):
    """The most calls that keep every object whose count falls above a quarter
    of its count now (None when none falls)."""
    import sys
    cap = None
    for g in growth:
        rate = g["refs_per_call"]
        if rate < 0 and "object" in g:
            calls = int(sys.getrefcount(g["object"]) / (4 * -rate))
            cap = calls if cap is None else min(cap, calls)
    return cap


def _tracking_off_reason():
    from . import _core
    failure = _core.stats().get("failure")
    if failure:
        return "refhound tracking stopped: %s; the program went on" % failure
    return "refhound tracking is not on"


def build_result(target, verdict, raw, calls, nsamples, growth, notes, seconds, alpha):
    """A Result from the session's raw figures: the first nsamples samples
    are the measurement, at `calls` calls per iteration (later samples belong
    to confirmation and diagnosis)."""
    from . import _core
    samples = raw["samples"][:nsamples]
    warmup_samples = raw["warmup_samples"]
    base = V.measured_base(warmup_samples)
    measured = len(samples) - 1 - base
    first = samples[base]
    # Rate per call: the Theil-Sen slope of the measured samples (median of
    # pairwise slopes), so a one-off step (a cache entry, a free-list refill)
    # does not bend it, divided by the calls per iteration.
    measured_samples = samples[base:]

    def rate(key):
        series = [x[key] for x in measured_samples]
        if min(series) < 0:
            return None
        return round(_core.trend(series)["slope"] / calls, 4)

    per_call = {key: rate(key) for key in RATE_METRICS}
    debug = rate("debug_refs") if first["debug_refs"] >= 0 else None
    objects = []
    half = base + measured // 2
    for t in raw["types"]:
        live = t["live"][:nsamples]
        if len(live) <= base:
            continue
        grew = live[-1] - live[base]
        recent = live[-1] - live[half]
        if grew > 0 and recent > 0 and verdict in ("leak", "error", "inconclusive"):
            slope = _core.trend(live[base:])["slope"] / calls
            if slope > 0:
                objects.append({"type": t["type"], "count_per_call": round(slope, 4)})
    objects.sort(key=lambda o: -o["count_per_call"])
    types = sorted(({"type": t["type"], "allocs": t["allocs"], "frees": t["frees"],
                     "max_live": t["max_live"], "live": t["live"][nsamples - 1]}
                    for t in raw["types"]), key=lambda t: -t["allocs"])[:30]
    if verdict not in ("leak", "error"):
        growth = []
    return Result(
        target=target, verdict=verdict, per_call=per_call, objects=objects,
        refcount_growth=growth,
        iterations={"warmup": max(warmup_samples, 0), "measured": measured},
        calls_per_iteration=calls, seconds=seconds,
        samples=samples, types=types, trends=V.all_trends(samples, warmup_samples, alpha),
        survivors=raw["survivors"], debug_refs_per_call=debug, notes=notes,
        tracker=raw["tracker"])


# ---------------------------------------------------------------------------
# The driver for a callable


def run_callable(options, func, args, kwargs, target, observers=(), screen=None, budget=None,
                 screen_plan=None, screen_rounds=None, watch=None):
    """Check func(*args, **kwargs): calibrate, then perform the steps.
    Raises TargetFailed when the target raises.  screen: the seconds a call
    took when the driver ran it (pytest: the test's normal run), to screen
    it before the full check; None: no screen.  budget, screen_plan: see
    CheckRun.steps (a screen plan given: the body is not timed again).
    watch: what the refcount watch calls instead of func(*args, **kwargs)
    (the same body without its driver's frames: pytest's test function
    called directly), or None."""
    from . import _core
    from ._caches import clear_caches

    args = tuple(args)
    kwargs = dict(kwargs) or None
    calls = options.calls
    if screen is not None:
        if screen < V.SCREEN_RETIME and screen_plan is None:
            # A first run is slow (lazy imports, first-time work): time one
            # more call, which also warms the screen up.
            try:
                t = time.perf_counter()
                func(*args, **(kwargs or {}))
                screen = min(screen, time.perf_counter() - t)
            except BaseException as exc:
                raise TargetFailed("%s: %s" % (type(exc).__name__, exc)) from exc
        if calls is None:
            calls = calibrated_calls(options, screen)
    if calls is None:
        calls = _calibrate(options, func, args, kwargs)

    def open_session(n):
        return _core.Session(func, args, kwargs, clear_caches, n,
                             max_samples=max_samples(options))

    run = CheckRun(options, target, open_session, can_call=True, observers=observers)
    steps = run.steps(calls, screen, budget, screen_plan, screen_rounds)
    reply = pending = None
    while True:
        try:
            step = steps.throw(pending) if pending is not None else steps.send(reply)
        except StopIteration:
            break
        reply = pending = None
        try:
            if watch is not None and step.kind == "watch":
                reply = _perform(step, run.session, watch, (), None)
            else:
                reply = _perform(step, run.session, func, args, kwargs)
        except _core.TrackingError as exc:
            pending = exc       # the check decides what an incomplete step means
        except BaseException:
            steps.close()
            raise
    if run.result is not None and run.screened is not None:
        run.result.screen = run.screened
    return run.result


CALIBRATION_TIMINGS = 3         # calls timed to calibrate (the fastest counts)
CALIBRATION_SECONDS = 0.05      # ... unless they take longer than this
CALIBRATION_RETIMED = 100       # the most calls per iteration a retiming gives


def _calibrate(options, func, args, kwargs):
    """Calls per iteration from the time of the first call; when that gives
    fewer than CALIBRATION_RETIMED, from the fastest of a few timed calls,
    up to CALIBRATION_RETIMED.  One timing alone is at the mercy of the
    scheduler: on a loaded machine a 5 µs call timed once at 60 µs gave 10
    calls per iteration instead of 100, and a leak of one object per 1,000
    calls fell between the measured calls.  (The fastest call alone would
    check a body whose first call is slow, as under AddressSanitizer, at
    ten times the calls it was tuned for.)"""
    calls = calibrated_calls(options, _call_seconds(func, args, kwargs, 1))
    if calls < CALIBRATION_RETIMED:
        fastest = _call_seconds(func, args, kwargs, CALIBRATION_TIMINGS)
        calls = max(calls, min(calibrated_calls(options, fastest), CALIBRATION_RETIMED))
    return calls


def _call_seconds(func, args, kwargs, timings=CALIBRATION_TIMINGS):
    """Seconds one call takes: the fastest of up to `timings` timed calls
    (fewer when they take more than CALIBRATION_SECONDS)."""
    best = None
    spent = 0.0
    for _ in range(timings):
        try:
            t = time.perf_counter()
            func(*args, **(kwargs or {}))
            took = time.perf_counter() - t
        except BaseException as exc:
            raise TargetFailed("%s: %s" % (type(exc).__name__, exc)) from exc
        best = took if best is None else min(best, took)
        spent += took
        if spent + best > CALIBRATION_SECONDS:
            break
    return best


def _perform(step, session, func, args, kwargs):
    from . import _core
    if step.kind == "screen":
        import gc
        warm, calls, epochs, generation, lazy_tail = step.arg
        enabled = gc.isenabled()
        gc.disable()
        try:
            from ._caches import clear_screen_caches
            return _call(_core.Session.screen, func, args, kwargs, warm, calls, epochs,
                         generation, clear_screen_caches, lazy_tail,
                         int(V.SCREEN_NATIVE_SLACK * calls * epochs))
        finally:
            if enabled:
                gc.enable()
    if step.kind == "iterate":
        if step.stacks:
            _core.capture_stacks(True)
        try:
            return _call(session.iterate, step.warmup, step.snapshot)
        finally:
            if step.stacks:
                _core.capture_stacks(False)
    if step.kind == "watch":
        from ._attribution import watch_sites
        return _call(watch_sites, step.arg, func, args, kwargs, step.calls)
    if step.kind == "history":
        from ._attribution import life_history
        return _call(life_history, step.arg, func, args, kwargs)
    raise ValueError("unknown step %r" % step.kind)


def _call(method, *args):
    from . import _core
    try:
        return method(*args)
    except (TargetFailed, _core.TrackingError, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise TargetFailed("%s: %s" % (type(exc).__name__, exc)) from exc
