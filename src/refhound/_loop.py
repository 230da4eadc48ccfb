"""refhound.loop: leak-check the body of a loop in a running program.

The old workflow, "call it in a loop and print the numbers", in one line.
Three spellings share one check:

    for item in refhound.loop(data):        # each step of the for is one body
        process(item)

    for i in refhound.loop():               # no iterable: runs until the verdict
        process(make_input())

    @refhound.loop                          # each call is one body
    def step(x): ...

    for x in data:
        with refhound.loop("parse"):        # each pass through the block is one body
            parse(x)

The `with` form is entered again and again: every `refhound.loop("parse")`
(or, without a name, every call from the same line) returns a handle to the
same check, so the state lives across the passes.

How a check runs: the first body is timed to choose how many bodies make an
iteration (`every`, a power of ten, ~5 ms, like `refhound check`); after each
`every` bodies the engine's Session closes an iteration (a new birth epoch,
cache clearing, two collections, a sample).  Warm-up iterations first, then
measured ones until the trend test is sure; on a leak three more iterations
find the objects whose reference counts move.  The verdict is printed to
stderr when it is reached (report=False to keep quiet) and kept in
`handle.result`.  In the iterator form the loop stops once the verdict is in
(stop=False runs the iterable to its end); the other forms keep running and
simply stop measuring.

Only one check can be active at a time: a second loop (or a loop inside a
test checked by pytest --refhound) runs unchecked and says so once.
"""
import atexit
import functools
import itertools
import sys
import time
import weakref

_ACTIVE = {}        # key -> _LoopCheck of the keyed forms (with, decorator)
_RUNNING = weakref.WeakSet()    # _LoopCheck of iterator forms still alive
_FINISHED = []      # _LoopCheck objects whose check has ended, in order
_UNCHECKED_NAMES = set()        # names already reported as not checked
_atexit_registered = False
DEFAULT_REPORT = True   # `refhound run --quiet` turns the reports off


class _LoopCheck:
    """The state of one loop check; bodies report to it."""

    def __init__(self, name, every, warmup, iterations, min_iterations, report,
                 iteration_seconds=0.005, max_every=10000, alpha=0.001, diagnose=3):
        self.name = name
        self.every = every
        self.warmup = max(warmup, 1)
        self.iterations = max(iterations, min_iterations)
        self.min_iterations = max(min_iterations, 3)
        self.report = report
        self.iteration_seconds = iteration_seconds
        self.max_every = max_every
        self.alpha = alpha
        self.diagnose = diagnose
        self.phase = "calibrate" if every is None else "warmup"
        self.count = 0          # bodies in the current iteration
        self.bodies = 0         # bodies seen in all
        self.waited = 0         # bodies run while another check held the engine
        self.warmed = 0
        self.diagnosed = 0
        self.session = None
        self.result = None
        self.verdict_raw = None
        self.measured_samples = 0
        self.notes = []
        self.unchecked = None   # the reason when the check could not run
        self.t0 = None
        self.t_body = None
        self.started_tracking = False

    # -- bodies ------------------------------------------------------------

    @property
    def done(self):
        return self.phase in ("done", "unchecked")

    def body_start(self):
        if self.session is None and not self.done:
            self._open()
            if self.session is None:
                return      # waiting for the engine
        if self.phase == "calibrate":
            self.t_body = time.perf_counter()

    def body_end(self):
        phase = self.phase
        if phase in ("done", "unchecked"):
            return
        if self.session is None:
            self.waited += 1
            return
        self.bodies += 1
        if phase == "calibrate":
            self._calibrate(time.perf_counter() - self.t_body)
            return
        self.count += 1
        if self.count < self.every:
            return
        self.count = 0
        try:
            self._iteration()
        except Exception as exc:    # the engine must never break the program
            self._give_up("%s: %s" % (type(exc).__name__, exc))

    def _calibrate(self, once):
        every = 1
        while every * 10 <= self.max_every and every * 10 * once <= self.iteration_seconds:
            every *= 10
        self.every = every
        self.session.set_calls(every)
        self.phase = "warmup"

    def _open(self):
        """Claim the engine (one check at a time); stay waiting while another
        check holds it, give up if tracking cannot run."""
        from . import _core
        from ._caches import clear_caches
        try:
            if not _core.is_tracking():
                _core.start()
                self.started_tracking = True
                self.notes.append("tracking started at the loop, not before the program's "
                                  "imports (run the program with `refhound run` for full detail)")
            self.session = _core.Session(
                _noop, (), None, clear_caches, self.every or 1,
                max_samples=self.warmup + self.iterations + self.diagnose + 4,
                min_measured=self.min_iterations, max_measured=self.iterations, alpha=self.alpha)
        except RuntimeError as exc:
            if "already running" not in str(exc):
                self._give_up(str(exc).replace("refhound: ", ""))
            return
        except Exception as exc:
            self._give_up("%s: %s" % (type(exc).__name__, exc))
            return
        self.t0 = time.perf_counter()

    def _iteration(self):
        s = self.session
        if self.phase == "warmup":
            s.iterate(True)
            self.warmed += 1
            if self.warmed >= self.warmup:
                self.phase = "measure"
            return
        if self.phase == "measure":
            s.iterate()
            verdict, stop = s.decide()
            if not stop:
                return
            self._decided(verdict)
            return
        if self.phase == "diagnose":
            s.iterate(False, True)
            self.diagnosed += 1
            if self.diagnosed >= self.diagnose:
                self._finish_result()

    def _decided(self, verdict):
        self.verdict_raw = verdict
        self.measured_samples = self.session.nsamples
        if verdict in ("leak", "error") and self.diagnose > 0:
            self.session.snapshot()
            self.phase = "diagnose"
        else:
            self._finish_result()

    # -- the end -----------------------------------------------------------

    def _finish_result(self, ended_early=False):
        from ._checker import Checker
        from ._saferepr import safe_repr, type_name
        s = self.session
        growth = []
        if self.phase == "diagnose" and self.diagnosed >= 1:
            calls = s.calls * self.diagnosed
            for obj, series in s.growth(20):
                rate = (series[-1] - series[0]) / calls
                if abs(rate) >= 0.01:
                    growth.append({"type": type_name(type(obj)), "repr": safe_repr(obj),
                                   "refs_per_call": round(rate, 4), "sites": [], "object": obj})
        raw = s.results()
        s.close()
        self.session = None
        if ended_early:
            self.notes.append("the loop ended after %d bodies, before the check was sure"
                              % self.bodies)
        self.result = Checker()._result(
            self.name, self.verdict_raw, raw, self.measured_samples, growth, self.notes,
            time.perf_counter() - self.t0)
        for g in self.result.refcount_growth:
            g.pop("object", None)   # do not keep the user's objects alive
        self.phase = "done"
        _FINISHED.append(self)
        if self.started_tracking:
            from . import _core
            _core.stop()
        if self.report:
            from .report.terminal import render
            sys.stderr.write(render(self.result).replace("refhound check ", "refhound loop ", 1))
            sys.stderr.flush()

    def finish(self):
        """The loop is over: decide with what was measured (or say why not)."""
        if self.done:
            return
        if self.phase == "diagnose":
            self._finish_result()
            return
        if self.phase == "measure" and self.session is not None and \
                self.session.nsamples - self.warmed >= 3:
            verdict, stop = self.session.decide()
            self.verdict_raw = verdict if stop else "inconclusive"
            self.measured_samples = self.session.nsamples
            self._finish_result(ended_early=not stop)
            return
        if self.session is None and self.waited:
            self._give_up("another check held the engine for the whole loop (%d bodies); "
                          "refhound checks one loop at a time" % self.waited)
            return
        needed = (self.warmup + self.min_iterations + 1) * (self.every or 1)
        self._give_up("the loop ended (or was left) after %d bodies; a check needs about %d "
                      "(%d per iteration)" % (self.bodies, needed, self.every or 1))

    def _give_up(self, reason):
        if self.session is not None:
            try:
                self.session.close()
            except Exception:
                pass
            self.session = None
        self.unchecked = reason
        self.phase = "unchecked"
        if self.started_tracking:
            from . import _core
            _core.stop()
            self.started_tracking = False
        if self.name in _UNCHECKED_NAMES:
            return      # said once per name: a loop inside a loop must not pile up
        _UNCHECKED_NAMES.add(self.name)
        _FINISHED.append(self)
        if self.report:
            sys.stderr.write("refhound: loop %s not checked: %s\n" % (self.name, reason))
            sys.stderr.flush()


def _noop():
    return None


def _finish_all():
    for check in list(_ACTIVE.values()) + list(_RUNNING):
        if not check.done:
            check.finish()


def finish_all():
    """End every loop check still open (refhound run calls this at exit)."""
    _finish_all()
    return list(_FINISHED)


def results():
    """The Results of the loop checks that have ended, in order."""
    return [c.result for c in _FINISHED if c.result is not None]


def _register_atexit():
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_finish_all)
        _atexit_registered = True


class Loop:
    """A handle on one loop check: iterable, context manager and decorator.

    See the module documentation; make one with refhound.loop(...)."""

    def __init__(self, iterable=None, name=None, key=None, every=None, warmup=3,
                 iterations=60, min_iterations=8, stop=True, report=None):
        if report is None:
            report = DEFAULT_REPORT
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError("refhound.loop: every must be a whole number >= 1")
        if warmup < 0 or iterations < 1 or min_iterations < 3:
            raise ValueError("refhound.loop: warmup >= 0, iterations >= 1, min_iterations >= 3")
        self.iterable = iterable
        self.stop = stop
        self._options = dict(every=every, warmup=warmup, iterations=iterations,
                             min_iterations=min_iterations, report=report)
        self.name = name
        self._key = key
        self._check = None
        if key is not None:
            self._check = _ACTIVE.get(key)
            if self._check is None:
                self._check = self._new_check(name)
                _ACTIVE[key] = self._check

    def _new_check(self, name):
        _register_atexit()
        return _LoopCheck(name, **self._options)

    @property
    def result(self):
        """The Result once the check has ended (None before, or if unchecked)."""
        return self._check.result if self._check is not None else None

    @property
    def unchecked(self):
        return self._check.unchecked if self._check is not None else None

    def finish(self):
        """End the check now with what was measured; returns the Result."""
        if self._check is not None:
            self._check.finish()
        return self.result

    # -- for x in refhound.loop(data) -----------------------------------------

    def __iter__(self):
        if self._check is None or self._check.done:
            self._check = self._new_check(self.name or "loop")
            _RUNNING.add(self._check)
        return self._iterate(self._check)

    def _iterate(self, check):
        source = itertools.count() if self.iterable is None else self.iterable
        stop = self.stop or self.iterable is None
        try:
            for item in source:
                check.body_start()
                yield item
                check.body_end()
                if stop and check.done:
                    break
        finally:
            check.finish()

    # -- with refhound.loop("name"): ------------------------------------------

    def __enter__(self):
        self._check.body_start()
        return self

    def __exit__(self, *exc):
        self._check.body_end()
        return False

    # -- @refhound.loop -------------------------------------------------------

    def __call__(self, func):
        if not callable(func):
            raise TypeError("refhound.loop(...) decorates a function, not %r" % (func,))
        name = self.name or "%s.%s" % (getattr(func, "__module__", "?"),
                                        getattr(func, "__qualname__", repr(func)))
        check = self._check     # refhound.loop(name=...) made and keyed it already
        if check is None:
            key = ("func", name)
            check = _ACTIVE.get(key)
            if check is None:
                check = self._new_check(name)
                _ACTIVE[key] = check
        self._check = check
        self.name = name
        handle = self

        @functools.wraps(func)
        def body(*args, **kwargs):
            check.body_start()
            try:
                return func(*args, **kwargs)
            finally:
                check.body_end()

        body.refhound_loop = handle
        return body


def loop(arg=None, *, name=None, every=None, warmup=3, iterations=60, min_iterations=8,
         stop=True, report=None):
    """Leak-check a loop body; see refhound._loop for the three spellings.

    arg:    an iterable (each step is one body), a function (decorator: each
            call is one body), a string (the check's name, for `with`), or
            nothing (`for i in loop():` runs until the verdict; `with loop():`
            is keyed by the line it is written on).
    every:  bodies per measured iteration (default: calibrated, ~5 ms).
    warmup, iterations, min_iterations: as for refhound.Checker.
    stop:   the iterator form ends once the verdict is in (default True).
    report: print the verdict to stderr when it is reached (default: yes,
            except under `refhound run --quiet`).
    """
    options = dict(every=every, warmup=warmup, iterations=iterations,
                   min_iterations=min_iterations, stop=stop, report=report)
    if isinstance(arg, str):
        return Loop(None, name=arg, key=("name", arg), **options)
    if arg is not None and callable(arg) and not hasattr(arg, "__iter__"):
        return Loop(None, name=name, **options)(arg)
    if arg is not None:
        return Loop(arg, name=name or "loop", **options)
    if name is not None:
        return Loop(None, name=name, key=("name", name), **options)
    frame = sys._getframe(1)
    site = "%s:%d" % (frame.f_code.co_filename, frame.f_lineno)
    del frame
    return Loop(None, name=site, key=("site", site), **options)
