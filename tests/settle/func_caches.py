"""Memoisation: ``functools.lru_cache`` with eviction, ``functools.cache``
over a bounded key set, and a hand-written cache emptied every 51 entries.

Use as ``refhound check tests/settle/func_caches.py:lru_evict``.
"""
import functools
import itertools

from corpus import leaks, settles


# -- lru_evict: arguments cycling over four times maxsize --------------------

_LRU_SIZE = 256


def _score(n):
    return (n * 2654435761) % 1000003 + 1000


_score_lru = functools.lru_cache(maxsize=_LRU_SIZE)(_score)
_score_unbounded = functools.lru_cache(maxsize=None)(_score)
_lru_turn = itertools.count()


@settles(after=_LRU_SIZE)
def lru_evict():
    """``lru_cache(maxsize=256)`` called with arguments cycling over 1024
    values: every call misses (an LRU cycled over more keys than it holds
    always evicts the key needed next), so from call 256 on each call frees
    the oldest entry as it stores a new one."""
    _score_lru(next(_lru_turn) % (4 * _LRU_SIZE) + 1000)


@leaks(refs=2, objects=2, blocks=2)
def lru_evict_leak():
    """The same function with ``maxsize=None`` and arguments that never
    repeat: the cache's dict keeps the key (the int argument itself) and the
    result, two new ints per call."""
    _score_unbounded(next(_lru_turn) + 1000)


# -- cache_fill: functools.cache over a bounded key set -----------------------

_N_SIZES = 2000


@functools.cache
def _area(width, height):
    return width * height * 1000


@functools.cache
def _area_unbounded(width, height):
    return width * height * 1000


_area_turn = itertools.count()


@settles(after=_N_SIZES)
def cache_fill():
    """``functools.cache`` (no eviction) over 2000 distinct (width, height)
    arguments in turn: the cache fills over 2000 calls, then only hits."""
    _area(next(_area_turn) % _N_SIZES + 1000, 3)


@leaks(refs=4, objects=3, blocks=3, versions={"3.12": {"refs": 3}, "3.13": {"refs": 3}})
def cache_fill_leak():
    """Widths that never repeat: per call the cache keeps its key, the
    call's argument tuple (width, 3), which holds the new width int and the
    small int 3, and the new result int.  The reference to 3 counts on 3.11
    only (small ints are immortal from 3.12)."""
    _area_unbounded(next(_area_turn) + 1000, 3)


# -- hand_cache_51: a cache emptied every 51 entries --------------------------

_cache51 = {}
_cache_leak = {}
_hand_turn = itertools.count(1000)


def _remember(cache, limit, key):
    """A hand-written memo: store, and start over when ``limit`` is reached."""
    value = cache.get(key)
    if value is None:
        value = cache[key] = object()
        if limit is not None and len(cache) >= limit:
            cache.clear()
    return value


@settles(after=51, period=51)
def hand_cache_51():
    """A new key every call into a dict that is emptied when it holds 51:
    the live size runs 1..50, 0, 1..50, 0 (a periodic refill).  Sampled
    every 100 calls it falls by 2 entries a sample (100 = 2 x 51 - 2) for 25
    samples, then jumps back; every 10,000 calls it rises by 4 entries a
    sample for 12 samples, then drops: either way a ramp that turns."""
    _remember(_cache51, 51, next(_hand_turn))


@leaks(refs=2, objects=2, blocks=2)
def hand_cache_51_leak():
    """The same memo with the limit missing: per call the key int and an
    ``object()`` stay (one reference each, from the dict)."""
    _remember(_cache_leak, None, next(_hand_turn))


PAIRS = [
    (lru_evict, lru_evict_leak),
    (cache_fill, cache_fill_leak),
    (hand_cache_51, hand_cache_51_leak),
]
