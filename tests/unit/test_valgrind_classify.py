"""From memcheck records to findings (refhound._valgrind.classify), on the
saved XML of three real runs and on hand-written files.

Ground truth: the `/* @culprit */` marker of each case's C source (read
with tests/cbuild.py), and what each case does per call.

  zoo.xml     driver.py: each function in a "call" scope, 2 warm-up and 4
              measured iterations of 10 calls
  pytest.xml  tests/valgrind_cases/sample_tests.py, one scope per test
  check.xml   refhound.Checker on new_object.leaky and .clean
"""
import functools
import json
import os

import pytest

import cbuild
import vgxml
from refhound._valgrind import classify
from unitdata import ROOT, data_path, local

CALL_CASES = {  # scope -> (C source, figures per call, memcheck's kinds)
    "new_object:leaky": ("tests/zoo/new_object.c", 1.0, 32.0),
    "rawmem_buffer:leaky": ("tests/zoo/rawmem_buffer.c", 1.0, 64.0),
    "every_tenth:leaky": ("tests/zoo/every_tenth.c", 0.1, 6.7),
}
ERROR_CASES = ["uaf_read", "uaf_borrowed_decref", "overflow_write", "double_free",
               "uninit_read"]


@functools.lru_cache(maxsize=None)
def interpreter_info():
    with open(data_path("valgrind", "interpreter.json")) as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def analysis(name):
    return classify.analyze([data_path("valgrind", name + ".xml")],
                            classify.UserFilter(interpreter_info()))


def case(path):
    return cbuild.parse_case(os.path.join(ROOT, path))


def line_of(path, text, function=None):
    """The one line holding `text` (in the body of C `function`, if given)."""
    with open(os.path.join(ROOT, path)) as fh:
        lines = fh.read().splitlines()
    start = 0
    if function is not None:
        start = next(n for n, line in enumerate(lines) if line.startswith(function + "("))
    hits = []
    for n in range(start, len(lines)):
        if function is not None and lines[n] == "}":
            break
        if text in lines[n]:
            hits.append(n + 1)
    assert len(hits) == 1, (path, text, hits)
    return hits[0]


def where(f):
    c = f["culprit"]
    return os.path.relpath(local(c["file"]), ROOT), c["line"], c["function"]


def by_scope(a):
    out = {}
    for f in a.findings:
        out.setdefault(f["scope"], []).append(f)
    return out


# ---- checked calls: per-call leaks, one-time allocations, clean twins --------------

@pytest.mark.parametrize("scope", sorted(CALL_CASES))
def test_per_call_leak_at_the_culprit_line(scope):
    path, blocks, nbytes = CALL_CASES[scope]
    (f,) = by_scope(analysis("zoo"))[scope]
    assert (f["category"], f["class"]) == ("leak", "per-call")
    truth = case(path)
    assert where(f) == (path, truth["culprit_line"], truth["culprit_function"])
    assert f["per_call"] == {"blocks": blocks, "bytes": nbytes}
    assert f["iterations"]["measured"] == 4 and f["iterations"]["calls"] == 40
    assert f["iterations"]["grew"] == 4
    assert f["iterations"]["series"] == [round(10 * blocks)] * 4
    assert f["leak_kinds"] == ["definite"]


def test_a_list_and_its_items_are_two_per_call_sites():
    # nested_list.leaky: a list (object + item array) holding 3 new ints,
    # never released.  The list is lost where it is made (the @culprit line),
    # the ints, lost through it, where fill_list() makes them.
    found = {where(f): f for f in by_scope(analysis("zoo"))["nested_list:leaky"]}
    path = "tests/zoo/nested_list.c"
    truth = case(path)
    ints = (path, line_of(path, "PyObject *item = PyLong_FromLong("), "fill_list")
    lst = (path, truth["culprit_line"], truth["culprit_function"])
    assert set(found) == {ints, lst}
    assert found[ints]["per_call"] == {"blocks": 3.0, "bytes": 96.0}
    assert found[ints]["leak_kinds"] == ["indirect"]
    # the list object and its item array: the interpreter's free list gives
    # back some list objects without a new malloc, so fewer than 2 per call
    assert found[lst]["per_call"] == {"blocks": 1.7, "bytes": 147.2}
    assert found[lst]["leak_kinds"] == ["definite", "indirect"]
    assert all(f["class"] == "per-call" for f in found.values())


def test_a_gc_blind_cycle_is_named_where_the_object_is_made():
    # memcheck sees the allocation; the type definition is refhound's own finding.
    path = "tests/zoo/gc_cycle_no_gc.c"
    (f,) = by_scope(analysis("zoo"))["gc_cycle_no_gc:leaky"]
    assert where(f) == (path, line_of(path, "PyObject_New(BoxObject, &LeakyBox_Type)"), "leaky")
    assert f["per_call"] == {"blocks": 1.0, "bytes": 24.0}


def test_allocations_of_the_first_calls_only_are_one_time_not_leaks():
    a = analysis("zoo")
    assert "first_calls:leaky" not in by_scope(a)
    (one,) = a.one_time
    path = "tests/unit/data/valgrind/first_calls.c"
    assert (os.path.relpath(local(one["culprit"]["file"]), ROOT), one["culprit"]["line"]) == \
        (path, line_of(path, "last = PyMem_RawMalloc(48);"))
    assert one["scope"] == "first_calls:leaky"
    # three blocks in the first call's iteration, the last still pointed to
    assert one["warmup_series"] == [2, 0] and one["measured_series"] == [0, 0, 0, 0]
    assert one["blocks"] == 2


def test_clean_twins_have_no_finding():
    scopes = set(by_scope(analysis("zoo")))
    assert not [s for s in scopes if not s.endswith(":leaky")], scopes
    assert len(scopes) == 10       # 5 leaking zoo cases, 5 memory errors


@pytest.mark.parametrize("name", ERROR_CASES)
def test_memory_error_at_its_culprit_line(name):
    path = "tests/valgrind_cases/%s.c" % name
    with open(os.path.join(ROOT, path)) as fh:
        expected_kind = [ln.split(":", 1)[1].strip() for ln in fh if "valgrind-expect:" in ln][0]
    (f,) = by_scope(analysis("zoo"))[name + ":leaky"]
    truth = case(path)
    assert f["category"] == "error" and f["kind"] == expected_kind
    assert where(f)[:2] == (path, truth["culprit_line"])
    assert f["scope_kind"] == "call" and f["scope_path"] == [name + ":leaky"]


def test_use_after_free_names_the_release_not_the_read():
    (f,) = by_scope(analysis("zoo"))["uaf_read:leaky"]
    assert f["culprit"]["role"] == "free"
    assert f["sites"]["access"]["line"] == line_of("tests/valgrind_cases/uaf_read.c",
                                                   "checksum += PyBytes_AS_STRING(data)[10];", "leaky")
    assert f["sites"]["alloc"]["line"] == line_of("tests/valgrind_cases/uaf_read.c",
                                                  "PyBytes_FromStringAndSize(NULL, 100)", "leaky")
    # two reads (the type pointer and a byte), 60 calls each, one finding
    assert f["count"] == 120


def test_use_after_free_inside_the_interpreter_names_the_user_release():
    # the freed item is read again by list_dealloc when the list goes (its
    # user frame: the Py_DECREF(list) line); the culprit is the extra
    # Py_DECREF(item) that freed it
    path = "tests/valgrind_cases/uaf_borrowed_decref.c"
    (f,) = by_scope(analysis("zoo"))["uaf_borrowed_decref:leaky"]
    assert f["culprit"]["role"] == "free"
    assert f["culprit"]["line"] == line_of(path, "Py_DECREF(item);", "leaky")
    assert f["sites"]["access"]["line"] == line_of(path, "Py_DECREF(list);", "leaky")
    assert f["sites"]["alloc"]["function"] == "make_list"
    assert f["count"] == 116


def test_errors_that_are_not_a_use_after_free_name_the_access():
    found = by_scope(analysis("zoo"))
    for name in ("overflow_write", "double_free", "uninit_read"):
        (f,) = found[name + ":leaky"]
        assert f["culprit"]["role"] == "access", name
        assert f["count"] == 60, name
    (dbl,) = found["double_free:leaky"]
    assert dbl["sites"]["free"]["line"] < dbl["culprit"]["line"]


def test_findings_are_sorted_errors_first():
    cats = [f["category"] for f in analysis("zoo").findings]
    assert cats == ["error"] * 5 + ["leak"] * 6


def test_noise_figures_of_the_zoo_run():
    a = analysis("zoo")
    assert a.stats == {"errors_seen": 6, "errors_filtered": 0, "errors_startup": 0,
                       "errors_from_interpreter": 0, "errors_set_aside": 0,
                       "error_occurrences_seen": 416, "error_occurrences_filtered": 0,
                       "leak_records_seen": 10, "leak_records_filtered": 2,
                       "leak_records_reused": 2, "at_exit_not_lost": 0}
    # the two records without a frame of the user's are lists nested_list.c
    # took from CPython's free list (their first life: gc.get_objects() in
    # refhound's own leak search)
    assert a.noise["errors"] == [] and a.set_aside == []
    assert a.noise["leak_records"] == [{"hint": None, "object": "libpython3.11.so.1.0",
                                        "function": "PyList_New", "records": 2,
                                        "reused": True, "functions": ["PyList_New"]}]
    (nested,) = [f for f in a.findings if f["scope"] == "nested_list:leaky"
                 and f["culprit"]["line"] == 38]
    assert nested["reused"] == {"type": "list", "blocks": 12, "bytes": 2112,
                                "per_call": {"blocks": 0.3, "bytes": 52.8}}
    # list object and item array per call, as the zoo says (5 blocks: 2 + 3 ints)
    assert nested["per_call"]["blocks"] + nested["reused"]["per_call"]["blocks"] == 2.0


def test_scope_counts_are_the_users_errors_and_memchecks_own_apart():
    scopes = {s["name"]: s for s in analysis("zoo").scopes}
    assert len(scopes) == 22
    uaf, dbl, leak = scopes["uaf_read:leaky"], scopes["double_free:leaky"], \
        scopes["new_object:leaky"]
    # the two reads of the freed object are one error of the user's (one culprit line)
    assert (uaf["errors"], uaf["error_occurrences"], uaf["memcheck_errors"]) == (1, 120, 120)
    assert (dbl["errors"], dbl["error_occurrences"], dbl["memcheck_errors"]) == (1, 60, 60)
    assert (leak["errors"], leak["leaks"], leak["memcheck_errors"]) == (0, 1, 0)
    assert scopes["uaf_read:clean"]["errors"] == scopes["uaf_read:clean"]["leaks"] == 0


def test_leak_also_lost_at_exit_is_not_reported_twice():
    a = analysis("zoo")
    (f,) = by_scope(a)["new_object:leaky"]
    # 60 calls in all (6 iterations of 10), every int still lost at exit
    assert f["lost_at_exit"] == {"blocks": 60, "bytes": 1920}
    assert not [x for x in a.findings if x.get("class") == "lost-at-exit"]


# ---- the checker's own iterations -------------------------------------------------

def test_checker_iterations_classify_a_per_call_leak():
    a = analysis("check")
    (f,) = a.findings
    assert f["scope"] == "new_object:leaky" and f["class"] == "per-call"
    assert where(f)[:2] == ("tests/zoo/new_object.c", case("tests/zoo/new_object.c")["culprit_line"])
    assert f["per_call"] == {"blocks": 1.0, "bytes": 32.0}
    assert f["iterations"]["series"] == [10] * 5
    # the interpreter's own errors under the checker never reach the findings
    assert a.stats["errors_seen"] == a.stats["errors_filtered"] == 15


# ---- pytest: each record tied to its test ------------------------------------------

TESTS = "tests/valgrind_cases/sample_tests.py::"


def test_each_record_is_tied_to_the_test_that_made_it():
    found = by_scope(analysis("pytest"))
    got = {scope[len(TESTS):]: sorted((f["kind"], os.path.basename(f["culprit"]["file"]),
                                       f["culprit"]["line"]) for f in fs)
           for scope, fs in found.items()}
    assert got == {
        "test_leaks_ints": [("leak", "new_object.c", 21)],
        "test_leaks_raw_buffers": [("leak", "rawmem_buffer.c", 35)],
        "test_leaks_lists": [("leak", "nested_list.c", 26), ("leak", "nested_list.c", 38)],
        "test_use_after_free": [("use-after-free", "uaf_read.c", 33)],
        "test_overflow": [("overflow", "overflow_write.c", 34)],
        "test_double_free": [("double-free", "double_free.c", 34)],
    }


def test_a_test_leak_is_the_blocks_lost_over_the_test():
    found = by_scope(analysis("pytest"))
    (ints,) = found[TESTS + "test_leaks_ints"]
    assert (ints["class"], ints["blocks"], ints["bytes"]) == ("lost-in-scope", 4, 128)
    assert ints["scope_kind"] == "test"
    lists = {f["culprit"]["line"]: f for f in found[TESTS + "test_leaks_lists"]}
    assert (lists[26]["blocks"], lists[26]["bytes"]) == (12, 384)     # 4 calls x 3 ints


def test_pytest_noise_is_filtered_and_counted():
    a = analysis("pytest")
    assert a.stats["errors_seen"] == 13 and a.stats["errors_filtered"] == 9
    assert a.stats["leak_records_filtered"] == 0
    scopes = {s["name"][len(TESTS):]: (s["errors"], s["error_occurrences"], s["leaks"],
                                       s["memcheck_errors"]) for s in a.scopes}
    assert scopes == {"test_clean_twins": (0, 0, 0, 0), "test_leaks_ints": (0, 0, 1, 0),
                      "test_leaks_raw_buffers": (0, 0, 1, 0), "test_leaks_lists": (0, 0, 2, 0),
                      "test_use_after_free": (1, 2, 0, 2), "test_overflow": (1, 1, 0, 1),
                      "test_double_free": (1, 1, 0, 1)}
    # where the 9 came from, once: the interpreter (16 times in all) and libc
    groups = a.noise["errors"]
    assert sum(g["distinct"] for g in groups) == 9
    assert sum(g["occurrences"] for g in groups) == a.stats["error_occurrences_filtered"] == 16
    assert {g["object"] for g in groups} == {"libpython3.11.so.1.0", "libc.so.6"}
    (libc,) = [g for g in groups if g["object"] == "libc.so.6"]
    assert (libc["hint"], libc["functions"], libc["occurrences"]) == \
        ("libc-vector", ["__wmemcmp_avx2_movbe"], 3)


# ---- the user-frame filter -------------------------------------------------------------

def frame(obj, path=None, fn="f", line=1):
    d, _, f = (path or "").rpartition("/")
    from refhound._valgrind.xmlparse import Frame
    return Frame("0x1", obj, fn, d or None, f or None, line)


@pytest.mark.parametrize("obj, path, mine", [
    ("/home/me/build/ext.cpython-311-x86_64-linux-gnu.so", "/home/me/src/ext.c", True),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", None, False),
    ("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", None, False),
    ("/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so", None, False),
    ("/opt/py/lib/libpython3.11.so.1.0", None, False),             # by name, anywhere
    ("/root/.pyenv/versions/3.11.7/bin/python3.11", None, False),  # the executable
    ("/root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_json.cpython-311-x86_64-"
     "linux-gnu.so", None, False),                                 # the standard library
    ("/home/me/ext.so", "/root/.pyenv/versions/3.11.7/include/python3.11/object.h", False),
    ("/home/me/ext.so", "/usr/include/string.h", False),           # inlined from headers
    (None, "/home/me/src/ext.c", False),                           # no object: unknown
])
def test_user_filter_decides_by_object_and_source(obj, path, mine):
    user = classify.UserFilter(interpreter_info())
    assert user.is_user(frame(obj, path)) is mine


def test_refhound_itself_is_not_the_users_code():
    info = interpreter_info()
    user = classify.UserFilter(info)
    core = info["refhound_dir"] + "/_core.cpython-311-x86_64-linux-gnu.so"
    assert user.is_user(frame(core, "/home/dev/refhound/src/core/tracker.c")) is False
    here = os.path.dirname(classify.__file__)
    assert classify.UserFilter(None).is_user(frame(here + "/../_core.so")) is False


def test_user_and_not_user_patterns_override():
    ext = frame("/home/me/build/ext.so", "/home/me/src/ext.c")
    vendored = frame("/home/me/build/vendor.so", "/home/me/vendor/zlib.c")
    only = classify.UserFilter(interpreter_info(), include=["*/src/*"])
    assert only.is_user(ext) and not only.is_user(vendored)
    but_not = classify.UserFilter(interpreter_info(), include=["/home/me/*"],
                                  exclude=["*/vendor/*"])
    assert but_not.is_user(ext) and not but_not.is_user(vendored)
    excluded = classify.UserFilter(interpreter_info(), exclude=["*vendor*"])
    assert excluded.is_user(ext) and not excluded.is_user(vendored)


def test_without_the_interpreter_facts_header_frames_become_culprits():
    # The launcher's facts (include dirs) are what keeps Py_TYPE out.
    a = classify.analyze([data_path("valgrind", "zoo.xml")], classify.UserFilter(None))
    (f,) = [x for x in a.findings if x["scope"] == "uaf_read:leaky"]
    assert f["sites"]["access"]["function"] == "Py_TYPE"


def test_first_user_frame():
    user = classify.UserFilter(interpreter_info())
    frames = [frame("/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so", fn="malloc"),
              frame("/home/me/ext.so", "/home/me/ext.c", fn="leaky", line=9),
              frame("/home/me/ext.so", "/home/me/ext.c", fn="outer", line=20)]
    index, f = user.first_user(frames)
    assert (index, f.fn, f.line) == (1, "leaky", 9)
    assert user.first_user(frames[:1]) == (None, None)


# ---- error kinds and markers -----------------------------------------------------------

class _Err:
    def __init__(self, kind, aux=()):
        self.kind, self.aux = kind, list(aux)


@pytest.mark.parametrize("kind, aux, expected", [
    ("InvalidRead", ["Address 0x1 is 8 bytes inside a block of size 133 free'd"],
     "use-after-free"),
    ("InvalidWrite", ["Address 0x1 is 0 bytes after a block of size 10 alloc'd"], "overflow"),
    ("InvalidRead", ["Address 0x1 is 4 bytes before a block of size 10 alloc'd"], "underflow"),
    ("InvalidRead", ["Address 0x0 is not stack'd, malloc'd or (recently) free'd"],
     "invalid-read"),
    ("InvalidFree", ["Address 0x1 is 0 bytes inside a block of size 64 free'd"], "double-free"),
    ("InvalidFree", ["Address 0x1 is 8 bytes inside a block of size 64 alloc'd"],
     "invalid-free"),
    ("InvalidFree", ["Address 0x1 is not stack'd, malloc'd or (recently) free'd"],
     "invalid-free"),
    ("MismatchedFree", [], "mismatched-free"),
    ("UninitCondition", [], "uninitialised"),
    ("UninitValue", [], "uninitialised"),
    ("SyscallParam", [], "syscall-param"),
    ("SomethingNew", [], "SomethingNew"),
])
def test_error_kind_from_memcheck_kind_and_address(kind, aux, expected):
    assert classify._error_kind(_Err(kind, [(a, []) for a in aux])) == expected


@pytest.mark.parametrize("text, role", [
    ("Address 0x1 is 8 bytes inside a block of size 133 free'd", "free"),
    ("Block was alloc'd at", "alloc"),
    ("Uninitialised value was created by a heap allocation", "origin"),
    ("Address 0x1 is on thread 1's stack", "aux"),
])
def test_aux_roles(text, role):
    assert classify._aux_role(text) == role


def test_markers():
    assert classify.parse_marker('refhound:{"ev": "begin", "name": "t"}') == \
        {"ev": "begin", "name": "t"}
    assert classify.parse_marker('refhound:{"ev": "begin"}   ') == {"ev": "begin"}
    assert classify.parse_marker("refhound:[1, 2]") is None
    assert classify.parse_marker("refhound:{broken") is None
    assert classify.parse_marker('someone else:{"ev": "x"}') is None


# ---- hand-written runs: what a real run does not give on demand -------------------------

def _analyze(tmp_path, *texts):
    paths = [vgxml.write(tmp_path, t, "memcheck.%d.xml" % (100 + i)) for i, t in enumerate(texts)]
    return classify.analyze(paths, classify.UserFilter(None))


def _iterations(gains, phase="measuring", calls=1, name="ext:leaky"):
    """A "call" scope whose measured iterations each add gains[i] blocks at ext.c:42."""
    text = vgxml.marker(ev="boot", allocator="malloc")
    text += vgxml.marker(ev="search", mode="changed")
    text += vgxml.marker(ev="begin", kind="call", name=name)
    total = 0
    for i, g in enumerate(gains, 1):
        text += vgxml.marker(ev="search", mode="changed")
        if g:
            total += g
            text += vgxml.leak(1, total, 32 * total, [vgxml.MALLOC, vgxml.USER_FRAME])
        text += vgxml.marker(ev="iter", phase=phase, index=i, calls=calls)
    text += vgxml.marker(ev="search", mode="changed")
    text += vgxml.marker(ev="end", kind="call", name=name, errors=0)
    return text


def test_killed_run_still_classifies_its_iterations(tmp_path):
    # GIVEN a killed process (no FINISHED) whose file also holds a vfork
    # child's header, and three iterations each losing one more block
    text = vgxml.head(pid=100)
    text += vgxml.head(pid=101, ppid=100, running=False)
    text += _iterations([1, 1, 1])
    a = _analyze(tmp_path, text)
    (proc,) = a.processes
    assert proc["pid"] == 100 and proc["truncated"] and not proc["finished"]
    (f,) = a.findings
    assert (f["class"], f["scope"]) == ("per-call", "ext:leaky")
    assert (f["culprit"]["file"], f["culprit"]["line"]) == ("/home/me/ext.c", 42)
    assert f["per_call"] == {"blocks": 1.0, "bytes": 32.0}


@pytest.mark.parametrize("gains, per_call", [
    ([1, 1, 1, 1], True),
    ([1, 1, 1, 0], True),      # three of four iterations grew, the second half too
    ([2, 2, 0, 0], False),     # stopped growing: the second half is flat
    ([1, 0, 1, 0], False),     # only half of the iterations grew
    ([0, 0, 0, 0], False),
])
def test_per_call_needs_growth_in_most_iterations_and_late(tmp_path, gains, per_call):
    a = _analyze(tmp_path, vgxml.head() + _iterations(gains) + vgxml.FINISHED + vgxml.END)
    assert [f["class"] for f in a.findings] == (["per-call"] if per_call else [])
    assert len(a.one_time) == (0 if per_call or not any(gains) else 1)


def test_calls_per_iteration_divide_the_rate(tmp_path):
    a = _analyze(tmp_path, vgxml.head() + _iterations([10, 10, 10], calls=5))
    (f,) = a.findings
    assert f["per_call"] == {"blocks": 2.0, "bytes": 64.0}
    assert f["iterations"] == {"measured": 3, "grew": 3, "calls": 15, "series": [10, 10, 10]}


def test_leak_at_exit_outside_any_scope(tmp_path):
    text = vgxml.head() + vgxml.marker(ev="boot", allocator="malloc") + vgxml.FINISHED
    text += vgxml.leak(1, 3, 96, [vgxml.MALLOC, vgxml.USER_FRAME])
    text += vgxml.leak(2, 5, 80, [vgxml.MALLOC, vgxml.USER_FRAME], kind="Leak_PossiblyLost")
    text += vgxml.leak(3, 7, 70, [vgxml.MALLOC, vgxml.LIBPYTHON])    # the interpreter's
    text += vgxml.END
    a = _analyze(tmp_path, text)
    (f,) = a.findings
    assert (f["class"], f["blocks"], f["bytes"], f["scope"]) == ("lost-at-exit", 3, 96, None)
    # "possibly lost" at exit is a Python object pointed into: not a finding
    assert a.stats["at_exit_not_lost"] == 1


def test_an_unmarked_leak_search_is_its_own_search(tmp_path):
    # VALGRIND_DO_LEAK_CHECK by hand inside a test: records without a
    # "search" marker; they still count for the scope they fall in.
    text = vgxml.head() + vgxml.marker(ev="boot", allocator="malloc")
    text += vgxml.marker(ev="search", mode="changed")
    text += vgxml.marker(ev="begin", kind="test", name="t.py::test_x")
    text += vgxml.leak(1, 2, 64, [vgxml.MALLOC, vgxml.USER_FRAME], record=(2, 2))
    text += vgxml.leak(1, 4, 128, [vgxml.MALLOC, vgxml.USER_FRAME], record=(1, 2))
    text += vgxml.marker(ev="end", kind="test", name="t.py::test_x", errors=0)
    text += vgxml.FINISHED + vgxml.END
    a = _analyze(tmp_path, text)
    (f,) = a.findings
    assert (f["class"], f["scope"], f["blocks"], f["bytes"]) == \
        ("lost-in-scope", "t.py::test_x", 4, 128)


def test_errors_before_boot_are_startup_noise(tmp_path):
    text = vgxml.head()
    text += vgxml.error(1, "UninitCondition", "Conditional jump", [vgxml.LIBPYTHON])
    text += vgxml.marker(ev="boot", allocator="malloc")
    text += vgxml.error(2, "InvalidRead", "Invalid read of size 4", [vgxml.USER_FRAME])
    text += vgxml.FINISHED + vgxml.counts([(1, 3), (2, 4)]) + vgxml.END
    a = _analyze(tmp_path, text)
    assert a.stats["errors_seen"] == 2 and a.stats["errors_filtered"] == 1
    assert a.stats["errors_startup"] == 1
    (f,) = a.findings
    assert (f["kind"], f["count"], f["scope"]) == ("invalid-read", 4, None)


def test_a_forked_child_with_the_same_error_is_listed_not_added(tmp_path):
    def run(pid):
        text = vgxml.head(pid=pid) + vgxml.marker(ev="boot", allocator="malloc")
        text += vgxml.error(1, "InvalidWrite", "Invalid write of size 1", [vgxml.USER_FRAME])
        return text + vgxml.FINISHED + vgxml.counts([(1, 2)]) + vgxml.END
    a = _analyze(tmp_path, run(100), run(101))
    (f,) = a.findings
    assert f["pids"] == [100, 101] and f["count"] == 4
    assert [p["pid"] for p in a.processes] == [100, 101]


def test_public_drops_internal_keys():
    findings = [{"category": "leak", "_stack": (1, ()), "_stacks": set(), "blocks": 1}]
    assert classify.public(findings) == [{"category": "leak", "blocks": 1}]
