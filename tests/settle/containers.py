"""Containers that stay bounded while their contents churn: a dict holding a
sliding window of keys (periodic resizes), a ``deque(maxlen=...)`` of new
dicts, a ``weakref.WeakValueDictionary`` cache whose values live while a
bounded list of recent ones holds them.

Use as ``refhound check tests/settle/containers.py:dict_window``.
"""
import collections
import itertools
import weakref

from corpus import leaks, settles


# -- dict_window: a sliding window of keys ------------------------------------

_WIDTH = 1000
_window = {}
_window_leak = {}
_slide_turn = itertools.count(1000)


def _slide(table, width, n):
    table[n] = n
    if width is not None:
        table.pop(n - width, None)


@settles(after=_WIDTH)
def dict_window():
    """A dict holding the last 1000 keys: one inserted and one deleted per
    call.  Deleted slots stay as dummies until the table runs out of room
    and is rebuilt (a new table block, the old one freed), every few hundred
    calls, for ever; the number of entries stays 1000."""
    _slide(_window, _WIDTH, next(_slide_turn))


@leaks(refs=2, objects=1, blocks=1)
def dict_window_leak():
    """The window without its width: every key stays.  The key is also the
    value, so per call one new int with two references."""
    _slide(_window_leak, None, next(_slide_turn))


# -- deque_maxlen: a bounded deque of new dicts -------------------------------

_recent_dicts = collections.deque(maxlen=500)
_all_dicts = collections.deque()
_deque_turn = itertools.count(1000)


@settles(after=500)
def deque_maxlen():
    """``deque(maxlen=500)`` appended a new one-key dict every call: past 500
    each append drops (and frees) the oldest dict."""
    _recent_dicts.append({"item": next(_deque_turn)})


@leaks(refs=3, objects=2, blocks=3 + 1 / 64, tolerance={"blocks": 0.02},
       versions={"3.12": {"refs": 2}, "3.13": {"refs": 2}}, debug_total=4)
def deque_maxlen_leak():
    """The same deque without ``maxlen``: per call a dict (its object and
    its key table) and a new int, plus a 64-slot deque block every 64
    appends.  The reference to the key "item" (a code constant, interned)
    counts on 3.11 only: from 3.12 such strings are immortal."""
    _all_dicts.append({"item": next(_deque_turn)})


# -- weakvalue_cache: a WeakValueDictionary kept alive by recent use ---------

class _Session:
    __slots__ = ("key", "__weakref__")

    def __init__(self, key):
        self.key = key


_sessions = weakref.WeakValueDictionary()
_sessions_leak = weakref.WeakValueDictionary()
_recent_sessions = collections.deque(maxlen=100)
_all_sessions = collections.deque()
_session_turn = itertools.count(1000)


def _session(cache, recent, key):
    found = cache.get(key)
    if found is None:
        found = cache[key] = _Session(key)
    recent.append(found)


@settles(after=100)
def weakvalue_cache():
    """Sessions looked up by key (1000 keys in turn) in a
    ``WeakValueDictionary``, the last 100 used held by a
    ``deque(maxlen=100)``: a session falls out of the deque, dies, and its
    weak reference's callback removes its entry."""
    _session(_sessions, _recent_sessions, next(_session_turn) % 1000 + 1000)


@leaks(refs=8, objects=3, blocks=3 + 1 / 64, tolerance={"blocks": 0.02})
def weakvalue_cache_leak():
    """New keys and a deque without ``maxlen``: every session stays alive, so
    does its cache entry.  Per call a session (held by the deque; it holds
    its heap type), its key int (held by the session, the dict and the weak
    reference), the ``KeyedRef`` (held by the dict; it holds its heap type
    and its callback), and a deque block every 64 calls."""
    _session(_sessions_leak, _all_sessions, next(_session_turn))


PAIRS = [
    (dict_window, dict_window_leak),
    (deque_maxlen, deque_maxlen_leak),
    (weakvalue_cache, weakvalue_cache_leak),
]
