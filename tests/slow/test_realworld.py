"""Real extensions from PyPI with a documented, since-fixed leak
(tests/realworld/cases.py, docs/realworld.md): the leaky release is found,
the fixed release comes out clean.  Releases are installed from PyPI into
build/realworld on first use.
"""
import json
import os
import sys
import textwrap

import pytest

from support import ROOT, run_refhound



def _load(name, path):
    """A module of tests/realworld by its path: the name `cases` is also
    tests/cpython_corpus's, and an xdist worker may have imported that one."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _load("realworld_cases", os.path.join(ROOT, "tests", "realworld", "cases.py")).CASES
ensure_installed = _load("realworld_fetch",
                         os.path.join(ROOT, "tests", "realworld", "fetch.py")).ensure_installed

INSTALL_ROOT = os.path.join(ROOT, "build", "realworld")


def write_target(case, version, folder):
    """A target file: the release first on sys.path, setup, then target()."""
    site = ensure_installed(case["package"], version, INSTALL_ROOT)
    os.makedirs(folder, exist_ok=True)
    call = case["call"]
    body = ("import sys\nsys.path.insert(0, %r)\n" % site
            + case["setup"] + "\n\ndef target():\n"
            + textwrap.indent(call if "\n" in call else call, "    ") + "\n")
    path = os.path.join(folder, "rw_%s_%s.py" % (case["name"].replace("-", "_"),
                                                 version.replace(".", "_")))
    with open(path, "w") as f:
        f.write(body)
    return path


@pytest.mark.parametrize("which", ["leaky", "fixed"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_documented_leak_found_and_fix_clean(case, which, tmp_path):
    try:
        path = write_target(case, case[which], str(tmp_path))
    except RuntimeError as exc:
        pytest.fail("cannot install %s==%s from PyPI: %s" % (case["package"], case[which], exc))
    proc = run_refhound(sys.executable, ["check", path + ":target", "--json", "-",
                                         "--no-progress"], cwd=str(tmp_path))
    result = json.loads(proc.stdout)
    if which == "leaky":
        assert (proc.returncode, result["verdict"]) == (1, "leak"), proc.stderr
        # At least one whole block, object or reference per call.
        pc = result["per_call"]
        assert max(pc["refs"], pc["objects"], pc["blocks"]) >= 0.9, pc
    else:
        assert (proc.returncode, result["verdict"]) == (0, "clean"), (
            result["per_call"], result["trends"])
