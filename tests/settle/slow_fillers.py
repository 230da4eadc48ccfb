"""Slow fillers: caches that keep growing for 25,000 to 100,000 calls before
they settle.  Each call also does a few microseconds of work (a request
handler that memoises one lookup), so a check calibrated to a few
milliseconds per iteration makes about a thousand calls an iteration and
must wait dozens of iterations before the growth stops.

Use as ``refhound check tests/settle/slow_fillers.py:lru_slow``.
"""
import collections
import functools
import itertools
import sys

from corpus import leaks, settles


def _work(n):
    """A few microseconds of work that leaves nothing behind."""
    return sum(range(n % 13, 250))


# -- lru_slow: lru_cache(maxsize=50_000), keys over 60_000 ---------------------

def _price(n):
    return _work(n) * 1000 + n


_price_lru = functools.lru_cache(maxsize=50_000)(_price)
_price_unbounded = functools.lru_cache(maxsize=None)(_price)
_price_turn = itertools.count()


@settles(after=50_000)
def lru_slow():
    """``lru_cache(maxsize=50_000)`` with keys cycling over 60,000: it fills
    for 50,000 calls, then every call evicts one entry as it stores one."""
    _price_lru(next(_price_turn) % 60_000 + 1000)


@leaks(refs=2, objects=2, blocks=2)
def lru_slow_leak():
    """``maxsize=None`` and keys that never repeat: the key and the result,
    two new ints per call."""
    _price_unbounded(next(_price_turn) + 1000)


# -- memo_slow: a dict memo over 80,000 keys --------------------------------------

_memo = {}
_memo_leak = {}
_memo_turn = itertools.count()


def _label(memo, key):
    _work(key)
    label = memo.get(key)
    if label is None:
        label = memo[key] = "L%x" % key
    return label


@settles(after=80_000)
def memo_slow():
    """A dict memo of labels for 80,000 keys in turn: it fills for 80,000
    calls (a key int and a label str each, the table resized on the way),
    then only hits."""
    _label(_memo, next(_memo_turn) % 80_000 + 1000)


@leaks(refs=2, objects=2, blocks=2)
def memo_slow_leak():
    """Keys that never repeat: a key int and a label str per call."""
    _label(_memo_leak, next(_memo_turn) + 1000)


# -- deque_slow: deque(maxlen=30_000) of tuples -----------------------------------

_events = collections.deque(maxlen=30_000)
_events_leak = collections.deque()
_event_turn = itertools.count(1000)


def _record(events, n):
    _work(n)
    events.append((n, n + 1))


@settles(after=30_000)
def deque_slow():
    """The last 30,000 events (a tuple of two new ints each) in a
    ``deque(maxlen=30_000)``: it fills for 30,000 calls, then each append
    frees the oldest event."""
    _record(_events, next(_event_turn))


@leaks(refs=3, objects=3, blocks=3 + 1 / 64, tolerance={"blocks": 0.02})
def deque_slow_leak():
    """The same deque without ``maxlen``: per call a tuple and two ints, and
    a 64-slot deque block every 64 calls."""
    _record(_events_leak, next(_event_turn))


# -- intern_slow: 25,000 interned names in a symbol table ---------------------------

_N_SYMBOLS = 25_000
_symbols = [None] * _N_SYMBOLS
_symbols_leak = []
_symbol_turn = itertools.count()


def _symbol(n):
    _work(n)
    return sys.intern("sym_%d" % n)


@settles(after=_N_SYMBOLS)
def intern_slow():
    """``sys.intern`` of 25,000 names built fresh every call, the canonical
    copies kept in a table of 25,000 slots: it fills for 25,000 calls
    (the interpreter's interned table grows with it), then each call frees
    its fresh string."""
    i = next(_symbol_turn) % _N_SYMBOLS
    _symbols[i] = _symbol(i)


@leaks(refs=1, objects=1, blocks=1, versions={"3.12": {"refs": 0}}, debug_total=3)
def intern_slow_leak():
    """Names that never repeat, all kept: one interned str per call (see
    ``basics.interning_leak`` for the references)."""
    _symbols_leak.append(_symbol(next(_symbol_turn) + _N_SYMBOLS))


# -- cache_slow: functools.cache over 100,000 keys -----------------------------------

@functools.cache
def _route(n):
    return _work(n) + n


@functools.cache
def _route_unbounded(n):
    return _work(n) + n


_route_turn = itertools.count()


@settles(after=100_000)
def cache_slow():
    """``functools.cache`` over 100,000 keys in turn: it fills for 100,000
    calls, then only hits."""
    n = next(_route_turn)
    _work(n)
    _route(n % 100_000 + 1000)


@leaks(refs=2, objects=2, blocks=2)
def cache_slow_leak():
    """Keys that never repeat: the key and the result, two new ints per call."""
    n = next(_route_turn)
    _work(n)
    _route_unbounded(n + 1000)


PAIRS = [
    (lru_slow, lru_slow_leak),
    (memo_slow, memo_slow_leak),
    (deque_slow, deque_slow_leak),
    (intern_slow, intern_slow_leak),
    (cache_slow, cache_slow_leak),
]
