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
    ("truncated", reason)                  the file ends early (the process
                                           was killed or is still running)

Streaming (iterparse, elements cleared as they are read) keeps memory flat
on the multi-megabyte files a leak search with every kind produces.
"""
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


def read_events(path):
    """Yield the events of one memcheck XML file (see the module docstring)."""
    depth = 0
    proc = {"pid": None, "ppid": None, "argv": []}
    announced = False
    try:
        for event, el in ET.iterparse(path, events=("start", "end")):
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if depth != 1:
                continue            # only direct children of <valgrindoutput>
            tag = el.tag
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
            elif tag == "errorcounts":
                counts = {}
                for pair in el.findall("pair"):
                    u, c = _text(pair, "unique"), _text(pair, "count")
                    if u and c and c.isdigit():
                        counts[u] = int(c)
                yield ("counts", counts)
            el.clear()
    except ET.ParseError as exc:
        if not announced:
            yield ("process", dict(proc))
        yield ("truncated", str(exc))
    except OSError as exc:
        yield ("truncated", str(exc))
