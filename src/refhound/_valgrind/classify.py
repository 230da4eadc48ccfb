"""From memcheck's records to findings in the user's own code.

Input: the XML files of one `refhound valgrind` run (one per process).
Output: findings, each tied to a culprit line (the first frame in the
user's code) and, when refhound's markers say so, to the test or the call
that caused it.

Filtering.  A frame is the user's unless its object file is the
interpreter (executable, libpython, the standard library's extension
modules), a system library (/lib, /usr/lib, ...: libc, ld.so, libstdc++),
Valgrind's preloads or refhound itself.  --user/--not-user patterns (fnmatch
on the object or the source path) override.  A record with no user frame in
any of its stacks is interpreter noise and is dropped (and counted).

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
    """Which frames are the user's own code."""

    def __init__(self, info=None, include=(), exclude=(), extra_system=()):
        self.include = list(include)
        self.exclude = list(exclude)
        prefixes = list(SYSTEM_DIRS) + list(extra_system)
        exact = set()
        if info:
            for p in (info.get("realpath"), info.get("executable"), info.get("libpython")):
                if p:
                    exact.add(os.path.realpath(p))
            for d in info.get("stdlib") or []:
                if d:
                    prefixes.append(os.path.realpath(d).rstrip("/") + "/")
            if info.get("refhound_dir"):
                prefixes.append(os.path.realpath(info["refhound_dir"]).rstrip("/") + "/")
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        prefixes.append(os.path.realpath(here).rstrip("/") + "/")
        headers = list(HEADER_DIRS)
        for d in (info or {}).get("include") or []:
            if d:
                headers.append(os.path.realpath(d).rstrip("/") + "/")
                headers.append(d.rstrip("/") + "/")
        self.prefixes = tuple(prefixes)
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

    def _decide(self, frame):
        if self.include:
            return self._match(self.include, frame) and not self._match(self.exclude, frame)
        if self.exclude and self._match(self.exclude, frame):
            return False
        obj = frame.obj
        if not obj:
            return False
        if frame.path and frame.path.startswith(self.headers):
            return False    # inlined from Python's or the system's headers (Py_TYPE, memcpy)
        real = os.path.realpath(obj)
        if real in self.exact or obj in self.exact:
            return False
        base = os.path.basename(obj)
        if base.startswith(SYSTEM_NAMES):
            return False
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
    """Findings of one run (see the module docstring)."""

    def __init__(self):
        self.findings = []
        self.one_time = []
        self.processes = []
        self.scopes = []
        self.stats = {"errors_seen": 0, "errors_filtered": 0, "errors_startup": 0,
                      "leak_records_seen": 0, "leak_records_filtered": 0,
                      "at_exit_not_lost": 0}

    def to_dict(self):
        return {"findings": self.findings, "one_time": self.one_time,
                "processes": self.processes, "scopes": self.scopes, "stats": self.stats}


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
        _errors(proc, user, out, seen_errors)
        _leaks(proc, user, out, seen_leaks)
        _scope_summaries(proc, out)
    order = {"error": 0, "leak": 1, "growth": 2}
    out.findings.sort(key=lambda f: (order.get(f["category"], 9), f.get("scope") or "",
                                     f["culprit"]["file"] or "", f["culprit"]["line"] or 0))
    return out


def _errors(proc, user, out, seen):
    for err, scopes, phase in proc.errors:
        out.stats["errors_seen"] += 1
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
            if phase == "startup":
                out.stats["errors_startup"] += 1
            continue
        key = (kind, frame.fn, frame.path, frame.line, scopes[-1] if scopes else None)
        count = proc.counts.get(err.unique, 1)
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
    for stack, err in proc.records.items():
        out.stats["leak_records_seen"] += 1
        if culprit(stack) is None:
            out.stats["leak_records_filtered"] += 1
        else:
            user_stacks.add(stack)

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
                               "errors": fields.get("errors")})


def public(findings):
    """Findings without internal keys, for JSON."""
    return [{k: v for k, v in f.items() if not k.startswith("_")} for f in findings]
