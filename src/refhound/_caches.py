"""Clear the interpreter's caches between samples, as CPython's -R hunter does.

Everything here drops memoised data the interpreter re-creates on demand
(method cache, ABC caches, compiled-regex and struct caches, line cache,
import finder caches, warning registries through the filters version).
None of it changes what the user's program computes.  The function must
itself be leak-neutral: it is called once per sample, inside the measured
process.
"""
import sys

_ABC_MODULES = ("collections.abc", "numbers", "io", "os", "typing", "contextlib")


def _abc_classes():
    """ABCs of the standard library."""
    import abc
    seen = []
    for modname in _ABC_MODULES:
        mod = sys.modules.get(modname)
        if mod is None:
            continue
        for value in list(vars(mod).values()):
            if isinstance(value, abc.ABCMeta):
                seen.append(value)
    return seen


def clear_caches():
    """Drop interpreter caches that fill and settle (not user state).

    A cache that cannot be cleared (an API that changed) is skipped: this
    must never fail the check."""
    try:
        _clear_caches()
    except Exception:
        pass


def _clear_caches():
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
    importlib = modules.get("importlib")
    if importlib is not None:
        importlib.invalidate_caches()
    warnings = modules.get("warnings")
    if warnings is not None and hasattr(warnings, "_filters_mutated"):
        warnings._filters_mutated()
    for cls in _abc_classes():
        cls._abc_caches_clear()
    sys._clear_type_cache()
