"""The heap frozen while a check measures (src/core/gcfreeze.c): the
collections between samples look only at what was born since the first
sample, and nothing the freeze keeps alive is taken for a leak.

A frozen collection cannot free an old object that becomes cyclic garbage:
a ring of cyclic nodes filled before the check, whose calls each push a new
node out of the old ones, looks like growth of a node a call until every old
node is gone.  The check asks, when it found growth, whether any old object
became garbage while frozen, and measures again with full collections if
so; the phases after the measurement (patience) are frozen again and asked
again at their end."""
import collections
import gc

import pytest

import refhound
from refhound import _core


def Node():
    """A node that refers to itself, freed only by a collection: a list
    (one object, no reference to a heap type, on every version)."""
    node = []
    node.append(node)
    return node


# Far more old nodes than one check's calls push out (at 1,000 calls an
# iteration, 30 iterations): frozen, every call would leave one alive.
# Filled while tracking (fixture `ring`): a node made before would be an
# adopted object whose item array's block refhound never saw.
RING = collections.deque(maxlen=40_000)
KEPT = []


def replaces_an_old_node():
    RING.append(Node())


def keeps_a_node():
    KEPT.append(Node())


# CPython 3.12.1 starts with objects of its own frozen (375 here): refhound
# then never freezes (it does not touch what it did not freeze) and
# collects in full, so the checks below judge the same, without the freeze.
FROZEN_AT_START = gc.get_freeze_count()


@pytest.fixture(autouse=True)
def ring():
    assert not _core.is_tracking()
    assert gc.get_freeze_count() == FROZEN_AT_START
    _core.start()
    try:
        RING.extend(Node() for _ in range(RING.maxlen))
        gc.collect()
        yield
        assert gc.get_freeze_count() == FROZEN_AT_START
    finally:
        RING.clear()
        del KEPT[:]
        _core.stop()


@pytest.mark.parametrize("patience", [0.0, None])
def test_old_cycles_pushed_out_by_the_calls_are_no_leak(patience):
    # Without patience the measurement alone decides (with it, the growth
    # would also be seen to settle once unfrozen).
    options = {"patience": patience} if patience is not None else {}
    result = refhound.Checker(calls=1000, **options).check(replaces_an_old_node)
    if patience == 0.0 and FROZEN_AT_START == 0:
        assert any("measured again with full collections" in n for n in result.notes), \
            result.notes
        # What the freeze would have made: a node a call.  The measurement
        # made again with full collections (no patience to follow) has
        # called a block every 3,000 calls of the deque's churn a leak (3.9)
        # and a reference lost every 3,000 calls an error (3.13), under -n 2
        # only: the decider's floor for tiny rates, not the freeze's.
        assert abs(result.per_call["objects"]) < 0.01, (result.per_call, result.notes)
        assert result.verdict == "clean" or max(
            abs(result.per_call[m] or 0) for m in ("refs", "blocks")) < 0.01, \
            (result.verdict, result.per_call, result.notes)
    else:
        assert result.verdict == "clean", (result.per_call, result.notes)


@pytest.mark.parametrize("patience", [0.0, None])
def test_a_cycle_kept_by_every_call_is_a_leak(patience):
    options = {"patience": patience} if patience is not None else {}
    result = refhound.Checker(calls=1000, **options).check(keeps_a_node)
    assert result.verdict == "leak", (result.per_call, result.notes)
    assert result.per_call["objects"] == pytest.approx(1.0, abs=0.05), result.per_call


# A cache of nodes that fills during the measurement (1,100 calls at 100
# calls an iteration) and is full before patience ends; once full, every
# call pushes an old node out of the ring.  Frozen through patience, the
# pushed-out nodes would look like the cache's growth persisting.
FILLS_UP_TO = 1_500
CACHE = []


def fills_a_cache_then_replaces_old_nodes():
    if len(CACHE) < FILLS_UP_TO:
        CACHE.append(Node())
    else:
        RING.append(Node())


def test_old_cycles_pushed_out_during_patience_are_no_leak():
    try:
        result = refhound.Checker(calls=100).check(fills_a_cache_then_replaces_old_nodes)
    finally:
        filled = len(CACHE)
        del CACHE[:]
    assert filled == FILLS_UP_TO
    assert result.verdict == "clean", (result.per_call, result.notes)
    if FROZEN_AT_START == 0:
        assert any("measured again with full collections" in n for n in result.notes), \
            result.notes


def test_objects_the_program_froze_stay_frozen():
    mine = [Node() for _ in range(100)]
    # Where the interpreter froze objects of its own (3.12.1), those are the
    # program's: freezing more here could not be undone without thawing them.
    ours = FROZEN_AT_START == 0
    if ours:
        gc.collect()
        gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        leaky = refhound.Checker(calls=100).check(keeps_a_node)
        clean = refhound.Checker(calls=100).check(replaces_an_old_node)
        assert 0 < gc.get_freeze_count() <= frozen     # not thawed, not added to
    finally:
        if ours:
            gc.unfreeze()
    assert leaky.verdict == "leak", leaky.per_call
    assert clean.verdict == "clean", (clean.per_call, clean.notes)
    assert len(mine) == 100


def test_a_check_whose_target_raises_leaves_nothing_frozen():
    calls = [0]

    def fails_later():
        calls[0] += 1
        if calls[0] > 5000:
            raise ValueError("enough")

    with pytest.raises(refhound.TargetFailed):
        refhound.Checker(calls=1000).check(fails_later)
    # the fixture asserts that nothing is left frozen
