"""A pytest plugin that gives each test its own memcheck scope.

`refhound valgrind -- python -m pytest ...` loads it (-p
refhound._valgrind.pytest_scopes) so that every memcheck error and leak
record is tied to the test that caused it; it does nothing when the
process does not run under Valgrind.  The scope opens before the test's
setup and closes after its teardown (fixture leaks belong to the test);
its figures (errors, lost and reachable blocks gained) are put on the
test's reports as the user property "refhound_valgrind" (JUnit XML shows
them) and, when a test had memcheck errors, in a line of the terminal
summary.

The pytest plugin of refhound (pytest --refhound) may call
refhound._valgrind.begin/end itself; begin() with the name of the scope
already open returns None, so nesting them is harmless.
"""
import pytest

from . import begin, end, running

_scopes = {}
_with_errors = []


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    if running():
        _scopes[item.nodeid] = begin(item.nodeid, "test")
    yield


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    scope = _scopes.pop(item.nodeid, None)
    info = end(scope)
    if info is not None:
        item.user_properties.append(("refhound_valgrind", dict(info)))
        if info.get("errors"):
            _with_errors.append((item.nodeid, info["errors"]))


def pytest_terminal_summary(terminalreporter):
    if not _with_errors:
        return
    terminalreporter.section("refhound: memcheck errors per test")
    for nodeid, n in _with_errors:
        terminalreporter.write_line("%s: %d memcheck error%s" % (nodeid, n, "" if n == 1 else "s"))
