"""Other CPython versions, where installed (pyenv): the engine builds
against each one's headers and gives the right verdicts, including the
3.12+ rule that an extra INCREF on an immortal object (None, a static type)
is a no-op, so not a leak, while on 3.11 and older it is one.

The interpreters are looked for under $PYENV_ROOT (default ~/.pyenv), the
newest patch release of each of 3.9, 3.10, 3.12 and 3.13 (3.11 is the
interpreter the rest of the suite runs on).  One without setuptools (pyenv's
3.12 and 3.13 may lack it) gets the engine compiled with the system
compiler (tests/support.py).  With none installed, the tests are skipped
and say where they looked.
"""
import glob
import os
import re
import sys

import pytest

from support import build_zoo_case, cbuild, check_json

CASES = {c["name"]: c for c in cbuild.zoo_cases()}
PYENV = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
MINORS = ("3.9", "3.10", "3.12", "3.13")


def _version(path):
    return tuple(int(x) for x in re.findall(r"\d+", path.split(os.sep)[-3])[:3])


def find_pythons():
    """The newest pyenv interpreter of each minor version wanted."""
    found = []
    for minor in MINORS:
        paths = [p for p in glob.glob(os.path.join(PYENV, "versions", minor + ".*", "bin",
                                                   "python3"))
                 if re.fullmatch(re.escape(minor) + r"\.\d+", p.split(os.sep)[-3])
                 and os.access(p, os.X_OK)]
        if paths:
            found.append(max(paths, key=_version))
    return found


PYTHONS = find_pythons()
PARAMS = PYTHONS or [pytest.param(None, marks=pytest.mark.skip(
    reason="no CPython %s installed under %s/versions (pyenv)" % (", ".join(MINORS), PYENV)))]


def version_of(python):
    return _version(python)[:2]


def test_pythons_are_found_the_way_pyenv_lays_them_out(tmp_path, monkeypatch):
    for name in ("3.9.18", "3.9.2", "3.10.13", "3.11.7", "3.12.1", "3.13.0", "3.13.0t",
                 "3.1.5", "pypy3.10-7.3.12"):
        exe = tmp_path / "versions" / name / "bin" / "python3"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    monkeypatch.setattr(sys.modules[__name__], "PYENV", str(tmp_path))
    assert [p.split(os.sep)[-3] for p in find_pythons()] == ["3.9.18", "3.10.13", "3.12.1",
                                                            "3.13.0"]


@pytest.mark.parametrize("python", PARAMS, ids=lambda p: p.split("/")[-3] if p else "none")
@pytest.mark.parametrize("name, immortal", [("new_object", False), ("list_append", False),
                                            ("incref_none", True),
                                            ("incref_static_type", True)])
def test_verdicts_on_other_versions(python, name, immortal):
    cwd = build_zoo_case(CASES[name], python)
    status, result, err = check_json(python, name + ":leaky", cwd)
    assert result is not None, err
    if immortal and version_of(python) >= (3, 12):
        assert result["verdict"] == "clean", result["per_call"]
    else:
        assert result["verdict"] == "leak", (result["per_call"], err)
        assert result["per_call"]["refs"] == pytest.approx(CASES[name]["expect"]["refs"],
                                                           abs=0.05)
    status, result, err = check_json(python, name + ":clean", cwd)
    assert result["verdict"] == "clean", (result["per_call"], result["notes"])


SCREENED = [p for p in PYTHONS if version_of(p) >= (3, 12)] or [pytest.param(None, marks=(
    pytest.mark.skip(reason="no CPython 3.12 or 3.13 under %s/versions (pyenv)" % PYENV)))]


@pytest.mark.parametrize("python", SCREENED, ids=lambda p: p.split("/")[-3] if p else "none")
def test_the_screen_clears_a_free_list_filling_on_other_versions(python):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "e2e"))
    from test_pytest_screen import check_free_list
    check_free_list(python)
