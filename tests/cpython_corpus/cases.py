"""Real leaks in CPython's own C code (a reference, or a block of memory),
reproduced on the interpreters of this machine (leaks.py), with their
upstream issue and how to find their true line in the interpreter's DWARF
(truth.py).

Each case: the reproducer in leaks.py; `function`: the function that drops
the reference (a real function in some build of the same sources);
`callees`: the calls in it that made the reference or the block (the true
line is the line of such a call; `inlined`: the compiler inlined the callee,
and the line is its call site); `source`: its file (a tuple: the file's
name in each version); `which`: "first" or "last" when only the first or
the last such call in source order is on the leaking path; `interpreters`:
where it leaks (the fix came later); `fixed_on`: interpreters with the fix,
where the reproducer must be clean; `truth_from`: an interpreter built from
the same sources whose DWARF still has the function (LTO inlined it away in
Debian's release build); `tuned`: whether refhound's rules were tuned while
looking at it.
"""
import os
import shutil

HOME = os.path.expanduser("~")
INTERPRETERS = {
    "3.11.7": os.path.join(HOME, ".pyenv/versions/3.11.7/bin/python3.11"),
    "debian-3.11": "/usr/bin/python3.11",
    "debian-3.11-dbg": shutil.which("python3.11-dbg") or "/usr/bin/python3.11-dbg",
    "3.12.1": os.path.join(HOME, ".pyenv/versions/3.12.1/bin/python3.12"),
    "3.13.0": os.path.join(HOME, ".pyenv/versions/3.13.0/bin/python3.13"),
}
TRUTH_FROM = {"debian-3.11": "debian-3.11-dbg"}
ALL = tuple(INTERPRETERS)

CASES = [
    {"name": "pickle_load_build", "issue": "gh-126991", "fixed_in": "3.12.8, 3.13.1",
     "what": "_pickle load_build(): PyObject_SetItem on inst.__dict__ fails, the dict leaks",
     "function": "load_build", "callees": ("PyObject_GetAttr",), "source": "_pickle.c",
     "interpreters": ALL, "tuned": True},
    {"name": "code_replace_audit", "issue": "gh-106243 (pull request)", "fixed_in": "3.11.5, 3.12.0",
     "what": "code.replace(): the audit hook refuses, co_code from _PyCode_GetCode leaks",
     "function": "code_replace_impl", "callees": ("_PyCode_GetCode",), "source": "codeobject.c",
     "interpreters": ("debian-3.11", "debian-3.11-dbg"), "tuned": True},
    {"name": "getaddrinfo_audit", "issue": "gh-146245", "fixed_in": "3.13.13, 3.14.4",
     "what": "socket.getaddrinfo(): the audit hook refuses, the encoded host (and port) leak",
     "function": "socket_getaddrinfo",
     "callees": ("PyUnicode_AsEncodedString", "PyObject_Str"), "source": "socketmodule.c",
     "interpreters": ALL, "tuned": True},
    {"name": "sendto_audit", "issue": "gh-146245", "fixed_in": "3.13.13, 3.14.4",
     "what": "socket.sendto(): the audit hook refuses, the data's buffer (a reference) leaks",
     "function": "sock_sendto",
     "callees": ("PyArg_ParseTuple", "_PyArg_ParseTuple_SizeT"), "which": "first",
     "source": "socketmodule.c", "interpreters": ALL, "tuned": True},
    {"name": "tracemalloc_tracebacks", "issue": "gh-121390", "fixed_in": "3.12.5, 3.13.0",
     "what": "tracemalloc: the tracebacks table frees its values (NULL), not its keys: every "
             "traceback interned while tracing leaks when the tables are cleared",
     "function": "traceback_new", "callees": ("raw_malloc",), "inlined": True,
     "source": ("_tracemalloc.c", "tracemalloc.c"), "interpreters": ("3.11.7", "3.12.1"),
     "fixed_on": ("3.13.0",), "tuned": True},
    # Held out: run once with the rules as they were, never tuned on.
    {"name": "sethostname_audit", "issue": None, "fixed_in": None,
     "what": "socket.sethostname(): the audit hook refuses, the FS-encoded host name leaks "
             "(no upstream fix found)",
     "function": "socket_sethostname", "callees": ("PyArg_ParseTuple", "_PyArg_ParseTuple_SizeT"),
     "which": "last", "source": "socketmodule.c", "interpreters": ALL, "tuned": False},
]
