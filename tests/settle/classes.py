"""Classes made at run time and the caches keyed by classes: enum, dataclass
and namedtuple classes created and dropped (or kept), parameterized
generics (typing's caches), an ABC's subclass cache, ctypes' pointer-type
cache.

A class is a cycle (its ``__mro__`` holds it, its methods point back at
its dict), so a dropped class is freed by the cyclic collector, not at once.

Use as ``refhound check tests/settle/classes.py:enum_create``.
"""
import abc
import collections
import ctypes
import dataclasses
import enum
import itertools
import typing

from corpus import leaks, settles

_kept = []


# -- enum_create: an Enum class per call --------------------------------------

@settles(after=1)
def enum_create():
    """``Enum("Color", "RED GREEN BLUE")`` (the functional API) every call,
    the class dropped: the collector frees it with its three members."""
    enum.Enum("Color", "RED GREEN BLUE")


@leaks(refs=78, objects=16, blocks=24, debug_total=82,
       versions={"3.12": {"refs": 48, "objects": 18, "blocks": 27},
                 "3.13": {"refs": 51, "objects": 19, "blocks": 25}})
def enum_create_leak():
    """The same, the class kept: every call's whole class stays, with its
    three members, their dicts and the maps from names and values to
    members (figures measured: see the README)."""
    _kept.append(enum.Enum("Color", "RED GREEN BLUE"))


# -- dataclass_create: a dataclass per call -----------------------------------

_FIELDS = [("x", int), ("y", int, 0)]


@settles(after=1)
def dataclass_create():
    """``dataclasses.make_dataclass`` every call (it compiles ``__init__``,
    ``__repr__`` and ``__eq__`` from source), the class dropped."""
    dataclasses.make_dataclass("Point", _FIELDS)


@leaks(refs=180, objects=54, blocks=60,
       versions={"3.12": {"refs": 85, "objects": 55, "blocks": 62},
                 "3.13": {"refs": 89, "objects": 52, "blocks": 59}})
def dataclass_create_leak():
    """The same, the class kept, with its generated methods and their code."""
    _kept.append(dataclasses.make_dataclass("Point", _FIELDS))


# -- namedtuple_create: a namedtuple class per call ----------------------------

@settles(after=1)
def namedtuple_create():
    """``collections.namedtuple("Row", "a b c")`` every call (its ``__new__``
    is made by ``eval``; the names are interned), the class dropped."""
    collections.namedtuple("Row", "a b c")


@leaks(refs=150, objects=55, blocks=59,
       versions={"3.12": {"refs": 87, "objects": 55, "blocks": 59},
                 "3.13": {"refs": 92, "objects": 55, "blocks": 59}})
def namedtuple_create_leak():
    """The same, the class kept."""
    _kept.append(collections.namedtuple("Row", "a b c"))


# -- typing_generics: parameterized generics ------------------------------------

_ARGS = [int, str, bytes, float, complex, bool, list, tuple, dict, set, frozenset,
         bytearray, memoryview, range, slice, type]
_generic_turn = itertools.count()


@settles(after=len(_ARGS))
def typing_generics():
    """``typing.Dict[str, T]`` for 16 types in turn: typing's own caches (an
    ``lru_cache`` of 128 per generic) keep each alias, then hit."""
    typing.Dict[str, _ARGS[next(_generic_turn) % len(_ARGS)]]


@leaks(refs=1, objects=0, blocks=0)
def typing_generics_leak():
    """The same, the alias kept: the cache hands back the same 16 aliases,
    so every call adds one reference to an existing object (the list's item
    array is one block, reallocated as it grows)."""
    _kept.append(typing.Dict[str, _ARGS[next(_generic_turn) % len(_ARGS)]])


# -- abc_cache: an ABC's subclass cache -----------------------------------------

class Shape(abc.ABC):
    """An ABC that recognises any class with an ``area`` (not a standard
    library ABC, so nothing clears its caches but the classes' deaths)."""

    @classmethod
    def __subclasshook__(cls, other):
        return True if hasattr(other, "area") else NotImplemented


def _area(self):
    return 1.0


_shape_pool = []
_shape_pool_leak = []
_shape_turn = itertools.count()


def _check_shape(pool, limit, n):
    if limit is None or len(pool) < limit:
        pool.append(type("Square", (), {"area": _area}))
        cls = pool[-1]
    else:
        cls = pool[n % limit]
    return issubclass(cls, Shape)


@settles(after=200)
def abc_cache():
    """``issubclass(C, Shape)`` over a pool of 200 classes made on demand:
    each class is made once, and ``Shape``'s cache keeps a weak reference
    to it after its first check."""
    _check_shape(_shape_pool, 200, next(_shape_turn))


@leaks(refs=29, objects=10, blocks=12, versions={"3.12": {"refs": 16}, "3.13": {"refs": 19}})
def abc_cache_leak():
    """The pool without its limit: a new class per call, kept by the pool,
    and a weak reference to it in ``Shape``'s cache."""
    _check_shape(_shape_pool_leak, None, next(_shape_turn))


# -- ctypes_pointer: ctypes' pointer-type cache ----------------------------------

_record_pool = []
_record_pool_leak = []
_record_turn = itertools.count()


def _pointer_type(pool, limit, n):
    if limit is None or len(pool) < limit:
        pool.append(type("Record", (ctypes.Structure,), {"_fields_": [("x", ctypes.c_int)]}))
        cls = pool[-1]
    else:
        cls = pool[n % limit]
    return ctypes.POINTER(cls)


@settles(after=50)
def ctypes_pointer():
    """``ctypes.POINTER(C)`` over a pool of 50 structure classes made on
    demand: ctypes keeps each pointer type for ever in a dict keyed by the
    class, so it fills over 50 calls, then hits."""
    _pointer_type(_record_pool, 50, next(_record_turn))


@leaks(refs=64, objects=21, blocks=29, versions={"3.12": {"refs": 36}, "3.13": {"refs": 50}})
def ctypes_pointer_leak():
    """The pool without its limit: a new structure class per call, and its
    pointer type in ctypes' cache (a classic leak of code that makes
    ctypes types on the fly)."""
    _pointer_type(_record_pool_leak, None, next(_record_turn))


PAIRS = [
    (enum_create, enum_create_leak),
    (dataclass_create, dataclass_create_leak),
    (namedtuple_create, namedtuple_create_leak),
    (typing_generics, typing_generics_leak),
    (abc_cache, abc_cache_leak),
    (ctypes_pointer, ctypes_pointer_leak),
]
