"""Attribution's pure parts (refhound._attribution): which frame is the
user's, the culprit among symbolized frames, source context, the site
entry, how a refcount write is classified; and, in process, the engine's
symbolizer on its own code (relative DWARF paths resolved against the
compilation directory)."""
import ctypes
import os
import sys
import sysconfig

import pytest

from refhound import _attribution, _core

PY_INCLUDE = sysconfig.get_paths()["include"]
EXT = "/home/me/build/ext.cpython-311-x86_64-linux-gnu.so"


def fr(function, module=EXT, file="/home/me/src/ext.c", line=10, inlined=False):
    return {"function": function, "module": module, "file": file, "line": line,
            "inlined": inlined, "address": 0x1000}


@pytest.mark.parametrize("frame, mine", [
    (fr("leaky"), True),
    (fr("leaky", file=None, line=None), True),                      # no DWARF: still the user's
    (fr("Py_INCREF", file=os.path.join(PY_INCLUDE, "object.h")), False),   # inlined header
    (fr("Py_DECREF", file="/opt/py/include/python3.12/object.h"), False),
    (fr("PyList_New", module="/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"), False),
    (fr("malloc", module="/lib/x86_64-linux-gnu/libc.so.6"), False),
    (fr("_dl_start", module="/lib64/ld-linux-x86-64.so.2"), False),
    (fr("__cxa_throw", module="/usr/lib/x86_64-linux-gnu/libstdc++.so.6"), False),
    (fr("_rh_hook", module="/site/refhound/_core.cpython-311-x86_64-linux-gnu.so"), False),
    (fr("main", module=os.path.realpath(sys.executable)), False),
    (fr("main", module="/usr/bin/python3.12"), False),
    (fr("clock_gettime", module="linux-vdso.so.1"), False),
    (fr("leaky", module=""), False),
    (fr("leaky", module=None), False),
])
def test_is_user_frame(frame, mine):
    assert _attribution.is_user_frame(frame) is mine


def test_culprit_is_the_innermost_user_frame():
    frames = [fr("malloc", module="/lib/x86_64-linux-gnu/libc.so.6"),
              fr("PyLong_FromLong", module="/usr/lib/libpython3.11.so.1.0"),
              fr("make_item", line=5), fr("leaky", line=21)]
    assert _attribution.culprit(frames) == 2
    # No user frame: the leak is in the interpreter, named there.
    assert _attribution.culprit_frame(frames[:2]) == (1, "interpreter")
    assert _attribution.culprit(frames[:1]) is None
    assert _attribution.culprit([]) is None


def test_an_inlined_allocator_wrapper_in_the_interpreter_gives_way_to_its_caller():
    """tracemalloc's raw_malloc(), inlined into traceback_new(): the line of
    traceback_new() that called it is the culprit (gh-121390)."""
    lib = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
    frames = [fr("raw_malloc", module=lib, file="/b/_tracemalloc.c", line=260, inlined=True),
              fr("traceback_new", module=lib, file="/b/_tracemalloc.c", line=452),
              fr("tracemalloc_add_trace", module=lib, file="/b/_tracemalloc.c", line=534)]
    assert _attribution.culprit_frame(frames) == (0, "interpreter")
    assert _attribution.skip_interpreter_wrappers(frames, 0) == 1
    # Not inlined (a function of its own, seen in the stack), or no caller
    # with a line: kept.
    frames[0]["inlined"] = False
    assert _attribution.skip_interpreter_wrappers(frames, 0) == 0
    frames[0]["inlined"] = True
    frames[1]["line"] = None
    assert _attribution.skip_interpreter_wrappers(frames, 0) == 0
    # A function that is not a wrapper of the allocator: kept.
    assert _attribution.skip_interpreter_wrappers(
        [fr("dict_lookup_malloc_ish", module=lib, inlined=True)] + frames[1:], 0) == 0


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "ext.c"
    path.write_text("".join("line %d\n" % n for n in range(1, 11)))
    return str(path)


def test_source_context_around_a_line(source):
    assert _attribution.source_context(source, 5) == [
        (3, "line 3", False), (4, "line 4", False), (5, "line 5", True),
        (6, "line 6", False), (7, "line 7", False)]


def test_source_context_at_the_edges_of_the_file(source):
    assert [n for n, _, _ in _attribution.source_context(source, 1)] == [1, 2, 3]
    assert [n for n, _, _ in _attribution.source_context(source, 10)] == [8, 9, 10]
    assert [n for n, _, _ in _attribution.source_context(source, 4, around=0)] == [4]


@pytest.mark.parametrize("file, line", [(None, 3), ("", 3), ("/no/such/file.c", 3), ("x", 0)])
def test_no_source_context_without_a_file_and_line(file, line):
    assert _attribution.source_context(file, line) == []


def test_site_dict_names_the_culprit_and_its_source(source):
    frames = [fr("malloc", module="/lib/x86_64-linux-gnu/libc.so.6", file=None, line=None),
              fr("leaky", file=source, line=4)]
    python = [{"file": "app.py", "line": 3, "function": "main"}]
    site = _attribution.site_dict(frames, python, 1)
    assert (site["function"], site["file"], site["line"], site["module"]) == \
        ("leaky", source, 4, EXT)
    assert site["address"] == 0x1000 and site["python"] == python
    assert site["source"][2] == [4, "line 4", True]
    assert [f["function"] for f in site["frames"]] == ["malloc", "leaky"]
    assert set(site["frames"][0]) == {"function", "file", "line", "module", "inlined"}
    assert "reason" not in site


def test_site_dict_without_a_user_frame_says_why():
    site = _attribution.site_dict([fr("malloc", module="/lib/libc.so.6")], [], None)
    assert site["function"] is None and site["file"] is None and site["source"] == []
    assert site["reason"] == "no frame in the user's own code (only the interpreter and system)"


def test_site_dict_keeps_the_symbolizers_reason():
    frame = dict(fr("leaky", file=None, line=None), reason="no DWARF for ext.so")
    assert _attribution.site_dict([frame], [], 0)["reason"] == "no DWARF for ext.so"


def test_site_dict_keeps_sixteen_frames():
    frames = [fr("f%d" % i) for i in range(30)]
    assert len(_attribution.site_dict(frames, [], 0)["frames"]) == 16


LIBPY = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"


@pytest.mark.parametrize("frames, where, kind", [
    # Py_INCREF inlined into the user's outermost function: the user's own write
    ([fr("Py_INCREF", file=os.path.join(PY_INCLUDE, "object.h"), inlined=True),
      fr("leaky")], 1, "direct"),
    # a new reference handed back by an API function of the interpreter
    ([fr("PyList_Append", module=LIBPY), fr("leaky")], 1, "call"),
    # inside a helper of the user's own
    ([fr("Py_INCREF", file=os.path.join(PY_INCLUDE, "object.h"), inlined=True),
      fr("helper"), fr("leaky")], 1, "call"),
    ([fr("PyList_Append", module=LIBPY)], None, "call"),
])
def test_increment_kind(frames, where, kind):
    assert _attribution._increment_kind(frames, where) == kind


def test_api_name_is_the_outermost_call_before_the_user_frame():
    frames = [fr("list_resize", module=LIBPY, inlined=True), fr("app1", module=LIBPY),
              fr("PyList_Append", module=LIBPY), fr("leaky")]
    assert _attribution._api_name(frames, 3) == "PyList_Append"
    assert _attribution._api_name(frames, 0) is None
    assert _attribution._api_name(frames, None) is None


def test_python_frames_leave_out_refhound_and_name_lines():
    def outer():
        return sys._getframe(0)
    frame = outer()
    code = frame.f_code
    pairs = [(code, frame.f_lasti), (None, 0), (_attribution.python_frames.__code__, 0)]
    out = _attribution.python_frames(pairs)
    assert len(out) == 2                     # refhound's own frame is left out
    assert out[0]["file"] == __file__ and out[0]["line"] == code.co_firstlineno + 1
    assert out[0]["function"].endswith("outer")
    assert out[1] == {"file": None, "line": None, "function": "<freed code>"}


def test_line_of_a_bytecode_offset():
    def f():
        a = 1
        b = 2
        return a + b
    code = f.__code__
    lines = {_attribution._line_of(code, start) for start, end, line in code.co_lines()
             if line is not None}
    assert lines >= {code.co_firstlineno + 1, code.co_firstlineno + 2, code.co_firstlineno + 3}
    last = max(end for _, end, _ in code.co_lines())
    assert _attribution._line_of(code, last + 100) == code.co_firstlineno + 3


# ---- the engine's symbolizer on its own code ------------------------------------------

@pytest.mark.skipif(not _core.symbols_have_dwarf(), reason="refhound was built without libdw")
def test_relative_dwarf_path_is_resolved_against_the_compilation_directory():
    # setup.py compiles src/core/**/*.c by relative path: DW_AT_name is relative,
    # DW_AT_comp_dir the checkout.  The symbolizer joins them.
    address = ctypes.cast(ctypes.CDLL(_core.__file__).PyInit__core, ctypes.c_void_p).value
    (frame,) = _attribution.symbolize(address, False)
    assert frame["function"] == "PyInit__core" and frame["module"] == _core.__file__
    assert os.path.isabs(frame["file"]) and frame["file"].endswith("/src/core/binding/module.c")
    assert os.path.normpath(frame["file"]) == frame["file"]
    if os.path.isfile(frame["file"]):     # the tree it was built in is still there
        with open(frame["file"]) as fh:
            lines = fh.read().splitlines()
        decl = next(n for n, text in enumerate(lines, 1) if "PyInit__core(void)" in text)
        assert decl <= frame["line"] <= decl + 2
    assert frame["inlined"] is False
    assert _attribution.is_user_frame(frame) is False       # refhound is never the culprit


@pytest.mark.skipif(not _core.symbols_have_dwarf(), reason="refhound was built without libdw")
def test_symbolize_results_are_cached():
    address = ctypes.cast(ctypes.pythonapi.PyList_New, ctypes.c_void_p).value
    first = _attribution.symbolize(address, False)
    assert _attribution.symbolize(address, False) is first
    assert first[0]["function"] == "PyList_New"
    assert _attribution.is_user_frame(first[0]) is False
    native = _attribution.native_frames([address], first_is_return=False)
    assert native[0]["address"] == address and native[0]["function"] == "PyList_New"


# ---- the culprit rules -------------------------------------------------------------------------

LIBPY311 = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"


def ifr(function, file="/build/Python-3.11/Modules/_pickle.c", line=100, inlined=False,
        address=0x2000):
    return {"function": function, "module": LIBPY311, "file": file, "line": line,
            "inlined": inlined, "address": address}


def test_a_leak_in_the_interpreter_is_named_past_api_and_plumbing():
    frames = [ifr("_PyType_AllocNoTrack", "Objects/typeobject.c", inlined=True),
              ifr("PyType_GenericAlloc", "Objects/typeobject.c"), ifr("object_new"),
              ifr("type_call"), ifr("_PyObject_MakeTpCall"), ifr("_PyEval_EvalFrameDefault"),
              ifr("PyObject_GetAttr", "Objects/object.c"), ifr("load_build", line=6743),
              ifr("load", line=6962)]
    assert _attribution.culprit_frame(frames) == (7, "interpreter")
    site = _attribution.site_dict(frames, [], 7)
    assert site["culprit"]["function"] == "load_build" and site["culprit"]["line"] == 6743
    assert site["culprit"]["reason"] == "allocated here and never released, in the interpreter"


def test_headers_of_the_interpreters_own_build_tree_are_headers():
    assert _attribution.is_header_frame(ifr("Py_INCREF", "/b/Python-3.11.7/Include/object.h",
                                            inlined=True))
    assert _attribution.is_header_frame(ifr("_Py_NewRef", "./Include/object.h"))
    # A build whose DWARF lost its inlined functions: the eval loop's own
    # writes stay its frames.
    assert not _attribution.is_header_frame(ifr("_PyEval_EvalFrameDefault", "Include/object.h"))
    assert not _attribution.is_header_frame(ifr("load_build"))


def test_compiler_clones_are_named_as_their_function(monkeypatch):
    monkeypatch.setattr(_attribution, "symbolize", lambda a, r=True: [ifr("load.lto_priv.0")])
    assert _attribution.native_frames([1])[0]["function"] == "load"
    monkeypatch.setattr(_attribution, "symbolize", lambda a, r=True: [ifr("f.constprop.0.isra.0")])
    assert _attribution.native_frames([1])[0]["function"] == "f"


@pytest.mark.parametrize("body, wrapper", [
    ("static void *\nxmalloc(size_t n)\n{\n    void *p = PyMem_Malloc(n);\n    return p;\n}\n", True),
    ("static char *\nxalloc(size_t n)\n{\n    char *p = PyMem_Malloc(n);\n    if (!p)\n"
     "        PyErr_NoMemory();\n    return (char *)p;\n}\n", True),
    ("static void *\nxmalloc(size_t n)\n{\n    return PyMem_Malloc(n);\n}\n", True),
    ("static int\nparse(const char *s)\n{\n    PyObject *text = PyUnicode_FromString(s);\n"
     "    if (text == NULL)\n        return -1;\n    return 0;\n}\n", False),
])
def test_allocation_wrappers_hand_their_block_to_the_caller(tmp_path, body, wrapper):
    path = tmp_path / "w.c"
    path.write_text(body)
    line = next(n for n, t in enumerate(body.splitlines(), 1) if "Malloc" in t or "FromString" in t)
    frames = [fr("inner", file=str(path), line=line), fr("caller", line=40)]
    assert _attribution.returns_what_it_allocates(frames[0]) is wrapper
    assert _attribution.skip_wrappers(frames, 0) == (1 if wrapper else 0)


def test_a_wrapper_called_from_elsewhere_stays_the_culprit(tmp_path):
    path = tmp_path / "w.c"
    path.write_text("void *\nxmalloc(size_t n)\n{\n    void *p = PyMem_Malloc(n);\n    return p;\n}\n")
    frames = [fr("xmalloc", file=str(path), line=4), ifr("cfunction_call")]
    assert _attribution.skip_wrappers(frames, 0) == 0


HEADER = os.path.join(PY_INCLUDE, "object.h")


@pytest.mark.parametrize("frames, where, kind", [
    ([fr("Py_INCREF", file=HEADER, inlined=True), fr("leaky")], 1, "incref"),
    ([fr("Py_DECREF", file=HEADER, inlined=True), fr("Py_XDECREF", file=HEADER, inlined=True),
      fr("leaky")], 2, "decref"),
    # the write happened inside an API call: not the culprit's own
    ([fr("Py_INCREF", file=HEADER, inlined=True), fr("PyList_Append", module=LIBPY),
      fr("leaky")], 2, None),
])
def test_write_kind(frames, where, kind):
    assert _attribution._write_kind(frames, where) == kind


def ev(delta):
    return {"delta": delta}


@pytest.mark.parametrize("deltas, writes, owner, unpaired", [
    # created, an extra INCREF, stored in a list (+1), released, the list freed (-1)
    ([None, 1, 1, -1, -1], [(None, "f"), ("incref", "f"), (None, "PyList_Append"),
                            ("decref", "f"), (None, "list_dealloc")], "f", [1]),
    # created, stored, released, list freed: the reference made at birth leaks
    ([None, 1, -1], [(None, "f"), (None, "PyList_Append"), (None, "list_dealloc")], "f", []),
    # an INCREF by another function (a helper handing over a reference) is not direct
    ([None, 1], [(None, "f"), ("incref", "helper")], "f", []),
])
def test_unpaired_increfs_of_a_new_object(deltas, writes, owner, unpaired):
    assert _attribution.unpaired_increfs([ev(d) for d in deltas], writes, owner) == unpaired


def test_a_frame_without_dwarf_names_symbol_module_and_how_to_get_lines():
    frame = dict(fr("leaky", file=None, line=None), offset=0x2c,
                 reason="no DWARF debug information for this module")
    c = _attribution.culprit_dict(frame, "user", "allocated here and never released")
    assert (c["function"], c["line"], c["symbol"]) == ("leaky", None, "leaky+0x2c")
    assert "the line is not known" in c["reason"] and "rebuild the extension with -g" in c["reason"]
    assert "/usr/lib/debug/.build-id" in c["reason"]


def test_interpreter_modules_without_dwarf_point_at_the_debug_symbols():
    hint = _attribution.stripped_hint(os.path.realpath(sys.executable))
    assert "-dbg" in hint


def test_noise_sites_are_not_sites(monkeypatch):
    """No native frame, or fewer surviving blocks than one per iteration."""
    stacks = {1: [fr("leaky", line=21)], 2: [{"function": None, "module": None}], 3: [fr("rare")]}
    monkeypatch.setattr(_core, "sites", lambda a, b: (
        [(1, 200, 6400, 200, None), (2, 50, 800, 50, None), (3, 1, 32, 1, None)], 0))
    monkeypatch.setattr(_attribution, "describe_stack",
                        lambda sid: (stacks[sid], [], 0 if stacks[sid][0]["module"] else None))
    sites, _ = _attribution.leak_sites(10, 11, 200)
    assert [s["function"] for s in sites] == ["leaky"]
    assert sites[0]["culprit"]["reason"] == "allocated here and never released"


def test_the_terminal_leads_a_site_with_its_culprit():
    from refhound.report.terminal import site_lines
    site = {"file": "/src/ext.c", "line": 26, "function": "store", "module": EXT,
            "blocks_per_call": 1.0, "bytes_per_call": 32.0,
            "culprit": {"file": "/src/ext.c", "line": 32, "function": "store", "module": EXT,
                        "reason": "extra Py_INCREF never balanced"}}
    lines = site_lines(site, "  ")
    assert lines[0].startswith("  /src/ext.c:32 in store()  +1 blocks")
    assert lines[1] == "    culprit: extra Py_INCREF never balanced"
    assert lines[2] == "    allocated at /src/ext.c:26 in store()"
    stripped = dict(site, culprit={"file": None, "line": None, "function": "leaky",
                                   "module": EXT, "symbol": "leaky+0x2c",
                                   "reason": "allocated here and never released; the line is "
                                             "not known: rebuild the extension with -g"})
    assert site_lines(stripped, "")[0].startswith("leaky+0x2c (%s) in leaky()" % EXT)


def test_a_decrement_releases_the_increment_of_its_own_subtree():
    """code.replace() under a refusing audit hook: the audit's argument
    tuple takes a reference (built and freed inside PySys_Audit) after
    _PyCode_GetCode returned one; the tuple's release balances its own."""
    caller, audit, build, dealloc = 0x100, 0x200, 0x300, 0x400
    got_code = ("write-in-getcode", 0x110, caller)          # returned to code_replace_impl
    in_tuple = ("write-in-mkvalue", build, audit, 0x120, caller)
    release = ("write-in-dealloc", dealloc, audit, 0x120, caller)
    pool = {"python": [], "call": [("getcode", got_code)], "direct": [("mkvalue", in_tuple)]}
    assert _attribution.released_increment(pool, release) == ("direct", 0)
    # Nothing shared deeper than the caller: the newest reference a call
    # returned, as before.
    apart = ("write-elsewhere", 0x500, caller)
    pool["direct"] = [("mkvalue", ("write-in-mkvalue", 0x600, caller))]
    assert _attribution.released_increment(pool, apart) == ("call", 0)
    # A deallocator releases what its container took: the direct increment.
    assert _attribution.released_increment(pool, apart, dealloc=True) == ("direct", 0)
    assert _attribution._in_deallocator([fr("Py_XDECREF", file=os.path.join(PY_INCLUDE,
                                                                          "object.h")),
                                         fr("tupledealloc", module="/usr/bin/python3.11")])
    assert not _attribution._in_deallocator([fr("leaky")])
    pool["python"] = [("eval", ("write-in-eval", 0x700))]
    assert _attribution.released_increment(pool, release) == ("python", 0)
    assert _attribution.released_increment({"python": [], "call": [], "direct": []},
                                           release) is None


def test_a_types_clear_in_its_deallocator_releases_c_code_references_first():
    # func_clear called by func_dealloc: the function's own field (the
    # reference PyFunction_New took), not the eval loop's pending one.
    frames = [fr("Py_DECREF", file=os.path.join(PY_INCLUDE, "object.h")),
              fr("func_clear"), fr("func_dealloc")]
    assert _attribution._in_deallocator(frames) == "clear"
    assert _attribution._in_deallocator([fr("func_clear"), fr("other")]) is False
    caller = 0x100
    pool = {"python": [(("eval",), ("inc", 0x500, caller))],
            "call": [], "container": [],
            "direct": [(("PyFunction_New",), ("inc", 0x600, caller))]}
    release = ("dec", 0x700, caller)
    assert _attribution.released_increment(pool, release, dealloc="clear") == ("direct", 0)
    assert _attribution.released_increment(pool, release, dealloc=True) == ("python", 0)
