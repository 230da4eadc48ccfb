"""The command line: exit statuses, one-line errors, JSON, crashes (what it
draws on a terminal: test_terminal.py)."""
import json
import sys

import pytest

from support import IMMORTAL, build_zoo_case, cbuild, run_refhound

PY = sys.executable


def one_line_error(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refhound: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["check", "no_such_module_xyz:f"], "no module named 'no_such_module_xyz'"),
    (["check", "json:no_such_function"], "has no attribute 'no_such_function'"),
    (["check", "json.decoder:NaN"], "is not callable"),
    (["check", "missing_file.py:f"], "no such file"),
    (["check", "json"], "must be MODULE:CALLABLE"),
    (["check", "json:"], "must be MODULE:CALLABLE"),
    (["check", "json:1bad"], "not a valid attribute name"),
    (["check", "json:dumps", "--iterations", "zero"], "is not a whole number"),
    (["check", "json:dumps", "--bogus"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
    ([], "no command given"),
])
def test_bad_input_is_one_line_and_exit_2(args, words, tmp_path):
    line = one_line_error(run_refhound(PY, args, cwd=str(tmp_path)))
    assert words in line


def test_syntax_error_in_file_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("def f(:\n    pass\n")
    line = one_line_error(run_refhound(PY, ["check", "broken.py:f"], cwd=str(tmp_path)))
    assert "syntax error in broken.py line 1" in line


def test_unreadable_json_destination_is_one_line(tmp_path):
    (tmp_path / "t.py").write_text("def f():\n    pass\n")
    line = one_line_error(run_refhound(PY, ["check", "t.py:f", "--json", "/no/such/dir/x.json",
                                            "--no-progress"], cwd=str(tmp_path)))
    assert "cannot write /no/such/dir/x.json" in line


def test_target_that_raises_is_exit_3_with_the_exception(tmp_path):
    (tmp_path / "t.py").write_text("def f():\n    raise ValueError('bad input 42')\n")
    proc = run_refhound(PY, ["check", "t.py:f", "--no-progress"], cwd=str(tmp_path))
    assert proc.returncode == 3
    assert "refhound: the target failed: ValueError: bad input 42" in proc.stderr
    assert 'raise ValueError' in proc.stderr   # its traceback is shown


def test_module_that_raises_on_import_is_exit_3(tmp_path):
    (tmp_path / "boom.py").write_text("raise RuntimeError('cannot start')\ndef f(): pass\n")
    proc = run_refhound(PY, ["check", "boom:f"], cwd=str(tmp_path))
    assert proc.returncode == 3
    assert "RuntimeError: cannot start" in proc.stderr


def test_target_that_crashes_is_exit_3(tmp_path):
    (tmp_path / "t.py").write_text("import ctypes\ndef f():\n    ctypes.string_at(0)\n")
    proc = run_refhound(PY, ["check", "t.py:f", "--no-progress"], cwd=str(tmp_path))
    assert proc.returncode == 3
    assert "crashed with SIGSEGV" in proc.stderr
    assert "Fatal Python error" in proc.stderr      # faulthandler's traceback


def test_json_file_and_exit_status(tmp_path):
    case = next(c for c in cbuild.zoo_cases() if c["name"] == "new_object")
    cwd = build_zoo_case(case, PY)
    out = tmp_path / "r.json"
    proc = run_refhound(PY, ["check", "new_object:leaky", "--json", str(out), "--no-progress"],
                        cwd=cwd)
    assert proc.returncode == 1
    data = json.loads(out.read_text())
    for key in ("target", "verdict", "iterations", "per_call", "objects", "refcount_growth",
                "sites"):
        assert key in data
    assert set(data["iterations"]) >= {"warmup", "measured"}
    assert set(data["per_call"]) >= {"refs", "objects", "blocks", "bytes", "native_bytes",
                                     "rss_bytes", "fds"}
    assert data["target"] == "new_object:leaky"
    assert "LEAK" in proc.stdout      # the report goes to stdout when JSON goes to a file
    proc = run_refhound(PY, ["check", "new_object:clean", "-q", "--no-progress"], cwd=cwd)
    assert (proc.returncode, proc.stdout) == (0, "")


def test_demo_runs_the_bundled_example():
    proc = run_refhound(PY, ["demo", "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("verdict") == 3
    assert "refhound._demo:parse_items\n  verdict   LEAK" in out
    assert "refhound._demo:checksum\n  verdict   CLEAN" in out
    if IMMORTAL:        # None is immortal from 3.12 on: the extra INCREF is no leak
        assert "refhound._demo:tag_none\n  verdict   CLEAN" in out
    else:
        assert "refhound._demo:tag_none\n  verdict   LEAK" in out
        assert "NoneType None" in out          # the growing refcount is named
        assert "src/demo/demo.c:31 in tag_none()" in out
    # The culprit lines of the bundled example, from its own DWARF (built by
    # setup.py with a relative source path: resolved against the build dir).
    assert "src/demo/demo.c:12 in parse_items()" in out
    assert ">    12 |     PyObject *items = PyList_New(0);" in out
