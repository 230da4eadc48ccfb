"""Both ways of reading native frames name the same culprit lines.

With libdw.so.1 the engine reads DWARF through libdw and walks stacks by
cached CFI rules; without it (REFHOUND_NO_LIBDW=1 stands for a machine
that lacks it) lines come from pyelftools in a helper process and stacks
from the compiler's unwinder.  The JSON says which path was used.
"""
import json
import os

import pytest

import support
from support import (IMMORTAL, NEEDS_LIBDW, build_zoo_case, cbuild, interpreter, libdw_loads,
                     run_refhound)

CASES = {c["name"]: c for c in cbuild.zoo_cases()}
NO_LIBDW = {"REFHOUND_NO_LIBDW": "1"}
PY_RELEASE = interpreter("release")
HAVE_LIBDW = libdw_loads()


def check(target, cwd=None, env=None):
    proc = run_refhound(PY_RELEASE, ["check", target, "--json", "-", "--no-progress"], cwd=cwd,
                        env=env)
    try:
        return json.loads(proc.stdout), proc.stderr
    except ValueError:
        raise AssertionError(proc.stderr)


@pytest.mark.parametrize("name, opt", [("nested_list", "-O2"), ("error_path", "-O2"),
                                       ("getattr_result", "-O0")])
def test_culprit_line_without_libdw(name, opt):
    case = CASES[name]
    cwd = build_zoo_case(case, PY_RELEASE, opt=opt)
    result, err = check(name + ":leaky", cwd, NO_LIBDW)
    assert result["verdict"] == "leak", err
    top = result["sites"][0]
    assert os.path.basename(top["file"]) == name + ".c", top
    assert (top["function"], top["line"]) == (case["culprit_function"], case["culprit_line"]), top
    assert result["native"] == {"symbols": "pyelftools", "unwinder": "compiler"}
    assert any("pyelftools" in n and "REFHOUND_NO_LIBDW=1" in n for n in result["notes"])


@pytest.mark.parametrize("env", [NO_LIBDW, None], ids=["pyelftools", "default"])
def test_items_of_a_leaked_list_from_the_free_list_are_held_not_roots(env):
    """At 100 calls per iteration most of nested_list's leaked lists come
    from the list free list (the check's own lists go back to it), their
    blocks born before the window: the items are held by the lists' item
    arrays, so the list's line stays the top site on either native path."""
    case = CASES["nested_list"]
    cwd = build_zoo_case(case, PY_RELEASE, opt="-O2")
    proc = run_refhound(PY_RELEASE, ["check", "nested_list:leaky", "--calls", "100", "--json",
                                     "-", "--no-progress"], cwd=cwd, env=env)
    result = json.loads(proc.stdout)
    assert result["calls_per_iteration"] == 100, proc.stderr
    top = result["sites"][0]
    assert (top["function"], top["line"]) == (case["culprit_function"], case["culprit_line"]), top
    items = [s for s in result["sites"] if s["function"] == "fill_list"]
    assert [s["root_blocks_per_call"] for s in items] == [0.0], result["sites"]


def test_the_demo_culprits_without_libdw():
    result, err = check("refhound._demo:parse_items", env=NO_LIBDW)
    top = result["sites"][0]
    assert top["file"].endswith("src/demo/demo.c") and top["line"] == 12, top
    assert top["function"] == "parse_items"
    assert result["native"] == {"symbols": "pyelftools", "unwinder": "compiler"}
    result, err = check("refhound._demo:tag_none", env=NO_LIBDW)
    if IMMORTAL:            # None is immortal from 3.12 on: no leak
        assert result["verdict"] == "clean", err
        return
    top = result["sites"][0]
    assert top["file"].endswith("src/demo/demo.c") and top["line"] == 31, top


@pytest.mark.skipif(not HAVE_LIBDW, reason=NEEDS_LIBDW)
def test_the_fast_path_is_used_where_libdw_is_installed():
    case = CASES["nested_list"]
    cwd = build_zoo_case(case, PY_RELEASE, opt="-O2")
    result, err = check("nested_list:leaky", cwd)
    assert result["native"] == {"symbols": "libdw", "unwinder": "cached-cfi"}
    assert result["sites"][0]["line"] == case["culprit_line"]
    assert not any("pyelftools" in n for n in result["notes"])


def test_neither_libdw_nor_pyelftools_gives_the_module_and_says_why(tmp_path):
    # pyelftools made unimportable (in the check and in any helper process).
    hidden = tmp_path / "hide" / "elftools"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = dict(NO_LIBDW, PYTHONPATH=os.pathsep.join([str(hidden.parent),
                                                    support.engine_path(PY_RELEASE)]))
    result, err = check("refhound._demo:parse_items", env=env)
    assert result["verdict"] == "leak", err
    assert result["native"] == {"symbols": "none", "unwinder": "compiler"}
    top = result["sites"][0]
    assert top["line"] == 0 and top["module"].endswith(".so"), top
    assert "pip install pyelftools" in top["reason"], top
    assert any("no source lines" in n and "pip install pyelftools" in n
               for n in result["notes"]), result["notes"]
