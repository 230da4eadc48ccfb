"""Library services with state behind them: loggers, thread-local storage,
decimal contexts, time zones.

Use as ``refhound check tests/settle/services.py:logging_getlogger``.
"""
import collections
import decimal
import itertools
import logging
import threading

from corpus import leaks, settles


# -- logging_getlogger: loggers by name ------------------------------------------

_logger_turn = itertools.count()


def _tick(name):
    logging.getLogger(name).debug("tick %d", 1)


@settles(after=50)
def logging_getlogger():
    """``logging.getLogger()`` of 50 names in turn: the manager keeps every
    logger it made (its dict, a placeholder for the parent "corpus"), each
    logger caches its answer to ``isEnabledFor``; then every call finds its
    logger."""
    _tick("corpus.worker%d" % (next(_logger_turn) % 50))


@leaks(refs=16, objects=5, blocks=7,
       versions={"3.12": {"refs": 10}, "3.13": {"refs": 10, "blocks": 6}})
def logging_getlogger_leak():
    """A new logger name per call (a request id in the name): the classic
    leak, since the manager never forgets a logger."""
    _tick("corpus.request%d" % next(_logger_turn))


# -- threading_local: thread-local objects ------------------------------------------

_recent_locals = collections.deque(maxlen=32)
_all_locals = collections.deque()
_local_turn = itertools.count(1000)


def _local_state(recent, n):
    state = threading.local()
    state.request = n
    recent.append(state)


@settles(after=32)
def threading_local():
    """A new ``threading.local()`` per call, with an attribute set on this
    thread, the last 32 held by a ``deque(maxlen=32)``: a local that falls
    out dies, with its per-thread dict and the weak references that tie it
    to the thread."""
    _local_state(_recent_locals, next(_local_turn))


@leaks(refs=15, objects=9, blocks=11 + 1 / 64, tolerance={"blocks": 0.02},
       versions={"3.12": {"refs": 13}, "3.13": {"refs": 12}})
def threading_local_leak():
    """The deque without ``maxlen``: every local stays, with its dict for
    this thread."""
    _local_state(_all_locals, next(_local_turn))


# -- decimal_context: contexts per precision ------------------------------------------

_contexts = {}
_contexts_leak = {}
_decimal_turn = itertools.count(1000)


def _divide(contexts, key, prec, n):
    ctx = contexts.get(key)
    if ctx is None:
        ctx = contexts[key] = decimal.Context(prec=prec)
    with decimal.localcontext(ctx):
        return decimal.Decimal(n) / 7


@settles(after=40)
def decimal_context():
    """A ``decimal.Context`` per precision (40 precisions in turn) kept in a
    dict, entered with ``localcontext()`` (a copy per call, and a context
    variable set and reset) to divide."""
    n = next(_decimal_turn)
    _divide(_contexts, n % 40, 10 + n % 40, n)


@leaks(refs=6, objects=4, blocks=4, versions={"3.13": {"refs": 7}})
def decimal_context_leak():
    """The dict keyed by the call's number instead of the precision: a new
    context (with its two signal dicts, traps and flags) and its key int
    stay per call, each an object in one block.  On 3.13, where ``_decimal``'s
    types are heap types, the context also holds its type."""
    n = next(_decimal_turn)
    _divide(_contexts_leak, n, 10 + n % 40, n)


# -- zoneinfo_cache: time zones by key -------------------------------------------------

_ZONES = [
    "Africa/Abidjan", "Africa/Cairo", "Africa/Johannesburg", "Africa/Lagos",
    "Africa/Nairobi", "Africa/Casablanca", "America/Anchorage", "America/Bogota",
    "America/Chicago", "America/Denver", "America/Halifax", "America/Havana",
    "America/Lima", "America/Los_Angeles", "America/Mexico_City", "America/New_York",
    "America/Phoenix", "America/Santiago", "America/Sao_Paulo", "America/St_Johns",
    "America/Toronto", "America/Vancouver", "Asia/Bangkok", "Asia/Dhaka",
    "Asia/Dubai", "Asia/Hong_Kong", "Asia/Jakarta", "Asia/Jerusalem", "Asia/Karachi",
    "Asia/Kathmandu", "Asia/Kolkata", "Asia/Manila", "Asia/Seoul", "Asia/Shanghai",
    "Asia/Singapore", "Asia/Taipei", "Asia/Tehran", "Asia/Tokyo", "Atlantic/Azores",
    "Atlantic/Reykjavik", "Australia/Adelaide", "Australia/Brisbane",
    "Australia/Perth", "Australia/Sydney", "Europe/Amsterdam", "Europe/Athens",
    "Europe/Berlin", "Europe/Dublin", "Europe/Helsinki", "Europe/Istanbul",
    "Europe/Lisbon", "Europe/London", "Europe/Madrid", "Europe/Moscow", "Europe/Paris",
    "Europe/Rome", "Europe/Warsaw", "Pacific/Auckland", "Pacific/Fiji", "Pacific/Honolulu",
]
_NEEDS_TZDATA = ("import zoneinfo; zoneinfo.ZoneInfo('Europe/Paris')",
                 "no time zone data (apt-get install tzdata, or pip install tzdata)")
_zone_turn = itertools.count()
_zones_kept = []


def _zone(n):
    import zoneinfo
    return zoneinfo.ZoneInfo(_ZONES[n % len(_ZONES)])


@settles(after=len(_ZONES), requires=_NEEDS_TZDATA)
def zoneinfo_cache():
    """``zoneinfo.ZoneInfo(key)`` for 60 zones in turn: ZoneInfo keeps the
    last 8 in a strong LRU cache and every live one in a weak cache, so with
    60 keys every call reads a zone file and evicts one zone (it dies)."""
    _zone(next(_zone_turn))


@leaks(refs=1, objects=0, blocks=0, requires=_NEEDS_TZDATA)
def zoneinfo_cache_leak():
    """The same, every zone kept in a list: after 60 calls all 60 live in
    the weak cache, which hands them back; every call then adds one
    reference to an existing zone (the list's item array is one block)."""
    _zones_kept.append(_zone(next(_zone_turn)))


PAIRS = [
    (logging_getlogger, logging_getlogger_leak),
    (threading_local, threading_local_leak),
    (decimal_context, decimal_context_leak),
    (zoneinfo_cache, zoneinfo_cache_leak),
]
