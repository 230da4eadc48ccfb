"""What a person reads in the terminal (refhound.report.terminal), rendered
from results saved as JSON by `refhound check --json` on zoo cases
(tests/unit/data/results, see its README), and Result rebuilt from JSON."""
import io
import json

import pytest

from refhound._result import Result
from refhound.report.terminal import ProgressLine, render
from unitdata import load_result_json

SAVED = ["leak", "leak_history", "leak_refs", "gc_cycle", "error", "clean", "inconclusive",
         "incomplete"]


def lines_of(name, **kwargs):
    return render(Result.from_dict(load_result_json(name)), **kwargs).splitlines()


# ---- Result <-> JSON ----------------------------------------------------------------------

@pytest.mark.parametrize("name", SAVED)
def test_result_rebuilt_from_json_gives_the_same_json(name):
    saved = load_result_json(name)
    result = Result.from_dict(saved)
    assert result.to_dict() == saved
    assert json.loads(Result.from_json(json.dumps(saved)).to_json()) == saved


def test_result_truth_and_repr():
    leak = Result.from_dict(load_result_json("leak"))
    clean = Result.from_dict(load_result_json("clean"))
    assert not leak and clean
    assert repr(leak) == ("<refhound.Result new_object:leaky leak refs/call=1.0 "
                          "objects/call=1.0 blocks/call=1.0>")


def test_optional_parts_come_back():
    d = load_result_json("clean")
    d["debug"] = {"gettotalrefcount_per_call": 0.5}
    d["valgrind"] = {"errors": 0, "leaked_blocks": 3}
    r = Result.from_dict(d)
    assert r.debug_refs_per_call == 0.5 and r.valgrind == {"errors": 0, "leaked_blocks": 3}
    assert r.to_dict() == d


# ---- the report --------------------------------------------------------------------------

def test_leak_report():
    lines = lines_of("leak")
    assert lines[:3] == [
        "refhound check new_object:leaky",
        "  verdict   LEAK: grows call after call",
        "  measured  9 iterations x 1000 calls after 3 warm-up, 0.28 s",
    ]
    assert lines[4].split() == ["per", "call", "refs", "objects", "blocks", "bytes", "native",
                                "B", "rss", "B", "fds"]
    assert lines[5].split() == ["+1", "+1", "+1", "+32", "0", "+55", "0"]
    assert lines[6] == ("            pymalloc: arenas 6 -> 6, pools in use 319 -> 340, "
                        "blocks in use 49789 -> 60790")
    i = lines.index("  leaking objects (per call)")
    assert lines[i + 1].split() == ["+1", "int"]
    i = lines.index("  leak sites (where the surviving blocks were allocated)")
    assert lines[i + 1] == ("    /home/dev/refhound/tests/zoo/new_object.c:21 in leaky()  "
                            "+1 blocks, +32 bytes per call")
    assert lines[i + 2:i + 7] == [
        "           19 | leaky(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))",
        "           20 | {",
        "      >    21 |     PyObject *value = PyLong_FromLong(1000000 + counter++);  "
        "/* @culprit */",
        "           22 |     if (value == NULL) {",
        "           23 |         return NULL;",
    ]
    assert lines[i + 7] == ("      created at new_object.c:21 (PyLong_FromLong); never released "
                            "(refcount 1 when the call returned)")
    assert not [ln for ln in lines if ln.startswith("  note:")]


def test_life_history_names_each_refcount_write():
    lines = lines_of("leak_history")
    assert ("      created at list_append.c:26 (PyLong_FromLong); +1 at list_append.c:31 "
            "(PyList_Append); -1 at list_append.c:37 (Py_DECREF); never released "
            "(refcount 1 when the call returned)") in lines


def test_reference_leak_names_the_object_and_the_incref_line():
    lines = lines_of("leak_refs")
    assert lines[5].split() == ["+1", "0", "0", "0", "0", "+24", "0"]
    i = lines.index("  growing reference counts (references per call)")
    assert lines[i + 1].split() == ["+1", "NoneType", "None"]
    assert lines[i + 3] == ("  reference sites (refcount writes left unbalanced, found with "
                            "hardware watchpoints)")
    assert lines[i + 4] == ("    /home/dev/refhound/tests/zoo/incref_none.c:27 in leaky()  "
                            "+1 references per call")
    assert "      >    27 |     Py_INCREF(Py_None);  /* @culprit */" in lines
    assert "  leaking objects (per call)" not in lines


def test_gc_blind_cycle_names_the_type_definition_first():
    lines = lines_of("gc_cycle")
    i = lines.index("  leak sites (where the surviving blocks were allocated)")
    assert lines[i + 1] == ("    /home/dev/refhound/tests/zoo/gc_cycle_no_gc.c:39 in the "
                            "definition of LeakyBox_Type  +1 blocks, +24 bytes per call")
    assert "      >    39 |     .tp_flags = Py_TPFLAGS_DEFAULT,  /* @culprit */" in lines
    assert ("      instances allocated at /home/dev/refhound/tests/zoo/gc_cycle_no_gc.c:79 "
            "in leaky()") in lines
    assert ("      (LeakyBox holds a reference to itself (offset 16) but its type lacks "
            "Py_TPFLAGS_HAVE_GC: the cycle is invisible to the garbage collector)") in lines
    # then the allocation itself, as a second site
    assert ("    /home/dev/refhound/tests/zoo/gc_cycle_no_gc.c:79 in leaky()  +1 blocks, "
            "+24 bytes per call") in lines


def test_error_report():
    lines = lines_of("error")
    assert lines[1] == ("  verdict   ERROR: a reference count falls call after call (an extra "
                        "DECREF: this ends in a crash)")
    assert lines[2] == "  measured  8 iterations x 1 calls after 3 warm-up, 0.26 s"
    assert lines[5].split()[0] == "-1"
    i = lines.index("  falling reference counts (references per call)")
    assert lines[i + 1].split() == ["-1", "str", "'refhound_zoo_shared_name'"]
    assert ("    /home/dev/refhound/tests/zoo/extra_decref.c:32 in leaky()  -1 references "
            "per call") in lines
    assert lines[-1] == ("  note: the reference count fell on every call: re-checked with one "
                         "call per iteration so the object is not freed under the check")


def test_clean_report_is_short():
    lines = lines_of("clean")
    assert lines[1] == "  verdict   CLEAN: nothing grows"
    assert lines[5].split() == ["0", "0", "0", "0", "0", "+25", "0"]
    assert len(lines) == 7
    assert not any("sites" in ln or "objects (per call)" in ln for ln in lines)


def test_inconclusive_with_a_note_points_to_it():
    lines = lines_of("inconclusive")
    assert lines[0] == "refhound check every_tenth in a short loop"
    assert lines[1] == "  verdict   INCONCLUSIVE: no conclusion (see the notes)"
    assert lines[5].split()[:3] == ["+0.1", "+0.1", "+0.1"]
    assert lines[-1] == "  note: the loop ended after 60 bodies, before the check was sure"


def test_inconclusive_without_notes_asks_for_more_iterations():
    d = load_result_json("inconclusive")
    d["notes"] = []
    lines = render(Result.from_dict(d)).splitlines()
    assert lines[1] == ("  verdict   INCONCLUSIVE: a trend that is not significant yet: run "
                        "with more iterations")


def test_incomplete_check_says_why_and_shows_no_rates():
    lines = lines_of("incomplete")
    assert lines[1] == ("  verdict   INCONCLUSIVE: could not conclude: refhound tracking stopped: "
                        "the block table could not grow (out of memory); the program went on")
    assert lines[5].split() == ["n/a"] * 7
    assert "  leaking objects (per call)" not in lines


def test_colour_only_when_asked():
    plain = render(Result.from_dict(load_result_json("leak")))
    assert "\033[" not in plain
    coloured = render(Result.from_dict(load_result_json("leak")), color=True)
    assert "  verdict   \033[31;1mLEAK\033[0m: grows call after call" in coloured
    assert "\033[1m    /home/dev/refhound/tests/zoo/new_object.c:21 in leaky()" in coloured
    assert "\033[33m      >    21 |" in coloured
    clean = render(Result.from_dict(load_result_json("clean")), color=True)
    assert "\033[32;1mCLEAN\033[0m" in clean


def test_long_lists_are_cut():
    d = load_result_json("leak")
    d["objects"] = [{"type": "t%d" % i, "count_per_call": 1.0} for i in range(15)]
    d["sites"] = [dict(d["sites"][0], line=100 + i) for i in range(8)]
    lines = render(Result.from_dict(d)).splitlines()
    assert len([ln for ln in lines if ln.split()[-1:] and ln.split()[-1].startswith("t")
                and ln.strip().startswith("+1")]) == 10
    assert len([ln for ln in lines if ln.startswith("    /home/dev/refhound/tests/zoo/")]) == 5


def test_site_without_source_file_python_caller_and_reason():
    d = load_result_json("leak")
    site = {"function": None, "file": None, "line": None, "module": "/usr/lib/libfoo.so",
            "blocks_per_call": 2.0, "bytes_per_call": 64.0, "source": [],
            "python": [{"file": "app.py", "line": 12, "function": "handler"}],
            "reason": "no frame in the user's own code (only the interpreter and system)"}
    d["sites"] = [site]
    lines = render(Result.from_dict(d)).splitlines()
    i = lines.index("  leak sites (where the surviving blocks were allocated)")
    assert lines[i + 1] == "    /usr/lib/libfoo.so   +2 blocks, +64 bytes per call"
    assert lines[i + 2] == "      called from app.py:12 in handler"
    assert lines[i + 3] == ("      (no frame in the user's own code (only the interpreter and "
                            "system))")


def test_debug_interpreter_cross_check_line():
    d = load_result_json("leak")
    d["debug"] = {"gettotalrefcount_per_call": 1.0}
    assert "            sys.gettotalrefcount(): +1 per call" in \
        render(Result.from_dict(d)).splitlines()


def test_no_pymalloc_line_without_pymalloc_figures():
    d = load_result_json("clean")
    for s in d["samples"]:
        s["arenas"] = -1
    assert not [ln for ln in render(Result.from_dict(d)).splitlines() if "pymalloc:" in ln]


@pytest.mark.parametrize("value, text", [
    (None, "n/a"), (0, "0"), (0.0, "0"), (1, "+1"), (-1, "-1"), (0.088, "+0.088"),
    (0.1234567, "+0.123"), (9.99, "+9.99"), (10, "+10"), (55.4, "+55"), (9362, "+9362"),
    (12345, "+12.3k"), (-25000, "-25.0k"), (1234567, "+1.23M"), (2e9, "+2000.00M"),
])
def test_rates_are_signed_and_short(value, text):
    d = load_result_json("clean")
    d["per_call"]["refs"] = value
    rates = render(Result.from_dict(d)).splitlines()[5]
    assert rates[12:22] == "%10s" % text       # the refs column


# ---- the live progress line ------------------------------------------------------------------

class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


INFO = {"target": "m:f", "phase": "measuring", "iteration": 4, "calls": 1000,
        "refs_delta": 2000, "seconds": 1.25}


def test_progress_line_is_silent_when_not_a_terminal():
    stream = _Stream(False)
    line = ProgressLine(stream)
    line(INFO)
    line.clear()
    assert stream.getvalue() == ""
