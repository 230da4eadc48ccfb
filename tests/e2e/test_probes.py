"""The public C probes header (src/refhound/include/refhound/refhound.h), end to end.

tests/probes/probes_delta.c is compiled against the header twice per
interpreter -- with -DREFHOUND_PROBES and without -- and driven in a
subprocess of the release interpreter and of python3.11-dbg:

* probes on, engine tracking: the region assertion fails on the leaky twin
  with the true figures and passes on the clean one; COUNTREFS, DESCRIBE
  and MARK print and record real figures;
* probes on, engine not loaded (or loaded, tracking off): one notice line,
  nothing checked -- except on the debug interpreter, where the probes fall
  back to sys.gettotalrefcount() and still catch the reference leak;
* probes off: the module has no probe code at all and prints nothing.
"""
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from support import BUILD, ROOT, cbuild, engine_path, interpreter

CASE = os.path.join(ROOT, "tests", "probes", "probes_delta.c")
INCLUDE = os.path.join(ROOT, "src", "refhound", "include")
HEADER = os.path.join(INCLUDE, "refhound", "refhound.h")
KINDS = ["release", "debug"]

# GIVEN probes_delta built for the interpreter; WHEN this script runs;
# THEN it prints one JSON line of what happened (stderr holds the probes).
SCRIPT = r"""
import json, sys
mode = sys.argv[1]
if mode in ("engine", "engine-off"):
    import refhound._core as core
    if mode == "engine":
        core.start()
import probes_delta as m

def call(f):
    try:
        f()
        return "ok"
    except AssertionError as e:
        return "assert: %s" % e

res = {"available": m.available()}
res["clean"] = sorted(set(call(m.clean) for _ in range(20)))
res["leaky"] = call(m.leaky)
res["none_clean"] = sorted(set(call(m.incref_none_clean) for _ in range(20)))
res["none_leaky"] = call(m.incref_none_leaky)
m.hold()
x = [1, 2, 3]
res["x_id"] = id(x)
res["x_refcnt"] = sys.getrefcount(x)
m.describe(x)
s = "probe-" + str(len(sys.argv) + 123455)     # a str born now: "probe-123456"
res["s_id"] = id(s)
res["s_refcnt"] = sys.getrefcount(s)
m.describe(s)
m.mark("label-1")
try:
    m.raises()
except KeyError as e:
    res["raises"] = repr(e)
if mode == "engine":
    res["marks"] = core.probe_marks()
    m.describe_freed()
    class Fresh:
        pass
    fresh = Fresh()
    res["fresh"] = core.probe_describe(fresh)
print(json.dumps(res))
"""


def _out_dir(python, probes):
    info = cbuild.interpreter_info(python)
    tag = info["ext_suffix"].strip(".").replace(".so", "")
    return os.path.join(BUILD, "probes-%s-%s" % ("on" if probes else "off", tag))


@functools.lru_cache(maxsize=None)
def _build(python, probes):
    # cbuild's cache looks at the .c file only: the header's hash in a macro
    # makes a changed header rebuild the module.
    with open(HEADER, "rb") as fh:
        macros = [("REFHOUND_TEST_HEADER", hashlib.sha1(fh.read()).hexdigest()[:12])]
    macros += ["REFHOUND_PROBES"] if probes else []
    return cbuild.build_extension(CASE, _out_dir(python, probes), python=python,
                                  include_dirs=[INCLUDE],
                                  define_macros=macros,
                                  extra_cflags=["-Wextra", "-Werror"])


@functools.lru_cache(maxsize=None)
def _run(kind, probes, mode):
    python = interpreter(kind)
    so = _build(python, probes)
    path = [os.path.dirname(so)]
    if mode != "bare":
        path.insert(0, engine_path(python))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run([python, "-c", SCRIPT, mode], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _lines_of(text):
    """1-based lines of the C case that contain `text`."""
    with open(CASE) as fh:
        return [n for n, line in enumerate(fh, 1) if text in line]


def _line_of(text):
    lines = _lines_of(text)
    assert len(lines) == 1, (text, lines)
    return lines[0]


# ---- probes on, engine tracking ----------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_delta_assertion_fails_on_leaky_twin_and_passes_on_clean(kind):
    res, err = _run(kind, True, "engine")
    assert res["available"] is True
    assert res["clean"] == ["ok"], err
    assert res["leaky"].startswith("assert: refhound: reference delta of region items_region")
    assert res["leaky"].endswith("expected +0 refs, +0 objects, got +3 refs, +3 objects"), res
    assert res["none_clean"] == ["ok"], err
    # An existing object (None): references grow, no object is born.
    assert res["none_leaky"].endswith("got +1 refs, +0 objects"), res
    # The failing assertion also printed its line.
    assert "got +3 refs, +3 objects" in err


@pytest.mark.parametrize("kind", KINDS)
def test_countrefs_prints_totals_and_change(kind):
    res, err = _run(kind, True, "engine")
    first, second = _lines_of("REFHOUND_COUNTREFS();")[:2]     # the two in hold()
    counts = [ln for ln in err.splitlines() if ln.startswith("refhound: COUNTREFS")]
    assert len(counts) >= 2, err
    m = re.search(r"probes_delta\.c:(\d+) refs=(\d+) objects=(\d+)(.*)", counts[1])
    assert m, counts[1]
    assert int(m.group(1)) == second
    # one new int kept in a list: one reference, one object
    since = r" (gettotalrefcount=\d+ )?\(\+1 refs, \+1 objects since \S+probes_delta\.c:%d\)$"
    assert re.match(since % first, m.group(4)), counts[1]
    if kind == "debug":
        assert "gettotalrefcount=" in counts[1]


@pytest.mark.parametrize("kind", KINDS)
def test_describe_names_type_refcount_and_address(kind):
    res, err = _run(kind, True, "engine")
    lines = [ln for ln in err.splitlines() if ln.startswith("refhound: DESCRIBE obj")]
    assert lines, err
    # A list (maybe reused from the list free list) and a str born after start().
    text = lines[0]
    assert "%x" % res["x_id"] in text
    assert ": list, refcnt %d, len 3;" % res["x_refcnt"] in text, (text, res["x_refcnt"])
    text = lines[1]
    born = "%x: str, refcnt %d, len 12; obj block of " % (res["s_id"], res["s_refcnt"])
    assert born in text, text
    assert re.search(r"bytes born in epoch \d+ \(now \d+\)", text), text


@pytest.mark.parametrize("kind", KINDS)
def test_describe_never_trusts_a_dangling_pointer(kind):
    res, err = _run(kind, True, "engine")
    lines = [ln for ln in err.splitlines() if ln.startswith("refhound: DESCRIBE gone")]
    assert len(lines) == 1, err
    assert "not a live object" in lines[0], lines[0]
    # A class created after the last walk is known at once.
    assert re.match(r"0x[0-9a-f]+: Fresh, refcnt 2; obj block of \d+ bytes born in epoch",
                    res["fresh"]), res["fresh"]


@pytest.mark.parametrize("kind", KINDS)
def test_mark_is_recorded_by_the_engine(kind):
    res, err = _run(kind, True, "engine")
    marks = [m for m in res["marks"] if m["label"] == "label-1"]
    assert len(marks) == 1, res["marks"]
    mark = marks[0]
    assert mark["file"].endswith("probes_delta.c")
    assert mark["line"] == _line_of("REFHOUND_MARK(label);")
    assert mark["objects"] > 1000 and mark["refs"] > mark["objects"]
    assert ("refhound: MARK label-1 at %s:%d" % (mark["file"], mark["line"])) in err


@pytest.mark.parametrize("kind", KINDS)
def test_probes_keep_a_pending_exception(kind):
    res, err = _run(kind, True, "engine")
    assert res["raises"] == "KeyError('kept')"
    assert "refhound: DESCRIBE Py_None" in err and "NoneType" in err


# ---- probes on, no engine -------------------------------------------------------

def test_without_engine_release_says_so_once_and_checks_nothing():
    res, err = _run("release", True, "bare")
    assert res["available"] is False
    assert res["clean"] == ["ok"] and res["leaky"] == "ok" and res["none_leaky"] == "ok"
    notices = [ln for ln in err.splitlines() if "do nothing" in ln]
    assert len(notices) == 1, err
    assert "refhound._core is not loaded" in notices[0]
    assert "COUNTREFS" not in err and "MARK" not in err
    # DESCRIBE still prints what the object itself says.
    assert ": list, refcnt %d (no block details: refhound is not tracking)" % res["x_refcnt"] in err


def test_engine_loaded_but_not_tracking_says_so():
    res, err = _run("release", True, "engine-off")
    assert res["leaky"] == "ok"
    notices = [ln for ln in err.splitlines() if "do nothing" in ln]
    assert len(notices) == 1 and "tracking is off" in notices[0], err


def test_without_engine_debug_falls_back_to_gettotalrefcount():
    res, err = _run("debug", True, "bare")
    assert res["available"] is True
    assert res["clean"] == ["ok"], err
    assert res["leaky"].endswith("got +3 refs (gettotalrefcount)"), res
    assert res["none_clean"] == ["ok"]
    assert res["none_leaky"].endswith("got +1 refs (gettotalrefcount)"), res
    assert re.search(r"COUNTREFS \S+:\d+ refs=\d+ objects=\? \(\+1 refs since", err), err


# ---- probes off -----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_disabled_probes_compile_to_nothing(kind):
    res, err = _run(kind, False, "engine")
    assert res["available"] is False
    # Nothing is checked, nothing is printed.
    assert res["clean"] == ["ok"] and res["leaky"] == "ok" and res["none_leaky"] == "ok"
    assert "refhound" not in err, err
    # No probe code or text in the module: no capsule lookup, none of the
    # header's strings (debug sections aside: file names of the header live
    # there; and a debug build's Py_DECREF passes __FILE__, which names
    # wherever the checkout is).
    so = _build(interpreter(kind), False)
    assert "PyCapsule_Import" not in _dynamic_symbols(so)
    assert not _probe_strings(_stripped_bytes(so))
    on = _build(interpreter(kind), True)
    assert "PyCapsule_Import" in _dynamic_symbols(on)
    assert _probe_strings(_stripped_bytes(on)) == [b"refhound._core", b"refhound: "]


def _probe_strings(data):
    return [s for s in (b"refhound._core", b"refhound: ") if s in data]


def _dynamic_symbols(so):
    return subprocess.run(["nm", "-D", so], capture_output=True, text=True, check=True).stdout


def _stripped_bytes(so):
    out = so + ".stripped"
    subprocess.run(["objcopy", "--strip-debug", so, out], check=True)
    try:
        with open(out, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(out)


# ---- the header as shipped ---------------------------------------------------------

def test_get_include_and_cli_flag_point_at_the_header():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.run([sys.executable, "-m", "refhound", "--include"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    inc = proc.stdout.strip()
    assert os.path.isfile(os.path.join(inc, "refhound", "refhound.h"))
    sys.path.insert(0, os.path.join(ROOT, "src"))
    try:
        from refhound._include import get_include
    finally:
        sys.path.pop(0)
    assert os.path.samefile(get_include(), inc)


def test_header_compiles_as_cxx_and_pedantic_c():
    info = cbuild.interpreter_info(sys.executable)
    base = ["-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-I" + INCLUDE,
            "-I" + info["include"]]
    for macros in ([], ["-DREFHOUND_PROBES"]):
        subprocess.run(["cc", "-std=c11", "-pedantic"] + base + macros + [CASE], check=True)
        if shutil.which("g++"):
            subprocess.run(["g++", "-x", "c++"] + base + macros + [CASE], check=True)
