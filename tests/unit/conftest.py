"""The unit tier: in process, no compiler, no subprocess.

Every test here runs inside the pytest process on saved inputs
(tests/unit/data: memcheck XML of real runs, check results as JSON) or on
pure functions.  The tier's promise is kept by refusing, during each test,
the ways out of the process: a test that starts a program or forks fails
with a message that says so (move it to tests/e2e).
"""
import os
import subprocess

import pytest


class OutOfProcess(AssertionError):
    pass


def _refuse(what):
    def refuse(*args, **kwargs):
        raise OutOfProcess("tests/unit runs in process: %s is not allowed here "
                           "(put the test in tests/e2e)" % what)
    return refuse


@pytest.fixture(autouse=True)
def _in_process_only(monkeypatch):
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("starting a program"))
    monkeypatch.setattr(os, "fork", _refuse("os.fork()"))
    monkeypatch.setattr(os, "system", _refuse("os.system()"))
    for name in ("execv", "execve", "execvp", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse("os.%s()" % name))
    yield
