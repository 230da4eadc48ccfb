"""What the running interpreter was built with, and what it offers.

Each answer comes from the running interpreter itself where one exists
(``sys.abiflags``, ``sys.gettotalrefcount``, ``sys.getobjects``, the
allocator actually handing out blocks, as seen by the engine), and from
``sysconfig`` (the build's configuration) otherwise; ``sources`` says which
was used for each flag.

    >>> from refhound._build import build_info
    >>> info = build_info()
    >>> info["py_debug"], info["allocator"]
    (False, 'pymalloc')

Uses that the rest of refhound makes of a special build:
``debug_total_refs()`` (``sys.gettotalrefcount()``, the cross-check of the
engine's reference total on debug builds), ``trace_refs_objects()``
(``sys.getobjects()`` under ``Py_TRACE_REFS``: every live object, the
interpreter's own enumeration) and ``pymalloc_stats()`` (pool and arena
figures as numbers).
"""
import os
import re
import sys
import sysconfig

__all__ = ["build_info", "debug_total_refs", "trace_refs_objects", "pymalloc_stats",
           "loaded_libpython"]


def _config(name):
    return sysconfig.get_config_var(name)


def _config_flag(name):
    """A sysconfig flag as a bool; None when the build does not define it."""
    value = _config(name)
    if value is None:
        return None
    try:
        return bool(int(value))
    except (TypeError, ValueError):
        return bool(value)


def _core():
    try:
        from . import _core
    except ImportError:
        return None
    return _core


def debug_total_refs():
    """``sys.gettotalrefcount()`` on a Py_REF_DEBUG build, else None."""
    f = getattr(sys, "gettotalrefcount", None)
    return f() if f is not None else None


def trace_refs_objects():
    """Every live object the interpreter knows (``sys.getobjects(0)``) on a
    Py_TRACE_REFS build, else None."""
    f = getattr(sys, "getobjects", None)
    return f(0) if f is not None else None


def pymalloc_stats():
    """pymalloc's arenas, pools and blocks as numbers (the engine reads
    ``_PyObject_DebugMallocStats``), or None when the engine is missing."""
    core = _core()
    if core is None or not hasattr(core, "pymalloc_stats"):
        return None
    return core.pymalloc_stats()


def loaded_libpython():
    """Path of the libpython shared library mapped in this process, or None
    (a statically linked interpreter)."""
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split(None, 5)[-1].strip() if line.count(" ") >= 5 else ""
                if re.search(r"/libpython3[^/]*\.so", path):
                    return path
    except OSError:
        pass
    return None


def _compiler_flags():
    return " ".join(str(_config(k) or "") for k in ("CONFIG_ARGS", "PY_CFLAGS", "CFLAGS",
                                                     "PY_CFLAGS_NODIST", "CPPFLAGS",
                                                     "PY_CORE_CFLAGS"))


def _freelists():
    """(enabled, how we know): free lists are compiled in unless
    --without-freelists (3.11+) or *_MAXFREELIST=0 macros (3.9, 3.10)."""
    with_freelists = _config("WITH_FREELISTS")
    if with_freelists is not None:
        return bool(with_freelists), "sysconfig WITH_FREELISTS"
    if sys.version_info >= (3, 11):
        return False, "sysconfig: WITH_FREELISTS not set"
    flags = _compiler_flags()
    off = re.findall(r"-D(Py\w+_MAXFREELIST)=0", flags)
    if off:
        return False, "compiler flags: " + ", ".join(sorted(set(off))) + " = 0"
    return True, "default (no *_MAXFREELIST=0 in the build flags)"


def _under_valgrind():
    preload = os.environ.get("LD_PRELOAD", "")
    if "vgpreload" in preload:
        return True
    try:
        with open("/proc/self/maps") as fh:
            return "vgpreload" in fh.read()
    except OSError:
        return False


def _allocator(core_stats, py_debug):
    """The object allocator's name as PYTHONMALLOC spells it, and how we
    know.  Seen from the engine when it is loaded (pymalloc in use? blocks
    framed by the debug hooks?), else deduced from the environment."""
    env = os.environ.get("PYTHONMALLOC", "")
    if core_stats is not None and core_stats.get("debug_hooks") is not None:
        if core_stats["enabled"]:
            base = "pymalloc"
        elif env.startswith("mimalloc") or _config_flag("Py_GIL_DISABLED"):
            base = "mimalloc"
        else:
            base = "malloc"
        return base + ("_debug" if core_stats["debug_hooks"] else ""), "seen by the engine"
    if env and env != "default":
        return env if env != "debug" else ("pymalloc_debug" if _config_flag("WITH_PYMALLOC")
                                           else "malloc_debug"), "PYTHONMALLOC"
    base = "pymalloc" if _config_flag("WITH_PYMALLOC") else "malloc"
    hooks = py_debug or sys.flags.dev_mode
    return base + ("_debug" if hooks else ""), "build default"


def build_info():
    """A dict describing the running interpreter's build (JSON-ready)."""
    sources = {}
    abiflags = getattr(sys, "abiflags", "")
    py_debug = "d" in abiflags
    sources["py_debug"] = "sys.abiflags"
    if not abiflags and _config_flag("Py_DEBUG"):
        py_debug = True
        sources["py_debug"] = "sysconfig Py_DEBUG"
    core = _core()
    stats = None
    if core is not None and hasattr(core, "pymalloc_stats"):
        try:
            stats = core.pymalloc_stats()
        except Exception:  # noqa: BLE001 - figures are optional here
            stats = None
    allocator, allocator_source = _allocator(stats, py_debug)
    sources["allocator"] = allocator_source
    freelists, sources["freelists"] = _freelists()
    gil_check = getattr(sys, "_is_gil_enabled", None)
    flags = _compiler_flags()
    return {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "abiflags": abiflags,
        "py_debug": py_debug,
        "py_ref_debug": hasattr(sys, "gettotalrefcount"),
        "gettotalrefcount": debug_total_refs(),
        "py_trace_refs": hasattr(sys, "getobjects"),
        "with_pymalloc": bool(_config_flag("WITH_PYMALLOC")),
        "allocator": allocator,
        "pymalloc_in_use": None if stats is None else bool(stats["enabled"]),
        "debug_hooks": None if stats is None else stats.get("debug_hooks"),
        "pythonmalloc": os.environ.get("PYTHONMALLOC"),
        "with_valgrind": bool(_config_flag("WITH_VALGRIND")),
        "under_valgrind": _under_valgrind(),
        "free_threading": bool(_config_flag("Py_GIL_DISABLED")),
        "gil_enabled": bool(gil_check()) if gil_check is not None else True,
        "immortal_objects": sys.version_info >= (3, 12),
        "freelists": freelists,
        "frame_pointer_flags": "-fno-omit-frame-pointer" in flags,
        "shared_libpython": loaded_libpython(),
        "cflags": _config("CFLAGS") or "",
        "config_args": _config("CONFIG_ARGS") or "",
        "sources": sources,
    }
