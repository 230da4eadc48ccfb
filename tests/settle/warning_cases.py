"""The warnings registry: ``warnings.warn`` records each (message, category,
line) it has shown in the calling module's ``__warningregistry__`` so that
the "default" action shows it once.  A bounded set of messages fills it; a
message that differs on every call is a classic real leak.

Use as ``refhound check tests/settle/warning_cases.py:warnings_registry``.
(The ``warn`` call sits on an early line of this file on purpose: the key
holds the line number, a small int, so the twin's figures stay those below.)
"""
import itertools
import warnings

from corpus import leaks, settles


def _warn(text):
    warnings.showwarning = _quiet
    warnings.warn(text, UserWarning)


def _quiet(message, category, filename, lineno, file=None, line=None):
    """Show nothing (the default action would print every first warning)."""


_N_MESSAGES = 40
_warn_turn = itertools.count(1000)


@settles(after=_N_MESSAGES)
def warnings_registry():
    """40 distinct messages in turn, under the default action: each is
    recorded once in ``__warningregistry__``, then found there."""
    _warn("retrying request %d" % (next(_warn_turn) % _N_MESSAGES))


@leaks(refs=5, objects=2, blocks=2, versions={"3.12": {"refs": 2}, "3.13": {"refs": 2}})
def warnings_registry_leak():
    """A message that differs on every call (it holds a request number):
    per call the registry keeps a key tuple (the message str, the category,
    the line number) and ``True``: two new objects (the tuple and the str);
    references to the category, the line number and ``True`` on 3.11,
    where they are mortal (immortal from 3.12)."""
    _warn("retrying request %d" % next(_warn_turn))


PAIRS = [(warnings_registry, warnings_registry_leak)]
