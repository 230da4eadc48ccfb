"""refhound check --sanitize: memory errors caught by the guard allocator.

The cases are tests/valgrind_cases (use after free, double free, overflow
into the alignment slack) and tests/sanitize_cases (underflow, write after
free through a stale pointer, overflow onto the guard page, a field past an
object whose type is too small): each `leaky()`
must be reported with its kind and its exact @culprit line, each `clean()`
must run to a clean verdict with no memory error.  A few bug-zoo cases run
under --sanitize too, to show that the guard and the leak check compose.
"""
import glob
import json
import os
import subprocess
import textwrap

import pytest

from support import (ROOT, asan_resident_memory_only, build_zoo_case, cbuild, check_json,
                     engine_path, interpreter, run_refhound)

EXPECT = {
    "uaf_borrowed_decref": "use-after-free",
    "uaf_read": "use-after-free",
    "double_free": "double-free",
    "overflow_write": "overflow",
    "overflow_aligned": "overflow",
    "overflow_object": "overflow",
    "underflow_write": "underflow",
    "write_after_free": "use-after-free",
    "uaf_setitem_borrowed": "use-after-free",
    "raw_write_after_free": "use-after-free",
    "native_overflow": "overflow",
    "native_use_after_free": "use-after-free",
    "native_cpp_use_after_delete": "use-after-free",
}
CASES = [cbuild.parse_case(p) for p in
         sorted(glob.glob(os.path.join(ROOT, "tests", "sanitize_cases", "*.c")) +
                glob.glob(os.path.join(ROOT, "tests", "sanitize_cases", "*.cpp")) +
                glob.glob(os.path.join(ROOT, "tests", "valgrind_cases", "*.c")))
         if os.path.splitext(os.path.basename(p))[0] in EXPECT]
# The errors come at the first guarded call: a short check is enough.
SHORT = ["--warmup", "1", "--min-iterations", "3", "--iterations", "4", "--calls", "50",
         "--patience", "0"]


def test_every_case_is_here():
    assert sorted(c["name"] for c in CASES) == sorted(EXPECT)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_memory_error_is_reported_with_its_kind_at_its_culprit_line(case):
    python = interpreter("release")
    cwd = build_zoo_case(case, python)
    status, result, err = check_json(python, case["name"] + ":leaky", cwd, "--sanitize", *SHORT)
    assert result is not None, err
    assert (status, result["verdict"]) == (1, "error"), err
    [e] = result["memory_errors"]
    assert e["kind"] == EXPECT[case["name"]], e
    c = e["culprit"]
    assert (os.path.basename(c["file"]), c["line"], c["function"]) == \
        (os.path.basename(case["path"]), case["culprit_line"], case["culprit_function"]), e
    assert e["allocated"], e                       # the allocation stack, symbolized
    lines = {(os.path.basename(f["file"] or ""), f["line"]) for f in e["allocated"]}
    assert any(name == os.path.basename(case["path"]) for name, _ in lines), e["allocated"]
    if e["kind"] == "use-after-free":
        assert e["freed"] and e["access"], e
        assert c["role"] == "free"
    elif e["kind"] == "double-free":
        assert e["freed"] and c["role"] == "access"
    else:
        # overflow/underflow: caught at the writing instruction (on the first
        # run, or on the replay after a red zone was found broken at free)
        assert (e["detected"], c["role"]) == ("fault", "access"), e


def test_overflow_of_an_object_is_replayed_and_keeps_the_type():
    case = next(c for c in CASES if c["name"] == "overflow_object")
    python = interpreter("release")
    cwd = build_zoo_case(case, python)
    _, result, err = check_json(python, "overflow_object:leaky", cwd, "--sanitize", *SHORT)
    e = result["memory_errors"][0]
    assert (e["replayed"], e["type"], e["size"]) == (True, "overflow_object.BadCounter", 24), err


def test_use_after_free_names_the_type_of_the_dead_object():
    case = next(c for c in CASES if c["name"] == "uaf_borrowed_decref")
    python = interpreter("release")
    cwd = build_zoo_case(case, python)
    _, result, err = check_json(python, "uaf_borrowed_decref:leaky", cwd, "--sanitize", *SHORT)
    assert result["memory_errors"][0]["type"] == "int", err


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_clean_twin_has_no_memory_error(case):
    python = interpreter("release")
    cwd = build_zoo_case(case, python)
    status, result, err = check_json(python, case["name"] + ":clean", cwd, "--sanitize")
    assert result is not None, err
    # native_use_after_free's twin starts a thread a call: under the
    # sanitizer tier ASan's quarantine and thread caches grow resident
    # memory until the quarantine fills (256 MB), which a slow machine may
    # not reach within the patience budget.
    verdict = "clean" if asan_resident_memory_only(result) else result["verdict"]
    assert (status, verdict) == (0, "clean"), err
    assert "memory_errors" not in result


def test_sampled_guard_catches_a_per_call_error_within_the_check():
    # One block in 50 guarded: the write after free happens on every call,
    # so a sampled block meets it within the check's calls.
    case = next(c for c in CASES if c["name"] == "write_after_free")
    python = interpreter("release")
    cwd = build_zoo_case(case, python)
    status, result, err = check_json(python, "write_after_free:leaky", cwd, "--sanitize",
                                     "--sanitize-rate", "50", *SHORT)
    assert result is not None, err
    assert status == 1 and result["memory_errors"][0]["culprit"]["line"] == case["culprit_line"]


ZOO = {c["name"]: c for c in cbuild.zoo_cases()}


@pytest.mark.parametrize("name,verdict", [("new_object", "leak"), ("nested_list", "leak"),
                                          ("extra_decref", "error")])
def test_leak_check_under_the_guard_gives_the_same_verdict(name, verdict):
    case = ZOO[name]
    python = interpreter("release")
    cwd = build_zoo_case(case, python)
    status, result, err = check_json(python, name + ":leaky", cwd, "--sanitize")
    assert result is not None, err
    assert (status, result["verdict"]) == (1, verdict), err
    assert "memory_errors" not in result
    assert round(result["per_call"]["blocks"], 2) == case["expect"]["blocks"]


def test_text_report_and_bad_rate(tmp_path):
    case = next(c for c in CASES if c["name"] == "double_free")
    python = interpreter("release")
    cwd = build_zoo_case(case, python)
    proc = run_refhound(python, ["check", "double_free:leaky", "--sanitize", "--no-progress"]
                        + SHORT, cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert "double-free" in proc.stdout
    assert "double_free.c:%d" % case["culprit_line"] in proc.stdout
    bad = run_refhound(python, ["check", "double_free:clean", "--sanitize-rate", "0"], cwd=cwd)
    assert bad.returncode == 2 and "sanitize-rate" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2


def test_json_file_and_html_report(tmp_path):
    case = next(c for c in CASES if c["name"] == "uaf_read")
    python = interpreter("release")
    cwd = build_zoo_case(case, python)
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    proc = run_refhound(python, ["check", "uaf_read:leaky", "--sanitize", "--no-progress",
                                 "--json", str(out), "--html", str(page)] + SHORT, cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(out.read_text())
    assert data["verdict"] == "error" and data["memory_errors"][0]["kind"] == "use-after-free"
    assert "uaf_read.c" in page.read_text()


def _program(tmp_path, body):
    path = tmp_path / "prog.py"
    path.write_text(body)
    return str(path)


PROGRAM = """\
import sys
import uaf_read, write_after_free
for i in range(100):
    uaf_read.clean()
if sys.argv[1:] == ["bug"]:
    write_after_free.leaky()
"""


def test_run_sanitize_reports_the_program_s_memory_error(tmp_path):
    python = interpreter("release")
    cases = {c["name"]: c for c in CASES}
    cwd = build_zoo_case(cases["uaf_read"], python)
    build_zoo_case(cases["write_after_free"], python)
    prog = _program(tmp_path, PROGRAM)
    proc = run_refhound(python, ["run", "--sanitize", "--json", "-", prog, "bug"], cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    [entry] = json.loads(proc.stdout)
    e = entry["memory_errors"][0]
    assert (entry["verdict"], e["kind"], e["culprit"]["line"]) == \
        ("error", "use-after-free", cases["write_after_free"]["culprit_line"])
    clean = run_refhound(python, ["run", "--sanitize", prog], cwd=cwd)
    assert clean.returncode == 0, clean.stderr
    assert "memory error" not in clean.stdout + clean.stderr


PYTEST_FILE = """\
import os
import overflow_write, uaf_read

def test_clean():
    for i in range(100):
        uaf_read.clean()

def test_overflow():
    if os.environ.get("BUG") == "1":
        overflow_write.leaky()
"""


@pytest.mark.parametrize("bug", ["0", "1"])
def test_pytest_sanitize_reports_the_first_memory_error(tmp_path, bug):
    import subprocess
    from support import engine_path
    python = interpreter("release")
    cases = {c["name"]: c for c in CASES}
    cwd = build_zoo_case(cases["overflow_write"], python)
    build_zoo_case(cases["uaf_read"], python)
    (tmp_path / "test_mem.py").write_text(PYTEST_FILE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([engine_path(python), cwd]), BUG=bug,
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    for key in list(env):
        if key.startswith("PYTEST_XDIST") or key in ("PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"):
            env.pop(key)
    proc = subprocess.run([python, "-m", "pytest", "-p", "refhound.pytest_plugin",
                           "-p", "no:cacheprovider", "-q", "--refhound-sanitize", "test_mem.py"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=600)
    if bug == "0":
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "2 passed" in proc.stdout and "memory error" not in proc.stderr
        return
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    # caught in the red zone at free, then at the write itself on the replay
    assert "overflow of a 24-byte mem block" in proc.stderr
    assert "overflow_write.c:%d in leaky" % cases["overflow_write"]["culprit_line"] in proc.stderr


API_PROGRAM = """\
import json, sys
import refhound
import double_free, uaf_borrowed_decref
kept = [object() for _ in range(5)]          # this process's own state
found = {"double_free": refhound.sanitize(double_free.leaky, calls=20),
         "uaf_borrowed_decref": refhound.sanitize(uaf_borrowed_decref.leaky, calls=20),
         "clean": refhound.sanitize(double_free.clean, calls=200)}
try:
    refhound.sanitize(int, "not a number")
    raised = None
except refhound.TargetFailed as exc:
    raised = str(exc)
print(json.dumps({"found": found, "raised": raised, "kept": len(kept)}))
"""


def test_api_sanitize_reports_in_a_child_and_the_caller_goes_on(tmp_path):
    # refhound.sanitize(): the guard in a forked child; the calling process
    # never faults, gets the errors as data and carries on.
    import subprocess
    from support import engine_path
    python = interpreter("release")
    cases = {c["name"]: c for c in CASES}
    cwd = build_zoo_case(cases["double_free"], python)
    build_zoo_case(cases["uaf_borrowed_decref"], python)
    prog = _program(tmp_path, API_PROGRAM)
    env = dict(os.environ, PYTHONPATH=engine_path(python) + os.pathsep + cwd)
    proc = subprocess.run([python, prog], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["kept"] == 5 and out["found"]["clean"] == []
    for name in ("double_free", "uaf_borrowed_decref"):
        [e] = out["found"][name]
        c = e["culprit"]
        assert (e["kind"], os.path.basename(c["file"]), c["line"]) == \
            (EXPECT[name], name + ".c", cases[name]["culprit_line"]), e
    assert "int raised under the guard" in out["raised"], out
    assert "ValueError" in proc.stderr


def _run_under_the_guard(tmp_path, name, source, body):
    """Build the extension `name` from `source` in tmp_path and run `body`
    in a fresh interpreter after the guard (every block) is installed;
    `path` is its report file, removed at the end.  The finished process."""
    python = interpreter("release")
    (tmp_path / (name + ".c")).write_text(source)
    cbuild.build_extension(str(tmp_path / (name + ".c")), str(tmp_path), python=python)
    (tmp_path / "prog.py").write_text(
        "import os, tempfile\nfrom refhound import _core\n"
        "fd, path = tempfile.mkstemp()\n_core.guard_start(fd, rate=1)\n"
        + textwrap.dedent(body) + "os.unlink(path)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), engine_path(python)]))
    return subprocess.run([python, "prog.py"], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=120)


KEEPER = r"""
#include <Python.h>
#include <stdlib.h>
#include <string.h>
static char *kept;
static PyObject *keep(PyObject *m, PyObject *a)
{
    kept = malloc(40);
    if (kept == NULL) return PyErr_NoMemory();
    memset(kept, 7, 40);
    char *grown = realloc(kept, 48);
    if (grown == NULL) return PyErr_NoMemory();
    kept = grown;
    Py_RETURN_NONE;
}
static PyObject *nothing(PyObject *m, PyObject *a) { Py_RETURN_NONE; }
static PyObject *release(PyObject *m, PyObject *a)
{
    long first = kept[0];
    free(kept);
    kept = NULL;
    return PyLong_FromLong(first);
}
static PyMethodDef methods[] = {{"keep", keep, METH_NOARGS, ""},
                                {"nothing", nothing, METH_NOARGS, ""},
                                {"release", release, METH_NOARGS, ""}, {NULL}};
static struct PyModuleDef md = {PyModuleDef_HEAD_INIT, "keeper", NULL, -1, methods};
PyMODINIT_FUNC PyInit_keeper(void) { return PyModule_Create(&md); }
"""


def test_native_blocks_are_guarded_and_freed_after_tracking_stops(tmp_path):
    # GIVEN an extension that mallocs a buffer while native tracking runs
    # under the guard, and frees it after tracking has stopped
    proc = _run_under_the_guard(tmp_path, "keeper", KEEPER, """
        for round in range(2):
            _core.start()
            _core.native_start()
            import keeper
            g0 = _core.guard_stats()["guarded"]
            keeper.nothing()
            g1 = _core.guard_stats()["guarded"]
            keeper.keep()
            guarded = (_core.guard_stats()["guarded"] - g1) - (g1 - g0)
            _core.stop()
            print(guarded, keeper.release())
    """)
    # THEN its malloc and realloc were guarded blocks (two more than a call
    # that allocates nothing), and their free after the stop went back
    # to the guard (the C library would abort: "munmap_chunk(): invalid
    # pointer"), twice
    assert proc.returncode == 0, proc.stderr[-2000:]
    rounds = [line.split() for line in proc.stdout.splitlines()]
    assert [r[1] for r in rounds] == ["7", "7"], proc.stdout
    assert [r[0] for r in rounds] == ["2", "2"], proc.stdout


READER = r"""
#define _GNU_SOURCE
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>
static PyObject *first_line(PyObject *m, PyObject *arg)
{
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL) return NULL;
    FILE *f = fopen(path, "r");
    if (f == NULL) return PyErr_SetFromErrno(PyExc_OSError);
    size_t n = 16;
    char *line = malloc(n);             /* the extension's own buffer, grown by getline */
    ssize_t got = line ? getline(&line, &n, f) : -1;
    fclose(f);
    free(line);
    return PyLong_FromSsize_t(got);
}
static PyMethodDef methods[] = {{"first_line", first_line, METH_O, ""}, {NULL}};
static struct PyModuleDef md = {PyModuleDef_HEAD_INIT, "reader", NULL, -1, methods};
PyMODINIT_FUNC PyInit_reader(void) { return PyModule_Create(&md); }
"""


def test_getline_grows_a_guarded_buffer(tmp_path):
    # GIVEN an extension that mallocs a 16-byte buffer and lets getline()
    # grow it to a 300-byte line, under the guard with native tracking on
    (tmp_path / "line.txt").write_text("x" * 300 + "\n")
    proc = _run_under_the_guard(tmp_path, "reader", READER, """
        _core.start()
        _core.native_start()
        import reader
        print([reader.first_line("line.txt") for _ in range(3)],
              _core.guard_stats()["guarded"] > 0)
        _core.stop()
        print(reader.first_line("line.txt"), os.path.getsize(path))
    """)
    # THEN the C library's realloc inside getline was handed a block of its
    # own (it aborts on the guard's: "mremap_chunk(): invalid pointer"), while
    # tracking runs and after it stopped, and no memory error was reported
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["[301, 301, 301] True", "301 0"], proc.stdout
