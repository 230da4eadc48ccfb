"""Pure-Python callables that allocate during their first calls and then stop.

A correct leak checker must judge every callable in ``SETTLING`` clean: each
one keeps memory alive while a cache, table or import fills up, then reaches
a steady state where a call leaves nothing behind.  ``python_leak`` is the
contrast case that really leaks (one object per call, forever).

Each callable takes no arguments and carries two attributes used by tests:
``settles_after`` (the number of calls after which nothing more survives;
``None`` for the leak) and ``leaks_per_call`` (the true steady-state figures
per call, all zero for the settling ones).

Use as ``refhound check tests/zoo/settle_cases.py:lru_cache_fill``.
State is per process: a callable settles once per interpreter.
"""

import functools
import itertools
import re
import sys

__all__ = ["lru_cache_fill", "re_cache", "interning", "lazy_import",
           "fixed_dict", "python_leak", "SETTLING", "LEAKING"]

_CLEAN = {"refs": 0, "objects": 0, "blocks": 0}


def _meta(settles_after, leaks_per_call=_CLEAN):
    def deco(func):
        func.settles_after = settles_after
        func.leaks_per_call = dict(leaks_per_call)
        return func
    return deco


# -- lru_cache_fill ---------------------------------------------------------

@functools.lru_cache(maxsize=128)
def _cube(n):
    return n * n * n


_lru_keys = itertools.count(1000)


@_meta(settles_after=128)
def lru_cache_fill():
    """Call an ``lru_cache(maxsize=128)`` function with a new key every time.

    The first 128 calls fill the cache (a link and a result per key); from
    then on each new entry evicts the oldest one, so the live size is flat.
    """
    _cube(next(_lru_keys))


# -- re_cache ---------------------------------------------------------------

_PATTERNS = [r"^item-%d-(\w+)$" % i for i in range(20)]
_SUBJECT = "item-7-seven"
_re_turn = itertools.count()


@_meta(settles_after=20)
def re_cache():
    """``re.match`` with a rotating set of 20 pattern strings.

    Each pattern is compiled once and kept in the ``re`` module's cache
    (which holds up to 512 entries on 3.11), so allocation stops after the
    first 20 calls; match objects are dropped every call.
    """
    re.match(_PATTERNS[next(_re_turn) % len(_PATTERNS)], _SUBJECT)


# -- interning --------------------------------------------------------------

_N_NAMES = 64
_name_slots = [None] * _N_NAMES
_intern_turn = itertools.count()


@_meta(settles_after=_N_NAMES)
def interning():
    """``sys.intern`` a rotating set of 64 strings built fresh every call.

    Interned strings are mortal on 3.11 (the interned table does not own
    them), so a fixed table of 64 slots keeps the canonical copies alive, as
    a symbol table would.  Once all 64 are interned, ``sys.intern`` returns
    the existing copy and the fresh string is freed: nothing survives a call.
    """
    i = next(_intern_turn) % _N_NAMES
    _name_slots[i] = sys.intern("zoo_symbol_%d" % i)


# -- lazy_import ------------------------------------------------------------

@_meta(settles_after=1)
def lazy_import():
    """Import ``colorsys`` on the first call (a stdlib module that nothing
    imports at start-up), then just use it.

    The first call allocates the module, its code and functions and the
    import system's bookkeeping; later calls only compute and drop a tuple.
    """
    import colorsys
    colorsys.rgb_to_hsv(0.2, 0.4, 0.6)


# -- fixed_dict -------------------------------------------------------------

_TABLE = {}
_table_turn = itertools.count()


@_meta(settles_after=1000)
def fixed_dict():
    """Store a fresh int under key ``n % 1000`` in a module-level dict.

    The dict grows (and resizes) during the first 1000 calls; after that
    every call replaces a value, freeing the old int: the live size is flat.
    This is the slowest to settle and the easiest to mistake for a leak.
    """
    n = next(_table_turn)
    _TABLE[n % 1000] = n * 1000003


# -- python_leak (the real leak, for contrast) -------------------------------

_LEAKED = []


@_meta(settles_after=None,
       leaks_per_call={"refs": 1, "objects": 1, "blocks": 1})
def python_leak():
    """Append a new ``object()`` to a module-level list on every call.

    A genuine leak: one object (one block, one reference) per call that is
    never released.  The list's item array grows too, but by reallocating
    one block, so it adds no blocks per call (only bytes, amortised).
    """
    _LEAKED.append(object())


SETTLING = [lru_cache_fill, re_cache, interning, lazy_import, fixed_dict]
LEAKING = [python_leak]
