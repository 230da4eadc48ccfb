"""Leaked cycles the garbage collector cannot see, and the type to blame.

An object that points to itself (or to a partner that points back) is freed
only by the cyclic GC, and the GC sees a reference only if the type has
Py_TPFLAGS_HAVE_GC and its tp_traverse visits that reference.  Given one
leaked object, this module reads the object's own memory for pointers to
live objects (refhound._core.object_at vouches for each address, so no
unknown memory is read), compares them with what tp_traverse reports
(gc.get_referents), and when a cycle hides from the GC names the type's
definition: the `.tp_flags` line (no HAVE_GC) or the `.tp_traverse` line
(a traverse that misses the reference) of its static PyTypeObject.
"""
import ctypes
import gc
import os
import re
import struct

from . import _core

HAVE_GC = 1 << 14
WORD = struct.calcsize("P")


def pointers_in(obj):
    """Live objects whose address is stored in obj's own body."""
    size = type(obj).__basicsize__
    raw = ctypes.string_at(id(obj), size)
    header = 2 * WORD            # ob_refcnt, ob_type
    found = []
    for off in range(header, size - WORD + 1, WORD):
        (word,) = struct.unpack_from("P", raw, off)
        if word == 0 or word % WORD:
            continue
        target = _core.object_at(word)
        if target is not None:
            found.append((off, target))
    return found


def hidden_cycle(obj):
    """(reason, slot) when obj is in a cycle the GC cannot see, else None.
    slot is "tp_flags" or "tp_traverse"."""
    tp = type(obj)
    held = pointers_in(obj)
    cyclic = [(off, t) for off, t in held
              if t is obj or any(u is obj for _, u in pointers_in(t))]
    if not cyclic:
        return None
    off, target = cyclic[0]
    what = "itself" if target is obj else "a %s that points back" % type(target).__name__
    if not tp.__flags__ & HAVE_GC:
        return ("%s holds a reference to %s (offset %d) but its type lacks "
                "Py_TPFLAGS_HAVE_GC: the cycle is invisible to the garbage collector"
                % (tp.__name__, what, off), "tp_flags")
    visited = gc.get_referents(obj)
    if not any(v is target for v in visited):
        return ("%s holds a reference to %s (offset %d) that its tp_traverse does not "
                "visit: the garbage collector cannot break the cycle"
                % (tp.__name__, what, off), "tp_traverse")
    return None


def type_definition_line(tp, source_file, slot):
    """Line of `.slot` in the static PyTypeObject of tp in source_file."""
    frames = _core.symbolize(id(tp), False)
    symbol = frames[0].get("function") if frames else None
    if not symbol or not source_file or not os.path.exists(source_file):
        return None, symbol
    with open(source_file, errors="replace") as f:
        lines = f.read().splitlines()
    start = None
    decl = re.compile(r"\bPyTypeObject\s+%s\s*=" % re.escape(symbol))
    for i, text in enumerate(lines):
        if decl.search(text):
            start = i
            break
    if start is None:
        return None, symbol
    field = re.compile(r"\.%s\s*=" % slot)
    for i in range(start, len(lines)):
        if field.search(lines[i]):
            return i + 1, symbol
        if lines[i].strip().startswith("};"):
            return start + 1, symbol      # the slot is not set at all
    return start + 1, symbol


def diagnose(site, sample):
    """A site naming the type definition when `sample` (a leaked object of
    `site`) is caught in a cycle the GC cannot see; else None."""
    if sample is None:
        return None
    found = hidden_cycle(sample)
    if found is None:
        return None
    reason, slot = found
    tp = type(sample)
    line, symbol = type_definition_line(tp, site.get("file"), slot)
    return {
        "function": None,
        "type_symbol": symbol,
        "file": site.get("file") if line else None,
        "line": line,
        "module": site.get("module"),
        "python": site.get("python", []),
        "blocks_per_call": site.get("blocks_per_call"),
        "bytes_per_call": site.get("bytes_per_call"),
        "root_blocks_per_call": site.get("root_blocks_per_call"),
        "reason": reason,
        "culprit": {"file": site.get("file") if line else None, "line": line,
                    "function": None, "module": site.get("module"), "reason": reason,
                    "symbol": symbol},
        "kind": "gc-blind-cycle",
        "allocated_at": "%s:%s in %s()" % (site.get("file"), site.get("line"),
                                          site.get("function")),
    }
