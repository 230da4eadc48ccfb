"""--sanitize: memory errors found by the guard allocator (src/core/guard.c).

The check runs in a forked child with the guard installed under the mem
and obj domains before anything else (so refhound's own tracking hooks
chain onto it).  The first memory error ends the child: the guard writes
a report (kind, raw return addresses of the access, allocation and free
stacks, the object's type, a copy of /proc/self/maps) to a file the
parent made, and the child dies of the signal.  The parent reads the
report, symbolizes the addresses with the maps (addr2line, one run per
object file) and names the culprit: the first frame in the user's code of
the free stack for a use after free (the release that came too early: an
extra Py_DECREF), of the access stack otherwise (the overflowing write,
the second free).

An overflow or underflow found in a red zone when the block was freed
(the write missed the guard page: alignment slack, or before the block's
start) has no access stack.  The parent then replays the check once with
blocks of that size guarded only, placed to the byte against the guard
page (overflow) or at the start of their pages (underflow): a
deterministic target faults at the writing instruction this time.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

from ._valgrind.classify import UserFilter
from ._valgrind.xmlparse import Frame
from .options import SANITIZE_RATE

DEFAULT_RATE = SANITIZE_RATE   # every block while the budget lasts
DEFAULT_BUDGET = 256 << 20     # bytes of pages for guarded blocks
FRAMES_SHOWN = 12
REPLAY_KINDS = {"overflow": {"exact": True}, "underflow": {"left": True}}


class Sanitizer:
    """One --sanitize run: the report file, the child's setup, the reading."""

    def __init__(self, rate=DEFAULT_RATE, budget=DEFAULT_BUDGET, replay=None):
        self.rate = rate
        self.budget = budget
        self.replay = replay or {}
        fd, self.path = tempfile.mkstemp(prefix="refhound-guard-", suffix=".txt")
        os.close(fd)

    def install(self):
        """In the child, first thing: the guard under the allocators."""
        from . import _core
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
        _core.guard_start(fd, rate=self.rate, budget=self.budget, **self.replay)

    def has_report(self):
        """Did the guard write a report?"""
        try:
            with open(self.path, "rb") as fh:
                return fh.read(16) == b"refhound-guard 1"
        except OSError:
            return False

    def collect(self):
        """The memory errors the child reported ([] when none), then the
        report file is removed."""
        try:
            with open(self.path, "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        finally:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        raw = parse_report(text)
        return [] if raw is None else [to_memory_error(raw)]


def run_sanitized(run_in_child, work, rate=DEFAULT_RATE, budget=DEFAULT_BUDGET):
    """Run work() in a forked child under the guard: run_in_child(work,
    crashed) is the front end's child runner (crashed(signal) -> True when
    the guard wrote a report: the runner then says nothing of a crash).
    Returns (exit status of the child, memory errors).  A red-zone finding
    is replayed once."""
    san = Sanitizer(rate, budget)
    code = run_in_child(lambda: (san.install(), work())[1], lambda sig: san.has_report())
    errors = san.collect()
    if errors and errors[0]["detected"] == "free" and errors[0]["kind"] in REPLAY_KINDS \
            and errors[0].get("size"):
        first = errors[0]
        replay = dict(REPLAY_KINDS[first["kind"]], only_size=first["size"])
        again = Sanitizer(1, budget, replay)
        sys.stderr.write("refhound: %s found when the block was freed; replaying with the "
                         "blocks of %d bytes guarded to the byte, to catch the write itself\n"
                         % (first["kind"], first["size"]))
        run_in_child(lambda: (again.install(), work())[1], lambda sig: True)
        caught = again.collect()
        if caught and caught[0]["kind"] == first["kind"] and caught[0]["access"] \
                and caught[0]["detected"] == "fault":
            errors = _replayed(first, caught)
    return code, errors


def _replayed(first, caught):
    """The replay's error, with the type the first run saw at free."""
    e = dict(caught[0])
    if not e.get("type"):
        e["type"] = first.get("type")
    e["replayed"] = True
    return [e] + caught[1:]


def continue_sanitized(target, rate=DEFAULT_RATE, budget=DEFAULT_BUDGET, before_report=None):
    """For pytest --refhound-sanitize: fork; the child returns (and runs
    the session under the guard), this process waits, prints the first
    memory error to stderr and ends with the child's status (1 on a memory
    error).  A red-zone finding is replayed by forking again.
    before_report() runs in this process before it writes (pytest: stop
    capturing)."""
    def fork_child():
        sys.stdout.flush()
        sys.stderr.flush()
        return os.fork()

    def wait(pid):
        while True:
            try:
                return os.waitpid(pid, 0)[1]
            except InterruptedError:
                continue

    import signal
    san = Sanitizer(rate, budget)
    pid = fork_child()
    if pid == 0:
        san.install()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    status = wait(pid)
    errors = san.collect()
    notes = []
    if errors and errors[0]["detected"] == "free" and errors[0]["kind"] in REPLAY_KINDS \
            and errors[0].get("size"):
        first = errors[0]
        again = Sanitizer(1, budget, dict(REPLAY_KINDS[first["kind"]], only_size=first["size"]))
        notes.append("refhound: %s found when the block was freed; ran again with the "
                     "blocks of %d bytes guarded to the byte\n" % (first["kind"], first["size"]))
        pid = fork_child()
        if pid == 0:
            again.install()
            return
        wait(pid)
        caught = again.collect()
        if caught and caught[0]["kind"] == first["kind"] and caught[0]["detected"] == "fault":
            errors = _replayed(first, caught)
    if before_report is not None:
        before_report()
    if errors:
        os.write(2, ("".join(notes) + render(target, errors)).encode())
        os._exit(1)
    if os.WIFSIGNALED(status):
        os.write(2, ("refhound: the run crashed with signal %d (no memory error was caught "
                     "in a guarded block)\n" % os.WTERMSIG(status)).encode())
        os._exit(3)
    os._exit(os.WEXITSTATUS(status))


# ---------------------------------------------------------------------------
# The report


def parse_report(text):
    """The guard's report as a dict of raw fields, or None."""
    if not text.startswith("refhound-guard 1\n"):
        return None
    head, _, maps = text.partition("\nmaps\n")
    raw = {"maps": maps}
    for line in head.splitlines()[1:]:
        key, _, value = line.partition(" ")
        if key in ("access", "allocated", "freed"):
            raw[key] = [int(x, 16) for x in value.split()]
        elif key in ("address", "block"):
            raw[key] = int(value, 16)
        elif key == "size":
            raw[key] = int(value)
        else:
            raw[key] = value
    return raw


def parse_maps(text):
    """[(start, end, offset, path)] of the file-backed mappings."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append((lo, hi, int(parts[2], 16), parts[5].strip()))
    return out


def _load_segments(path):
    """[(p_offset, p_vaddr, p_filesz)] of the PT_LOAD segments of an ELF
    file, [] for a fixed-address executable (runtime = file address), or
    None when the file cannot be read."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return None
            e_type = struct.unpack_from("<H", head, 16)[0]
            e_phoff = struct.unpack_from("<Q", head, 32)[0]
            e_phentsize, e_phnum = struct.unpack_from("<HH", head, 54)
            fh.seek(e_phoff)
            phdrs = fh.read(e_phentsize * e_phnum)
    except (OSError, struct.error):
        return None
    if e_type == 2:                         # ET_EXEC
        return []
    out = []
    for i in range(e_phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", phdrs, i * e_phentsize)
        if p_type == 1:                     # PT_LOAD
            out.append((p_offset, p_vaddr, p_filesz))
    return out


def _file_address(pc, mapping, segments):
    """The address in the ELF file of runtime address pc in mapping."""
    lo, _, off, _ = mapping
    if segments == []:
        return pc
    file_off = pc - lo + off
    for p_offset, p_vaddr, p_filesz in segments:
        if p_offset <= file_off < p_offset + max(p_filesz, 1):
            return file_off - p_offset + p_vaddr
    return file_off


def symbolize(stacks, maps_text, exact_access=True):
    """{name: [Frame]} for {name: [address]}: every address through
    addr2line, inlined frames first.  The first address of "access" is the
    faulting instruction when exact_access; the others are return
    addresses (looked up minus 1, inside the call)."""
    maps = parse_maps(maps_text)
    wanted = {}                             # path -> set of file addresses
    where = {}                              # (name, i) -> (path, file address)
    biases = {}
    for name, ips in stacks.items():
        for i, ip in enumerate(ips):
            pc = ip if (exact_access and name == "access" and i == 0) else ip - 1
            hit = next((m for m in maps if m[0] <= pc < m[1]), None)
            if hit is None:
                continue
            path = hit[3]
            if path not in biases:
                biases[path] = _load_segments(path)
            if biases[path] is None:
                continue
            addr = _file_address(pc, hit, biases[path])
            wanted.setdefault(path, set()).add(addr)
            where[(name, i)] = (path, addr)
    resolved = {}
    # elfutils names the files of functions from headers right (binutils 2.40
    # gives the including file for DWARF 5); where eu-addr2line is missing or
    # cannot run (its libdw.so.1 missing), the pyelftools reader of the
    # native frames (_dwarf.py), then binutils.
    tools = [(_addr2line, t) for t in (shutil.which("eu-addr2line"),) if t]
    tools.append((_pyelftools_lines, None))
    tools += [(_addr2line, t) for t in (shutil.which("addr2line"),) if t]
    for path, addrs in wanted.items():
        best = {}
        for lookup, tool in tools:
            found = lookup(tool, path, sorted(addrs))
            best = best or found            # function names alone, if no tool has lines
            if any(file for chain in found.values() for _, file, _ in chain):
                best = found
                break
        resolved.update(best)
    out = {}
    for name, ips in stacks.items():
        frames = []
        for i, ip in enumerate(ips):
            key = where.get((name, i))
            if key is None:
                frames.append(Frame(hex(ip), None, None, None, None, None))
                continue
            chain = resolved.get(key) or [(None, None, None)]
            for fn, file, line in chain:
                frames.append(Frame(hex(ip), key[0], fn, None, file, line))
        out[name] = frames
    return out


def _pyelftools_lines(_tool, path, addrs):
    """{(path, addr): [(function, file, line)]} from _dwarf.py (pyelftools),
    innermost first; {} when it is not installed or the file has no DWARF."""
    from . import _dwarf
    if not _dwarf.available():
        return {}
    out = {}
    for addr in addrs:
        frames = _dwarf.resolve(path, addr) or []
        out[(path, addr)] = [(f.get("function"), f.get("file"), f.get("line")) for f in frames]
    return out


_LOC = re.compile(r"^(.*?):(\d+|\?)(?::\d+)?(?: \(discriminator \d+\))?$")


def _addr2line(tool, path, addrs):
    """{(path, addr): [(function, file, line)]}, innermost first."""
    if tool is None or not addrs:
        return {}
    try:
        proc = subprocess.run([tool, "-e", path, "-f", "-i", "-C", "-a"] +
                              ["0x%x" % a for a in addrs],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return {}
    out, current, lines = {}, None, proc.stdout.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        if line.startswith("0x"):
            current = (path, int(line, 16))
            out[current] = []
            k += 1
            continue
        fn = None if line == "??" else line.split(" inlined at ")[0]
        loc = lines[k + 1] if k + 1 < len(lines) else "??:0"
        m = _LOC.match(loc)
        file = m.group(1) if m and m.group(1) != "??" else None
        ln = int(m.group(2)) if m and m.group(2).isdigit() and m.group(2) != "0" else None
        if current is not None:
            out[current].append((fn, file, ln))
        k += 2
    return out


def _user_filter():
    import sysconfig
    from . import _core
    paths = sysconfig.get_paths()
    info = {
        "executable": sys.executable,
        "realpath": os.path.realpath(sys.executable),
        "stdlib": [paths.get("stdlib"), paths.get("platstdlib")],
        "include": [paths.get("include"), paths.get("platinclude")],
        "refhound_dir": os.path.dirname(os.path.abspath(_core.__file__)),
    }
    return UserFilter(info)


def _own_objects():
    from . import _core
    return {os.path.realpath(_core.__file__)}


def drop_own_frames(frames, own):
    """The stack without the guard's and the tracker's frames on top."""
    k = 0
    while k < len(frames) and frames[k].obj and os.path.realpath(frames[k].obj) in own:
        k += 1
    return frames[k:]


def _frame_dict(f):
    return {"function": f.fn, "file": f.path, "line": f.line, "module": f.obj}


def pick_culprit(kind, firsts):
    """(role, frame): the line to blame, from the first user frame of each
    stack ({"access", "allocated", "freed"} -> frame or None).  A use after
    free blames the release that came too early (an extra Py_DECREF, a free
    before the last use), as refhound valgrind does; every other error the
    access (the write, the second free); with neither, the free or the
    allocation stack."""
    if kind == "use-after-free" and firsts.get("freed") is not None:
        return "free", firsts["freed"]
    if firsts.get("access") is not None:
        return "access", firsts["access"]
    for key, role in (("freed", "free"), ("allocated", "alloc")):
        if firsts.get(key) is not None:
            return role, firsts[key]
    return None, None


def culprit_reason(kind, detected, role):
    if role == "free":
        return "released the block too early (it was used after this line)"
    if role == "access":
        if detected == "fault":
            return "the invalid access"
        if kind in ("double-free", "invalid-free"):
            return "the second release" if kind == "double-free" else "the invalid release"
        return "the access"
    return "allocated the block that was corrupted (the write itself was not caught)"


def to_memory_error(raw):
    """One `memory_errors` entry from a parsed report."""
    stacks = {k: raw.get(k) or [] for k in ("access", "allocated", "freed")}
    frames = symbolize(stacks, raw.get("maps", ""), exact_access=raw.get("detected") == "fault")
    # The hooks' frames on top of the allocation and free stacks (an access
    # in refhound's own code stays: it would be refhound's bug).
    frames = {k: v if k == "access" else drop_own_frames(v, _own_objects())
              for k, v in frames.items()}
    user = _user_filter()
    kind = raw.get("kind")
    found = {k: user.first_user(v) for k, v in frames.items()}
    firsts = {k: f for k, (_, f) in found.items()}
    role, culprit = pick_culprit(kind, firsts)
    c = None
    if culprit is not None:
        c = dict(_frame_dict(culprit), reason=culprit_reason(kind, raw.get("detected"), role),
                 role=role)
    if role == "free":
        # Freed by a container's deallocator: a borrowed reference given to
        # a stealing call before the release is the line that is wrong.
        from ._attribution import stolen_release
        index = found["freed"][0]
        stolen = stolen_release([f.fn for f in frames["freed"][:index]], culprit.path,
                                culprit.line, raw.get("type"))
        if stolen is not None:
            c.update(line=stolen[0], reason=stolen[1], released_at=culprit.line)
    return {
        "kind": kind,
        "detected": raw.get("detected"),
        "culprit": c,
        "address": hex(raw["address"]) if "address" in raw else None,
        "size": raw.get("size"),
        "domain": raw.get("domain"),
        "type": raw.get("type"),
        "access": [_frame_dict(f) for f in frames["access"][:FRAMES_SHOWN]] or None,
        "allocated": [_frame_dict(f) for f in frames["allocated"][:FRAMES_SHOWN]] or None,
        "freed": [_frame_dict(f) for f in frames["freed"][:FRAMES_SHOWN]] or None,
    }


def result_dict(target, errors):
    """The JSON of a check that ended on a memory error."""
    return {
        "target": target, "verdict": "error", "memory_errors": errors,
        "iterations": {"warmup": None, "measured": None},
        "per_call": {}, "objects": [], "refcount_growth": [], "sites": [], "samples": [],
        "notes": ["the run stopped at the first memory error (--sanitize)"],
    }


def render(target, errors, color=False):
    """The terminal report of memory errors."""
    def bold(s):
        return "\033[1m%s\033[0m" % s if color else s

    out = ["refhound: %s: %s" % (target, bold("memory error"))]
    for e in errors:
        c = e.get("culprit") or {}
        what = e["kind"]
        if e.get("type"):
            what += " of a %s object" % e["type"]
        elif e.get("size") is not None:
            what += " of a %d-byte %s block" % (e["size"], e.get("domain") or "")
        out.append("  %s" % bold(what))
        if c:
            out.append("  culprit: %s:%s in %s (%s)" % (c.get("file"), c.get("line"),
                                                      c.get("function"), c.get("reason")))
        for label, key in (("access", "access"), ("allocated", "allocated"),
                           ("freed", "freed")):
            frames = e.get(key)
            if not frames:
                continue
            out.append("  %s:" % label)
            for f in frames[:8]:
                where = "%s:%s" % (f["file"], f["line"]) if f.get("file") else \
                    os.path.basename(f.get("module") or "?")
                out.append("    %-28s %s" % (f.get("function") or "??", where))
    return "\n".join(out) + "\n"
