"""pytest --refhound's screen and its neutral bookkeeping, end to end.

- The zoo as a pytest suite: every leaky case fails (among them a leak of
  one object every tenth call and a reference-only leak), every clean twin
  passes.
- Subtests: 1,000 passing subtests are clean; a leak inside the third
  subtest is reported and the subtest named (pytest's own `subtests`
  fixture, and the pytest-subtests plugin when it is installed).
- The screen's sensitivity: whatever the screen clears (zoo leaky and clean
  cases, the sample extension's functions, the settle cases) is clean
  under the full check at ten times the calls the screen made.
- Proofs without the full check: blocks lost for good (a PyMem block a
  call) are a leak at the screen's exact rates, while blocks a ring still
  points to get the full check; references nothing holds (an extra
  Py_INCREF(Py_None)) skip the trend test, while references a list's new
  slots hold get the full check.
- A slow body's screen calls its tail only when the walk before it finds
  something: a body that keeps nothing is cleared on one call, one that
  keeps its last result on two; one whose only survivor is the new keys
  table of an old dict is cleared without a second round, and its twin
  that keeps a block a call is not cleared.
- The interpreter's dict-keys free list filling over the first calls is
  cleared in one round (3.11, 3.12: the free-listed tables are told from
  survivors), or by a full collection that frees them (3.13); keeping the
  copies is a leak (tests/slow/test_versions.py runs it on 3.12 and 3.13).
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from support import (ROOT, SANITIZE, build_zoo_case, cbuild, engine_path,
                     run_pytest_refhound)

PY = sys.executable
CASES = {c["name"]: c for c in cbuild.zoo_cases()}
SETTLE = os.path.join(ROOT, "tests", "settle", "basics.py")
# Under the sanitizer tier ASan's shadow memory (terabytes mapped read-write)
# is over the most lost.c searches: no proof without the full check.
SEARCHES = pytest.mark.skipif(bool(SANITIZE), reason="ASan's shadow memory: no search")


def outcomes(path):
    return {e["target"]: e for e in json.loads(path.read_text())}


# ---------------------------------------------------------------------------
# The zoo as a pytest suite

ZOO_SUITE = ("every_tenth", "incref_none", "incref_cached_str", "new_object", "objmem_buffer",
             "rawmem_buffer", "nested_list")


@pytest.fixture(scope="module")
def zoo_suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo_suite")
    built = None
    lines = ["import pytest", ""]
    for name in ZOO_SUITE:
        built = build_zoo_case(CASES[name], PY)
        lines += ["import %s" % name, "",
                  "def test_%s_leaky():" % name, "    %s.leaky()" % name, "",
                  "def test_%s_clean():" % name, "    %s.clean()" % name, ""]
    (folder / "test_zoo_suite.py").write_text("\n".join(lines))
    (folder / "pytest.ini").write_text("[pytest]\n")
    proc = run_pytest_refhound(["-q", "--refhound", "--refhound-json", "out.json"], folder, [built])
    return proc, outcomes(folder / "out.json")


def test_zoo_suite_fails_exactly_the_leaky_cases(zoo_suite):
    proc, results = zoo_suite
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ZOO_SUITE:
        leaky = results["test_zoo_suite.py::test_%s_leaky" % name]
        clean = results["test_zoo_suite.py::test_%s_clean" % name]
        assert leaky["pytest"]["outcome"] == "leak", (name, leaky["pytest"], leaky.get("screen"))
        assert "LEAKED test_zoo_suite.py::test_%s_leaky" % name in proc.stdout
        assert clean["pytest"]["outcome"] == "clean", (name, clean["pytest"], clean.get("screen"))
        # A leaky case never gets past the screen; a clean twin is cleared by it.
        assert leaky["screen"]["outcome"] == "suspect", (name, leaky["screen"])
        assert clean["screen"]["outcome"] == "clean", (name, clean["screen"])
    tenth = results["test_zoo_suite.py::test_every_tenth_leaky"]
    assert abs(tenth["per_call"]["objects"] - 0.1) <= 0.02, tenth["per_call"]
    none = results["test_zoo_suite.py::test_incref_none_leaky"]
    assert abs(none["per_call"]["refs"] - 1) <= 0.05 and none["per_call"]["blocks"] == 0


# ---------------------------------------------------------------------------
# Subtests

SUBTESTS = '''
import unittest

_kept = []


def test_many_subtests(subtests):
    for i in range(1000):
        with subtests.test(msg="item", i=i):
            assert i >= 0


def test_third_subtest_leaks(subtests):
    for i in range(5):
        with subtests.test(msg="step", i=i):
            if i == 2:
                _kept.append(object())
            assert i >= 0


class TestUnit(unittest.TestCase):
    def test_many_subtests(self):
        for i in range(1000):
            with self.subTest(i=i):
                self.assertGreaterEqual(i, 0)
'''


def _subtests_run(tmp_path, plugins):
    (tmp_path / "test_subtests.py").write_text(SUBTESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # The screen clears the 1,000-subtest tests in seconds; on a loaded
    # machine the malloc heap may move during it, and then the full check
    # (some 30 s for a body of ~1 s) must find them clean too: a budget
    # that lets it run.
    proc = run_pytest_refhound(["-q", "--refhound", "--refhound-json", "out.json",
                                "--refhound-budget", "300"], tmp_path, plugins=plugins)
    return proc, outcomes(tmp_path / "out.json")


@pytest.mark.parametrize("plugins", [(), ("pytest_subtests.plugin",)],
                         ids=["pytest", "pytest-subtests"])
def test_subtests_are_neutral_and_a_leaking_one_is_named(tmp_path, plugins):
    if plugins:
        pytest.importorskip("pytest_subtests", reason="pip install pytest-subtests")
    proc, results = _subtests_run(tmp_path, plugins)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    for nodeid in ("test_subtests.py::test_many_subtests",
                   "test_subtests.py::TestUnit::test_many_subtests"):
        assert results[nodeid]["pytest"]["outcome"] == "clean", results[nodeid]["pytest"]
    leak = results["test_subtests.py::test_third_subtest_leaks"]["pytest"]
    assert leak["outcome"] == "leak", leak
    # pytest 9.0 writes a subtest's parameters as i=2, 9.2 as i='2'.
    named = re.findall(r"in subtest \[step\] \(i='?(\d)'?\):", leak["reason"])
    assert named == ["2"], leak["reason"]
    assert re.search(r"in subtest \[step\] \(i='?2'?\)", proc.stdout), proc.stdout[-2000:]
    # The subtests of the check never reached pytest's reports: the normal
    # run's 2005 passed subtests, once each.
    assert "2005 subtests passed" in proc.stdout, proc.stdout[-500:]


# ---------------------------------------------------------------------------
# The screen is at least as sensitive as the full check for what it clears

PROPERTY = r'''
import json, sys
sys.path[:0] = sys.argv[1].split(":")
import refhound
from refhound import _core
from refhound._run import run_callable
from refhound.options import Options
from refhound import verdict as V
_core.start()
import importlib, time
targets = []
for name in sys.argv[2].split(","):
    mod = importlib.import_module(name)
    for fn in ("leaky", "clean"):
        targets.append(("%s:%s" % (name, fn), getattr(mod, fn)))
import sampleext
targets += [("sampleext.encode_leaky", lambda: sampleext.encode_leaky([1, 2, 3])),
            ("sampleext.encode", lambda: sampleext.encode([1, 2, 3])),
            ("sampleext.tag_leaky", lambda o=object(): sampleext.tag_leaky(o)),
            ("sampleext.tag", lambda o=object(): sampleext.tag(o)),
            ("sampleext.scratch_leaky", lambda: sampleext.scratch_leaky(64)),
            ("sampleext.scratch", lambda: sampleext.scratch(64))]
import basics
for fn in (basics.lru_cache_fill, basics.re_cache, basics.interning, basics.lazy_import,
           basics.fixed_dict, basics.python_leak):
    targets.append(("basics:" + fn.__name__, fn))
out = []
options = Options.for_pytest(patience=0.0, attribution=False, diagnose=0)
for name, fn in targets:
    t = time.perf_counter(); fn(); t = time.perf_counter() - t
    result = run_callable(options, fn, (), {}, name, screen=t)
    screen = result.screen
    entry = {"target": name, "screen": screen["outcome"], "screen_calls":
             V.screen_calls({"calls": screen["calls"], "epochs": screen["epochs"]}) +
             screen["warm"]}
    if screen["outcome"] == "clean":
        full = run_callable(options.replace(calls=10 * entry["screen_calls"]), fn, (), {}, name)
        entry["full"] = full.verdict
        entry["full_counted"] = {m: full.per_call.get(m) for m in ("refs", "objects", "blocks",
                                                                    "bytes")}
    out.append(entry)
print(json.dumps(out))
'''


def test_what_the_screen_clears_is_clean_at_ten_times_the_calls(tmp_path):
    built = None
    for name in CASES:
        built = build_zoo_case(CASES[name], PY)
    sample = str(tmp_path / "sample")
    cbuild.build_extension(os.path.join(ROOT, "tests", "sample_project", "sampleext.c"), sample,
                           python=PY)
    zoo = [n for n in CASES if n != "extra_decref"]     # the over-release is an error, never clean
    path = os.pathsep.join([built, sample, os.path.dirname(SETTLE)])
    proc = subprocess.run([PY, "-c", PROPERTY, path, ",".join(zoo)], capture_output=True,
                          text=True, timeout=3000,
                          env=dict(os.environ, PYTHONPATH=engine_path(PY)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries = json.loads(proc.stdout.strip().splitlines()[-1])
    cleared = [e for e in entries if e["screen"] == "clean"]
    assert cleared, entries
    for e in cleared:
        if SANITIZE and e["full"] != "clean":
            # Under the sanitizer tier resident memory holds ASan's
            # quarantine, which grows for a long time: a verdict on it
            # alone (patience is off here) says nothing of the screen.
            assert all(abs(v or 0) < 0.05 for v in e["full_counted"].values()), e
            continue
        assert e["full"] == "clean", e
    # Every leaky case is beyond the screen (it never clears a leak).
    for e in entries:
        if SANITIZE and e["target"].startswith("native_"):
            # Under the sanitizer tier malloc and operator new are ASan's: the
            # glibc heap figure stays flat, and a C++ module's `new` is bound
            # to ASan's runtime, where native tracking does not see it.
            continue
        if e["target"].endswith(":leaky") or e["target"].endswith("_leaky") or \
                e["target"] == "basics:python_leak":
            assert e["screen"] == "suspect", e
    # ... and the clean twins are cleared by it (the screen saves the time).
    twins = [e for e in entries if e["target"].endswith(":clean")]
    assert sum(e["screen"] == "clean" for e in twins) >= len(twins) - 2, twins


# ---------------------------------------------------------------------------
# A free list that fills over the first calls

FREE_LIST = '''
import gc, json, sys
from refhound import _core
from refhound.api import Checker

_core.start()
kept = []


def fill():
    # The literal's keys come from the free list, the copy's from the
    # allocator; both go back to the free list: one table more per call,
    # up to the list's 80.
    {"a": 1}.copy()


def keep():
    kept.append({"a": 1}.copy())


out = {}
for func in (fill, keep):
    gc.collect()            # the free lists emptied: they fill again under the screen
    r = Checker().run(func, (), {}, func.__name__, screen=1e-6)
    out[func.__name__] = {"verdict": r.verdict, "screen": r.screen}
print(json.dumps(out))
'''


def check_free_list(python):
    """The dict-keys free list filling is cleared by the screen; a kept copy leaks."""
    proc = subprocess.run([python, "-c", FREE_LIST], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=engine_path(python)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    fill, keep = out["fill"], out["keep"]
    assert fill["verdict"] == "clean" and fill["screen"]["outcome"] == "clean", fill
    version = tuple(int(x) for x in subprocess.run(
        [python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
        text=True).stdout.split())
    if (3, 11) <= version < (3, 13):
        # Told apart in the first round: the tables waiting in the list are
        # not survivors.
        assert len(fill["screen"]["rounds"]) == 1, fill
        assert fill["screen"]["free_listed"] >= 25, fill
    else:
        # Seen as survivors, then freed by the full collection.
        assert "died in a full collection" in fill["screen"]["reason"], fill
    assert keep["verdict"] == "leak" and keep["screen"]["outcome"] == "suspect", keep


def test_a_free_list_filling_over_the_first_calls_is_cleared_by_the_screen():
    check_free_list(PY)


# ---------------------------------------------------------------------------
# Blocks lost for good: the screen proves the leak, no full check

LOST_SUITE = '''
import collections

import %(module)s

# Its last 400 results, the ring full from the start: what a call makes
# lives 400 calls, referenced from the ring, and nothing grows.
_ring = collections.deque((bytearray(64) for _ in range(400)), maxlen=400)


def test_buffer_leaky():
    %(module)s.leaky()


def test_buffer_leaky_again():
    %(module)s.leaky()


def test_keeps_its_last_400_buffers():
    _ring.append(bytearray(64))
'''


def _one_by_one(tmp_path_factory, name, text, case):
    """A suite `name` of `text` beside the zoo `case`'s module, run under
    pytest --refhound with each test screened on its own: (process, results)."""
    folder = tmp_path_factory.mktemp(name)
    built = build_zoo_case(CASES[case], PY)
    (folder / ("test_%s.py" % name)).write_text(text)
    (folder / "pytest.ini").write_text("[pytest]\n")
    proc = run_pytest_refhound(["-q", "--refhound", "--refhound-one-by-one", "--refhound-json",
                                "out.json"], folder, [built])
    return proc, outcomes(folder / "out.json")


# CPython's allocators: PyMem_Malloc (the mem domain) and PyMem_RawMalloc
# (raw: what tracemalloc's tracebacks use, msgpack's leaks of gh-121390).
@pytest.fixture(scope="module", params=["pymem_buffer", "rawmem_buffer"])
def lost_suite(tmp_path_factory, request):
    return request.param, _one_by_one(tmp_path_factory, "lost_suite",
                                      LOST_SUITE % {"module": request.param}, request.param)


@SEARCHES
def test_blocks_lost_for_good_are_a_leak_without_the_full_check(lost_suite):
    """A 64-byte PyMem (or raw) block lost every call (nothing else moves): the
    screen's second round finds the first round's blocks still alive and
    its own referenced from nowhere (lost.c), so the leak is called there:
    its rates are the screen's (exactly 1 block and 64 bytes a call), two
    iterations with stacks name the culprit line, no trend test, no
    patience.  The same leak twice: the proof is a short cut whose search
    can fall short (a stale word in live memory names a block), and then the
    full check decides, at the same rate and line; one of the two must be
    proven.  (Before the search left the allocators' free memory out, stale
    words in freed dict tables and list arrays hid whole epochs: CI's run
    and .ci/fresh-path --bare proved neither.)"""
    case, (proc, results) = lost_suite
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    proven = 0
    for name in ("test_buffer_leaky", "test_buffer_leaky_again"):
        leaky = results["test_lost_suite.py::" + name]
        assert leaky["pytest"]["outcome"] == "leak", leaky["notes"]
        assert (leaky["per_call"]["blocks"], leaky["per_call"]["bytes"]) == (1.0, 64.0), \
            leaky["per_call"]
        culprit = leaky["sites"][0]["culprit"]
        assert (culprit["function"], culprit["line"]) == (
            CASES[case]["culprit_function"], CASES[case]["culprit_line"])
        if not any(n.startswith("no full check needed") for n in leaky["notes"]):
            continue
        proven += 1
        assert leaky["iterations"] == {"warmup": 1, "measured": 2}, leaky["iterations"]
        assert leaky["trends"]["blocks"]["proof"] == "lost for good", leaky["trends"]
        assert leaky["screen"]["outcome"] == "suspect" and sum(leaky["screen"]["lost"]) > 0
    assert proven >= 1, [(results["test_lost_suite.py::" + n]["notes"],
                          results["test_lost_suite.py::" + n]["screen"])
                         for n in ("test_buffer_leaky", "test_buffer_leaky_again")]


def test_blocks_kept_and_referenced_get_the_full_check(lost_suite):
    """The twin: blocks that outlive the screen's rounds but that the ring
    still points to are not lost; the full check runs and clears the test
    (the ring only turns over)."""
    case, (proc, results) = lost_suite
    ring = results["test_lost_suite.py::test_keeps_its_last_400_buffers"]
    assert ring["pytest"]["outcome"] == "clean", ring["notes"]
    assert ring["screen"]["outcome"] == "suspect", ring["screen"]
    assert not any(n.startswith("no full check needed") for n in ring["notes"]), ring["notes"]
    assert ring["iterations"]["measured"] >= 8, ring["iterations"]


NATIVE_LOST_SUITE = '''
import native_lib_malloc


def test_native_leaky():
    native_lib_malloc.leaky()
'''


@SEARCHES
def test_native_blocks_lost_for_good_go_to_the_full_check(tmp_path_factory):
    """The twin of the proof: blocks an extension mallocs (the native
    domain), lost every call, are counted by the screen but reported apart
    by the full check (native_blocks, not blocks): the screen proves no
    such leak; the full check names it at its rate."""
    proc, results = _one_by_one(tmp_path_factory, "native_lost", NATIVE_LOST_SUITE,
                                "native_lib_malloc")
    leaky = results["test_native_lost.py::test_native_leaky"]
    assert leaky["pytest"]["outcome"] == "leak", leaky["notes"]
    assert not any(n.startswith("no full check needed") for n in leaky["notes"]), leaky["notes"]
    assert leaky["per_call"]["blocks"] == 0 and leaky["per_call"]["native_blocks"] >= 0.9, \
        leaky["per_call"]


# ---------------------------------------------------------------------------
# References alone: the diagnosis and the count of the words first

REFERENCES_SUITE = '''
import incref_none

# Room for a million more items: appending reallocates nothing, so each call
# adds a reference to None and nothing else, held by the list's new slot.
# (The room is made of slots that held 0, not None: a slot that already held
# None's address would not count as a new word.)
_held = [0] * 2_000_000
del _held[1_000_000:]


def test_incref_none_leaky():
    incref_none.leaky()


def test_appends_none_to_a_list_with_room():
    _held.append(None)
'''


@pytest.fixture(scope="module")
def references_suite(tmp_path_factory):
    return _one_by_one(tmp_path_factory, "references_suite", REFERENCES_SUITE, "incref_none")


@SEARCHES
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal: nothing leaks")
def test_references_nothing_holds_are_a_leak_without_the_trend_test(references_suite):
    """An extra Py_INCREF(Py_None): every round of the screen saw the
    reference total grow and nothing else move, so the diagnosis comes
    first (None, +1 a call) and the words that hold None's address, which
    do not grow with it, prove the leak: no trend test, no patience; the
    refcount watch names the culprit line."""
    proc, results = references_suite
    leaky = results["test_references_suite.py::test_incref_none_leaky"]
    assert leaky["pytest"]["outcome"] == "leak", leaky["notes"]
    assert any(n.startswith("no full check needed: the reference count grew")
               for n in leaky["notes"]), (leaky["notes"], leaky["screen"])
    assert abs(leaky["per_call"]["refs"] - 1) <= 0.05 and leaky["per_call"]["blocks"] == 0
    assert leaky["iterations"] == {"warmup": 1, "measured": 2}, leaky["iterations"]
    assert leaky["trends"]["refs"]["proof"] == "references nothing holds", leaky["trends"]
    growth = leaky["refcount_growth"][0]
    assert growth["repr"] == "None", growth
    culprit = growth["sites"][0]["culprit"]
    assert (culprit["function"], culprit["line"]) == (
        CASES["incref_none"]["culprit_function"], CASES["incref_none"]["culprit_line"])


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal: nothing grows")
def test_references_held_by_new_slots_get_the_full_check(references_suite):
    """The twin: a list with room appends None each call: the reference
    total alone grows here too, but each new reference sits in a word (the
    slot), so nothing is proven without the full check, which runs and
    finds the list growing for good."""
    proc, results = references_suite
    held = results["test_references_suite.py::test_appends_none_to_a_list_with_room"]
    assert held["pytest"]["outcome"] == "leak", held["notes"]
    assert any("the references it gains are held" in n and n.endswith("checked in full")
               for n in held["notes"]), held["notes"]
    assert not any(n.startswith("no full check needed") for n in held["notes"]), held["notes"]
    assert held["iterations"]["measured"] >= 8, held["iterations"]


# ---------------------------------------------------------------------------
# A slow body's tail call only when the walk before it finds something

SLOW_BODIES = '''
import time

_last = [None]


def _spend(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_slow_first():
    # The session's first check: its first round saw "objects -1" until the
    # engine held the attribute names it looks up (the type method cache
    # freed a name the first walk had counted).
    _spend(0.06)


def test_slow_keeps_nothing():
    _spend(0.06)


def test_slow_keeps_its_last_result():
    _spend(0.06)
    _last[0] = [object() for _ in range(3)]


# A dict of 5 keys over a pool of existing objects (its smallest table
# full), resized once, by the first call after the test's normal run: a
# key swapped for another (no object made, no reference more) needs a
# slot the table does not have.  Its new table (16 slots: pymalloc's, so
# the native heap does not move) is born in the screen's judged call and
# no later call replaces it.
_pool = [object() for _ in range(6)]
_old_dict = {p: None for p in _pool[:5]}
_runs = [0]


def test_slow_resizes_an_old_dict_once():
    _spend(0.06)
    _runs[0] += 1
    if _runs[0] == 2:
        del _old_dict[_pool[0]]
        _old_dict[_pool[5]] = None


# A set of 18 existing objects (a table of its own, pymalloc's), emptied and
# filled again with the same keys by the first call after the normal run:
# no object made, no reference more, and a new table that no later call
# replaces.
_set_keys = [object() for _ in range(18)]
_old_set = set(_set_keys)
_set_runs = [0]


def test_slow_rebuilds_an_old_set_once():
    _spend(0.06)
    _set_runs[0] += 1
    if _set_runs[0] == 2:
        _old_set.clear()
        _old_set.update(_set_keys)


def test_slow_keeps_a_block_each_call():
    _spend(0.06)
    _last.append(bytearray(100))


# One raw block kept from the screen's judged call until two calls later,
# beside a descriptor opened once and kept (as a thread leaves a new malloc
# arena): one judged epoch, one survivor and something else moved.  A second
# round (one call) sees the block gone and nothing moving.
import ctypes
import os

_raw = ctypes.pythonapi.PyMem_RawMalloc
_raw.restype = ctypes.c_void_p
_raw.argtypes = [ctypes.c_size_t]
_free = ctypes.pythonapi.PyMem_RawFree
_free.argtypes = [ctypes.c_void_p]
_held = (ctypes.c_void_p * 64)()
_fds = []
_state_runs = [0]


def test_slow_holds_a_block_for_two_calls_beside_a_new_descriptor():
    _spend(0.06)
    _state_runs[0] += 1
    if _state_runs[0] == 2:
        _held[0] = _raw(100)
        _fds.append(os.open(os.devnull, os.O_RDONLY))
    elif _state_runs[0] == 4:
        _free(_held[0])
        _held[0] = None


# A cycle made by the previous call (old at walk A: frozen through the
# screen) is handed this call's result and dropped: what it holds outlives
# the judged call and the tail while the old heap is frozen, and is freed
# by the full collection after the thaw.
class _Node:
    def __init__(self):
        self.me = self
        self.payload = None


_node = [_Node()]


def test_slow_hands_its_result_to_an_old_cycle_it_drops():
    _spend(0.06)
    _node[0].payload = [object() for _ in range(3)]
    _node[0] = _Node()


_leak_runs = [0]


def test_slow_keeps_a_raw_block_each_call_beside_a_new_descriptor():
    _spend(0.06)
    _leak_runs[0] += 1
    _held[1 + _leak_runs[0] % 60] = _raw(100)
    if _leak_runs[0] == 2:
        _fds.append(os.open(os.devnull, os.O_RDONLY))
'''


def test_a_slow_body_is_screened_on_one_call_unless_the_walk_finds_something(tmp_path):
    """A 60 ms body (screened on its own) that keeps nothing is cleared on one call (its normal
    run was its warm call: no tail); its twin keeps its last result, which
    survives that call, so the tail call replaces it and the body is
    cleared on two."""
    (tmp_path / "test_slow.py").write_text(SLOW_BODIES)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = run_pytest_refhound(["-q", "--refhound", "--refhound-json", "out.json"], tmp_path)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = outcomes(tmp_path / "out.json")
    first = results["test_slow.py::test_slow_first"]
    assert first["screen"]["rounds"] == ["nothing survived 1 calls in 1 epochs"], first["screen"]
    quiet = results["test_slow.py::test_slow_keeps_nothing"]
    assert quiet["verdict"] == "clean", quiet["notes"]
    assert quiet["screen"]["rounds"] == ["nothing survived 1 calls in 1 epochs"], quiet["screen"]
    kept = results["test_slow.py::test_slow_keeps_its_last_result"]
    assert kept["verdict"] == "clean", kept["notes"]
    assert kept["screen"]["rounds"] == ["nothing survived 2 calls in 1 epochs"], kept["screen"]
    # The tail runs with the old heap frozen: the old cycle's new blocks
    # are freed by the full collection after the thaw, not judged.
    dropped = results["test_slow.py::test_slow_hands_its_result_to_an_old_cycle_it_drops"]
    assert dropped["verdict"] == "clean", dropped["notes"]
    assert dropped["screen"]["rounds"] == ["nothing survived 2 calls in 1 epochs"], \
        dropped["screen"]
    # The old dict's new table, and the old set's, outlive the judged call
    # and a full collection: each is the table of a container older than
    # the call, cleared on that one call (no tail: walk B found nothing
    # else) without a second round.
    for name in ("test_slow_resizes_an_old_dict_once", "test_slow_rebuilds_an_old_set_once"):
        resized = results["test_slow.py::" + name]
        assert resized["verdict"] == "clean", resized["notes"]
        rounds = resized["screen"]["rounds"]
        assert len(rounds) == 2 and rounds[1].startswith(
            "the blocks that survived 1 calls are the tables of dicts or sets older than "
            "them"), resized["screen"]
    # The twin keeps a new block each call: no dict's table, so the screen
    # does not clear it (the full check of a 60 ms body within the budget
    # may end `inconclusive`: few iterations).
    block = results["test_slow.py::test_slow_keeps_a_block_each_call"]
    assert block["screen"]["outcome"] != "clean", block["screen"]
    assert block["verdict"] in ("leak", "inconclusive"), block["notes"]
    assert not any("tables of dicts" in r for r in block["screen"]["rounds"]), block["screen"]
    # One survivor of one judged call, beside a descriptor opened once: a
    # second round (one call), not the full check, and it is gone by then.
    held = results["test_slow.py::test_slow_holds_a_block_for_two_calls_beside_a_new_descriptor"]
    assert held["verdict"] == "clean", held["notes"]
    assert held["screen"]["outcome"] == "clean", held["screen"]
    rounds = held["screen"]["rounds"]
    assert len(rounds) == 2 and rounds[0].startswith("blocks survive calls (") and \
        "fds +1" in rounds[0] and rounds[1] == "nothing survived 1 calls in 1 epochs", rounds
    # Its twin keeps a raw block every call: the second round sees it again.
    raw = results["test_slow.py::test_slow_keeps_a_raw_block_each_call_beside_a_new_descriptor"]
    assert raw["screen"]["outcome"] != "clean", raw["screen"]
    assert len(raw["screen"]["rounds"]) >= 2, raw["screen"]
    assert raw["verdict"] in ("leak", "inconclusive"), raw["notes"]


def test_a_second_round_that_would_not_fit_the_budget_is_not_taken(tmp_path):
    """The same two bodies under a budget of 0.1 s: the one whose first
    round clears it is clean as before; the one that needs a second round
    (a block held for two calls beside a new descriptor, cleared on two
    rounds under the default budget, above) has used the budget with its
    first round (two 60 ms calls), so no second one is taken: inconclusive,
    saying so."""
    (tmp_path / "test_slow.py").write_text(SLOW_BODIES)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = run_pytest_refhound(["-q", "--refhound", "--refhound-json", "out.json",
                                "--refhound-budget", "0.1", "-k",
                                "keeps_nothing or holds_a_block_for_two_calls"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = outcomes(tmp_path / "out.json")
    quiet = results["test_slow.py::test_slow_keeps_nothing"]
    assert quiet["verdict"] == "clean", quiet["notes"]
    held = results["test_slow.py::test_slow_holds_a_block_for_two_calls_beside_a_new_descriptor"]
    assert held["verdict"] == "inconclusive", held["notes"]
    assert held["screen"].get("over_budget") is True, held["screen"]
    assert len(held["screen"]["rounds"]) == 1, held["screen"]
    assert "another round of the screen would not fit it either" in held["incomplete"], \
        held["incomplete"]
    assert held["iterations"]["measured"] == 0, held["iterations"]


# ---------------------------------------------------------------------------
# unittest tests that fail or are skipped are not checked

UNITTEST_OUTCOMES = '''
import sys
import unittest


@unittest.skipUnless(hasattr(sys, "no_such_attribute"), "needs it")
class TestSkippedClass(unittest.TestCase):
    def test_a(self):
        pass


class TestMethods(unittest.TestCase):
    @unittest.skip("skipped")
    def test_skipped(self):
        pass

    def test_skips_itself(self):
        self.skipTest("inside")

    def test_fails(self):
        self.assertEqual(1, 2)

    def test_passes(self):
        self.assertEqual(1, 1)


_calls = [0]


class TestFailsWhenRunAgain(unittest.TestCase):
    def test_fails_later(self):
        _calls[0] += 1
        if _calls[0] > 3:
            self.fail("failed at call %d" % _calls[0])
'''


def test_unittest_failures_and_skips_are_not_checked(tmp_path):
    # unittest hands a failure or a skip to the item instead of raising it:
    # such a test is not checked (it used to be, and reported as a leak of
    # the skip's own bookkeeping, its skip counted once per check), and a
    # test that fails when run again is unchecked, its report untouched.
    (tmp_path / "test_outcomes.py").write_text(UNITTEST_OUTCOMES)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = run_pytest_refhound(["-q", "--refhound", "--refhound-json", "out.json"], tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 failed, 2 passed, 3 skipped" in proc.stdout, proc.stdout[-1000:]
    results = outcomes(tmp_path / "out.json")
    assert sorted(results) == ["test_outcomes.py::TestFailsWhenRunAgain::test_fails_later",
                               "test_outcomes.py::TestMethods::test_passes"], results
    assert results["test_outcomes.py::TestMethods::test_passes"]["pytest"]["outcome"] == "clean"
    later = results["test_outcomes.py::TestFailsWhenRunAgain::test_fails_later"]["pytest"]
    assert later["outcome"] == "unchecked", later
    assert "failed when run again" in later["reason"] and "failed at call" in later["reason"]
