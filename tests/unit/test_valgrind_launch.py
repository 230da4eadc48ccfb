"""`refhound valgrind` without Valgrind: command lines, suppressions, the
summary.  The launcher's pure parts (refhound._valgrind.launcher), the
suppression file (suppressions.py) and the report (report.py) rendered from
the analysis of a saved run."""
import functools
import json
import os
import sys

import pytest

import vgxml
from refhound._valgrind import classify, launcher, report, suppressions
from refhound.commands import valgrind as valgrind_command
from unitdata import data_path

# ---- python command lines ------------------------------------------------------------


@pytest.mark.parametrize("args, opts, program", [
    (["-m", "pytest", "-x"], [], ["-m", "pytest", "-x"]),
    (["-X", "dev", "-W", "error", "t.py", "-v"], ["-X", "dev", "-W", "error"], ["t.py", "-v"]),
    (["-Bu", "-c", "pass", "a"], ["-Bu"], ["-c", "pass", "a"]),
    (["-Bc", "pass"], ["-B"], ["-c", "pass"]),
    (["-Wignore", "-mjson.tool"], ["-Wignore"], ["-m", "json.tool"]),
    (["-", "x"], [], ["-", "x"]),
    (["--check-hash-based-pycs", "never", "t.py"], ["--check-hash-based-pycs", "never"],
     ["t.py"]),
    (["--check-hash-based-pycs=always", "t.py"], ["--check-hash-based-pycs=always"], ["t.py"]),
    (["-I", "--", "t.py"], ["-I"], ["t.py"]),
    (["-O", "-E"], ["-O", "-E"], []),
])
def test_python_command_lines_are_split(args, opts, program):
    assert launcher.split_python_args(args) == (opts, program)


@pytest.mark.parametrize("args", [["-c"], ["-m"], ["-W"], ["-B", "-X"]])
def test_an_option_without_its_value_is_a_plan_error(args):
    with pytest.raises(launcher.PlanError, match="needs an argument"):
        launcher.split_python_args(args)


@pytest.mark.parametrize("name, python", [
    ("python", True), ("python3", True), ("python3.11", True), ("python3.11-dbg", True),
    ("python3.11d", True), ("pytest", False), ("python-config", False), ("ipython", False),
])
def test_which_names_are_python(name, python):
    assert bool(launcher.PY_NAME.match(name)) is python


@pytest.mark.parametrize("program, pytest_run, scoped", [
    (["-m", "pytest", "-q"], True, ["-m", "pytest", "-p", "refhound._valgrind.pytest_scopes",
                                    "-q"]),
    (["/venv/bin/pytest", "-q"], True, ["/venv/bin/pytest", "-p",
                                        "refhound._valgrind.pytest_scopes", "-q"]),
    (["-c", "import pytest"], False, ["-c", "import pytest"]),
    (["script.py"], False, ["script.py"]),
])
def test_pytest_gets_the_scopes_plugin(program, pytest_run, scoped):
    plan = launcher.Plan("python", ["python3"] + program, "/usr/bin/python3.11", [], program)
    assert plan.is_pytest() is pytest_run
    plan.with_pytest_scopes()
    assert plan.program == scoped


def test_the_baseline_imports_the_module_run_with_dash_m():
    assert launcher.Plan("python", [], "/p", [], ["-m", "pytest.main", "-q"]).imports() == \
        ["pytest"]
    assert launcher.Plan("python", [], "/p", [], ["x.py"]).imports() == []


def test_the_valgrind_command_line():
    plan = launcher.Plan("python", ["python3", "-X", "dev", "t.py"], "/usr/bin/python3.11",
                         ["-X", "dev"], ["t.py", "-v"])
    opts = launcher.memcheck_options(num_callers=12, track_origins=True)
    cmd = launcher.command_line("/usr/bin/valgrind", plan, opts, "/tmp/x", "pool", 123,
                                ["/c/base.supp"], ["--freelist-vol=5"])
    assert cmd[0] == "/usr/bin/valgrind"
    assert "--num-callers=12" in cmd and "--track-origins=yes" in cmd
    assert "--show-leak-kinds=definite,indirect" in cmd
    assert "--xml-file=/tmp/x/memcheck.%p.xml" in cmd
    assert "--suppressions=/c/base.supp" in cmd
    tail = cmd[cmd.index("--freelist-vol=5") + 1:]
    assert tail == ["/usr/bin/python3.11", "-X", "dev", "-m", "refhound._valgrind.boot",
                    "--allocator", "pool", "--quarantine", "123", "--", "t.py", "-v"]
    other = launcher.Plan("other", ["/bin/true", "x"])
    assert launcher.command_line("vg", other, [], "/d", "malloc", 0)[-2:] == ["/bin/true", "x"]


def test_show_reachable_records_every_kind():
    assert "--show-leak-kinds=all" in launcher.memcheck_options(show_reachable=True)


def test_child_env_makes_refhound_importable_with_malloc():
    env = launcher.child_env("pool", {"PYTHONPATH": "/mine", "PYTHONMALLOC": "pymalloc"})
    assert env["PYTHONMALLOC"] == "malloc" and env["REFHOUND_VALGRIND"] == "pool"
    parts = env["PYTHONPATH"].split(os.pathsep)
    assert parts[1:] == ["/mine"]
    assert os.path.isdir(os.path.join(parts[0], "refhound"))


def test_shebang_and_elf(tmp_path):
    script = tmp_path / "tool"
    script.write_bytes(b"#!/usr/bin/python3.11 -u\nprint(1)\n")
    assert launcher._shebang(str(script)) == ["/usr/bin/python3.11", "-u"]
    assert launcher._is_elf(str(script)) is False
    assert launcher._is_elf(sys.executable) is True
    (tmp_path / "plain").write_text("no shebang\n")
    assert launcher._shebang(str(tmp_path / "plain")) is None
    assert launcher._shebang(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("argv, message", [
    ([], "no command given"),
    (["no-such-program-here-xyz"], "command not found"),
])
def test_plan_errors(argv, message):
    with pytest.raises(launcher.PlanError, match=message):
        launcher.plan(argv)


@pytest.mark.parametrize("opts, volume", [
    ([], 20000000), (["--freelist-vol=50"], 50), (["--freelist-vol=lots"], 20000000),
    (["--num-callers=4", "--freelist-vol=7"], 7),
])
def test_freelist_volume_the_run_will_use(opts, volume):
    assert valgrind_command._freelist_vol(opts) == volume


# ---- suppressions ---------------------------------------------------------------------

RAW_LEAK = """{
   <insert_a_suppression_name_here>
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:PyList_New
   fun:a
   fun:b
   fun:c
   fun:d
   fun:e
   obj:/usr/bin/python3.11
}"""


def test_a_leak_suppression_keeps_its_whole_stack():
    text = suppressions._generalise(RAW_LEAK, "Leak_DefinitelyLost")
    lines = text.splitlines()
    # named after its top function: memcheck's counts of matched
    # suppressions then say which noise the run had
    assert lines[:4] == ["{", "   refhound-baseline:malloc", "   Memcheck:Leak",
                         "   match-leak-kinds: definite"]
    assert len([ln for ln in lines if ln.strip().startswith(("fun:", "obj:"))]) == 8
    assert lines[-1] == "}"


def test_an_error_suppression_keeps_its_top_frames():
    raw = RAW_LEAK.replace("Memcheck:Leak", "Memcheck:Cond").replace(
        "   match-leak-kinds: definite\n", "")
    text = suppressions._generalise(raw, "UninitCondition")
    frames = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("fun:", "obj:"))]
    assert frames == ["fun:malloc", "fun:PyList_New", "fun:a", "fun:b", "fun:c", "fun:d"]
    assert len(frames) == suppressions.ERROR_FRAMES


@pytest.mark.parametrize("raw", ["", "{\n}", "not a suppression\nat all\nreally\nno",
                                 "{\n   name\n   Memcheck:Leak\n}"])
def test_malformed_suppressions_are_dropped(raw):
    assert suppressions._generalise(raw, "Leak_DefinitelyLost") is None


def test_suppressions_from_xml_without_duplicates(tmp_path):
    raw_error = RAW_LEAK.replace("Memcheck:Leak", "Memcheck:Cond").replace(
        "   match-leak-kinds: definite\n", "")
    text = vgxml.head()
    for unique in (1, 2):    # the same fault twice
        text += vgxml.error(unique, "UninitCondition", "Conditional jump", [vgxml.LIBPYTHON],
                            suppression=raw_error)
    text += vgxml.error(3, "InvalidRead", "Invalid read", [vgxml.LIBPYTHON])   # none generated
    text += vgxml.FINISHED + vgxml.END
    found = suppressions.suppressions_from_xml([vgxml.write(tmp_path, text)])
    assert len(found) == 1 and found[0].startswith("{\n   refhound-baseline:malloc\n   "
                                                   "Memcheck:Cond")


def test_count_of_a_suppression_file(tmp_path):
    path = tmp_path / "x.supp"
    path.write_text("# header\n{\n   a\n   Memcheck:Leak\n   fun:f\n}\n{\n   b\n   "
                    "Memcheck:Cond\n   fun:g\n}\n")
    assert suppressions._count(str(path)) == 2


def test_baseline_program_imports_without_failing():
    code = suppressions.baseline_program(["pytest", "numpy"])
    compile(code, "<baseline>", "exec")
    assert "import pytest" in code and "import numpy" in code
    assert code.rstrip().endswith("gc.collect()")


def test_cache_dir_follows_the_environment(monkeypatch):
    monkeypatch.setenv("REFHOUND_CACHE_DIR", "/c/rh")
    assert suppressions.cache_dir() == "/c/rh/valgrind"
    monkeypatch.delenv("REFHOUND_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/c/xdg")
    assert suppressions.cache_dir() == "/c/xdg/refhound/valgrind"


def test_the_suppression_cache_key_follows_the_interpreter_build():
    info = {"realpath": sys.executable, "libpython": None, "version": sys.version,
            "abiflags": "", "config_args": "", "py_debug": False, "refhound_dir": None}
    args = ("valgrind-3.19.0", "malloc", ["--num-callers=24"], [])
    _, a = suppressions.cache_key(info, *args)
    _, same = suppressions.cache_key(dict(info), *args)
    changed = [
        suppressions.cache_key(dict(info, version="3.11.8"), *args)[1],
        suppressions.cache_key(dict(info, py_debug=True), *args)[1],
        suppressions.cache_key(info, "valgrind-3.20.0", *args[1:])[1],
        suppressions.cache_key(info, "valgrind-3.19.0", "pool", *args[2:])[1],
        suppressions.cache_key(info, "valgrind-3.19.0", "malloc", ["--num-callers=12"], [])[1],
        suppressions.cache_key(info, "valgrind-3.19.0", "malloc", ["--num-callers=24"],
                               ["pytest"])[1],
    ]
    assert a == same and len(a) == 16
    assert len({a} | set(changed)) == 1 + len(changed)


# ---- the summary ------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _summary(name):
    with open(data_path("valgrind", "interpreter.json")) as fh:
        info = json.load(fh)
    analysis = classify.analyze([data_path("valgrind", name + ".xml")],
                                classify.UserFilter(info))
    run = {"command": ["python3", "driver.py"], "allocator": "malloc", "exit_status": 0,
           "seconds": 16.9, "suppressions": {"count": 19, "generated": True},
           "notes": ["process 7 ended without memcheck's final report (killed?): its leaks "
                     "at exit are missing"]}
    return report.to_dict(run, analysis)


def test_summary_dict_of_the_zoo_run():
    data = _summary("zoo")
    assert data["verdict"] == "error"
    assert (len(data["errors"]), len(data["leaks"]), len(data["growth"])) == (5, 6, 0)
    assert len(data["one_time"]) == 1
    assert not any(k.startswith("_") for f in data["leaks"] for k in f)
    json.dumps(data)      # JSON-ready: no sets or tuples of internals left


def test_summary_verdict_follows_the_worst_finding():
    assert _summary("zoo")["verdict"] == "error"          # errors and leaks
    assert _summary("check")["verdict"] == "leak"         # leaks only
    empty = report.to_dict({"command": [], "allocator": "malloc", "exit_status": 0,
                            "seconds": 1.0, "suppressions": {}}, classify.Analysis())
    assert empty["verdict"] == "clean"


def test_rendered_summary_of_the_zoo_run():
    text = report.render(_summary("zoo"), root="/home/dev/refhound")
    lines = text.splitlines()
    assert lines[0] == "refhound valgrind: ERROR  (malloc allocator, 16.9 s, exit status 0)"
    assert "memory errors (5)" in lines and "leaks (6)" in lines
    assert "  use after free tests/valgrind_cases/uaf_read.c:33 in leaky (free site) x120  " \
           "[uaf_read:leaky]" in lines
    assert "      accessed at tests/valgrind_cases/uaf_read.c:34 in leaky" in lines
    assert "  heap overflow tests/valgrind_cases/overflow_write.c:34 in leaky x60  " \
           "[overflow_write:leaky]" in lines
    assert "  leak tests/zoo/new_object.c:21 in leaky, growing with the calls: 1 blocks, " \
           "32 bytes per call  [new_object:leaky]" in lines
    assert "  leak tests/zoo/every_tenth.c:28 in leaky, growing with the calls: 0.1 blocks, " \
           "6.7 bytes per call  [every_tenth:leaky]" in lines
    assert "one-time allocations in checked calls (not leaks): 1" in lines
    # the lists nested_list.c took from CPython's free list: memcheck has
    # them under the stack of their first life (refhound's own searches)
    assert "  leak tests/zoo/nested_list.c:38 in leaky, growing with the calls: 2 blocks, " \
           "200 bytes per call  [nested_list:leaky]" in lines
    assert "      68 allocated here; 12 more lists taken from CPython's free list keep the " \
           "allocation stack of their first life" in lines
    assert "noise, left out of the verdict: 0 errors (x0), 2 loss records" in lines
    assert "  2 loss records from PyList_New in libpython3.11.so.1.0: objects reused from " \
           "CPython's free list, added to the leak of the same type in your code above" in lines
    assert "  suppressions: 19 generated for this interpreter now; 1 kind matched 1,351 " \
           "times" in lines
    assert "note: process 7 ended without memcheck's final report (killed?): its leaks at " \
           "exit are missing" in lines
    assert "no memory errors or leaks" not in text
    assert "\033[" not in text


def test_rendered_summary_of_a_pytest_run_names_the_tests():
    text = report.render(_summary("pytest"), root="/home/dev/refhound")
    lines = text.splitlines()
    assert "  leak tests/zoo/new_object.c:21 in leaky, lost: 4 blocks, 128 bytes  " \
           "[tests/valgrind_cases/sample_tests.py::test_leaks_ints]" in lines
    # each test's count is the user's: errors and leaks in the user's code
    t = "  tests/valgrind_cases/sample_tests.py::"
    start = lines.index("tests (7): 6 with errors or leaks in your code")
    assert lines[start + 1:start + 8] == [
        t + "test_leaks_ints: 1 leak", t + "test_leaks_raw_buffers: 1 leak",
        t + "test_leaks_lists: 2 leaks", t + "test_use_after_free: 1 error in your code (x2)",
        t + "test_overflow: 1 error in your code", t + "test_double_free: 1 error in your code",
        ""]
    # the 9 errors of the interpreter and libc, once, with where they came from
    start = lines.index("noise, left out of the verdict: 9 errors (x16), 0 loss records")
    assert lines[start + 1:start + 3] == [
        "  1 error x6 in libpython3.11.so.1.0 (_PyObject_FreeInstanceAttributes)",
        "  1 error x3 in libc.so.6 (__wmemcmp_avx2_movbe): the C library's vectorised string "
        "routines read whole words past the end of a block (harmless)"]
    assert "  and 2 errors more (x2) elsewhere" in lines
    assert lines[-len(_cannot_see()):] == _cannot_see()


def test_rendered_summary_paths_outside_the_root_stay_absolute():
    text = report.render(_summary("check"), root="/elsewhere")
    assert "/home/dev/refhound/tests/zoo/new_object.c:21 in leaky" in text


def test_rendered_summary_in_colour_and_when_clean():
    coloured = report.render(_summary("zoo"), color=True, root="/")
    assert "\033[1mrefhound valgrind: ERROR" in coloured and "\033[31muse after free" in coloured
    clean = report.to_dict({"command": [], "allocator": "pool", "exit_status": 3,
                            "seconds": 2.0, "suppressions": {"count": 4}}, classify.Analysis())
    text = report.render(clean)
    assert text.splitlines()[0] == "refhound valgrind: CLEAN  (pool allocator, 2.0 s, " \
                                   "exit status 3)"
    lines = text.splitlines()
    assert lines[lines.index("noise: none left out") + 1:] == [
        "  suppressions: 4 generated for this interpreter (cached); none matched",
        "no memory errors or leaks in your code.", ""] + _cannot_see()


@pytest.mark.parametrize("sup, line", [
    ({"count": 19, "generated": True, "files": ["b"], "baseline": "b"},
     "  suppressions: 19 generated for this interpreter now; none matched"),
    ({"count": 0, "generated": False, "files": ["mine.supp"]},      # --no-baseline
     "  suppressions: 1 file of yours; none matched"),
    ({"count": 3, "generated": False, "files": ["b", "x.supp", "y.supp"], "baseline": "b"},
     "  suppressions: 3 generated for this interpreter (cached), 2 files of yours; "
     "none matched"),
    ({"count": 0, "generated": False, "files": []}, "  suppressions: none"),
])
def test_rendered_suppressions_line(sup, line):
    data = report.to_dict({"command": [], "allocator": "malloc", "exit_status": 0,
                           "seconds": 1.0, "suppressions": sup}, classify.Analysis())
    assert line in report.render(data).splitlines()


def _cannot_see():
    return ["what memcheck cannot see (`pytest --refhound` and `refhound check` count "
            "references and objects and find these):"] + ["  - " + x
                                                           for x in report.CANNOT_SEE]
