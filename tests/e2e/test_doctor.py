"""`refhound doctor`, build detection and pymalloc statistics, against the real machine.

Every expectation is an independent reading of the same fact: sysconfig and
sys of the interpreter under test, `_testcapi.pymem_getallocatorsname()`
for the allocator, /proc for perf_event_paranoid, `valgrind --version`,
readelf for sections and build ids, extensions compiled here with and
without frame pointers and debug information.
"""
import ctypes
import ctypes.util
import functools
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from support import BUILD, ROOT, cbuild, engine_path, interpreter, run_refhound

PROBES = os.path.join(ROOT, "tests", "probes")
KINDS = ["release", "debug"]

FACTS = r"""
import json, sys, sysconfig
import _testcapi
print(json.dumps({
    "python": "%d.%d.%d" % sys.version_info[:3],
    "executable": sys.executable,
    "gettotalrefcount": hasattr(sys, "gettotalrefcount"),
    "getobjects": hasattr(sys, "getobjects"),
    "allocator": _testcapi.pymem_getallocatorsname(),
    "with_valgrind": bool(sysconfig.get_config_var("WITH_VALGRIND")),
    "with_pymalloc": bool(sysconfig.get_config_var("WITH_PYMALLOC")),
    "py_debug": bool(sysconfig.get_config_var("Py_DEBUG")),
}))
"""


@functools.lru_cache(maxsize=None)
def _facts(python, pythonmalloc=None):
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    if pythonmalloc:
        env["PYTHONMALLOC"] = pythonmalloc
    proc = subprocess.run([python, "-c", FACTS], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


@functools.lru_cache(maxsize=None)
def _doctor(kind, *extra):
    python = interpreter(kind)
    proc = run_refhound(python, ["doctor", "--json", "-"] + list(extra), cwd=BUILD, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ---- the interpreter ------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_build_flags_match_the_interpreter(kind):
    python = interpreter(kind)
    facts = _facts(python)
    i = _doctor(kind)["interpreter"]
    assert i["python"] == facts["python"]
    assert i["py_debug"] == facts["py_debug"] == (kind == "debug")
    assert i["py_ref_debug"] == facts["gettotalrefcount"]
    assert i["py_trace_refs"] == facts["getobjects"]
    assert i["with_pymalloc"] == facts["with_pymalloc"]
    assert i["with_valgrind"] == facts["with_valgrind"]
    assert i["allocator"] == facts["allocator"]
    assert i["sources"]["allocator"] == "seen by the engine"
    assert i["free_threading"] is False and i["gil_enabled"] is True


def test_debug_build_reports_gettotalrefcount():
    report = _doctor("debug")
    i = report["interpreter"]
    assert i["py_debug"] is True and i["py_ref_debug"] is True
    assert isinstance(i["gettotalrefcount"], int) and i["gettotalrefcount"] > 10000
    assert i["allocator"] == "pymalloc_debug"
    text = run_refhound(interpreter("debug"), ["doctor"], cwd=BUILD, timeout=120).stdout
    assert re.search(r"Py_REF_DEBUG +yes: sys.gettotalrefcount\(\) = \d+", text), text
    assert re.search(r"debug build \(Py_DEBUG\) +yes", text), text


def test_release_build_reports_no_debug_facilities():
    i = _doctor("release")["interpreter"]
    assert i["py_debug"] is False and i["gettotalrefcount"] is None
    text = run_refhound(interpreter("release"), ["doctor"], cwd=BUILD, timeout=120).stdout
    assert "Py_REF_DEBUG                 no (no sys.gettotalrefcount)" in text


@pytest.mark.parametrize("pythonmalloc", ["malloc", "debug", "malloc_debug", "pymalloc"])
def test_allocator_seen_by_the_engine_matches_testcapi(pythonmalloc):
    python = interpreter("release")
    script = ("import json; from refhound._build import build_info; i = build_info(); "
              "print(json.dumps([i['allocator'], i['pymalloc_in_use'], i['debug_hooks']]))")
    env = dict(os.environ, PYTHONPATH=engine_path(python), PYTHONMALLOC=pythonmalloc)
    proc = subprocess.run([python, "-c", script], env=env, capture_output=True, text=True,
                          check=True)
    name, pymalloc, hooks = json.loads(proc.stdout)
    assert name == _facts(python, pythonmalloc)["allocator"]
    assert pymalloc == name.startswith("pymalloc")
    assert hooks == name.endswith("_debug")


# ---- pymalloc statistics -----------------------------------------------------------------

PYMALLOC = r"""
import json, sys
from refhound import _core
before = _core.pymalloc_stats()
keep = [object() for _ in range(10000)]
during = _core.pymalloc_stats()
del keep
after = _core.pymalloc_stats()
print(json.dumps([before, during, after]))
"""


def _pymalloc(kind, pythonmalloc=None):
    python = interpreter(kind)
    env = dict(os.environ, PYTHONPATH=engine_path(python))
    env.pop("PYTHONMALLOC", None)
    if pythonmalloc:
        env["PYTHONMALLOC"] = pythonmalloc
    proc = subprocess.run([python, "-c", PYMALLOC], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("kind", KINDS)
def test_pymalloc_figures_add_up_and_follow_allocations(kind):
    before, during, after = _pymalloc(kind)
    for st in (before, during, after):
        assert st["enabled"] is True
        # The text's own identities: every byte of the arenas is accounted for.
        assert st["bytes_total"] == st["arenas"]["current"] * st["arenas"]["size"]
        assert (st["bytes_in_allocated_blocks"] + st["bytes_in_available_blocks"]
                + st["bytes_in_free_pools"] + st["bytes_pool_headers"]
                + st["bytes_quantization"] + st["bytes_arena_alignment"]) == st["bytes_total"]
        assert st["free_pools"] * st["pool_size"] == st["bytes_in_free_pools"]
        classes = st["size_classes"]
        assert sum(c["pools"] for c in classes) == st["pools_in_use"]
        assert sum(c["blocks_in_use"] for c in classes) == st["blocks_in_use"]
        in_blocks = sum(c["size"] * c["blocks_in_use"] for c in classes)
        assert in_blocks == st["bytes_in_allocated_blocks"]
        assert st["arenas"]["highwater"] >= st["arenas"]["current"] > 0
    # 10,000 new objects are 10,000 more blocks (a few more for the frame and list growth).
    grown = during["blocks_in_use"] - before["blocks_in_use"]
    assert 10000 <= grown <= 10300, grown
    # Freed again (the readings themselves, dicts of dicts, stay alive meanwhile).
    freed = during["blocks_in_use"] - after["blocks_in_use"]
    assert 9500 <= freed <= 10000, freed
    assert during["debug_hooks"] is (kind == "debug")


def test_pymalloc_off_says_why():
    before, _, _ = _pymalloc("release", "malloc")
    assert before["enabled"] is False
    assert "not the object allocator" in before["reason"]


def test_doctor_shows_pymalloc_figures():
    p = _doctor("release")["pymalloc"]
    assert p["enabled"] and p["blocks_in_use"] > 1000 and p["arenas"]["current"] >= 1


# ---- watchpoints, Valgrind, libdw ------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_watchpoints_allowed_here(kind):
    w = _doctor(kind)["watchpoints"]
    with open("/proc/sys/kernel/perf_event_paranoid") as fh:
        assert w["perf_event_paranoid"] == int(fh.read())
    # These machines allow perf_event_open breakpoints (DESIGN.md).
    assert w["allowed"] is True, w
    assert w["opened"] is True and w["hits"] == w["writes"] == 5


def test_valgrind_and_libdw_as_installed():
    r = _doctor("release")
    v = r["valgrind"]
    path = shutil.which("valgrind")
    assert v["present"] == (path is not None)
    if path:
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        assert v["version"] and v["version"] in out
    # the engine was built here (support.engine_path): with the headers setup.py finds
    assert v["engine_has_valgrind_headers"] is any(
        all(os.path.isfile(os.path.join(inc, "valgrind", h)) for h in ("valgrind.h", "memcheck.h"))
        for inc in ("/usr/include", "/usr/local/include"))
    assert r["libdw"]["library"] == ctypes.util.find_library("dw")
    # the engine loads libdw.so.1 at run time when the system has it (no headers needed)
    try:
        ctypes.CDLL("libdw.so.1")
        loads = True
    except OSError:
        loads = False
    assert r["libdw"]["engine_uses_it"] is loads
    assert r["libdw"]["unwinder"] == ("cached-cfi" if loads else "compiler")


# ---- debug symbols and frame pointers ---------------------------------------------------

def _sections(path):
    out = subprocess.run(["readelf", "-S", "-W", path], capture_output=True, text=True,
                         check=True).stdout
    return set(re.findall(r"\]\s+(\.\S+)", out))


def _separate_debug_file(path):
    """Where gdb would find the debug file of `path`, read with readelf: by
    build id under /usr/lib/debug/.build-id, else by .gnu_debuglink."""
    notes = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", notes)
    if m:
        candidate = "/usr/lib/debug/.build-id/%s/%s.debug" % (m.group(1)[:2], m.group(1)[2:])
        if os.path.isfile(candidate):
            return candidate
    dump = subprocess.run(["readelf", "-p", ".gnu_debuglink", path], capture_output=True,
                          text=True).stdout
    m = re.search(r"\[\s*0\]\s+(\S+)", dump)
    if m:
        d = os.path.dirname(os.path.realpath(path))
        for candidate in (os.path.join(d, m.group(1)), os.path.join(d, ".debug", m.group(1)),
                          os.path.join("/usr/lib/debug", d.lstrip("/"), m.group(1))):
            if os.path.isfile(candidate) and os.path.realpath(candidate) != os.path.realpath(path):
                return candidate
    return None


@pytest.mark.parametrize("kind", KINDS)
def test_interpreter_debug_symbols_as_readelf_sees_them(kind):
    s = _doctor(kind)["debug_symbols"]["interpreter"]
    assert os.path.isfile(s["path"])
    has = ".debug_info" in _sections(s["path"])
    assert s["debug_info"] == has
    if has:
        expected = ("in the file", None)
    else:
        separate = _separate_debug_file(s["path"])
        expected = ("separate file", separate) if separate else ("none", None)
    assert (s["verdict"], s["separate_debug_file"]) == expected


def test_separate_debug_file_found_by_build_id():
    exe = "/usr/bin/python3.11"
    if not os.path.isfile(exe):
        pytest.skip("no /usr/bin/python3.11")
    sys.path.insert(0, os.path.join(ROOT, "src"))
    try:
        from refhound.commands.doctor import debug_symbols
    finally:
        sys.path.pop(0)
    notes = subprocess.run(["readelf", "-n", exe], capture_output=True, text=True).stdout
    build_id = re.search(r"Build ID: ([0-9a-f]+)", notes).group(1)
    expected = "/usr/lib/debug/.build-id/%s/%s.debug" % (build_id[:2], build_id[2:])
    s = debug_symbols(exe)
    assert s["build_id"] == build_id
    assert ".debug_info" not in _sections(exe) and s["debug_info"] is False
    if os.path.isfile(expected):
        assert (s["verdict"], s["separate_debug_file"]) == ("separate file", expected)
        assert s["producers"], "the compiler flags are read from the separate file"
    else:
        assert s["verdict"] == "none"


def _fp_build(frame_pointers):
    out = os.path.join(BUILD, "doctor-fp-%s" % ("on" if frame_pointers else "off"))
    flags = ["-fno-omit-frame-pointer"] if frame_pointers else ["-fomit-frame-pointer"]
    return cbuild.build_extension(os.path.join(PROBES, "fp_sample.c"), out, opt="-O2",
                                  extra_cflags=flags)


def _stripped_copy(so):
    out = os.path.join(BUILD, "doctor-fp-stripped", os.path.basename(so))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run(["objcopy", "--strip-debug", so, out], check=True)
    return out


@pytest.mark.parametrize("frame_pointers", [True, False])
def test_module_debug_info_and_frame_pointers(frame_pointers):
    so = _fp_build(frame_pointers)
    report = _doctor("release", "--module", so)
    m = report["debug_symbols"]["module"]
    assert m["path"] == so and m["verdict"] == "in the file"
    assert any("-O2" in p for p in m["producers"]), m["producers"]
    expected = "yes" if frame_pointers else "no"
    assert m["frame_pointers"] == report["frame_pointers"]["module"] == expected
    sample = m["frame_pointer_sample"]
    assert sample["checked"] >= 6
    assert sample["with_frame_pointer"] == (sample["checked"] if frame_pointers else 0)


def test_module_without_debug_info_gets_advice():
    so = _stripped_copy(_fp_build(True))
    report = _doctor("release", "--module", so)
    m = report["debug_symbols"]["module"]
    assert m["verdict"] == "none" and m["debug_info"] is False
    assert any(so in tip and "-g" in tip for tip in report["advice"]), report["advice"]
    # Without DWARF, frame pointers are read from the code itself.
    assert m["frame_pointers"] == "yes"


def test_running_code_sample_tells_frame_pointers_apart():
    python = interpreter("release")
    sys.path.insert(0, engine_path(python))
    try:
        from refhound import _core
    finally:
        sys.path.pop(0)
    names = ["fp_work_%s" % c for c in "abcdef"]
    for frame_pointers in (True, False):
        so = _fp_build(frame_pointers)
        ctypes.CDLL(so)
        got = _core.frame_pointer_sample(so, names)
        assert got == {"checked": 6, "with_frame_pointer": 6 if frame_pointers else 0}
    with pytest.raises(OSError):
        _core.frame_pointer_sample(os.path.join(BUILD, "not-loaded.so"), names)


def test_interpreter_frame_pointers_agree_with_its_flags():
    r = _doctor("release")
    fp = r["frame_pointers"]
    flags = r["interpreter"]["frame_pointer_flags"]
    assert fp["running_code_sample"]["checked"] >= 20
    assert fp["interpreter"] == ("yes" if flags else "no")


# ---- usage ----------------------------------------------------------------------------------

@pytest.mark.parametrize("module, message", [
    ("no_such_module_refhound_xyz", "no module named 'no_such_module_refhound_xyz'"),
    ("/nonexistent/thing.so", "no such file: /nonexistent/thing.so"),
    ("json", "json is not a compiled extension module"),
])
def test_bad_module_is_a_usage_error(module, message):
    proc = run_refhound(interpreter("release"), ["doctor", "--module", module], cwd=BUILD)
    assert proc.returncode == 2
    assert proc.stderr.startswith("refhound: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_text_report_has_advice_in_plain_words():
    text = run_refhound(interpreter("release"), ["doctor"], cwd=BUILD, timeout=120).stdout
    assert "Hardware watchpoints  allowed (a write watchpoint counted 5 of 5 writes)" in text
    # the same machine's advice as the JSON gives it, one tip a line
    tips = _doctor("release")["advice"]
    lines = text.splitlines()
    if tips:
        start = lines.index("What to do to get more")
        assert lines[start + 1:] == ["  - " + tip for tip in tips]
    else:
        assert lines[-1] == "Nothing to add: this machine offers everything refhound can use."
