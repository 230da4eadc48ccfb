"""Test tiers and shared set-up.

tests/unit   in process: no compiler, no subprocess; seconds (`pytest tests/unit`)
tests/e2e    real extensions compiled with the system compiler, the CLI, the plugin
tests/slow   Valgrind, packages from PyPI, other interpreters (marker `slow`:
             `-m "not slow"` leaves them out)

The shared helpers (support.py, cbuild.py) live beside this file.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: Valgrind, PyPI downloads, other interpreters")


def pytest_collection_modifyitems(config, items):
    slow = os.path.join(HERE, "slow") + os.sep
    for item in items:
        if str(item.fspath).startswith(slow):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tracking():
    """refhound's tracking on for the test (off after, unless it was on before)."""
    from refhound import _core
    started = _core.start()
    yield
    if started:
        _core.stop()
