"""A pytest plugin that gives each test its own memcheck scope.

`refhound valgrind -- python -m pytest ...` loads it (-p
refhound._valgrind.pytest_scopes) so that every memcheck error and leak
record is tied to the test that caused it; it does nothing when the
process does not run under Valgrind.  The scope opens before the test's
setup and closes after its teardown (fixture leaks belong to the test).

It prints nothing: inside the process only memcheck's own counts are
known, the interpreter's noise included (a suite that parses numbers can
make hundreds of thousands of "errors" no line of the user's causes), and
a count that contradicts the verdict is worse than none.  `refhound
valgrind` reads the records, keeps those in the user's code and reports
each test's count.  The raw figures are kept, under names that say what
they are, as the user property "refhound_valgrind" of the test's reports
(JUnit XML shows them).

The pytest plugin of refhound (pytest --refhound) may call
refhound._valgrind.begin/end itself; begin() with the name of the scope
already open returns None, so nesting them is harmless.
"""
import pytest

from . import begin, end, running, unfiltered

_scopes = {}


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
        item.user_properties.append(("refhound_valgrind", unfiltered(info)))
