"""The Python API: refhound.check(func, ...) and refhound.Checker(...).

A thin front end over the one check run (_run.py): options from
options.py, the verdict from verdict.py.  Under Valgrind the check is
bracketed by a memcheck scope, attached as an observer of the run.
"""
from . import _valgrind
from ._run import TargetFailed, run_callable
from .options import Options

__all__ = ["check", "Checker", "TargetFailed", "sanitize"]


class Checker:
    """Leak-check callables with fixed options.

    Options (see refhound.options.FIELDS): warmup, iterations,
    min_iterations, calls (None: calibrated), max_calls,
    iteration_seconds, alpha, diagnose, attribution, native, timeout, strict.
    progress: a callable told after each iteration (a dict), or None.
    """

    def __init__(self, progress=None, **options):
        self.options = Options(**options)
        self.progress = progress

    def check(self, func, *args, **kwargs):
        """Check `func(*args, **kwargs)` for leaks; returns a Result."""
        if not callable(func):
            raise TypeError("refhound.check: %r is not callable" % (func,))
        target = "%s:%s" % (getattr(func, "__module__", None) or "?",
                            getattr(func, "__qualname__", repr(func)))
        return self.run(func, args, kwargs, target)

    def run(self, func, args, kwargs, target, screen=None, budget=None, screen_plan=None,
            screen_rounds=None, watch=None):
        """Check func(*args, **kwargs) under the name `target`.  screen: the
        seconds a call took when the caller ran it, to screen it first
        (pytest --refhound); None: the full check only.  budget: the seconds
        the full check of what the screen did not clear may take (None: no
        limit).  screen_plan: (warm, calls, epochs) for the screen instead of
        the plan for the body's time; screen_rounds: its most rounds.
        watch: a callable of no arguments the refcount watch calls instead
        (the same body without the caller's own frames), or None."""
        from . import _core
        from ._target import as_plain_callable
        func, note = as_plain_callable(func)
        started_here = _core.start()
        native_note = _start_native(self.options)
        scope = _valgrind.begin(target, "call")
        observers = [self.progress] if self.progress is not None else []
        options = self.options
        if scope is not None:
            # Under Valgrind, memcheck's leak check of each iteration decides
            # what leaks; patience would multiply the calls (and the leaked
            # blocks every later leak check walks) by thousands.
            options = options.replace(patience=0.0)
            # ... and the screen would clear a body before any leak check ran.
            screen = budget = screen_plan = None
            observers.append(lambda info: scope.iteration(info["phase"], info["iteration"],
                                                          info["calls"]))
        try:
            result = run_callable(options, func, args, kwargs, target, observers,
                                  screen=screen, budget=budget, screen_plan=screen_plan,
                                  screen_rounds=screen_rounds, watch=watch)
            if note:
                result.notes.insert(0, note)
            if native_note:
                result.notes.append(native_note)
            _valgrind.attach(scope, result)
            return result
        finally:
            _valgrind.end(scope)
            if started_here:
                _core.stop()


def _start_native(options):
    """Native tracking on for a check that wants it (it stays on until
    tracking stops: _core.stop() puts everything back).  None, or a note
    saying why it is off."""
    from . import _core
    if not options.native or not _core.is_tracking():
        return None
    if _core.valgrind_running():
        return None         # memcheck already sees every malloc
    try:
        _core.native_start()
    except RuntimeError as exc:
        return "native memory is not tracked: %s" % str(exc).replace("refhound: ", "")
    return None


def check(func, *args, **kwargs):
    """Check `func(*args, **kwargs)` for memory and reference leaks.

    Returns a Result: true when clean; `.verdict` is "leak", "error",
    "clean" or "inconclusive".  Use `Checker(...)` for options.
    """
    return Checker().check(func, *args, **kwargs)


def sanitize(func, *args, calls=1000, rate=1, **kwargs):
    """Call `func(*args, **kwargs)` `calls` times in a forked child under the
    guard allocator (the engine of `refhound check --sanitize`) and return
    the memory errors it found: [] when none, else a list of dicts as in the
    JSON's `memory_errors` (kind, culprit, access, allocated, freed, type).

    The child takes the fault, never this process: its memory, threads and
    output stay as they were.  `rate`: guard one block in `rate` (1: every
    block while the guard's budget lasts).  Raises TargetFailed when the
    child ends otherwise than by returning or by a memory error."""
    from ._child import EXIT_TARGET, run_in_child
    from ._sanitize import run_sanitized
    if not isinstance(calls, int) or calls < 1:
        raise ValueError("refhound.sanitize: calls must be a whole number >= 1")
    if not isinstance(rate, int) or rate < 1:
        raise ValueError("refhound.sanitize: rate must be a whole number >= 1")
    name = getattr(func, "__qualname__", None) or repr(func)

    def work():
        try:
            for _ in range(calls):
                func(*args, **kwargs)
        except Exception:
            import traceback
            traceback.print_exc()
            return EXIT_TARGET
        return 0

    def child(w, crashed):
        return run_in_child(w, what="refhound.sanitize(%s)" % name, crashed=crashed)

    status, errors = run_sanitized(child, work, rate=rate)
    if errors:
        return errors
    if status == EXIT_TARGET:
        raise TargetFailed("%s raised under the guard (its traceback is above)" % name)
    if status != 0:
        raise TargetFailed("%s ended with status %d under the guard, with no memory error "
                           "found" % (name, status))
    return []
