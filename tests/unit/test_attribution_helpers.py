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
    assert _attribution.culprit(frames[:2]) is None
    assert _attribution.culprit([]) is None


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
