"""Read memcheck's XML output (--xml=yes, protocol 4) as a stream of events.

One file per process (--xml-file=...%p...).  The events keep their order,
which is what ties a record to a test or an iteration: refhound writes
markers with VALGRIND_PRINTF (<clientmsg>) before and after each scope and
before each leak search it asks for.

    for ev in read_events(path): ...

yields, in file order:

    ("process", {"pid", "ppid", "argv"})
    ("message", text)                      a <clientmsg>
    ("error", Error)                       an error or a leak record
    ("finished", None)                     <status> FINISHED: what follows
                                           is the leak search at exit
    ("counts", {unique: count})            <errorcounts>
    ("suppcounts", {name: count})          <suppcounts>: how often each
                                           suppression matched (summed
                                           over suppressions of one name)
    ("truncated", reason)                  the file ends early (the process
                                           was killed or is still running)

The file is read line by line, one top-level element at a time, which
keeps memory flat on the large files a leak search with every kind
produces and copes with what is not one well-formed document: a process
killed before memcheck closed its report, and the headers that children
started with vfork (subprocess) write into their parent's file.
"""
import re
import xml.etree.ElementTree as ET

LEAK_KINDS = {
    "Leak_DefinitelyLost": "definite",
    "Leak_IndirectlyLost": "indirect",
    "Leak_PossiblyLost": "possible",
    "Leak_StillReachable": "reachable",
}


class Frame:
    __slots__ = ("ip", "obj", "fn", "dir", "file", "line")

    def __init__(self, ip, obj, fn, dir, file, line):
        self.ip = ip
        self.obj = obj
        self.fn = fn
        self.dir = dir
        self.file = file
        self.line = line

    @property
    def path(self):
        if self.file and self.dir:
            return self.dir.rstrip("/") + "/" + self.file
        return self.file

    def to_dict(self):
        return {"function": self.fn, "file": self.path, "line": self.line,
                "object": self.obj, "ip": self.ip}

    def __repr__(self):
        return "<Frame %s %s:%s>" % (self.fn, self.file, self.line)


class Error:
    """One <error>: a memory error or a leak record."""

    __slots__ = ("unique", "tid", "kind", "what", "stack", "aux", "leaked_bytes",
                 "leaked_blocks", "suppression")

    def __init__(self):
        self.unique = None
        self.tid = None
        self.kind = None
        self.what = ""
        self.stack = []
        self.aux = []            # [(auxwhat text, [Frame] or [])]
        self.leaked_bytes = None
        self.leaked_blocks = None
        self.suppression = None  # the generated suppression, with --gen-suppressions

    @property
    def is_leak(self):
        return self.kind in LEAK_KINDS

    @property
    def leak_kind(self):
        return LEAK_KINDS.get(self.kind)

    def stack_key(self):
        return tuple(f.ip for f in self.stack)


def _text(el, tag):
    child = el.find(tag)
    return child.text.strip() if child is not None and child.text else None


def _frames(stack_el):
    out = []
    for fr in stack_el.findall("frame"):
        line = _text(fr, "line")
        out.append(Frame(_text(fr, "ip"), _text(fr, "obj"), _text(fr, "fn"),
                         _text(fr, "dir"), _text(fr, "file"),
                         int(line) if line and line.isdigit() else None))
    return out


def _error(el):
    e = Error()
    e.unique = _text(el, "unique")
    e.tid = _text(el, "tid")
    e.kind = _text(el, "kind")
    pending_aux = None
    for child in el:
        tag = child.tag
        if tag == "what":
            e.what = (child.text or "").strip()
        elif tag == "xwhat":
            e.what = _text(child, "text") or ""
            lb, lk = _text(child, "leakedbytes"), _text(child, "leakedblocks")
            e.leaked_bytes = int(lb) if lb is not None else None
            e.leaked_blocks = int(lk) if lk is not None else None
        elif tag == "stack":
            frames = _frames(child)
            if pending_aux is not None:
                e.aux.append((pending_aux, frames))
                pending_aux = None
            elif not e.stack:
                e.stack = frames
            else:
                e.aux.append(("", frames))
        elif tag in ("auxwhat", "xauxwhat"):
            if pending_aux is not None:
                e.aux.append((pending_aux, []))
            pending_aux = (child.text or "").strip() if tag == "auxwhat" else \
                (_text(child, "text") or "")
        elif tag == "origin":
            what = _text(child, "what") or "origin"
            st = child.find("stack")
            e.aux.append((what, _frames(st) if st is not None else []))
        elif tag == "suppression":
            e.suppression = _text(child, "rawtext")
    if pending_aux is not None:
        e.aux.append((pending_aux, []))
    return e


_SINGLE = re.compile(r"^<(\w+)>.*</\1>\s*$")
_OPEN = re.compile(r"^<(\w+)>\s*$")


def _chunks(path):
    """Top-level pieces of a memcheck XML file, as (tag, text): "xmldecl"
    for a document start, "docend" for </valgrindoutput>, else the
    element's tag and its full text.  memcheck writes each top-level
    element from column 0 and nests with indentation, so a line scan finds
    them without trusting the file to be one well-formed document."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        buf = None
        tag = None
        for line in fh:
            if buf is not None:
                buf.append(line)
                if line.startswith("</" + tag + ">"):
                    yield tag, "".join(buf)
                    buf = None
                continue
            if line.startswith("<?xml"):
                yield "xmldecl", line
            elif line.startswith("</valgrindoutput>"):
                yield "docend", line
            elif line.startswith("<valgrindoutput>") or not line.startswith("<"):
                continue
            else:
                m = _SINGLE.match(line)
                if m:
                    yield m.group(1), line
                    continue
                m = _OPEN.match(line)
                if m:
                    tag = m.group(1)
                    buf = [line]
        if buf is not None:
            yield "partial", "".join(buf)


def _elements(path):
    """(tag, Element) of the main process's document.

    A child started with vfork (subprocess, posix_spawn) writes its XML
    header into the parent's file before it executes its program (and,
    when the exec fails, its final report), and the parent then goes on
    writing: such injected pieces are dropped here.  A real fork()ed child
    gets a file of its own."""
    main_started = False
    child = None            # None, "header" or "report"
    pending = []            # a child's final report, held back in case it is the main's
    for tag, text in _chunks(path):
        if tag == "xmldecl":
            if main_started:
                child = "header"
            main_started = True
            continue
        if tag == "partial":
            yield "partial", None
            return
        if child == "header":
            if tag == "args":
                child = "after-args"
            continue
        if child == "after-args":
            if tag == "status" and "FINISHED" in text:
                child = "report"
                pending = [(tag, text)]
                continue
            child = None
        if child == "report":
            if tag == "docend":
                child = "report-ended"
                continue
            pending.append((tag, text))
            continue
        if child == "report-ended":
            # more after the child's report: it was the child's indeed
            pending = []
            child = None
        if tag == "docend":
            continue
        try:
            el = ET.fromstring(text)
        except ET.ParseError:
            continue
        yield tag, el
    if child in ("report", "report-ended") and pending:
        # the file ends with it: the main process's own final report
        for tag, text in pending:
            try:
                yield tag, ET.fromstring(text)
            except ET.ParseError:
                continue


def read_events(path):
    """Yield the events of one memcheck XML file (see the module docstring)."""
    proc = {"pid": None, "ppid": None, "argv": []}
    announced = False
    ended = False
    try:
        for tag, el in _elements(path):
            if tag == "partial":
                break
            if tag == "pid":
                proc["pid"] = int(el.text)
            elif tag == "ppid":
                proc["ppid"] = int(el.text)
            elif tag == "args":
                argv = el.find("argv")
                if argv is not None:
                    proc["argv"] = [(_text(argv, "exe") or "")] + \
                        [(a.text or "") for a in argv.findall("arg")]
                yield ("process", dict(proc))
                announced = True
            elif tag == "clientmsg":
                yield ("message", (_text(el, "text") or ""))
            elif tag == "error":
                yield ("error", _error(el))
            elif tag == "status":
                if _text(el, "state") == "FINISHED":
                    yield ("finished", None)
                    ended = True
            elif tag == "errorcounts":
                counts = {}
                for pair in el.findall("pair"):
                    u, c = _text(pair, "unique"), _text(pair, "count")
                    if u and c and c.isdigit():
                        counts[u] = int(c)
                yield ("counts", counts)
            elif tag == "suppcounts":
                used = {}
                for pair in el.findall("pair"):
                    name, c = _text(pair, "name"), _text(pair, "count")
                    if name and c and c.isdigit():
                        used[name] = used.get(name, 0) + int(c)
                yield ("suppcounts", used)
    except OSError as exc:
        if not announced:
            yield ("process", dict(proc))
        yield ("truncated", str(exc))
        return
    if not announced:
        yield ("process", dict(proc))
    if not ended:
        yield ("truncated", "the report ends early (the process was killed or is running)")
