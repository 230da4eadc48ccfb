"""Resolve a target string, MODULE:CALLABLE or FILE.py:CALLABLE, to a callable.

Errors in what the user typed raise BadTarget (one line, exit status 2);
errors raised by the target's own code while it is imported raise
TargetImportFailed (exit status 3, with the traceback).
"""
import importlib
import importlib.util
import os
import sys


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


def as_plain_callable(func):
    """(callable, note or None): a generator function is driven to
    exhaustion on each call and a coroutine function run to completion in
    an event loop, so that the body really runs; anything else unchanged."""
    import functools
    import inspect
    if inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        def drive(*args, **kwargs):
            for _ in func(*args, **kwargs):
                pass
        return drive, "a generator function: each call was driven to exhaustion"
    if inspect.iscoroutinefunction(func):
        import asyncio

        @functools.wraps(func)
        def run(*args, **kwargs):
            return asyncio.run(func(*args, **kwargs))
        return run, "a coroutine function: each call ran to completion in an event loop"
    return func, None
