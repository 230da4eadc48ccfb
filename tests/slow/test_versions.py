"""Other CPython versions, where installed (pyenv here): the engine builds
against each one's headers and gives the right verdicts, including the
3.12+ rule that an extra INCREF on an immortal object (None, a static type)
is a no-op, so not a leak, while on 3.11 and older it is one."""
import glob

import pytest

from support import build_zoo_case, cbuild, check_json

CASES = {c["name"]: c for c in cbuild.zoo_cases()}
PYTHONS = sorted(glob.glob("/root/.pyenv/versions/3.*/bin/python3"))
PYTHONS = [p for p in PYTHONS if not p.split("/")[-3].startswith(("3.6", "3.7", "3.8", "3.11"))]


def version_of(python):
    return tuple(int(x) for x in python.split("/")[-3].split(".")[:2])


@pytest.mark.skipif(not PYTHONS, reason="no other CPython versions installed (pyenv)")
@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p.split("/")[-3])
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
    assert result["verdict"] == "clean", result["per_call"]
