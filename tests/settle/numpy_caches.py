"""numpy's internal caches (skipped where numpy is not installed): ufunc
calls over a bounded set of dtype pairs (dispatch and promotion), structured
dtypes made from strings, ``np.finfo``'s cache.

Use as ``refhound check tests/settle/numpy_caches.py:numpy_ufunc_dispatch``.
"""
import itertools

from corpus import leaks, settles

try:
    import numpy as np
except ImportError:         # the cases are skipped through `requires`
    np = None

_NEEDS_NUMPY = ("import numpy", "numpy is not installed for this interpreter")

if np is not None:
    _DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
               np.uint32, np.uint64, np.float16, np.float32, np.float64, np.longdouble,
               np.complex64, np.complex128]
    _ARRAYS = [np.ones(3, dtype=d) for d in _DTYPES]
    _UFUNCS = [np.add, np.multiply, np.maximum, np.true_divide]
_N_COMBOS = 4 * 15 * 15
_ufunc_turn = itertools.count()
_results = []


def _apply(i):
    k = len(_ARRAYS)
    return _UFUNCS[(i // (k * k)) % len(_UFUNCS)](_ARRAYS[i % k], _ARRAYS[(i // k) % k])


@settles(after=1, requires=_NEEDS_NUMPY)
def numpy_ufunc_dispatch():
    """Four ufuncs over every pair of 15 dtypes in turn (900 combinations),
    the 3-element results dropped.  Each ufunc caches the loop it resolved
    per dtype signature, in hash tables sized at import: nothing measurable
    survives even the first calls (numpy 2.4)."""
    _apply(next(_ufunc_turn))


@leaks(refs=3, objects=1, blocks=2, requires=_NEEDS_NUMPY, versions={"3.13": {"refs": 2}})
def numpy_ufunc_dispatch_leak():
    """The same calls, every result array kept: per call the array (one
    object, a block for its shape and strides besides; its 3-element data
    comes from numpy's own allocator, not a PEP 445 domain), the list's
    reference to it and its references to its dtype (numpy 2.4)."""
    _results.append(_apply(next(_ufunc_turn)))


_SPECS = ["i%d,f8,S%d" % (2 ** (i % 4), 1 + i % 20) for i in range(80)]
_spec_turn = itertools.count()
_dtypes_kept = []


@settles(after=len(_SPECS), requires=_NEEDS_NUMPY)
def numpy_dtype_strings():
    """``np.dtype("i2,f8,S7")``-style structured dtypes from 80 strings in
    turn (parsed by numpy's Python helpers), each dropped."""
    np.dtype(_SPECS[next(_spec_turn) % len(_SPECS)])


@leaks(refs=20, objects=10, blocks=11, requires=_NEEDS_NUMPY,
       versions={"3.12": {"refs": 17}, "3.13": {"refs": 13}})
def numpy_dtype_strings_leak():
    """The same, every dtype kept (with its fields dict, names and field
    descriptors): 10 objects, 20 references per call (numpy 2.4)."""
    _dtypes_kept.append(np.dtype(_SPECS[next(_spec_turn) % len(_SPECS)]))


_FLOAT_TYPES = [np.float16, np.float32, np.float64, np.longdouble, np.complex64,
                np.complex128] if np is not None else []
_finfo_turn = itertools.count()
_finfos_kept = []


@settles(after=6, requires=_NEEDS_NUMPY)
def numpy_finfo():
    """``np.finfo`` of six float and complex types in turn: the first call
    for each computes the machine limits (arrays, scalars, strings) and
    keeps them in ``finfo``'s own cache, then every call hits."""
    np.finfo(_FLOAT_TYPES[next(_finfo_turn) % len(_FLOAT_TYPES)])


@leaks(refs=1, objects=0, blocks=0, requires=_NEEDS_NUMPY)
def numpy_finfo_leak():
    """The same, every result kept: the cache hands back the same six
    objects, so each call adds one reference to an existing object (the
    list's item array is one block, reallocated as it grows)."""
    _finfos_kept.append(np.finfo(_FLOAT_TYPES[next(_finfo_turn) % len(_FLOAT_TYPES)]))


PAIRS = [
    (numpy_ufunc_dispatch, numpy_ufunc_dispatch_leak),
    (numpy_dtype_strings, numpy_dtype_strings_leak),
    (numpy_finfo, numpy_finfo_leak),
]
