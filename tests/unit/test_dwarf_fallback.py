"""Native frames without libdw: refhound._dwarf (pyelftools) gives the same
frames as libdw, and its line-table decoder the same rows as pyelftools'.

In process: the helper process _dwarf starts elsewhere cannot start here,
so `resolve` reads in this process (what it does wherever no program can
be started).  The modules read are refhound's own engine and demo (built
with -g) and the interpreter itself.
"""
import os

import pytest

from refhound import _core, _demo, _dwarf

elftools = pytest.importorskip("elftools", reason="pyelftools is not installed "
                               "(pip install pyelftools)")
from elftools.elf.elffile import ELFFile  # noqa: E402

KEYS = ("module", "function", "file", "line", "inlined")


def load_base(path, address):
    """Where the loader mapped `path` (holding `address`) in this process:
    the nearest mapping of its start below the address (libdw maps whole
    files too, elsewhere)."""
    real = os.path.realpath(path)
    starts = []
    with open("/proc/self/maps") as fh:
        for row in fh:
            parts = row.split()
            if len(parts) >= 6 and os.path.realpath(parts[5]) == real and int(parts[2], 16) == 0:
                start = int(parts[0].split("-")[0], 16)
                if start <= address:
                    starts.append(start)
    assert starts, "%s is not mapped" % path
    return max(starts)


def symbol_address(path, name):
    with open(path, "rb") as fh:
        symtab = ELFFile(fh).get_section_by_name(".symtab")
        (sym,) = [s for s in symtab.iter_symbols() if s.name == name]
        return sym["st_value"]


def test_line_table_decoder_gives_the_rows_of_pyelftools():
    with open(_core.__file__, "rb") as fh:
        dwarf = ELFFile(fh).get_dwarf_info(relocate_dwarf_sections=False)
        stream = dwarf.debug_line_sec.stream
        stream.seek(0)
        data = stream.read()
        checked = 0
        for cu in dwarf.iter_CUs():
            prog = dwarf.line_program_for_CU(cu)
            expected = []
            for entry in prog.get_entries():
                st = entry.state
                if st is not None:
                    expected.append((st.address, None if st.end_sequence else st.file,
                                     0 if st.end_sequence else st.line))
            got = _dwarf._decode_lines(data, prog, lambda index: index, cu.structs.address_size,
                                       True)
            assert got == expected
            checked += len(got)
    assert checked > 1000


def test_a_function_of_the_demo_is_named_with_its_file_and_line():
    entry = symbol_address(_demo.__file__, "parse_items")
    frames, why = _dwarf._resolve_here(_demo.__file__, entry + 4, "parse_items", 4)
    assert why is None
    (frame,) = frames
    assert frame["function"] == "parse_items" and frame["inlined"] is False
    assert frame["file"].endswith("src/demo/demo.c") and os.path.isabs(frame["file"])
    with open(frame["file"]) as fh:
        lines = fh.read().splitlines()
    decl = next(n for n, text in enumerate(lines, 1) if text.startswith("static PyObject *parse_items"))
    assert frame["line"] in (decl, decl + 1)


def test_inlined_frames_and_lines_agree_with_libdw():
    if not _core.symbols_have_dwarf():
        pytest.skip("libdw.so.1 is not installed here (apt-get install libdw1): nothing to "
                    "compare with")
    # The interpreter's own stack from here: libpython (inlined frames from
    # its internal headers) and refhound's engine.
    _, addresses = _core.unwind_check()
    assert len(addresses) >= 4
    compared = inlined = 0
    for address in addresses:
        expected = _core.symbolize(address)
        module = expected[0]["module"]
        if not module or not module.startswith("/") or expected[0]["file"] is None:
            continue
        pc = address - 1 - load_base(module, address)
        frames, why = _dwarf._resolve_here(module, pc, expected[-1]["function"], 0)
        assert why is None, (module, why)
        assert [{k: f[k] for k in KEYS} for f in frames] == \
            [{k: f[k] for k in KEYS} for f in expected], hex(address)
        compared += 1
        inlined += sum(f["inlined"] for f in frames)
    assert compared >= 4 and inlined >= 1


def test_a_module_without_debug_information_gives_the_reason():
    exe = "/bin/true" if os.path.exists("/bin/true") else None
    if exe is None:
        pytest.skip("no /bin/true here")
    frames, why = _dwarf._resolve_here(exe, 0x1000, "main", 0)
    if frames is None:
        assert "DWARF" in why or "debug" in why
    else:                 # a system that keeps debug files for it
        assert frames[0]["module"] == exe


def test_answers_are_cached_and_forgotten(monkeypatch):
    calls = []
    monkeypatch.setattr(_dwarf, "_ask", lambda *a: calls.append(a) or ([{"line": 7}], None))
    _dwarf.forget()
    assert _dwarf.resolve("/x.so", 16, "f", 0) == [{"line": 7}]
    assert _dwarf.resolve("/x.so", 16, "f", 0) == [{"line": 7}]
    assert len(calls) == 1
    _dwarf.forget()
    _dwarf.resolve("/x.so", 16, "f", 0)
    assert len(calls) == 2
    _dwarf.forget()


def test_without_a_helper_process_the_reading_happens_here(monkeypatch):
    # Starting a program is refused in this tier, as it may be in a sandbox.
    _dwarf.forget()
    entry = symbol_address(_demo.__file__, "checksum")
    frames = _dwarf.resolve(_demo.__file__, entry + 4, "checksum", 4)
    assert frames[0]["function"] == "checksum" and frames[0]["file"].endswith("demo.c")
    _dwarf.forget()


def test_the_engine_says_which_path_it_uses():
    paths = _core.native_paths()
    if _core.symbols_have_dwarf():
        assert paths == {"symbols": "libdw", "unwinder": "cached-cfi", "libdw": None}
    else:
        assert paths["symbols"] == "pyelftools" and paths["unwinder"] == "compiler"
        assert "libdw" in paths["libdw"]


def test_the_interpreter_frames_as_the_hooks_read_them():
    def inner():
        return _core.python_frames()

    def outer():
        return inner()
    frames, entries = outer()
    names = [code.co_name for code, _ in frames[:2]]
    assert names == ["inner", "outer"]
    code, offset = frames[0]
    lines = {line for start, end, line in code.co_lines() if start <= offset < end}
    assert lines == {code.co_firstlineno + 1}
    assert entries >= 1

