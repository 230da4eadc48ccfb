"""The sample project's fixtures, and the build of its C extension.

The extension (sampleext.c) is compiled with tests/cbuild.py into
$REFHOUND_SAMPLE_BUILD (default: build/tests/sample_project-<abi> at the top
of the repository) when this project is the rootdir; as part of refhound's
own suite (rootdir = the repository) the folder is not collected at all.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)


def _is_root(config):
    return os.path.samefile(str(config.rootpath), HERE)


def pytest_ignore_collect(collection_path, config):
    if not _is_root(config):
        return True
    return None


def build_sampleext(python=sys.executable):
    sys.path.insert(0, TESTS)
    try:
        import cbuild
    finally:
        sys.path.remove(TESTS)
    info = cbuild.interpreter_info(python)
    abi = info["ext_suffix"].strip(".").replace(".so", "")
    out = os.environ.get("REFHOUND_SAMPLE_BUILD") or os.path.join(
        ROOT, "build", "tests", "sample_project-" + abi)
    cbuild.build_extension(os.path.join(HERE, "sampleext.c"), out, python=python)
    return out


def pytest_configure(config):
    if _is_root(config):
        sys.path.insert(0, build_sampleext())


@pytest.fixture
def leaky_resource():
    """A function-scoped fixture that leaks: Resource.close() forgets to free
    the 256-byte handle that open() allocated.  Its leak happens in setup and
    teardown, never in the test body, so no test that uses it may fail."""
    import sampleext
    res = sampleext.Resource()
    res.open()
    yield res
    res.close()


@pytest.fixture
def fresh_list():
    """A function-scoped fixture that tests append to."""
    return []
