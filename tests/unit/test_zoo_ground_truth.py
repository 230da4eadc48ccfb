"""The bug zoo's ground truth (tests/cbuild.py parse_case) is consistent:
one culprit marker per case, on leaky()'s path and never in clean(),
figures that agree with each other and with the table in tests/zoo/README.md;
and parse_case refuses malformed cases."""
import glob
import os
import re

import pytest

import cbuild
from unitdata import ROOT

ZOO = cbuild.zoo_cases()
VALGRIND_CASES = [cbuild.parse_case(p) for p in
                  sorted(glob.glob(os.path.join(ROOT, "tests", "valgrind_cases", "*.c")))]
KINDS = {"new-object", "error-path", "extra-incref", "existing-object-ref", "raw-buffer",
         "container-item", "dealloc", "gc-cycle", "intermittent", "proportional",
         "over-decref", "wrapper", "extra-incref-new", "stripped", "native"}


def readme_table():
    """{case: (kind, refs, objects, blocks, function or None, line)} from the README."""
    with open(os.path.join(ROOT, "tests", "zoo", "README.md")) as fh:
        text = fh.read()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not cells[0].startswith("`"):
            continue
        name = cells[0].strip("`")
        m = re.match(r"^(?:`(\w+)`|—[^)]*\))\s*(\d+)$", cells[6])
        assert m, line
        rows[name] = (cells[1], float(cells[3]), float(cells[4]), float(cells[5]), m.group(1),
                      int(m.group(2)))
    return rows


def test_the_zoo_is_all_there():
    names = [c["name"] for c in ZOO]
    assert names == sorted(names) and len(names) == len(set(names)) == 37
    assert {"new_object", "extra_decref", "gc_cycle_no_gc", "every_tenth"} <= set(names)
    assert {"native_lib_malloc", "native_cpp_new", "native_realloc", "native_strdup",
            "native_thread"} <= set(names)


@pytest.mark.parametrize("case", ZOO, ids=[c["name"] for c in ZOO])
def test_one_culprit_marker_on_the_leaky_path(case):
    with open(case["path"]) as fh:
        text = fh.read()
    assert len(re.findall(r"/\*\s*@culprit\s*\*/", text)) == 1
    assert case["culprit_line"] is not None
    assert case["culprit_function"] != "clean"
    if case["culprit_function"] is None:
        # inside a static type definition: the slot line
        assert case["kind"] == "gc-cycle"
        line = text.splitlines()[case["culprit_line"] - 1]
        assert re.search(r"\.tp_(flags|traverse)\s*=", line), line
    else:
        # leaky() itself, or a function it reaches: one it calls (or hands
        # on), or a slot of a type it uses (getbuffer_none's export)
        assert case["culprit_function"] == "leaky" or \
            case["culprit_function"] in _reached(text, "leaky"), case


@pytest.mark.parametrize("case", ZOO, ids=[c["name"] for c in ZOO])
def test_both_twins_are_exported(case):
    with open(case["path"]) as fh:
        text = fh.read()
    for name in ("leaky", "clean"):
        assert re.search(r'\{\s*"%s"\s*,\s*%s\s*,\s*METH_NOARGS' % (name, name), text), name
        assert "@culprit" not in _body(text, "clean")


@pytest.mark.parametrize("case", ZOO, ids=[c["name"] for c in ZOO])
def test_the_figures_agree_with_each_other(case):
    e = case["expect"]
    assert case["kind"] in KINDS
    assert 0 <= e["objects"] <= e["blocks"]            # an object is a block
    if e["objects"] > 0:
        assert e["refs"] >= e["objects"]               # each new object holds a reference
    if case["kind"] in ("extra-incref", "existing-object-ref"):
        assert (e["refs"], e["objects"], e["blocks"]) == (1, 0, 0)
    if case["kind"] in ("raw-buffer", "wrapper", "stripped"):
        assert (e["refs"], e["objects"], e["blocks"]) == (0, 0, 1)
    if case["kind"] == "over-decref":
        assert e["refs"] < 0 and e["objects"] == e["blocks"] == 0
    native = case["native"]
    if case["kind"] == "native":
        # malloc & co. only: nothing in the PEP 445 domains, a native block per call
        assert (e["refs"], e["objects"], e["blocks"]) == (0, 0, 0)
        assert native["blocks"] > 0 and native["bytes"] >= 16 * native["blocks"]
    else:
        assert native == {"blocks": 0.0, "bytes": 0.0}
    if case["library"]:
        # the second library is the same file built with ZOO_LIBRARY
        with open(case["path"]) as fh:
            assert "#ifdef ZOO_LIBRARY" in fh.read()
    assert case["description"]


def test_the_readme_table_matches_the_sources():
    table = readme_table()
    truth = {c["name"]: (c["kind"], c["expect"]["refs"], c["expect"]["objects"],
                         c["expect"]["blocks"], c["culprit_function"], c["culprit_line"])
             for c in ZOO}
    assert set(table) == set(truth), set(table) ^ set(truth)
    for name in truth:
        assert table[name] == truth[name], name


@pytest.mark.parametrize("case", VALGRIND_CASES, ids=[c["name"] for c in VALGRIND_CASES])
def test_valgrind_cases_have_one_culprit_and_an_expected_kind(case):
    with open(case["path"]) as fh:
        text = fh.read()
    (kind,) = re.findall(r"valgrind-expect:\s*(\S+)", text)
    assert kind in ("use-after-free", "overflow", "double-free", "uninitialised")
    assert case["kind"] == "memory-error" and case["culprit_line"] is not None
    assert case["culprit_function"] == "leaky"


def _reached(text, function, depth=4):
    """The names reached from `function`'s body through the functions it
    names and the static initializers ({...}) of the variables it names,
    `depth` steps at most."""
    seen, todo = set(), {function}
    for _ in range(depth):
        found = set()
        for name in todo - seen:
            seen.add(name)
            if re.search(r"^%s\s*\(" % name, text, re.M):
                found |= set(re.findall(r"\b\w+\b", _body(text, name)))
            init = re.search(r"\b%s\s*=\s*(\{.*?\});" % name, text, re.S)
            if init:
                found |= set(re.findall(r"\b\w+\b", init.group(1)))
        todo = found
    return seen | todo


def _body(text, function):
    m = re.search(r"^%s\s*\(" % function, text, re.M)
    assert m, function
    start = text.index("{", m.end())
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i + 1]
    raise AssertionError("unbalanced " + function)


# ---- parse_case on malformed cases -----------------------------------------------------------

HEADER = """/*
 * zoo-kind: new-object
 * zoo-expect: refs=1 objects=1 blocks=1
 * zoo-description: a test case
 */
"""


def write(tmp_path, text, name="case.c"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_well_formed_case(tmp_path):
    body = HEADER + "static PyObject *\nleaky(PyObject *m)\n{\n    return make();  /* @culprit */\n}\n"
    case = cbuild.parse_case(write(tmp_path, body, "mine.c"))
    assert case["name"] == "mine" and case["culprit_line"] == 9
    assert case["culprit_function"] == "leaky"
    assert case["expect"] == {"refs": 1.0, "objects": 1.0, "blocks": 1.0}
    assert (case["kind"], case["description"]) == ("new-object", "a test case")
    assert case["native"] == {"blocks": 0.0, "bytes": 0.0} and case["library"] is None


def test_a_native_case_with_a_library(tmp_path):
    head = HEADER.replace("zoo-expect: refs=1 objects=1 blocks=1",
                          "zoo-expect: refs=0 objects=0 blocks=0\n * zoo-native: blocks=1 bytes=96"
                          "\n * zoo-library: zoo_lib")
    case = cbuild.parse_case(write(tmp_path, head + "int x;\n", "lib_case.cpp"))
    assert case["name"] == "lib_case"
    assert case["native"] == {"blocks": 1.0, "bytes": 96.0} and case["library"] == "zoo_lib"


@pytest.mark.parametrize("text, message", [
    (HEADER.replace(" * zoo-kind: new-object\n", ""), "missing zoo-kind header line"),
    (HEADER.replace("zoo-description: a test case", "nothing"), "missing zoo-description"),
    (HEADER.replace("blocks=1", "blocks:1"), "bad zoo-expect item 'blocks:1'"),
    (HEADER.replace("blocks=1", "blocks=1 bytes=8"), "bad zoo-expect item 'bytes=8'"),
    (HEADER.replace(" blocks=1", ""), "zoo-expect must give refs, objects and blocks"),
    (HEADER.replace(" */", " * zoo-native: blocks=1 objects=1\n */"),
     "bad zoo-native item 'objects=1'"),
    (HEADER + "int a; /* @culprit */\nint b; /* @culprit */\n",
     "more than one @culprit marker (lines [6, 7])"),
])
def test_malformed_cases_are_refused(tmp_path, text, message):
    with pytest.raises(ValueError) as info:
        cbuild.parse_case(write(tmp_path, text))
    assert message in str(info.value)


def test_the_allocation_marker_is_the_culprit_line_when_absent(tmp_path):
    body = HEADER + ("static void *\nwrap(void)\n{\n    return malloc(8);  /* @allocation */\n}\n"
                     "static PyObject *\nleaky(PyObject *m)\n{\n    keep(wrap());  /* @culprit */\n}\n")
    case = cbuild.parse_case(write(tmp_path, body))
    assert (case["culprit_line"], case["allocation_line"]) == (14, 9)
    case = cbuild.parse_case(write(tmp_path, body.replace("/* @allocation */", "")))
    assert case["allocation_line"] == case["culprit_line"] == 14
    with pytest.raises(ValueError) as info:
        cbuild.parse_case(write(tmp_path, body + "int a; /* @allocation */\n"))
    assert "more than one @allocation marker (lines [9, 16])" in str(info.value)


@pytest.mark.parametrize("name, line", [("incref_new_object", 26), ("wrapper_alloc", 24),
                                        ("new_object", 21)])
def test_zoo_allocation_lines(name, line):
    (case,) = [c for c in ZOO if c["name"] == name]
    assert case["allocation_line"] == line


def test_no_marker_is_no_culprit(tmp_path):
    case = cbuild.parse_case(write(tmp_path, HEADER + "int x;\n"))
    assert case["culprit_line"] is None and case["culprit_function"] is None


C_TRICKY = r"""#include <Python.h>
#define BRACE "{"
static const char *s = "} not a brace {";   /* { nor this } */
// a comment with { braces
static PyTypeObject T = {
    .tp_flags = 0,
};

static int
helper(int x)
{
    if (x) {
        return '{';
    }
    return 0;
}

#define MULTI(a) \
    do { (a); } while (0)

static PyObject *
leaky(PyObject *m, PyObject *args)
{
    return NULL;
}
"""


@pytest.mark.parametrize("line, function", [
    (6, None),          # inside a static initializer
    (12, "helper"), (13, "helper"), (15, "helper"),
    (19, None),         # a macro
    (24, "leaky"),
    (3, None),
])
def test_enclosing_function_ignores_strings_comments_and_macros(line, function):
    assert cbuild._enclosing_function(C_TRICKY, line) == function


# ---- verify_truth.py's check of the native cases (the C library's heap) ---------------------

def _verify_truth():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "verify_truth", os.path.join(ROOT, "tests", "zoo", "verify_truth.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Args:
    calls = 1000
    rel_tol = 0.05


NATIVE_CASE = {"kind": "native", "native": {"blocks": 1.0, "bytes": 96.0}}


@pytest.mark.parametrize("fn, heap_per_call, ok", [
    ("leaky", 112.0, True),     # one 96-byte request: a 112-byte chunk
    ("leaky", 96.0, True),
    ("leaky", 90.0, False),     # less than was asked for
    ("leaky", 130.0, False),    # more than one chunk per call
    ("leaky", 0.0, False),
    ("clean", 0.5, True),       # drift below a byte per call
    ("clean", -0.5, True),
    ("clean", 32.0, False),     # a chunk every call
])
def test_verify_truth_checks_the_heap_of_native_cases(fn, heap_per_call, ok):
    vt = _verify_truth()
    base = {"heap": 5000}
    m = {"heap": 5000 + heap_per_call * _Args.calls}
    cell, good = vt._heap_check(NATIVE_CASE, fn, m, base, _Args)
    assert good is ok, cell
    assert cell.endswith(" !!") is (not ok)


def test_verify_truth_leaves_the_heap_of_other_cases_alone():
    vt = _verify_truth()
    case = {"kind": "raw-buffer", "native": {"blocks": 0.0, "bytes": 0.0}}
    assert vt._heap_check(case, "leaky", {"heap": 10 ** 6}, {"heap": 0}, _Args) == ("-", True)
    assert vt._heap_check(NATIVE_CASE, "leaky", {"heap": None}, {"heap": None}, _Args) == \
        ("n/a (no mallinfo2)", True)
