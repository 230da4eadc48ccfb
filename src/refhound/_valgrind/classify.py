"""From memcheck's records to findings in the user's own code.

Input: the XML files of one `refhound valgrind` run (one per process).
Output: findings, each tied to a culprit line (the first frame in the
user's code) and, when refhound's markers say so, to the test or the call
that caused it.

Filtering.  A frame is the user's unless its object file is the
interpreter (executable, libpython, the standard library's extension
modules), a system library (/lib, /usr/lib, ...: libc, ld.so, libstdc++),
Valgrind's preloads or refhound itself; packages in site-packages are the
user's.  --user/--not-user patterns (fnmatch on the object or the source
path) override.  A record with no user frame in any of its stacks is noise:
it is dropped, and counted in groups that say where it came from (object,
functions, known behaviour: HINTS).

Uninitialised values the interpreter made.  CPython 3.11 hands out
pointers to its small int 0 that memcheck takes for uninitialised (see
SMALL_INT_FNS), and an extension that Py_INCREFs or Py_DECREFs such an int
gets the report in its own code.  With --track-origins the origin says who
made the value: the interpreter's are noise.  Without it, a report on an
object pointer (Py_INCREF, Py_DECREF, Py_TYPE) in the user's code, in a
process where the interpreter was seen making such pointers, is set aside:
listed, not a finding.

Errors.  The culprit is the first user frame of the access stack; when the
access happens in the interpreter (the classic extra Py_DECREF: the
interpreter touches a freed object later), the first user frame of the
free or allocation stack.  The kind comes from memcheck's kind and its
address description: use-after-free, overflow, underflow, double-free,
invalid-free, uninitialised, ...

Leaks.  Loss records are keyed by their allocation stack.  memcheck
prints a record again whenever it changes ("changed" leak searches), so
the blocks each allocation stack gained between two searches are known,
and the markers say which scope (a test, a checked call, one iteration of
a check) ran in between:

  * in a checked call, the gain per iteration: a stack that gains blocks in
    every measured iteration is a per-call leak (blocks per call = gain /
    calls); one that gains only in the first iterations is a one-time
    allocation (a cache, an import) and is not a finding;
  * in a test, the gain over the test: blocks that are lost (definitely or
    indirectly) are a leak of that test; blocks still referenced are
    reported as growth (a leaked object the interpreter still links, or a
    cache);
  * at exit, definitely and indirectly lost blocks not already tied to a
    scope are leaks at exit.  "Possibly lost" and "still reachable" records
    at exit are not findings: a Python object is pointed to 16 bytes into
    its block (past the GC header), which memcheck calls "possibly lost",
    and leaked container objects stay linked in the GC's lists.
"""
import fnmatch
import json
import os
import re

from .xmlparse import read_events

MARK = "refhound:"

SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/libexec/valgrind/",
               "/usr/local/lib/valgrind/", "/usr/lib/debug/")
HEADER_DIRS = ("/usr/include/",)
SYSTEM_NAMES = ("ld-linux", "ld64.so", "libc.so", "libc-", "libm.so", "libpthread", "libdl.so",
                "librt.so", "libgcc_s", "libstdc++", "vgpreload_", "libpython")

LOST = ("definite", "indirect")

UNINIT_KINDS = ("UninitValue", "UninitCondition")

# Allocation functions, the C library's and Python's: the frame that
# created a block (or an uninitialised value) is the first one below them.
# Python's "fill it yourself" constructors (PyBytes_FromStringAndSize(NULL,
# n), PyUnicode_New, _PyLong_New) are among them: their caller is the one
# that leaves the memory unwritten.
ALLOC_FNS = frozenset((
    "malloc", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "operator new(unsigned long)",
    "operator new[](unsigned long)", "_Znwm", "_Znam",
    "PyMem_RawMalloc", "PyMem_RawCalloc", "PyMem_RawRealloc", "_PyMem_RawMalloc",
    "_PyMem_RawCalloc", "_PyMem_RawRealloc", "PyMem_Malloc", "PyMem_Calloc", "PyMem_Realloc",
    "PyObject_Malloc", "PyObject_Calloc", "PyObject_Realloc", "_PyObject_Malloc",
    "_PyObject_Calloc", "_PyObject_Realloc", "_PyMem_DebugMalloc", "_PyMem_DebugCalloc",
    "_PyMem_DebugRealloc", "_PyMem_DebugRawMalloc", "_PyMem_DebugRawCalloc",
    "_PyMem_DebugRawRealloc", "_PyMem_DebugRawAlloc", "pymalloc_alloc", "pymalloc_realloc",
    "gc_alloc", "_PyObject_GC_New", "_PyObject_GC_NewVar", "_PyObject_GC_Malloc",
    "_PyObject_GC_Calloc", "_PyObject_GC_Alloc", "_PyObject_GC_Resize", "PyType_GenericAlloc",
    "_PyType_AllocNoTrack", "_PyObject_New", "_PyObject_NewVar", "PyObject_Init",
    "PyObject_InitVar", "PyBytes_FromStringAndSize", "_PyBytes_FromSize", "_PyBytes_Resize",
    "PyByteArray_FromStringAndSize", "PyByteArray_Resize", "PyUnicode_New", "_PyUnicode_New",
    "resize_compact", "resize_copy", "unicode_resize", "PyUnicode_Resize", "_PyLong_New",
    "vp_malloc", "vp_calloc", "vp_realloc", "small_alloc",
))

# Where memcheck's noise comes from when it is known behaviour, not a bug.
# CPython 3.11 reads the digit of a new zero int before writing it
# (maybe_small_long: Py_SIZE * ob_digit[0]; PyLong_FromString,
# _PyLong_FromByteArray, bitwise operations), so memcheck takes the
# pointer to the small int 0 it returns for an uninitialised value, and
# reports every later use of it: in the interpreter, and in an extension
# that is handed such an int (Py_INCREF, Py_DECREF, Py_TYPE on it).
SMALL_INT_FNS = frozenset(("maybe_small_long", "get_small_int", "medium_value",
                           "_PyLong_CompactValue"))
# the inlined accessors whose uninitialised operand is an object pointer
OBJECT_POINTER_FNS = frozenset((
    "Py_INCREF", "Py_DECREF", "Py_XINCREF", "Py_XDECREF", "_Py_INCREF", "_Py_DECREF",
    "_Py_XINCREF", "_Py_XDECREF", "Py_NewRef", "Py_XNewRef", "_Py_NewRef", "_Py_XNewRef",
    "Py_TYPE", "Py_IS_TYPE", "Py_SIZE", "Py_REFCNT", "Py_SET_REFCNT", "_Py_IsImmortal",
    "PyObject_TypeCheck", "_PyObject_IS_GC", "_Py_DECREF_SPECIALIZED", "_Py_DECREF_INT",
))
PYMALLOC_FNS = frozenset(("address_in_range", "pymalloc_free", "pymalloc_realloc",
                          "_PyObject_Free", "_PyObject_Realloc"))
LIBC_VECTOR = re.compile(r"^__\w+_(?:avx|sse|evex|ssse)\w*$")

HINTS = {
    "small-int": "CPython 3.11 reads the digit of a new zero int before writing it, so "
                 "memcheck takes every pointer to the small int 0 for an uninitialised "
                 "value, wherever it goes (harmless)",
    "interpreter-uninit": "uninitialised values the interpreter created (their origin has "
                          "no frame of your code)",
    "address-in-range": "pymalloc's address_in_range reads arena headers it never wrote, by "
                        "design (harmless; pymalloc was in use)",
    "libc-vector": "the C library's vectorised string routines read whole words past the "
                   "end of a block (harmless)",
    "loader": "the dynamic loader's own string routines while it loads a library "
              "(harmless)",
    "startup": "the interpreter starting, before the program ran",
    "refhound": "refhound's own engine reading the heap during a check",
}

# CPython's free lists: an object taken from one keeps the allocation
# stack of its first life, so a leaked one may show no frame of yours.
FREE_LIST_FNS = {"PyTuple_New": "tuple", "tuple_alloc": "tuple", "PyFloat_FromDouble": "float",
                 "PyList_New": "list", "new_dict": "dict", "PyDict_New": "dict",
                 "new_keys_object": "dict keys"}

# memcheck kind -> refhound kind, when the address description does not say more
ERROR_KINDS = {
    "InvalidRead": "invalid-read",
    "InvalidWrite": "invalid-write",
    "InvalidFree": "invalid-free",
    "MismatchedFree": "mismatched-free",
    "InvalidMemPool": "invalid-free",
    "UninitCondition": "uninitialised",
    "UninitValue": "uninitialised",
    "SyscallParam": "syscall-param",
    "ClientCheck": "client-check",
    "Overlap": "overlap",
    "FishyValue": "fishy-value",
    "InvalidJump": "invalid-jump",
    "ReallocSizeZero": "realloc-zero",
}


class UserFilter:
    """Which frames are the user's own code.

    Not the user's: the interpreter (its executable, libpython, the
    standard library's extension modules), system libraries, Valgrind's
    preloads, refhound, and code inlined from Python's or the system's
    headers.  Packages installed in site-packages are the user's: they are
    not the standard library, even where site-packages lies inside its
    folder (lib/pythonX.Y/site-packages on python.org and pyenv builds),
    and the package a suite tests is often installed there."""

    def __init__(self, info=None, include=(), exclude=(), extra_system=()):
        self.include = list(include)
        self.exclude = list(exclude)
        prefixes = list(SYSTEM_DIRS) + list(extra_system)
        own = []
        site = []
        exact = set()
        if info:
            for p in (info.get("realpath"), info.get("executable"), info.get("libpython")):
                if p:
                    exact.add(os.path.realpath(p))
            for d in info.get("stdlib") or []:
                if d:
                    prefixes.append(os.path.realpath(d).rstrip("/") + "/")
            for d in info.get("site") or []:
                if d:
                    site.append(os.path.realpath(d).rstrip("/") + "/")
                    site.append(d.rstrip("/") + "/")
            if info.get("refhound_dir"):
                own.append(os.path.realpath(info["refhound_dir"]).rstrip("/") + "/")
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        own.append(os.path.realpath(here).rstrip("/") + "/")
        headers = list(HEADER_DIRS)
        for d in (info or {}).get("include") or []:
            if d:
                headers.append(os.path.realpath(d).rstrip("/") + "/")
                headers.append(d.rstrip("/") + "/")
        self.prefixes = tuple(prefixes)
        self.own = tuple(own)
        self.site = tuple(site)
        self.headers = tuple(headers)
        self.exact = exact
        self._cache = {}

    def _match(self, patterns, frame):
        for pat in patterns:
            for text in (frame.obj, frame.path, frame.file):
                if text and fnmatch.fnmatch(text, pat):
                    return True
        return False

    def is_user(self, frame):
        key = (frame.obj, frame.path)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        hit = self._decide(frame)
        self._cache[key] = hit
        return hit

    def is_header(self, frame):
        """Inlined from Python's or the system's headers (Py_INCREF, memcpy)."""
        return bool(frame.path and frame.path.startswith(self.headers))

    def _decide(self, frame):
        if self.include:
            return self._match(self.include, frame) and not self._match(self.exclude, frame)
        if self.exclude and self._match(self.exclude, frame):
            return False
        obj = frame.obj
        if not obj:
            return False
        if self.is_header(frame):
            return False    # inlined from Python's or the system's headers (Py_TYPE, memcpy)
        real = os.path.realpath(obj)
        if real in self.exact or obj in self.exact:
            return False
        base = os.path.basename(obj)
        if base.startswith(SYSTEM_NAMES):
            return False
        if real.startswith(self.own) or obj.startswith(self.own):
            return False
        if self.site and (real.startswith(self.site) or obj.startswith(self.site)):
            return True     # an installed package, not the standard library
        if real.startswith(self.prefixes) or obj.startswith(self.prefixes):
            return False
        return True

    def first_user(self, frames):
        for i, f in enumerate(frames):
            if self.is_user(f):
                return i, f
        return None, None


def _culprit(frame, role):
    d = {"function": frame.fn, "file": frame.path, "line": frame.line, "object": frame.obj,
         "role": role}
    return d


def _frames(frames, limit=12):
    return [{"function": f.fn, "file": f.path, "line": f.line, "object": f.obj}
            for f in frames[:limit]]


def _error_kind(err):
    base = ERROR_KINDS.get(err.kind, err.kind or "error")
    desc = " ".join(a[0] for a in err.aux).lower()
    # "Address 0x0 is not stack'd, malloc'd or (recently) free'd" is a wild
    # pointer (NULL, garbage), not a block that was freed
    desc = desc.replace("not stack'd, malloc'd or (recently) free'd", "not a known block")
    if err.kind in ("InvalidRead", "InvalidWrite"):
        if " free'd" in desc or "freed" in desc:
            return "use-after-free"
        if "bytes after a block" in desc:
            return "overflow"
        if "bytes before a block" in desc:
            return "underflow"
    if err.kind in ("InvalidFree", "InvalidMemPool"):
        if " free'd" in desc:
            return "double-free"
    return base


def _aux_role(text):
    t = text.lower()
    if "free'd" in t or "freed" in t:
        return "free"
    if "alloc'd" in t or "allocated" in t:
        return "alloc"
    if "uninitialised value was created" in t:
        return "origin"
    return "aux"


def parse_marker(text):
    if not text.startswith(MARK):
        return None
    try:
        data = json.loads(text[len(MARK):].strip())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class _Search:
    """One leak search: the blocks each allocation stack gained."""

    __slots__ = ("mode", "scopes", "gains", "iteration", "anonymous")

    def __init__(self, mode, scopes, anonymous=False):
        self.mode = mode
        self.scopes = scopes            # tuple of (kind, name), outermost first
        self.gains = {}                 # stack key -> {leak kind: (blocks, bytes)}
        self.iteration = None           # {"phase", "index", "calls"} when marked
        self.anonymous = anonymous


class _Process:
    def __init__(self, path):
        self.path = path
        self.pid = None
        self.ppid = None
        self.argv = []
        self.booted = False
        self.allocator = None
        self.scopes = []                # open scopes: (kind, name)
        self.totals = {}                # (leak kind, stack key) -> (blocks, bytes)
        self.records = {}               # stack key -> Error (latest record)
        self.searches = []
        self.current = None             # the search being printed, or None
        self.errors = []                # (Error, scopes tuple, phase)
        self.exit_records = []
        self.finished = False
        self.truncated = None
        self.counts = {}
        self.suppcounts = {}            # suppression name -> times it matched
        self.scope_log = []             # ("begin"|"end", kind, name, fields)


def read_process(path):
    proc = _Process(path)
    last_record_no = None
    for ev, payload in read_events(path):
        if ev == "process":
            proc.pid, proc.ppid, proc.argv = payload["pid"], payload["ppid"], payload["argv"]
        elif ev == "message":
            m = parse_marker(payload)
            if m is None:
                continue
            kind = m.get("ev")
            if kind == "boot":
                proc.booted = True
                proc.allocator = m.get("allocator")
            elif kind == "search":
                proc.current = _Search(m.get("mode", "changed"), tuple(proc.scopes))
                proc.searches.append(proc.current)
                last_record_no = None
            elif kind == "iter":
                if proc.searches:
                    proc.searches[-1].iteration = {
                        "phase": m.get("phase"), "index": m.get("index"),
                        "calls": m.get("calls") or 1}
                proc.current = None
            elif kind == "begin":
                proc.scopes.append((m.get("kind", "test"), m.get("name")))
                proc.scope_log.append(("begin", m.get("kind", "test"), m.get("name"), m))
                proc.current = None
            elif kind == "end":
                key = (m.get("kind", "test"), m.get("name"))
                if key in proc.scopes:
                    idx = len(proc.scopes) - 1 - proc.scopes[::-1].index(key)
                    del proc.scopes[idx:]
                proc.scope_log.append(("end", key[0], key[1], m))
                proc.current = None
        elif ev == "error":
            err = payload
            if err.is_leak:
                if proc.finished:
                    proc.exit_records.append(err)
                    continue
                no = _record_number(err.what)
                if proc.current is None or (no is not None and last_record_no is not None
                                            and no <= last_record_no):
                    # a search refhound did not mark (VALGRIND_DO_LEAK_CHECK by hand)
                    proc.current = _Search("unknown", tuple(proc.scopes), anonymous=True)
                    proc.searches.append(proc.current)
                last_record_no = no
                _account(proc, proc.current, err)
            else:
                phase = "run" if proc.booted else "startup"
                proc.errors.append((err, tuple(proc.scopes), phase))
        elif ev == "finished":
            proc.finished = True
        elif ev == "counts":
            proc.counts = payload
        elif ev == "suppcounts":
            proc.suppcounts = payload
        elif ev == "truncated":
            proc.truncated = payload
    return proc


_RECORD_RE = re.compile(r"loss record ([\d,]+) of ([\d,]+)")


def _record_number(text):
    m = _RECORD_RE.search(text or "")
    return int(m.group(1).replace(",", "")) if m else None


def _account(proc, search, err):
    stack = err.stack_key()
    key = (err.leak_kind, stack)
    blocks, nbytes = err.leaked_blocks or 0, err.leaked_bytes or 0
    old_blocks, old_bytes = proc.totals.get(key, (0, 0))
    proc.totals[key] = (blocks, nbytes)
    proc.records[stack] = err
    db, dby = blocks - old_blocks, nbytes - old_bytes
    if db or dby:
        g = search.gains.setdefault(stack, {})
        pb, pby = g.get(err.leak_kind, (0, 0))
        g[err.leak_kind] = (pb + db, pby + dby)


def _sum_gain(gain, kinds=None):
    b = by = 0
    for k, (x, y) in gain.items():
        if kinds is None or k in kinds:
            b += x
            by += y
    return b, by


class Analysis:
    """Findings of one run (see the module docstring).

    Besides the findings: `noise`, what was left out and where it came
    from (groups of errors and loss records with their object, functions,
    counts and, for known behaviour, a hint key of HINTS); `set_aside`,
    reports in the user's code that are most likely the interpreter's
    (uninitialised object pointers when the interpreter is seen making
    them, without --track-origins to tell for sure); `user_objects`, the
    object files counted as the user's that appeared in any record."""

    def __init__(self):
        self.findings = []
        self.one_time = []
        self.processes = []
        self.scopes = []
        self.set_aside = []
        self.user_objects = {}
        self.stats = {"errors_seen": 0, "errors_filtered": 0, "errors_startup": 0,
                      "errors_from_interpreter": 0, "errors_set_aside": 0,
                      "error_occurrences_seen": 0, "error_occurrences_filtered": 0,
                      "leak_records_seen": 0, "leak_records_filtered": 0,
                      "leak_records_reused": 0, "at_exit_not_lost": 0}
        self._error_groups = {}
        self._leak_groups = {}
        self.suppressions_used = {}

    @property
    def noise(self):
        errors = sorted(self._error_groups.values(),
                        key=lambda g: (-g["occurrences"], -g["distinct"], g["object"] or ""))
        leaks = sorted(self._leak_groups.values(),
                       key=lambda g: (-g["records"], g["object"] or "", g["function"] or ""))
        return {"errors": [_public_group(g) for g in errors],
                "leak_records": [_public_group(g) for g in leaks],
                "suppressions_used": dict(self.suppressions_used),
                "hints": {k: HINTS[k] for k in
                          sorted({g["hint"] for g in errors + leaks if g.get("hint")})}}

    def to_dict(self):
        return {"findings": self.findings, "one_time": self.one_time,
                "processes": self.processes, "scopes": self.scopes, "stats": self.stats,
                "noise": self.noise, "set_aside": self.set_aside,
                "user_objects": sorted(self.user_objects)}


def _public_group(g):
    out = {k: v for k, v in g.items() if not k.startswith("_")}
    out["functions"] = [fn for fn, _ in sorted(g["_functions"].items(),
                                               key=lambda kv: (-kv[1], kv[0]))][:6]
    if "_kinds" in g:
        out["kinds"] = [k for k, _ in sorted(g["_kinds"].items(),
                                             key=lambda kv: (-kv[1], kv[0]))][:3]
    return out


def analyze(paths, user):
    """Read every XML file and return an Analysis."""
    out = Analysis()
    seen_errors = {}
    seen_leaks = {}
    for path in sorted(paths):
        proc = read_process(path)
        out.processes.append({"pid": proc.pid, "ppid": proc.ppid, "argv": proc.argv,
                              "allocator": proc.allocator, "file": path,
                              "finished": proc.finished, "truncated": proc.truncated})
        for name, n in proc.suppcounts.items():
            out.suppressions_used[name] = out.suppressions_used.get(name, 0) + n
        _errors(proc, user, out, seen_errors)
        _leaks(proc, user, out, seen_leaks)
        _scope_summaries(proc, out)
    order = {"error": 0, "leak": 1, "growth": 2}
    out.findings.sort(key=lambda f: (order.get(f["category"], 9), f.get("scope") or "",
                                     f["culprit"]["file"] or "", f["culprit"]["line"] or 0))
    out.set_aside.sort(key=lambda f: (f["culprit"]["file"] or "", f["culprit"]["line"] or 0))
    _scope_counts(out)
    return out


def _fns(frames):
    return {f.fn for f in frames if f.fn}


def _creator(frames, user):
    """The frame that made a block or a value: the first one below the
    allocation functions (the C library's, Python's, refhound's pool)."""
    for f in frames:
        if f.fn in ALLOC_FNS:
            continue
        if f.obj and os.path.basename(f.obj).startswith("vgpreload_"):
            continue
        if f.obj and (f.obj.startswith(user.own) or
                      os.path.realpath(f.obj).startswith(user.own)):
            continue
        return f
    return None


def _origin(err):
    """The stack memcheck gives for where an uninitialised value was
    created (--track-origins), or None."""
    for text, frames in err.aux:
        if "uninitialised value was created" in text.lower():
            return frames
    return None


def small_int_evidence(proc):
    """Has this process's interpreter been seen making undefined pointers
    to its small ints (an error or a matched suppression in
    maybe_small_long / get_small_int)?"""
    for name in proc.suppcounts:
        if name.rpartition(":")[2] in SMALL_INT_FNS:
            return True
    for err, _, _ in proc.errors:
        if err.kind in UNINIT_KINDS:
            if _fns(err.stack) & SMALL_INT_FNS:
                return True
            origin = _origin(err)
            if origin and "_PyLong_New" in _fns(origin):
                return True
    return False


def _interpreter_uninit(err, user, evidence):
    """For an uninitialised value reported in the user's code: ("certain",
    hint) when memcheck's origin (--track-origins) shows the interpreter
    created it; ("likely", "small-int") when, without an origin, the value
    is an object pointer (Py_INCREF, Py_DECREF, Py_TYPE on it) and the
    interpreter was seen making undefined small-int pointers; else None."""
    if err.kind not in UNINIT_KINDS:
        return None
    origin = _origin(err)
    if origin:
        made_by = _creator(origin, user)
        if made_by is not None and not user.is_user(made_by):
            fns = _fns(origin) | _fns(err.stack)
            return "certain", ("small-int" if "_PyLong_New" in fns or fns & SMALL_INT_FNS
                               else "interpreter-uninit")
        return None
    if evidence and err.stack and err.stack[0].fn in OBJECT_POINTER_FNS:
        return "likely", "small-int"
    return None


def _noise_hint(err, phase, evidence, user):
    """The HINTS key of a record with no frame of the user's, or None."""
    fns = _fns(err.stack)
    for f in err.stack:
        if f.obj and not user.is_header(f):
            if f.obj.startswith(user.own) or os.path.realpath(f.obj).startswith(user.own):
                return "refhound"
            break
    if err.kind in UNINIT_KINDS:
        if fns & SMALL_INT_FNS:
            return "small-int"
        if "address_in_range" in fns:
            return "address-in-range"
        origin = _origin(err)
        if origin and "_PyLong_New" in _fns(origin):
            return "small-int"
        if evidence:
            return "small-int"
    if fns & PYMALLOC_FNS and "address_in_range" in fns:
        return "address-in-range"
    top = err.stack[0] if err.stack else None
    if (err.kind in ("InvalidRead", "Overlap") and top is not None and top.fn
            and LIBC_VECTOR.match(top.fn) and top.obj
            and os.path.basename(top.obj).startswith(("libc.so", "libc-"))):
        return "libc-vector"
    if top is not None and top.obj and os.path.basename(top.obj).startswith(
            ("ld-linux", "ld64.so", "ld.so")):
        return "loader"
    if phase == "startup":
        return "startup"
    return None


def _where_from(frames, user):
    """(object basename, function) of the first frame not inlined from a
    header (Py_INCREF in object.h names its caller)."""
    for f in frames:
        if not user.is_header(f) and not (f.file or "").endswith(".h"):
            return (os.path.basename(f.obj) if f.obj else None), f.fn
    if frames:
        f = frames[0]
        return (os.path.basename(f.obj) if f.obj else None), f.fn
    return None, None


def _note_error_noise(out, user, err, count, hint):
    obj, fn = _where_from(err.stack, user)
    key = ("hint", hint) if hint else ("site", obj, fn)
    g = out._error_groups.get(key)
    if g is None:
        g = out._error_groups[key] = {"hint": hint, "object": obj, "distinct": 0,
                                      "occurrences": 0, "in_your_code": 0,
                                      "_functions": {}, "_kinds": {}, "_objects": set()}
    g["distinct"] += 1
    g["occurrences"] += count
    g["_functions"][fn] = g["_functions"].get(fn, 0) + count
    g["_kinds"][err.what] = g["_kinds"].get(err.what, 0) + count
    if obj:
        g["_objects"].add(obj)
        if len(g["_objects"]) > 1:
            g["object"] = ", ".join(sorted(g["_objects"]))
    return g


def _note_user_objects(out, user, err):
    for frames in [err.stack] + [fr for _, fr in err.aux]:
        for f in frames:
            if f.obj and user.is_user(f):
                out.user_objects[os.path.basename(f.obj)] = f.obj


def _errors(proc, user, out, seen):
    evidence = small_int_evidence(proc)
    set_aside = {}
    for err, scopes, phase in proc.errors:
        count = proc.counts.get(err.unique, 1)
        out.stats["errors_seen"] += 1
        out.stats["error_occurrences_seen"] += count
        kind = _error_kind(err)
        _, access = user.first_user(err.stack)
        sites = {}
        for text, frames in err.aux:
            _, f = user.first_user(frames)
            if f is not None:
                sites.setdefault(_aux_role(text), f)
        # The culprit: where the access happened, except for a use after
        # free, where the release that came too early (an extra Py_DECREF,
        # a Py_DECREF before the last use) is the line to change.
        if kind == "use-after-free" and "free" in sites:
            frame, role = sites["free"], "free"
        elif access is not None:
            frame, role = access, "access"
        else:
            role = next(iter(sites), None)
            frame = sites.get(role)
        if frame is None:
            out.stats["errors_filtered"] += 1
            out.stats["error_occurrences_filtered"] += count
            if phase == "startup":
                out.stats["errors_startup"] += 1
            _note_error_noise(out, user, err, count, _noise_hint(err, phase, evidence, user))
            continue
        _note_user_objects(out, user, err)
        quirk = _interpreter_uninit(err, user, evidence)
        if quirk is not None and quirk[0] == "certain":
            # in the user's code, but a value the interpreter made
            out.stats["errors_from_interpreter"] += 1
            g = _note_error_noise(out, user, err, count, quirk[1])
            g["in_your_code"] += 1
            continue
        scope = scopes[-1] if scopes else None
        if quirk is not None:
            out.stats["errors_set_aside"] += 1
            key = (frame.fn, frame.path, frame.line, scope)
            if key in set_aside:
                set_aside[key]["count"] += count
                continue
            set_aside[key] = {"kind": kind, "memcheck_kind": err.kind, "what": err.what,
                              "reason": quirk[1], "culprit": _culprit(frame, role),
                              "scope": scope[1] if scope else None, "count": count,
                              "pid": proc.pid, "stack": _frames(err.stack)}
            out.set_aside.append(set_aside[key])
            continue
        key = (kind, frame.fn, frame.path, frame.line, scope)
        if key in seen:
            seen[key]["count"] += count
            if proc.pid not in seen[key]["pids"]:
                seen[key]["pids"].append(proc.pid)
            continue
        f = {
            "category": "error", "kind": kind, "memcheck_kind": err.kind, "what": err.what,
            "culprit": _culprit(frame, role),
            "sites": {r: _culprit(f, r) for r, f in
                      ([("access", access)] if access is not None else []) + list(sites.items())},
            "scope": scopes[-1][1] if scopes else None,
            "scope_kind": scopes[-1][0] if scopes else None,
            "scope_path": [s[1] for s in scopes],
            "count": count, "pids": [proc.pid],
            "stack": _frames(err.stack),
            "aux": [{"what": t, "stack": _frames(fr)} for t, fr in err.aux if t or fr],
        }
        seen[key] = f
        out.findings.append(f)


def _leak_culprit(user, err):
    if err is None:
        return None
    _, frame = user.first_user(err.stack)
    return frame


def _leaks(proc, user, out, seen):
    culprit_of = {}

    def culprit(stack):
        if stack not in culprit_of:
            culprit_of[stack] = _leak_culprit(user, proc.records.get(stack))
        return culprit_of[stack]

    user_stacks = set()
    noise_stacks = []
    for stack, err in proc.records.items():
        out.stats["leak_records_seen"] += 1
        if culprit(stack) is None:
            out.stats["leak_records_filtered"] += 1
            noise_stacks.append(stack)
        else:
            user_stacks.add(stack)
            _note_user_objects(out, user, err)

    reported = set()
    # 1. checked calls: gains per iteration
    by_call = {}
    for s in proc.searches:
        if s.iteration is None or not s.scopes:
            continue
        by_call.setdefault(s.scopes, []).append(s)
    for scopes, searches in by_call.items():
        _classify_iterations(proc, user, out, seen, scopes, searches, culprit, user_stacks,
                             reported)
    # 2. tests (and calls with no iterations): gain over the scope
    gains = {}
    for s in proc.searches:
        if not s.scopes:
            continue
        for depth in range(len(s.scopes)):
            scopes = s.scopes[:depth + 1]
            if scopes[-1][0] == "call" and scopes in by_call:
                continue
            for stack, gain in s.gains.items():
                if stack not in user_stacks:
                    continue
                g = gains.setdefault((scopes, stack), {})
                for k, (b, by) in gain.items():
                    pb, pby = g.get(k, (0, 0))
                    g[k] = (pb + b, pby + by)
    for (scopes, stack), gain in gains.items():
        if any(st == stack and sc[:len(scopes)] == scopes for sc, st in reported):
            continue      # a checked call inside this scope already classified it
        # attribute to the innermost scope only
        inner = [k for k in gains if k[1] == stack and len(k[0]) > len(scopes)
                 and k[0][:len(scopes)] == scopes and _sum_gain(gains[k])[0] > 0]
        if inner:
            continue
        lost_b, lost_by = _sum_gain(gain, LOST)
        all_b, all_by = _sum_gain(gain)
        if all_b <= 0 and lost_b <= 0:
            continue
        err = proc.records[stack]
        frame = culprit(stack)
        if lost_b > 0:
            category, blocks, nbytes, cls = "leak", lost_b, lost_by, "lost-in-scope"
        else:
            category, blocks, nbytes, cls = "growth", all_b, all_by, "grew-in-scope"
        key = (category, frame.fn, frame.path, frame.line, scopes[-1])
        if key in seen:
            _merge(seen[key], proc, err, blocks, nbytes, gain)
            reported.add((scopes, stack))
            continue
        f = _leak_finding(proc, err, frame, category, cls, scopes, blocks, nbytes, gain)
        seen[key] = f
        reported.add((scopes, stack))
        out.findings.append(f)
    # objects reused from CPython's free lists, lost in a scope with a leak
    # of the same type in the user's code
    reused = _attach_reused(proc, out, user_stacks, noise_stacks)
    for stack in noise_stacks:
        _note_leak_noise(out, user, proc.records[stack], stack in reused)
    # 3. at exit
    tied = {stack for (_, stack) in reported}
    for err in proc.exit_records:
        stack = err.stack_key()
        frame = culprit(stack) if stack in proc.records else _leak_culprit(user, err)
        if frame is None:
            continue
        if err.leak_kind not in LOST:
            out.stats["at_exit_not_lost"] += 1
            continue
        if stack in tied:
            for f in out.findings:
                if (proc.pid, stack) in f.get("_stacks", ()):
                    f["lost_at_exit"] = {"blocks": err.leaked_blocks, "bytes": err.leaked_bytes}
            continue
        key = ("leak", frame.fn, frame.path, frame.line, None, err.leak_kind)
        if key in seen:
            _merge(seen[key], proc, err, err.leaked_blocks, err.leaked_bytes,
                   {err.leak_kind: (err.leaked_blocks, err.leaked_bytes)})
            continue
        f = _leak_finding(proc, err, frame, "leak", "lost-at-exit", (), err.leaked_blocks,
                          err.leaked_bytes, {err.leak_kind: (err.leaked_blocks, err.leaked_bytes)})
        seen[key] = f
        out.findings.append(f)


def free_list_type(frames):
    """The type whose free list may have served this allocation stack
    (PyTuple_New: "tuple"), or None."""
    for f in frames:
        t = FREE_LIST_FNS.get(f.fn)
        if t:
            return t
    return None


def _attach_reused(proc, out, user_stacks, noise_stacks):
    """Lost blocks in a scope whose allocation stack has no frame of the
    user's but goes through a free-list constructor (PyTuple_New, ...):
    objects the leaking code took from a free list, which keep the
    allocation stack of their first life.  They are added, as `reused`, to
    the user's leak of the same type in the same scope (a test, or the
    measured iterations of a checked call); returns the stacks attached."""
    leaks = {}
    for f in out.findings:
        if f["category"] != "leak" or f.get("class") not in ("lost-in-scope", "per-call"):
            continue
        pid, stack = f["_stack"]
        if pid != proc.pid or stack not in proc.records:
            continue
        kind = free_list_type(proc.records[stack].stack)
        if kind:
            leaks.setdefault((f["scope"], kind), []).append(f)
    if not leaks:
        return set()
    candidates = {st: free_list_type(proc.records[st].stack) for st in noise_stacks}
    attached = set()
    for s in proc.searches:
        if not s.scopes:
            continue
        scope = s.scopes[-1][1]
        for stack, gain in s.gains.items():
            kind = candidates.get(stack)
            if kind is None or stack in user_stacks:
                continue
            targets = leaks.get((scope, kind))
            if not targets:
                continue
            f = max(targets, key=lambda x: x["blocks"])
            if f["class"] == "per-call" and (s.iteration is None or
                                             s.iteration.get("phase") != "measuring"):
                continue
            b, by = _sum_gain(gain, LOST)
            if b <= 0:
                continue
            r = f.setdefault("reused", {"type": kind, "blocks": 0, "bytes": 0})
            r["blocks"] += b
            r["bytes"] += by
            if f["class"] == "per-call":
                calls = f["iterations"]["calls"]
                r["per_call"] = {"blocks": round(r["blocks"] / calls, 4),
                                 "bytes": round(r["bytes"] / calls, 2)}
            if stack not in attached:
                attached.add(stack)
                out.stats["leak_records_reused"] += 1
    return attached


def _note_leak_noise(out, user, err, reused):
    made_by = _creator(err.stack, user)
    obj = os.path.basename(made_by.obj) if made_by is not None and made_by.obj else None
    fn = made_by.fn if made_by is not None else None
    key = (obj, fn, reused)
    g = out._leak_groups.get(key)
    if g is None:
        g = out._leak_groups[key] = {"hint": None, "object": obj, "function": fn,
                                     "records": 0, "reused": reused, "_functions": {}}
    g["records"] += 1
    g["_functions"][fn] = g["_functions"].get(fn, 0) + 1


def _merge(f, proc, err, blocks, nbytes, gain):
    """Add another allocation stack with the same culprit line (a list and
    its item array, both from one PyList_New) to a finding.  Within one
    process the figures add up; another process (a forked child that
    inherited the same leak) is only listed.  Returns True when added."""
    stack = (proc.pid, err.stack_key())
    if stack in f["_stacks"]:
        return False
    if proc.pid not in f["pids"]:
        f["pids"].append(proc.pid)
        f["_stacks"].add(stack)
        return False
    f["_stacks"].add(stack)
    f["blocks"] += blocks or 0
    f["bytes"] += nbytes or 0
    kinds = set(f["leak_kinds"]) | {k for k, (b, _) in gain.items() if b > 0}
    f["leak_kinds"] = sorted(kinds)
    return True


def _leak_finding(proc, err, frame, category, cls, scopes, blocks, nbytes, gain):
    kinds = sorted(k for k, (b, _) in gain.items() if b > 0)
    return {
        "category": category, "kind": "leak" if category == "leak" else "growth",
        "class": cls, "memcheck_kind": err.kind, "leak_kinds": kinds,
        "what": err.what,
        "culprit": _culprit(frame, "alloc"),
        "scope": scopes[-1][1] if scopes else None,
        "scope_kind": scopes[-1][0] if scopes else None,
        "scope_path": [s[1] for s in scopes],
        "blocks": blocks, "bytes": nbytes, "pids": [proc.pid],
        "stack": _frames(err.stack),
        "_stack": (proc.pid, err.stack_key()),
        "_stacks": {(proc.pid, err.stack_key())},
    }


def _classify_iterations(proc, user, out, seen, scopes, searches, culprit, user_stacks,
                         reported):
    measured = [s for s in searches if s.iteration.get("phase") == "measuring"]
    warm = [s for s in searches if s.iteration.get("phase") != "measuring"]
    if not measured:
        return
    calls = sum(int(s.iteration.get("calls") or 1) for s in measured)
    stacks = set()
    for s in searches:
        stacks.update(st for st in s.gains if st in user_stacks)
    for stack in stacks:
        series = [_sum_gain(s.gains.get(stack, {})) for s in measured]
        warm_series = [_sum_gain(s.gains.get(stack, {}))[0] for s in warm]
        grew = [b for b, _ in series]
        total_b = sum(grew)
        total_by = sum(by for _, by in series)
        positive = sum(1 for b in grew if b > 0)
        half = grew[len(grew) // 2:]
        err = proc.records[stack]
        frame = culprit(stack)
        gain = {}
        for s in measured:
            for k, (b, by) in s.gains.get(stack, {}).items():
                pb, pby = gain.get(k, (0, 0))
                gain[k] = (pb + b, pby + by)
        if total_b > 0 and positive >= max(1, (3 * len(grew) + 3) // 4) and sum(half) > 0:
            key = ("leak", frame.fn, frame.path, frame.line, scopes[-1])
            if key in seen:
                f = seen[key]
                if _merge(f, proc, err, total_b, total_by, gain):
                    f["per_call"] = {"blocks": round(f["blocks"] / calls, 4),
                                     "bytes": round(f["bytes"] / calls, 2)}
                    f["iterations"]["series"] = [a + b for a, b in
                                                 zip(f["iterations"]["series"], grew)]
                reported.add((scopes, stack))
                continue
            f = _leak_finding(proc, err, frame, "leak", "per-call", scopes, total_b, total_by,
                              gain)
            f["per_call"] = {"blocks": round(total_b / calls, 4),
                             "bytes": round(total_by / calls, 2)}
            f["iterations"] = {"measured": len(grew), "grew": positive, "calls": calls,
                               "series": grew}
            seen[key] = f
            reported.add((scopes, stack))
            out.findings.append(f)
        elif sum(warm_series) > 0 or total_b > 0:
            out.one_time.append({
                "culprit": _culprit(frame, "alloc"), "scope": scopes[-1][1],
                "blocks": sum(warm_series) + max(total_b, 0),
                "warmup_series": warm_series, "measured_series": grew,
                "memcheck_kind": err.kind})
            reported.add((scopes, stack))


def _scope_summaries(proc, out):
    for what, kind, name, fields in proc.scope_log:
        if what == "end":
            out.scopes.append({"kind": kind, "name": name, "pid": proc.pid,
                               "errors": 0, "error_occurrences": 0, "leaks": 0,
                               "memcheck_errors": fields.get("errors")})


def _scope_counts(out):
    """Each scope's figures in the user's code: `errors` (distinct errors
    memcheck first reported in it), `error_occurrences` (how often those
    happened in the whole run: memcheck counts repeats of a known error,
    not where they happen), `leaks`, `set_aside`.  `memcheck_errors` is
    memcheck's own count over the scope, the interpreter's noise
    included."""
    by_name = {}
    for sc in out.scopes:
        by_name.setdefault(sc["name"], sc)
    for f in out.findings:
        sc = by_name.get(f.get("scope"))
        if sc is None:
            continue
        if f["category"] == "error":
            sc["errors"] += 1
            sc["error_occurrences"] += f.get("count", 1)
        elif f["category"] == "leak":
            sc["leaks"] += 1
    for f in out.set_aside:
        sc = by_name.get(f.get("scope"))
        if sc is not None:
            sc["set_aside"] = sc.get("set_aside", 0) + 1


def public(findings):
    """Findings without internal keys, for JSON."""
    return [{k: v for k, v in f.items() if not k.startswith("_")} for f in findings]
