"""Text processing caches of the standard library: many distinct regular
expressions, a registry of compiled patterns, ``strptime``'s format cache
(emptied every six formats), codec lookups, ``struct``'s format cache
(emptied every 100 formats).

Use as ``refhound check tests/settle/text_caches.py:re_many``.
"""
import codecs
import datetime
import encodings.aliases
import itertools
import re
import struct

from corpus import leaks, settles

_SUBJECT = "k7-abc-12"


# -- re_many: a few hundred distinct regular expressions, cycling -------------

_N_PATTERNS = 300
_PATTERNS = [r"^k%d-(\w+)-(\d+)$" % i for i in range(_N_PATTERNS)]
_re_turn = itertools.count()
_grown = []


@settles(after=_N_PATTERNS)
def re_many():
    """``re.match`` with 300 distinct patterns in turn: each is compiled once
    into re's cache (an LRU dict of 512 entries on 3.11-3.13; 3.12 adds a
    FIFO dict of 256 in front, which these 300 keep churning), then hits."""
    re.match(_PATTERNS[next(_re_turn) % _N_PATTERNS], _SUBJECT)


@leaks(refs=1, objects=1, blocks=1)
def re_many_leak():
    """The same match, the pattern list growing instead of cycling: one
    pattern string kept per call (re's cache itself stays within 512)."""
    _grown.append(r"^k%d-(\w+)-(\d+)$" % next(_re_turn))
    re.match(_grown[-1], _SUBJECT)


# -- regex_registry: compiled patterns kept by the program -------------------

_N_RULES = 400
_registry = {}
_registry_leak = {}
_rule_turn = itertools.count(1000)


def _rule(n):
    return r"(?P<key>r%d)=(?P<value>[a-z]+)(?:;(?P<rest>.*))?" % n


def _lookup(registry, pattern):
    compiled = registry.get(pattern)
    if compiled is None:
        compiled = registry[pattern] = re.compile(pattern)
    return compiled


@settles(after=_N_RULES)
def regex_registry():
    """A program's own registry of compiled patterns (a dict, which
    ``re.purge()`` does not reach), asked for 400 rules in turn: each is
    compiled once and kept."""
    _lookup(_registry, _rule(next(_rule_turn) % _N_RULES)).match("r7=abc")


@leaks(refs=16, objects=7, blocks=8, debug_total=17,
       versions={"3.12": {"refs": 12}, "3.13": {"refs": 12}})
def regex_registry_leak():
    """The same registry asked for a new rule every call: per call the rule
    string (the key; the pattern holds it too), the compiled ``Pattern`` (one
    block with its code; it holds its heap type), the three group names
    (new strings cut from the rule by the parser), the ``groupindex`` dict
    (a block for the dict, one for its table; names to the small ints 1-3)
    and the ``indexgroup`` tuple (None and the three names).  None and the
    small ints are immortal from 3.12."""
    _lookup(_registry_leak, _rule(next(_rule_turn))).match("r7=abc")


# -- strptime_formats: a format cache emptied every six formats --------------

_FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%m.%d.%Y %H:%M", "%Y%m%dT%H%M%S",
            "%d %b %Y", "%b %d, %Y", "%Y-%j", "%H:%M:%S %d-%m-%Y"]
_DATES = [datetime.datetime(2024, 3, 9, 13, 45, 30).strftime(f) for f in _FORMATS]
_date_turn = itertools.count()
_parsed = []


@settles(after=len(_FORMATS), period=6)
def strptime_formats():
    """``datetime.strptime`` with eight formats in turn.  ``_strptime`` keeps
    compiled formats in a dict that it empties when it holds more than five,
    so with eight formats every call compiles one and the dict is emptied
    every sixth call: a sawtooth of period 6 (``re``'s own cache hits)."""
    i = next(_date_turn) % len(_FORMATS)
    datetime.datetime.strptime(_DATES[i], _FORMATS[i])


@leaks(refs=1, objects=1, blocks=1)
def strptime_formats_leak():
    """The same parse, the result kept: one naive ``datetime`` per call."""
    i = next(_date_turn) % len(_FORMATS)
    _parsed.append(datetime.datetime.strptime(_DATES[i], _FORMATS[i]))


# -- codecs_lookup: the codec registry's cache and lazy codec imports --------

_SINGLE_BYTE = ("cp", "iso8859", "mac_", "koi8", "latin", "ascii", "hp_", "ptcp", "tis")
# (lower case only: 3.11's table also holds "csHPRoman8", which lookups,
# normalised to lower case, never find)
_ENCODINGS = sorted(alias for alias, codec in encodings.aliases.aliases.items()
                    if codec.startswith(_SINGLE_BYTE) and alias == alias.lower())[:60]
_codec_turn = itertools.count()


def _no_such_codec(name):
    """A codec search function that knows no codec."""
    return None


@settles(after=len(_ENCODINGS))
def codecs_lookup():
    """``codecs.lookup`` of 60 alias spellings of single-byte codecs in turn:
    the first lookup of each imports the codec's module (its decoding
    table and encoding map) and caches a ``CodecInfo`` under the spelling in
    the interpreter's codec cache and in ``encodings``' own cache."""
    codecs.lookup(_ENCODINGS[next(_codec_turn) % len(_ENCODINGS)])


@leaks(refs=1, objects=0, blocks=0)
def codecs_register():
    """The same lookup after ``codecs.register()`` of the same search
    function, every call: the registry's list of search functions grows by
    one reference to an existing function (its item array is one block,
    reallocated as it grows).  A reference leak that creates no object."""
    codecs.register(_no_such_codec)
    codecs.lookup(_ENCODINGS[next(_codec_turn) % len(_ENCODINGS)])


# -- struct_formats: struct's cache emptied every 100 formats ---------------

_STRUCT_FORMATS = ["<i%dx" % k for k in range(1, 151)]
_struct_turn = itertools.count()
_packed = []


@settles(after=len(_STRUCT_FORMATS), period=100)
def struct_formats():
    """``struct.pack`` with 150 formats in turn: the module keeps a
    ``Struct`` per format in a cache that it empties when it holds 100, so
    every call compiles one and the cache is emptied every 100th call."""
    struct.pack(_STRUCT_FORMATS[next(_struct_turn) % len(_STRUCT_FORMATS)], 7)


@leaks(refs=1, objects=1, blocks=1)
def struct_formats_leak():
    """The same pack, the packed bytes kept: one bytes object per call."""
    _packed.append(struct.pack(_STRUCT_FORMATS[next(_struct_turn) % len(_STRUCT_FORMATS)], 7))


PAIRS = [
    (re_many, re_many_leak),
    (regex_registry, regex_registry_leak),
    (strptime_formats, strptime_formats_leak),
    (codecs_lookup, codecs_register),
    (struct_formats, struct_formats_leak),
]
