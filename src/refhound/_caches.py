"""Clear the interpreter's caches between samples, as CPython's -R hunter does.

Everything here drops memoised data the interpreter re-creates on demand
(method cache, ABC caches, compiled-regex and struct caches, line cache,
import finder caches).  Not the warning registries: a registry keeps one
entry per distinct warning shown (under the default action), so one that
grows call after call is the program's growth (a message that differs on
every call), and one that fills settles like any cache.
None of it changes what the user's program computes.  The function must
itself be leak-neutral: it is called once per sample, inside the measured
process.
"""
import sys

_ABC_MODULES = ("collections.abc", "numbers", "io", "os", "typing", "contextlib")


_abc_seen = [None, ()]      # (len(sys.modules), the ABCs found then)


def _abc_classes():
    """ABCs of the standard library (looked up again when a module was imported)."""
    import abc
    if _abc_seen[0] == len(sys.modules):
        return _abc_seen[1]
    seen = []
    for modname in _ABC_MODULES:
        mod = sys.modules.get(modname)
        if mod is None:
            continue
        for value in list(vars(mod).values()):
            if isinstance(value, abc.ABCMeta):
                seen.append(value)
    _abc_seen[:] = [len(sys.modules), tuple(seen)]
    return _abc_seen[1]


def clear_caches():
    """Drop interpreter caches that fill and settle (not user state).

    A cache that cannot be cleared (an API that changed) is skipped: this
    must never fail the check."""
    try:
        _clear_caches()
    except Exception:
        pass


def clear_screen_caches():
    """clear_caches() without the import finders' caches: the screen's walks
    compare two points of one run, and a finder refills its directory
    listings only when something is imported (its blocks are then born in
    the epoch that imported), so emptying them there only costs time."""
    try:
        _clear_caches(importlib=False)
    except Exception:
        pass


def _clear_caches(importlib=True):
    modules = sys.modules
    re = modules.get("re")
    if re is not None:
        re.purge()
    struct = modules.get("struct")
    if struct is not None:
        struct._clearcache()
    linecache = modules.get("linecache")
    if linecache is not None:
        linecache.clearcache()
    fnmatch = modules.get("fnmatch")
    if fnmatch is not None and hasattr(fnmatch, "_compile_pattern"):
        fnmatch._compile_pattern.cache_clear()
    parse = modules.get("urllib.parse")
    if parse is not None:
        parse.clear_cache()
    typing = modules.get("typing")
    if typing is not None:
        for cleanup in getattr(typing, "_cleanups", ()):
            cleanup()
    finders = modules.get("importlib") if importlib else None
    if finders is not None:
        finders.invalidate_caches()
    for cls in _abc_classes():
        cls._abc_caches_clear()
    sys._clear_type_cache()
