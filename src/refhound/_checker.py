"""The leak-check loop: calibrate, warm up, measure until the trend test is
sure, then diagnose which objects' refcounts move.

The loop itself is written so that it allocates nothing that survives an
iteration: the iterations, samples and statistics run in C
(refhound._core.Session); this module only steers and shapes the result.
"""
import time

from . import _core, _valgrind
from ._caches import clear_caches
from ._result import Result
from ._saferepr import safe_repr, type_name

ATTRIBUTION_ITERATIONS = 2
CONFIRM_ITERATIONS = 3     # plus one for the baseline
CONFIRM_METRICS = ("refs", "objects", "blocks", "bytes", "native_bytes", "fds")
RATE_METRICS = ("refs", "objects", "blocks", "bytes", "native_bytes", "rss_bytes", "fds")


class TargetFailed(Exception):
    """The checked callable raised; the original exception is __cause__."""


class Checker:
    """Leak-check callables.

    warmup:      iterations run before measuring (lazy imports, caches).
    iterations:  the most measured iterations (the check stops earlier when
                 the answer is clear).
    min_iterations: the fewest measured iterations.
    calls:       calls per iteration; None picks a power of ten so that an
                 iteration takes about `iteration_seconds`.
    alpha:       significance of the trend test.
    attribution: after a leak, run two more iterations recording an
                 allocation stack per block and name the culprit lines.
    progress:    callable(dict) told after each iteration, or None.
    """

    def __init__(self, warmup=3, iterations=60, min_iterations=8, calls=None,
                 iteration_seconds=0.005, max_calls=10000, alpha=0.001,
                 diagnose=3, attribution=True, progress=None):
        if warmup < 0 or iterations < 1 or min_iterations < 3 or (calls is not None and calls < 1):
            raise ValueError("refhound: warmup >= 0, iterations >= 1, min_iterations >= 3, calls >= 1")
        self.warmup = warmup
        self.iterations = max(iterations, min_iterations)
        self.min_iterations = min_iterations
        self.calls = calls
        self.iteration_seconds = iteration_seconds
        self.max_calls = max_calls
        self.alpha = alpha
        self.diagnose = diagnose
        self.attribution = attribution
        self.progress = progress

    def check(self, func, *args, **kwargs):
        """Check `func(*args, **kwargs)` for leaks; returns a Result."""
        if not callable(func):
            raise TypeError("refhound.check: %r is not callable" % (func,))
        target = getattr(func, "__module__", None) or "?"
        target = "%s:%s" % (target, getattr(func, "__qualname__", repr(func)))
        return self.run(func, args, kwargs, target)

    def run(self, func, args, kwargs, target):
        started_here = _core.start()
        notes = []
        # Under Valgrind: a memcheck scope with a leak search per iteration.
        self._vg = _valgrind.begin(target, "call")
        try:
            result = self._run(func, tuple(args), dict(kwargs) or None, target, notes)
            _valgrind.attach(self._vg, result)
            return result
        finally:
            _valgrind.end(self._vg)
            if started_here:
                _core.stop()

    def _calibrate(self, func, args, kwargs):
        """Calls per iteration: a power of ten giving ~iteration_seconds."""
        if self.calls is not None:
            return self.calls
        try:
            t = time.perf_counter()
            func(*args, **(kwargs or {}))
            once = time.perf_counter() - t
        except BaseException as exc:
            raise TargetFailed("%s: %s" % (type(exc).__name__, exc)) from exc
        calls = 1
        while calls * 10 <= self.max_calls and calls * 10 * once <= self.iteration_seconds:
            calls *= 10
        return calls

    def _run(self, func, args, kwargs, target, notes):
        t0 = time.perf_counter()
        self._target = (func, args, kwargs)
        incomplete = None
        calls = self._calibrate(func, args, kwargs)
        while True:
            session = _core.Session(
                func, args, kwargs, clear_caches, calls,
                max_samples=(self.warmup + self.iterations + self.diagnose + ATTRIBUTION_ITERATIONS
                             + CONFIRM_ITERATIONS + 5),
                min_measured=self.min_iterations, max_measured=self.iterations,
                alpha=self.alpha)
            try:
                try:
                    outcome = self._iterate(session, target, t0)
                except _core.TrackingError as exc:
                    incomplete = "refhound %s; the program went on" % exc
                    outcome = "inconclusive"
                if outcome == "restart" and calls > 1:
                    notes.append("the reference count fell on every call: re-checked with one "
                                 "call per iteration so the object is not freed under the check")
                    calls = 1
                    continue
                verdict = outcome
                measured_samples = session.nsamples
                if verdict in ("leak", "error"):
                    try:
                        verdict = self._confirm(session, verdict, notes)
                    except _core.TrackingError as exc:
                        notes.append("not confirmed: refhound %s" % exc)
                growth = []
                if verdict in ("leak", "error") and self.diagnose > 0:
                    try:
                        growth = self._diagnose(session)
                    except _core.TrackingError as exc:
                        notes.append("no refcount diagnosis: refhound %s" % exc)
                sites = []
                if verdict == "leak" and self.attribution:
                    try:
                        sites = self._attribute(session, notes)
                    except _core.TrackingError as exc:
                        notes.append("no attribution: refhound %s" % exc)
                if growth and self.attribution:
                    self._watch(func, args, kwargs, session.calls, growth, notes)
                    if not sites:
                        # Nothing allocated: the refcount writes are the sites.
                        sites = [s for g in growth[:1] for s in g["sites"]]
                raw = session.results()
            finally:
                session.close()
            break
        result = self._result(target, verdict, raw, measured_samples, growth, notes,
                              time.perf_counter() - t0)
        result.sites = sites
        if incomplete:
            result.incomplete = incomplete
            result.per_call = dict.fromkeys(result.per_call)
            result.objects = []
        return result

    def _iterate(self, session, target, t0):
        # One loop, every local bound before the first sample: a name bound
        # between two samples would add a reference and show as a change.
        warm = max(self.warmup, 1)     # at least one baseline sample
        done = falls = 0
        verdict, stop, warmup = "continue", False, True
        while True:
            warmup = done < warm
            self._call(session.iterate, warmup)
            done += 1
            if warmup:
                self._report(target, "warm-up", done, session, t0)
                continue
            verdict, stop = session.decide()
            self._report(target, "measuring", done - warm, session, t0)
            if session.calls > 1 and self._refs_fell(session):
                falls += 1
                if falls >= 2:
                    return "restart"
            else:
                falls = 0
            if stop:
                return verdict

    @staticmethod
    def _refs_fell(session):
        return session.last_delta("refs") <= -session.calls // 2

    @staticmethod
    def _call(method, *args):
        try:
            method(*args)
        except (TargetFailed, _core.TrackingError, KeyboardInterrupt):
            raise
        except BaseException as exc:
            raise TargetFailed("%s: %s" % (type(exc).__name__, exc)) from exc

    _vg = None

    def _report(self, target, phase, i, session, t0):
        if self._vg is not None:
            self._vg.iteration(phase, i, session.calls)
        if self.progress is not None:
            self.progress({"target": target, "phase": phase, "iteration": i,
                           "calls": session.calls, "seconds": time.perf_counter() - t0,
                           "refs_delta": session.last_delta("refs"),
                           "blocks_delta": session.last_delta("blocks")})

    def _diagnose(self, session):
        """A few more iterations with refcount snapshots: which existing
        objects gain (or lose) references call after call."""
        session.snapshot()
        for _ in range(self.diagnose):
            self._call(session.iterate, False, True)
        found = session.growth(20)
        calls = session.calls * self.diagnose
        out = []
        for obj, series in found:
            rate = (series[-1] - series[0]) / calls
            if abs(rate) < 0.01:
                continue
            out.append({"type": type_name(type(obj)), "repr": safe_repr(obj),
                        "refs_per_call": round(rate, 4), "sites": [], "object": obj})
        return out

    def _confirm(self, session, verdict, notes):
        """A trend seen at N calls per iteration must show at another count.

        A leak grows with the number of calls; a cache that fills and is
        emptied every k entries, sampled every N calls, can draw a steady
        ramp that is only aliasing.  Re-measure at another count (2N+1, and
        enough calls for a few events of the measured rate): the per-call
        rate of at least one trending metric must come back with the same
        sign and within a factor of two, else the verdict is "inconclusive"."""
        calls = session.calls
        base = max(session.warmup_samples - 1, 0)
        before = {}
        for key in CONFIRM_METRICS:
            series = session.series(key, base)
            if series and min(series) >= 0:
                rate = _core.trend(series)["slope"] / calls
                if rate != 0:
                    before[key] = rate
        if not before:
            return verdict
        counts = [abs(r) for k, r in before.items() if k in ("refs", "objects", "blocks", "fds")]
        fastest = max(counts) if counts else max(abs(r) for r in before.values())
        other = max(calls * 2 + 1, min(int(5 / fastest) + 1, calls * 100, 100000))
        # The first iteration is the baseline: the objects made above are
        # alive from then on and cancel out.  No Python object may be
        # created between the samples that follow.
        start = session.nsamples
        session.set_calls(other)
        try:
            for _ in range(CONFIRM_ITERATIONS + 1):
                self._call(session.iterate, False)
        finally:
            session.set_calls(calls)
        for key, rate in before.items():
            series = session.series(key, start)
            after = (series[-1] - series[0]) / (other * (len(series) - 1))
            if (rate > 0) == (after > 0) and 0.5 <= after / rate <= 2.0:
                return verdict
        notes.append("the growth seen at %d calls per iteration did not show at %d: a cache "
                     "emptied periodically and sampled in step with it? (rates %s)"
                     % (calls, other, ", ".join("%s %+.3g" % kv for kv in before.items())))
        return "inconclusive"

    def _attribute(self, session, notes):
        """Iterations with a stack recorded for every new block; the blocks
        born in them that survive are grouped by stack into sites."""
        from ._attribution import leak_sites
        _core.capture_stacks(True)
        try:
            for _ in range(ATTRIBUTION_ITERATIONS):
                self._call(session.iterate, False)
        finally:
            _core.capture_stacks(False)
        last = _core.stats()["epoch"]
        first = last - ATTRIBUTION_ITERATIONS + 1
        try:
            sites, unattributed = leak_sites(first, last, session.calls * ATTRIBUTION_ITERATIONS)
            if sites and sites[0].get("address") and session.calls >= 1:
                self._history(sites[0], notes)
        finally:
            _core.reset_stacks()
        if not _core.symbols_have_dwarf() and sites:
            notes.append("sites are named by symbol only: refhound was built without libdw")
        return sites

    def _history(self, site, notes):
        """Follow one new object from the top site through its life."""
        from ._attribution import life_history
        func, args, kwargs = self._target
        try:
            events, summary = life_history(site["address"], func, args, kwargs)
        except BaseException as exc:
            raise TargetFailed("%s: %s" % (type(exc).__name__, exc)) from exc
        if events is None:
            notes.append("no life history: %s" % summary)
            return
        site["history_events"] = events
        site["history"] = [summary]

    def _watch(self, func, args, kwargs, calls, growth, notes):
        """Hardware watchpoints on the objects whose refcount moves: the
        lines whose writes do not balance, per call."""
        from ._attribution import watch_sites
        calls = max(1, min(calls, 100))
        watched = growth[:4]
        try:
            found, error = watch_sites([g["object"] for g in watched], func, args, kwargs, calls)
        except BaseException as exc:
            raise TargetFailed("%s: %s" % (type(exc).__name__, exc)) from exc
        if error:
            notes.append("no refcount sites: %s" % error)
            return
        for g, sites in zip(watched, found):
            sign = 1 if g["refs_per_call"] > 0 else -1
            g["sites"] = [s for s in sites if s["refs_per_call"] * sign > 0][:3]

    def _result(self, target, verdict, raw, nsamples, growth, notes, seconds):
        samples = raw["samples"][:nsamples]
        base = max(raw["warmup_samples"] - 1, 0)
        measured = len(samples) - 1 - base
        calls = raw["calls"]
        first = samples[base]
        # Rate per call: the Theil-Sen slope of the measured samples (median
        # of pairwise slopes), so a one-off step (a cache entry, a free-list
        # refill) does not bend it, divided by the calls per iteration.
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
        trends = {k: v for k, v in raw["trends"].items()}
        if verdict not in ("leak", "error"):
            growth = []
        return Result(
            target=target, verdict=verdict, per_call=per_call, objects=objects,
            refcount_growth=growth,
            iterations={"warmup": max(raw["warmup_samples"], 0), "measured": measured},
            calls_per_iteration=calls, seconds=seconds,
            samples=samples, types=types, trends=trends, survivors=raw["survivors"],
            debug_refs_per_call=debug, notes=notes, tracker=raw["tracker"])


def check(func, *args, **kwargs):
    """Check `func(*args, **kwargs)` for memory and reference leaks.

    Returns a Result: true when clean; `.verdict` is "leak", "error",
    "clean" or "inconclusive".  Use `Checker(...)` for options.
    """
    return Checker().check(func, *args, **kwargs)
