"""refhound: find memory leaks, reference leaks and refcount errors in CPython
C extensions, on the stock interpreter.

    >>> import refhound
    >>> result = refhound.check(func, arg)
    >>> bool(result), result.verdict, result.per_call["refs"]
"""
from .api import Checker, TargetFailed, check, sanitize
from ._include import get_include  # noqa: F401  (the C probes header: -I directory)
from ._result import Result
from ._loop import loop  # noqa: F401  (check a loop body: for x in loop(data))
from .options import OptionError, Options

__version__ = "0.1.0"
__all__ = ["check", "Checker", "Options", "OptionError", "Result", "TargetFailed",
           "get_include", "loop", "sanitize", "__version__"]
