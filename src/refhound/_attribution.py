"""Attribution: turn recorded stacks into leak sites with a culprit line.

The engine records, per surviving block, a stack id (native return
addresses and Python frames); this module asks it for the surviving blocks
of the attribution epochs grouped by stack, symbolizes the frames
(refhound._core.symbolize: DWARF through libdw, inlined frames included),
and names the culprit of each site: the line that is wrong, and why.

The culprit rules (`culprit_frame`, `refine_culprit`):

- The frame: the innermost frame in the user's own code — not in libc, the
  loader, the compiler runtime, refhound itself, nor inlined from CPython's
  headers (a Py_INCREF in object.h is its caller's line).  A leak with no
  frame in the user's code is in the interpreter (libpython, the python
  executable, a stdlib extension module): its frame is the innermost
  interpreter function that is not API or plumbing (allocators,
  constructors, the call machinery, the eval loop: they hand the new
  reference to their caller), named with "in the interpreter".
- Allocation wrappers: a user function that returns the block or object it
  just allocated (its source says `return p;`, or execute breakpoints see
  it hand the pointer back) is not the culprit: its caller's line is.
- The reason: for a new object, its life history (hardware watchpoint on
  its reference count from birth) pairs increments with decrements; an
  unpaired direct Py_INCREF is the culprit ("extra Py_INCREF never
  balanced"), else the reference made at birth: an execute breakpoint on
  the owner's return says whether it returned an error ("returned NULL
  without releasing") or not ("allocated here and never released").  For
  an existing object, the unpaired write itself: "extra Py_INCREF never
  balanced", "new reference from X never released", "released one time
  too many".
- Stripped code: module and symbol+offset, with how to get lines
  (`stripped_hint`).
- A site with no native frame, or with fewer surviving blocks than one per
  attribution iteration, is no site (noise of the window).
"""
import linecache
import os
import re
import sys
import sysconfig

from . import _core

_SYSTEM_MODULES = ("libc.so", "libc-", "ld-linux", "libgcc", "libstdc++",
                   "libpthread", "libdl", "libm.so", "linux-vdso")


def _python_dirs():
    dirs = set()
    for key in ("include", "platinclude"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(os.path.realpath(path))
    return tuple(dirs)


def _interpreter_dirs():
    """Folders of the interpreter's own extension modules (lib-dynload)."""
    dirs = set()
    for value in (sysconfig.get_config_var("DESTSHARED"),
                  os.path.join(sysconfig.get_paths().get("platstdlib") or "", "lib-dynload")):
        if value and os.path.isdir(value):
            dirs.add(os.path.realpath(value))
    return tuple(dirs)


_PY_INCLUDE = _python_dirs()
_PY_DYNLOAD = _interpreter_dirs()
_EXECUTABLE = os.path.realpath(sys.executable)
# CPython's headers as they appear in its own DWARF (the build tree).
_HEADER_RE = re.compile(r"(^|/)(Include|include/python3[.\w]*)/")

_realpaths = {}


def _real(path):
    real = _realpaths.get(path)
    if real is None:
        real = _realpaths[path] = os.path.realpath(path) if path.startswith("/") else path
    return real


# What a frame is, by what decides it (module, file, function, inlined): a
# watch pairs thousands of writes over a few hundred distinct stacks.
_header_frames = {}
_frame_kinds = {}


def _by_frame(cache, compute, frame):
    """compute(frame), remembered in `cache` by what decides it."""
    key = (frame.get("module"), frame.get("file"), frame.get("function"),
           bool(frame.get("inlined")))
    value = cache.get(key)
    if value is None:
        value = cache[key] = compute(frame)
    return value


def is_header_frame(frame):
    """A frame of a function from CPython's headers (Py_INCREF & co.),
    inlined or, at -O0, compiled into the caller's module.  The eval loop is
    its own frame even when the line table points into a header (a build
    whose DWARF lost its inlined functions: Python code's writes)."""
    return _by_frame(_header_frames, _is_header_frame, frame)


def _is_header_frame(frame):
    file = frame.get("file") or ""
    if not file:
        return False
    if not ("/include/python3" in file or _HEADER_RE.search(file) or
            any(_real(file).startswith(d + os.sep) for d in _PY_INCLUDE)):
        return False
    if frame.get("inlined"):
        return True
    return not _EVAL_RE.match(frame.get("function") or "")


def frame_kind(frame):
    """"user", "interpreter", "header", "system", "refhound" or "unknown"."""
    return _by_frame(_frame_kinds, _frame_kind, frame)


def _frame_kind(frame):
    module = frame.get("module") or ""
    if not module:
        return "unknown"
    real = _real(module)
    if "/refhound/_core" in real:
        return "refhound"
    if any(tag in real for tag in _SYSTEM_MODULES):
        return "system"
    if is_header_frame(frame):
        return "header"
    base = os.path.basename(real)
    if ("libpython" in base or real == _EXECUTABLE or base.startswith(("python3", "python2"))
            or any(real.startswith(d + os.sep) for d in _PY_DYNLOAD)):
        return "interpreter"
    return "user"


def is_user_frame(frame):
    """Is this frame in the user's own code (a culprit candidate)?"""
    return frame_kind(frame) == "user"


# Interpreter functions that hand a new reference to their caller or only
# pass calls along: never the culprit of a leak in the interpreter.
_API_RE = re.compile(r"^_?_?Py")
_PLUMBING_RE = re.compile(
    r"^(type_call|object_new|object_vgetattr|.*vectorcall.*|slot_.*|wrap_.*|call_.*|method_.*|"
    r"cfunction_.*|.*_descr_get|classmethod_get|gc_alloc|.*_alloc(_\w+)?|.*_new(_impl)?|"
    r"new_.*|pymalloc_.*|unicode_result.*|resize_compact|.*_resize|builtin_.*|do_call_core|"
    r"lookup_maybe_method|lookup_method|vgetargs.*|convert.*|.*getbuffer|vgetkeywords.*|"
    r"property_descr_get|mro_.*|tuple_alloc|list_preallocate_exact|dictresize|insertdict|"
    r"new_keys_object|new_dict.*|clone_combined_dict_keys|unicode_decode_utf8|"
    r"ascii_decode|.*_FromString.*|long_to_decimal_string.*|.*_repr|.*_str)$")
_EVAL_RE = re.compile(r"^_?PyEval_|^_PyEval_EvalFrame")


def _interpreter_candidate(frame):
    function = frame.get("function") or ""
    if not function or frame_kind(frame) != "interpreter":
        return False
    return not (_API_RE.match(function) or _PLUMBING_RE.match(function) or
                _EVAL_RE.match(function))


# The interpreter's own allocator hook (PEP 445): tracemalloc's functions,
# in Modules/_tracemalloc.c up to 3.11, Python/tracemalloc.c from 3.12.
_TRACEMALLOC_FILES = frozenset(("_tracemalloc.c", "tracemalloc.c"))
_TRACEMALLOC_RE = re.compile(r"^_?tracemalloc_")


def _in_allocator_hook(frame):
    """Is this frame tracemalloc's hook, which the interpreter runs inside
    an allocation (its traces and tracebacks are its own memory)?"""
    if frame_kind(frame) != "interpreter":
        return False
    return (os.path.basename(frame.get("file") or "") in _TRACEMALLOC_FILES
            or bool(_TRACEMALLOC_RE.match(frame.get("function") or "")))


def culprit_frame(frames):
    """(index, "user" | "interpreter") of the culprit frame, or (None, None).

    The innermost user frame; without one, the innermost interpreter frame
    that is neither API, plumbing nor inlined from a header; else the
    innermost interpreter frame that is not a header's.  A block made by
    tracemalloc's hook for its own bookkeeping while a user's allocation
    passed through it (a traceback, a trace) is the interpreter's: the
    user frame outside the hook only allocated something else."""
    for i, frame in enumerate(frames):
        if frame_kind(frame) == "user":
            if not any(_in_allocator_hook(f) for f in frames[:i]):
                return i, "user"
            break
    for i, frame in enumerate(frames):
        if _interpreter_candidate(frame):
            return i, "interpreter"
    for i, frame in enumerate(frames):
        if frame_kind(frame) == "interpreter" and frame.get("function"):
            return i, "interpreter"
    return None, None


_symbol_cache = {}


def symbolize(address, is_return=True):
    key = (address, is_return)
    frames = _symbol_cache.get(key)
    if frames is None:
        frames = _core.symbolize(address, is_return)
        _symbol_cache[key] = frames
    return frames


# Clones the compiler makes of a function (LTO, constant propagation...).
_CLONE_RE = re.compile(r"(\.(lto_priv|constprop|isra|part|cold|localalias)(\.\d+)?)+$")


def native_frames(addresses, first_is_return=True):
    """Symbolize return addresses, expanding inlined frames, innermost first.
    A compiler's clone of a function (load.lto_priv.0, f.constprop.0) is
    named as the function."""
    out = []
    for i, address in enumerate(addresses):
        for frame in symbolize(address, first_is_return or i > 0):
            frame = dict(frame)
            frame["address"] = address
            if frame.get("function"):
                frame["function"] = _CLONE_RE.sub("", frame["function"])
            out.append(frame)
    return out


def _from_python(frames, where):
    """Did Python code make this write (the eval loop is the innermost
    function that is not a header's)?"""
    for frame in frames:
        if is_header_frame(frame):
            continue
        return bool(_EVAL_RE.match(frame.get("function") or ""))
    return False


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
    """Index of the culprit frame (culprit_frame), or None."""
    return culprit_frame(frames)[0]


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


# ---------------------------------------------------------------------------
# Allocation wrappers: a function that hands its caller what it allocated

_ASSIGN_RE = re.compile(r"([A-Za-z_]\w*)\s*(\[[^]]*\])?\s*=(?!=)")


# Calls that steal a reference to their item: the caller must own it.
_STEALING_RE = re.compile(r"\b(PyList_SetItem|PyTuple_SetItem|PyList_SET_ITEM|PyTuple_SET_ITEM|"
                          r"PyModule_AddObject|PyCell_Set)\s*\(")


def _stealing_call_before(file, line, limit=400):
    """(line, API name) of the nearest call that steals a reference (PyList_SetItem,
    PyTuple_SET_ITEM, ...) before `line` in its function, or None."""
    if not file:
        return None
    for n in range(line - 1, max(line - limit, 0), -1):
        text = linecache.getline(file, n)
        if text == "" or text.startswith("}") or text.startswith("{"):
            return None
        m = _STEALING_RE.search(text.split("//")[0])
        if m:
            return n, m.group(1)
    return None


def _stolen_culprit(entry, site):
    """An over-release whose write is a container's deallocator, called from
    a line after the culprit's function gave that container a reference
    through a stealing call: the stealing line is the one that is wrong
    (the reference was borrowed).  The culprit moves there."""
    culprit = entry.get("culprit")
    if site.get("_dealloc") is not True or not culprit or not culprit.get("line") \
            or culprit.get("in_interpreter"):
        return
    found = _stealing_call_before(culprit.get("file"), culprit["line"])
    if found is None:
        return
    line, api = found
    entry["culprit"] = dict(culprit, line=line, reason=REASON_STOLEN % api,
                            released_at=culprit["line"])
    entry["source"] = [list(x) for x in source_context(culprit.get("file"), line)]


def stolen_release(functions, file, line, freed_type=None):
    """A block freed by a container's deallocator, released from `line` of
    `file`, in a function that gave the container a reference through a
    stealing call before that line: (line, reason) of that call (the
    reference was borrowed), or None.  `functions`: the free stack from the
    innermost frame up to the user's; the container's deallocator is one of
    two deallocators there (the object's own and the container's), or the
    only one when the freed object is of another type (`freed_type`: an int
    freed by list_dealloc; a list freed by list_dealloc is the container
    itself).  For the memory errors of --sanitize: the use after free then
    blames the stealing line, not the Py_DECREF of the container."""
    deallocs = [fn for fn in functions if _DEALLOC_RE.match(fn or "")]
    if not file or not line or not deallocs:
        return None
    if len(deallocs) < 2 and (not freed_type or
                              freed_type.lower() in deallocs[0].lower()):
        return None
    found = _stealing_call_before(file, line)
    if found is None:
        return None
    return found[0], REASON_STOLEN % found[1]


def _following_lines(file, line, limit=400):
    """The source lines after `line` up to the end of its function (a `}`
    in the first column)."""
    out = []
    for n in range(line + 1, line + limit):
        text = linecache.getline(file, n)
        if text == "":
            break
        if text.startswith("}"):
            break
        out.append(text)
    return out


def returns_what_it_allocates(frame):
    """Does the function of this frame return what its culprit line
    allocates (`return p;`, or `return alloc(...);` on the line)?  An
    allocation wrapper, whose caller asked for the block.  False when the
    source cannot be read."""
    file, line = frame.get("file"), frame.get("line")
    if not file or not line or not os.path.exists(file):
        return False
    text = linecache.getline(file, line)
    code = text.split("//")[0].split("/*")[0]
    if re.search(r"\breturn\b", code):
        return True
    m = None
    for m in _ASSIGN_RE.finditer(code):
        break
    if m is None:
        return False
    var = re.escape(m.group(1))
    back = re.compile(r"\breturn\s*\(?\s*(\([^()]*\)\s*)?%s\s*\)?\s*;" % var)
    return any(back.search(t) for t in _following_lines(file, line))


# An allocator's wrapper inlined into the interpreter's code (tracemalloc's
# raw_malloc(): `return allocators.raw.malloc(...)`): its line says nothing
# the line that called it does not.
_ALLOC_WRAPPER_RE = re.compile(r"^(\w+_)?(malloc|calloc|realloc)$")


def skip_interpreter_wrappers(frames, index):
    """Move an interpreter culprit out of an inlined allocator wrapper, to
    the interpreter line that called it."""
    while index is not None and index + 1 < len(frames):
        frame = frames[index]
        if not frame.get("inlined") or not _ALLOC_WRAPPER_RE.match(frame.get("function") or ""):
            break
        if frame_kind(frames[index + 1]) != "interpreter" or not frames[index + 1].get("line"):
            break
        index += 1
    return index


def skip_wrappers(frames, index):
    """Move a culprit out of the user's allocation wrappers, to the line
    that called them."""
    while index is not None and index + 1 < len(frames):
        frame = frames[index]
        if frame_kind(frame) != "user" or not returns_what_it_allocates(frame):
            break
        if frame_kind(frames[index + 1]) != "user":
            break               # the wrapper is called from elsewhere: keep it
        index += 1
    return index


# ---------------------------------------------------------------------------
# The culprit object of a site

REASON_ALLOCATED = "allocated here and never released"
REASON_EXTRA_INCREF = "extra Py_INCREF never balanced"
REASON_OVER_RELEASE = "released one time too many"
REASON_RETURNED_ERROR = "returned %s with an exception set, without releasing it"
REASON_RECEIVED = "received here (from %s) and never released"
REASON_STOLEN = ("released one time too many: %s steals a reference and was given a "
                 "borrowed one, which the container's deallocator released")
IN_INTERPRETER = "in the interpreter"

_INCREF_RE = re.compile(r"^_?Py_(X?INCREF|NewRef|XNewRef|IncRef)$")
_DECREF_RE = re.compile(r"^_?Py_(X?DECREF|CLEAR|DecRef|SETREF|XSETREF)$|^_Py_Dealloc$")


def stripped_hint(module):
    """How to get lines for a module without DWARF."""
    if not module:
        return "no debug information"
    base = os.path.basename(module)
    dist = _distribution_of(module)
    if frame_kind({"module": module}) == "interpreter":
        return ("%s has no debug information: install the interpreter's debug symbols "
                "(Debian: apt-get install %s-dbg)" % (base, "python%d.%d" % sys.version_info[:2]))
    parts = ["%s has no debug information (no DWARF in it, nor a separate debug file "
             "found by build-id under /usr/lib/debug/.build-id or by .gnu_debuglink)" % base]
    if dist:
        parts.append("rebuild it with -g: CFLAGS=-g pip install --force-reinstall "
                     "--no-binary %s %s" % (dist, dist))
    elif module.startswith("/usr/lib"):
        parts.append("install its distribution's debug-symbol package (-dbgsym / -dbg)")
    else:
        parts.append("rebuild the extension with -g")
    return "; ".join(parts)


def _distribution_of(module):
    """The PyPI distribution that installed a module file, or None."""
    try:
        from importlib import metadata
        real = os.path.realpath(module)
        for dist in metadata.distributions():
            for f in dist.files or ():
                if f.name == os.path.basename(real) and \
                        os.path.realpath(str(dist.locate_file(f))) == real:
                    return dist.metadata["Name"]
    except Exception:
        return None
    return None


def culprit_dict(frame, where, reason):
    """The JSON `culprit` {file, line, function, module, reason} of a frame."""
    if frame is None:
        return None
    c = {"file": frame.get("file"), "line": frame.get("line") or None,
         "function": frame.get("function"), "module": frame.get("module"),
         "reason": reason}
    if where == "interpreter":
        c["reason"] = "%s, %s" % (reason, IN_INTERPRETER)
        c["in_interpreter"] = True
    if not c["line"] and c["function"]:
        c["symbol"] = "%s+%#x" % (c["function"], frame.get("offset") or 0)
        c["reason"] += "; the line is not known: %s" % stripped_hint(c["module"])
    return c


def python_culprit(python, reason):
    py = python[0] if python else None
    if py is None or not py.get("file"):
        return None
    return {"file": py["file"], "line": py.get("line"), "function": py.get("function"),
            "module": None, "reason": reason + " (Python code)"}


def site_dict(frames, python, index, where=None, reason=REASON_ALLOCATED):
    """The JSON `sites` entry (rates are filled by the caller).  file/line/
    function/module: the culprit frame; `culprit`: that frame and why."""
    user = frames[index] if index is not None else None
    if user is not None and where is None:
        where = "user" if frame_kind(user) == "user" else "interpreter"
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
    site["culprit"] = culprit_dict(user, where, reason) if user else python_culprit(python, reason)
    if user is None:
        site["reason"] = "no frame in the user's own code (only the interpreter and system)"
    elif user.get("reason"):
        site["reason"] = user["reason"]
    site["source"] = [list(x) for x in source_context(site["file"], site["line"])]
    return site


# The sites of the last leak_sites(), by address, for life_history() to
# refine: (site, native frames, culprit index).
_pending = {}


def leak_sites(first_epoch, last_epoch, calls, limit=10):
    """Surviving blocks born in [first_epoch, last_epoch] grouped by stack,
    ranked by root blocks, then blocks, then bytes; rates per call over
    `calls` calls.  A site needs a native frame and at least one surviving
    block per iteration (below that it is noise of the window)."""
    groups, unattributed = _core.sites(first_epoch, last_epoch)
    iterations = max(1, last_epoch - first_epoch + 1)
    merged = {}
    order = []
    samples = {}
    _pending.clear()
    for stack_id, blocks, nbytes, roots, sample in groups:
        frames, python, index = describe_stack(stack_id)
        if not any(f.get("module") for f in frames):
            continue            # no native frame: not a site
        index, where = culprit_frame(frames)
        if where == "user":
            index = skip_wrappers(frames, index)
        elif where == "interpreter" and not _interpreter_candidate(frames[index]) and python:
            index = where = None        # allocated by Python code
        elif where == "interpreter":
            index = skip_interpreter_wrappers(frames, index)
        if index is None and not python:
            continue
        site = site_dict(frames, python, index, where)
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
        if site["address"] and site["address"] not in _pending:
            _pending[site["address"]] = (site, frames, index)
    sites = []
    for key in order:
        site = merged[key]
        blocks, nbytes, roots = site.pop("_blocks"), site.pop("_bytes"), site.pop("_roots")
        if blocks < iterations:
            continue            # below one surviving block per iteration
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
    Returns (per object: [site dict with refs_per_call and culprit], error)."""
    out = _core.watch(list(objects), func, tuple(args), kwargs or None, calls)
    if "error" in out:
        return None, out["error"]
    described = {}
    pools = [{"python": [], "call": [], "direct": [], "container": []} for _ in objects]
    unpaired = [dict() for _ in objects]     # site key -> [site, net]
    for index, delta, addresses, returned in out["hits"]:
        info = described.get(addresses)
        if info is None:
            frames = native_frames(addresses)
            where, kind_of_frame = culprit_frame(frames)
            site = site_dict(frames, [], where, kind_of_frame)
            # Python code's own references (the eval loop's stack, locals)
            # are balanced by Python code: paired first.
            kind = "python" if _from_python(frames, where) else _increment_kind(frames, where)
            if kind == "call" and _api_name(frames, where) in CONTAINER_BUILDERS:
                kind = "container"      # the reference the new container holds
            # refhound's own writes: releasing what the call returned to it.
            own = bool(frames) and frame_kind(frames[0]) == "refhound"
            site["_write"] = _write_kind(frames, where)
            site["_api"] = _api_name(frames, where)
            site["_dealloc"] = _in_deallocator(frames)
            site["_owner"] = _deallocated_type(frames) if site["_dealloc"] is True else None
            info = described[addresses] = (site, "own" if own else kind)
        site, kind = info
        if kind == "own":
            continue
        key = (site["file"], site["line"], site["function"], site["module"])
        pool = pools[index]
        if delta > 0:
            # A returned write hands one reference to the caller; the rest
            # of it is the function's own (the compiler merges an extra
            # Py_INCREF with the Py_RETURN_NONE after it into one add of 2).
            kept = delta - 1 if returned else delta
            if kept and returned:
                site["_merged"] = True
            if kept:
                for _ in range(kept):
                    pool[kind].append((key, addresses))
                _bump(unpaired[index], key, site, kept)
        elif delta < 0:
            for _ in range(-delta):
                which = released_increment(pool, addresses, site["_dealloc"], site["_owner"])
                taken = pool[which[0]].pop(which[1])[0] if which else None
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
            entry = {k: v for k, v in site.items()
                     if k not in ("frames", "_write", "_api", "_dealloc", "_owner", "_merged")}
            entry["refs_per_call"] = round(rate, 4)
            if entry.get("culprit"):
                entry["culprit"] = dict(entry["culprit"], reason=_write_reason(
                    site, rate, entry["culprit"].get("in_interpreter")))
                if site.get("_merged") and rate > 0:
                    entry["culprit"]["reason"] += (
                        "; the compiler merged it with the increment of the returned "
                        "reference: the extra Py_INCREF may be on a line just before")
                if not entry["culprit"].get("line") and entry["culprit"].get("function"):
                    entry["culprit"]["reason"] += "; the line is not known: %s" % \
                        stripped_hint(entry["culprit"]["module"])
                if rate < 0:
                    _stolen_culprit(entry, site)
            sites.append(entry)
        sites.sort(key=lambda s: -abs(s["refs_per_call"]))
        result.append(sites)
    if out["dropped"]:
        for sites in result:
            for site in sites:
                site["reason"] = "%d writes were not recorded (buffer full)" % out["dropped"]
    return result, None


# API functions that store a new reference to their argument in the container
# they build and return: a deallocator of that container releases it.
CONTAINER_BUILDERS = frozenset((
    "Py_BuildValue", "_Py_BuildValue_SizeT", "Py_VaBuildValue", "_Py_VaBuildValue_SizeT",
    "PyTuple_Pack"))


def released_increment(pool, addresses, dealloc=False, owner=None):
    """Which pending increment a decrement (its stack `addresses`, innermost
    first) releases: (pool kind, index) or None when none is pending.

    An extension type's deallocator (`owner`: the type's stem in its
    name, _deallocated_type) releases first what a constructor of the same
    type took (owner_new, Packer_init, Cython's __pyx_tp_new_..._Packer):
    a field set in tp_new and released in tp_dealloc.  Paired by the rules
    below, the field's release took the newest increment instead, a leak
    made during the object's life (Cython's __getbuffer__ losing its
    placeholder None), and left the constructor's unpaired: msgpack's
    Packer was named at its tp_new.
    Python code's own references first (the newest), but not for the
    decrement of a type's clear function in its deallocator
    (dealloc="clear").  Else the increment
    that shares the deepest caller with the decrement: a reference taken
    and released inside one call balances there, whatever came back from
    calls around it.  At equal depth, the newest reference that came back
    from a call, else the newest direct increment; but a deallocator
    (`dealloc`: a tuple freed with the frame that held it) releases what
    its container took first: a reference stored by an API that builds the
    container (Py_BuildValue, PyTuple_Pack: kind "container"), else a direct
    increment (the builder's Py_INCREF before PyTuple_SET_ITEM); a clear
    function, Python code's last: a function object freed by its frame
    releases (func_clear) the reference PyFunction_New took, not one the
    eval loop holds (taking that one left the function's increment
    unpaired and named it for an extra Py_INCREF(Py_None) in a pytest
    process).  (Python code's references last for every deallocator made
    the corpus's sendto_audit name main.c.)"""
    if owner is not None:
        for kind in ("direct", "call", "container"):
            entries = pool.get(kind, ())
            for i in range(len(entries) - 1, -1, -1):
                if _constructs(entries[i][0][2], owner):
                    return kind, i
    if pool["python"] and dealloc != "clear":
        return "python", len(pool["python"]) - 1
    outer = addresses[1:]            # [0] is the write itself
    best = None
    order = ("container", "direct", "call", "python") if dealloc == "clear" else \
        ("container", "direct", "call") if dealloc else ("call", "direct", "container")
    for rank, kind in enumerate(order):
        entries = pool.get(kind, ())
        for i in range(len(entries) - 1, -1, -1):
            shared = _return_addresses(entries[i][1])
            if best is None:
                depth = next((j for j, a in enumerate(outer) if a in shared), len(outer))
                best = ((depth, rank), kind, i)
                continue
            # Ranks only grow and ties keep the first: only a shallower
            # shared caller wins, so the search stops at the best depth.
            depth = next((j for j in range(best[0][0]) if outer[j] in shared), None)
            if depth is not None:
                best = ((depth, rank), kind, i)
    return (best[1], best[2]) if best else None


_DEALLOC_RE = re.compile(r"^\w*_?dealloc\w*$", re.I)


_CLEAR_RE = re.compile(r"^\w*_clear$", re.I)


def _in_deallocator(frames):
    """True when the innermost function that is not a header's is a
    deallocator (tupledealloc, list_dealloc, subtype_dealloc, ...); "clear"
    when it is a type's clear function called by its deallocator
    (func_clear from func_dealloc: the object's own fields); else False."""
    names = [f.get("function") or "" for f in frames if not is_header_frame(f)][:2]
    if names and _DEALLOC_RE.match(names[0]):
        return True
    if len(names) == 2 and _CLEAR_RE.match(names[0]) and _DEALLOC_RE.match(names[1]):
        return "clear"
    return False


# Words around a type's name in its deallocator's and constructors' names.
_STEM_NOISE = frozenset(("", "tp", "pyx", "py", "impl"))
_CONSTRUCTOR_RE = re.compile(r"new|init|alloc|create", re.I)


def _deallocated_type(frames):
    """The stem of the type whose deallocator made this write, when that
    deallocator is the extension's own (owner_dealloc -> "owner",
    __pyx_tp_dealloc_7msgpack_9_cmsgpack_Packer -> "7msgpack_9_cmsgpack_Packer");
    else None."""
    frame = next((f for f in frames if not is_header_frame(f)), None)
    if frame is None or frame_kind(frame) != "user":
        return None
    best = ""
    for part in re.split(r"dealloc", frame.get("function") or "", flags=re.I):
        tokens = part.split("_")
        while tokens and tokens[0].lower() in _STEM_NOISE:
            tokens.pop(0)
        while tokens and tokens[-1].lower() in _STEM_NOISE:
            tokens.pop()
        stem = "_".join(tokens)
        if len(stem) > len(best):
            best = stem
    return best if len(best) >= 3 else None


def _constructs(function, stem):
    """Is `function` a constructor of the type whose stem is `stem` (its
    name holds the stem and, besides it, new, init, alloc or create)?"""
    if not function:
        return False
    low, key = function.lower(), stem.lower()
    at = low.find(key)
    return at >= 0 and bool(_CONSTRUCTOR_RE.search(low[:at] + " " + low[at + len(key):]))


_returns_cache = {}


def _return_addresses(addresses):
    out = _returns_cache.get(addresses)
    if out is None:
        if len(_returns_cache) > 4096:
            _returns_cache.clear()
        out = _returns_cache[addresses] = frozenset(addresses[1:])
    return out


def _write_kind(frames, where):
    """"incref", "decref" or None: the header function (Py_INCREF,
    Py_DECREF, ...) that wrote, called or inlined directly from the culprit
    frame; None when the write happened inside another function (an API
    call that hands back a new reference)."""
    if where is None or not all(is_header_frame(f) for f in frames[:where]):
        return None
    for frame in frames[:where]:
        name = frame.get("function") or ""
        if _INCREF_RE.match(name):
            return "incref"
        if _DECREF_RE.match(name):
            return "decref"
    return None


def _write_reason(site, rate, in_interpreter):
    if rate < 0:
        reason = REASON_OVER_RELEASE
    elif site.get("_write") == "incref":
        reason = REASON_EXTRA_INCREF
    else:
        reason = REASON_RECEIVED % (site.get("_api") or "a call")
    return "%s, %s" % (reason, IN_INTERPRETER) if in_interpreter else reason


def _bump(acc, key, site, delta):
    entry = acc.get(key)
    if entry is None:
        entry = acc[key] = [site, 0]
    entry[1] += delta


def _increment_kind(frames, where):
    """'direct' when the write is a Py_INCREF (or Py_NewRef...) inlined or
    compiled into the culprit's function, the outermost function of its
    kind on the stack; 'call' when it happened inside a call: an API
    function of another module returning a new reference, or a helper."""
    if where is None:
        return "call"
    module = frames[where].get("module")
    if any(f.get("module") != module for f in frames[:where]):
        return "call"
    kind = frame_kind(frames[where])
    same = [f for f in frames if frame_kind(f) == kind and
            (kind == "user" or _interpreter_candidate(f))]
    if kind == "user":
        return "direct" if frames[where]["function"] == same[-1]["function"] else "call"
    # In the interpreter: direct when the write is inlined into the function.
    return "direct" if all(f.get("inlined") for f in frames[:where]) else "call"


def _api_name(frames, where):
    """The function the culprit's line called (the outermost frame before
    the culprit frame that is not inlined), e.g. PyList_Append."""
    if where is None:
        return None
    for frame in reversed(frames[:where]):
        if not frame.get("inlined") and frame.get("function"):
            return frame["function"]
    return None


def life_history(address, func, args, kwargs, max_calls=10):
    """Every write to the refcount of one new object from the call site at
    `address`, from its creation to the end of the call that made it (the
    release of the call's result included).

    Returns (events, summary) or (None, reason): each event is
    {"delta", "refcnt", "file", "line", "function", "api"}; the summary
    reads like "created at f.c:41 (PyList_New); +1 at f.c:44
    (PyList_Append); never released".  The culprit of the site that
    leak_sites() made at `address` is refined on the way: an unpaired
    direct Py_INCREF, or what the function holding the reference returned."""
    out = _core.history(address, func, tuple(args), kwargs or None, max_calls)
    if "error" in out:
        return None, out["error"]
    if not out["alive"]:
        return None, "the instance that was followed was released: this call site does not leak every time"
    events = []
    writes = []                 # per event: (write kind, culprit function)
    previous = None
    for value, addresses in out["hits"]:
        if previous is None and value != 1:
            continue                 # the block being cleared before the object exists
        if value <= 0 or value > 1 << 40:
            # The object died (its block cleared or reused): a survivor
            # born later in the same block starts its history again.
            events, writes, previous = [], [], None
            continue
        frames = native_frames(addresses)
        where, _ = culprit_frame(frames)
        user = frames[where] if where is not None else {}
        own = bool(frames) and frame_kind(frames[0]) == "refhound"
        delta = None if previous is None else value - previous
        events.append({"delta": delta, "refcnt": value,
                       "file": user.get("file"), "line": user.get("line"),
                       "function": user.get("function"), "api": _api_name(frames, where),
                       "by": "the caller" if own else None})
        writes.append((_write_kind(frames, where), user.get("function")))
        previous = value
    parts = []
    for e in events:
        where = "%s:%s" % (os.path.basename(e["file"]), e["line"]) if e["file"] else (
            e["by"] or "the interpreter")
        api = " (%s)" % e["api"] if e["api"] else ""
        if e["delta"] is None:
            parts.append("created at %s%s" % (where, api))
        elif e["delta"]:
            parts.append("%+d at %s%s" % (e["delta"], where, api))
    parts.append("never released (refcount %d when the call returned)" % out["refcnt"])
    pending = _pending.get(address)
    if pending is not None:
        _refine(pending, events, writes, func, args, kwargs)
    return events, "; ".join(parts)


def unpaired_increfs(events, writes, owner):
    """Indexes of the events whose increments nothing balanced, when they
    are direct Py_INCREFs of `owner` (the function holding the new object).

    The reference made at birth and the increments inside calls (a
    container taking its reference) are "call" references; a decrement
    releases the newest call reference first, else the newest direct one."""
    held = []
    for n, (e, (write, function)) in enumerate(zip(events, writes)):
        delta = e["delta"]
        if delta is None:
            held.append(("call", n))
        elif delta > 0:
            kind = "direct" if write == "incref" and function == owner else "call"
            held.extend([(kind, n)] * min(delta, 1000))
        elif delta < 0:
            for _ in range(min(-delta, 1000)):
                calls = [i for i, h in enumerate(held) if h[0] == "call"]
                if calls:
                    held.pop(calls[-1])
                elif held:
                    held.pop()
    return [n for kind, n in held if kind == "direct"]


def _refine(pending, events, writes, func, args, kwargs):
    """Refine a site's culprit from the life history of one of its objects
    (an unpaired direct Py_INCREF) or, for the reference made at birth,
    from what the function that held it returned."""
    site, frames, index = pending
    culprit = site.get("culprit")
    if culprit is None or index is None:
        return
    direct = unpaired_increfs(events, writes, frames[index].get("function"))
    if direct:
        e = events[direct[-1]]
        if e["file"] and e["line"]:
            site["culprit"] = dict(culprit, file=e["file"], line=e["line"],
                                   function=e["function"], reason=REASON_EXTRA_INCREF)
            site["culprit"].pop("in_interpreter", None)
            site["allocated_at"] = "%s:%s in %s()" % (site["file"], site["line"],
                                                      site["function"])
            site["source"] = [list(x) for x in source_context(e["file"], e["line"])]
            return
    try:
        owner = owner_return(frames, index, func, args, kwargs)
    except Exception:
        owner = None
    if owner is None:
        return
    level_index, returned, raised = owner
    frame = frames[level_index]
    where = "interpreter" if culprit.get("in_interpreter") else "user"
    if raised == 1:
        value = "NULL" if returned == 0 else ("-1" if returned & 0xffffffff == 0xffffffff
                                               else "%#x" % returned)
        reason = REASON_RETURNED_ERROR % value
    elif level_index != index:
        reason = REASON_RECEIVED % (_api_name(frames, level_index) or "a call")
    else:
        return
    site["culprit"] = culprit_dict(frame, where, reason)
    if level_index != index:
        for key in ("file", "line", "function", "module"):
            site[key] = frame.get(key)
        site["source"] = [list(x) for x in source_context(site["file"], site["line"])]


def owner_return(frames, index, func, args, kwargs):
    """Which function held the reference made at frames[index], and what it
    returned: (frame index of that function, return value, exception set:
    1/0/-1), or None when it cannot be seen.

    Execute breakpoints on the instruction after the call that made the
    object (its register holds the new pointer) and after the calls of the
    next candidate functions outward (a user function, or an interpreter
    function that is not API or plumbing): a function that receives the
    pointer from its call holds the reference next.  Four breakpoints a
    pass; a last pass watches the owner's own return into its caller."""
    chain, seen = [], set()
    for j in range(index, len(frames)):
        a = frames[j].get("address")
        if not a or a in seen:
            continue
        if j == index or frame_kind(frames[j]) == "user" or _interpreter_candidate(frames[j]):
            chain.append((j, a))
            seen.add(a)
    owner = 0
    pos = 0
    while pos + 1 < len(chain) and pos < 12:
        window = chain[pos:pos + 4]
        found = _received(window, func, args, kwargs)
        if found is None:
            return None
        owner = pos + found
        if found < len(window) - 1:
            break
        pos += len(window) - 1
    j, a = chain[owner]
    caller = next((f.get("address") for f in frames[j:] if f.get("address") not in (None, a)),
                  None)
    if caller is None:
        return None
    out = _core.returns([a, caller], func, tuple(args), kwargs or None, 1)
    if "error" in out:
        return None
    hits = out["hits"]
    start = _last_alive(hits, 0)
    if start is None:
        return None
    made = hits[start]
    ret = next((h for h in hits[start + 1:] if h[0] == 1 and h[3] > made[3]), None)
    if ret is None:
        return None
    return j, ret[2], ret[4]


def _last_alive(hits, which):
    """Index of the last hit of instruction `which` whose register holds a
    live object (the one that leaked), else of the last hit."""
    made = [i for i, h in enumerate(hits) if h[0] == which]
    if not made:
        return None
    alive = [i for i in made if _core.object_at(hits[i][2]) is not None]
    return (alive or made)[-1]


def _received(window, func, args, kwargs):
    """How far along window (frame index, instruction after a call) the
    pointer made at window[0] travelled: the position of the last function
    that received it; None when it cannot be seen."""
    out = _core.returns([a for _, a in window], func, tuple(args), kwargs or None, 1)
    if "error" in out:
        return None
    hits = out["hits"]
    start = _last_alive(hits, 0)
    if start is None:
        return None
    pointer, last, at = hits[start][2], hits[start], start
    for level in range(1, len(window)):
        nxt = next(((k, h) for k, h in enumerate(hits[at + 1:], at + 1)
                    if h[0] == level and h[3] > last[3]), None)
        if nxt is None or nxt[1][2] != pointer:
            return level - 1
        at, last = nxt
    return len(window) - 1
