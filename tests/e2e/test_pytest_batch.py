"""pytest --refhound's batches (refhound/_pytest_batch.py), end to end.

A module of many fast tests (plain functions, parametrized ones, a
unittest class) with two leaking tests among them: a leak of one object
every tenth call and a reference-only leak (an extra Py_INCREF on None).
Batched, serially and under pytest-xdist, the two fail and every other
test passes, most of them cleared by the screen of a batch; one by one
(--refhound-one-by-one) the outcomes are the same.  A test with a
function-scoped yield fixture, or one asking for capsys, is checked on its
own; a test whose batch holds a leaking test is still named alone, down
to its culprit line.
"""
import json
import re
import sys

import pytest

from support import SANITIZE, build_zoo_case, cbuild, run_pytest_refhound

PY = sys.executable
CASES = {c["name"]: c for c in cbuild.zoo_cases()}

SUITE = '''
import unittest

import pytest

import every_tenth
import incref_none
import new_object


@pytest.fixture
def plain_value():
    return [1, 2, 3]


@pytest.fixture
def yielded():
    yield {"k": 1}


@pytest.mark.parametrize("n", range(12))
def test_param_clean(n):
    every_tenth.clean()
    assert n >= 0


def test_every_tenth_leaky():
    every_tenth.leaky()


def test_uses_plain_fixture(plain_value):
    new_object.clean()
    assert plain_value == [1, 2, 3]


def test_incref_none_leaky():
    incref_none.leaky()


@pytest.mark.parametrize("n", range(12))
def test_more_clean(n):
    incref_none.clean()


def test_yield_fixture(yielded):
    new_object.clean()


def test_capsys(capsys):
    print("hello")
    assert capsys.readouterr().out == "hello\\n"


class TestCodec(unittest.TestCase):
    def test_a(self):
        new_object.clean()

    def test_b(self):
        every_tenth.clean()

    def test_c(self):
        self.assertEqual(len([incref_none.clean() for _ in range(3)]), 3)

    def test_leaky(self):
        new_object.leaky()

    def test_d(self):
        new_object.clean()
'''

LEAKY = {"test_suite.py::test_every_tenth_leaky", "test_suite.py::test_incref_none_leaky",
         "test_suite.py::TestCodec::test_leaky"}
ALONE = {"test_suite.py::test_yield_fixture", "test_suite.py::test_capsys"}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch_suite")
    built = [build_zoo_case(CASES[name], PY) for name in ("every_tenth", "incref_none",
                                                          "new_object")]
    (folder / "test_suite.py").write_text(SUITE)
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder, sorted(set(built))


def _run(suite, *args):
    folder, built = suite
    out = folder / ("out%d.json" % abs(hash(args)))
    proc = run_pytest_refhound(["-q", "-rA", "--refhound", "--refhound-json", str(out)]
                               + list(args), folder, built)
    return proc, {e["target"]: e for e in json.loads(out.read_text())}


def _check(proc, results):
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 failed, 31 passed" in proc.stdout, proc.stdout[-2000:]
    for nodeid, entry in results.items():
        want = "leak" if nodeid in LEAKY else "clean"
        assert entry["pytest"]["outcome"] == want, (nodeid, entry["pytest"], entry.get("screen"))
    for nodeid in LEAKY:
        assert "LEAKED " + nodeid in proc.stdout, proc.stdout[-3000:]
    tenth = results["test_suite.py::test_every_tenth_leaky"]
    assert abs(tenth["per_call"]["objects"] - 0.1) <= 0.02, tenth["per_call"]
    none = results["test_suite.py::test_incref_none_leaky"]
    assert abs(none["per_call"]["refs"] - 1) <= 0.05 and none["per_call"]["blocks"] == 0
    # Halved out of its batch, a leaking test is named down to its culprit line.
    for nodeid, name in (("test_suite.py::test_every_tenth_leaky", "every_tenth"),
                         ("test_suite.py::TestCodec::test_leaky", "new_object")):
        culprit = results[nodeid]["sites"][0]["culprit"]
        assert (culprit["function"], culprit["line"]) == (
            CASES[name]["culprit_function"], CASES[name]["culprit_line"]), (nodeid, culprit)


@pytest.fixture(scope="module")
def batched(suite):
    return _run(suite)


def test_batches_find_the_leaks_and_clear_the_rest(batched):
    proc, results = batched
    _check(proc, results)
    batched = {n for n, e in results.items() if (e.get("screen") or {}).get("batch", 0) >= 2}
    # Most clean tests are cleared by a batch; the leaking ones and the
    # tests that cannot join one never are.
    assert len(batched) >= 20, [(n, results[n]["notes"][:1])
                                for n in sorted(set(results) - batched)]
    assert not batched & (LEAKY | ALONE), batched & (LEAKY | ALONE)
    for nodeid in batched:
        assert "cleared by the screen with the" in results[nodeid]["notes"][0]


def test_reference_only_leak_names_its_culprit_line(batched):
    # pytest's closures hold None and are freed with their frames: their
    # deallocators' decrements release what PyFunction_New took, not the
    # eval loop's references (which left PyFunction_NewWithQualName named)
    _, results = batched
    none = results["test_suite.py::test_incref_none_leaky"]
    site = none["refcount_growth"][0]["sites"][0]
    assert (site["function"], site["line"]) == (
        CASES["incref_none"]["culprit_function"], CASES["incref_none"]["culprit_line"]), site


def test_one_by_one_gives_the_same_outcomes(suite):
    proc, results = _run(suite, "--refhound-one-by-one")
    _check(proc, results)
    assert not any((e.get("screen") or {}).get("batch") for e in results.values())


def test_batches_under_xdist(suite):
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install pytest-xdist)")
    proc, results = _run(suite, "-n", "2")
    _check(proc, results)
    assert "34 tests checked" in proc.stdout, proc.stdout[-2000:]


# ---------------------------------------------------------------------------
# Tiers in one batch: bodies of every speed, a slow one leaking

TIERS_SUITE = '''
import time

import pytest

import new_object


def _spend(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_slower_leaky():
    _spend(0.005)
    new_object.leaky()


@pytest.mark.parametrize("n", range(6))
def test_fast(n):
    new_object.clean()


def test_middle():
    _spend(0.0003)
    new_object.clean()


def test_slow():
    _spend(0.001)
    new_object.clean()


def test_slower():
    _spend(0.005)
    new_object.clean()
'''


@pytest.fixture(scope="module")
def tiers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiers_suite")
    built = [build_zoo_case(CASES["new_object"], PY)]
    (folder / "test_suite.py").write_text(TIERS_SUITE)
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder, built


def test_tiers_share_a_batch_and_a_slow_leak_is_found(tiers):
    """The tests of every tier share one batch; a slower test joins only the
    passes its tier gives it (middle 10, slow 4, 2.5 ms and more 2), and a
    leak in a 5 ms body, judged on one call, is still found exactly."""
    proc, results = _run(tiers)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 failed, 9 passed" in proc.stdout, proc.stdout[-2000:]
    leaky = results["test_suite.py::test_slower_leaky"]
    assert leaky["pytest"]["outcome"] == "leak", leaky["notes"]
    assert abs(leaky["per_call"]["objects"] - 1) <= 0.05, leaky["per_call"]
    site = leaky["sites"][0]
    assert (site["function"], site["line"]) == (
        CASES["new_object"]["culprit_function"], CASES["new_object"]["culprit_line"]), site
    for name, calls in (("test_middle", 10), ("test_slow", 4), ("test_slower", 2)):
        entry = results["test_suite.py::" + name]
        assert entry["pytest"]["outcome"] == "clean", (name, entry["notes"])
        assert entry["screen"].get("batch"), (name, entry["notes"])
        # Its tier's passes; a body timed into a slower tier on a loaded
        # machine joins that tier's (test_slow joined 2 under the sanitizers
        # once, beside the other test workers, on a 2-core AMD EPYC).
        joined = entry["screen"]["test_calls"]
        assert joined in (10, 4, 2)[(10, 4, 2).index(calls):], (name, entry["screen"])
        assert "joined %d of its passes" % joined in entry["notes"][0], entry["notes"]
    for n in range(6):
        entry = results["test_suite.py::test_fast[%d]" % n]
        assert entry["pytest"]["outcome"] == "clean", entry["notes"]
        # A fast body joins every pass; on a loaded machine its first run
        # may time it into a slower tier (one suite run on a 2-core AMD
        # EPYC), which then gives it that tier's passes.
        assert entry["screen"].get("test_calls") in (None, 10, 4, 2), entry["screen"]


APART_SUITE = '''
import time

import pytest

import new_object

CALLS = []


def _spend(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("n", range(4))
def test_fast(n):
    new_object.clean()


def test_fast_leaky():
    new_object.leaky()


@pytest.mark.parametrize("n", range(3))
def test_more_fast(n):
    new_object.clean()


@pytest.mark.parametrize("n", range(4))
def test_slow(n):
    _spend(0.02)
    new_object.clean()
    with open("slow_calls.txt", "a") as f:
        f.write("%d\\n" % n)
'''


def test_slow_bodies_are_screened_apart_from_a_fast_leak(tmp_path_factory):
    """Four 20 ms bodies (80 ms: the slow tier's bodies of the batch take
    more than V.BATCH_SLOW_APART in all) are screened apart from the fast
    ones: a fast test's leak, found by halving its own group down to it, no
    longer calls them again at every level.  Each slow body runs twice (its
    normal run and its group's one judged call: nothing found, no tail);
    the leak is found at its culprit line and the slow tests are cleared
    together."""
    folder = tmp_path_factory.mktemp("apart_suite")
    built = [build_zoo_case(CASES["new_object"], PY)]
    (folder / "test_suite.py").write_text(APART_SUITE)
    (folder / "pytest.ini").write_text("[pytest]\n")
    proc, results = _run((folder, built))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 failed, 11 passed" in proc.stdout, proc.stdout[-2000:]
    leaky = results["test_suite.py::test_fast_leaky"]
    assert leaky["pytest"]["outcome"] == "leak", leaky["notes"]
    assert abs(leaky["per_call"]["objects"] - 1) <= 0.05, leaky["per_call"]
    site = leaky["sites"][0]
    assert (site["function"], site["line"]) == (
        CASES["new_object"]["culprit_function"], CASES["new_object"]["culprit_line"]), site
    for n in range(4):
        entry = results["test_suite.py::test_slow[%d]" % n]
        assert entry["pytest"]["outcome"] == "clean", entry["notes"]
        assert entry["screen"].get("batch") == 4, entry["screen"]
    calls = (folder / "slow_calls.txt").read_text().split()
    assert sorted(calls) == ["0", "0", "1", "1", "2", "2", "3", "3"], calls


# ---------------------------------------------------------------------------
# A full check that could only clear a test

SLOW_SUITE = '''
import time

import new_object


def _spend(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_slow_growing():
    _spend(0.45)
    new_object.leaky()


def test_slow_clean():
    _spend(0.45)
    new_object.clean()
'''


@pytest.fixture(scope="module")
def slow_suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slow_suite")
    built = [build_zoo_case(CASES["new_object"], PY)]
    (folder / "test_suite.py").write_text(SLOW_SUITE)
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder, built


def test_a_full_check_that_could_only_clear_is_not_run(slow_suite):
    """A 0.45 s body that grows: ten times the full check's calls would not
    fit in the patience budget, so no leak could be confirmed, and the full
    check (ten calls and samples: about 5 s, 6.5 s under the sanitizers,
    whose full collections are slower) is over half the 9.5 s budget:
    inconclusive at once, saying why.  Its clean twin is cleared by the
    screen.  (Under the sanitizers on a busy machine the estimate passed the
    whole budget once, 8 s: then it says so instead, inconclusive as well.)"""
    proc, results = _run(slow_suite, "--refhound-budget", "9.5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    growing = results["test_suite.py::test_slow_growing"]
    assert growing["verdict"] == "inconclusive", growing["notes"]
    assert "could only clear it" in growing["incomplete"] or \
        (SANITIZE and "over the budget of 9.5 s" in growing["incomplete"]), \
        growing["incomplete"]
    assert growing["iterations"]["measured"] == 0, growing["iterations"]
    clean = results["test_suite.py::test_slow_clean"]
    assert clean["verdict"] == "clean", clean["notes"]


def test_without_patience_the_same_growth_is_checked_in_full(slow_suite):
    """With --refhound-patience 0 a growth is a verdict of its own: the same
    test is checked in full and fails at its true rate."""
    proc, results = _run(slow_suite, "--refhound-budget", "8", "--refhound-patience", "0")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    growing = results["test_suite.py::test_slow_growing"]
    assert growing["verdict"] == "leak", growing["notes"]
    assert abs(growing["per_call"]["objects"] - 1) <= 0.05, growing["per_call"]
    assert results["test_suite.py::test_slow_clean"]["verdict"] == "clean"


# ---------------------------------------------------------------------------
# State a later call replaces, kept longer than one pass of the batch

RING_SUITE = '''
import collections

import pytest

# Each ring full from the start (the twin's unbounded list starts with as
# many): every call adds one result and a bounded ring drops its oldest, so
# whether the ring is still filling at the screen's first walk does not
# depend on how many calls the batch's plan gives (slower bodies, fewer).
_recent = [collections.deque(([object() for _ in range(3)] for _ in range(12)), maxlen=MAXLEN)
           for _ in range(TESTS)]


@pytest.mark.parametrize("n", range(TESTS))
def test_keeps_its_last_results(n):
    _recent[n].append([object() for _ in range(3)])
'''


def _ring_suite(tmp_path_factory, maxlen, tests):
    folder = tmp_path_factory.mktemp("ring_suite")
    (folder / "test_suite.py").write_text(
        RING_SUITE.replace("MAXLEN", maxlen).replace("TESTS", str(tests)))
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder, []


def test_state_replaced_within_a_few_calls_clears_the_batch(tmp_path_factory):
    """Each test keeps its last twelve results: what the judged passes made
    outlives the batch's tail pass (a few calls), and dies within twelve
    more calls of the batch.  The batch is called again, looked at after
    1, 2, 4, 8 and 16 calls, and cleared at the first look that finds
    them dead, not after its whole plan again."""
    proc, results = _run(_ring_suite(tmp_path_factory, "12", 6))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(6):
        entry = results["test_suite.py::test_keeps_its_last_results[%d]" % n]
        assert entry["pytest"]["outcome"] == "clean", entry["notes"]
        assert entry["screen"]["batch"] >= 2, entry["notes"]
        found = re.search(r"the blocks that survived (\d+) calls died within (\d+) more",
                          entry["notes"][0])
        assert found, entry["notes"]
        plan, more = int(found.group(1)), int(found.group(2))
        # Under the sanitizers (or a loaded machine) the bodies are slow
        # enough to join fewer of the batch's passes, and the rings then
        # turn over by the last look (the plan again, after a full
        # collection) rather than by the 16th call (one run of the
        # sanitizer tier on a 2-core AMD EPYC).
        fewer = SANITIZE or "slower, joined" in entry["notes"][0]
        looks = (1, 2, 4, 8, 16) + ((plan,) if fewer else ())
        assert more in looks and (more < plan or fewer), entry["notes"]


def test_results_kept_for_ever_are_not_cleared(tmp_path_factory):
    """The twin: every result kept (no bound).  The blocks never die, the
    batch is not cleared, and each test fails at its true rate."""
    proc, results = _run(_ring_suite(tmp_path_factory, "None", 2))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(2):
        entry = results["test_suite.py::test_keeps_its_last_results[%d]" % n]
        assert entry["pytest"]["outcome"] == "leak", entry["notes"]
        assert abs(entry["per_call"]["objects"] - 4) <= 0.05, entry["per_call"]


# ---------------------------------------------------------------------------
# Blocks that outlive the batch's calls, named test by test

NAMED_SUITE = '''
import collections
import time

import pytest

import MODULE as buffers

def _spend(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# The last 400 results, the ring full from the start: each call replaces
# the oldest, so nothing grows, but what a call makes lives 400 calls.
_ring = collections.deque(([object(), object()] for _ in range(400)), maxlen=400)


def test_keeps_its_last_400_results():
    _ring.append([object(), object()])


@pytest.mark.parametrize("n", range(6))
def test_buffer(n):
    BODY
'''


def _named_suite(tmp_path_factory, leaky, module="pymem_buffer", spend=0.0):
    folder = tmp_path_factory.mktemp("named_suite")
    body = "buffers.leaky() if n == 3 else buffers.clean()" if leaky else "buffers.clean()"
    if spend:
        body = "_spend(%r) if n == 3 else None\n    %s" % (spend, body)
    (folder / "test_suite.py").write_text(NAMED_SUITE.replace("BODY", body)
                                          .replace("MODULE", module))
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder, [build_zoo_case(CASES[module], PY)]


@pytest.mark.parametrize("module", ["pymem_buffer", "rawmem_buffer"])
def test_blocks_that_outlive_the_batch_are_named_test_by_test(tmp_path_factory, module):
    """One test keeps what it made for 400 calls, longer than the batch is
    called again: the batch's blocks never die within its calls.  Called
    again with a birth epoch per body, the blocks still alive name that
    test alone; the six others are cleared there, and it is judged on its
    own (clean: its ring only turns over).  With PyMem_RawMalloc buffers
    that are freed, the clean twin of the raw-block leak below."""
    proc, results = _run(_named_suite(tmp_path_factory, leaky=False, module=module))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(6):
        entry = results["test_suite.py::test_buffer[%d]" % n]
        assert entry["pytest"]["outcome"] == "clean", entry["notes"]
        assert "the blocks that survived were made by 1 other test of the 7" in \
            entry["notes"][0], entry["notes"]
    ring = results["test_suite.py::test_keeps_its_last_400_results"]
    assert ring["pytest"]["outcome"] == "clean", ring["notes"]
    assert "this test made blocks that outlived the batch's calls" in ring["notes"][0], \
        ring["notes"]


@pytest.mark.parametrize("module", ["pymem_buffer", "rawmem_buffer"])
def test_a_leaking_test_beside_them_is_named_and_fails(tmp_path_factory, module):
    """The twin: one of the six leaks a PyMem block per call (blocks only,
    nothing else moves), or a PyMem_RawMalloc block (malloc's heap grows
    by its chunk, which the surviving block accounts for: nothing else
    moved).  Its blocks never die: it is named beside the ring's test,
    each is judged on its own, it fails at its true rate and culprit line,
    and the five others are cleared."""
    proc, results = _run(_named_suite(tmp_path_factory, leaky=True, module=module))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    leaky = results["test_suite.py::test_buffer[3]"]
    assert leaky["pytest"]["outcome"] == "leak", leaky["notes"]
    assert abs(leaky["per_call"]["blocks"] - 1) <= 0.05, leaky["per_call"]
    assert "this test made blocks that outlived the batch's calls" in leaky["notes"][0], \
        leaky["notes"]
    culprit = leaky["sites"][0]["culprit"]
    assert (culprit["function"], culprit["line"]) == (
        CASES[module]["culprit_function"], CASES[module]["culprit_line"]), culprit
    for n in (0, 1, 2, 4, 5):
        entry = results["test_suite.py::test_buffer[%d]" % n]
        assert entry["pytest"]["outcome"] == "clean", entry["notes"]
        assert "made by 2 other tests of the 7" in entry["notes"][0], entry["notes"]
    ring = results["test_suite.py::test_keeps_its_last_400_results"]
    assert ring["pytest"]["outcome"] == "clean", ring["notes"]


@pytest.mark.parametrize("leaky", [True, False], ids=["leaky", "clean"])
def test_a_slow_test_of_two_passes_beside_a_named_one_is_judged(tmp_path_factory, leaky):
    """A test of 5 ms joins two passes of its batch (one judged epoch and
    the tail): when the blocks that outlive the batch's calls are named
    test by test, its first body is judged too, so its leak is named beside
    the ring's test and fails at its rate and line, not cleared with the
    others.  The twin: the same slow body, clean, is cleared by the batch."""
    proc, results = _run(_named_suite(tmp_path_factory, leaky=leaky, spend=0.005))
    assert proc.returncode == (1 if leaky else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
    slow = results["test_suite.py::test_buffer[3]"]
    if leaky:
        assert slow["pytest"]["outcome"] == "leak", slow["notes"]
        assert abs(slow["per_call"]["blocks"] - 1) <= 0.05, slow["per_call"]
        assert "this test made blocks that outlived the batch's calls" in slow["notes"][0], \
            slow["notes"]
        culprit = slow["sites"][0]["culprit"]
        assert (culprit["function"], culprit["line"]) == (
            CASES["pymem_buffer"]["culprit_function"], CASES["pymem_buffer"]["culprit_line"])
    else:
        assert slow["pytest"]["outcome"] == "clean", slow["notes"]
        assert slow["screen"].get("test_calls") == 2, slow["screen"]
        assert "made by 1 other test of the 7" in slow["notes"][0], slow["notes"]
    for n in (0, 1, 2, 4, 5):
        entry = results["test_suite.py::test_buffer[%d]" % n]
        assert entry["pytest"]["outcome"] == "clean", entry["notes"]


# ---------------------------------------------------------------------------
# Dicts whose keys come and go: a resize now and then leaves a new table

CHURN_SUITE = '''
import unittest

import pymem_buffer


class TestMany(unittest.TestCase):
    # pytest sets the test method on its instance and deletes it again for
    # every run: the instance's dict is resized every few runs, and the
    # table of its last resize lives until the next one.
    pass


for _i in range(64):
    setattr(TestMany, "test_%02d" % _i, lambda self: pymem_buffer.clean())

LEAKY
'''


def _churn_suite(tmp_path_factory, leaky):
    folder = tmp_path_factory.mktemp("churn_suite")
    extra = "TestMany.test_40 = lambda self: pymem_buffer.leaky()" if leaky else ""
    (folder / "test_suite.py").write_text(CHURN_SUITE.replace("LEAKY", extra))
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder, [build_zoo_case(CASES["pymem_buffer"], PY)]


def test_resized_dict_tables_clear_the_batch_without_calling_it_again(tmp_path_factory):
    """64 unittest tests: what survives the batch's judged passes is the
    keys table of each test case's instance dict, older than them.  The
    batch is clean at once, without being called again (simplejson's and
    bitarray's unittest suites paid 16 to 18 more calls of each 64-test
    batch for this).  Whether a resize falls in the judged passes depends
    on the calls an epoch gets (the bodies' speed): when none does, nothing
    survived, and the batch is as clean."""
    proc, results = _run(_churn_suite(tmp_path_factory, leaky=False))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(results) == 64
    for nodeid, entry in results.items():
        assert entry["pytest"]["outcome"] == "clean", (nodeid, entry["notes"])
        note = entry["notes"][0]
        assert note.startswith("cleared by the screen with the 64 tests of its batch") and \
            ("tables of dicts or sets older than them" in note or "nothing survived" in note), \
            (nodeid, entry["notes"], entry.get("screen"))


def test_a_block_leak_beside_resized_tables_is_found(tmp_path_factory):
    """The twin: one of the 64 also leaks a PyMem block per call.  Its
    blocks are no dict's table, so the tables do not clear the batch: the
    test fails at its true rate and culprit line, and the others pass."""
    proc, results = _run(_churn_suite(tmp_path_factory, leaky=True))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    name = "test_suite.py::TestMany::test_40"
    leaky = results[name]
    assert leaky["pytest"]["outcome"] == "leak", leaky["notes"]
    assert abs(leaky["per_call"]["blocks"] - 1) <= 0.05, leaky["per_call"]
    culprit = leaky["sites"][0]["culprit"]
    assert (culprit["function"], culprit["line"]) == (
        CASES["pymem_buffer"]["culprit_function"], CASES["pymem_buffer"]["culprit_line"]), culprit
    for nodeid, entry in results.items():
        if nodeid != name:
            assert entry["pytest"]["outcome"] == "clean", (nodeid, entry["notes"])
