"""Reproducers of real leaks in CPython's own C code (a reference, or a
block of memory), each fixed upstream later.  Every function leaks on each
call on the interpreters its case names (tests/cpython_corpus/cases.py),
is clean on those with the fix (`fixed_on`), and never raises.

The audit-hook cases install one hook at import; it refuses only the named
event, and only while a reproducer runs."""
import itertools
import pickle
import socket
import sys
import tracemalloc

_refuse = [None]


def _hook(event, args):
    if event == _refuse[0]:
        raise RuntimeError("refused by the audit hook: " + event)


sys.addaudithook(_hook)


def _refusing(event, func, *args):
    _refuse[0] = event
    try:
        func(*args)
    except (RuntimeError, OSError):
        pass
    finally:
        _refuse[0] = None


# -- gh-126991: _pickle load_build leaks inst.__dict__ when setting a key fails

class _RefusingDict:
    def __setitem__(self, key, value):
        raise RuntimeError("read-only")


class _Built:
    def __reduce__(self):
        return (_Built, (), {"x": 1})

    @property
    def __dict__(self):
        return _RefusingDict()          # a new object on every access


_BUILT = pickle.dumps(_Built(), protocol=2)


def pickle_load_build():
    try:
        pickle.loads(_BUILT)
    except RuntimeError:
        pass


# -- PR gh-106243: code.replace() leaks co_code when the audit hook refuses

def _sample():
    return 1


def code_replace_audit():
    _refusing("code.__new__", _sample.__code__.replace)


# -- gh-146245: socket.getaddrinfo leaks the encoded host when the audit hook refuses

def getaddrinfo_audit():
    _refusing("socket.getaddrinfo", socket.getaddrinfo, "localhost", 80)


# -- gh-146245 (second leak): socket.sendto keeps the buffer of its data

_SOCK = None
_DATA = b"refhound corpus datagram"


def sendto_audit():
    global _SOCK
    if _SOCK is None:
        _SOCK = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _refusing("socket.sendto", _SOCK.sendto, _DATA, ("127.0.0.1", 9))


# -- gh-109786: re-entering itertools.pairwise.__next__ leaks references

class _Reenter:
    def __init__(self):
        self.count = 0
        self.it = None

    def __iter__(self):
        return self

    def __next__(self):
        self.count += 1
        if self.count == 2:
            return next(self.it)
        if self.count > 4:
            raise StopIteration
        return [self.count]


def pairwise_reenter():
    source = _Reenter()
    it = source.it = itertools.pairwise(source)
    try:
        for _ in it:
            pass
    except (RuntimeError, StopIteration):
        pass


# -- gh-140398: readline.read_history_file leaks the encoded file name when
#    the audit hook refuses "open"

def readline_audit():
    import readline
    _refusing("open", readline.read_history_file, "/nonexistent/refhound-history")


# -- held out (never tuned on): socket.sethostname leaks the file-system
#    encoded host name when the audit hook refuses the call

def sethostname_audit():
    _refusing("socket.sethostname", socket.sethostname, "refhound-corpus-host")


# -- gh-121390: tracemalloc's tracebacks table frees its values, not its keys

def tracemalloc_tracebacks():
    tracemalloc.start()
    tracemalloc.take_snapshot()
    tracemalloc.stop()
