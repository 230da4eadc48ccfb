"""One story per run: each test's count is the errors in the user's code,
everything else is noise summarised once with where it came from
(refhound._valgrind.classify and .report).

  simplejson_dump.xml  pytest on test_dump.py of simplejson 3.19.3 (a real
                       suite, capture.py): 14 tests; test_stringify_key
                       loses 9 item tuples per run (the sorted skipkeys
                       path never releases a skipped item: pytest --refhound
                       finds +9 tuples per call, allocated at PyDict_Items);
                       the parser is handed CPython 3.11's small int 0,
                       which memcheck takes for uninitialised (700 000
                       reports, none a bug)
  hand-written files   for the shapes a real run does not give on demand
"""
import functools
import json

import pytest

import vgxml
from refhound._valgrind import classify, report
from refhound._valgrind import unfiltered
from unitdata import data_path

SJ = "/home/dev/refhound/build/pypi/simplejson-3.19.3/simplejson/"
TESTS = "simplejson/tests/test_dump.py::TestDump::"
STRINGIFY = TESTS + "test_stringify_key"


@functools.lru_cache(maxsize=None)
def interpreter_info():
    with open(data_path("valgrind", "interpreter.json")) as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def simplejson(as_stdlib=False, as_site=False):
    """The saved run, analysed; as_stdlib: with simplejson's folder taken for
    the standard library's (what site-packages inside lib/python3.11 was
    taken for, before packages there counted as the user's); as_site: the
    folder is site-packages inside the standard library's folder."""
    info = dict(interpreter_info())
    if as_stdlib or as_site:
        info["stdlib"] = list(info["stdlib"]) + ["/home/dev/refhound/build"]
    if as_site:
        info["site"] = list(info["site"]) + ["/home/dev/refhound/build/pypi"]
    return classify.analyze([data_path("valgrind", "simplejson_dump.xml")],
                            classify.UserFilter(info))


@functools.lru_cache(maxsize=None)
def summary(as_stdlib=False):
    run = {"command": ["python3", "-m", "pytest"], "allocator": "malloc", "exit_status": 0,
           "seconds": 150.6, "suppressions": {"count": 19, "generated": False,
                                              "files": ["b.supp"], "baseline": "b.supp"}}
    return report.to_dict(run, simplejson(as_stdlib))


def section(text, head):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")),
               len(lines))
    return lines[start:end]


# ---- the real suite ------------------------------------------------------------------

def test_real_suite_leak_is_the_tests_lost_tuples_at_their_line():
    a = simplejson()
    (leak,) = a.findings
    assert (leak["category"], leak["class"], leak["scope"]) == ("leak", "lost-in-scope",
                                                                 STRINGIFY)
    c = leak["culprit"]
    assert (c["file"], c["line"], c["function"]) == (SJ + "_speedups.c", 691,
                                                     "encoder_dict_iteritems")
    # 6 tuples have PyDict_Items's stack; 3 were taken from the tuple free
    # list and keep the stack of their first life (the test's generator,
    # json's encoder): 9 tuples of 56 bytes, as pytest --refhound counts
    assert (leak["blocks"], leak["bytes"]) == (6, 336)
    assert leak["reused"] == {"type": "tuple", "blocks": 3, "bytes": 168}
    assert a.stats["leak_records_reused"] == a.stats["leak_records_filtered"] == 2


def test_real_suite_counts_per_test_are_the_users_own():
    a = simplejson()
    scopes = {s["name"]: s for s in a.scopes}
    assert len(scopes) == 14
    acc = scopes[TESTS + "test_accumulator"]
    # memcheck counted 700 000 errors in the test, none of them the user's
    assert (acc["errors"], acc["leaks"], acc["memcheck_errors"]) == (0, 0, 700000)
    assert {n: (s["errors"], s["leaks"]) for n, s in scopes.items()
            if s["errors"] or s["leaks"]} == {STRINGIFY: (0, 1)}


def test_real_suite_small_int_reports_in_the_parser_are_set_aside():
    a = simplejson()
    # the interpreter was seen making them: its suppressions matched
    assert a.noise["suppressions_used"]["refhound-baseline:maybe_small_long"] > 100000
    got = sorted((f["culprit"]["line"], f["culprit"]["function"], f["count"], f["scope"])
                 for f in a.set_aside)
    assert got == [(1612, "_parse_object_unicode", 60, TESTS + "test_sort_keys"),
                   (1615, "_parse_object_unicode", 30, TESTS + "test_sort_keys"),
                   (1798, "_parse_array_unicode", 100000, TESTS + "test_accumulator"),
                   (1801, "_parse_array_unicode", 100000, TESTS + "test_accumulator"),
                   (1840, "_parse_array_unicode", 100000, TESTS + "test_accumulator"),
                   (2082, "_match_number_unicode", 200060, TESTS + "test_accumulator")]
    assert {f["reason"] for f in a.set_aside} == {"small-int"}
    assert {f["culprit"]["file"] for f in a.set_aside} == {SJ + "_speedups.c"}
    assert a.stats["errors_set_aside"] == 8       # 8 records, 6 lines
    assert not [f for f in a.findings if f["category"] == "error"]


def test_real_suite_noise_says_where_it_came_from():
    a = simplejson()
    groups = {g["hint"] or g["object"]: g for g in a.noise["errors"]}
    small = groups["small-int"]
    assert small["object"] == "libpython3.11.so.1.0"
    assert small["occurrences"] > 200000 and "list_richcompare" in small["functions"]
    assert groups["libc-vector"]["functions"] == ["__wmemcmp_avx2_movbe"]
    assert set(a.noise["hints"]) >= {"small-int", "libc-vector"}
    total = sum(g["occurrences"] for g in a.noise["errors"])
    assert total == a.stats["error_occurrences_filtered"]
    assert sum(g["distinct"] for g in a.noise["errors"]) == a.stats["errors_filtered"]
    assert a.user_objects == {"_speedups.cpython-311-x86_64-linux-gnu.so":
                              SJ + "_speedups.cpython-311-x86_64-linux-gnu.so"}


def test_real_suite_report_tells_one_story():
    text = report.render(summary(), root="/home/dev/refhound/build/pypi/simplejson-3.19.3")
    lines = text.splitlines()
    assert lines[0] == "refhound valgrind: LEAK  (malloc allocator, 150.6 s, exit status 0)"
    assert "memory errors" not in text
    assert lines[2:5] == [
        "leaks (1)",
        "  leak simplejson/_speedups.c:691 in encoder_dict_iteritems, lost: 9 blocks, "
        "504 bytes  [%s]" % STRINGIFY,
        "      6 allocated here; 3 more tuples taken from CPython's free list keep the "
        "allocation stack of their first life"]
    assert section(text, "tests (") == ["tests (14): 1 with errors or leaks in your code",
                                        "  %s: 1 leak" % STRINGIFY]
    assert "your code in memcheck's records: _speedups.cpython-311-x86_64-linux-gnu.so" in lines
    noise = section(text, "noise, left out")
    assert noise[0].startswith("noise, left out of the verdict: ")
    assert sum(1 for line in noise if "CPython 3.11 reads the digit" in line) == 1
    assert "      6 reports x500,150 in your code's stack look the same (simplejson/_speedups.c:" \
           "1612, 1615, 1798, 1801, 1840, 2082): not counted as yours; run with " \
           "--track-origins to tell for sure" in noise
    assert noise[-1].startswith("  suppressions: 19 generated for this interpreter (cached); ")
    assert text.count("what memcheck cannot see") == 1


def test_a_clean_verdict_never_stands_beside_a_count():
    # The report as it was when site-packages counted as the standard
    # library: nothing of the user's, so CLEAN; no test shows a count.
    data = summary(as_stdlib=True)
    assert data["verdict"] == "clean" and data["set_aside"] == []
    assert all(s["errors"] == 0 and s["leaks"] == 0 for s in data["scopes"])
    text = report.render(data)
    assert section(text, "tests (") == ["tests (14): no errors or leaks in your code"]
    assert "your code in memcheck's records: none (yours is everything but the interpreter, " \
           "system libraries, Valgrind and refhound; --user GLOB names it)" in text.splitlines()
    json.dumps(data)


def test_a_package_installed_in_site_packages_is_the_users():
    # where the suite's package usually is: its leak is found all the same
    inside, private = simplejson(as_site=True), simplejson()
    assert classify.public(inside.findings) == classify.public(private.findings)
    assert inside.set_aside == private.set_aside and inside.scopes == private.scopes


def test_site_packages_are_the_users():
    info = interpreter_info()
    user = classify.UserFilter(info)
    site = info["site"][0]
    stdlib = info["stdlib"][0]
    assert site.startswith(stdlib + "/")          # python.org and pyenv layouts
    ext = frame(site + "/simplejson/_speedups.cpython-311-x86_64-linux-gnu.so",
                "/tmp/pip-req-build-x/simplejson/_speedups.c")
    assert user.is_user(ext)
    assert not user.is_user(frame(stdlib + "/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so"))
    # refhound installed there is still not the user's
    own = dict(info, refhound_dir=site + "/refhound")
    assert not classify.UserFilter(own).is_user(frame(site + "/refhound/_core.so"))
    assert not classify.UserFilter(info, exclude=["*/simplejson/*"]).is_user(ext)


def frame(obj, path=None, fn="f", line=1):
    from refhound._valgrind.xmlparse import Frame
    d, _, f = (path or "").rpartition("/")
    return Frame("0x1", obj, fn, d or None, f or None, line)


# ---- hand-written: uninitialised values the interpreter made ----------------------------

HEADER = dict(ip="0x49E0569", obj=vgxml.LIBPYTHON["obj"], fn="Py_INCREF",
              dir="/usr/include/python3.11", file="object.h", line=502)
LIST_APPEND = dict(ip="0x49F9000", obj=vgxml.LIBPYTHON["obj"], fn="PyList_Append",
                   dir="/build/Python-3.11.7/Objects", file="listobject.c", line=335)
LONG_NEW = dict(ip="0x49D80C0", obj=vgxml.LIBPYTHON["obj"], fn="_PyLong_New",
                dir="/build/Python-3.11.7/Objects", file="longobject.c", line=161)
FROM_STRING = dict(ip="0x49E0343", obj=vgxml.LIBPYTHON["obj"], fn="PyLong_FromString",
                   dir="/build/Python-3.11.7/Objects", file="longobject.c", line=2500)
PARSER = dict(vgxml.USER_FRAME, fn="parse_array", line=77)
HEAP = "Uninitialised value was created by a heap allocation"
STACK = "Uninitialised value was created by a stack allocation"


def _run(tmp_path, errors, supp=(("refhound-baseline:maybe_small_long", 5),)):
    text = vgxml.head() + vgxml.marker(ev="boot", allocator="malloc")
    text += vgxml.marker(ev="begin", kind="test", name="t.py::test_parse")
    text += "".join(errors)
    text += vgxml.marker(ev="end", kind="test", name="t.py::test_parse", errors=9)
    text += vgxml.FINISHED + vgxml.counts([(i, 3) for i in range(1, 10)])
    text += vgxml.suppcounts(supp) + vgxml.END
    return classify.analyze([vgxml.write(tmp_path, text)],
                            classify.UserFilter({"include": ["/usr/include/python3.11"]}))


def _pointer_error(unique, origin=False):
    """Py_INCREF on an undefined object pointer in PyList_Append, called by
    the user's parser; origin: with --track-origins' answer (_PyLong_New
    called by PyLong_FromString)."""
    aux = [(HEAP, [vgxml.MALLOC, LONG_NEW, FROM_STRING, PARSER])] if origin else []
    return vgxml.error(unique, "UninitValue", "Use of uninitialised value of size 8",
                       [HEADER, LIST_APPEND, PARSER], aux=aux)


def test_with_origins_an_interpreter_made_value_is_noise(tmp_path):
    # memcheck --track-origins: the value came from _PyLong_New, called
    # by PyLong_FromString: the interpreter made it, not the parser
    a = _run(tmp_path, [_pointer_error(1, origin=True)])
    assert a.findings == [] and a.set_aside == []
    assert a.stats["errors_from_interpreter"] == 1
    (g,) = a.noise["errors"]
    assert (g["hint"], g["in_your_code"], g["occurrences"]) == ("small-int", 1, 3)
    (scope,) = a.scopes
    assert (scope["errors"], scope["memcheck_errors"]) == (0, 9)


def test_with_origins_a_value_the_user_made_is_an_error(tmp_path):
    # the value was a local of the parser's never written (a stack allocation)
    err = vgxml.error(1, "UninitValue", "Use of uninitialised value of size 8",
                      [HEADER, LIST_APPEND, PARSER], aux=[(STACK, [PARSER])])
    a = _run(tmp_path, [err])
    (f,) = a.findings
    assert (f["kind"], f["culprit"]["line"], f["scope"]) == ("uninitialised", 77,
                                                             "t.py::test_parse")
    assert a.scopes[0]["errors"] == 1 and a.set_aside == []


def test_without_origins_an_object_pointer_is_set_aside_when_the_interpreter_makes_them(
        tmp_path):
    a = _run(tmp_path, [_pointer_error(1)])
    assert a.findings == []
    (f,) = a.set_aside
    assert (f["reason"], f["culprit"]["line"], f["count"]) == ("small-int", 77, 3)
    assert a.scopes[0]["errors"] == 0 and a.scopes[0]["set_aside"] == 1


def test_without_evidence_an_object_pointer_is_an_error(tmp_path):
    a = _run(tmp_path, [_pointer_error(1)], supp=(("refhound-baseline:PyList_New", 5),))
    (f,) = a.findings
    assert f["kind"] == "uninitialised" and a.set_aside == []


def test_a_branch_on_unwritten_memory_stays_an_error(tmp_path):
    # not an object pointer: the user's own read of a buffer (valgrind_cases/uninit_read.c)
    err = vgxml.error(1, "UninitCondition", "Conditional jump or move depends on "
                      "uninitialised value(s)", [PARSER])
    a = _run(tmp_path, [err])
    (f,) = a.findings
    assert f["kind"] == "uninitialised" and a.set_aside == []


def test_interpreter_errors_seen_in_the_run_are_evidence_too(tmp_path):
    small = vgxml.error(2, "UninitCondition", "Conditional jump", [
        dict(LONG_NEW, fn="maybe_small_long"), FROM_STRING])
    a = _run(tmp_path, [small, _pointer_error(1)], supp=())
    assert a.findings == [] and len(a.set_aside) == 1
    (g,) = a.noise["errors"]
    assert (g["hint"], g["functions"]) == ("small-int", ["maybe_small_long"])


# ---- hand-written: objects from CPython's free lists ------------------------------------

TUPLE_NEW = dict(ip="0x49F0000", obj=vgxml.LIBPYTHON["obj"], fn="PyTuple_New",
                 dir="/build/Python-3.11.7/Objects", file="tupleobject.c", line=75)
EVAL = dict(ip="0x49F1000", obj=vgxml.LIBPYTHON["obj"], fn="_PyEval_EvalFrameDefault",
            dir="/build/Python-3.11.7/Python", file="ceval.c", line=3229)


def _test_scope(name, records):
    text = vgxml.marker(ev="search", mode="changed")
    text += vgxml.marker(ev="begin", kind="test", name=name)
    text += vgxml.marker(ev="search", mode="changed")
    text += "".join(records)
    text += vgxml.marker(ev="end", kind="test", name=name, errors=0)
    return text


def test_tuples_from_the_free_list_join_the_tests_tuple_leak(tmp_path):
    mine = [vgxml.MALLOC, TUPLE_NEW, vgxml.USER_FRAME]
    reused = [vgxml.MALLOC, TUPLE_NEW, EVAL]        # a first life in Python code
    text = vgxml.head() + vgxml.marker(ev="boot", allocator="malloc")
    text += _test_scope("t.py::test_leaks", [vgxml.leak(1, 6, 336, mine, record=(1, 2)),
                                             vgxml.leak(2, 3, 168, reused, record=(2, 2))])
    # the same stack losing tuples in a test with no leak of the user's: noise
    text += _test_scope("t.py::test_other", [vgxml.leak(2, 5, 280, reused, record=(1, 1))])
    text += vgxml.FINISHED + vgxml.END
    a = classify.analyze([vgxml.write(tmp_path, text)], classify.UserFilter(None))
    (f,) = a.findings
    assert (f["scope"], f["blocks"], f["bytes"]) == ("t.py::test_leaks", 6, 336)
    assert f["reused"] == {"type": "tuple", "blocks": 3, "bytes": 168}
    assert a.noise["leak_records"][0]["reused"] is True
    data = report.to_dict({"command": [], "allocator": "malloc", "exit_status": 0,
                           "seconds": 1.0, "suppressions": {}}, a)
    text = report.render(data)
    assert "  leak /home/me/ext.c:42 in make_thing, lost: 9 blocks, 504 bytes  " \
           "[t.py::test_leaks]" in text.splitlines()


def test_free_list_type_of_a_stack():
    f = classify.free_list_type
    assert f([frame("libc.so", fn="malloc"), frame("lib", fn="PyTuple_New")]) == "tuple"
    assert f([frame("lib", fn="PyFloat_FromDouble")]) == "float"
    assert f([frame("lib", fn="PyLong_FromLong")]) is None


# ---- the rest ------------------------------------------------------------------------

def test_pytest_property_names_memchecks_own_counts():
    info = {"name": "t.py::test_x", "errors": 700000, "leaked_blocks": 1}
    prop = unfiltered(info)
    assert prop["name"] == "t.py::test_x"
    assert prop["memcheck_errors"] == 700000 and prop["memcheck_leaked_blocks"] == 1
    assert "errors" not in prop and "interpreter's noise" in prop["note"]


def test_suppression_counts_are_summed_by_name(tmp_path):
    from refhound._valgrind import xmlparse
    text = vgxml.head() + vgxml.FINISHED
    text += vgxml.suppcounts([("refhound-baseline:Py_INCREF", 3), ("mine", 1),
                              ("refhound-baseline:Py_INCREF", 4)]) + vgxml.END
    (used,) = [p for k, p in xmlparse.read_events(vgxml.write(tmp_path, text))
               if k == "suppcounts"]
    assert used == {"refhound-baseline:Py_INCREF": 7, "mine": 1}


@pytest.mark.parametrize("stack, kind, hint", [
    ([dict(vgxml.LIBPYTHON, fn="maybe_small_long")], "UninitCondition", "small-int"),
    ([dict(vgxml.LIBPYTHON, fn="address_in_range")], "UninitCondition", "address-in-range"),
    ([dict(vgxml.LIBPYTHON, obj="/usr/lib/x86_64-linux-gnu/libc.so.6",
           fn="__strlen_avx2")], "InvalidRead", "libc-vector"),
    ([dict(vgxml.LIBPYTHON, obj="/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
           fn="strncmp")], "InvalidRead", "loader"),
    ([vgxml.LIBPYTHON], "InvalidRead", None),
])
def test_known_noise_gets_its_hint(tmp_path, stack, kind, hint):
    text = vgxml.head() + vgxml.marker(ev="boot", allocator="malloc")
    text += vgxml.error(1, kind, "something", stack) + vgxml.FINISHED + vgxml.END
    a = classify.analyze([vgxml.write(tmp_path, text)], classify.UserFilter(None))
    (g,) = a.noise["errors"]
    assert g["hint"] == hint
    if hint:
        assert a.noise["hints"] == {hint: classify.HINTS[hint]}
