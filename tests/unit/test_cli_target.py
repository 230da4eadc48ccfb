"""Generator and coroutine functions are wrapped so each call runs the body."""
import asyncio
import functools

import pytest

from refhound._target import as_plain_callable, function_kind, unrun_result


def plain():
    return [1]


def gen(log):
    log.append("start")
    yield 1
    log.append("end")


async def coro(log):
    await asyncio.sleep(0)
    log.append("ran")
    return 42


async def agen(log):
    log.append("start")
    yield 1
    await asyncio.sleep(0)
    log.append("end")


class Methods:
    def gen(self, log):
        yield from gen(log)

    async def __call__(self, log):
        log.append("called")


def test_plain_callables_are_returned_as_they_are():
    for func in (plain, len, dict, functools.partial(plain), lambda: 1):
        assert as_plain_callable(func) == (func, None)


@pytest.mark.parametrize("func, kind", [
    (gen, "generator"), (coro, "coroutine"), (agen, "async generator"),
    (functools.partial(gen), "generator"), (Methods().gen, "generator"),
    (Methods(), "coroutine"), (plain, None), (len, None),
])
def test_function_kind(func, kind):
    assert function_kind(func) == kind


def test_a_generator_runs_to_exhaustion_at_each_call():
    log = []
    drive, note = as_plain_callable(gen)
    assert note == "a generator function: each call runs the generator it returns to exhaustion"
    assert drive(log) is None
    drive(log)
    assert log == ["start", "end", "start", "end"]
    assert (drive.__name__, drive.__qualname__, drive.__module__) == \
        (gen.__name__, gen.__qualname__, gen.__module__)


def test_a_coroutine_runs_to_completion_in_one_loop():
    log = []
    drive, note = as_plain_callable(coro)
    assert note == ("a coroutine function: each call runs the coroutine to completion in an "
                    "event loop kept for the whole check")
    assert drive(log) == 42 and drive(log) == 42
    assert log == ["ran", "ran"]
    drive.close()
    assert drive(log) == 42        # a new loop after close()
    drive.close()


def test_an_async_generator_and_an_async_call_run():
    log = []
    drive, note = as_plain_callable(agen)
    assert note.startswith("an async generator function: each call runs it to exhaustion")
    drive(log)
    assert log == ["start", "end"]
    drive.close()
    drive, _ = as_plain_callable(Methods())
    drive(log)
    assert log[-1] == "called"
    drive.close()


def test_a_body_that_raises_raises_at_the_call():
    async def fails():
        raise ValueError("ran")

    def gen_fails():
        raise KeyError("ran")
        yield

    for func, exc in ((fails, ValueError), (gen_fails, KeyError)):
        drive, _ = as_plain_callable(func)
        with pytest.raises(exc):
            drive()


def test_a_coroutine_cannot_be_run_from_a_running_loop():
    drive, _ = as_plain_callable(coro)

    async def inside():
        drive([])

    with pytest.raises(RuntimeError, match="from inside a running event loop"):
        asyncio.run(inside())


def test_unrun_result():
    assert unrun_result([1]) is None and unrun_result(None) is None
    assert unrun_result(gen([])) == ("the target returned a generator without running it, "
                                     "so its body never ran; check a function that runs it")
    assert "returned a coroutine without running it" in unrun_result(coro([]))
    assert "returned a async_generator" in unrun_result(agen([]))
