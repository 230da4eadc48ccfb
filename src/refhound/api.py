"""The Python API: refhound.check(func, ...) and refhound.Checker(...).

A thin front end over the one check run (_run.py): options from
options.py, the verdict from verdict.py.  Under Valgrind the check is
bracketed by a memcheck scope, attached as an observer of the run.
"""
from . import _valgrind
from ._run import TargetFailed, run_callable
from .options import Options

__all__ = ["check", "Checker", "TargetFailed"]


class Checker:
    """Leak-check callables with fixed options.

    Options (see refhound.options.FIELDS): warmup, iterations,
    min_iterations, calls (None: calibrated), max_calls,
    iteration_seconds, alpha, diagnose, attribution, timeout, strict.
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

    def run(self, func, args, kwargs, target):
        """Check func(*args, **kwargs) under the name `target`."""
        from . import _core
        from ._target import as_plain_callable
        func, note = as_plain_callable(func)
        started_here = _core.start()
        scope = _valgrind.begin(target, "call")
        observers = [self.progress] if self.progress is not None else []
        options = self.options
        if scope is not None:
            # Under Valgrind, memcheck's leak check of each iteration decides
            # what leaks; patience would multiply the calls (and the leaked
            # blocks every later leak check walks) by thousands.
            options = options.replace(patience=0.0)
            observers.append(lambda info: scope.iteration(info["phase"], info["iteration"],
                                                          info["calls"]))
        try:
            result = run_callable(options, func, args, kwargs, target, observers)
            if note:
                result.notes.insert(0, note)
            _valgrind.attach(scope, result)
            return result
        finally:
            _valgrind.end(scope)
            if started_here:
                _core.stop()


def check(func, *args, **kwargs):
    """Check `func(*args, **kwargs)` for memory and reference leaks.

    Returns a Result: true when clean; `.verdict` is "leak", "error",
    "clean" or "inconclusive".  Use `Checker(...)` for options.
    """
    return Checker().check(func, *args, **kwargs)
