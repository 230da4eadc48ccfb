"""The first settling callables (an lru_cache filling, re's cache, interning,
a lazy import, a dict of fixed size, a ring of objects), each with its twin.

Use as ``refhound check tests/settle/basics.py:lru_cache_fill``.
"""
import functools
import itertools
import re
import sys

from corpus import leaks, settles


# -- lru_cache_fill: a new key every call, evicted past maxsize --------------

@functools.lru_cache(maxsize=128)
def _cube(n):
    return n * n * n


@functools.lru_cache(maxsize=None)
def _cube_unbounded(n):
    return n * n * n


_lru_keys = itertools.count(1000)


@settles(after=128)
def lru_cache_fill():
    """``lru_cache(maxsize=128)`` called with a new key every time: the first
    128 calls fill it (a link, the key and the result per entry), then each
    new entry evicts the oldest."""
    _cube(next(_lru_keys))


@leaks(refs=2, objects=2, blocks=2)
def lru_cache_fill_leak():
    """The same with ``maxsize=None``: every entry stays.  The key of a
    one-int call is the int itself; per call the cache's dict keeps the key
    and the result (two new ints, one reference each); its table is one
    block that is reallocated as it grows."""
    _cube_unbounded(next(_lru_keys))


# -- re_cache: re.match over a rotating set of 20 patterns -------------------

_PATTERNS = [r"^item-%d-(\w+)$" % i for i in range(20)]
_SUBJECT = "item-7-seven"
_re_turn = itertools.count()
_matched = []


@settles(after=20)
def re_cache():
    """``re.match`` with a rotating set of 20 pattern strings: each is
    compiled once into re's cache (512 entries), then only hits."""
    re.match(_PATTERNS[next(_re_turn) % len(_PATTERNS)], _SUBJECT)


@leaks(refs=1, objects=1, blocks=1)
def re_cache_leak():
    """The same match, its group kept: one new str per call ("seven"; the
    match object and the compiled pattern are not kept)."""
    m = re.match(_PATTERNS[7], _SUBJECT)
    _matched.append(m.group(1))


# -- interning: sys.intern of a rotating set of 64 names --------------------

_N_NAMES = 64
_name_slots = [None] * _N_NAMES
_interned = []
_intern_turn = itertools.count()


@settles(after=_N_NAMES)
def interning():
    """``sys.intern`` a rotating set of 64 strings built fresh every call,
    the canonical copies kept in a 64-slot table (as a symbol table would):
    once all 64 are interned, the fresh string is freed every call."""
    i = next(_intern_turn) % _N_NAMES
    _name_slots[i] = sys.intern("corpus_symbol_%d" % i)


@leaks(refs=1, objects=1, blocks=1, versions={"3.12": {"refs": 0}}, debug_total=3)
def interning_leak():
    """A new name every call, kept: one str per call.  The interned table's
    own two references are not counted in the refcount (3.11, 3.13), and on
    3.12 ``sys.intern`` makes the string immortal, so its references are
    not counted at all; the table grows by reallocating one block."""
    n = next(_intern_turn)
    _interned.append(sys.intern("corpus_symbol_%d" % n))


# -- lazy_import: a module imported on the first call ------------------------

_hsv = []


@settles(after=1)
def lazy_import():
    """Import ``colorsys`` on the first call (nothing imports it at start-up),
    then only compute and drop a tuple."""
    import colorsys
    colorsys.rgb_to_hsv(0.2, 0.4, 0.6)


@leaks(refs=4, objects=3, blocks=3)
def lazy_import_leak():
    """The same, the result kept: a 3-tuple holding two new floats and
    ``v``, which is ``max(r, g, b)``, the constant 0.6 itself (a reference
    to an existing object, no new one)."""
    import colorsys
    _hsv.append(colorsys.rgb_to_hsv(0.2, 0.4, 0.6))


# -- fixed_dict: a dict written at n % 1000 ----------------------------------

_TABLE = {}
_TABLE_LEAK = {}
_table_turn = itertools.count(1000)


@settles(after=1000)
def fixed_dict():
    """A fresh int stored under key ``n % 1000``: the dict grows (and
    resizes) over the first 1000 calls, then each call replaces a value."""
    n = next(_table_turn)
    _TABLE[n % 1000] = n * 1000003


@leaks(refs=2, objects=2, blocks=2)
def fixed_dict_leak():
    """The key is ``n`` itself: a new key and a new value every call (two
    ints, one reference each from the dict)."""
    n = next(_table_turn)
    _TABLE_LEAK[n] = n * 1000003


# -- object_ring / python_leak ------------------------------------------------

_RING = [None] * 1000
_LEAKED = []
_ring_turn = itertools.count()


@settles(after=1000)
def object_ring():
    """A new ``object()`` stored in a ring of 1000 slots: the ring fills over
    1000 calls, then each call frees the object it replaces."""
    _RING[next(_ring_turn) % 1000] = object()


@leaks(refs=1, objects=1, blocks=1)
def python_leak():
    """A new ``object()`` appended to a list every call: one object (one
    block, one reference) per call, never released.  The list's item array
    is one block, reallocated as it grows."""
    _LEAKED.append(object())


PAIRS = [
    (lru_cache_fill, lru_cache_fill_leak),
    (re_cache, re_cache_leak),
    (interning, interning_leak),
    (lazy_import, lazy_import_leak),
    (fixed_dict, fixed_dict_leak),
    (object_ring, python_leak),
]
