"""A reference leaked on a literal constant of Python code.

An extension that keeps a reference to its argument (keep_arg.keep) leaks
it on whatever the caller passed; in tests that is often a literal: a
float, a tuple, a str or bytes constant of the test's code object.  The
cyclic GC does not list code objects or the tuples of constants it
untracks, and a constant made while the target was imported may sit in a
block older than tracking (the interpreter's free lists): refhound adopts
the constants of every code object, after the target's import too.  Each
kind is checked through the command line, pytest --refhound and the API,
with the twin that gives the reference back (keep_arg.look).
"""
import os
import subprocess
import sys
import textwrap

import pytest

from support import BUILD, ROOT, cbuild, check_json, engine_path

KINDS = {"float": "0.6", "tuple": "(1, 2, 'x')", "str": "'some literal text'",
         "bytes": "b'raw bytes'", "int": "123456789"}

TARGET = "import keep_arg\n\n" + "".join(
    "def keep_%s():\n    keep_arg.keep(%s)\n\n\ndef look_%s():\n    keep_arg.look(%s)\n\n\n"
    % (kind, literal, kind, literal) for kind, literal in KINDS.items())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("constants"))
    cbuild.build_extension(os.path.join(ROOT, "tests", "engine_cases", "keep_arg.c"), out,
                           python=sys.executable)
    with open(os.path.join(out, "constants_target.py"), "w") as f:
        f.write(TARGET)
    with open(os.path.join(out, "test_constants_suite.py"), "w") as f:
        f.write(TARGET.replace("def keep_", "def test_keep_").replace("def look_",
                                                                     "def test_look_"))
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_command_line_sees_a_reference_kept_on_a_constant(folder, kind):
    status, result, err = check_json(sys.executable, "constants_target:keep_" + kind, folder)
    assert result is not None, err
    assert (status, result["verdict"]) == (1, "leak"), (result["per_call"], result["notes"])
    assert result["per_call"]["refs"] == pytest.approx(1.0, abs=0.05), result["per_call"]
    status, result, err = check_json(sys.executable, "constants_target:look_" + kind, folder)
    assert result is not None, err
    assert (status, result["verdict"]) == (0, "clean"), (result["per_call"], result["notes"])


def test_pytest_sees_a_reference_kept_on_a_constant(folder):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([engine_path(sys.executable), folder]),
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    for key in list(env):
        if key.startswith("PYTEST_XDIST") or key in ("PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"):
            env.pop(key)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "refhound.pytest_plugin",
                           "-p", "no:cacheprovider", "--refhound", "test_constants_suite.py"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    for kind in KINDS:
        assert "LEAKED test_constants_suite.py::test_keep_%s " % kind in out, out[-3000:]
        assert "test_look_%s " % kind not in out.split("short test summary info")[-1], out[-3000:]
    assert "%d failed, %d passed" % (len(KINDS), len(KINDS)) in out, out[-1000:]


def test_the_api_sees_a_reference_kept_on_a_constant(folder):
    code = textwrap.dedent("""
        import refhound, constants_target as t
        print(refhound.check(t.keep_float).verdict, refhound.check(t.look_float).verdict)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([engine_path(sys.executable), folder]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["leak", "clean"], proc.stdout + proc.stderr
