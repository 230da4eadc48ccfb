"""refhound under Valgrind: the launcher, the pool allocator, client requests.

Fast tests run natively (the pool allocator, client requests that do
nothing, command-line handling, a build without Valgrind's headers; the XML
reader and the classification are tested on saved XML in tests/unit).  The rest run real programs under memcheck, a handful of runs in
all, each shared by the tests that look at it (a file lock makes xdist
workers share one run):

  zoo run      every bug-zoo case that leaks memory and every memory-error
               case of tests/valgrind_cases, leaky and clean twins, each
               function in its own scope with iterations: the culprit
               line of each, per-call rates, nothing for the clean twins
  pool run     a subset with --allocator pool: the same findings
  pytest run   tests/valgrind_cases/sample_tests.py: each record tied to
               the right test
  check run    refhound.Checker inside a program under Valgrind: the
               per-iteration leak searches classify a per-call leak
  simplejson   a real suite: test_dump of simplejson 3.19.3 (a reference
               leak of the item tuples skipped under skipkeys) and of
               4.0.1 (fixed), sources from PyPI built in build/pypi
"""
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from support import BUILD, ROOT, cbuild, engine_path, run_refhound

CASES_DIR = os.path.join(ROOT, "tests", "valgrind_cases")
VALGRIND = shutil.which("valgrind")
HAVE_HEADERS = os.path.exists("/usr/include/valgrind/memcheck.h")
needs_valgrind = pytest.mark.skipif(VALGRIND is None or not HAVE_HEADERS,
                                    reason="valgrind and its headers are not installed "
                                           "(apt-get install valgrind)")

OUT = os.path.join(BUILD, "valgrind")
CACHE = os.path.join(OUT, "cache")

ZOO = [c for c in cbuild.zoo_cases() if c["expect"]["blocks"] > 0]
ERROR_CASES = [cbuild.parse_case(p) for p in sorted(glob.glob(os.path.join(CASES_DIR, "*.c")))]
for _c in ERROR_CASES:
    with open(_c["path"]) as _fh:
        _c["valgrind_expect"] = re.search(r"valgrind-expect:\s*(\S+)", _fh.read()).group(1)


def _lines_of(case, function):
    """Line numbers of a C function's body (to accept any line of it)."""
    with open(case["path"]) as fh:
        text = fh.read()
    m = re.search(r"^%s\s*\(" % re.escape(function), text, re.M)
    start = text[:m.start()].count("\n") + 1
    depth, lines, seen = 0, set(), False
    for i, line in enumerate(text[m.start():].splitlines()):
        lines.add(start + i)
        depth += line.count("{") - line.count("}")
        seen = seen or "{" in line
        if seen and depth == 0:
            break
    return lines


def _allocation_line(case):
    """The line on leaky()'s path that makes the object (PyObject_New or
    PyObject_GC_New), in leaky() or in a function leaky() calls."""
    with open(case["path"]) as fh:
        text = fh.read()
    lines = text.splitlines()
    body = " ".join(lines[n - 1] for n in sorted(_lines_of(case, "leaky")))
    called = {"leaky"} | set(re.findall(r"\b(\w+)\s*\(", body))
    found = [n for n, line in enumerate(lines, 1)
             if re.search(r"\bPyObject_(GC_)?New\(", line)
             and cbuild._enclosing_function(text, n) in called]
    assert len(found) == 1, (case["name"], found)
    return found[0]


def modules_dir():
    out = os.path.join(OUT, "modules")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(OUT, "modules.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for case in ZOO + ERROR_CASES:
            cbuild.build_extension(case["path"], out)
    return out


def _env(extra_path=()):
    env = {"REFHOUND_CACHE_DIR": CACHE}
    env["PYTHONPATH"] = os.pathsep.join([engine_path(sys.executable)] + list(extra_path))
    return env


def shared_run(name, args, extra_path=(), timeout=1200, cwd=ROOT):
    """Run `refhound valgrind --json` once per test session (xdist workers
    share it through a lock file); returns (exit status, JSON, its output)."""
    os.makedirs(OUT, exist_ok=True)
    session = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getppid())
    result = os.path.join(OUT, name + ".result.json")
    with open(os.path.join(OUT, name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(result) as fh:
                saved = json.load(fh)
            if saved["session"] == session and saved["args"] == args:
                return saved["status"], saved["data"], saved["output"]
        except (OSError, ValueError, KeyError):
            pass
        report = os.path.join(OUT, name + ".json")
        proc = run_refhound(sys.executable, ["valgrind", "--json", report] + args,
                            cwd=cwd, timeout=timeout, env=_env(extra_path))
        output = proc.stdout[-20000:] + proc.stderr[-20000:]
        try:
            with open(report) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            data = None
        with open(result, "w") as fh:
            json.dump({"session": session, "args": args, "status": proc.returncode,
                       "data": data, "output": output}, fh)
        return proc.returncode, data, output


def _by_scope(data):
    out = {}
    for f in data["errors"] + data["leaks"] + data["growth"]:
        out.setdefault(f["scope"], []).append(f)
    return out


def _python(code, timeout=300):
    env = dict(os.environ)
    env.update(_env())
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=timeout)


# ---------------------------------------------------------------------------
# Native: client requests, the pool allocator, the build switch

def test_have_valgrind_matches_the_headers():
    proc = _python("from refhound import _core; print(_core.HAVE_VALGRIND)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("1" if HAVE_HEADERS else "0")


def test_client_requests_do_nothing_natively():
    proc = _python("""
        from refhound import _core, _valgrind
        assert _core.valgrind_running() == 0
        assert _core.valgrind_count_errors() == 0
        r = _core.valgrind_leak_check("changed")
        assert r["ran"] is False and r["leaked_blocks"] == 0, r
        assert _valgrind.running() is False
        scope = _valgrind.begin("a test")
        assert scope is None and _valgrind.end(scope) is None
        _valgrind.mark("nothing")
        try:
            _core.valgrind_leak_check("sometimes")
        except ValueError as exc:
            print("ValueError", exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ValueError" in proc.stdout


@pytest.mark.skipif(not HAVE_HEADERS, reason="built without Valgrind's headers")
@pytest.mark.parametrize("annotate", [True, False])
def test_pool_allocator_serves_a_real_workload_natively(annotate):
    # GIVEN objects allocated before the pool (they go back to malloc)
    # WHEN the pool serves a workload with every kind of churn
    # THEN the program runs right and the pool's books balance
    proc = _python("""
        import gc, json, re
        from refhound import _core
        before = [str(i) * 3 for i in range(2000)]
        _core.vgpool_install(annotate=%r, quarantine=100000)
        s = _core.vgpool_stats()
        assert s["installed"] and s["allocs"] == 0, s
        del before                                   # freed through malloc, not the pool
        data = {str(i): [i, (i, str(i)), {"k": i}] for i in range(30000)}
        text = json.dumps(data)
        assert json.loads(text) == json.loads(json.dumps(data))
        grow = []
        for i in range(5000):                        # realloc: list growth, bytearray
            grow.append(bytearray(i %% 300))
            grow[-1].extend(b"x" * (i %% 700))
        assert sum(map(len, grow)) == sum(i %% 300 + i %% 700 for i in range(5000))
        words = re.findall(r"\\w+", text[:200000])
        del data, text, grow, words
        gc.collect()
        s = _core.vgpool_stats()
        assert s["bad_frees"] == 0 and s["allocs"] > 100000, s
        assert 0 <= s["live"] < 50000, s
        assert s["annotated"] is %r
        print(json.dumps(s))
    """ % (annotate, annotate))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not HAVE_HEADERS, reason="built without Valgrind's headers")
def test_pool_allocator_survives_a_double_free_natively():
    proc = _python("""
        import ctypes
        from refhound import _core
        _core.vgpool_install(annotate=True, quarantine=0)
        api = ctypes.pythonapi
        api.PyObject_Malloc.restype = ctypes.c_void_p
        api.PyObject_Malloc.argtypes = [ctypes.c_size_t]
        api.PyObject_Free.argtypes = [ctypes.c_void_p]
        p = api.PyObject_Malloc(24)
        assert _core.vgpool_owns(p)
        api.PyObject_Free(p)
        assert not _core.vgpool_owns(p)
        api.PyObject_Free(p)                          # refused, not a corruption
        api.PyObject_Free(p + 8)                      # not a block at all
        got = [api.PyObject_Malloc(24) for _ in range(4)]
        assert len(set(got)) == 4                     # the slot was not handed out twice
        for q in got:
            api.PyObject_Free(q)
        print(_core.vgpool_stats()["bad_frees"])
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"


@pytest.mark.skipif(not HAVE_HEADERS, reason="built without Valgrind's headers")
def test_pool_allocator_must_come_before_tracking():
    proc = _python("""
        from refhound import _core
        _core.start()
        try:
            _core.vgpool_install()
        except RuntimeError as exc:
            print(exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "before tracking starts" in proc.stdout


def test_without_the_headers_the_feature_compiles_out(tmp_path):
    env = dict(os.environ, REFHOUND_NO_VALGRIND="1")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "-b", str(tmp_path),
                            "-t", str(tmp_path / "tmp")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr
    shutil.copytree(os.path.join(ROOT, "src", "refhound"), tmp_path / "refhound",
                    dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from refhound import _core, _valgrind
        print(_core.HAVE_VALGRIND, _core.valgrind_running(), _valgrind.available())
        try:
            _core.vgpool_install()
        except RuntimeError as exc:
            print(exc)
    """)], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "0 0 False"
    assert "without Valgrind's headers" in second and "valgrind" in second


# ---------------------------------------------------------------------------
# Native: the command line (the XML reader, the classification and the
# suppression cache key are tested on saved XML in tests/unit)

@pytest.mark.parametrize("args,message", [
    (["valgrind"], "no command given"),
    (["valgrind", "--", "no-such-program-here"], "command not found"),
    (["valgrind", "--valgrind", "/nonexistent/valgrind", "--", "true"], "no valgrind at"),
    (["valgrind", "--suppressions", "/nonexistent.supp", "--", "true"], "no suppression file"),
    (["valgrind", "--", sys.executable], "interactive interpreter is not supported"),
])
def test_bad_usage_is_one_line_and_exit_2(args, message):
    if VALGRIND is None and "--valgrind" not in args:
        pytest.skip("without valgrind, 'valgrind is not installed' comes first "
                    "(apt-get install valgrind)")
    proc = run_refhound(sys.executable, args, cwd=ROOT, env={"REFHOUND_CACHE_DIR": CACHE})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("refhound: error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------------------
# Under Valgrind: the bug zoo and the memory-error cases

def zoo_run():
    names = [c["name"] for c in ZOO + ERROR_CASES]
    driver = os.path.join(CASES_DIR, "driver.py")
    return shared_run("zoo", ["--", sys.executable, driver, "--calls", "10", modules_dir()]
                      + names)


@needs_valgrind
@pytest.mark.parametrize("case", ZOO, ids=[c["name"] for c in ZOO])
def test_zoo_leak_is_reported_per_call_at_its_culprit_line(case):
    status, data, err = zoo_run()
    assert data is not None, err
    found = _by_scope(data).get(case["name"] + ":leaky", [])
    leaks = [f for f in found if f["category"] == "leak" and f["class"] == "per-call"]
    assert leaks, (found, err[-3000:])
    lines = {f["culprit"]["line"] for f in leaks}
    if "-g0" in case["cflags"]:
        # a module without debug information: memcheck knows the module and
        # the function by its symbol, never a file or a line
        assert {(f["culprit"]["file"], f["culprit"]["line"], f["culprit"]["function"],
                 os.path.basename(f["culprit"]["object"]).split(".")[0]) for f in leaks} == \
            {(None, None, case["culprit_function"], case["name"])}, leaks
    elif case["culprit_function"]:
        # memcheck sees blocks: it names where the leaked block was made (the
        # culprit line, or the @allocation line in a wrapper or before an
        # extra Py_INCREF), not a reference taken later
        assert all(os.path.basename(f["culprit"]["file"]) == case["name"] + ".c" for f in leaks)
        assert case["allocation_line"] in lines, (lines, case["allocation_line"])
    else:   # the bug is in a type definition: memcheck names where the object is made
        assert all(os.path.basename(f["culprit"]["file"]) == case["name"] + ".c" for f in leaks)
        assert lines == {_allocation_line(case)}, lines
    blocks = sum(f["per_call"]["blocks"] for f in leaks)
    # memcheck counts blocks it sees allocated: the interpreter's free lists
    # recycle some (a tuple, a list object) without a new allocation.
    assert 0.5 * case["expect"]["blocks"] <= blocks <= case["expect"]["blocks"] + 0.05, blocks


@needs_valgrind
@pytest.mark.parametrize("case", ERROR_CASES, ids=[c["name"] for c in ERROR_CASES])
def test_memory_error_is_reported_at_its_culprit_line(case):
    status, data, err = zoo_run()
    assert data is not None, err
    found = [f for f in _by_scope(data).get(case["name"] + ":leaky", [])
             if f["category"] == "error"]
    assert [f["kind"] for f in found] == [case["valgrind_expect"]], (found, err[-3000:])
    c = found[0]["culprit"]
    assert (os.path.basename(c["file"]), c["line"]) == (case["name"] + ".c", case["culprit_line"])


@needs_valgrind
def test_clean_twins_leave_zero_records():
    status, data, err = zoo_run()
    assert data is not None, err
    by_scope = _by_scope(data)
    assert not [s for s in by_scope if s is None or not s.endswith(":leaky")], by_scope.keys()
    assert status == 1 and data["verdict"] == "error"
    # the interpreter's own errors and loss records never reach the report
    assert data["filtered"]["errors_seen"] >= len(data["errors"])


@needs_valgrind
def test_pool_allocator_finds_the_same():
    names = ["new_object", "nested_list", "rawmem_buffer", "uaf_read", "uaf_borrowed_decref",
             "overflow_write", "double_free"]
    driver = os.path.join(CASES_DIR, "driver.py")
    base = ["--", sys.executable, driver, "--calls", "5", modules_dir()] + names
    status, pool, err = shared_run("pool", ["--allocator", "pool"] + base)
    assert pool is not None, err
    assert pool["allocator"] == "pool" and pool["processes"][0]["allocator"] == "pool"
    _, malloc, err2 = zoo_run()

    def key(data):
        return {(f["scope"], f["kind"], f["culprit"]["line"])
                for f in data["errors"] + data["leaks"] if f["scope"].split(":")[0] in names}

    want, got = key(malloc), key(pool)
    # the pool's arenas are mmap'd (a root for memcheck): a leaked list's
    # items are "reachable" there, "indirectly lost" under malloc
    assert got <= want and {(s, k) for s, k, _ in want} == {(s, k) for s, k, _ in got}, \
        (sorted(got), sorted(want))


# ---------------------------------------------------------------------------
# Under Valgrind: pytest, refhound.check

@needs_valgrind
def test_pytest_run_ties_each_record_to_its_test():
    status, data, err = shared_run(
        "pytest", ["--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   os.path.join("tests", "valgrind_cases", "sample_tests.py")],
        extra_path=[modules_dir()])
    assert data is not None, err
    base = "tests/valgrind_cases/sample_tests.py::"
    expect = {
        "test_leaks_ints": ("leak", "new_object.c"),
        "test_leaks_raw_buffers": ("leak", "rawmem_buffer.c"),
        "test_leaks_lists": ("leak", "nested_list.c"),
        "test_use_after_free": ("use-after-free", "uaf_read.c"),
        "test_overflow": ("overflow", "overflow_write.c"),
        "test_double_free": ("double-free", "double_free.c"),
    }
    by_scope = _by_scope(data)
    assert set(by_scope) == {base + t for t in expect}, (by_scope.keys(), err[-3000:])
    for test, (kind, cfile) in expect.items():
        kinds = {(f["kind"], os.path.basename(f["culprit"]["file"])) for f in by_scope[base + test]}
        assert (kind, cfile) in kinds, (test, kinds)
        assert {k for k, _ in kinds} == {kind}, (test, kinds)
    scopes = {s["name"]: s for s in data["scopes"]}
    assert scopes[base + "test_clean_twins"]["errors"] == 0
    assert scopes[base + "test_use_after_free"]["errors"] >= 1


@needs_valgrind
def test_check_under_valgrind_classifies_per_call_leaks():
    code = ("import refhound, new_object\n"
            "c = refhound.Checker(warmup=1, min_iterations=4, iterations=5, calls=10)\n"
            "for f in (new_object.leaky, new_object.clean):\n"
            "    r = c.check(f)\n"
            "    print('RESULT', r.target, r.verdict, sorted(r.to_dict().get('valgrind', {})))\n")
    status, data, err = shared_run("check", ["--", sys.executable, "-c", code],
                                   extra_path=[modules_dir()])
    assert data is not None, err
    by_scope = _by_scope(data)
    assert list(by_scope) == ["new_object:leaky"], by_scope.keys()
    (f,) = by_scope["new_object:leaky"]
    assert f["class"] == "per-call" and f["culprit"]["line"] == 21
    assert f["per_call"]["blocks"] == pytest.approx(1.0, abs=0.05)
    assert "errors" in err and "leaked_blocks" in err     # Result.valgrind was attached


@needs_valgrind
def test_a_failing_clean_program_is_exit_3_with_zero_records():
    # The interpreter's own noise (start-up, imports, exit) is suppressed or
    # filtered to nothing; the command's failure is exit status 3.
    proc = run_refhound(sys.executable,
                        ["valgrind", "--json", "-", "-q", "--", sys.executable, "-c",
                         "import json, collections, re; raise SystemExit(4)"],
                        cwd=ROOT, timeout=600, env=_env())
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    assert data["exit_status"] == 4 and data["verdict"] == "clean"
    assert data["errors"] == [] and data["leaks"] == [] and data["growth"] == []


# ---------------------------------------------------------------------------
# A real suite from PyPI: simplejson's test_dump

sys.path.insert(0, CASES_DIR)
import pypi  # noqa: E402

PYPI = os.path.join(BUILD, "pypi")
SIMPLEJSON = {"leaky": "3.19.3", "fixed": "4.0.1"}
TEST_DUMP = "simplejson/tests/test_dump.py"
STRINGIFY = TEST_DUMP + "::TestDump::test_stringify_key"


def simplejson(which):
    """The release's folder (built in place), or a skip when PyPI is out of reach."""
    os.makedirs(PYPI, exist_ok=True)
    with open(os.path.join(PYPI, "simplejson.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pypi.ensure_built("simplejson", SIMPLEJSON[which], PYPI)
        except pypi.Unavailable as exc:
            pytest.skip("simplejson %s from PyPI: %s" % (SIMPLEJSON[which], exc))


def simplejson_run(which):
    folder = simplejson(which)
    status, data, output = shared_run(
        "simplejson-" + which,
        ["--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", ".", TEST_DUMP],
        cwd=folder, timeout=3600)
    assert data is not None, output[-3000:]
    return folder, status, data, output


def _tests_section(output):
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("tests ("))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  "))
    return lines[start:end]


@needs_valgrind
def test_real_suite_leak_is_lost_memory_of_its_test_at_its_line():
    # GIVEN simplejson 3.19.3, whose sorted skipkeys path drops the item
    # tuple of every skipped key (pytest --refhound: +9 tuples per run of
    # test_stringify_key, allocated at PyDict_Items in encoder_dict_iteritems)
    folder, status, data, output = simplejson_run("leaky")
    # THEN the leak is lost memory of that test, at that line, its 9 tuples
    assert (status, data["verdict"]) == (1, "leak"), output[-3000:]
    assert data["errors"] == []
    leaks = data["leaks"]
    assert {f["scope"] for f in leaks} == {STRINGIFY}, leaks
    source = os.path.join(folder, "simplejson", "_speedups.c")
    with open(source) as fh:
        text = fh.read().splitlines()
    start = text.index("encoder_dict_iteritems(PyEncoderObject *s, PyObject *dct)")
    items_line = next(n for n in range(start, len(text))
                      if "items = PyDict_Items(dct);" in text[n]) + 1
    assert {(f["culprit"]["file"], f["culprit"]["function"]) for f in leaks} == \
        {(source, "encoder_dict_iteritems")}
    assert items_line in {f["culprit"]["line"] for f in leaks}
    assert {f["class"] for f in leaks} == {"lost-in-scope"}
    # tuples the leaking code took from CPython's free list keep the
    # allocation stack of their first life: they are added as "reused"
    blocks = sum(f["blocks"] + f.get("reused", {}).get("blocks", 0) for f in leaks)
    nbytes = sum(f["bytes"] + f.get("reused", {}).get("bytes", 0) for f in leaks)
    # memcheck's scan is conservative: a stale copy of a tuple's object
    # pointer left in live memory (seen once in a few dozen runs, on a
    # loaded machine) makes that tuple "possibly lost", which a test's
    # lost memory does not count; 8 of the 9 then
    assert (blocks, nbytes) in {(9, 9 * 56), (8, 8 * 56)}, leaks
    assert {f["reused"]["type"] for f in leaks if f.get("reused")} <= {"tuple"}


@needs_valgrind
def test_real_suite_counts_per_test_are_the_users_own():
    folder, status, data, output = simplejson_run("leaky")
    scopes = {s["name"]: s for s in data["scopes"]}
    assert len(scopes) == 14
    # memcheck itself counts hundreds of thousands of errors in some tests
    # (the interpreter's small-int zero, handed to the parser), none of them
    # the user's: a test's count is the user's errors, here none
    assert max(s["memcheck_errors"] for s in scopes.values()) > 100000
    assert {n: (s["errors"], s["leaks"]) for n, s in scopes.items()
            if s["errors"] or s["leaks"]} == {STRINGIFY: (0, len(data["leaks"]))}
    assert _tests_section(output) == [
        "tests (14): 1 with errors or leaks in your code",
        "  %s: %s" % (STRINGIFY, "1 leak" if len(data["leaks"]) == 1
                      else "%d leaks" % len(data["leaks"]))]
    assert "memcheck errors" not in output      # pytest's own per-test table is gone
    # the noise is summarised once, with where it came from
    noise = data["noise"]
    (small,) = [g for g in noise["errors"] if g["hint"] == "small-int"]
    assert small["occurrences"] > 100000 and "libpython" in small["object"]
    assert output.count("CPython 3.11 reads the digit of a new zero int") == 1
    # the reports in the parser's own code are set aside, not counted
    assert data["set_aside"], output[-3000:]
    assert {(os.path.basename(f["culprit"]["file"]), f["reason"]) for f in data["set_aside"]} \
        == {("_speedups.c", "small-int")}
    assert "run with --track-origins to tell for sure" in output
    assert "_speedups" in " ".join(data["user_objects"])
    assert "what memcheck cannot see" in output


@needs_valgrind
def test_real_suite_fixed_release_is_clean():
    folder, status, data, output = simplejson_run("fixed")
    assert (status, data["verdict"]) == (0, "clean"), output[-3000:]
    assert data["errors"] == [] and data["leaks"] == []
    assert all(s["errors"] == 0 and s["leaks"] == 0 for s in data["scopes"])
    assert _tests_section(output)[0].endswith(": no errors or leaks in your code")


def test_real_suite_leak_is_what_pytest_refhound_finds(tmp_path):
    # The same leak as refhound's own counting sees it: 9 tuples per run.
    folder = simplejson("leaky")
    out = str(tmp_path / "refhound.json")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", ".", "--refhound", "--refhound-json", out, STRINGIFY], cwd=folder,
        capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONPATH=engine_path(sys.executable)))
    assert proc.returncode == 1, proc.stdout[-3000:]
    with open(out) as fh:
        suite = json.load(fh)
    (result,) = [r for r in suite if r["target"] == STRINGIFY]
    assert result["verdict"] == "leak"
    objects = [(o["type"], o["count_per_call"]) for o in result["objects"]]
    assert objects[0] == ("tuple", 9.0), objects
    assert all(count < 1 for _, count in objects[1:]), objects     # pytest's own, fractional
