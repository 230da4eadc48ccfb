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

How a check runs: the same check run as `refhound check` (_run.py), driven
by the loop instead of by calls.  The first body is timed to choose how many
bodies make an iteration (`calls`, a power of ten, ~5 ms, like `refhound
check`); each iteration opens a new birth epoch before its first body and is
closed by the engine's Session after its last (cache clearing, two
collections, a sample).  Warm-up iterations first, then measured ones until
the verdict is sure, confirmation at another count, diagnosis and
attribution, as for a callable; the passes that need to call the target
themselves (watchpoints, life history) are left out.  The verdict is printed to
stderr when it is reached (report=False to keep quiet) and kept in
`handle.result`.  In the iterator form the loop stops once the verdict is in
(stop=False runs the iterable to its end); the other forms keep running and
simply stop measuring.

Only one check can be active at a time: a second loop (or a loop inside a
test checked by pytest --refhound) runs unchecked and says so once.  A loop
that holds the engine but has run no body while another loop ran
HANDOVER_BODIES of its own is taken to have ended: its check is finished
with what it measured and the engine passes to the other loop (a loop that
runs inside another's body never takes it).
"""
import atexit
import functools
import itertools
import sys
import time
import weakref

from .options import OptionError, Options

_ACTIVE = {}        # key -> _LoopCheck of the keyed forms (with, decorator)
_RUNNING = weakref.WeakSet()    # _LoopCheck of iterator forms still alive
_FINISHED = []      # _LoopCheck objects whose check has ended, in order
_UNCHECKED_NAMES = set()        # names already reported as not checked
_atexit_registered = False
DEFAULT_REPORT = True   # `refhound run --quiet` turns the reports off
HANDOVER_BODIES = 100   # bodies of a waiting loop while the holder runs none
_ADOPTED_SINCE_START = False   # _core.adopt() ran once for loops (refhound run)
_HOLDER = None          # the _LoopCheck holding the engine's session
_TICK = 0               # bodies ended, all loops together


class _LoopCheck:
    """The state of one loop check; bodies report to it."""

    def __init__(self, name, options, report):
        self.name = name
        self.options = options
        self.report = report
        self.phase = "calibrate"    # calibrate, run, done, unchecked
        self.count = 0              # bodies in the current iteration
        self.bodies = 0             # bodies seen in all
        self.waited = 0             # bodies run while another check held the engine
        self.run = None             # the CheckRun (_run.py)
        self.steps = None           # its generator of steps
        self.step = None            # the step the bodies are running
        self.session = None         # claimed before calibration
        self.result = None
        self.unchecked = None       # the reason when the check could not run
        self.t_body = None
        self.t_bodies = None        # when the bodies of the current iteration began
        self.started_tracking = False
        self.inside = False         # between body_start and body_end
        self.last_tick = 0          # _TICK at this loop's last body

    # -- bodies ------------------------------------------------------------

    @property
    def done(self):
        return self.phase in ("done", "unchecked")

    def body_start(self):
        self.inside = True
        if self.session is None and not self.done:
            holder = _HOLDER
            if holder is not None and holder is not self and not holder.inside and \
                    self.waited >= HANDOVER_BODIES and \
                    _TICK - holder.last_tick >= HANDOVER_BODIES:
                holder.finish()     # its loop has ended: judge it, take the engine
            self._open()
            if self.session is None:
                return      # waiting for the engine
        if self.phase == "calibrate":
            self.t_body = time.perf_counter()

    def body_end(self):
        global _TICK
        self.inside = False
        _TICK += 1
        self.last_tick = _TICK
        if self.done:
            return
        if self.session is None:
            self.waited += 1
            return
        self.bodies += 1
        try:
            if self.phase == "calibrate":
                self._start(time.perf_counter() - self.t_body)
                return
            self.count += 1
            if self.count < self.step.calls:
                return
            self.count = 0
            self._close_iteration()
        except Exception as exc:    # the engine must never break the program
            self._give_up("%s: %s" % (type(exc).__name__, exc))

    # -- the check run ---------------------------------------------------------

    def _open(self):
        """Claim the engine (one check at a time); stay waiting while another
        check holds it, give up if tracking cannot run."""
        from . import _core
        from ._caches import clear_caches
        from ._run import max_samples
        global _HOLDER, _ADOPTED_SINCE_START
        try:
            if not _core.is_tracking():
                _core.start()
                self.started_tracking = True
            elif not _ADOPTED_SINCE_START:
                # Tracking ran before the program's imports (refhound run):
                # what they made in blocks from before it has no entry yet.
                _core.adopt()
                _ADOPTED_SINCE_START = True
            self.session = _core.Session(_noop, (), None, clear_caches, 1,
                                         max_samples=max_samples(self.options))
            _HOLDER = self
        except RuntimeError as exc:
            if "already running" not in str(exc):
                self._give_up(str(exc).replace("refhound: ", ""))
            return
        except Exception as exc:
            self._give_up("%s: %s" % (type(exc).__name__, exc))

    def _open_session(self, calls):
        """The session of the run: the one claimed at the first body, then
        (after a restart at one call per iteration) a new one."""
        from . import _core
        from ._caches import clear_caches
        from ._run import max_samples
        session, self.session = self.session, None
        if session is None or session.nsamples > 0:
            session = _core.Session(_noop, (), None, clear_caches, calls,
                                    max_samples=max_samples(self.options))
        else:
            session.set_calls(calls)
        self.session = session
        return session

    def _start(self, once):
        from ._run import CheckRun, calibrated_calls
        self.run = CheckRun(self.options, self.name, self._open_session, can_call=False)
        if self.started_tracking:
            self.run.notes.append(
                "tracking started at the loop, not before the program's imports (run the "
                "program with `refhound run` for full detail)")
        self.steps = self.run.steps(calibrated_calls(self.options, once))
        self.phase = "run"
        self._next(None)

    def _next(self, error, seconds=None):
        """Advance the run to its next step and open that iteration.  seconds:
        the time the bodies of the iteration just closed took."""
        from . import _core
        try:
            if error is not None:
                step = self.steps.throw(error)
            elif self.step is None:
                step = next(self.steps)
            else:
                step = self.steps.send(seconds)
        except StopIteration:
            self._finished()
            return
        self.step = step
        if step.stacks:
            _core.capture_stacks(True)
        self.session.begin()
        self.t_bodies = time.perf_counter()

    def _close_iteration(self):
        from . import _core
        step = self.step
        seconds = time.perf_counter() - self.t_bodies
        try:
            self.session.end(step.warmup, step.snapshot)
            error = None
        except _core.TrackingError as exc:
            error = exc
        finally:
            if step.stacks:
                _core.capture_stacks(False)
        self._next(error, seconds)

    # -- the end -----------------------------------------------------------

    def _release(self):
        global _HOLDER
        if _HOLDER is self:
            _HOLDER = None

    def _finished(self, ended_early=None):
        from . import _core
        self._release()
        result = self.run.result
        self.steps = None
        self.session = None
        if result is None:
            self._give_up(ended_early or "the check ended without a result")
            return
        for g in result.refcount_growth:
            g.pop("object", None)   # do not keep the user's objects alive
        self.result = result
        self.phase = "done"
        _FINISHED.append(self)
        if self.started_tracking:
            _core.stop()
            self.started_tracking = False
        if self.report:
            from .report.terminal import render
            sys.stderr.write(render(result).replace("refhound check ", "refhound loop ", 1))
            sys.stderr.flush()

    def finish(self):
        """The loop is over: decide with what was measured (or say why not)."""
        if self.done:
            return
        if self.phase == "run":
            from . import _core
            if self.step is not None and self.step.stacks:
                _core.capture_stacks(False)
            note = "the loop ended after %d bodies, before the check was sure" % self.bodies
            self.run.finish_early(note)
            self.steps.close()
            self._finished(ended_early="the loop ended (or was left) after %d bodies, "
                           "before the check had enough iterations" % self.bodies)
            return
        if self.session is None and self.waited:
            self._give_up("another check held the engine for the whole loop (%d bodies); "
                          "refhound checks one loop at a time" % self.waited)
            return
        calls = self.step.calls if self.step is not None else (self.options.calls or 1)
        needed = (max(self.options.warmup, 1) + self.options.min_iterations + 1) * calls
        self._give_up("the loop ended (or was left) after %d bodies; a check needs about %d "
                      "(%d per iteration)" % (self.bodies, needed, calls))

    def _give_up(self, reason):
        self._release()
        if self.steps is not None:
            try:
                self.steps.close()
            except Exception:
                pass
            self.steps = None
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

    def __init__(self, iterable=None, name=None, key=None, stop=True, report=None, **options):
        if report is None:
            report = DEFAULT_REPORT
        self.iterable = iterable
        self.stop = stop
        self._report = report
        self.name = name
        self._key = key
        # A keyed check (the `with` form, entered once per pass) is looked up
        # first: the options were validated when it was made.
        self._check = _ACTIVE.get(key) if key is not None else None
        self._options = self._check.options if self._check is not None else None
        if self._options is None:
            try:
                self._options = Options(**options)
            except OptionError as exc:
                raise OptionError("refhound.loop: %s" % exc) from None
        if key is not None and self._check is None:
            self._check = self._new_check(name)
            _ACTIVE[key] = self._check

    def _new_check(self, name):
        _register_atexit()
        return _LoopCheck(name, self._options, self._report)

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


def loop(arg=None, *, name=None, stop=True, report=None, every=None, **options):
    """Leak-check a loop body; see refhound._loop for the three spellings.

    arg:    an iterable (each step is one body), a function (decorator: each
            call is one body), a string (the check's name, for `with`), or
            nothing (`for i in loop():` runs until the verdict; `with loop():`
            is keyed by the line it is written on).
    calls:  bodies per measured iteration (default: calibrated, ~5 ms);
            `every` is the same, under its former name.
    warmup, iterations, min_iterations, ...: the check's options, as for
            refhound.Checker (refhound.options.FIELDS).
    stop:   the iterator form ends once the verdict is in (default True).
    report: print the verdict to stderr when it is reached (default: yes,
            except under `refhound run --quiet`).
    """
    if every is not None:
        options.setdefault("calls", every)
    options = dict(stop=stop, report=report, **options)
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
