"""What the interpreter was built with (refhound._build) and the doctor's
pure parts (refhound.commands.doctor): the build configuration read from
sysconfig values given here, the allocator from the engine's figures, an
ELF file written here byte by byte, frame pointers, advice and the report."""
import os
import struct
import sys
import zlib

import pytest

from refhound import _build, _core
from refhound.commands import doctor

# ---- the build configuration ----------------------------------------------------------


@pytest.fixture
def config(monkeypatch):
    """sysconfig variables as the test sets them."""
    values = {}
    monkeypatch.setattr(_build, "_config", values.get)
    return values


@pytest.mark.parametrize("value, flag", [
    (None, None), (0, False), (1, True), ("0", False), ("1", True), ("", False),
    ("yes", True)])
def test_config_flags(config, value, flag):
    if value is not None:
        config["WITH_PYMALLOC"] = value
    assert _build._config_flag("WITH_PYMALLOC") is flag


@pytest.mark.parametrize("version, values, expected", [
    ((3, 12), {"WITH_FREELISTS": 1}, (True, "sysconfig WITH_FREELISTS")),
    ((3, 12), {"WITH_FREELISTS": 0}, (False, "sysconfig WITH_FREELISTS")),
    ((3, 11), {}, (False, "sysconfig: WITH_FREELISTS not set")),
    ((3, 10), {"CFLAGS": "-O2 -DPyTuple_MAXFREELIST=0 -DPyList_MAXFREELIST=0"},
     (False, "compiler flags: PyList_MAXFREELIST, PyTuple_MAXFREELIST = 0")),
    ((3, 9), {"CFLAGS": "-O2 -g"}, (True, "default (no *_MAXFREELIST=0 in the build flags)")),
])
def test_free_lists(config, monkeypatch, version, values, expected):
    config.update(values)
    monkeypatch.setattr(_build.sys, "version_info", version + (0, "final", 0))
    assert _build._freelists() == expected


@pytest.mark.parametrize("stats, env, expected", [
    ({"debug_hooks": False, "enabled": True}, "", ("pymalloc", "seen by the engine")),
    ({"debug_hooks": True, "enabled": True}, "", ("pymalloc_debug", "seen by the engine")),
    ({"debug_hooks": False, "enabled": False}, "malloc", ("malloc", "seen by the engine")),
    ({"debug_hooks": True, "enabled": False}, "", ("malloc_debug", "seen by the engine")),
    ({"debug_hooks": False, "enabled": False}, "mimalloc", ("mimalloc", "seen by the engine")),
    (None, "malloc", ("malloc", "PYTHONMALLOC")),
    (None, "debug", ("pymalloc_debug", "PYTHONMALLOC")),
    (None, "", ("pymalloc", "build default")),
    (None, "default", ("pymalloc", "build default")),
])
def test_allocator(config, monkeypatch, stats, env, expected):
    config["WITH_PYMALLOC"] = 1
    monkeypatch.setenv("PYTHONMALLOC", env)
    assert _build._allocator(stats, py_debug=False) == expected


def test_allocator_of_a_debug_build_without_the_engine(config, monkeypatch):
    config["WITH_PYMALLOC"] = 0
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    assert _build._allocator(None, py_debug=True) == ("malloc_debug", "build default")


def test_build_info_of_this_interpreter():
    info = _build.build_info()
    assert info["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert info["executable"] == sys.executable
    assert info["py_ref_debug"] is hasattr(sys, "gettotalrefcount")
    assert info["immortal_objects"] is (sys.version_info >= (3, 12))
    assert info["allocator"] in ("pymalloc", "pymalloc_debug", "malloc", "malloc_debug",
                                 "mimalloc", "mimalloc_debug")
    assert info["sources"]["allocator"] == "seen by the engine"      # the engine is loaded
    assert set(info["sources"]) == {"py_debug", "allocator", "freelists"}


def test_loaded_libpython_is_in_this_process_maps():
    path = _build.loaded_libpython()
    with open("/proc/self/maps") as fh:
        maps = fh.read()
    if path is None:
        assert "/libpython3" not in maps
    else:
        assert path in maps and os.path.basename(path).startswith("libpython3")


# ---- an ELF file written here ----------------------------------------------------------------

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOTE, SHT_NOBITS = 1, 2, 3, 7, 8
SHF_ALLOC, SHF_EXECINSTR, SHF_COMPRESSED = 0x2, 0x4, 0x800
TEXT_ADDR = 0x1000
PROLOGUE = b"\x55\x48\x89\xe5"            # push %rbp; mov %rsp,%rbp
NO_FP = b"\x53\x48\x83\xec\x10"           # push %rbx; sub $16,%rsp


def make_elf(path, functions, producer=None, build_id=None, debuglink=None, compress=False,
             nobits_debug=False):
    """A 64-bit little-endian ELF with .text holding `functions` (name,
    code), their symbols, and the optional notes and DWARF strings."""
    text = b""
    symbols = []
    for name, code in functions:
        symbols.append((name, TEXT_ADDR + len(text), 64))
        text += code.ljust(64, b"\x90")
    sections = [("", 0, 0, 0, b"", 0, 0)]          # name, type, flags, addr, data, link, entsize
    sections.append((".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, TEXT_ADDR, text, 0, 0))
    strtab = b"\0"
    symtab = b"\0" * 24
    for name, value, size in symbols:
        symtab += struct.pack("<IBBHQQ", len(strtab), 0x12, 0, 1, value, size)  # FUNC, .text
        strtab += name.encode() + b"\0"
    sections.append((".symtab", SHT_SYMTAB, 0, 0, symtab, 3, 24))
    sections.append((".strtab", SHT_STRTAB, 0, 0, strtab, 0, 0))
    if build_id:
        desc = bytes.fromhex(build_id)
        note = struct.pack("<III", 4, len(desc), 3) + b"GNU\0" + desc
        sections.append((".note.gnu.build-id", SHT_NOTE, SHF_ALLOC, 0, note, 0, 0))
    if debuglink:
        sections.append((".gnu_debuglink", SHT_PROGBITS, 0, 0,
                         debuglink.encode() + b"\0\0\0\0\0\0\0\0", 0, 0))
    if producer:
        data = b"\0" + producer.encode() + b"\0other\0"
        flags = 0
        if compress:
            data = struct.pack("<IIQQ", 1, 0, len(data), 1) + zlib.compress(data)
            flags = SHF_COMPRESSED
        sections.append((".debug_str", SHT_PROGBITS, flags, 0, data, 0, 0))
        sections.append((".debug_info", SHT_NOBITS if nobits_debug else SHT_PROGBITS, 0, 0,
                         b"\0" * 16, 0, 0))
    shstrtab = b"\0"
    names = []
    for s in sections:
        names.append(len(shstrtab) if s[0] else 0)
        if s[0]:
            shstrtab += s[0].encode() + b"\0"
    names.append(len(shstrtab))
    shstrtab += b".shstrtab\0"
    sections.append((".shstrtab", SHT_STRTAB, 0, 0, shstrtab, 0, 0))
    body = b""
    offsets = []
    for s in sections:
        offsets.append(64 + len(body))
        body += s[4]
    shoff = 64 + len(body)
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                          len(sections), len(sections) - 1)
    table = b""
    for i, s in enumerate(sections):
        _, stype, flags, addr, data, link, entsize = s
        size = 16 if stype == SHT_NOBITS else len(data)
        table += struct.pack("<IIQQQQIIQQ", names[i], stype, flags, addr, offsets[i], size,
                             link, 0, 1, entsize)
    with open(path, "wb") as fh:
        fh.write(header + body + table)
    return str(path)


FUNCS = [("fp_%d" % i, PROLOGUE) for i in range(4)] + [("nofp_%d" % i, NO_FP) for i in range(2)]


def test_elf_reader_on_a_file_written_here(tmp_path):
    path = make_elf(tmp_path / "m.so", FUNCS, producer="GNU C17 12.2.0 -mtune=generic -O2 -g",
                    build_id="0123456789abcdef", debuglink="m.so.debug")
    elf = doctor.Elf(path)
    try:
        assert [s["name"] for s in elf.sections][1:4] == [".text", ".symtab", ".strtab"]
        assert elf.build_id() == "0123456789abcdef"
        assert elf.debuglink() == "m.so.debug"
        assert elf.has_debug_info()
        assert elf.producers() == ["GNU C17 12.2.0 -mtune=generic -O2 -g"]
        assert elf.functions() == [(name, TEXT_ADDR + 64 * i, 64)
                                   for i, (name, _) in enumerate(FUNCS)]
        assert elf.bytes_at(TEXT_ADDR, 4) == PROLOGUE
        assert elf.bytes_at(TEXT_ADDR + 64 * 4, 5) == NO_FP
        assert elf.bytes_at(0x9999999, 4) is None
    finally:
        elf.close()


def test_compressed_dwarf_strings_are_read(tmp_path):
    path = make_elf(tmp_path / "z.so", FUNCS, producer="clang version 16.0.6 -O0", compress=True)
    elf = doctor.Elf(path)
    try:
        assert elf.producers() == ["clang version 16.0.6 -O0"]
    finally:
        elf.close()


@pytest.mark.parametrize("content, message", [
    (b"not an elf file at all" * 4, "is not a 64-bit little-endian ELF file"),
    (b"\x7fELF\x01\x01\x01" + b"\0" * 80, "is not a 64-bit little-endian ELF file"),
])
def test_what_is_not_a_64_bit_elf_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.so"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        doctor.Elf(str(path))
    report = doctor.debug_symbols(str(path))
    assert report["verdict"] == "unknown" and message in report["error"]


def test_debug_symbols_in_the_file_with_frame_pointers(tmp_path):
    path = make_elf(tmp_path / "m.so", FUNCS, producer="GNU C17 -O2 -fno-omit-frame-pointer -g")
    s = doctor.debug_symbols(path)
    assert s["verdict"] == "in the file" and s["debug_info"] and s["symbols"]
    assert s["frame_pointers"] == "yes"            # the recorded flags decide
    if os.uname().machine == "x86_64":
        assert s["frame_pointer_sample"] == {"checked": 6, "with_frame_pointer": 4}


def test_debug_symbols_in_a_separate_file_found_by_build_id(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "DEBUG_ROOT", str(tmp_path / "debug"))
    path = make_elf(tmp_path / "m.so", FUNCS, build_id="abcdef0123")
    debug = tmp_path / "debug" / ".build-id" / "ab" / "cdef0123.debug"
    debug.parent.mkdir(parents=True)
    make_elf(debug, FUNCS, producer="GNU C17 -O2 -g")
    s = doctor.debug_symbols(path)
    assert (s["verdict"], s["separate_debug_file"]) == ("separate file", str(debug))
    assert s["producers"] == ["GNU C17 -O2 -g"]
    assert s["frame_pointers"] == "no"               # -O2 without -fno-omit-frame-pointer


def test_separate_debug_file_by_debuglink(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "DEBUG_ROOT", str(tmp_path / "debug"))
    (tmp_path / ".debug").mkdir()
    (tmp_path / ".debug" / "m.so.debug").write_bytes(b"x")
    assert doctor._separate_debug_file(str(tmp_path / "m.so"), None, "m.so.debug") == \
        str(tmp_path / ".debug" / "m.so.debug")
    assert doctor._separate_debug_file(str(tmp_path / "m.so"), "ffff", "other.debug") is None


def test_no_debug_information_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "DEBUG_ROOT", str(tmp_path / "debug"))
    s = doctor.debug_symbols(make_elf(tmp_path / "m.so", [("nofp", NO_FP)] * 3))
    assert s["verdict"] == "none" and not s["debug_info"] and s["producers"] == []
    if os.uname().machine == "x86_64":
        assert s["frame_pointers"] == "no"            # read from the code itself


def test_nobits_debug_info_is_not_debug_info(tmp_path):
    elf = doctor.Elf(make_elf(tmp_path / "m.so", FUNCS, producer="GNU C17", nobits_debug=True))
    try:
        assert not elf.has_debug_info()
    finally:
        elf.close()


@pytest.mark.parametrize("producers, verdict", [
    ([], None),
    (["GNU C17 12.2.0 -O2 -fno-omit-frame-pointer"], "yes"),
    (["GNU C17 12.2.0 -O0 -fomit-frame-pointer"], "no"),
    (["GNU C17 12.2.0 -mtune=generic -O2 -g"], "no"),
    (["GNU C17 12.2.0 -Os"], "no"),
    (["GNU C17 12.2.0 -O0 -g"], None),
    (["GNU C17 12.2.0 -g"], None),
])
def test_frame_pointers_from_the_recorded_flags(producers, verdict):
    assert doctor._fp_from_producers(producers) == verdict


@pytest.mark.parametrize("sample, verdict", [
    (None, None), ({"checked": 0, "with_frame_pointer": 0}, None),
    ({"checked": 10, "with_frame_pointer": 10}, "yes"),
    ({"checked": 10, "with_frame_pointer": 5}, "yes"),
    ({"checked": 10, "with_frame_pointer": 3}, "partly"),
    ({"checked": 20, "with_frame_pointer": 3}, "no"),
    ({"checked": 10, "with_frame_pointer": 0}, "no"),
])
def test_frame_pointers_from_a_sample(sample, verdict):
    assert doctor._fp_verdict(sample) == verdict


def test_frame_setup_near_the_entry():
    assert doctor._frame_setup(PROLOGUE + b"\x90" * 44)
    assert doctor._frame_setup(b"\xf3\x0f\x1e\xfa" + PROLOGUE)          # after endbr64
    assert not doctor._frame_setup(NO_FP + b"\x90" * 60)
    assert not doctor._frame_setup(b"\x90" * 48 + PROLOGUE)             # too far in


# ---- the machine, the report, the advice -----------------------------------------------------

def test_libdw_as_the_engine_loaded_it(monkeypatch):
    monkeypatch.setattr(doctor.ctypes.util, "find_library",
                        lambda name: "libdw.so.1" if name == "dw" else None)
    d = doctor.libdw(_core)
    assert d["library"] == "libdw.so.1"
    assert d["engine_uses_it"] is _core.symbols_have_dwarf()
    assert (d["why_not"] is None) is _core.symbols_have_dwarf()
    assert d["unwinder"] == _core.native_paths()["unwinder"]
    assert doctor.libdw(None)["engine_uses_it"] == "unknown"


def test_watchpoints_without_the_engine_say_why():
    w = doctor.watchpoints(None)
    assert w["allowed"] is None and "not built" in w["error"]


class _Probe:
    def __init__(self, **w):
        self.w = w

    def watchpoint_probe(self):
        return self.w


def test_a_watchpoint_that_misses_writes_is_not_allowed():
    w = doctor.watchpoints(_Probe(opened=True, errno=0, error=None, hits=3, writes=5))
    assert w["allowed"] is False and w["error"] == "the watchpoint opened but counted 3 of 5 writes"
    ok = doctor.watchpoints(_Probe(opened=True, errno=0, error=None, hits=5, writes=5))
    assert ok["allowed"] is True and ok["errno"] is None


@pytest.mark.parametrize("name, message", [
    ("refhound_no_such_module_xyz", "no module named 'refhound_no_such_module_xyz' on this "
                                    "interpreter's path"),
    ("/nonexistent/thing.so", "no such file: /nonexistent/thing.so"),
    ("json", "json is not a compiled extension module (it is "),
])
def test_locating_a_module(name, message):
    path, error = doctor._locate_module(name)
    assert path is None and error.startswith(message)


def test_locating_a_compiled_module():
    path, error = doctor._locate_module("refhound._core")
    assert error is None and path == _core.__file__


def report(**changes):
    interp = {"python": "3.11.7", "executable": "/usr/bin/python3.11", "py_debug": False,
              "py_ref_debug": False, "gettotalrefcount": None, "py_trace_refs": False,
              "with_pymalloc": True, "with_valgrind": False, "allocator": "pymalloc",
              "sources": {"allocator": "seen by the engine"}, "free_threading": False,
              "gil_enabled": True, "freelists": True, "immortal_objects": False}
    r = {
        "interpreter": interp,
        "engine": {"loaded": True, "path": "/x/_core.so", "error": None},
        "pymalloc": None,
        "debug_symbols": {"interpreter": {"path": "/usr/bin/python3.11", "verdict": "none",
                                          "error": None, "separate_debug_file": None},
                          "module": None},
        "watchpoints": {"perf_event_paranoid": 2, "allowed": True, "opened": True,
                        "errno": None, "error": None, "hits": 5, "writes": 5},
        "valgrind": {"present": True, "path": "/usr/bin/valgrind", "version": "3.19.0",
                     "engine_has_valgrind_headers": True},
        "libdw": {"library": "libdw.so.1", "engine_uses_it": True, "why_not": None,
                  "unwinder": "cached-cfi", "pyelftools": "0.33"},
        "frame_pointers": {"interpreter": "yes", "running_code_sample": None,
                           "recorded_flags": None, "file_sample": None},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            r[section] = dict(r[section], **{field: value})
        else:
            r[section] = value
    r["advice"] = doctor.advice(r)
    return r


def test_advice_in_plain_words(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    tips = report()["advice"]
    assert any("apt-get install python3.11-dbg" in t for t in tips)
    assert any("--with-trace-refs" in t for t in tips)
    assert any(t.startswith("Free lists are on") for t in tips)
    assert any("No debug symbols for the interpreter (/usr/bin/python3.11)" in t
               and "apt-get install python3.11-dbg" in t for t in tips)
    assert any("built without --with-valgrind" in t for t in tips)
    assert not any("watchpoints" in t.lower() for t in tips)
    assert not any("libdw" in t for t in tips)


@pytest.mark.parametrize("changes, words", [
    ({"watchpoints__allowed": False, "watchpoints__errno": 13,
      "watchpoints__error": "EACCES"}, "sysctl kernel.perf_event_paranoid=2"),
    ({"watchpoints__allowed": False, "watchpoints__errno": 19,
      "watchpoints__error": "ENODEV"}, "CONFIG_HAVE_HW_BREAKPOINT"),
    ({"valgrind__present": False}, "Valgrind is not installed: apt-get install valgrind"),
    ({"valgrind__engine_has_valgrind_headers": False}, "built without Valgrind's headers"),
    ({"libdw__engine_uses_it": False,
      "libdw__why_not": "libdw.so.1 is not installed (apt-get install libdw1)"},
     "For the fast one: apt-get install libdw1 (Fedora: dnf install elfutils-libs)"),
    ({"libdw__engine_uses_it": False, "libdw__why_not": "libdw is switched off "
      "(REFHOUND_NO_LIBDW=1)"}, "For the fast one: unset REFHOUND_NO_LIBDW."),
    ({"libdw__engine_uses_it": False, "libdw__pyelftools": None}, "pip install pyelftools"),
    ({"frame_pointers__interpreter": "partly"}, "compiled without frame pointers"),
    ({"engine__loaded": False, "engine__error": "No module named 'refhound._core'"},
     "(No module named 'refhound._core')"),
])
def test_each_missing_piece_gets_its_tip(monkeypatch, changes, words):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    assert any(words in t for t in report(**changes)["advice"]), report(**changes)["advice"]


def test_a_module_without_debug_information_gets_advice():
    r = report()
    r["debug_symbols"]["module"] = {"path": "/p/ext.so", "verdict": "none", "error": None,
                                    "separate_debug_file": None}
    assert any(t.startswith("/p/ext.so has no debug information") for t in doctor.advice(r))


def test_rendered_report(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    r = report(debug_symbols__interpreter={"path": "/usr/bin/python3.11",
                                           "verdict": "separate file", "error": None,
                                           "separate_debug_file": "/usr/lib/debug/x.debug"})
    lines = doctor.render(r).splitlines()
    assert lines[:3] == ["refhound doctor", "",
                         "Interpreter  Python 3.11.7 (/usr/bin/python3.11)"]
    assert "  Py_REF_DEBUG                 no (no sys.gettotalrefcount)" in lines
    assert "  object allocator             pymalloc (seen by the engine)" in lines
    assert "  interpreter python3.11       yes, in /usr/lib/debug/x.debug" in lines
    assert "Hardware watchpoints  allowed (a write watchpoint counted 5 of 5 writes)" in lines
    assert "Valgrind  3.19.0 (/usr/bin/valgrind)" in lines
    assert ("libdw  libdw.so.1, in use (file:line through libdw; stacks by cached CFI rules)"
            in lines)
    r = report(libdw__engine_uses_it=False, libdw__why_not="libdw.so.1 is not installed "
               "(apt-get install libdw1)")
    lines = doctor.render(r).splitlines()
    assert "libdw  not in use: libdw.so.1 is not installed (apt-get install libdw1)" in lines
    assert "  instead                      pyelftools 0.33 for file:line; the compiler's unwinder" \
        in lines
    assert "What to do to get more" in lines
    assert lines[-1].startswith("  - ")


def test_rendered_report_with_nothing_to_add(monkeypatch):
    r = report(interpreter__freelists=False, interpreter__py_ref_debug=True,
               interpreter__gettotalrefcount=123456, interpreter__py_trace_refs=True,
               interpreter__with_valgrind=True,
               debug_symbols__interpreter={"path": "/usr/bin/python3.11",
                                           "verdict": "in the file", "error": None,
                                           "separate_debug_file": None})
    assert r["advice"] == []
    lines = doctor.render(r).splitlines()
    assert lines[-1] == "Nothing to add: this machine offers everything refhound can use."
    assert "  Py_REF_DEBUG                 yes: sys.gettotalrefcount() = 123456" in lines
