"""A small pytest suite for `refhound valgrind -- python -m pytest
tests/valgrind_cases/sample_tests.py`: each test calls one buggy (or clean)
function of the bug zoo and the Valgrind cases, so each memcheck record must
be attributed to exactly the test named here.

Not collected by the normal test run (the file name does not match
test_*.py): some of these tests corrupt memory natively and only make sense
under Valgrind.  tests/test_valgrind.py runs it with the case modules built
into a folder on PYTHONPATH.

    test name               module                 record expected
    test_leaks_ints         new_object.leaky       leak (lost), new_object.c @culprit
    test_leaks_raw_buffers  rawmem_buffer.leaky    leak (lost), rawmem_buffer.c @culprit
    test_leaks_lists        nested_list.leaky      growth (the lists stay linked in the GC)
    test_use_after_free     uaf_read.leaky         use-after-free, uaf_read.c @culprit
    test_overflow           overflow_write.leaky   overflow, overflow_write.c @culprit
    test_double_free        double_free.leaky      double-free, double_free.c @culprit
    test_clean_twins        every clean()          nothing
"""
import importlib

import pytest

CALLS = 4


def call(module, name, times=1):
    func = getattr(importlib.import_module(module), name)
    for _ in range(times):
        func()


@pytest.fixture(autouse=True, scope="session")
def _import_everything():
    # Module init allocations (module objects, method tables) happen here,
    # before the first test, so no test is blamed for them.
    for mod in ("new_object", "rawmem_buffer", "nested_list", "uaf_read",
                "overflow_write", "double_free"):
        importlib.import_module(mod)


def test_clean_twins():
    for mod in ("new_object", "rawmem_buffer", "nested_list", "uaf_read",
                "overflow_write", "double_free"):
        call(mod, "clean", CALLS)


def test_leaks_ints():
    call("new_object", "leaky", CALLS)


def test_leaks_raw_buffers():
    call("rawmem_buffer", "leaky", CALLS)


def test_leaks_lists():
    call("nested_list", "leaky", CALLS)


def test_use_after_free():
    call("uaf_read", "leaky")


def test_overflow():
    call("overflow_write", "leaky")


def test_double_free():
    call("double_free", "leaky")
