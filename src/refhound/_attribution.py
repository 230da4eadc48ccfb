"""Attribution: turn recorded stacks into leak sites with a culprit line.

The engine records, per surviving block, a stack id (native return
addresses and Python frames); this module asks it for the surviving blocks
of the attribution epochs grouped by stack, symbolizes the frames
(refhound._core.symbolize: DWARF through libdw, inlined frames included),
picks the culprit — the innermost frame in the user's own code, not in
libpython, libc, the loader, the compiler runtime, refhound itself or
CPython's headers — and reads a few lines of source around it.
"""
import linecache
import os
import sys
import sysconfig

from . import _core

_SYSTEM_MODULES = ("libpython", "libc.so", "libc-", "ld-linux", "libgcc", "libstdc++",
                   "libpthread", "libdl", "libm.so", "/refhound/_core",
                   "linux-vdso")


def _python_dirs():
    dirs = set()
    for key in ("include", "platinclude"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(os.path.realpath(path))
    return tuple(dirs)


_PY_INCLUDE = _python_dirs()
_EXECUTABLE = os.path.realpath(sys.executable)


def is_user_frame(frame):
    """Is this frame in the user's own code (a culprit candidate)?"""
    module = frame.get("module") or ""
    if not module:
        return False
    real = os.path.realpath(module) if module.startswith("/") else module
    if real == _EXECUTABLE or any(tag in real for tag in _SYSTEM_MODULES):
        return False
    base = os.path.basename(real)
    if base.startswith("python3") or base.startswith("python2"):
        return False
    file = frame.get("file") or ""
    if file:
        rfile = os.path.realpath(file)
        if any(rfile.startswith(d + os.sep) for d in _PY_INCLUDE):
            return False           # Py_INCREF & co. inlined from CPython's headers
        if "/include/python3" in file:
            return False
    return True


_symbol_cache = {}


def symbolize(address, is_return=True):
    key = (address, is_return)
    frames = _symbol_cache.get(key)
    if frames is None:
        frames = _core.symbolize(address, is_return)
        _symbol_cache[key] = frames
    return frames


def native_frames(addresses, first_is_return=True):
    """Symbolize return addresses, expanding inlined frames, innermost first."""
    out = []
    for i, address in enumerate(addresses):
        for frame in symbolize(address, first_is_return or i > 0):
            frame = dict(frame)
            frame["address"] = address
            out.append(frame)
    return out


_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def python_frames(pairs):
    """Python frames, innermost first, without refhound's own."""
    out = []
    for code, offset in pairs:
        if code is not None and os.path.abspath(code.co_filename).startswith(_OWN_DIR):
            continue
        if code is None:
            out.append({"file": None, "line": None, "function": "<freed code>"})
            continue
        try:
            line = _line_of(code, offset)
        except Exception:
            line = None
        out.append({"file": code.co_filename, "line": line, "function": code.co_qualname
                    if hasattr(code, "co_qualname") else code.co_name})
    return out


def _line_of(code, offset):
    line = None
    for start, end, lineno in code.co_lines():
        if start <= offset < end:
            return lineno
        if start <= offset:
            line = lineno
    return line


def culprit(frames):
    """Index of the innermost user frame, or None."""
    for i, frame in enumerate(frames):
        if is_user_frame(frame):
            return i
    return None


def source_context(file, line, around=2):
    """[(line number, text, is_culprit)] around a source line, or []."""
    if not file or not line or not os.path.exists(file):
        return []
    out = []
    for n in range(max(1, line - around), line + around + 1):
        text = linecache.getline(file, n)
        if text == "" and n > line:
            break
        out.append((n, text.rstrip("\n"), n == line))
    return out


def describe_stack(stack_id, first_is_return=True):
    """(native frames, python frames, culprit index) for a recorded stack."""
    addresses, pairs = _core.stack(stack_id)
    frames = native_frames(addresses, first_is_return)
    return frames, python_frames(pairs), culprit(frames)


def site_dict(frames, python, index):
    """The JSON `sites` entry (rates are filled by the caller)."""
    user = frames[index] if index is not None else None
    site = {
        "address": user.get("address") if user else None,
        "function": user["function"] if user else None,
        "file": user["file"] if user else None,
        "line": user["line"] if user else None,
        "module": user["module"] if user else None,
        "python": python,
        "frames": [{k: f.get(k) for k in ("function", "file", "line", "module", "inlined")}
                   for f in frames[:16]],
    }
    if user is None:
        site["reason"] = "no frame in the user's own code (only the interpreter and system)"
    elif user.get("reason"):
        site["reason"] = user["reason"]
    site["source"] = [list(x) for x in source_context(site["file"], site["line"])]
    return site


def leak_sites(first_epoch, last_epoch, calls, limit=10):
    """Surviving blocks born in [first_epoch, last_epoch] grouped by stack,
    ranked by blocks then bytes; rates per call over `calls` calls."""
    groups, unattributed = _core.sites(first_epoch, last_epoch)
    merged = {}
    order = []
    samples = {}
    for stack_id, blocks, nbytes, roots, sample in groups:
        frames, python, index = describe_stack(stack_id)
        site = site_dict(frames, python, index)
        key = (site["file"], site["line"], site["function"], site["module"])
        if sample is not None:
            samples.setdefault(key, sample)
        if key in merged:
            merged[key]["_blocks"] += blocks
            merged[key]["_bytes"] += nbytes
            merged[key]["_roots"] += roots
            continue
        site["_blocks"], site["_bytes"], site["_roots"] = blocks, nbytes, roots
        merged[key] = site
        order.append(key)
    sites = []
    for key in order:
        site = merged[key]
        blocks, nbytes, roots = site.pop("_blocks"), site.pop("_bytes"), site.pop("_roots")
        site["blocks_per_call"] = round(blocks / calls, 4)
        site["bytes_per_call"] = round(nbytes / calls, 2)
        # Blocks not held by another surviving object: where the leak starts.
        site["root_blocks_per_call"] = round(roots / calls, 4)
        sites.append(site)
    sites.sort(key=lambda s: (-s["root_blocks_per_call"], -s["blocks_per_call"],
                              -s["bytes_per_call"]))
    # Survivors below one block in a hundred calls are noise of the window.
    sites = [s for s in sites if s["blocks_per_call"] >= 0.01]
    if sites:
        # A leak that is a cycle hidden from the GC is the type's fault.
        from ._cycles import diagnose
        top = sites[0]
        key = (top["file"], top["line"], top["function"], top["module"])
        cause = diagnose(top, samples.get(key))
        if cause is not None:
            cause["source"] = [list(x) for x in source_context(cause["file"], cause["line"])]
            sites.insert(0, cause)
    samples.clear()
    return sites[:limit], unattributed


def watch_sites(objects, func, args, kwargs, calls):
    """Which lines write the refcounts of these objects without a matching
    write the other way.

    Runs func `calls` times with a hardware watchpoint on each object's
    refcount and pairs the writes in the order they happened: a decrement
    releases, preferably, the newest reference that came back from a call
    (a new reference handed over by an API or a helper), else the newest
    direct increment; the reference a call returns to refhound is the
    caller's to release.  What stays unpaired, per call, is the leak (or,
    for decrements with nothing to release, the extra DECREF).
    Returns (per object: [site dict with refs_per_call], error)."""
    out = _core.watch(list(objects), func, tuple(args), kwargs or None, calls)
    if "error" in out:
        return None, out["error"]
    described = {}
    pools = [{"call": [], "direct": []} for _ in objects]
    unpaired = [dict() for _ in objects]     # site key -> [site, net]
    for index, delta, addresses, returned in out["hits"]:
        info = described.get(addresses)
        if info is None:
            frames = native_frames(addresses)
            where = culprit(frames)
            site = site_dict(frames, [], where)
            kind = _increment_kind(frames, where)
            # refhound's own writes: releasing what the call returned to it.
            own = bool(frames) and "/refhound/_core" in (frames[0].get("module") or "")
            info = described[addresses] = (site, "own" if own else kind)
        site, kind = info
        if kind == "own":
            continue
        key = (site["file"], site["line"], site["function"], site["module"])
        pool = pools[index]
        if delta > 0:
            if not returned:
                for _ in range(delta):
                    pool[kind].append(key)
                _bump(unpaired[index], key, site, delta)
        elif delta < 0:
            for _ in range(-delta):
                taken = pool["call"].pop() if pool["call"] else (
                    pool["direct"].pop() if pool["direct"] else None)
                if taken is None:
                    _bump(unpaired[index], key, site, -1)     # nothing to release
                else:
                    unpaired[index][taken][1] -= 1
    result = []
    for acc in unpaired:
        sites = []
        for site, net in acc.values():
            rate = net / calls
            if abs(rate) < 0.05 or (site["file"] is None and site["function"] is None):
                continue
            entry = {k: v for k, v in site.items() if k != "frames"}
            entry["refs_per_call"] = round(rate, 4)
            sites.append(entry)
        sites.sort(key=lambda s: -abs(s["refs_per_call"]))
        result.append(sites)
    if out["dropped"]:
        for sites in result:
            for site in sites:
                site["reason"] = "%d writes were not recorded (buffer full)" % out["dropped"]
    return result, None


def _bump(acc, key, site, delta):
    entry = acc.get(key)
    if entry is None:
        entry = acc[key] = [site, 0]
    entry[1] += delta


def _increment_kind(frames, where):
    """'direct' when the write is the user's own Py_INCREF (or Py_NewRef...,
    inlined or compiled into the user's module from CPython's headers) in
    the outermost user function; 'call' when it happened inside a call: an
    API function of another module returning a new reference, or a helper
    of the user's own."""
    if where is None:
        return "call"
    module = frames[where].get("module")
    if any(f.get("module") != module for f in frames[:where]):
        return "call"
    user = [f for f in frames if is_user_frame(f)]
    return "direct" if frames[where]["function"] == user[-1]["function"] else "call"


def _api_name(frames, where):
    """The function the user's line called (the outermost frame before the
    user frame that is not inlined), e.g. PyList_Append."""
    if where is None:
        return None
    for frame in reversed(frames[:where]):
        if not frame.get("inlined") and frame.get("function"):
            return frame["function"]
    return None


def life_history(address, func, args, kwargs, max_calls=10):
    """Every write to the refcount of one new object from the call site at
    `address`, from its creation to the end of the call that made it.

    Returns (events, summary) or (None, reason): each event is
    {"delta", "refcnt", "file", "line", "function", "api"}; the summary
    reads like "created at f.c:41 (PyList_New); +1 at f.c:44
    (PyList_Append); never released"."""
    out = _core.history(address, func, tuple(args), kwargs or None, max_calls)
    if "error" in out:
        return None, out["error"]
    if not out["alive"]:
        return None, "the instance that was followed was released: this call site does not leak every time"
    events = []
    previous = None
    for value, addresses in out["hits"]:
        if previous is None and value != 1:
            continue                 # the block being cleared before the object exists
        frames = native_frames(addresses)
        where = culprit(frames)
        user = frames[where] if where is not None else {}
        events.append({"delta": None if previous is None else value - previous, "refcnt": value,
                       "file": user.get("file"), "line": user.get("line"),
                       "function": user.get("function"), "api": _api_name(frames, where)})
        previous = value
    parts = []
    for e in events:
        where = "%s:%s" % (os.path.basename(e["file"]), e["line"]) if e["file"] else "the interpreter"
        api = " (%s)" % e["api"] if e["api"] else ""
        if e["delta"] is None:
            parts.append("created at %s%s" % (where, api))
        elif e["delta"]:
            parts.append("%+d at %s%s" % (e["delta"], where, api))
    parts.append("never released (refcount %d when the call returned)" % out["refcnt"])
    return events, "; ".join(parts)
