"""refhound._core.Session in process: the measurement API (begin / end /
iterate), every method after close(), and the engine's own work kept out
of the iterations.  Needs the built engine, no compiler, no subprocess."""
import gc

import pytest

from refhound import _core
from refhound._caches import clear_caches

RESULT_KEYS = {"samples", "types", "survivors", "tracker", "calls", "warmup_samples",
               "measured"}


def noop():
    return None


KEPT = []


def leak_a_list():
    """At module level: its code object existed before tracking started,
    so the stacks can name it."""
    KEPT.append([])


def test_iterate_is_begin_calls_end(tracking):
    calls = []
    s = _core.Session(calls.append, (1,), None, clear_caches, 5)
    try:
        epoch = _core.stats()["epoch"]
        assert isinstance(s.iterate(warmup=True), float)
        assert _core.stats()["epoch"] == epoch + 1 and len(calls) == 5
        s.begin()
        for _ in range(5):
            calls.append(1)
        assert s.end() is None
        assert _core.stats()["epoch"] == epoch + 2 and len(calls) == 10
        s.iterate(False, True)              # positional flags, as before
        assert (s.nsamples, s.warmup_samples, s.calls) == (3, 1, 5)
        samples = s.results()["samples"]
        assert [x["epoch"] for x in samples] == [epoch + 1, epoch + 2, epoch + 3]
    finally:
        s.close()


def test_every_method_after_close_is_safe(tracking):
    s = _core.Session(noop, (), None, None, 3)
    s.iterate(True)
    s.iterate(snapshot=True)
    s.iterate(snapshot=True)
    s.close()
    res = s.results()
    assert set(res) == RESULT_KEYS
    assert len(res["samples"]) == 3 and res["calls"] == 3
    assert s.series("refs") == [x["refs"] for x in res["samples"]]
    assert isinstance(s.last_delta("objects"), int)
    assert isinstance(s.growth(5), list)
    for method, args in ((s.iterate, ()), (s.begin, ()), (s.end, ()), (s.snapshot, ())):
        with pytest.raises(RuntimeError, match="closed"):
            method(*args)
    s.close()
    assert s.nsamples == 3
    # A closed session no longer holds the engine: the next one may start.
    _core.Session(noop, (), None, None, 1).close()


def test_results_after_stop_and_close(tracking):
    s = _core.Session(noop, (), None, None, 1)
    s.iterate(True)
    s.iterate()
    s.close()
    _core.stop()
    res = s.results()
    assert len(res["samples"]) == 2
    assert res["survivors"] == {"first_epoch": 0, "blocks": [], "bytes": []}


def test_one_session_at_a_time(tracking):
    s = _core.Session(noop, (), None, None, 1)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            _core.Session(noop, (), None, None, 1)
    finally:
        s.close()


def test_bad_arguments_are_refused(tracking):
    with pytest.raises(ValueError):
        _core.Session(noop, (), None, None, 0)
    with pytest.raises(TypeError):
        _core.Session(noop, [], None, None, 1)
    with pytest.raises(TypeError):
        _core.Session(noop, (), [], None, 1)
    s = _core.Session(noop, (), None, None, 1)
    try:
        with pytest.raises(KeyError):
            s.series("no such metric")
        with pytest.raises(ValueError):
            s.set_calls(0)
    finally:
        s.close()


def test_a_session_needs_tracking():
    assert not _core.is_tracking()
    with pytest.raises(RuntimeError, match="tracking is not on"):
        _core.Session(noop, (), None, None, 1)


def test_the_engines_own_work_is_in_no_iteration(tracking):
    """GIVEN a target that leaks a list per call, stacks recorded WHEN two
    iterations run (each ends with cache clearing, collections and a sample
    that refreshes the type set, whose lists refill the list free list)
    THEN every site is the target's: no block of the engine's own work,
    nor one the target reused from a slot the engine filled, is blamed on
    the engine."""
    del KEPT[:]
    s = _core.Session(leak_a_list, (), None, clear_caches, 10)
    try:
        s.iterate(True)
        s.iterate(True)
        _core.capture_stacks(True)
        try:
            s.iterate()
            s.iterate()
        finally:
            _core.capture_stacks(False)
        last = _core.stats()["epoch"]
        sites, unattributed = _core.sites(last - 1, last)
        assert sites
        for stack_id, blocks, nbytes, roots, sample in sites:
            native, python = _core.stack(stack_id)
            names = [code.co_name for code, offset in python if code is not None]
            assert "leak_a_list" in names, (names, blocks, sample)
    finally:
        _core.reset_stacks()
        s.close()
        del KEPT[:]
    gc.collect()


def _screen_noop():
    gc.disable()
    try:
        return _core.Session.screen(noop, (), None, 1, 1, 1)
    finally:
        gc.enable()


def test_the_screen_s_walk_by_two_threads_counts_what_one_thread_counts(tracking):
    """A heap above the size where the screen's walks take a helper thread:
    the totals, the survivors and the process's thread count agree with a
    walk on one thread (REFHOUND_WALK_THREADS=1), and the helper is gone
    when the thread count is read.  Each round keeps the same few objects
    (its result), so from round to round the totals move by the same
    amount whichever way the walks went."""
    import os
    heap = [{"n": i} for i in range(80_000)]           # well above SPLIT_MIN_BLOCKS
    assert _core.stats()["table_entries"] > 65_536
    rounds = [None] * 10
    for i in range(len(rounds)):
        if i % 2:
            os.putenv("REFHOUND_WALK_THREADS", "1")
        else:
            os.unsetenv("REFHOUND_WALK_THREADS")
        rounds[i] = _screen_noop()
    os.unsetenv("REFHOUND_WALK_THREADS")
    for r in rounds:
        assert r["refs"][0] == r["refs"][1] and r["objects"][0] == r["objects"][1], r
        assert r["threads"][0] == r["threads"][1] == rounds[0]["threads"][0], r
        assert not any(r["blocks"][1:-1]), r
    steps = {(b["refs"][0] - a["refs"][0], b["objects"][0] - a["objects"][0])
             for a, b in zip(rounds[3:], rounds[4:])}
    assert len(steps) == 1, [(r["refs"][0], r["objects"][0]) for r in rounds]
    del heap


# After the two-threads test: any test before it (even an empty one with
# the tracking fixture) changed the steps between its rounds.
LAST = [None]


def keep_the_last():
    """State the next call replaces: this call's list lives until then."""
    LAST[0] = [object(), object()]


def leak_an_object():
    KEPT.append(object())       # a new block each call (lists come from a free list)


def _screen_lazily(func):
    gc.disable()
    try:
        return _core.Session.screen(func, (), None, 1, 1, 1, 1, None, True, 0)
    finally:
        gc.enable()


def test_a_lazy_tail_is_called_only_when_the_walk_before_it_finds_something(tracking):
    """The screen of a slow body calls its tail (the call that replaces what
    the call before it kept) only when a walk after the screened epochs
    finds something: a body that keeps nothing is judged on one call; one
    that keeps its last result gets the tail, and the judged epoch's blocks
    are dead at walk B; a leak's blocks survive the tail too."""
    quiet = _screen_lazily(noop)
    assert quiet["tail"] == 0, quiet
    assert quiet["blocks"][1:] == [0, 0], quiet
    keep_the_last()
    kept = _screen_lazily(keep_the_last)
    assert kept["tail"] == 1, kept
    assert kept["blocks"][1] == 0, kept             # replaced by the tail
    try:
        leaked = _screen_lazily(leak_an_object)
        assert leaked["tail"] == 1, leaked
        assert leaked["blocks"][1] >= 1 and leaked["blocks"][2] >= 1, leaked
    finally:
        del KEPT[:]
    eager = _core.Session.screen(noop, (), None, 1, 1, 1, 1, None)
    assert eager["tail"] == 1, eager
    LAST[0] = None
    gc.collect()


def test_container_table_survivors_are_tables_of_older_dicts(tracking):
    """Blocks born in an epoch that are the keys table of a dict older than
    it (the dict resized there) are counted; the table of a dict born in
    the epoch and a list's item array (no dict's) are not."""
    older = {object(): None for _ in range(5)}
    items = [None] * 4
    _core.adopt()       # a dict from the free list lives in a block from before start

    class Born(dict):   # a new block for the new dict (a plain one may come from the free list)
        pass

    S = _core.Session
    first = S.next_epoch()
    for k in range(200):                    # grows the old dict: new tables
        older[k + 1000] = None
    born = Born((k + 5000, None) for k in range(200))
    items.extend([None] * 400)              # a new item array
    S.next_epoch()
    gc.collect(0)
    alive = S.survivors(first, first)
    tables = S.container_table_survivors(first, first)
    assert tables == [1], (alive, tables)
    assert alive[0] > tables[0]             # born's table, items' array, the ints
    assert len(born) == 200 and len(items) == 404


def test_container_table_survivors_are_tables_of_older_sets(tracking):
    """The table of a set older than the epoch, rebuilt there (cleared and
    filled again with the same keys: no object made, no reference more), is
    counted; neither the table of a set born in the epoch nor a set still in
    its small table is."""
    keys = [object() for _ in range(18)]
    older = set(keys)
    small = {keys[0]}
    _core.adopt()
    S = _core.Session
    first = S.next_epoch()
    older.clear()                           # back to its small table
    older.update(keys)                      # outgrows it: a new table
    born = set(keys)                        # a new set's own table
    small.add(keys[1])                      # still in its small table
    S.next_epoch()
    gc.collect(0)
    alive = S.survivors(first, first)
    tables = S.container_table_survivors(first, first)
    assert tables == [1], (alive, tables)
    assert alive[0] > tables[0]             # born and its table
    assert len(born) == 18 and len(small) == 2


def test_container_table_survivors_of_no_epoch_are_zero(tracking):
    S = _core.Session
    first = S.next_epoch()
    assert S.container_table_survivors(first + 5, first + 7) == [0, 0, 0]
    with pytest.raises(ValueError):
        S.container_table_survivors(3, 2)
