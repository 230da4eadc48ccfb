"""Resolve a target string, MODULE:CALLABLE or FILE.py:CALLABLE, to a callable,
and make a callable whose call runs its body (as_plain_callable).

Errors in what the user typed raise BadTarget (one line, exit status 2);
errors raised by the target's own code while it is imported raise
TargetImportFailed (exit status 3, with the traceback).
"""
import collections
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import types
import weakref


class BadTarget(Exception):
    """The target string names nothing usable."""


class TargetImportFailed(Exception):
    """Importing the target's module raised; __cause__ is the exception."""


def split_target(text):
    if ":" not in text:
        raise BadTarget("target %r must be MODULE:CALLABLE or FILE.py:CALLABLE" % text)
    where, _, attr = text.rpartition(":")
    if not where or not attr:
        raise BadTarget("target %r must be MODULE:CALLABLE or FILE.py:CALLABLE" % text)
    if not all(part.isidentifier() for part in attr.split(".")):
        raise BadTarget("%r is not a valid attribute name in target %r" % (attr, text))
    return where, attr


def is_file_target(where):
    return where.endswith(".py") or os.sep in where


def load_file(path):
    """Run a .py file as a module named after it, its folder first on sys.path."""
    if not os.path.exists(path):
        raise BadTarget("no such file: %s" % path)
    if os.path.isdir(path):
        raise BadTarget("%s is a directory, not a Python file" % path)
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as exc:
        raise BadTarget("cannot read %s: %s" % (path, exc.strerror or exc))
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        where = "%s line %s" % (path, line) if line else path
        raise BadTarget("syntax error in %s: %s" % (where, getattr(exc, "msg", exc)))
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    modname = name if name.isidentifier() and name not in sys.modules else "__refhound_target__"
    spec = importlib.util.spec_from_loader(modname, loader=None, origin=os.path.abspath(path))
    module = importlib.util.module_from_spec(spec)
    module.__file__ = os.path.abspath(path)
    sys.modules[modname] = module
    try:
        exec(code, module.__dict__)
    except BaseException as exc:
        raise TargetImportFailed("running %s raised %s" % (path, type(exc).__name__)) from exc
    return module


def load_module(name):
    """Import a module as `python -m` would: current folder first on sys.path."""
    if not all(part.isidentifier() for part in name.split(".")):
        raise BadTarget("%r is not a module name (use FILE.py:CALLABLE for a file)" % name)
    sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError as exc:
        raise BadTarget("no module named %r" % (exc.name or name))
    except ImportError as exc:
        raise BadTarget("cannot find module %r: %s" % (name, exc))
    except BaseException as exc:  # a parent package raised while imported
        raise TargetImportFailed("importing %s raised %s" % (name, type(exc).__name__)) from exc
    if spec is None:
        raise BadTarget("no module named %r" % name)
    try:
        return importlib.import_module(name)
    except BaseException as exc:
        raise TargetImportFailed("importing %s raised %s" % (name, type(exc).__name__)) from exc


def resolve(text):
    """Return (callable, display name) for a target string."""
    where, attr = split_target(text)
    module = load_file(where) if is_file_target(where) else load_module(where)
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BadTarget("%s has no attribute %r" % (where, part))
        except BaseException as exc:
            raise TargetImportFailed("getting %s raised %s" % (attr, type(exc).__name__)) from exc
    if not callable(obj):
        raise BadTarget("%s:%s is not callable (it is %s)" % (where, attr, type(obj).__name__))
    return obj, "%s:%s" % (where, attr)


# --- generator and coroutine functions --------------------------------------
#
# Calling a generator function or an `async def` runs none of its body: it
# returns a generator or a coroutine.  Checked as they are, they would be
# CLEAN whatever the body does.  as_plain_callable wraps them so that each
# call runs the body: a generator to exhaustion, a coroutine to completion in
# an event loop kept for the whole check (made at the first call, in the
# thread that calls), an async generator to exhaustion in that loop.

_exhaust = collections.deque(maxlen=0).extend     # consumes an iterator in C, keeps nothing

NOTES = {
    "generator": "a generator function: each call runs the generator it returns to exhaustion",
    "coroutine": "a coroutine function: each call runs the coroutine to completion in an "
                 "event loop kept for the whole check",
    "async generator": "an async generator function: each call runs it to exhaustion in an "
                       "event loop kept for the whole check",
}


def function_kind(func):
    """"generator", "coroutine", "async generator", or None for any other
    callable.  Sees through functools.partial, bound methods and the
    __call__ of instances; Cython marks its coroutine functions for asyncio."""
    candidates = [func]
    plain = (types.FunctionType, types.MethodType, types.BuiltinFunctionType,
             functools.partial, type)
    if not isinstance(func, plain):
        call = getattr(type(func), "__call__", None)
        if call is not None:
            candidates.append(call)
    for obj in candidates:
        if inspect.isasyncgenfunction(obj):
            return "async generator"
        if inspect.iscoroutinefunction(obj) or _asyncio_marked(obj):
            return "coroutine"
        if inspect.isgeneratorfunction(obj):
            return "generator"
    return None


def _asyncio_marked(obj):
    coroutines = sys.modules.get("asyncio.coroutines")
    mark = getattr(coroutines, "_is_coroutine", None)
    try:
        return mark is not None and getattr(obj, "_is_coroutine", None) is mark
    except Exception:
        return False


def as_plain_callable(func):
    """(callable, note): a callable whose every call runs the body of `func`,
    and a sentence for the report saying how (None when `func` is returned
    as it is).  The wrapper keeps func's __module__, __name__ and __qualname__;
    a coroutine's wrapper has close() for its event loop (also closed when the
    wrapper is collected).
    Calling a coroutine function's wrapper from inside a running event loop
    raises RuntimeError (a loop cannot be run from inside another)."""
    kind = function_kind(func)
    if kind is None:
        return func, None
    if kind == "generator":
        def drive(*args, **kwargs):
            _exhaust(func(*args, **kwargs))
    else:
        loop = _EventLoop()
        if kind == "coroutine":
            def drive(*args, **kwargs):
                return loop.run(func(*args, **kwargs))
        else:
            def drive(*args, **kwargs):
                return loop.run(_drain(func(*args, **kwargs)))
    functools.update_wrapper(drive, func)
    if kind != "generator":
        drive.close = loop.close                # the loop ends with the check ...
        weakref.finalize(drive, loop.close)     # ... or with the wrapper
    return drive, NOTES[kind]


async def _drain(agen):
    async for _ in agen:
        pass


class _EventLoop:
    """One asyncio event loop for the calls of one check."""

    def __init__(self):
        self.loop = None

    def run(self, coro):
        if self.loop is None:
            import asyncio
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                coro.close()
                raise RuntimeError("refhound cannot run a coroutine function from inside a "
                                   "running event loop: check it from synchronous code")
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(coro)

    def close(self):
        if self.loop is not None and not self.loop.is_closed():
            self.loop.close()
        self.loop = None


def unrun_result(value):
    """A sentence when a call returned a generator, coroutine or async
    generator it never started (a wrapper around one that as_plain_callable
    could not see through), else None.  For the checker's first call."""
    if inspect.iscoroutine(value) or inspect.isgenerator(value) or inspect.isasyncgen(value):
        kind = type(value).__name__
        if inspect.iscoroutine(value):
            value.close()       # no "never awaited" warning
        return ("the target returned a %s without running it, so its body never ran; "
                "check a function that runs it" % kind)
    return None
