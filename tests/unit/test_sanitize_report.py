"""--sanitize's reading side (refhound._sanitize): the guard's report, the
maps, ELF file addresses, the culprit rule, the rendered report.

The guard itself and the symbolization run in tests/e2e/test_sanitize.py.
"""
import os
import sys

from refhound import _sanitize
from refhound._valgrind.xmlparse import Frame
from refhound.report import html

MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 100 /usr/bin/python3.11
7f8d30b6c000-7f8d30b73000 ---p 00000000 08:01 200 /tmp/ext/mod.so
7f8d30b73000-7f8d30b74000 r--p 00000000 08:01 200 /tmp/ext/mod.so
7f8d30b74000-7f8d30b75000 r-xp 00001000 08:01 200 /tmp/ext/mod.so
7f8d30b75000-7f8d30b76000 rw-p 00000000 00:00 0 
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
"""

REPORT = ("refhound-guard 1\nkind use-after-free\ndetected fault\naddress 0x7f0000001ff0\n"
          "block 0x7f0000001fe0\nsize 32\ndomain obj\nallocated 0x10 0x20\nfreed 0x30\n"
          "type int\naccess 0x7f8d30b741ce 0x7f8d30b74200\nmaps\n" + MAPS)


def test_report_fields_are_parsed():
    raw = _sanitize.parse_report(REPORT)
    assert raw["kind"] == "use-after-free" and raw["detected"] == "fault"
    assert (raw["address"], raw["block"], raw["size"]) == (0x7f0000001ff0, 0x7f0000001fe0, 32)
    assert raw["allocated"] == [0x10, 0x20] and raw["freed"] == [0x30]
    assert raw["access"] == [0x7f8d30b741ce, 0x7f8d30b74200]
    assert raw["type"] == "int" and raw["domain"] == "obj"
    assert raw["maps"] == MAPS


def test_anything_else_is_no_report():
    assert _sanitize.parse_report("") is None
    assert _sanitize.parse_report("Fatal Python error: Segmentation fault\n") is None


def test_maps_keep_file_backed_mappings_only():
    maps = _sanitize.parse_maps(MAPS)
    assert [m[3] for m in maps] == ["/usr/bin/python3.11"] + ["/tmp/ext/mod.so"] * 3
    assert maps[3] == (0x7f8d30b74000, 0x7f8d30b75000, 0x1000, "/tmp/ext/mod.so")


def test_file_address_goes_through_the_segment_of_the_mapping():
    maps = _sanitize.parse_maps(MAPS)
    text = maps[3]
    # a shared object whose segments start at file offset = virtual address
    segments = [(0, 0, 0x1000), (0x1000, 0x1000, 0x1000)]
    assert _sanitize._file_address(0x7f8d30b741ce, text, segments) == 0x11ce
    # a segment loaded at another address than its offset (lld's layout)
    segments = [(0, 0, 0x1000), (0x1000, 0x2000, 0x1000)]
    assert _sanitize._file_address(0x7f8d30b741ce, text, segments) == 0x21ce
    # a fixed-address executable: the runtime address is the file address
    assert _sanitize._file_address(0x401234, maps[0], []) == 0x401234


def test_segments_of_a_real_elf_file():
    segments = _sanitize._load_segments(os.path.realpath(sys.executable))
    assert segments == [] or (segments and all(len(s) == 3 for s in segments))
    assert _sanitize._load_segments(__file__) is None


def _f(fn, line):
    return Frame("0x1", "/tmp/ext/mod.so", fn, None, "/src/mod.c", line)


def test_use_after_free_blames_the_early_release():
    firsts = {"access": _f("leaky", 34), "freed": _f("leaky", 33), "allocated": _f("leaky", 28)}
    assert _sanitize.pick_culprit("use-after-free", firsts) == ("free", firsts["freed"])
    # freed by the interpreter only (no user frame): the access
    firsts["freed"] = None
    assert _sanitize.pick_culprit("use-after-free", firsts) == ("access", firsts["access"])


def test_other_errors_blame_the_access_then_the_free_then_the_allocation():
    a, fr, al = _f("leaky", 34), _f("leaky", 33), _f("leaky", 28)
    assert _sanitize.pick_culprit("double-free", {"access": a, "freed": fr}) == ("access", a)
    assert _sanitize.pick_culprit("overflow", {"access": None, "freed": fr}) == ("free", fr)
    assert _sanitize.pick_culprit("overflow", {"allocated": al}) == ("alloc", al)
    assert _sanitize.pick_culprit("overflow", {}) == (None, None)


def test_reasons_say_how_the_error_was_seen():
    assert "too early" in _sanitize.culprit_reason("use-after-free", "fault", "free")
    assert _sanitize.culprit_reason("overflow", "fault", "access") == "the invalid access"
    assert _sanitize.culprit_reason("double-free", "free", "access") == "the second release"
    assert "not caught" in _sanitize.culprit_reason("overflow", "free", "alloc")


def test_the_engine_frames_on_top_are_dropped():
    own = {"/x/_core.so"}
    frames = [Frame("0x1", "/x/_core.so", "guard_alloc", None, "guard.c", 1),
              Frame("0x2", "/x/_core.so", "gil_malloc", None, "tracker.c", 2),
              _f("leaky", 28),
              Frame("0x3", "/x/_core.so", "later", None, "x.c", 3)]
    kept = _sanitize.drop_own_frames(frames, own)
    assert [f.fn for f in kept] == ["leaky", "later"]


ERROR = {
    "kind": "use-after-free", "detected": "fault", "type": "int", "size": 32, "domain": "obj",
    "culprit": {"function": "leaky", "file": "/src/mod.c", "line": 33, "module": "/x/mod.so",
                "reason": "released the block too early", "role": "free"},
    "access": [{"function": "list_dealloc", "file": "Objects/listobject.c", "line": 357,
                "module": "/usr/lib/libpython3.11.so"}],
    "allocated": [{"function": "leaky", "file": "/src/mod.c", "line": 28, "module": "/x/mod.so"}],
    "freed": [{"function": "leaky", "file": "/src/mod.c", "line": 33, "module": "/x/mod.so"}],
}


def test_terminal_report_names_kind_type_and_culprit():
    text = _sanitize.render("mod:leaky", [ERROR])
    assert "use-after-free of a int object" in text
    assert "culprit: /src/mod.c:33 in leaky" in text
    assert "list_dealloc" in text and "Objects/listobject.c:357" in text


def test_the_result_is_an_error_result_the_html_report_takes():
    data = _sanitize.result_dict("mod:leaky", [ERROR])
    assert data["verdict"] == "error" and data["memory_errors"] == [ERROR]
    assert html.kind(data) == "result"
    page = html.render(data, machine={})
    assert "Memory errors" in page and "mod.c" in page
