"""What the user types: target strings (refhound._target) and the command
line (refhound.cli), in process.  Bad input is one line and exit status 2;
an error raised by the target's own code is TargetImportFailed (exit 3)."""
import sys

import pytest

from refhound import _target, cli
from refhound._target import BadTarget, TargetImportFailed


@pytest.fixture
def clean_imports(monkeypatch):
    """resolve() puts folders on sys.path and modules in sys.modules."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))


# ---- target strings -----------------------------------------------------------------------

@pytest.mark.parametrize("text, where, attr", [
    ("json:dumps", "json", "dumps"),
    ("pkg.mod:Class.method", "pkg.mod", "Class.method"),
    ("dir/file.py:f", "dir/file.py", "f"),
    ("C:/x/file.py:f", "C:/x/file.py", "f"),          # the last colon separates
])
def test_split_target(text, where, attr):
    assert _target.split_target(text) == (where, attr)


@pytest.mark.parametrize("text, message", [
    ("json", "target 'json' must be MODULE:CALLABLE or FILE.py:CALLABLE"),
    ("json:", "target 'json:' must be MODULE:CALLABLE or FILE.py:CALLABLE"),
    (":dumps", "target ':dumps' must be MODULE:CALLABLE or FILE.py:CALLABLE"),
    ("json:du-mps", "'du-mps' is not a valid attribute name in target 'json:du-mps'"),
    ("json:a..b", "'a..b' is not a valid attribute name in target 'json:a..b'"),
])
def test_malformed_targets(text, message):
    with pytest.raises(BadTarget) as info:
        _target.split_target(text)
    assert str(info.value) == message


@pytest.mark.parametrize("where, is_file", [
    ("json", False), ("a.b.c", False), ("x.py", True), ("dir/mod", True), ("./t.py", True)])
def test_file_or_module(where, is_file):
    assert _target.is_file_target(where) is is_file


def test_resolve_a_module_attribute(clean_imports):
    import json
    func, name = _target.resolve("json:dumps")
    assert func is json.dumps and name == "json:dumps"
    func, name = _target.resolve("json.decoder:JSONDecoder.decode")
    assert func is json.decoder.JSONDecoder.decode


def test_resolve_a_file(tmp_path, clean_imports):
    path = tmp_path / "my_target.py"
    path.write_text("calls = []\ndef work():\n    calls.append(1)\n")
    func, name = _target.resolve(str(path) + ":work")
    assert name == str(path) + ":work"
    func()
    assert sys.modules["my_target"].calls == [1]
    assert sys.path[0] == str(tmp_path)          # its folder first, as python FILE does


@pytest.mark.parametrize("text, message", [
    ("refhound_no_such_module_xyz:f", "no module named 'refhound_no_such_module_xyz'"),
    ("json.no_such_sub_xyz:f", "no module named 'json.no_such_sub_xyz'"),
    ("json:no_such_function", "json has no attribute 'no_such_function'"),
    ("json:JSONDecoder.nope", "json has no attribute 'nope'"),
    ("json:__doc__", "json:__doc__ is not callable (it is str)"),
    ("my-module:f", "'my-module' is not a module name (use FILE.py:CALLABLE for a file)"),
])
def test_module_targets_that_name_nothing(text, message, clean_imports):
    with pytest.raises(BadTarget) as info:
        _target.resolve(text)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_file_targets_that_name_nothing(tmp_path, clean_imports):
    missing = tmp_path / "missing.py"
    with pytest.raises(BadTarget, match="^no such file: %s$" % missing):
        _target.resolve(str(missing) + ":f")
    with pytest.raises(BadTarget, match="is a directory, not a Python file$"):
        _target.resolve(str(tmp_path) + "/:f")
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n    pass\n")
    with pytest.raises(BadTarget) as info:
        _target.resolve(str(broken) + ":f")
    assert str(info.value).startswith("syntax error in %s line 1: " % broken)
    good = tmp_path / "good.py"
    good.write_text("x = 1\n")
    with pytest.raises(BadTarget, match="^%s has no attribute 'f'$" % good):
        _target.resolve(str(good) + ":f")


def test_a_target_that_raises_on_import_is_the_targets_failure(tmp_path, clean_imports):
    (tmp_path / "raising.py").write_text("raise RuntimeError('at import')\n")
    with pytest.raises(TargetImportFailed) as info:
        _target.resolve(str(tmp_path / "raising.py") + ":f")
    assert "raised RuntimeError" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    pkg = tmp_path / "badpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ValueError('parent')\n")
    (pkg / "mod.py").write_text("def f():\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    with pytest.raises(TargetImportFailed) as info:
        _target.resolve("badpkg.mod:f")
    assert str(info.value) == "importing badpkg.mod raised ValueError"


def test_a_failing_property_is_the_targets_failure(tmp_path, clean_imports):
    (tmp_path / "props.py").write_text(
        "class _M:\n    @property\n    def f(self):\n        raise KeyError('x')\n"
        "thing = _M()\n")
    with pytest.raises(TargetImportFailed, match="getting thing.f raised KeyError"):
        _target.resolve(str(tmp_path / "props.py") + ":thing.f")


# ---- the command line ---------------------------------------------------------------------

def run_cli(capsys, argv):
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv, words", [
    (["check", "m:f", "--iterations", "many"], ("--iterations", "'many'", "whole number")),
    (["check", "m:f", "--iterations", "0"], ("--iterations", "0", "at least 1")),
    (["check", "m:f", "--calls", "-5"], ("--calls", "-5", "at least 1")),
    (["check", "m:f", "--warmup", "-1"], ("--warmup", "-1")),
    (["check", "m:f", "--min-iterations", "2.5"], ("--min-iterations", "2.5")),
    (["check", "m:f", "--frobnicate"], ("unrecognized arguments: --frobnicate",)),
    (["check"], ("the following arguments are required: target",)),
    (["checkk", "m:f"], ("invalid choice: 'checkk'",)),
    (["check", "m:f", "--min-iterations", "9", "--iterations", "8"],
     ("--min-iterations", "9", "--iterations", "8")),
    (["check", "m:f", "--min-iterations", "2"], ("--min-iterations", "at least 3")),
    ([], ("no command given (try: refhound check MODULE:CALLABLE, refhound demo, "
          "refhound --help)",)),
    (["valgrind", "--num-callers", "x", "--", "true"], ("--num-callers", "'x'", "whole number")),
    (["valgrind", "--quarantine", "-1", "--", "true"], ("--quarantine", "-1")),
    (["valgrind", "--allocator", "jemalloc", "--", "true"], ("invalid choice: 'jemalloc'",)),
    (["run"], ("run needs a script (refhound run SCRIPT.py [ARGS]) or a module "
               "(refhound run -m MODULE [ARGS])",)),
    (["run", "-m"], ("-m needs a module name",)),
    (["run", "-m", "not-a-module"], ("'not-a-module' is not a module name",)),
    (["run", "/no/such/script.py"], ("no such file: /no/such/script.py",)),
])
def test_bad_usage_is_one_line_and_exit_2(capsys, argv, words):
    status, out, err = run_cli(capsys, argv)
    assert status == 2
    assert out == ""
    assert err.startswith("refhound: error: ") and err.endswith("\n")
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)


def test_run_with_a_folder_without_main(capsys, tmp_path):
    status, _, err = run_cli(capsys, ["run", str(tmp_path)])
    assert status == 2
    assert err == "refhound: error: %s is a directory without __main__.py\n" % tmp_path


def test_version_and_include(capsys):
    from refhound import __version__
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == "refhound %s\n" % __version__
    status, out, _ = run_cli(capsys, ["--include"])
    assert status == 0 and out.strip().endswith("refhound/include")


def test_every_command_is_registered():
    parser, modules = cli.build_parser()
    assert sorted(modules) == sorted(cli.COMMANDS)
    for name, mod in modules.items():
        assert callable(mod.run), name


def test_write_json_to_a_file_and_to_stdout(capsys, tmp_path):
    path = tmp_path / "out.json"
    assert cli.write_json(str(path), '{"a": 1}') is sys.stdout
    assert path.read_text() == '{"a": 1}\n'
    assert cli.write_json("-", '{"b": 2}') is sys.stderr
    assert capsys.readouterr().out == '{"b": 2}\n'
    assert cli.write_json(str(tmp_path / "no" / "dir.json"), "{}") is None
    err = capsys.readouterr().err
    assert err.startswith("refhound: error: cannot write %s: " % (tmp_path / "no" / "dir.json"))
    assert err.count("\n") == 1
